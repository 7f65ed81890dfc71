//! Drives `tests/fake-claude` (the stand-in for Claude Code used by the
//! end-to-end tests) in a real tmux server on a private socket, to prove the
//! stand-in behaves the way the daemon relies on: start-up screens, the ready
//! screen, bracketed paste, hooks, the usage-limit menu, `/exit`, and
//! `--session-id` reuse. Needs `tmux` and `python3` on PATH.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-claude")
}

/// A tmux server of our own, killed on drop.
struct Tmux {
    _dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("sock");
        let t = Tmux { _dir: dir, sock };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            "sleep",
            "3600",
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed (is tmux installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.ok(&["set-option", "-w", "-t", "t", "remain-on-exit", "on"]);
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("cannot run tmux: is it installed?")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start the fake in the pane: cwd `dir`, env `env`, argv after the program.
    fn spawn(&self, dir: &Path, env: &[(&str, String)], args: &[&str]) {
        let mut a: Vec<String> = vec![
            "respawn-pane".into(),
            "-k".into(),
            "-c".into(),
            dir.display().to_string(),
        ];
        for (k, v) in env {
            a.push("-e".into());
            a.push(format!("{k}={v}"));
        }
        a.extend([
            "-t".into(),
            "t".into(),
            "--".into(),
            fake().display().to_string(),
        ]);
        a.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        self.ok(&refs);
    }

    fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, literal: &str) {
        self.ok(&["send-keys", "-t", "t", "-l", "--", literal]);
    }

    fn key(&self, name: &str) {
        self.ok(&["send-keys", "-t", "t", name]);
    }

    /// Screen and scrollback: once a pane is dead, tmux 3.3a may have moved its
    /// last output off the visible screen.
    fn history(&self) -> String {
        self.ok(&["capture-pane", "-p", "-S", "-", "-t", "t"])
    }

    /// `Some(status)` once the pane's process has exited and been reaped (tmux
    /// sets pane_dead at the pty's EOF, pane_dead_status a moment later).
    fn dead_status(&self) -> Option<i32> {
        let s = self.ok(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_dead} #{pane_dead_status}",
        ]);
        let mut it = s.split_whitespace();
        match (it.next(), it.next().and_then(|x| x.parse().ok())) {
            (Some("1"), Some(st)) => Some(st),
            _ => None,
        }
    }

    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The exit status of the pane's process. tmux 3.3a sometimes misses the
    /// SIGCHLD of a pane that exits right after `respawn-pane -k` under load: the
    /// pane shows dead (pty EOF) but the process stays an unreaped zombie with no
    /// `pane_dead_status` until the server's next SIGCHLD; so nudge it with one.
    fn wait_exit(&self) -> i32 {
        let end = Instant::now() + DEADLINE;
        let mut dead_since: Option<Instant> = None;
        loop {
            if let Some(st) = self.dead_status() {
                return st;
            }
            let dead = self
                .ok(&["display-message", "-p", "-t", "t", "#{pane_dead}"])
                .trim()
                == "1";
            if dead
                && dead_since.get_or_insert_with(Instant::now).elapsed()
                    > Duration::from_millis(200)
            {
                let pid = self.ok(&["display-message", "-p", "#{pid}"]);
                let _ = Command::new("kill").args(["-CHLD", pid.trim()]).status();
                dead_since = Some(Instant::now());
            }
            if Instant::now() > end {
                panic!("timed out waiting for exit; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn wait_until<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// JSON lines of a file (missing file: none). Only finished lines count:
/// the writer may be in the middle of the last one.
fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(p).unwrap_or_default();
    let finished = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    finished
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn ready(s: &str) -> bool {
    s.contains("Claude Code v2.1.197")
        && s.lines().any(|l| l.starts_with('❯'))
        && s.contains("⏵⏵ bypass permissions on")
        && !s.contains("What do you want to do?")
}

/// A project, an account config dir and a hook that appends its stdin to a file.
struct Fixture {
    root: tempfile::TempDir,
}

impl Fixture {
    fn new(prepared: bool) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let f = Fixture { root };
        fs::create_dir_all(f.project().join(".claude")).unwrap();
        fs::create_dir_all(f.config()).unwrap();
        if prepared {
            let cfg = serde_json::json!({
                "hasCompletedOnboarding": true,
                "bypassPermissionsModeAccepted": true,
                "projects": { f.project().display().to_string(): { "hasTrustDialogAccepted": true } }
            });
            fs::write(f.config().join(".claude.json"), cfg.to_string()).unwrap();
        }
        let hook = f.dir().join("hook.sh");
        fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncat >> '{}'\necho >> '{}'\n",
                f.hooks_out().display(),
                f.hooks_out().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
        let h = |m: Option<&str>, cmd: &str| {
            let mut g = serde_json::json!({ "hooks": [ { "type": "command", "command": cmd, "timeout": 30 } ] });
            if let Some(m) = m {
                g["matcher"] = m.into();
            }
            serde_json::json!([g])
        };
        let cmd = hook.display().to_string();
        let guard = "if grep -q forbidden; then echo 'no forbidden things' >&2; exit 2; fi";
        let settings = serde_json::json!({ "hooks": {
            "SessionStart": h(None, &cmd), "Stop": h(None, &cmd), "StopFailure": h(None, &cmd),
            "SessionEnd": h(None, &cmd), "Notification": h(None, &cmd),
            "PreToolUse": h(Some("Bash|Edit|Write"), guard),
        }});
        fs::write(
            f.project().join(".claude/settings.json"),
            settings.to_string(),
        )
        .unwrap();
        f
    }
    /// Canonical: the fake (like claude) keys trust and transcripts by getcwd().
    fn dir(&self) -> PathBuf {
        self.root.path().canonicalize().unwrap()
    }
    fn project(&self) -> PathBuf {
        self.dir().join("proj")
    }
    fn config(&self) -> PathBuf {
        self.dir().join("account")
    }
    fn hooks_out(&self) -> PathBuf {
        self.dir().join("hooks.out")
    }
    fn log(&self) -> Vec<serde_json::Value> {
        json_lines(&self.config().join("fake-claude/log.jsonl"))
    }
    fn hook_events(&self) -> Vec<serde_json::Value> {
        json_lines(&self.hooks_out())
    }
    fn hook_event(&self, name: &str) -> Option<serde_json::Value> {
        self.hook_events()
            .into_iter()
            .find(|e| e["hook_event_name"] == name)
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLAUDE_CONFIG_DIR", self.config().display().to_string()),
            ("CLAUDE_FAILOVER_SESSION", "t".into()),
            (
                "CLAUDE_FAILOVER_EVENTS",
                self.dir().join("events").display().to_string(),
            ),
            ("DISABLE_AUTOUPDATER", "1".into()),
        ]
    }
}

const SID: &str = "0b5e8a3c-1d2e-4f60-8a7b-9c0d1e2f3a4b";

fn launch(t: &Tmux, f: &Fixture, sid: &str) {
    t.spawn(
        &f.project(),
        &f.env(),
        &[
            "--model",
            "sonnet",
            "--dangerously-skip-permissions",
            "--session-id",
            sid,
        ],
    );
}

#[test]
fn fresh_config_shows_onboarding_trust_and_bypass_screens() {
    let f = Fixture::new(false);
    let t = Tmux::new();
    launch(&t, &f, SID);
    let s = t.wait_screen("theme picker", |s| s.contains("Choose the text style"));
    assert!(s.contains("❯ 2. Dark mode ✔"), "{s}");
    assert!(!s.contains("bypass permissions on"), "{s}");
    t.key("Enter");
    t.wait_screen("security notes", |s| s.contains("Press Enter to continue…"));
    t.key("Enter");
    let s = t.wait_screen("trust dialog", |s| s.contains("Accessing workspace:"));
    assert!(
        s.contains("❯ 1. Yes, I trust this folder") && s.contains("2. No, exit"),
        "{s}"
    );
    t.key("Enter");
    let s = t.wait_screen("bypass warning", |s| {
        s.contains("WARNING: Claude Code running in Bypass Permissions mode")
    });
    assert!(
        s.contains("❯ 1. No, exit") && s.contains("2. Yes, I accept"),
        "{s}"
    );
    // the first option is "No, exit": Enter leaves with status 1
    t.key("Enter");
    assert_eq!(t.wait_exit(), 1);
    // the fake persisted what was accepted, like claude
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(f.config().join(".claude.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["hasCompletedOnboarding"], true);
    assert_eq!(
        cfg["projects"][f.project().display().to_string()]["hasTrustDialogAccepted"],
        true
    );
    assert!(cfg.get("bypassPermissionsModeAccepted").is_none());
    let user = fs::read_to_string(f.config().join("settings.json")).unwrap_or_default();
    assert!(
        !user.contains("skipDangerousModePermissionPrompt"),
        "{user}"
    );
    // never reached the ready screen: no hook ran
    assert!(f.hook_events().is_empty());
}

#[test]
fn untrusted_folder_runs_no_hooks() {
    let f = Fixture::new(false);
    let cfg = serde_json::json!({ "hasCompletedOnboarding": true, "bypassPermissionsModeAccepted": true });
    fs::write(f.config().join(".claude.json"), cfg.to_string()).unwrap();
    let t = Tmux::new();
    launch(&t, &f, SID);
    t.wait_screen("trust dialog", |s| s.contains("Accessing workspace:"));
    t.key("Enter");
    t.wait_screen("ready", ready);
    t.keys("hello");
    t.key("Enter");
    wait_until("message logged", || {
        f.log().into_iter().find(|e| e["event"] == "message")
    });
    t.wait_screen("answer", |s| s.contains("● Done."));
    t.keys("/exit");
    t.key("Enter");
    assert_eq!(t.wait_exit(), 0);
    assert!(f.hook_events().is_empty(), "{:?}", f.hook_events());
}

#[test]
fn paste_arrives_verbatim_and_hooks_run() {
    let f = Fixture::new(true);
    let t = Tmux::new();
    launch(&t, &f, SID);
    let s = t.wait_screen("ready", ready);
    assert!(s.contains("▝▜█████▛▘  Sonnet 5 · Claude Max"), "{s}");
    assert!(s.lines().any(|l| l.starts_with("────")), "{s}");
    let start = wait_until("SessionStart hook", || f.hook_event("SessionStart"));
    assert_eq!(start["source"], "startup");
    assert_eq!(start["session_id"], SID);
    // as 2.1.197 sends it: the resolved model id, no permission_mode
    assert_eq!(start["model"], "claude-sonnet-5");
    assert!(start.get("permission_mode").is_none(), "{start}");
    assert_eq!(start["cwd"], f.project().display().to_string());

    let body = "[task.md] first line with $HOME and `uname` and $(id)\n\"double\" 'single' \\n tab\there\nünïcødé ✓\nlast line ends in a backslash \\";
    t.keys(&format!("\x1b[200~{body}\x1b[201~"));
    t.wait_screen("paste placeholder", |s| {
        s.contains("[Pasted text #1 +3 lines]")
    });
    // nothing is submitted before the separate Enter
    assert!(f.log().iter().all(|e| e["event"] != "message"));
    t.key("Enter");
    let msg = wait_until("message logged", || {
        f.log().into_iter().find(|e| e["event"] == "message")
    });
    // as 2.1.197 sends it: tabs become four spaces
    assert_eq!(msg["message"], body.replace('\t', "    "));
    assert_eq!(msg["session_id"], SID);
    assert_eq!(msg["resumed"], false);
    assert_eq!(msg["env"]["CLAUDE_FAILOVER_SESSION"], "t");
    assert_eq!(msg["env"]["ANTHROPIC_API_KEY"], serde_json::Value::Null);
    // the start record carries the whole environment the agent got
    let start_rec = f.log().into_iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start_rec["environ"]["CLAUDE_FAILOVER_SESSION"], "t");
    assert!(start_rec["environ"]["PATH"].is_string(), "{start_rec}");
    let s = t.wait_screen("answer", |s| {
        s.contains("● Done.") && s.contains("✻ Churned for")
    });
    assert!(s.contains("❯ [task.md] first line with $HOME"), "{s}");
    let stop = wait_until("Stop hook", || f.hook_event("Stop"));
    assert_eq!(stop["last_assistant_message"], "Done.");
    assert_eq!(stop["stop_hook_active"], false);
    assert_eq!(stop["permission_mode"], "bypassPermissions");
    assert_eq!(stop["effort"]["level"], "high");
    assert_eq!(stop["prompt_id"], msg_prompt_id(&f));
    assert_eq!(stop["background_tasks"], serde_json::json!([]));
    // the transcript has the message
    let tr = f.config().join("projects").join(
        f.project()
            .display()
            .to_string()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
    );
    let lines = json_lines(&tr.join(format!("{SID}.jsonl")));
    assert!(lines
        .iter()
        .any(|e| e["message"]["content"] == body.replace('\t', "    ")));

    // A short paste (<= 2 line breaks) goes inline, and like claude a backslash
    // before Enter turns into a line break instead of submitting; the next Enter
    // submits, trimmed: the backslash is lost.
    t.keys("\x1b[200~short one\nends in \\\x1b[201~");
    t.wait_screen("inline paste", |s| s.contains("ends in \\"));
    t.key("Enter");
    t.wait_screen("backslash became a line break", |s| {
        !s.contains("ends in \\") && s.contains("ends in")
    });
    assert_eq!(
        f.log().iter().filter(|e| e["event"] == "message").count(),
        1
    );
    t.key("Enter");
    let short = wait_until("second message", || {
        f.log()
            .into_iter()
            .filter(|e| e["event"] == "message")
            .nth(1)
    });
    assert_eq!(short["message"], "short one\nends in");
    wait_until("second Stop", || {
        (f.hook_events()
            .iter()
            .filter(|e| e["hook_event_name"] == "Stop")
            .count()
            == 2)
            .then_some(())
    });

    // a PreToolUse hook that exits 2 blocks the call
    t.keys("@fake:bash=echo forbidden");
    t.key("Enter");
    let tool = wait_until("tool record", || {
        f.log().into_iter().find(|e| e["event"] == "tool")
    });
    assert_eq!(tool["decision"], "block");
    assert_eq!(tool["stderr"], "no forbidden things");
    t.wait_screen("blocked", |s| s.contains("⎿  Error: no forbidden things"));

    t.keys("/exit");
    t.key("Enter");
    assert_eq!(t.wait_exit(), 0);
    let end = wait_until("SessionEnd hook", || f.hook_event("SessionEnd"));
    assert_eq!(end["reason"], "prompt_input_exit");
    let exit = f
        .log()
        .into_iter()
        .find(|e| e["event"] == "exit")
        .expect("exit record");
    assert_eq!(exit["reason"], "prompt_input_exit");
}

#[test]
fn usage_limit_opens_menu_and_esc_closes_it() {
    let f = Fixture::new(true);
    let t = Tmux::new();
    launch(&t, &f, SID);
    t.wait_screen("ready", ready);
    t.keys("do the thing @fake:limit");
    t.key("Enter");
    let s = t.wait_screen("limit menu", |s| s.contains("What do you want to do?"));
    assert!(
        s.contains("⎿  You've hit your session limit · resets"),
        "{s}"
    );
    assert!(s.contains("❯ 1. Stop and wait for limit to reset"), "{s}");
    assert!(
        !s.contains("bypass permissions on"),
        "the menu replaces the input box: {s}"
    );
    let fail = wait_until("StopFailure hook", || f.hook_event("StopFailure"));
    assert_eq!(fail["error"], "rate_limit");
    assert_eq!(
        fail["last_assistant_message"],
        "You've hit your session limit · resets 8:12pm (UTC)"
    );
    t.key("Escape");
    let s = t.wait_screen("menu closed", ready);
    assert!(s.contains("You've hit your session limit"), "{s}");
    assert!(f.hook_event("Stop").is_none(), "no Stop after an API error");

    // typed into the menu, "/exit" + Enter only picks option 1
    t.keys("again");
    t.key("Enter");
    t.wait_screen("menu again", |s| s.contains("What do you want to do?"));
    t.keys("/exit");
    t.key("Enter");
    t.wait_screen("menu picked", ready);
    assert_eq!(t.dead_status(), None);
    t.keys("/exit");
    t.key("Enter");
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn session_id_reuse_and_missing_resume_exit_1() {
    let f = Fixture::new(true);
    let t = Tmux::new();
    let dir = f.config().join("projects").join(
        f.project()
            .display()
            .to_string()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
    );
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{SID}.jsonl")), "{}\n").unwrap();
    launch(&t, &f, SID);
    assert_eq!(t.wait_exit(), 1);
    assert!(t.history().contains("already in use"), "{}", t.history());

    let other = "7d1c3e2a-0000-4000-8000-000000000001";
    t.spawn(
        &f.project(),
        &f.env(),
        &[
            "--model",
            "sonnet",
            "--dangerously-skip-permissions",
            "--resume",
            other,
        ],
    );
    assert_eq!(t.wait_exit(), 1);

    // --resume of the existing one works and says so to SessionStart
    t.spawn(
        &f.project(),
        &f.env(),
        &[
            "--model",
            "sonnet",
            "--dangerously-skip-permissions",
            "--resume",
            SID,
        ],
    );
    t.wait_screen("ready", ready);
    let start = wait_until("SessionStart hook", || f.hook_event("SessionStart"));
    assert_eq!(start["source"], "resume");
    assert!(f
        .hook_events()
        .iter()
        .all(|e| e["hook_event_name"] != "SessionEnd"));
    // SIGTERM: SessionEnd with reason "other"
    let pid = wait_until("start record", || {
        f.log()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "ready")
            .and_then(|e| e["pid"].as_i64())
    });
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    assert_eq!(t.wait_exit(), 143, "like claude: 128 + SIGTERM");
    let end = wait_until("SessionEnd hook", || f.hook_event("SessionEnd"));
    assert_eq!(end["reason"], "other");
}

/// The prompt id of the first message, from the transcript's user entry.
fn msg_prompt_id(f: &Fixture) -> serde_json::Value {
    let dir = f.config().join("projects").join(
        f.project()
            .display()
            .to_string()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
    );
    json_lines(&dir.join(format!("{SID}.jsonl")))
        .into_iter()
        .find(|e| e["type"] == "user")
        .map(|e| e["promptId"].clone())
        .unwrap_or_default()
}

/// Starts a prepared fixture and waits for the ready screen.
fn ready_fake() -> (Fixture, Tmux) {
    let f = Fixture::new(true);
    let t = Tmux::new();
    launch(&t, &f, SID);
    t.wait_screen("ready", ready);
    (f, t)
}

fn count_hooks(f: &Fixture, name: &str) -> usize {
    f.hook_events()
        .iter()
        .filter(|e| e["hook_event_name"] == name)
        .count()
}

fn transcript(f: &Fixture, sid: &str) -> Vec<serde_json::Value> {
    let dir = f.config().join("projects").join(
        f.project()
            .display()
            .to_string()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
    );
    json_lines(&dir.join(format!("{sid}.jsonl")))
}

/// The rule + `❯` pairs on a screen, top to bottom: the text after `❯`.
fn input_pairs(s: &str) -> Vec<String> {
    let lines: Vec<&str> = s.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("────"))
        .filter_map(|w| w[1].strip_prefix('❯'))
        .map(|r| r.trim().to_string())
        .collect()
}

#[test]
fn a_limit_in_2_1_197_order_fires_stop_failure_before_the_line() {
    let (f, t) = ready_fake();
    t.keys("work @fake:limit=1.5");
    t.key("Enter");
    let fail = wait_until("StopFailure hook", || f.hook_event("StopFailure"));
    assert_eq!(fail["error"], "rate_limit");
    // The event is out, the line is not drawn yet; the transcript has it.
    assert!(!t.screen().contains("You've hit your"), "{}", t.screen());
    let limit = transcript(&f, SID)
        .into_iter()
        .find(|e| e["isApiErrorMessage"] == true)
        .expect("the limit message in the transcript");
    assert_eq!(
        limit["message"]["content"][0]["text"],
        "You've hit your session limit · resets 8:12pm (UTC)"
    );
    // Then the line, then claude types /rate-limit-options and opens the menu.
    let s = t.wait_screen("limit menu", |s| s.contains("What do you want to do?"));
    assert!(s.contains("⎿  You've hit your session limit"), "{s}");
    assert!(s.contains("❯ /rate-limit-options"), "{s}");
    assert!(f
        .log()
        .iter()
        .any(|e| e["event"] == "command" && e["command"] == "rate-limit-options"));
    // Sticky: the next message is at the limit too, in the same order.
    t.key("Escape");
    t.wait_screen("menu closed", ready);
    t.keys("again");
    t.key("Enter");
    wait_until("second StopFailure", || {
        (count_hooks(&f, "StopFailure") == 2).then_some(())
    });
    assert_eq!(count_hooks(&f, "Stop"), 0);
}

#[test]
fn below_14_rows_the_limit_line_scrolls_off_under_the_menu() {
    let (_f, t) = ready_fake();
    t.ok(&["resize-window", "-t", "t", "-x", "80", "-y", "13"]);
    t.keys("work @fake:limit=0");
    t.key("Enter");
    let s = t.wait_screen("limit menu", |s| s.contains("Upgrade your plan"));
    assert!(!s.contains("You've hit your"), "{s}");
    t.ok(&["resize-window", "-t", "t", "-x", "80", "-y", "14"]);
    t.wait_screen("the limit line at 14 rows", |s| {
        s.contains("You've hit your") && s.contains("Upgrade your plan")
    });
}

#[test]
fn leading_bang_and_slash_are_bash_mode_and_commands_a_space_makes_text() {
    let (f, t) = ready_fake();
    let messages = |f: &Fixture| -> Vec<String> {
        f.log()
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    t.keys("\x1b[200~!touch pwned\x1b[201~");
    t.wait_screen("bash mode prompt", |s| s.contains("!\u{a0}touch pwned"));
    t.key("Enter");
    let bash = wait_until("bash mode", || {
        f.log().into_iter().find(|e| e["event"] == "bash_mode")
    });
    assert_eq!(bash["command"], "touch pwned");
    // A leading space: plain text, kept as sent (the end trimmed).
    t.keys("\x1b[200~ !touch pwned  \x1b[201~");
    t.key("Enter");
    wait_until("the text message", || {
        messages(&f)
            .contains(&" !touch pwned".to_string())
            .then_some(())
    });
    wait_until("its Stop", || (count_hooks(&f, "Stop") == 1).then_some(()));
    t.keys(" /exit");
    t.key("Enter");
    wait_until("` /exit` as text", || {
        messages(&f).contains(&" /exit".to_string()).then_some(())
    });
    wait_until("its Stop", || (count_hooks(&f, "Stop") == 2).then_some(()));
    t.keys("/frobnicate now");
    t.key("Enter");
    t.wait_screen("unknown command", |s| {
        s.contains("Unknown command: /frobnicate") && s.contains("Args from unknown skill: now")
    });
    // /clear: SessionEnd, a new conversation id, no Stop.
    t.keys("/clear");
    t.key("Enter");
    let start = wait_until("SessionStart clear", || {
        f.hook_events()
            .into_iter()
            .find(|e| e["hook_event_name"] == "SessionStart" && e["source"] == "clear")
    });
    assert_ne!(start["session_id"], SID);
    assert_eq!(count_hooks(&f, "Stop"), 2);
    assert_eq!(messages(&f).len(), 2, "{:?}", messages(&f));
    t.keys("/exit");
    t.key("Enter");
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn a_question_notifies_then_waits_for_an_answer() {
    let f = Fixture::new(true);
    fs::write(f.config().join("fake-claude.asktime"), "0.3").unwrap();
    let t = Tmux::new();
    launch(&t, &f, SID);
    t.wait_screen("ready", ready);
    t.keys("work @fake:askagain @fake:ask=Which database should I use?");
    t.key("Enter");
    let n = wait_until("permission_prompt", || {
        f.hook_event("Notification")
            .filter(|e| e["notification_type"] == "permission_prompt")
    });
    assert!(n["message"].as_str().unwrap().contains("AskUserQuestion"));
    let s = t.wait_screen("the question", |s| {
        s.contains("Which database should I use?")
    });
    assert!(
        input_pairs(&s).is_empty(),
        "the question replaces the input box: {s}"
    );
    // Esc declines: the turn ends with no Stop.
    t.key("Escape");
    t.wait_screen("declined", |s| {
        s.contains("User declined to answer questions")
    });
    t.wait_screen("input box back", ready);
    // askagain: the next message asks it again; an answer lets it finish.
    t.keys("decide yourself");
    t.key("Enter");
    t.wait_screen("asked again", |s| s.contains("Enter to select"));
    t.key("Enter");
    wait_until("Stop after the answer", || f.hook_event("Stop"));
    let asked = f.log().iter().filter(|e| e["event"] == "question").count();
    assert_eq!(asked, 2);
}

#[test]
fn a_full_redraw_leaves_a_ghost_input_box_above_the_live_one() {
    let (f, t) = ready_fake();
    let pid = wait_until("ready record", || {
        f.log()
            .into_iter()
            .find(|e| e["event"] == "ready")
            .and_then(|e| e["pid"].as_i64())
    });
    t.keys("half typed");
    t.wait_screen("typed", |s| s.contains("❯\u{a0}half typed"));
    assert!(Command::new("kill")
        .arg("-CONT")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    t.wait_screen("two input boxes", |s| input_pairs(s).len() == 2);
    t.key("C-u");
    let s = t.wait_screen("live box emptied", |s| {
        input_pairs(s) == vec!["half typed".to_string(), String::new()]
    });
    assert_eq!(s.matches("⏵⏵ bypass permissions on").count(), 2, "{s}");
    // The switch file does the same once at start-up.
    drop(t);
    let g = Fixture::new(true);
    fs::write(g.config().join("fake-claude.ghost"), "").unwrap();
    let t = Tmux::new();
    launch(&t, &g, SID);
    t.wait_screen("ghost at start", |s| input_pairs(s).len() == 2);
}
