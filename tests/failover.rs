//! End-to-end tests of the quota monitor and the account switcher, with the
//! real parts: a loopback HTTP server standing in for the usage endpoint
//! (and catching the webhook notices), a private tmux server, and the
//! stand-in claude (tests/fake-claude) running the deployed hooks.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use claude_failover::bus::Refusal;
use claude_failover::daemon::{Daemon, FailoverMsg};
use claude_failover::state::{SessionState, TokenState};
use claude_failover::timefmt::{now_ms, now_secs};
use serde_json::Value;
use support::usage::{creds, Mode, Setup};
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(25);

fn stop(d: Daemon) {
    d.shutdown(Duration::from_secs(3));
}

/// Names of the sessions working with a known conversation.
fn working(d: &Daemon) -> Vec<(String, String)> {
    d.ctx
        .state()
        .sessions
        .values()
        .filter(|s| s.state == SessionState::Working && s.hooks_confirmed)
        .filter_map(|s| Some((s.name.clone(), s.claude_session_id.clone()?)))
        .collect()
}

/// `start` records of resumed conversations on an account.
fn resumed(env: &Env, account: usize) -> Vec<Value> {
    env.log(account, "start")
        .into_iter()
        .filter(|r| r["resumed"] == true)
        .collect()
}

fn active(d: &Daemon) -> String {
    d.ctx.state().active_account.clone()
}

// ------------------------------------------------------------------ tests

#[test]
fn threshold_crossed_moves_working_sessions_with_their_conversations() {
    let s = Setup::new(1, 2);
    let d = s.start();
    s.long_task(0, "a.md");
    s.long_task(0, "b.md");
    wait_for("two sessions working", T, || working(&d).len() == 2);
    let before = working(&d);
    assert_eq!(active(&d), "main");

    s.server.usage("tok-main", 91.0, 40.0);
    wait_for("both conversations resumed on backup", T, || {
        resumed(&s.env, 1).len() == 2
    });
    let backup_dir = s.env.accounts[1].1.display().to_string();
    for r in resumed(&s.env, 1) {
        let id = r["session_id"].as_str().unwrap();
        assert!(
            before.iter().any(|(_, b)| b == id),
            "{id} not one of {before:?}"
        );
        assert_eq!(r["env"]["CLAUDE_CONFIG_DIR"], backup_dir.as_str());
        let argv: Vec<&str> = r["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let i = argv.iter().position(|a| *a == "--resume").unwrap();
        assert_eq!(argv[i + 1], id);
    }
    // Each got the note on the new account.
    wait_for("the notes", T, || {
        s.env
            .messages(1)
            .iter()
            .filter(|m| m.contains("moved to another account (main → backup)"))
            .count()
            == 2
    });
    assert_eq!(active(&d), "backup");
    wait_for("the failover recorded", T, || {
        d.ctx.state().metrics.failovers == 1
    });
    {
        let st = d.ctx.state();
        for (name, _) in &before {
            assert_eq!(st.sessions[name].account.as_deref(), Some("backup"));
        }
        assert!(st.last_failover.is_some());
        assert!(!st.failover_in_progress);
        assert_eq!(st.metrics.failovers, 1);
    }
    // Transcripts are shared: both accounts link to the shared folder.
    for (_, dir) in &s.env.accounts {
        let link = dir.join("projects");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::canonicalize(&link).unwrap(),
            fs::canonicalize(s.shared()).unwrap()
        );
    }
    wait_for("the failover notices", T, || {
        s.server
            .notices("failover")
            .iter()
            .any(|n| n["fields"]["phase"] == "done")
    });
    let done = s
        .server
        .notices("failover")
        .into_iter()
        .find(|n| n["fields"]["phase"] == "done")
        .unwrap();
    assert_eq!(
        done["fields"]["moved"].as_array().unwrap().len(),
        2,
        "{done}"
    );
    // New tasks go to the new account.
    s.env.task(0, "c.md", "c.md after the switch");
    wait_for("a new task launched on backup", T, || {
        s.env
            .messages(1)
            .iter()
            .any(|m| m.contains("c.md after the switch"))
    });
    stop(d);
}

#[test]
fn limit_in_a_pane_fails_over_without_waiting_for_a_poll() {
    let mut s = Setup::new(1, 1);
    s.poll = "1h";
    let d = s.start();
    wait_for("the first poll", T, || s.server.requests("tok-main") == 1);
    // The agent hits its usage limit on the first message; the usage
    // windows do not show it (a per-model limit).
    s.env.task(0, "lim.md", "lim.md @fake:limit");
    wait_for("the limit on main", T, || !s.env.log(0, "limit").is_empty());
    let id = s.env.log(0, "limit")[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    wait_for("the conversation resumed on backup", T, || {
        !resumed(&s.env, 1).is_empty()
    });
    let took = t0.elapsed();
    let r = &resumed(&s.env, 1)[0];
    assert_eq!(r["session_id"], id.as_str());
    assert_eq!(active(&d), "backup");
    // No usage poll was needed for that.
    assert_eq!(s.server.requests("tok-main"), 1);
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The old agent really stopped on main (no second process there).
    let main_starts = s.env.log(0, "start").len();
    let exits = s.env.log(0, "exit").len();
    assert_eq!(main_starts, exits, "the agent on main is still running");
    // The account is held back as a target after its limit.
    assert!(d.ctx.state().accounts["main"].limited_until.is_some());
    // The history limit line on the resumed screen does not bounce it back.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(active(&d), "backup");
    assert_eq!(d.ctx.state().metrics.failovers, 1);
    stop(d);
}

#[test]
fn all_accounts_over_pauses_dispatch_until_the_reset() {
    let mut s = Setup::new(1, 1);
    // Only the start-up poll: the resume comes from the switcher's timer.
    s.poll = "1h";
    let reset = now_secs() + 4;
    s.server.usage("tok-main", 95.0, 50.0);
    s.server.set(
        "tok-backup",
        Mode::Usage {
            five: 99.0,
            seven: 50.0,
            resets: Some(reset),
        },
    );
    let d = s.start();
    wait_for("dispatch paused", T, || {
        d.ctx.state().dispatch_paused.is_some()
    });
    assert_eq!(d.ctx.state().paused_until, Some(reset));
    wait_for("the dispatch_paused notice", T, || {
        !s.server.notices("dispatch_paused").is_empty()
    });
    s.env.task(0, "waits.md", "waits.md");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.env.messages(0).is_empty() && s.env.messages(1).is_empty());
    // The backup's window resets.
    s.server.usage("tok-backup", 3.0, 50.0);
    wait_for("the task dispatched on backup after the reset", T, || {
        s.env.messages(1).iter().any(|m| m.contains("waits.md"))
    });
    assert!(now_secs() >= reset);
    let st = d.ctx.state();
    assert_eq!(st.active_account, "backup");
    assert!(st.dispatch_paused.is_none());
    drop(st);
    stop(d);
}

#[test]
fn cooldown_holds_automatic_failover_but_not_manual() {
    let s = Setup::new(1, 1);
    let d = s.start();
    s.long_task(0, "a.md");
    wait_for("working", T, || working(&d).len() == 1);
    s.server.usage("tok-main", 96.0, 5.0);
    wait_for("failover to backup", T, || !resumed(&s.env, 1).is_empty());
    wait_for("failover finished", T, || {
        d.ctx.state().metrics.failovers == 1 && !d.ctx.state().failover_in_progress
    });
    // Now backup is over and main is fine again: within the cooldown nothing moves.
    s.server.usage("tok-main", 10.0, 5.0);
    s.server.usage("tok-backup", 97.0, 5.0);
    let polls = s.server.requests("tok-backup");
    wait_for("a few more polls", T, || {
        s.server.requests("tok-backup") >= polls + 4
    });
    assert_eq!(active(&d), "backup");
    assert_eq!(d.ctx.state().metrics.failovers, 1);
    assert!(resumed(&s.env, 0).is_empty());
    // (The moved agent finished its task on the note; give backup another.)
    s.long_task(0, "b.md");
    wait_for("b.md working on backup", T, || {
        s.env.messages(1).iter().any(|m| m.starts_with("[b.md]")) && working(&d).len() == 1
    });

    // A manual failover ignores the cooldown; a second one while it runs is refused.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (tx2, rx2) = crossbeam_channel::bounded(1);
    d.ctx
        .to_failover
        .send(FailoverMsg::Manual {
            to: Some("main".into()),
            reply: Some(tx),
        })
        .unwrap();
    d.ctx
        .to_failover
        .send(FailoverMsg::Manual {
            to: None,
            reply: Some(tx2),
        })
        .unwrap();
    let r = rx.recv_timeout(T).unwrap();
    assert_eq!(r, Ok("failover from backup to main started".to_string()));
    let r2 = rx2.recv_timeout(T).unwrap();
    assert_eq!(r2, Err(Refusal::Running));
    wait_for("the conversation back on main", T, || {
        !resumed(&s.env, 0).is_empty()
    });
    assert_eq!(active(&d), "main");
    // Unknown target.
    let (tx, rx) = crossbeam_channel::bounded(1);
    wait_for("idle switcher", T, || !d.ctx.state().failover_in_progress);
    d.ctx
        .to_failover
        .send(FailoverMsg::Manual {
            to: Some("nope".into()),
            reply: Some(tx),
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(T).unwrap(),
        Err(Refusal::UnknownAccount("nope".into()))
    );
    stop(d);
}

#[test]
fn existing_projects_folders_are_merged_and_linked_with_nothing_lost() {
    let s = Setup::new(1, 0);
    let main = &s.env.accounts[0].1;
    let backup = &s.env.accounts[1].1;
    let shared = s.shared();
    let put = |p: PathBuf, text: &str| {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    put(main.join("projects/-srv-a/one.jsonl"), "main one\n");
    put(
        main.join("projects/-srv-a/same.jsonl"),
        "main same, the longer one\n",
    );
    put(backup.join("projects/-srv-b/two.jsonl"), "backup two\n");
    put(backup.join("projects/-srv-a/same.jsonl"), "backup same\n");
    put(shared.join("-srv-a/same.jsonl"), "shared\n");
    let d = s.start();
    let (tx, rx) = crossbeam_channel::bounded(1);
    d.ctx
        .to_failover
        .send(FailoverMsg::Manual {
            to: Some("backup".into()),
            reply: Some(tx),
        })
        .unwrap();
    assert!(rx.recv_timeout(T).unwrap().is_ok());
    wait_for("the failover done", T, || {
        d.ctx.state().metrics.failovers == 1
    });
    let mut all: Vec<(String, String)> = Vec::new();
    for e in walk(&shared) {
        let rel = e.strip_prefix(&shared).unwrap().display().to_string();
        all.push((rel, fs::read_to_string(&e).unwrap()));
    }
    all.sort();
    let texts: Vec<&str> = all.iter().map(|(_, t)| t.as_str()).collect();
    for t in [
        "main one\n",
        "main same, the longer one\n",
        "backup two\n",
        "backup same\n",
        "shared\n",
    ] {
        assert!(texts.contains(&t), "{t:?} lost: {all:?}");
    }
    assert_eq!(all.len(), 5, "{all:?}");
    // The longest copy of a conversation keeps its name.
    assert_eq!(
        fs::read_to_string(shared.join("-srv-a/same.jsonl")).unwrap(),
        "main same, the longer one\n"
    );
    for dir in [main, backup] {
        let link = dir.join("projects");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(link.join("-srv-a/one.jsonl")).unwrap(),
            "main one\n"
        );
    }
    stop(d);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn expired_or_rejected_tokens_make_an_account_unusable_with_a_notice() {
    let s = Setup::new(1, 0);
    creds(&s.env.accounts[1].1, "tok-backup", now_ms() - 1000);
    s.server.set("tok-main", Mode::Unauthorized);
    let d = s.start();
    wait_for("both unusable", T, || {
        let st = d.ctx.state();
        !st.accounts["main"].usable && !st.accounts["backup"].usable
    });
    {
        let st = d.ctx.state();
        let token = |a: &str| st.accounts[a].token.map(TokenState::as_str);
        assert_eq!(token("backup"), Some("expired"));
        assert_eq!(token("main"), Some("rejected"));
    }
    // An expired token is not even sent.
    assert_eq!(s.server.requests("tok-backup"), 0);
    wait_for("two token_expired notices", T, || {
        s.server.notices("token_expired").len() == 2
    });
    // Nothing usable: dispatching pauses.
    wait_for("paused", T, || d.ctx.state().dispatch_paused.is_some());
    // Claude refreshed the token: usable again, and dispatching resumes.
    creds(&s.env.accounts[1].1, "tok-backup-2", now_ms() + 3_600_000);
    s.server.usage("tok-backup-2", 1.0, 1.0);
    wait_for("backup usable and active", T, || {
        let st = d.ctx.state();
        st.accounts["backup"].usable
            && st.active_account == "backup"
            && st.dispatch_paused.is_none()
    });
    stop(d);
}

#[test]
fn a_429_is_honoured_and_errors_keep_the_last_reading() {
    let mut s = Setup::new(1, 0);
    s.poll = "200ms";
    let d = s.start();
    wait_for("readings", T, || {
        let st = d.ctx.state();
        st.accounts["main"].read_at.is_some() && st.accounts["backup"].read_at.is_some()
    });
    s.server.set("tok-main", Mode::TooMany(3));
    let n = s.server.requests("tok-main");
    wait_for("the 429", T, || s.server.requests("tok-main") == n + 1);
    let at = s.server.last_request("tok-main").unwrap();
    // The backup goes on being polled meanwhile; main is left alone.
    let b = s.server.requests("tok-backup");
    wait_for("more backup polls", T, || {
        s.server.requests("tok-backup") >= b + 6
    });
    assert_eq!(s.server.requests("tok-main"), n + 1);
    {
        let st = d.ctx.state();
        let m = &st.accounts["main"];
        assert_eq!(m.five_hour, Some(10.0), "the last reading is kept");
        assert!(m.error.as_deref().unwrap().contains("429"), "{m:?}");
        assert!(m.usable);
    }
    s.server.usage("tok-main", 12.0, 5.0);
    wait_for("polled again after retry-after", T, || {
        s.server.requests("tok-main") == n + 2
    });
    let gap = s.server.last_request("tok-main").unwrap() - at;
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    wait_for("the new reading", T, || {
        d.ctx.state().accounts["main"].five_hour == Some(12.0)
    });

    // Garbage and a slow answer keep the last reading, with the error.
    s.server.set("tok-backup", Mode::Garbage);
    wait_for("a garbage error", T, || {
        d.ctx.state().accounts["backup"]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not JSON"))
    });
    assert_eq!(d.ctx.state().accounts["backup"].five_hour, Some(20.0));
    s.server
        .set("tok-backup", Mode::Slow(Duration::from_secs(3)));
    wait_for("a timeout error", T, || {
        d.ctx.state().accounts["backup"]
            .error
            .as_deref()
            .is_some_and(|e| e.to_lowercase().contains("time"))
    });
    let st = d.ctx.state();
    assert_eq!(st.accounts["backup"].five_hour, Some(20.0));
    assert!(st.accounts["backup"].usable);
    drop(st);
    stop(d);
}

#[test]
fn a_server_throttle_is_retried_in_place() {
    let mut s = Setup::new(1, 1);
    s.poll = "1h";
    let d = s.start();
    s.env.task(0, "thr.md", "thr.md @fake:throttle");
    wait_for("the throttle", T, || !s.env.log(0, "throttle").is_empty());
    wait_for("`continue` typed after the pause", T, || {
        s.env.messages(0).iter().any(|m| m == "continue")
    });
    // The usage was checked at once, and no failover happened.
    assert!(s.server.requests("tok-main") >= 2);
    assert_eq!(active(&d), "main");
    assert!(resumed(&s.env, 1).is_empty());
    stop(d);
}

#[test]
fn quota_command_polls_every_account_once_and_prints_them() {
    let s = Setup::new(1, 0);
    s.server.usage("tok-main", 37.5, 12.0);
    s.server.usage("tok-backup", 91.0, 40.0);
    let cfg = s.env.root().join("config.yaml");
    fs::write(&cfg, s.yaml()).unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_claude-failover"));
        c.arg("quota").arg("-c").arg(&cfg);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = doc.to_string();
    assert!(text.contains("37.5") && text.contains("91"), "{text}");
    assert_eq!(s.server.requests("tok-main"), 1);
    assert_eq!(s.server.requests("tok-backup"), 1);
    let out = run(false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("main") && table.contains("backup") && table.contains("37"),
        "{table}"
    );
    // No account readable: exit 1.
    s.server.set("tok-main", Mode::Unauthorized);
    s.server.set("tok-backup", Mode::Unauthorized);
    let out = run(false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The state file as the daemon last wrote it.
fn state_file(s: &Setup) -> Value {
    fs::read(s.env.root().join("state/state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn alive(pid: u64) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// A daemon in its own process, killed with SIGKILL on drop.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints the spawned daemons' log when the test fails.
struct DumpOnPanic(PathBuf);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.0.display());
        }
    }
}

fn spawn_daemon(s: &Setup, cfg: &Path) -> Proc {
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.env.root().join("daemon.log"))
        .unwrap();
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_claude-failover"))
            .args(["run", "-c"])
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn kill_dash_nine_during_a_failover_then_a_restart_finishes_every_move() {
    // Where the daemon dies: as the switch is recorded, while a session is
    // being moved, and once the first conversation runs on the backup.
    type Point = fn(&Setup, &Value) -> bool;
    let points: [(&str, Point); 3] = [
        ("the switch recorded", |_, st| {
            st["failover_in_progress"] == true
        }),
        ("a session moving", |_, st| {
            st["sessions"]
                .as_object()
                .is_some_and(|m| m.values().any(|x| x["state"] == "moving"))
        }),
        ("one conversation resumed on backup", |s, _| {
            !resumed(&s.env, 1).is_empty()
        }),
    ];
    for (point, reached) in points {
        let s = Setup::new(1, 2);
        let cfg = s.env.root().join("config.yaml");
        fs::write(&cfg, s.yaml()).unwrap();
        let _dump = DumpOnPanic(s.env.root().join("daemon.log"));
        let d = spawn_daemon(&s, &cfg);
        s.long_task(0, "a.md");
        s.long_task(0, "b.md");
        wait_for("two agents working on main", T, || {
            let st = state_file(&s);
            st["sessions"].as_object().is_some_and(|m| {
                m.values()
                    .filter(|x| x["state"] == "working" && x["hooks_confirmed"] == true)
                    .count()
                    == 2
            })
        });
        let ids: Vec<String> = s
            .env
            .log(0, "start")
            .iter()
            .filter_map(|r| r["session_id"].as_str().map(String::from))
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        s.server.usage("tok-main", 91.0, 40.0);
        wait_for(point, T, || reached(&s, &state_file(&s)));
        drop(d); // SIGKILL
        let d = spawn_daemon(&s, &cfg);
        wait_for(&format!("killed at {point}: both moved"), T, || {
            let st = state_file(&s);
            let on_backup = st["sessions"].as_object().is_some_and(|m| {
                // Working, or done already: the note makes it go on.
                m.values().filter(|x| x["account"] == "backup").count() == 2
            });
            on_backup && st["failover_in_progress"] == false
        });
        let resumed_ids: Vec<String> = resumed(&s.env, 1)
            .iter()
            .filter_map(|r| r["session_id"].as_str().map(String::from))
            .collect();
        for id in &ids {
            assert!(
                resumed_ids.contains(id),
                "killed at {point}: {id} not resumed on backup: {resumed_ids:?}"
            );
        }
        for r in resumed(&s.env, 1) {
            let argv: Vec<&str> = r["argv"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            let i = argv.iter().position(|a| *a == "--resume").unwrap();
            assert!(ids.iter().any(|id| id == argv[i + 1]), "{argv:?}");
        }
        wait_for(
            &format!("killed at {point}: no agent left on main"),
            T,
            || {
                s.env
                    .log(0, "start")
                    .iter()
                    .filter_map(|r| r["pid"].as_u64())
                    .all(|pid| !alive(pid))
            },
        );
        let st = state_file(&s);
        assert_eq!(st["active_account"], "backup", "killed at {point}");
        for x in st["sessions"].as_object().unwrap().values() {
            let id = x["claude_session_id"].as_str().unwrap_or_default();
            assert!(ids.iter().any(|i| i == id), "killed at {point}: {x}");
        }
        drop(d);
    }
}
