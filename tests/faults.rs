//! Issue 10: what broke when the daemon was driven with the real claude
//! 2.1.197 and attacked with faults and bad input, one test per item. The
//! stand-in (tests/fake-claude) behaves as 2.1.197 where these depend on it:
//! a limit line drawn after StopFailure, ghost input boxes, `!` and `/`,
//! AskUserQuestion, small panes, the environment it got.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use claude_failover::config::Config;
use claude_failover::daemon::Daemon;
use claude_failover::state::SessionState;
use claude_failover::timefmt::now_ms;
use serde_json::Value;
use support::usage::{Mode, Setup};
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(25);

fn start(env: &Env) -> Daemon {
    Daemon::start(env.config()).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
}

fn stop(d: Daemon) {
    d.shutdown(Duration::from_secs(3));
}

/// Watches `cond` for `window` and fails if it ever holds: for things that
/// must not happen (a booked follow-up firing late).
fn never(what: &str, window: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(!cond(), "it happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `start` records of resumed conversations on an account.
fn resumed(env: &Env, account: usize) -> Vec<Value> {
    env.log(account, "start")
        .into_iter()
        .filter(|r| r["resumed"] == true)
        .collect()
}

fn session_state(d: &Daemon, name: &str) -> (SessionState, Option<String>) {
    let st = d.ctx.state();
    let s = &st.sessions[name];
    (s.state, s.task.as_ref().map(|t| t.name.clone()))
}

fn all_messages(env: &Env) -> Vec<String> {
    let mut v = env.messages(0);
    v.extend(env.messages(1));
    v
}

// ------------------------------------------------------- with the real claude

#[test]
fn item_1_a_limit_drawn_after_stop_failure_fails_over_and_books_no_continue() {
    let mut s = Setup::new(1, 1);
    s.poll = "1h";
    s.throttle_pause = "6s";
    // No watcher tick to fall back on: the event alone must decide.
    s.env.watcher_interval = "1h";
    let d = s.start();
    wait_for("the first poll", T, || s.server.requests("tok-main") == 1);
    // 2.1.197's order: StopFailure, then the limit line a second later.
    s.env.task(0, "a.md", "a.md @fake:limit=1");
    wait_for("the limit on main", T, || !s.env.log(0, "limit").is_empty());
    let at_limit = Instant::now();
    s.env.task(0, "b.md", "b.md next task @fake:sleep=30");
    wait_for("a.md resumed on backup", T, || {
        !resumed(&s.env, 1).is_empty()
    });
    // Decided from the transcript, not taken for a throttle: no usage check.
    assert_eq!(s.server.requests("tok-main"), 1);
    wait_for("b.md given to an agent", T, || {
        s.env
            .messages(1)
            .iter()
            .any(|m| m.contains("b.md next task"))
    });
    // The throttle follow-up must not exist, let alone reach b.md's agent.
    let window = Duration::from_secs(8).saturating_sub(at_limit.elapsed());
    never("a `continue` was typed into an agent", window, || {
        all_messages(&s.env).iter().any(|m| m.contains("continue"))
    });
    stop(d);
}

#[test]
fn item_2_a_ghost_input_box_does_not_hide_the_live_one() {
    let env = Env::new(1, 1);
    // Once ready, the agent redraws its screen and leaves a ghost box above.
    fs::write(env.accounts[0].1.join("fake-claude.ghost"), "").unwrap();
    let d = start(&env);
    env.task(0, "g.md", "g.md hello");
    wait_for("g.md done", T, || {
        env.files(0, "done").contains(&"g.md".into())
    });
    assert_eq!(env.log(0, "start").len(), 1, "one launch was enough");
    assert_eq!(env.messages(0).len(), 1, "{:?}", env.messages(0));
    stop(d);
}

#[test]
fn item_3_a_message_never_starts_with_bang_or_slash() {
    let mut env = Env::new(1, 2);
    env.agent_extra = "  message: '{body}'\n".into();
    let d = start(&env);
    env.task(0, "bang.md", "!touch pwned");
    env.task(0, "clear.md", "/clear");
    env.task(0, "exit.md", "/exit now");
    wait_for("all three done", T, || {
        let done = env.files(0, "done");
        ["bang.md", "clear.md", "exit.md"]
            .iter()
            .all(|n| done.contains(&n.to_string()))
    });
    assert!(
        env.log(0, "bash_mode").is_empty(),
        "a task ran in bash mode"
    );
    let commands: Vec<Value> = env
        .log(0, "command")
        .into_iter()
        .filter(|c| c["command"] != "exit" || c["message"] != "/exit")
        .collect();
    assert!(commands.is_empty(), "a task ran as a command: {commands:?}");
    let sent = env.messages(0);
    for body in ["!touch pwned", "/clear", "/exit now"] {
        assert!(
            sent.iter().any(|m| m.trim_start() == body && m != body),
            "{body} not sent as text: {sent:?}"
        );
    }
    stop(d);
}

#[test]
fn item_4_a_blank_task_goes_to_failed_with_a_reason() {
    let env = Env::new(1, 1);
    let d = start(&env);
    env.task(0, "ws.md", "  \n\t \n   \n");
    env.task(0, "fm.md", "---\ntitle: only a header\n---\n \n");
    wait_for("both settled", T, || {
        let gone = |n: &str| {
            env.files(0, "failed").contains(&n.to_string())
                || env.files(0, "done").contains(&n.to_string())
        };
        gone("ws.md") && gone("fm.md")
    });
    for n in ["ws.md", "fm.md"] {
        assert!(
            env.files(0, "failed").contains(&n.into()),
            "{n} not refused"
        );
        let why = fs::read_to_string(env.queue_dir(0, "failed").join(format!("{n}.error")))
            .unwrap_or_default();
        assert!(why.contains("empty"), "{n}: {why}");
    }
    assert!(env.messages(0).is_empty(), "{:?}", env.messages(0));
    stop(d);
}

/// A config with `watcher.waiting_timeout` and quick questions.
fn asking_env(waiting: &'static str) -> Env {
    let mut env = Env::new(1, 1);
    env.watcher_interval = waiting;
    fs::write(env.accounts[0].1.join("fake-claude.asktime"), "0.3").unwrap();
    env
}

#[test]
fn item_5_an_unanswered_question_is_told_once_to_decide() {
    let env = asking_env("300ms, waiting_timeout: 2s");
    let d = start(&env);
    env.task(0, "q.md", "q.md @fake:ask=Which database should I use?");
    wait_for("q.md done", T, || {
        env.files(0, "done").contains(&"q.md".into())
    });
    let sent = env.messages(0);
    assert_eq!(sent.len(), 2, "the task, then one note: {sent:?}");
    assert_eq!(env.log(0, "question").len(), 1);
    stop(d);
}

#[test]
fn item_5_an_agent_that_waits_again_is_stopped_and_its_task_failed() {
    let env = asking_env("300ms, waiting_timeout: 2s");
    let d = start(&env);
    env.task(
        0,
        "q.md",
        "q.md @fake:askagain @fake:ask=Which database should I use?",
    );
    wait_for("q.md in failed/", T, || {
        env.files(0, "failed").contains(&"q.md".into())
    });
    let why = fs::read_to_string(env.queue_dir(0, "failed").join("q.md.error")).unwrap();
    assert!(why.contains("Which database should I use?"), "{why}");
    assert_eq!(
        env.messages(0).len(),
        2,
        "one note only: {:?}",
        env.messages(0)
    );
    wait_for("the agent stopped", T, || !env.log(0, "exit").is_empty());
    wait_for("the session free", T, || {
        session_state(&d, "t-1") == (SessionState::Idle, None)
    });
    stop(d);
}

#[test]
fn item_6_a_small_session_is_resized_and_its_limit_still_fails_over() {
    let mut s = Setup::new(1, 1);
    s.poll = "1h";
    // Made small by someone else: at 11 rows the limit line scrolls away
    // under the menu.
    let out = s
        .env
        .tmux_cmd()
        .args(["new-session", "-d", "-s", "t-1", "-x", "200", "-y", "11"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d = s.start();
    s.env.task(0, "lim.md", "lim.md @fake:limit");
    wait_for("the limit on main", T, || !s.env.log(0, "limit").is_empty());
    let rows = s
        .env
        .tmux_cmd()
        .args(["display-message", "-p", "-t", "=t-1:", "#{window_height}"])
        .output()
        .unwrap();
    let rows: u32 = String::from_utf8_lossy(&rows.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(rows >= 50, "the session has {rows} rows");
    wait_for("lim.md resumed on backup", T, || {
        !resumed(&s.env, 1).is_empty()
    });
    stop(d);
}

#[test]
fn item_7_the_agent_gets_the_daemons_environment_not_the_tmux_servers() {
    let mut env = Env::new(1, 1);
    env.agent_extra = "  env: { CF_MARK: m1, IS_SANDBOX: '1' }\n".into();
    // The tmux server was started by someone else, with another environment.
    let out = Command::new("tmux")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent-home")
        .arg("-S")
        .arg(&env.sock)
        .args(["new-session", "-d", "-s", "other"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d = start(&env);
    env.task(0, "e.md", "e.md hello");
    wait_for("the agent started", T, || !env.log(0, "start").is_empty());
    let environ = env.log(0, "start")[0]["environ"].clone();
    for k in ["HOME", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            assert_eq!(environ[k], v.as_str(), "{k}: {environ}");
        }
    }
    // (A pyenv shim in front of python3 may prepend to PATH.)
    let path = std::env::var("PATH").unwrap();
    assert!(
        environ["PATH"].as_str().unwrap().ends_with(&path),
        "PATH: {environ}"
    );
    assert!(environ["TERM"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(environ["CF_MARK"], "m1");
    assert_eq!(environ["IS_SANDBOX"], "1");
    assert_eq!(environ["CLAUDE_FAILOVER_SESSION"], "t-1");
    wait_for("e.md done", T, || {
        env.files(0, "done").contains(&"e.md".into())
    });
    stop(d);
}

// ------------------------------------------------------ faults and bad input

#[test]
fn item_8_a_second_task_of_the_same_name_does_not_clobber_the_first() {
    let env = Env::new(1, 2);
    let d = start(&env);
    env.task(0, "nightly.md", "first nightly @fake:sleep=3");
    wait_for("the first running", T, || {
        env.messages(0).iter().any(|m| m.contains("first nightly"))
    });
    env.task(0, "nightly.md", "second nightly @fake:sleep=0.2");
    wait_for("both done", T, || {
        env.files(0, "done")
            .iter()
            .filter(|n| n.ends_with(".md"))
            .count()
            == 2
    });
    let bodies: Vec<String> = env
        .files(0, "done")
        .iter()
        .filter(|n| n.ends_with(".md"))
        .map(|n| fs::read_to_string(env.queue_dir(0, "done").join(n)).unwrap())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("first nightly")),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("second nightly")),
        "{bodies:?}"
    );
    stop(d);
}

#[test]
fn item_9_a_task_that_cannot_be_claimed_does_not_stall_the_session() {
    let env = Env::new(1, 1);
    // 252 characters: its `.dispatched` name is too long for the file system.
    let long = format!("{}.md", "x".repeat(249));
    let p = env.inbox(0).join(&long);
    fs::write(&p, "long one").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let d = start(&env);
    env.task(0, "ok.md", "ok.md runs anyway");
    wait_for("ok.md done", T, || {
        env.files(0, "done").contains(&"ok.md".into())
    });
    assert!(env.files(0, "inbox").contains(&long), "left where it was");
    stop(d);
}

fn cli(args: &[&str], home: &Path, config_env: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_claude-failover"));
    c.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CLAUDE_FAILOVER_CONFIG");
    if let Some(p) = config_env {
        c.env("CLAUDE_FAILOVER_CONFIG", p);
    }
    c.output().unwrap()
}

#[test]
fn item_10_an_empty_config_file_is_an_error_not_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let user = home.join(".config/claude-failover/config.yaml");
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    let empty = dir.path().join("empty.yaml");
    fs::write(&empty, "").unwrap();
    let blank = dir.path().join("blank.yaml");
    fs::write(&blank, "  \n\n").unwrap();
    let missing = dir.path().join("missing.yaml");
    let fails = |out: std::process::Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.lines().count() >= 1 && !err.contains("Some("),
            "{what}: {err}"
        );
    };
    for p in [&empty, &blank, &missing] {
        let a = ["check-config", "-c", p.to_str().unwrap()];
        fails(cli(&a, &home, None), &format!("-c {}", p.display()));
        fails(
            cli(&["check-config"], &home, Some(p)),
            &format!("$CLAUDE_FAILOVER_CONFIG={}", p.display()),
        );
    }
    fs::write(&user, "").unwrap();
    fails(cli(&["check-config"], &home, None), "an empty default file");
    // No config file anywhere: the embedded default serves.
    fs::remove_file(&user).unwrap();
    let out = cli(&["check-config"], &home, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const TOKEN: &str = "issue-10-test-token-0123456789";

/// An env whose control plane listens on a port of its own, with `TOKEN`.
fn control_env() -> (Env, u16) {
    let mut env = Env::new(1, 1);
    let port = free_port();
    let token_file = env.root().join("token");
    fs::write(&token_file, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    env.control = format!(
        "{{ listen: '127.0.0.1:{port}', token_file: '{}' }}",
        token_file.display()
    );
    (env, port)
}

/// One HTTP/1.1 request; the status code and body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (code, body)
}

#[test]
fn item_10_a_reload_of_an_emptied_config_is_refused() {
    let env = Env::new(1, 1);
    let path = env.write_config();
    let d = Daemon::start(Config::load(&path).unwrap()).unwrap();
    fs::write(&path, "").unwrap();
    let _ = claude_failover::daemon::reload(&d.ctx, None);
    let cfg = d.ctx.config();
    assert_eq!(cfg.projects, env.projects, "the running config was kept");
    assert!(d.ctx.state().sessions.keys().all(|n| n.starts_with("t-")));
    stop(d);
}

#[test]
fn item_11_an_account_without_readable_credentials_is_never_a_target() {
    let mut s = Setup::new(1, 1);
    s.poll = "1h";
    // backup: garbled; third: none at all; fourth: not a file.
    fs::write(s.env.accounts[1].1.join(".credentials.json"), "{not json").unwrap();
    for name in ["third", "fourth"] {
        let dir = s.env.root().join(format!("acct-{name}"));
        fs::create_dir_all(&dir).unwrap();
        s.env.accounts.push((name.into(), dir));
    }
    fs::create_dir_all(s.env.accounts[3].1.join(".credentials.json")).unwrap();
    let d = s.start();
    wait_for("the three unusable", T, || {
        let st = d.ctx.state();
        ["backup", "third", "fourth"]
            .iter()
            .all(|a| !st.accounts[*a].usable)
    });
    s.env.task(0, "lim.md", "lim.md @fake:limit");
    wait_for("dispatching paused", T, || {
        d.ctx.state().dispatch_paused.is_some()
    });
    for a in 1..4 {
        assert!(resumed(&s.env, a).is_empty(), "moved onto account {a}");
    }
    assert_eq!(d.ctx.state().active_account, "main");
    stop(d);
}

#[test]
fn item_12_a_project_deleted_under_a_running_task_frees_its_session() {
    let s = Setup::new(1, 1);
    let d = s.start();
    s.env.task(0, "long.md", "long.md @fake:sleep=600");
    wait_for("long.md running", T, || {
        session_state(&d, "t-1") == (SessionState::Working, Some("long.md".into()))
    });
    let t0 = Instant::now();
    fs::remove_dir_all(&s.env.projects[0]).unwrap();
    wait_for("the session freed", T, || {
        session_state(&d, "t-1") == (SessionState::Idle, None)
    });
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    wait_for("the agent stopped", T, || !s.env.log(0, "exit").is_empty());
    wait_for("a notice naming the task", T, || {
        s.server
            .all_notices()
            .iter()
            .any(|n| n.to_string().contains("long.md"))
    });
    stop(d);
}

#[test]
fn item_13_a_broken_agent_command_pauses_dispatch_instead_of_failing_tasks() {
    let mut s = Setup::new(1, 1);
    s.env.agent_command = Some("/bin/false".into());
    let d = s.start();
    for n in ["a.md", "b.md", "c.md"] {
        s.env.task(0, n, "work");
    }
    wait_for("a task failed or dispatching paused", T, || {
        !s.env.files(0, "failed").is_empty() || d.ctx.state().launches_paused.is_some()
    });
    assert!(
        s.env.files(0, "failed").is_empty(),
        "{:?}",
        s.env.files(0, "failed")
    );
    wait_for("the three back in the inbox", T, || {
        s.env.files(0, "inbox") == ["a.md", "b.md", "c.md"]
    });
    assert!(
        d.ctx.state().attempts.is_empty(),
        "{:?}",
        d.ctx.state().attempts
    );
    wait_for("one notice", T, || {
        !s.server.notices("dispatch_paused").is_empty()
    });
    // After the cooldown one launch tries again; failing, it says nothing new.
    let failed = d.ctx.state().metrics.launches_failed;
    wait_for("a later try", T, || {
        d.ctx.state().metrics.launches_failed > failed
    });
    assert_eq!(s.server.notices("dispatch_paused").len(), 1);
    assert!(s.env.files(0, "failed").is_empty());
    stop(d);
}

#[test]
fn item_14_a_state_json_that_is_a_directory_refuses_start() {
    let env = Env::new(1, 1);
    fs::create_dir_all(env.state_dir.join("state.json")).unwrap();
    match Daemon::start(env.config()) {
        Ok(d) => {
            stop(d);
            panic!("started with state.json a directory");
        }
        Err(e) => assert!(e.to_string().contains("state.json"), "{e}"),
    }
}

#[test]
fn item_14_a_recreated_inbox_is_watched_at_once() {
    let env = Env::new(1, 1);
    let d = start(&env);
    env.task(0, "one.md", "one.md first");
    wait_for("one.md done", T, || {
        env.files(0, "done").contains(&"one.md".into())
    });
    // Free again: a round for a freed session would read the inbox anyway.
    wait_for("the session free", T, || {
        session_state(&d, "t-1") == (SessionState::Idle, None)
    });
    fs::remove_dir_all(env.inbox(0)).unwrap();
    fs::create_dir_all(env.inbox(0)).unwrap();
    env.task(0, "two.md", "two.md after the inbox came back");
    wait_for("two.md dispatched (scan_interval is 1h)", T, || {
        env.messages(0).iter().any(|m| m.contains("two.md after"))
    });
    stop(d);
}

#[test]
fn item_14_absurd_usage_readings_keep_the_last_good_one() {
    let s = Setup::new(1, 0);
    let d = s.start();
    let five = || d.ctx.state().accounts["main"].five_hour;
    wait_for("a good reading", T, || five() == Some(10.0));
    for bad in [-5.0, 5000.0, f64::NAN] {
        s.server.set(
            "tok-main",
            Mode::Usage {
                five: bad,
                seven: 5.0,
                resets: None,
            },
        );
        let n = s.server.requests("tok-main");
        wait_for("two more polls", T, || {
            s.server.requests("tok-main") >= n + 2
        });
        assert_eq!(five(), Some(10.0), "after a reading of {bad}");
    }
    stop(d);
}

#[test]
fn item_14_megabyte_event_strings_are_cut_before_the_audit_log() {
    let env = Env::new(1, 1);
    let d = start(&env);
    let events = env.state_dir.join("events");
    fs::create_dir_all(&events).unwrap();
    let rec = serde_json::json!({
        "kind": "guard", "session": "t-1", "pane": "", "at": now_ms(),
        "decision": "warn", "rule": "test", "tool": "Bash", "reason": "big",
        "detail": "A".repeat(3 << 20), "claude_session_id": "", "cwd": "/",
    });
    let tmp = events.join(".big.tmp");
    fs::write(&tmp, rec.to_string()).unwrap();
    fs::rename(&tmp, events.join(format!("{}-big.json", now_ms()))).unwrap();
    let audit = env.state_dir.join("audit.log");
    wait_for("the audit line", T, || audit.exists());
    let len = fs::metadata(&audit).unwrap().len();
    assert!(len < 64 * 1024, "audit.log is {len} bytes");
    stop(d);
}

#[test]
fn item_14_idle_clients_cannot_hold_every_control_slot() {
    let (env, port) = control_env();
    let d = start(&env);
    wait_for("the control plane", T, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Connections that never send a request.
    let held: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let (code, body) = http(port, "GET", "/health");
    assert_eq!(code, 200, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    drop(held);
    stop(d);
}
