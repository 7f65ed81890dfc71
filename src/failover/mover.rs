//! The move worker: which sessions need moving, and moving one: `Moving`
//! while the old agent is stopped (`/exit`, SIGTERM, never SIGKILL) and the
//! conversation resumed with `--resume <id>` under the new account.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{note, Job, Report, PARALLEL};
use crate::bus::Ctx;
use crate::config::{AccountConfig, Config};
use crate::launch::{self, Conversation, Launch, LaunchError};
use crate::lifecycle::{self, Event, Move};
use crate::state::{Session, SessionKind, SessionState};
use crate::tmux::{PaneInfo, Tmux, TmuxError};

/// Foreground programs that mean "the operator's shell, no agent".
const SHELLS: &[&str] = &[
    "bash", "zsh", "sh", "dash", "fish", "ksh", "mksh", "tcsh", "csh", "login",
];

/// Why one session was not moved; its `Display` is what is logged and
/// notified.
#[derive(Debug)]
pub(super) enum MoveError {
    /// Nothing to resume from: no conversation id, or no project.
    Unknown(&'static str),
    /// The old agent did not stop; the session stays on `from`.
    Stop {
        from: String,
        why: String,
    },
    /// The dedicated session's dead shell could not be restarted.
    Shell(TmuxError),
    /// The agent did not start on the new account; the session stays
    /// `Moving` for the retry.
    Launch(LaunchError),
    Panicked,
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveError::Unknown(what) => f.write_str(what),
            MoveError::Stop { from, why } => write!(f, "cannot stop it on {from}: {why}"),
            MoveError::Shell(e) => write!(f, "cannot restart the shell: {e}"),
            MoveError::Launch(e) => write!(f, "{e}"),
            MoveError::Panicked => f.write_str("the move panicked"),
        }
    }
}

impl From<LaunchError> for MoveError {
    fn from(e: LaunchError) -> Self {
        MoveError::Launch(e)
    }
}

enum Need {
    No,
    Move,
    /// The dispatcher is still launching it: look again shortly.
    Later,
}

fn is_shell(cmd: &str) -> bool {
    let c = cmd.trim_start_matches('-');
    SHELLS.contains(&c)
}

/// Whether a dedicated session's pane runs an agent.
fn runs_agent(cfg: &Config, pane: &PaneInfo) -> bool {
    if pane.dead || is_shell(&pane.current_command) {
        return false;
    }
    let ours = Path::new(&cfg.agent.command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = pane.current_command.as_str();
    c == ours || c == "node" || c.contains("claude")
}

fn needs_move(cfg: &Config, s: &Session, job: &Job, pane: Option<&PaneInfo>) -> Need {
    use SessionState::*;
    let on_target = s.account.as_deref() == Some(job.to.as_str());
    if on_target && !(job.limited_on_target && s.state == Limited) {
        return Need::No;
    }
    let retrying = job.failed_before.contains(&s.name);
    match s.kind {
        _ if s.state == Moving || s.moving.is_some() => Need::Move,
        SessionKind::Autonomous => {
            if s.task.is_none() {
                return Need::No;
            }
            match s.state {
                Working | WaitingInput | Limited => Need::Move,
                Starting | Finishing if retrying => Need::Move,
                Starting | Finishing => Need::Later,
                _ => Need::No,
            }
        }
        SessionKind::Dedicated => {
            if s.state == Limited || retrying {
                return Need::Move;
            }
            let agent = pane.is_some_and(|p| runs_agent(cfg, p));
            if agent && s.claude_session_id.is_some() {
                Need::Move
            } else {
                Need::No
            }
        }
    }
}

pub(super) fn run_job(ctx: &Ctx, job: Job) -> Report {
    let t0 = Instant::now();
    let cfg = ctx.config();
    let mut report = Report {
        job: job.clone(),
        moved: Vec::new(),
        failed: Vec::new(),
        later: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let Some(to) = cfg.account(&job.to).cloned() else {
        log::error!("account {} is not configured", job.to);
        return report;
    };
    for a in &cfg.accounts {
        match crate::transcripts::share(&a.config_dir, &cfg.failover.shared_transcripts, &a.name) {
            Ok(r) if r.already => {}
            Ok(r) => log::info!(
                "{}/projects now links to {} ({} files merged, {} kept under conflict names{})",
                a.config_dir.display(),
                cfg.failover.shared_transcripts.display(),
                r.moved,
                r.conflicts.len(),
                r.aside
                    .map(|p| format!(", leftovers in {}", p.display()))
                    .unwrap_or_default()
            ),
            Err(e) => log::error!(
                "cannot link {}/projects to {}: {e}; resuming there may fail",
                a.config_dir.display(),
                cfg.failover.shared_transcripts.display()
            ),
        }
    }
    let panes = ctx.tmux.panes().unwrap_or_default();
    let sessions: Vec<Session> = ctx.state().sessions.values().cloned().collect();
    let mut todo = Vec::new();
    for s in sessions {
        if job.only.as_ref().is_some_and(|o| !o.contains(&s.name)) {
            continue;
        }
        match needs_move(&cfg, &s, &job, panes.get(&s.name)) {
            Need::Move => todo.push(s),
            Need::Later => report.later.push(s.name.clone()),
            Need::No => {}
        }
    }
    if !todo.is_empty() {
        log::info!(
            "moving {} session(s) to {}: {}",
            todo.len(),
            to.name,
            todo.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for chunk in todo.chunks(PARALLEL) {
        let results: Vec<(String, Result<(), MoveError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|s| {
                    let (cfg, to, job) = (&cfg, &to, &job);
                    (
                        s.name.clone(),
                        scope.spawn(move || move_one(ctx, cfg, s, to, job)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| (n, h.join().unwrap_or(Err(MoveError::Panicked))))
                .collect()
        });
        for (n, r) in results {
            match r {
                Ok(()) => report.moved.push(n),
                Err(e) => {
                    log::error!("{n}: not moved to {}: {e}", to.name);
                    report.failed.push((n, e));
                }
            }
        }
    }
    report.elapsed = t0.elapsed();
    report
}

/// Moves one session's conversation to `to`: `Moving` (persisted) while
/// the old agent is stopped and the conversation resumed on `to`. A move
/// cut short by a restart is picked up from its record.
fn move_one(
    ctx: &Ctx,
    cfg: &Config,
    s: &Session,
    to: &AccountConfig,
    job: &Job,
) -> Result<(), MoveError> {
    let name = s.name.as_str();
    let earlier = s.moving.as_ref();
    let id = earlier
        .map(|m| m.conversation.clone())
        .or_else(|| s.claude_session_id.clone())
        .or_else(|| crate::checkpoint::read_session_id(&cfg.state_dir, name))
        .ok_or(MoveError::Unknown(
            "no conversation id to resume (no SessionStart seen, no checkpoint)",
        ))?;
    // A task in a worktree resumes there: its transcript is filed by cwd.
    let project = earlier
        .map(|m| m.project.clone())
        .or_else(|| s.task.as_ref().map(|t| t.cwd().to_path_buf()))
        .or_else(|| s.project.clone())
        .ok_or(MoveError::Unknown("no project known"))?;
    let in_worktree = earlier
        .and_then(|m| m.task.as_ref())
        .or(s.task.as_ref())
        .is_some_and(|t| t.worktree.is_some());
    let project = std::fs::canonicalize(&project).unwrap_or(project);
    let model = s
        .task
        .as_ref()
        .map(|t| t.model.clone())
        .unwrap_or_else(|| cfg.agent.models.default.clone());
    let from = earlier
        .and_then(|m| m.from.clone())
        .or_else(|| s.account.clone());
    let autonomous = s.kind == SessionKind::Autonomous;
    let mv = Move {
        to: to.name.clone(),
        from: from.clone(),
        conversation: id.clone(),
        project: project.clone(),
        task: s.task.clone(),
        manual: job.manual,
        before: s.state,
    };
    lifecycle::handle(ctx, name, Event::MoveBegin(mv));
    let from = from.unwrap_or_else(|| "?".into());
    let stopped = if autonomous || pane_is_agent(&ctx.tmux, name) {
        crate::stop::stop_agent(&ctx.tmux, name, cfg.failover.stop_timeout.get())
    } else {
        stop_in_shell(&ctx.tmux, name, cfg.failover.stop_timeout.get())
    };
    if let Err(why) = stopped {
        lifecycle::handle(ctx, name, Event::MoveAborted);
        return Err(MoveError::Stop { from, why });
    }
    // From here a failure leaves it `Moving`: the retry (or a restart)
    // resumes the conversation.
    let l = Launch {
        session: name,
        project: &project,
        in_worktree,
        account: to,
        model: &model,
        conversation: Conversation::Resume(id.clone()),
    };
    let transcript = if autonomous {
        relaunch(ctx, cfg, &l)?
    } else {
        relaunch_dedicated(ctx, cfg, &l)?
    };
    let text = note(&from, &to.name, job.manual);
    if let Err(e) = launch::deliver(&ctx.tmux, name, &text, Some(&transcript)) {
        log::warn!(
            "{name}: resumed on {}, but the note was not taken: {e}",
            to.name
        );
    }
    lifecycle::handle(ctx, name, Event::MoveDone { transcript });
    log::info!("{name}: conversation {id} moved from {from} to {}", to.name);
    Ok(())
}

/// Relaunches an autonomous session's conversation under `to`. When only
/// the guard's redeploy fails and its earlier copy is in place, the launch
/// goes on with that copy (logged).
fn relaunch(ctx: &Ctx, cfg: &Config, l: &Launch) -> Result<PathBuf, LaunchError> {
    let (name, project) = (l.session, l.project);
    match launch::start_agent(cfg, &ctx.tmux, l) {
        Ok(p) => Ok(p),
        Err(LaunchError::Guard(e)) if guard_in_place(project) => {
            warn_guard_kept(name, project, &e);
            start_with_guard_in_place(cfg, &ctx.tmux, l)
        }
        Err(e) => Err(e),
    }
}

fn warn_guard_kept(name: &str, project: &Path, e: &dyn fmt::Display) {
    log::warn!(
        "{name}: cannot redeploy the guard in {} ({e}); the copy in place stays",
        project.display()
    );
}

fn guard_in_place(project: &Path) -> bool {
    project
        .join(".claude/hooks")
        .join(crate::guard::HOOK_FILE)
        .is_file()
}

/// `launch::start_agent` without the guard deployment.
fn start_with_guard_in_place(
    cfg: &Config,
    tmux: &Tmux,
    l: &Launch,
) -> Result<PathBuf, LaunchError> {
    crate::account::prepare(&l.account.config_dir, l.project)
        .map_err(|e| LaunchError::Account(e.to_string()))?;
    let pinned = cfg.state_dir.join("guard-settings.json");
    let settings = pinned.is_file().then_some(pinned.as_path());
    launch::agent_command(
        cfg,
        l.account,
        l.session,
        l.model,
        &l.conversation,
        settings,
    )
    .respawn(tmux, l.session, l.project)?;
    launch::wait_ready(cfg, tmux, l.session)?;
    Ok(crate::account::transcript_path(
        &l.account.config_dir,
        l.project,
        l.conversation.id(),
    ))
}

/// The command line typed into a dedicated session's shell, every value
/// shell-quoted.
pub fn dedicated_command_line(
    cfg: &Config,
    to: &AccountConfig,
    session: &str,
    project: &Path,
    model: &str,
    id: &str,
) -> String {
    let conversation = Conversation::Resume(id.to_string());
    launch::agent_command(cfg, to, session, model, &conversation, None).shell_line(project)
}

/// Restarts a dedicated session's agent in its own shell (respawning the
/// shell first if the pane is dead) and waits for its input line.
fn relaunch_dedicated(ctx: &Ctx, cfg: &Config, l: &Launch) -> Result<PathBuf, MoveError> {
    let (tmux, name, project, to) = (&ctx.tmux, l.session, l.project, l.account);
    let id = l.conversation.id();
    crate::account::prepare(&to.config_dir, project)
        .map_err(|e| LaunchError::Account(e.to_string()))?;
    if let Err(e) = crate::guard::deploy(project, cfg.guard.mode, Some(&cfg.events_dir())) {
        warn_guard_kept(name, project, &e);
    }
    let info = tmux.pane_info(name).map_err(LaunchError::Tmux)?;
    if info.dead {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        tmux.respawn(name, project, &[], &[OsStr::new(&shell), OsStr::new("-l")])
            .map_err(MoveError::Shell)?;
    }
    let line = dedicated_command_line(cfg, to, name, project, l.model, id);
    tmux.send_key(name, "C-u").map_err(LaunchError::Tmux)?;
    tmux.send_literal(name, &line).map_err(LaunchError::Tmux)?;
    tmux.send_key(name, "Enter").map_err(LaunchError::Tmux)?;
    launch::wait_ready(cfg, tmux, name)?;
    Ok(crate::account::transcript_path(&to.config_dir, project, id))
}

/// Whether the pane's own process is the agent (started without a shell):
/// then it dies (remain-on-exit) when the agent leaves.
fn pane_is_agent(tmux: &Tmux, name: &str) -> bool {
    tmux.pane_info(name)
        .is_ok_and(|p| p.dead || !is_shell(&p.current_command) && foreground_pid(p.pid) == p.pid)
}

/// The foreground process of the pane's terminal (`tpgid` of its shell).
fn foreground_pid(pane_pid: Option<u32>) -> Option<u32> {
    let pid = pane_pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let tpgid: i64 = rest.split_whitespace().nth(5)?.parse().ok()?;
    u32::try_from(tpgid).ok().filter(|p| *p > 0)
}

/// Stops an agent that runs in the operator's shell: the stop sequence,
/// with SIGTERM to the terminal's foreground process (never the shell,
/// never SIGKILL). Done when the shell is in the foreground again.
fn stop_in_shell(tmux: &Tmux, name: &str, timeout: Duration) -> Result<(), String> {
    let back = crate::stop::asking(|| {
        tmux.pane_info(name)
            .map_or(true, |p| p.dead || is_shell(&p.current_command))
    });
    let sigterm = || {
        let Ok(info) = tmux.pane_info(name) else {
            return;
        };
        if let Some(fg) = foreground_pid(info.pid).filter(|fg| Some(*fg) != info.pid) {
            launch::sigterm(fg, name);
        }
    };
    crate::stop::stop_with(tmux, name, timeout, back, sigterm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::failover::limit_is_history;

    #[test]
    fn limit_above_the_note_is_history() {
        let p = Pattern::new(crate::config::DEFAULT_LIMIT_PATTERN).unwrap();
        let old = "● You've hit your session limit · resets 8:12pm (UTC)\n";
        let n = note("main", "backup", false);
        assert!(limit_is_history(&format!("{old}\n❯ {n}\n● Done.\n"), &p));
        assert!(!limit_is_history(&format!("❯ {n}\n{old}"), &p));
        assert!(!limit_is_history(old, &p));
    }

    #[test]
    fn dedicated_line_quotes_everything() {
        let cfg = Config::parse(
            "agent: { command: \"/opt/my claude/claude\" }\nstate_dir: /s\n",
            "t",
        )
        .unwrap();
        let to = AccountConfig {
            name: "b".into(),
            config_dir: "/home/o/.claude it's".into(),
        };
        let line =
            dedicated_command_line(&cfg, &to, "ccl-0", Path::new("/srv/a b"), "sonnet", "0b3c");
        assert_eq!(
            line,
            "cd '/srv/a b' && env -u ANTHROPIC_API_KEY -u ANTHROPIC_AUTH_TOKEN -u CLAUDE_CODE_OAUTH_TOKEN \
             CLAUDE_CONFIG_DIR='/home/o/.claude it'\\''s' CLAUDE_FAILOVER_SESSION='ccl-0' \
             CLAUDE_FAILOVER_EVENTS='/s/events' DISABLE_AUTOUPDATER=1 '/opt/my claude/claude' \
             --model 'sonnet' --dangerously-skip-permissions --resume '0b3c'"
        );
    }

    #[test]
    fn shells_are_not_agents() {
        assert!(is_shell("bash") && is_shell("-zsh") && !is_shell("claude"));
    }
}
