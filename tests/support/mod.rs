//! A small builder for end-to-end tests: a temp dir with projects, accounts,
//! a private tmux server (`tmux -S`), the stand-in claude, and a config.
//! The tmux server is killed when the `Env` drops.
#![allow(dead_code)]

pub mod usage;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use claude_failover::config::Config;
use claude_failover::tmux::Tmux;
use serde_json::Value;
use tempfile::TempDir;

pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-claude")
}

/// Waits for `cond` with a deadline; panics naming `what` when it is not met.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs git in `dir` as a test's stand-in user; its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The temp dir's physical path (claude's cwd is the physical path).
fn root_of(dir: &TempDir) -> PathBuf {
    fs::canonicalize(dir.path()).unwrap()
}

pub struct Env {
    pub dir: TempDir,
    pub sock: PathBuf,
    pub state_dir: PathBuf,
    pub projects: Vec<PathBuf>,
    pub accounts: Vec<(String, PathBuf)>,
    pub sessions: u32,
    /// Appended to the generated YAML (top-level keys not generated below).
    pub extra: String,
    pub watcher_interval: &'static str,
    pub max_attempts: u32,
    /// `dispatcher.per_project`; 0 (no limit) unless a test is about it.
    pub per_project: u32,
    pub guard: String,
    /// Extra lines under `pool:` (e.g. `  dedicated: [...]`).
    pub pool_extra: String,
    /// Extra lines under `agent:` (e.g. `  message: '{body}'`).
    pub agent_extra: String,
    /// The agent command; the stand-in claude unless set.
    pub agent_command: Option<PathBuf>,
    /// The `control:` mapping; disabled unless set.
    pub control: String,
}

impl Env {
    pub fn new(projects: usize, sessions: u32) -> Env {
        // The daemon's log, shown with a failing test's output.
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .is_test(true)
            .try_init();
        let dir = tempfile::Builder::new().prefix("cf-e2e").tempdir().unwrap();
        // Canonical: claude's cwd is the physical path.
        let root = fs::canonicalize(dir.path()).unwrap();
        let projects: Vec<PathBuf> = (0..projects)
            .map(|i| {
                let p = root.join(format!("proj{i}"));
                fs::create_dir_all(p.join(".agent-queue/inbox")).unwrap();
                p
            })
            .collect();
        let accounts = ["main", "backup"]
            .iter()
            .map(|n| {
                let d = root.join(format!("acct-{n}"));
                // Readable credentials: an account without is not usable.
                usage::creds(
                    &d,
                    &format!("tok-{n}"),
                    claude_failover::timefmt::now_ms() + 3_600_000,
                );
                (n.to_string(), d)
            })
            .collect();
        Env {
            sock: root.join("tmux.sock"),
            state_dir: root.join("state"),
            projects,
            accounts,
            sessions,
            extra: String::new(),
            watcher_interval: "300ms",
            max_attempts: 3,
            per_project: 0,
            guard: "{ mode: enforce }".into(),
            pool_extra: String::new(),
            agent_extra: String::new(),
            agent_command: None,
            control: "{ listen: '' }".into(),
            dir,
        }
    }

    pub fn root(&self) -> PathBuf {
        root_of(&self.dir)
    }

    pub fn yaml(&self) -> String {
        let failover = format!(
            "{{ shared_transcripts: '{}', stop_timeout: 4s }}",
            self.root().join("shared").display()
        );
        self.yaml_with(
            "{ endpoint: 'http://127.0.0.1:9/usage' }",
            &failover,
            &self.extra,
        )
    }

    /// The config with these `quota:` and `failover:` values (flow
    /// mappings) and `extra` top-level lines.
    pub fn yaml_with(&self, quota: &str, failover: &str, extra: &str) -> String {
        let projects: Vec<String> = self
            .projects
            .iter()
            .map(|p| format!("  - '{}'", p.display()))
            .collect();
        let accounts: Vec<String> = self
            .accounts
            .iter()
            .map(|(n, d)| format!("  - {{ name: {n}, config_dir: '{}' }}", d.display()))
            .collect();
        format!(
            "state_dir: '{state}'\n\
             tmux: {{ socket: '{sock}' }}\n\
             agent:\n  command: '{fake}'\n  prompt_timeout: 10s\n{agent_extra}\
             projects:\n{projects}\n\
             pool:\n  autonomous: {{ prefix: t-, start_index: 1, max: {sessions} }}\n{pool_extra}\
             dispatcher: {{ scan_interval: 1h, cooldown: 1s, max_attempts: {attempts}, per_project: {per_project} }}\n\
             watcher: {{ interval: {wi} }}\n\
             accounts:\n{accounts}\n\
             quota: {quota}\n\
             failover: {failover}\n\
             control: {control}\n\
             guard: {guard}\n{extra}",
            state = self.state_dir.display(),
            sock = self.sock.display(),
            fake = self
                .agent_command
                .clone()
                .unwrap_or_else(fake_claude)
                .display(),
            agent_extra = self.agent_extra,
            control = self.control,
            projects = projects.join("\n"),
            sessions = self.sessions,
            pool_extra = self.pool_extra,
            attempts = self.max_attempts,
            per_project = self.per_project,
            wi = self.watcher_interval,
            accounts = accounts.join("\n"),
            quota = quota,
            failover = failover,
            guard = self.guard,
            extra = extra,
        )
    }

    pub fn config(&self) -> Config {
        Config::parse(&self.yaml(), "test.yaml").unwrap_or_else(|e| panic!("{e}\n{}", self.yaml()))
    }

    pub fn write_config(&self) -> PathBuf {
        let p = self.root().join("config.yaml");
        fs::write(&p, self.yaml()).unwrap();
        p
    }

    pub fn tmux(&self) -> Tmux {
        Tmux::new(Some(self.sock.clone()))
    }

    pub fn inbox(&self, project: usize) -> PathBuf {
        self.projects[project].join(".agent-queue/inbox")
    }

    pub fn queue_dir(&self, project: usize, which: &str) -> PathBuf {
        self.projects[project].join(".agent-queue").join(which)
    }

    /// Writes a task atomically (temp + rename), as a well-behaved writer does.
    pub fn task(&self, project: usize, name: &str, content: &str) -> PathBuf {
        let inbox = self.inbox(project);
        let tmp = inbox.join(format!(".{name}.tmp"));
        fs::write(&tmp, content).unwrap();
        let p = inbox.join(name);
        fs::rename(&tmp, &p).unwrap();
        p
    }

    /// Names of the files in a project's queue folder (sorted).
    pub fn files(&self, project: usize, which: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.queue_dir(project, which))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Records of the stand-in's log for an account (`event` = message, start, …).
    pub fn log(&self, account: usize, event: &str) -> Vec<Value> {
        let p = self.accounts[account].1.join("fake-claude/log.jsonl");
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// The messages the stand-in received on an account.
    pub fn messages(&self, account: usize) -> Vec<String> {
        self.log(account, "message")
            .iter()
            .map(|v| v["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn tmux_cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock);
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.tmux_cmd().arg("kill-server").output();
    }
}
