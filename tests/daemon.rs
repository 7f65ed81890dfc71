//! End-to-end tests of dispatch and the session lifecycle, with the real
//! parts: a private tmux server, inotify on temp dirs, the stand-in claude
//! (tests/fake-claude) running the deployed hook like claude does.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use claude_failover::daemon::Daemon;
use serde_json::Value;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(20);

fn start(env: &Env) -> Daemon {
    Daemon::start(env.config()).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
}

fn stop(d: Daemon) {
    d.shutdown(Duration::from_secs(2));
}

#[test]
fn task_reaches_agent_with_model_cwd_and_env() {
    let env = Env::new(1, 1);
    // A tmux server whose global environment carries an API key that would
    // override the account: the launch must remove it.
    let out = env
        .tmux_cmd()
        .args(["new-session", "-d", "-s", "keep"])
        .env("ANTHROPIC_API_KEY", "leaked")
        .env("CLAUDE_CODE_OAUTH_TOKEN", "leaked")
        .output()
        .unwrap();
    assert!(out.status.success());
    let d = start(&env);
    env.task(
        0,
        "fix-login.md",
        "---\ntitle: Fix login\npriority: critical\n---\nPlease fix the login.\n",
    );
    wait_for("the agent to receive the task", T, || {
        !env.messages(0).is_empty()
    });
    let rec = &env.log(0, "message")[0];
    assert_eq!(rec["message"], "[fix-login.md] Please fix the login.");
    assert_eq!(rec["cwd"], env.projects[0].display().to_string());
    let argv: Vec<&str> = rec["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &argv[1..4],
        ["--model", "opus", "--dangerously-skip-permissions"],
        "{argv:?}"
    );
    assert_eq!(argv[4], "--session-id");
    assert_eq!(argv[5].len(), 36, "a uuid: {argv:?}");
    let e = &rec["env"];
    assert_eq!(
        e["CLAUDE_CONFIG_DIR"],
        env.accounts[0].1.display().to_string()
    );
    assert_eq!(e["CLAUDE_FAILOVER_SESSION"], "t-1");
    assert_eq!(
        e["CLAUDE_FAILOVER_EVENTS"],
        env.state_dir.join("events").display().to_string()
    );
    assert_eq!(e["DISABLE_AUTOUPDATER"], "1");
    assert_eq!(e["ANTHROPIC_API_KEY"], Value::Null);
    assert_eq!(e["CLAUDE_CODE_OAUTH_TOKEN"], Value::Null);
    // The agent ends its turn: the task is done, with a record.
    wait_for("the task in done/", T, || {
        env.files(0, "done").contains(&"fix-login.md".to_string())
    });
    let record: Value = serde_json::from_str(
        &fs::read_to_string(env.queue_dir(0, "done").join("fix-login.md.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["session"], "t-1");
    assert_eq!(record["account"], "main");
    assert_eq!(record["claude_session_id"], argv[5]);
    // The account was prepared: trusted project, one-time screens accepted.
    let cj: Value =
        serde_json::from_str(&fs::read_to_string(env.accounts[0].1.join(".claude.json")).unwrap())
            .unwrap();
    assert_eq!(
        cj["projects"][env.projects[0].display().to_string()]["hasTrustDialogAccepted"],
        true
    );
    stop(d);
}

#[test]
fn body_with_shell_metacharacters_arrives_verbatim() {
    let env = Env::new(1, 1);
    let d = start(&env);
    let body = "Run `whoami` and $(id) with $HOME;\n  'single' \"double\" \\n not a newline\nrm -rf \"$X\" && echo ${Y:-z} | tee >(cat)\nlast line ends with a backslash \\";
    env.task(0, "meta.md", body);
    wait_for("the message", T, || !env.messages(0).is_empty());
    assert_eq!(env.messages(0)[0], format!("[meta.md] {body}"));
    stop(d);
}

#[test]
fn priority_then_oldest_with_one_session() {
    let env = Env::new(2, 1);
    let now = SystemTime::now();
    let tasks = [
        (0, "a-low.md", "low", 50),
        (1, "b-default-old.md", "default", 40),
        (0, "c-critical.md", "critical", 10),
        (1, "d-default-new.md", "default", 5),
        (0, "e-high.md", "high", 1),
    ];
    for (p, name, prio, age) in tasks {
        let path = env.task(p, name, &format!("---\npriority: {prio}\n---\n{name}\n"));
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(now - Duration::from_secs(age)).unwrap();
    }
    let d = start(&env);
    wait_for("all five delivered", Duration::from_secs(40), || {
        env.messages(0).len() == 5
    });
    let order: Vec<String> = env
        .messages(0)
        .iter()
        .map(|m| m.split(']').next().unwrap()[1..].to_string())
        .collect();
    assert_eq!(
        order,
        [
            "c-critical.md",
            "e-high.md",
            "b-default-old.md",
            "d-default-new.md",
            "a-low.md"
        ]
    );
    stop(d);
}

#[test]
fn files_that_are_not_tasks_go_to_failed_with_a_reason() {
    let env = Env::new(1, 1);
    let inbox = env.inbox(0);
    fs::write(
        inbox.join("broken-yaml.md"),
        "---\ntitle: [unclosed\n---\nbody\n",
    )
    .unwrap();
    fs::write(
        inbox.join("unclosed.md"),
        "---\ntitle: x\nbody without end\n",
    )
    .unwrap();
    fs::write(
        inbox.join("bad-priority.md"),
        "---\npriority: urgent\n---\nbody\n",
    )
    .unwrap();
    fs::write(inbox.join("binary.md"), [0x00, 0xff, 0xfe, 0x80]).unwrap();
    fs::write(inbox.join("huge.md"), vec![b'x'; (1 << 20) + 1]).unwrap();
    fs::write(env.root().join("elsewhere.md"), "secret").unwrap();
    std::os::unix::fs::symlink(env.root().join("elsewhere.md"), inbox.join("link.md")).unwrap();
    fs::create_dir(inbox.join("dir.md")).unwrap();
    fs::write(inbox.join(".hidden.md"), "not looked at").unwrap();
    fs::write(inbox.join("notes.txt"), "not a task").unwrap();
    env.task(0, "good.md", "a real task");
    let d = start(&env);
    wait_for("good.md done", T, || {
        env.files(0, "done").contains(&"good.md".to_string())
    });
    let failed = env.files(0, "failed");
    for (name, why) in [
        ("broken-yaml.md", "frontmatter"),
        ("unclosed.md", "never closed"),
        ("bad-priority.md", "frontmatter"),
        ("binary.md", "UTF-8"),
        ("huge.md", "limited to"),
        ("link.md", "symbolic link"),
        ("dir.md", "not a regular file"),
    ] {
        assert!(
            failed.contains(&name.to_string()),
            "{name} not in failed/: {failed:?}"
        );
        let err =
            fs::read_to_string(env.queue_dir(0, "failed").join(format!("{name}.error"))).unwrap();
        assert!(err.contains(why), "{name}: {err}");
    }
    // Nothing else moved, nothing was deleted, only the good task was delivered.
    assert_eq!(env.files(0, "inbox"), [".hidden.md", "notes.txt"]);
    assert_eq!(env.messages(0), ["[good.md] a real task"]);
    assert_eq!(
        fs::read_to_string(env.root().join("elsewhere.md")).unwrap(),
        "secret"
    );
    stop(d);
}

#[test]
fn guard_is_deployed_over_a_tampered_copy_and_user_settings_survive() {
    let env = Env::new(1, 1);
    let claude = env.projects[0].join(".claude");
    fs::create_dir_all(claude.join("hooks")).unwrap();
    let hook = claude.join("hooks/claude-failover.sh");
    fs::write(&hook, "#!/bin/sh\nexit 0 # tampered\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(
        claude.join("settings.json"),
        r#"{"model":"opus","permissions":{"allow":["Bash(ls)"]},"hooks":{"Stop":[{"hooks":[{"type":"command","command":"my-own-hook"}]}]}}"#,
    )
    .unwrap();
    let d = start(&env);
    env.task(0, "t.md", "x");
    wait_for("delivery", T, || !env.messages(0).is_empty());
    let text = fs::read_to_string(&hook).unwrap();
    assert!(!text.contains("tampered"));
    assert!(text.contains(&format!(
        "CF_BAKED_EVENTS='{}'",
        env.state_dir.join("events").display()
    )));
    assert_eq!(
        fs::metadata(&hook).unwrap().permissions().mode() & 0o777,
        0o555
    );
    let s: Value =
        serde_json::from_str(&fs::read_to_string(claude.join("settings.json")).unwrap()).unwrap();
    assert_eq!(s["model"], "opus");
    assert_eq!(s["permissions"]["allow"][0], "Bash(ls)");
    let stop_hooks = s["hooks"]["Stop"].to_string();
    assert!(stop_hooks.contains("my-own-hook"), "{stop_hooks}");
    assert_eq!(
        stop_hooks.matches("claude-failover.sh").count(),
        1,
        "{stop_hooks}"
    );
    // A second launch does not register us twice.
    wait_for("first done", T, || {
        env.files(0, "done").contains(&"t.md".to_string())
    });
    env.task(0, "u.md", "y");
    wait_for("second done", T, || {
        env.files(0, "done").contains(&"u.md".to_string())
    });
    let s: Value =
        serde_json::from_str(&fs::read_to_string(claude.join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        s["hooks"]["PreToolUse"]
            .to_string()
            .matches("claude-failover.sh")
            .count(),
        1
    );
    stop(d);
}

#[test]
fn invalid_settings_json_blocks_the_launch() {
    let mut env = Env::new(1, 1);
    env.max_attempts = 2;
    let claude = env.projects[0].join(".claude");
    fs::create_dir_all(&claude).unwrap();
    fs::write(claude.join("settings.json"), "{ \"model\": ").unwrap();
    let d = start(&env);
    env.task(0, "t.md", "x");
    wait_for("t.md in failed/", T, || {
        env.files(0, "failed").contains(&"t.md".to_string())
    });
    let err = fs::read_to_string(env.queue_dir(0, "failed").join("t.md.error")).unwrap();
    assert!(err.contains("settings JSON"), "{err}");
    assert!(err.contains("2 launches failed"), "{err}");
    assert!(
        env.messages(0).is_empty(),
        "an unguarded agent got the task"
    );
    assert_eq!(
        fs::read_to_string(claude.join("settings.json")).unwrap(),
        "{ \"model\": "
    );
    stop(d);
}

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let env = Env::new(1, 0);
    let d = start(&env);
    let err = Daemon::start(env.config())
        .err()
        .expect("second daemon started");
    assert!(
        err.to_string().contains("another claude-failover daemon"),
        "{err}"
    );
    stop(d);
}

#[test]
fn sigterm_exits_zero_quickly_and_leaves_sessions_running() {
    let env = Env::new(1, 2);
    let cfg = env.write_config();
    let mut child = Command::new(env!("CARGO_BIN_EXE_claude-failover"))
        .args(["run", "-c"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("sessions created", T, || {
        env.tmux().has_session("t-1") && env.tmux().has_session("t-2")
    });
    wait_for("state written", T, || {
        env.state_dir.join("state.json").exists()
    });
    let t0 = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut status = None;
    wait_for("exit after SIGTERM", Duration::from_secs(3), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(env.tmux().has_session("t-1") && env.tmux().has_session("t-2"));
}

#[test]
fn pasting_into_a_dead_pane_leaves_the_tmux_server_alive() {
    let env = Env::new(0, 0);
    let tmux = env.tmux();
    let home = env.root();
    tmux.new_session("alive", &home).unwrap();
    tmux.new_session("dying", &home).unwrap();
    let t = std::ffi::OsStr::new("true");
    tmux.respawn(
        "dying",
        &home,
        &[],
        &[std::ffi::OsStr::new("sh"), std::ffi::OsStr::new("-c"), t],
    )
    .unwrap();
    wait_for("pane dead", T, || {
        tmux.pane_info("dying").map(|p| p.dead).unwrap_or(false)
    });
    for _ in 0..5 {
        let _ = tmux.paste("dying", "hello\nworld");
        let _ = tmux.send_key("dying", "Enter");
    }
    assert!(tmux.has_session("alive"), "the tmux server crashed");
    assert!(tmux.has_session("dying"));
}
