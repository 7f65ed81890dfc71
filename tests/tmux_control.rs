//! The control-mode client on a real tmux server (private socket): text
//! reaches the pane literally, nothing in it is run, and the client comes
//! back after the server is restarted.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use claude_failover::tmux_control::{Answer, Control};

fn tmux(sock: &Path, args: &[&str]) -> bool {
    Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `f` until it gives `Some`, for at most 10 s.
fn within<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ok(a: Option<Answer>) -> Option<String> {
    match a {
        Some(Answer::Ok(s)) => Some(s),
        _ => None,
    }
}

#[test]
fn literal_text_nothing_run_and_back_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let marker = dir.path().join("pwned");
    let c = Control::new(Some(sock.clone()));
    // No server yet: nothing to attach to.
    assert!(c.run(&["list-sessions"]).is_none());

    assert!(tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "a",
            "-x",
            "300",
            "-y",
            "20",
            "cat"
        ]
    ));
    let text = format!(
        "x; run-shell 'touch {m}' $HOME \"q\" #{{pane_pid}} \\ é",
        m = marker.display()
    );
    let text = text.as_str();
    let sent = within("the control client", || {
        ok(c.run(&["send-keys", "-l", "-t", "=a:", "--", text]))
    });
    assert_eq!(sent, "");
    let screen = within("the text on the screen", || {
        ok(c.run(&["capture-pane", "-p", "-t", "=a:"])).filter(|s| s.contains("é"))
    });
    assert!(screen.contains(text), "{screen}");
    assert!(!marker.exists());
    match c.run(&["capture-pane", "-p", "-t", "=nosuch:"]) {
        Some(Answer::Err(e)) => assert!(e.contains("can't find"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }

    // A `;` sequence answers once, both outputs; after an error in one,
    // the next command still gets its own answer.
    let two = ok(c.run(&[
        "display-message",
        "-p",
        "one",
        ";",
        "display-message",
        "-p",
        "two",
    ]));
    assert_eq!(two.as_deref(), Some("one\ntwo\n"));
    let failed = c.run(&[
        "set-option",
        "-t",
        "=nosuch:",
        "x",
        "y",
        ";",
        "display-message",
        "-p",
        "z",
    ]);
    assert!(matches!(failed, Some(Answer::Err(_))), "{failed:?}");
    assert_eq!(
        ok(c.run(&["display-message", "-p", "next"])).as_deref(),
        Some("next\n")
    );

    // A restart: the old client ends; a later command finds the new server.
    assert!(tmux(&sock, &["kill-server"]));
    assert!(!matches!(c.run(&["list-sessions"]), Some(Answer::Ok(_))));
    assert!(tmux(&sock, &["new-session", "-d", "-s", "b", "cat"]));
    let names = within("the client on the new server", || {
        ok(c.run(&[
            OsStr::new("list-sessions"),
            OsStr::new("-F"),
            OsStr::new("#{session_name}"),
        ]))
    });
    assert_eq!(names.trim(), "b");
    tmux(&sock, &["kill-server"]);
}
