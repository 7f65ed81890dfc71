//! The operator's day through the real binary (issue 14): a first run that
//! explains itself (`doctor`, `run`'s gate before any tmux session), the
//! task commands, a reload that tells the truth, logs for journald, config
//! strictness, the scripting contract, notices in each service's format.
//! Everything on 127.0.0.1, in temp dirs, on a private tmux socket.

#[path = "support/receiver.rs"]
mod receiver;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_claude-failover");
const T: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A fresh machine in a temp dir: one project, one account logged in, the
/// stand-in claude, a private tmux socket.
struct Machine {
    _dir: TempDir,
    root: PathBuf,
    agent: String,
    sessions: u32,
    listen: String,
    /// The `dispatcher:` flow mapping.
    dispatcher: String,
    extra: String,
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.sock())
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("cf-first")
            .tempdir()
            .unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("proj/.agent-queue/inbox")).unwrap();
        fs::create_dir_all(root.join("acct")).unwrap();
        fs::write(
            root.join("acct/.credentials.json"),
            r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-test","expiresAt":4102444800000}}"#,
        )
        .unwrap();
        Machine {
            agent: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fake-claude")
                .display()
                .to_string(),
            sessions: 1,
            listen: "127.0.0.1:0".into(),
            dispatcher: "{ scan_interval: 1h, cooldown: 1s }".into(),
            extra: String::new(),
            _dir: dir,
            root,
        }
    }

    fn sock(&self) -> PathBuf {
        self.root.join("tmux.sock")
    }

    fn yaml(&self) -> String {
        let r = self.root.display();
        format!(
            "state_dir: '{r}/state'\n\
             tmux: {{ socket: '{r}/tmux.sock' }}\n\
             agent:\n  command: '{agent}'\n  prompt_timeout: 10s\n\
             projects: [ '{r}/proj' ]\n\
             pool:\n  autonomous: {{ prefix: fr-, start_index: 1, max: {n} }}\n\
             dispatcher: {dispatcher}\n\
             watcher: {{ interval: 300ms }}\n\
             accounts:\n  - name: main\n    config_dir: '{r}/acct'\n\
             quota: {{ endpoint: 'http://127.0.0.1:9/usage' }}\n\
             failover: {{ shared_transcripts: '{r}/shared' }}\n\
             control: {{ listen: '{listen}', token_file: '{r}/conf/token' }}\n\
             {extra}",
            agent = self.agent,
            n = self.sessions,
            listen = self.listen,
            dispatcher = self.dispatcher,
            extra = self.extra,
        )
    }

    fn config(&self) -> PathBuf {
        let p = self.root.join("config.yaml");
        fs::write(&p, self.yaml()).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(&self.root)
            .env("HOME", &self.root)
            .env_remove("CLAUDE_FAILOVER_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// `claude-failover ARGS -c config.yaml`.
    fn cli(&self, args: &[&str]) -> Output {
        let cfg = self.config();
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-c", cfg.to_str().unwrap()]);
        self.cmd(&a).output().unwrap()
    }

    fn tmux_sessions(&self) -> Vec<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.sock())
            .args(["list-sessions", "-F", "#{session_name}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    fn daemon(&self) -> Daemon {
        let cfg = self.config();
        let log = self.root.join("daemon.log");
        let child = self
            .cmd(&["run", "-c", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            log,
            addr_file: self.root.join("state/control.addr"),
        };
        wait_for("control.addr", || d.addr_file.exists());
        d
    }

    fn token(&self) -> String {
        fs::read_to_string(self.root.join("conf/token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
    addr_file: PathBuf,
}

impl Daemon {
    fn addr(&self) -> SocketAddr {
        fs::read_to_string(&self.addr_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + T;
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request; `(status, body)`.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_debug(s: &str) {
    for bad in ["Some(", "None", "Failed(\"", "[]", "Ok(", "Err("] {
        assert!(!s.contains(bad), "Debug formatting `{bad}` in:\n{s}");
    }
}

// ------------------------------------------------------------- doctor

#[test]
fn doctor_says_what_to_do_and_run_starts_nothing_without_an_agent() {
    let mut m = Machine::new();
    m.agent = "no-such-claude".into();
    let out = m.cli(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains(
            "fail  `no-such-claude` not found on PATH: install Claude Code or set agent.command"
        ),
        "{report}"
    );
    assert!(report.contains("ok    account main: logged in"), "{report}");
    let out = m.cli(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("claude-failover: `no-such-claude` not found on PATH: install Claude Code or set agent.command"),
        "{err}"
    );
    assert!(
        m.tmux_sessions().is_empty(),
        "run created sessions: {:?}",
        m.tmux_sessions()
    );
    no_debug(&err);
}

#[test]
fn doctor_passes_on_a_ready_machine_and_speaks_json() {
    let m = Machine::new();
    let out = m.cli(&["doctor"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("ok    agent 2.1.197 (Claude Code) at /"),
        "{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("ok    tmux ")),
        "{report}"
    );
    let out = m.cli(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "ok"),
        "{v}"
    );
}

#[test]
fn run_refuses_a_taken_port_before_any_session_exists() {
    let mut m = Machine::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    m.listen = taken.local_addr().unwrap().to_string();
    let out = m.cli(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("control port {} is taken", m.listen)),
        "{err}"
    );
    assert!(m.tmux_sessions().is_empty());
}

#[test]
fn run_refuses_when_no_account_is_logged_in() {
    let m = Machine::new();
    fs::remove_file(m.root.join("acct/.credentials.json")).unwrap();
    let out = m.cli(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no account has usable credentials"),
        "{}",
        text(&out.stderr)
    );
    assert!(m.tmux_sessions().is_empty());
}

// -------------------------------------------------------- task commands

#[test]
fn add_tasks_scan_dry_run_and_retry() {
    let m = Machine::new();
    let out = m.cli(&[
        "add",
        "--title",
        "Fix the login",
        "--priority",
        "high",
        "make it load",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = PathBuf::from(text(&out.stdout).trim());
    assert_eq!(
        path,
        m.root.join("proj/.agent-queue/inbox/fix-the-login.md")
    );
    assert!(fs::read_to_string(&path).unwrap().contains("make it load"));
    let mut add = m.cmd(&["add", "-c", m.config().to_str().unwrap(), "-"]);
    add.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = add.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"second task\nfrom stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        text(&out.stdout).trim().ends_with("inbox/second-task.md"),
        "{}",
        text(&out.stdout)
    );

    let out = m.cli(&["tasks"]);
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pending: Vec<&str> = listing.lines().filter(|l| l.contains(".md")).collect();
    assert!(
        pending[0].contains("fix-the-login.md") && pending[0].contains("would start in fr-1"),
        "{listing}"
    );
    assert!(
        pending[1].contains("second-task.md") && pending[1].contains("waits: project busy"),
        "{listing}"
    );
    let out = m.cli(&["scan", "--dry-run"]);
    let dry = text(&out.stdout);
    assert!(
        dry.contains("would start in fr-1") && dry.contains("waits: project busy"),
        "{dry}"
    );
    assert!(m.tmux_sessions().is_empty(), "dry run touched tmux");
    let out = m.cli(&["tasks", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pending"][0]["fate"], "session");
    assert_eq!(v["pending"][1]["fate"], "project_busy");
    no_debug(&listing);

    let failed = m.root.join("proj/.agent-queue/failed");
    fs::create_dir_all(&failed).unwrap();
    fs::write(failed.join("old.md"), "try again\n").unwrap();
    fs::write(
        failed.join("old.md.error"),
        "2026-12-01T10:00:00Z\nthe agent exited with status 127: command not found\n",
    )
    .unwrap();
    let listing = text(&m.cli(&["tasks"]).stdout);
    assert!(
        listing.contains("old.md") && listing.contains("exited with status 127: command not found"),
        "{listing}"
    );
    let out = m.cli(&["retry", "old"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(m.root.join("proj/.agent-queue/inbox/old.md").exists());
    let out = m.cli(&["retry", "old"]);
    assert_eq!(out.status.code(), Some(1));
}

// ------------------------------------------------------------- config

#[test]
fn config_mistakes_are_named_at_their_key_and_line() {
    let mut m = Machine::new();
    m.extra = "quota:\n  five_hour_threshold: 0.9\n".into();
    // the generated `quota:` flow line comes first; replace it.
    let yaml = m
        .yaml()
        .replace("quota: { endpoint: 'http://127.0.0.1:9/usage' }\n", "");
    let cfg = m.root.join("c.yaml");
    fs::write(&cfg, &yaml).unwrap();
    let line = yaml
        .lines()
        .position(|l| l.contains("five_hour_threshold"))
        .unwrap()
        + 1;
    let out = m
        .cmd(&["check-config", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "claude-failover: {}:{line}: quota.five_hour_threshold: 0.9 is a percent, not a fraction: did you mean 90?",
            cfg.display()
        )
    );
    for (bad, want) in [
        (
            "agent:\n  models: { high: sonet }\n",
            "agent.models.high: `sonet` is not a model claude knows: did you mean sonnet?",
        ),
        (
            "watcher:\n  interval: 5 minutes\n",
            "watcher.interval: invalid duration `5 minutes`",
        ),
        (
            "pool:\n  autonomous:\n    max: lots\n",
            "pool.autonomous.max: the text \"lots\", expected a whole number of 0 or more",
        ),
    ] {
        fs::write(&cfg, bad).unwrap();
        let out = m
            .cmd(&["check-config", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(err.contains(want), "{bad}: {err}");
        assert!(!err.contains("u32") && !err.contains("f64"), "{err}");
    }
    fs::write(
        &cfg,
        "control: { listen: 'localhost:7433' }\nprojects: [ /no/such/project ]\n",
    )
    .unwrap();
    let out = m
        .cmd(&["check-config", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: project /no/such/project does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn xdg_config_home_is_honoured_and_the_example_parses() {
    let m = Machine::new();
    let xdg = m.root.join("xdg");
    fs::create_dir_all(xdg.join("claude-failover")).unwrap();
    let file = xdg.join("claude-failover/config.yaml");
    fs::write(&file, m.yaml()).unwrap();
    let out = m
        .cmd(&["check-config"])
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("{}: ok", file.display())),
        "{}",
        text(&out.stdout)
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let out = m
        .cmd(&["check-config", "-c", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

// ---------------------------------------------------- scripting contract

#[test]
fn flags_of_other_commands_are_usage_errors() {
    let m = Machine::new();
    for (args, want) in [
        (&["run", "--json"][..], "`--json` does not belong to `run`"),
        (
            &["quota", "--to", "x"][..],
            "`--to` does not belong to `quota`",
        ),
        (
            &["status", "--dry-run"][..],
            "`--dry-run` does not belong to `status`",
        ),
    ] {
        let out = m.cmd(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    }
}

#[test]
fn logs_carry_journald_priorities_and_a_bad_rust_log_warns_once() {
    let m = Machine::new();
    let cfg = m.config();
    let err_file = m.root.join("stderr");
    let f = fs::File::create(&err_file).unwrap();
    let meta = f.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let out = m
        .cmd(&["check-config", "-c", cfg.to_str().unwrap()])
        .env("JOURNAL_STREAM", &stream)
        .env("RUST_LOG", "inf")
        .stderr(f)
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = fs::read_to_string(&err_file).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("RUST_LOG")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].starts_with("<4>logging: RUST_LOG `inf`"),
        "{log}"
    );
    // Not the journal: a timestamp and a level.
    let out = m
        .cmd(&["check-config", "-c", cfg.to_str().unwrap()])
        .env("RUST_LOG", "")
        .output()
        .unwrap();
    let log = text(&out.stderr);
    let w: Vec<&str> = log.lines().filter(|l| l.contains("RUST_LOG")).collect();
    assert_eq!(w.len(), 1, "{log}");
    assert!(
        w[0].starts_with("20") && w[0].contains(" WARN  logging: RUST_LOG is empty"),
        "{log}"
    );
}

// ------------------------------------------- the daemon: reload, health

#[test]
fn reload_tells_the_truth_and_health_needs_no_token() {
    let mut m = Machine::new();
    m.sessions = 0;
    let d = m.daemon();
    let addr = d.addr();
    wait_for("ready", || d.log().contains("ready"));
    assert_eq!(http(addr, "GET", "/health", None), (200, "ok".into()));
    assert_eq!(http(addr, "GET", "/status", None).0, 401);

    let out = m.cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["source"], "daemon");
    let out = m.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A refused config: the reason, exit 1, 422; the old config keeps running.
    let cfg = m.root.join("config.yaml");
    let good = fs::read_to_string(&cfg).unwrap();
    let bad = good.replace(
        "quota: { endpoint: 'http://127.0.0.1:9/usage' }",
        "quota: { five_hour_threshold: 0.9 }",
    );
    fs::write(&cfg, &bad).unwrap();
    let out = m
        .cmd(&["reload", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did you mean 90?"),
        "{}",
        text(&out.stderr)
    );
    let (code, body) = http(addr, "POST", "/reload", Some(&m.token()));
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("did you mean 90?"), "{body}");
    assert_eq!(http(addr, "GET", "/health", None).0, 200);
    fs::write(&cfg, &good).unwrap();
    assert_eq!(http(addr, "POST", "/reload", Some(&m.token())).0, 200);
    let unit = text(&m.cli(&["systemd-unit"]).stdout);
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecReload=") && l.contains(" reload")),
        "{unit}"
    );
    drop(d);
    let out = m.cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "state_file");
}

#[test]
fn metrics_have_build_info_and_queue_depth() {
    let mut m = Machine::new();
    m.sessions = 0;
    fs::write(m.root.join("proj/.agent-queue/inbox/a.md"), "x\n").unwrap();
    let d = m.daemon();
    let (code, body) = http(d.addr(), "GET", "/metrics", Some(&m.token()));
    assert_eq!(code, 200);
    let proj = m.root.join("proj").display().to_string();
    for want in [
        format!(
            "claude_failover_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        format!("claude_failover_tasks_pending{{project=\"{proj}\"}} 1"),
        "claude_failover_sessions{state=\"idle\"} 0".to_string(),
    ] {
        assert!(body.lines().any(|l| l == want), "no `{want}` in\n{body}");
    }
    assert!(!body.contains("_percent"), "{body}");
}

#[test]
fn a_done_task_reaches_slack_as_text() {
    let mut m = Machine::new();
    let slack = receiver::Receiver::start(Box::new(receiver::services::slack));
    m.extra = format!(
        "notify:\n  events: [task_done]\n  webhooks:\n    - url: '{}'\n      format: slack\n",
        slack.url
    );
    let d = m.daemon();
    let out = m.cli(&["add", "--name", "hello", "say hello"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done = m.root.join("proj/.agent-queue/done/hello.md");
    let deadline = Instant::now() + T;
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "the task never finished:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let seen = slack.wait(1, T);
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let t = v["text"].as_str().unwrap();
    assert!(t.contains("task_done: hello.md"), "{t}\n{}", d.log());
    no_debug(t);
}

#[test]
fn a_failed_launch_is_told_in_words_and_the_rest_is_shown() {
    let mut m = Machine::new();
    let agent = m.root.join("broken-claude");
    fs::write(&agent, "#!/bin/sh\nexit 127\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
    }
    m.agent = agent.display().to_string();
    m.dispatcher = "{ scan_interval: 1h, cooldown: 1h, max_attempts: 1 }".into();
    let cfg = m.config();
    let c = cfg.to_str().unwrap();
    let d = m.daemon();
    fs::write(m.root.join("proj/.agent-queue/inbox/t.md"), "do it\n").unwrap();
    // An agent that cannot start is the session's trouble, not the task's:
    // the task goes back and the session rests.
    wait_for("t.md back in the inbox", || {
        d.log().contains("t.md goes back to the inbox")
    });
    let log = d.log();
    // In words; tmux may not have the status yet under load.
    assert!(
        log.contains("the agent exited with status 127: command not found before it was ready")
            || log.contains("the agent exited (status unknown) before it was ready"),
        "{log}"
    );
    let status = text(&m.cmd(&["status", "-c", c]).output().unwrap().stdout);
    assert!(status.contains("idle (resting until 20"), "{status}");
    let tasks = text(&m.cmd(&["tasks", "-c", c]).output().unwrap().stdout);
    assert!(
        tasks.contains("t.md  waits: fr-1 is resting until 20"),
        "{tasks}"
    );
    no_debug(&d.log());
}
