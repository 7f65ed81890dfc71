//! The daemon's shared state: one `Mutex<State>` that every component reads
//! and changes, persisted to `state_dir/state.json` after each change that
//! must survive a restart. Also the state-dir lock.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::fsutil;
use crate::task::{Priority, Queue};
use crate::timefmt::{now_secs, rfc3339};
use crate::worktree::Worktree;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Created by the daemon; receives tasks.
    Autonomous,
    /// The operator's own; watched and moved on failover, never dispatched into.
    Dedicated,
}

/// Where a pool session is in its life. `lifecycle::step` holds the
/// transitions; nothing else assigns states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Free: no task, ready for one.
    Idle,
    /// A task is claimed and the agent is being started or fed.
    Starting,
    /// The agent has its task.
    Working,
    /// The agent asked for input (permission or idle prompt) mid-task.
    WaitingInput,
    /// The agent hit a usage limit; failover moves it.
    Limited,
    /// `/exit` was sent; waiting for the agent to leave.
    Stopping,
    /// The tmux session is gone or unusable.
    Dead,
    /// Its conversation is being moved to another account (`Session::moving`).
    Moving,
    /// The agent ended its turn before its launch or move reported: the
    /// task is finished when it does.
    Finishing,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "idle",
            SessionState::Starting => "starting",
            SessionState::Working => "working",
            SessionState::WaitingInput => "waiting_input",
            SessionState::Limited => "limited",
            SessionState::Stopping => "stopping",
            SessionState::Dead => "dead",
            SessionState::Moving => "moving",
            SessionState::Finishing => "finishing",
        }
    }
    pub const ALL: [SessionState; 9] = [
        SessionState::Idle,
        SessionState::Starting,
        SessionState::Working,
        SessionState::WaitingInput,
        SessionState::Limited,
        SessionState::Stopping,
        SessionState::Dead,
        SessionState::Moving,
        SessionState::Finishing,
    ];
}

/// What a session is doing for which task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    pub project: PathBuf,
    /// `NAME.md`; on disk as `NAME.md.dispatched` while claimed.
    pub name: String,
    pub priority: Priority,
    pub model: String,
    /// Unix seconds when the launch began.
    pub started: u64,
    /// Worktree mode: the task's own worktree, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<Worktree>,
}

impl TaskRef {
    pub fn queue(&self) -> Queue {
        Queue::new(&self.project)
    }
    /// Where its agent works: its worktree, else the project.
    pub fn cwd(&self) -> &Path {
        self.worktree.as_ref().map_or(&self.project, |w| &w.cwd)
    }
    /// A key unique across projects, for attempt counts.
    pub fn key(&self) -> String {
        task_key(&self.project, &self.name)
    }
}

pub fn task_key(project: &Path, name: &str) -> String {
    format!("{}/{}", project.display(), name)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub name: String,
    pub kind: SessionKind,
    pub state: SessionState,
    /// Unix seconds of the last state change.
    pub since: u64,
    /// The dedicated session's project, or the current task's.
    pub project: Option<PathBuf>,
    pub task: Option<TaskRef>,
    pub account: Option<String>,
    pub claude_session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
    /// Unix seconds of the last sign of life from the agent (event or pane change).
    pub last_activity: u64,
    /// A session that failed a launch rests until then (unix seconds).
    pub cooldown_until: Option<u64>,
    /// Whether SessionStart confirmed the hooks fire in this launch.
    #[serde(default)]
    pub hooks_confirmed: bool,
    /// Times of recent guard blocks, for the circuit breaker (not persisted).
    #[serde(skip)]
    pub recent_blocks: VecDeque<u64>,
    /// Whether a stuck/waiting report was already raised for this state.
    #[serde(skip)]
    pub reported: bool,
    /// The move under way while `Moving` (kept across a crash: a restart
    /// finishes it).
    #[serde(default)]
    pub moving: Option<Move>,
    /// The agent was told once that no one will answer its questions.
    #[serde(default)]
    pub nudged: bool,
}

/// A move of a session's conversation to another account, persisted while
/// it runs: a daemon killed in the middle finishes it when it starts again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// The account it goes to.
    pub to: String,
    /// The account it comes from, when known.
    pub from: Option<String>,
    /// The conversation resumed there.
    pub conversation: String,
    pub project: PathBuf,
    pub task: Option<TaskRef>,
    /// Asked for by the operator (the note says so).
    pub manual: bool,
    /// The state to go back to if the old agent cannot be stopped.
    pub before: SessionState,
}

impl Session {
    pub fn new(name: &str, kind: SessionKind, project: Option<PathBuf>) -> Session {
        let now = now_secs();
        Session {
            name: name.to_string(),
            kind,
            state: SessionState::Idle,
            since: now,
            project,
            task: None,
            account: None,
            claude_session_id: None,
            transcript_path: None,
            last_activity: now,
            cooldown_until: None,
            hooks_confirmed: false,
            recent_blocks: VecDeque::new(),
            reported: false,
            moving: None,
            nudged: false,
        }
    }

    /// Free for a new task: autonomous, idle, out of cooldown.
    pub fn is_free(&self, now: u64) -> bool {
        self.kind == SessionKind::Autonomous
            && self.state == SessionState::Idle
            && self.task.is_none()
            && self.cooldown_until.is_none_or(|t| now >= t)
    }
}

/// What the last poll made of an account's token; [`TokenState::as_str`]
/// is what `state.json`, status and `usage` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Ok,
    Expired,
    Rejected,
    /// The credentials file is missing, unreadable or garbled.
    Missing,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Ok => "ok",
            TokenState::Expired => "expired",
            TokenState::Rejected => "rejected",
            TokenState::Missing => "missing",
        }
    }
}

/// The last usage reading of one account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountStatus {
    pub usable: bool,
    pub five_hour: Option<f64>,
    pub seven_day: Option<f64>,
    pub five_hour_resets: Option<u64>,
    pub seven_day_resets: Option<u64>,
    /// Unix seconds of the last good reading.
    pub read_at: Option<u64>,
    pub error: Option<String>,
    /// No request before this (429 retry-after), unix seconds.
    #[serde(default)]
    pub backoff_until: Option<u64>,
    /// The token's state at the last poll.
    #[serde(default)]
    pub token: Option<TokenState>,
    /// Fingerprint (not the token) of the token the backoff applies to.
    #[serde(default)]
    pub backoff_key: Option<String>,
    /// 429 answers in a row, for the backoff when no `retry-after` is given.
    #[serde(default)]
    pub backoff_strikes: u32,
    /// A `quota_warning` was raised for the current crossing.
    #[serde(default)]
    pub warned: bool,
    /// A session's pane showed a usage limit on this account (a limit the
    /// usage windows may not show): not a failover target before this.
    #[serde(default)]
    pub limited_until: Option<u64>,
}

/// What one notification sink delivered and gave up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkCounts {
    pub sent: u64,
    pub failed: u64,
}

/// Counters for `/metrics`; since the daemon started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub tasks_dispatched: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub launches_failed: u64,
    pub failovers: u64,
    pub failovers_failed: u64,
    pub guard_blocks: u64,
    pub guard_warns: u64,
    pub events_applied: u64,
    pub events_dropped: u64,
    pub notices_dropped: u64,
    /// Notices delivered to a sink (one per sink).
    pub notices_sent: u64,
    /// Notices a sink could not take after every retry.
    pub notices_failed: u64,
    /// Guard blocks per rule (the guard's rule name).
    #[serde(default)]
    pub guard_blocks_by_rule: BTreeMap<String, u64>,
    /// Notices per sink (`telegram`, `webhook 1`) and outcome (`sent`, `failed`).
    #[serde(default)]
    pub notices_by_sink: BTreeMap<String, SinkCounts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub active_account: String,
    pub sessions: BTreeMap<String, Session>,
    /// Failed launches per task key; cleared when the task leaves the inbox.
    pub attempts: BTreeMap<String, u32>,
    pub accounts: BTreeMap<String, AccountStatus>,
    /// Unix seconds of the last failover.
    pub last_failover: Option<u64>,
    pub failover_in_progress: bool,
    /// Why dispatching is paused (no usable account), and until when.
    pub dispatch_paused: Option<String>,
    pub paused_until: Option<u64>,
    /// Why launching is held: the agent failed to start several times in
    /// a row (its command is broken), and until when (then one launch tries
    /// again).
    #[serde(skip)]
    pub launches_paused: Option<String>,
    #[serde(skip)]
    pub launches_paused_until: Option<u64>,
    /// Launches in a row whose agent never came up.
    #[serde(skip)]
    pub start_failures: u32,
    #[serde(skip)]
    pub metrics: Metrics,
}

impl State {
    /// Reads `state.json`. A missing file is a fresh state; a corrupt one is
    /// moved aside (never deleted) and a fresh state returned with a warning.
    pub fn load(path: &Path) -> (State, Option<String>) {
        match fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::default(), None),
            Err(e) => (
                State::default(),
                Some(format!(
                    "cannot read {}: {e}; starting fresh",
                    path.display()
                )),
            ),
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(s) => (s, None),
                Err(e) => {
                    let aside = fsutil::move_aside(path)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|m| format!("(could not move it aside: {m})"));
                    (
                        State::default(),
                        Some(format!(
                            "{} is corrupt ({e}); moved to {aside}, starting fresh",
                            path.display()
                        )),
                    )
                }
            },
        }
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        fsutil::atomic_write(path, &bytes, 0o600)
    }

    /// Brings the session table in line with the config: adds missing pool
    /// sessions, drops autonomous ones no longer configured (when idle), and
    /// makes sure the active account exists.
    pub fn reconcile(&mut self, cfg: &Config) {
        for d in &cfg.pool.dedicated {
            let s = self.sessions.entry(d.name.clone()).or_insert_with(|| {
                Session::new(&d.name, SessionKind::Dedicated, Some(d.project.clone()))
            });
            s.kind = SessionKind::Dedicated;
            s.project = Some(d.project.clone());
        }
        let autonomous = cfg.autonomous_names();
        for n in &autonomous {
            self.sessions
                .entry(n.clone())
                .or_insert_with(|| Session::new(n, SessionKind::Autonomous, None));
        }
        self.sessions.retain(|name, s| {
            let configured =
                autonomous.contains(name) || cfg.pool.dedicated.iter().any(|d| &d.name == name);
            configured || s.task.is_some()
        });
        if cfg.account(&self.active_account).is_none() {
            self.active_account = cfg.accounts[0].name.clone();
        }
        for a in &cfg.accounts {
            self.accounts
                .entry(a.name.clone())
                .or_insert_with(|| AccountStatus {
                    usable: true,
                    ..AccountStatus::default()
                });
        }
        self.accounts.retain(|n, _| cfg.account(n).is_some());
    }

    /// The session that holds a claim on this task, if any.
    pub fn owner_of(&self, project: &Path, name: &str) -> Option<&Session> {
        self.sessions.values().find(|s| {
            s.task
                .as_ref()
                .is_some_and(|t| t.project == project && t.name == name)
        })
    }

    /// The `status --json` / `GET /status` document (INTERFACE.md).
    pub fn status_json(&self, cfg: &Config) -> serde_json::Value {
        use serde_json::json;
        let now = now_secs();
        let sessions: Vec<_> = self
            .sessions
            .values()
            .map(|s| {
                let wt = s.task.as_ref().and_then(|t| t.worktree.as_ref());
                json!({
                    "name": s.name,
                    "kind": s.kind,
                    "state": s.state.as_str(),
                    "task": s.task.as_ref().map(|t| t.name.clone()),
                    "project": s.task.as_ref().map(|t| t.project.clone()).or(s.project.clone()),
                    "account": s.account,
                    "claude_session_id": s.claude_session_id,
                    "since": rfc3339(s.since),
                    // After a failed launch a session rests; say until when.
                    "resting_until": s.cooldown_until.filter(|t| *t > now).map(rfc3339),
                    "model": s.task.as_ref().map(|t| t.model.clone()),
                    "last_activity": rfc3339(s.last_activity),
                    "worktree": wt.map(|w| w.dir.clone()),
                    "branch": wt.map(|w| w.branch.clone()),
                })
            })
            .collect();
        let accounts: Vec<_> = cfg
            .accounts
            .iter()
            .map(|a| {
                let st = self.accounts.get(&a.name).cloned().unwrap_or_default();
                json!({
                    "name": a.name,
                    "active": a.name == self.active_account,
                    "usable": st.usable,
                    "five_hour": st.five_hour,
                    "seven_day": st.seven_day,
                    "five_hour_resets_at": st.five_hour_resets.map(rfc3339),
                    "seven_day_resets_at": st.seven_day_resets.map(rfc3339),
                    "reading_age_s": st.read_at.map(|t| now.saturating_sub(t)),
                    "error": st.error,
                    "token": st.token.map(TokenState::as_str),
                    "backoff_until": st.backoff_until.map(rfc3339),
                })
            })
            .collect();
        let projects: Vec<_> = cfg
            .project_list()
            .iter()
            .map(|p| {
                let q = Queue::new(p);
                let count = |d: &Path| -> usize {
                    fs::read_dir(d)
                        .map(|rd| {
                            rd.filter_map(Result::ok)
                                .filter(|e| !e.file_name().to_string_lossy().ends_with(".error"))
                                .count()
                        })
                        .unwrap_or(0)
                };
                json!({
                    "path": p,
                    "pending": q.pending_names().map(|v| v.len()).unwrap_or(0),
                    "dispatched": q.dispatched_names().map(|v| v.len()).unwrap_or(0),
                    "failed": count(&q.failed_dir()),
                })
            })
            .collect();
        json!({
            // Changes only when a field changes meaning (INTERFACE.md).
            "schema": STATUS_SCHEMA,
            "version": env!("CARGO_PKG_VERSION"),
            "active_account": self.active_account,
            "failover_in_progress": self.failover_in_progress,
            "last_failover": self.last_failover.map(rfc3339),
            "dispatch_paused": self.dispatch_paused,
            "launches_paused": self.launches_paused,
            "sessions": sessions,
            "accounts": accounts,
            "projects": projects,
        })
    }
}

/// An exclusive lock on the state dir, held for the daemon's life: a second
/// daemon on the same state dir refuses to start.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    Held(String),
    Io(io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(who) => write!(
                f,
                "another claude-failover daemon ({who}) holds this state dir"
            ),
            LockError::Io(e) => write!(f, "cannot lock the state dir: {e}"),
        }
    }
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        fs::create_dir_all(state_dir).map_err(LockError::Io)?;
        let path = state_dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let who = fs::read_to_string(&path).unwrap_or_default();
                let who = who.trim();
                return Err(LockError::Held(if who.is_empty() {
                    "pid unknown".into()
                } else {
                    format!("pid {who}")
                }));
            }
            Err(fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        file.set_len(0).map_err(LockError::Io)?;
        let _ = writeln!(file, "{}", std::process::id());
        Ok(StateLock { _file: file })
    }
}

/// The `schema` of the status document.
pub const STATUS_SCHEMA: u32 = 1;

/// The saved state for the CLI, read only: no lock, a corrupt file
/// reported and left where it is, a missing one an empty state. The note
/// says what was not as expected.
pub fn read_saved(cfg: &Config) -> (State, Option<String>) {
    let path = state_path(cfg);
    let fresh = || State {
        active_account: cfg.accounts[0].name.clone(),
        ..State::default()
    };
    match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
            Ok(st) => (st, None),
            Err(e) => (
                fresh(),
                Some(format!(
                    "{} cannot be read as a state ({e})",
                    path.display()
                )),
            ),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (
            fresh(),
            Some(format!("no saved state at {}", path.display())),
        ),
        Err(e) => (
            fresh(),
            Some(format!("cannot read {}: {e}", path.display())),
        ),
    }
}

pub fn state_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("state.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_state_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        fs::write(&p, "{not json").unwrap();
        let (s, warn) = State::load(&p);
        assert!(s.sessions.is_empty());
        assert!(warn.unwrap().contains("corrupt"));
        assert!(!p.exists());
        let aside: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0]
            .to_string_lossy()
            .starts_with("state.json.corrupt-"));
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut s = State {
            active_account: "backup".into(),
            ..State::default()
        };
        s.sessions
            .insert("a".into(), Session::new("a", SessionKind::Autonomous, None));
        s.save(&p).unwrap();
        let (t, warn) = State::load(&p);
        assert!(warn.is_none());
        assert_eq!(t.active_account, "backup");
        assert!(t.sessions.contains_key("a"));
    }

    #[test]
    fn token_states_are_written_as_their_words() {
        for t in [
            TokenState::Ok,
            TokenState::Expired,
            TokenState::Rejected,
            TokenState::Missing,
        ] {
            let st = AccountStatus {
                token: Some(t),
                ..AccountStatus::default()
            };
            let v = serde_json::to_value(&st).unwrap();
            assert_eq!(v["token"], t.as_str());
            let back: AccountStatus = serde_json::from_value(v).unwrap();
            assert_eq!(back.token, Some(t));
        }
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = StateLock::acquire(dir.path()).unwrap();
        match StateLock::acquire(dir.path()) {
            Err(LockError::Held(who)) => assert!(who.contains(&std::process::id().to_string())),
            other => panic!("expected Held, got {other:?}"),
        }
    }
}
