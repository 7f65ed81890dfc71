//! Issue 12 behaviours with the real parts: a stop does what the screen
//! needs (no Esc at a prompt; a working agent is interrupted, then leaves
//! on `/exit`), and projects that cannot be watched make one warning line,
//! not one per project per scan.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use claude_failover::bus::WatchMsg;
use claude_failover::daemon::Daemon;
use claude_failover::state::SessionState;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(30);

fn instant_agent() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/instant-agent")
}

#[test]
fn an_agent_at_its_prompt_gets_exit_and_no_escape() {
    let mut env = Env::new(1, 1);
    env.agent_command = Some(instant_agent());
    env.watcher_interval = "1h";
    let d = Daemon::start(env.config()).unwrap();
    env.task(0, "t.md", "quick");
    let log = env.accounts[0].1.join("bench.log");
    let keys = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("keys ").map(String::from))
    };
    wait_for("the agent's keys after its Stop", T, || keys().is_some());
    assert_eq!(keys().unwrap(), "/exit");
    d.shutdown(Duration::from_secs(2));
}

#[test]
fn a_working_agent_is_interrupted_then_leaves_on_exit() {
    let env = Env::new(1, 1);
    let d = Daemon::start(env.config()).unwrap();
    env.task(0, "w.md", "work @fake:sleep=600");
    wait_for("a working, confirmed session", T, || {
        d.ctx
            .state()
            .sessions
            .values()
            .any(|s| s.state == SessionState::Working && s.hooks_confirmed)
    });
    let t0 = Instant::now();
    d.ctx
        .to_watcher
        .send(WatchMsg::Recycle("t-1".into()))
        .unwrap();
    wait_for("the agent's exit", T, || !env.log(0, "exit").is_empty());
    let took = t0.elapsed();
    assert_eq!(env.log(0, "exit")[0]["reason"], "prompt_input_exit");
    assert_eq!(env.log(0, "interrupted").len(), 1);
    // No message was queued into the working agent.
    assert_eq!(env.messages(0).len(), 1);
    // Well before half of stop_timeout (4 s), when SIGTERM would come.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    d.shutdown(Duration::from_secs(2));
}

#[test]
fn unwatchable_projects_make_one_warning_line() {
    let env = Env::new(1, 1);
    // Three projects under projects_dir whose inbox is a file: no watch.
    let dir = env.root().join("many");
    for i in 0..3 {
        let aq = dir.join(format!("p{i}/.agent-queue"));
        fs::create_dir_all(&aq).unwrap();
        fs::write(aq.join("inbox"), "not a folder").unwrap();
    }
    let mut env = env;
    env.extra = format!("projects_dir: '{}'\n", dir.display());
    let cfg = env.write_config();
    let log = env.root().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_claude-failover"))
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let warnings = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("could not be watched"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    wait_for("the warning", T, || !warnings().is_empty());
    // Each SIGHUP is a rescan; a configured project's inbox, removed, comes
    // back when it is done.
    let inbox = env.inbox(0);
    for _ in 0..2 {
        fs::remove_dir_all(&inbox).unwrap();
        // SAFETY: kill(2) on our own child with a plain signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
        wait_for("a rescan", T, || inbox.is_dir());
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let w = warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("3 of 4 projects"), "{}", w[0]);
    assert!(w[0].contains("fs.inotify.max_user_watches"), "{}", w[0]);
}
