//! The launch checks (`doctor`, `run`'s gate, `check-config`'s warnings)
//! against real temp dirs, real programs, a real port and a real lock.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use claude_failover::config::Config;
use claude_failover::doctor::{self, Finding, Level, Scope};
use tempfile::TempDir;

struct Setup {
    dir: TempDir,
    agent: String,
    listen: String,
    extra: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proj", "acct"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let s = Setup {
            agent: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fake-claude")
                .display()
                .to_string(),
            listen: "127.0.0.1:0".into(),
            extra: String::new(),
            dir,
        };
        s.credentials(u64::MAX / 2);
        s
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn credentials(&self, expires_at_ms: u64) {
        fs::write(
            self.root().join("acct/.credentials.json"),
            format!(r#"{{"claudeAiOauth":{{"accessToken":"sk-ant-oat01-x","expiresAt":{expires_at_ms}}}}}"#),
        )
        .unwrap();
    }

    fn config(&self) -> Config {
        let r = self.root();
        let yaml = format!(
            "state_dir: {r}/state\nagent:\n  command: {agent}\nprojects: [{r}/proj]\naccounts:\n  - name: main\n    config_dir: {r}/acct\ncontrol:\n  listen: \"{listen}\"\n  token_file: {r}/token\n{extra}",
            r = r.display(),
            agent = self.agent,
            listen = self.listen,
            extra = self.extra,
        );
        Config::parse(&yaml, "c.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn find(&self, scope: Scope, check: &str) -> Finding {
        let found = doctor::checks(&self.config(), scope);
        found
            .iter()
            .find(|f| f.check == check)
            .cloned()
            .unwrap_or_else(|| panic!("no {check} in {found:?}"))
    }
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// The finding has this level and its message says `part`.
fn says(f: &Finding, level: Level, part: &str) {
    assert_eq!(f.level, level, "{}", f.message);
    assert!(f.message.contains(part), "{}", f.message);
}

#[test]
fn a_ready_machine_passes_every_check() {
    let s = Setup::new();
    let found = doctor::checks(&s.config(), Scope::Full);
    let bad: Vec<_> = found.iter().filter(|f| f.level != Level::Ok).collect();
    assert!(bad.is_empty(), "{bad:?}");
    let agent = s.find(Scope::Full, "agent");
    assert!(
        agent
            .message
            .starts_with("agent 2.1.197 (Claude Code) at /"),
        "{}",
        agent.message
    );
    assert!(s.find(Scope::Full, "tmux").message.starts_with("tmux "));
    assert!(doctor::preflight(&s.config()).unwrap().is_empty());
    let text = doctor::report(&found);
    assert!(text.lines().all(|l| l.starts_with("ok    ")), "{text}");
    assert_eq!(doctor::report_json(&found)["ok"], true);
}

#[test]
fn a_missing_agent_says_what_to_do() {
    let mut s = Setup::new();
    s.agent = "no-such-claude-here".into();
    let f = s.find(Scope::Launch, "agent");
    assert_eq!(f.level, Level::Fail);
    assert_eq!(
        f.message,
        "`no-such-claude-here` not found on PATH: install Claude Code or set agent.command"
    );
    assert_eq!(doctor::preflight(&s.config()).unwrap_err(), f.message);
    assert_eq!(s.find(Scope::Config, "agent").level, Level::Warn);
}

#[test]
fn an_agent_that_fails_its_version_is_reported_in_words() {
    let mut s = Setup::new();
    s.agent = script(
        &s.root(),
        "broken-claude",
        "echo 'sh: node: not found' >&2; exit 127",
    );
    let f = s.find(Scope::Full, "agent");
    says(
        &f,
        Level::Fail,
        "--version` exited with status 127: command not found (sh: node: not found)",
    );
    assert!(!f.message.contains("Some("), "{}", f.message);
}

#[test]
fn accounts_report_credentials_and_expiry() {
    let s = Setup::new();
    s.credentials(1_000);
    let f = s.find(Scope::Full, "account main");
    says(&f, Level::Warn, "token expired at 1970-01-01T00:00:01Z");
    fs::remove_file(s.root().join("acct/.credentials.json")).unwrap();
    let f = s.find(Scope::Full, "account main");
    assert_eq!(f.level, Level::Warn);
    assert!(f.message.contains("then /login"), "{}", f.message);
    let err = doctor::preflight(&s.config()).unwrap_err();
    assert_eq!(
        err,
        "no account has usable credentials: log in to at least one (see above)"
    );
}

#[test]
fn a_missing_project_fails_run_and_warns_check_config() {
    let s = Setup::new();
    fs::remove_dir(s.root().join("proj")).unwrap();
    let check = format!("project {}", s.root().join("proj").display());
    let f = s.find(Scope::Launch, &check);
    assert_eq!(f.level, Level::Fail);
    assert!(
        f.message
            .ends_with("does not exist: create it, or fix projects[0]"),
        "{}",
        f.message
    );
    assert_eq!(s.find(Scope::Config, &check).level, Level::Warn);
    assert!(doctor::preflight(&s.config()).is_err());
}

#[test]
fn a_taken_port_fails_run_and_check_config_binds_nothing() {
    let mut s = Setup::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    s.listen = taken.local_addr().unwrap().to_string();
    let f = s.find(Scope::Launch, "control port");
    says(&f, Level::Fail, " is taken: stop what listens there");
    let cfg = s.config();
    assert!(doctor::checks(&cfg, Scope::Config)
        .iter()
        .all(|f| f.check != "control port"));
}

#[test]
fn a_running_daemon_holds_the_state_dir() {
    let s = Setup::new();
    let _lock = claude_failover::state::StateLock::acquire(&s.root().join("state")).unwrap();
    let f = s.find(Scope::Launch, "state dir");
    assert_eq!(f.level, Level::Fail);
    assert!(
        f.message.contains(&format!(
            "a daemon (pid {}) already runs on it",
            std::process::id()
        )),
        "{}",
        f.message
    );
    assert_eq!(s.find(Scope::Full, "state dir").level, Level::Warn);
}

#[test]
fn a_bad_token_file_is_named() {
    let s = Setup::new();
    fs::write(s.root().join("token"), "short\n").unwrap();
    let f = s.find(Scope::Launch, "token file");
    says(&f, Level::Fail, "delete the file to have one made");
    fs::write(s.root().join("token"), "0123456789abcdef0123\n").unwrap();
    fs::set_permissions(s.root().join("token"), fs::Permissions::from_mode(0o644)).unwrap();
    let f = s.find(Scope::Launch, "token file");
    assert_eq!(f.level, Level::Warn);
    assert!(
        f.message.ends_with("(mode 644): chmod 600 it"),
        "{}",
        f.message
    );
}
