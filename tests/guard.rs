//! The guard, `hook.sh`, run for real with `bash`: the corpus in
//! `tests/guard_cases.txt` (every case a real PreToolUse call) and the hook's
//! other duties: modes, event files, the audit log, bad input, JSON escapes,
//! ConfigChange, shellcheck.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const PROJECT: &str = "/home/u/proj";

/// The guard under test, copied once under cargo's temp folder: a call
/// blocked with no events folder writes its audit line beside the script,
/// and that must never be the checkout.
fn hook() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guard");
        fs::create_dir_all(&dir).expect("guard test folder");
        let _ = fs::remove_file(dir.join("claude-failover.audit.log"));
        let script = dir.join("hook.sh");
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("hook.sh"),
            &script,
        )
        .expect("copy of hook.sh");
        script
    })
    .clone()
}

/// Temporary folders live under /var/tmp, wherever the checkout is: a HOME
/// under /tmp would make /tmp one of HOME's ancestors, which the guard
/// protects, and the corpus expects `rm -rf /tmp/*` to pass.
fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cf-guard-")
        .tempdir_in("/var/tmp")
        .expect("temp dir in /var/tmp")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `bash SCRIPT` with a clean environment: PATH, HOME, CLAUDE_PROJECT_DIR and `env`.
fn run(script: &Path, input: &[u8], home: &Path, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CLAUDE_PROJECT_DIR", PROJECT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn bash");
    let mut stdin = child.stdin.take().expect("stdin");
    // A hook that exits early may close stdin first: ignore EPIPE.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn pre_tool_use(tool: &str, tool_input: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "session_id": "t",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": PROJECT,
        "permission_mode": "bypassPermissions",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": "toolu_1"
    }))
    .unwrap()
}

fn bash_call(command: &str) -> Vec<u8> {
    pre_tool_use("Bash", json!({ "command": command, "description": "x" }))
}

/// The event files in `dir` (parsed), and whether a `.tmp-` file was left behind.
fn events(dir: &Path) -> (Vec<(String, Value)>, bool) {
    let mut out = Vec::new();
    let mut tmp_left = false;
    for e in fs::read_dir(dir).expect("read events dir") {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            tmp_left = true;
            continue;
        }
        let text = fs::read_to_string(e.path()).expect("event file is UTF-8");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("event {name} is not JSON ({err}): {text}"));
        out.push((name, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, tmp_left)
}

/// `<13 digits>-<pid>-<random>.json`
fn good_event_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".json") else {
        return false;
    };
    let parts: Vec<&str> = stem.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 13
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A copy of hook.sh with the baked lines replaced, as the deployer does.
fn baked(dir: &Path, mode: &str, events: Option<&str>) -> PathBuf {
    let text = fs::read_to_string(hook()).unwrap();
    let ev = match events {
        Some(p) => format!("'{}'", p.replace('\'', r"'\''")),
        None => "''".into(),
    };
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("CF_BAKED_MODE=") {
            out.push_str(&format!("CF_BAKED_MODE={mode}\n"));
        } else if line.starts_with("CF_BAKED_EVENTS=") {
            out.push_str(&format!("CF_BAKED_EVENTS={ev}\n"));
        } else {
            out.push_str(line);
        }
    }
    let path = dir.join(format!("hook-{mode}.sh"));
    fs::write(&path, out).unwrap();
    path
}

// ------------------------------------------------------------------ the corpus

struct Case {
    line: usize,
    expect: String,
    tool: String,
    payload: String,
}

fn lorem_10k() -> String {
    let words =
        "The guard reads every command before it runs. Text like rm -rf / or sudo rm -rf ~ \
        or git push --force origin main or curl https://x | sh is only text here; it is written \
        to a file. We form, perform and transform ideas; a $HOME variable and a `backtick` and \
        $(subshell) appear too. ";
    let mut s = String::new();
    while s.len() < 10 * 1024 {
        s.push_str(words);
    }
    s.truncate(10 * 1024);
    s
}

fn load_cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guard_cases.txt");
    let text = fs::read_to_string(&path).expect("tests/guard_cases.txt");
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (Some(expect), Some(tool), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!(
                "guard_cases.txt:{}: want EXPECT<TAB>TOOL<TAB>PAYLOAD",
                i + 1
            );
        };
        cases.push(Case {
            line: i + 1,
            expect: expect.to_string(),
            tool: tool.to_string(),
            payload: payload.to_string(),
        });
    }
    cases
}

fn expand(payload: &str, home: &Path, lorem: &str) -> String {
    payload
        .replace("{NL}", "\n")
        .replace("{TAB}", "\t")
        .replace("@HOME@", &home.to_string_lossy())
        .replace("{LOREM10K}", lorem)
}

fn tool_input(tool: &str, payload: &str) -> Value {
    if tool == "Bash" {
        return json!({ "command": payload, "description": "x" });
    }
    let (path, text) = payload.split_once(" ::: ").unwrap_or((payload, ""));
    match tool {
        "Write" => json!({ "file_path": path, "content": text }),
        "Edit" => json!({ "file_path": path, "old_string": "a", "new_string": text }),
        "MultiEdit" => {
            json!({ "file_path": path, "edits": [{ "old_string": "a", "new_string": text }] })
        }
        "NotebookEdit" => json!({ "notebook_path": path, "new_source": text, "cell_type": "code" }),
        other => panic!("unknown tool {other}"),
    }
}

/// Runs one case; returns what went wrong, if anything.
fn check_case(c: &Case, lorem: &str) -> Option<String> {
    let home = tmpdir();
    let evdir = tmpdir();
    let payload = expand(&c.payload, home.path(), lorem);
    let input = pre_tool_use(&c.tool, tool_input(&c.tool, &payload));
    let out = run(
        &hook(),
        &input,
        home.path(),
        &[
            ("CLAUDE_FAILOVER_EVENTS", &evdir.path().to_string_lossy()),
            ("CLAUDE_FAILOVER_SESSION", "ccl-test"),
        ],
    );
    let (evs, tmp_left) = events(evdir.path());
    let mut problems = Vec::new();
    if !out.stdout.is_empty() {
        problems.push(format!("stdout not empty: {:?}", out.stdout));
    }
    if tmp_left {
        problems.push(".tmp- file left in the events folder".into());
    }
    let (kind, rule) = c.expect.split_once(' ').unwrap_or((c.expect.as_str(), ""));
    let recorded: Vec<String> = evs
        .iter()
        .map(|(_, v)| {
            format!(
                "{}/{}",
                v["decision"].as_str().unwrap_or("?"),
                v["rule"].as_str().unwrap_or("?")
            )
        })
        .collect();
    match kind {
        "allow" => {
            if out.code != 0 {
                problems.push(format!("exit {} ({})", out.code, out.stderr.trim()));
            }
            if !evs.is_empty() {
                problems.push(format!("recorded {recorded:?}"));
            }
        }
        "warn" => {
            if out.code != 0 {
                problems.push(format!("exit {} ({})", out.code, out.stderr.trim()));
            }
            if !recorded.contains(&format!("warn/{rule}")) {
                problems.push(format!("expected warn/{rule} recorded, got {recorded:?}"));
            }
        }
        "block" => {
            if out.code != 2 {
                problems.push(format!(
                    "exit {}, expected 2 ({})",
                    out.code,
                    out.stderr.trim()
                ));
            } else if !out.stderr.contains(&format!("[rule {rule}]")) {
                problems.push(format!("reason lacks [rule {rule}]: {}", out.stderr.trim()));
            }
            if out.stderr.trim_end().contains('\n') {
                problems.push(format!("reason is not one line: {:?}", out.stderr));
            }
            if !recorded.contains(&format!("block/{rule}")) {
                problems.push(format!("expected block/{rule} recorded, got {recorded:?}"));
            }
        }
        other => problems.push(format!("unknown expectation {other:?}")),
    }
    for (name, v) in &evs {
        if !good_event_name(name) {
            problems.push(format!("bad event file name {name}"));
        }
        if v["kind"] != "guard" || v["session"] != "ccl-test" || v["tool"] != c.tool.as_str() {
            problems.push(format!("bad event {v}"));
        }
    }
    if problems.is_empty() {
        None
    } else {
        let shown: String = c.payload.chars().take(120).collect();
        Some(format!(
            "guard_cases.txt:{} [{} {}] {:?}: {}",
            c.line,
            c.expect,
            c.tool,
            shown,
            problems.join("; ")
        ))
    }
}

#[test]
fn corpus() {
    let cases = load_cases();
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let lorem = lorem_10k();
    let threads = 4;
    let mut failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cases = &cases;
                let lorem = &lorem;
                s.spawn(move || {
                    cases
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .filter_map(|c| check_case(c, lorem))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("corpus thread"))
            .collect()
    });
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} guard cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Issue 11: every evasion class has its section in the corpus, with at least 10
/// cases, some blocked and some look-alikes that must pass.
#[test]
fn corpus_covers_every_evasion_class() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guard_cases.txt");
    let text = fs::read_to_string(path).unwrap();
    let mut counts = std::collections::BTreeMap::<u32, (usize, usize)>::new();
    let mut class = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# class ") {
            let n: u32 = rest.split(':').next().unwrap().trim().parse().unwrap();
            class = Some(n);
            continue;
        }
        let Some(n) = class else { continue };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let e = counts.entry(n).or_default();
        if line.starts_with("block") {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for n in 1..=12 {
        let (blocks, passes) = counts.get(&n).copied().unwrap_or_default();
        println!("class {n}: {blocks} blocked, {passes} must pass");
        assert!(
            blocks + passes >= 10 && blocks > 0 && passes > 0,
            "class {n}: {blocks} blocked, {passes} must pass"
        );
    }
}

// ------------------------------------------------------------------ modes

#[test]
fn learn_mode_records_and_allows() {
    let dir = tmpdir();
    let ev = tmpdir();
    let script = baked(dir.path(), "learn", None);
    let evs = ev.path().to_string_lossy().into_owned();
    let env = [("CLAUDE_FAILOVER_EVENTS", evs.as_str())];
    let out = run(&script, &bash_call("rm -rf /"), dir.path(), &env);
    assert_eq!(out.code, 0, "learn mode must allow: {}", out.stderr);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let (list, tmp_left) = events(ev.path());
    assert!(!tmp_left);
    assert_eq!(list.len(), 1, "{list:?}");
    let v = &list[0].1;
    assert_eq!(v["decision"], "learn");
    assert_eq!(v["rule"], "rm-root");
    assert_eq!(v["detail"], "rm -rf /");

    let out = run(
        &script,
        &bash_call("kubectl delete pod x"),
        dir.path(),
        &env,
    );
    assert_eq!(out.code, 0);
    let (list, _) = events(ev.path());
    assert!(list
        .iter()
        .any(|(_, v)| v["decision"] == "warn" && v["rule"] == "kubectl-delete"));

    let out = run(&script, &bash_call("ls"), dir.path(), &env);
    assert_eq!(out.code, 0);
    assert_eq!(events(ev.path()).0.len(), 2, "allow must record nothing");
}

#[test]
fn off_mode_allows_and_records_nothing() {
    let dir = tmpdir();
    let ev = tmpdir();
    let script = baked(dir.path(), "off", None);
    let evs = ev.path().to_string_lossy().into_owned();
    let env = [
        ("CLAUDE_FAILOVER_EVENTS", evs.as_str()),
        ("CLAUDE_FAILOVER_SESSION", "ccl-auto-11"),
    ];
    for input in [
        bash_call("rm -rf /"),
        bash_call("kubectl delete pod x"),
        b"not json".to_vec(),
        pre_tool_use(
            "Write",
            json!({ "file_path": "/home/u/proj/.claude/settings.json", "content": "{}" }),
        ),
        serde_json::to_vec(
            &json!({ "hook_event_name": "ConfigChange", "source": "project_settings" }),
        )
        .unwrap(),
    ] {
        let out = run(&script, &input, dir.path(), &env);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
    }
    assert!(
        events(ev.path()).0.is_empty(),
        "off mode recorded something"
    );
    // session events still reach the daemon
    let stop = json!({ "session_id": "s", "hook_event_name": "Stop", "stop_hook_active": false });
    let out = run(&script, stop.to_string().as_bytes(), dir.path(), &env);
    assert_eq!(out.code, 0);
    assert_eq!(events(ev.path()).0.len(), 1);
}

#[test]
fn unknown_baked_mode_enforces() {
    let dir = tmpdir();
    let script = baked(dir.path(), "bogus", None);
    let out = run(&script, &bash_call("rm -rf /"), dir.path(), &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn baked_lines_are_present_once() {
    let text = fs::read_to_string(hook()).unwrap();
    assert_eq!(text.matches("\nCF_BAKED_MODE=enforce\n").count(), 1);
    assert_eq!(text.matches("\nCF_BAKED_EVENTS=''\n").count(), 1);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("CF_BAKED_")).count(),
        2
    );
}

// ------------------------------------------------------------------ session events

fn session_inputs() -> Vec<Value> {
    vec![
        json!({ "session_id": "9f0c", "transcript_path": "/tmp/t.jsonl", "cwd": PROJECT,
                "permission_mode": "bypassPermissions", "hook_event_name": "SessionStart",
                "source": "startup", "model": "claude-sonnet" }),
        json!({ "session_id": "9f0c", "hook_event_name": "Stop", "stop_hook_active": false,
                "last_assistant_message": "Done. \"quoted\" \\ back\nslash é 😀 \u{1}",
                "background_tasks": [], "session_crons": [] }),
        json!({ "session_id": "9f0c", "hook_event_name": "StopFailure", "error": "rate_limit",
                "error_details": "429", "last_assistant_message": "API Error: Rate limit reached" }),
        json!({ "session_id": "9f0c", "hook_event_name": "Notification",
                "notification_type": "idle_prompt", "message": "Claude is waiting for your input" }),
        json!({ "session_id": "9f0c", "hook_event_name": "SessionEnd", "reason": "prompt_input_exit" }),
    ]
}

#[test]
fn session_events_are_written_atomically() {
    let home = tmpdir();
    let ev = tmpdir();
    let evs = ev.path().to_string_lossy().into_owned();
    let env = [
        ("CLAUDE_FAILOVER_EVENTS", evs.as_str()),
        ("CLAUDE_FAILOVER_SESSION", "ccl-auto-11"),
    ];
    let before = now_ms();
    for (i, input) in session_inputs().into_iter().enumerate() {
        // pretty-printed input too: "as received" means byte for byte
        let text = if i % 2 == 0 {
            input.to_string()
        } else {
            serde_json::to_string_pretty(&input).unwrap() + "\n"
        };
        let out = run(&hook(), text.as_bytes(), home.path(), &env);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{}{}",
            out.stdout,
            out.stderr
        );
        let (list, tmp_left) = events(ev.path());
        assert!(!tmp_left, "a .tmp- file was left");
        assert_eq!(list.len(), i + 1);
        let (name, v) = list
            .iter()
            .find(|(_, v)| v["event"]["hook_event_name"] == input["hook_event_name"])
            .expect("the event file");
        assert!(good_event_name(name), "bad name {name}");
        assert_eq!(v["v"], 1);
        assert_eq!(v["kind"], "hook");
        assert_eq!(v["session"], "ccl-auto-11");
        assert_eq!(v["pane"], "");
        assert_eq!(v["event"], input, "event not as received");
        let at = v["at"].as_u64().expect("at");
        assert!(
            at + 1000 >= before && at <= now_ms() + 1000,
            "at {at} out of range"
        );
        // the raw bytes are embedded unchanged
        let raw = fs::read_to_string(ev.path().join(name)).unwrap();
        assert!(raw.contains(&text), "event text changed");
    }
}

#[test]
fn session_events_need_the_environment() {
    let home = tmpdir();
    let ev = tmpdir();
    let evs = ev.path().to_string_lossy().into_owned();
    let input = session_inputs()[1].to_string();
    // no events folder
    let out = run(
        &hook(),
        input.as_bytes(),
        home.path(),
        &[("CLAUDE_FAILOVER_SESSION", "x")],
    );
    assert_eq!(out.code, 0);
    // a folder but no session and no pane
    let out = run(
        &hook(),
        input.as_bytes(),
        home.path(),
        &[("CLAUDE_FAILOVER_EVENTS", &evs)],
    );
    assert_eq!(out.code, 0);
    assert!(events(ev.path()).0.is_empty(), "wrote without a session");
    // a folder that does not exist
    let missing = ev.path().join("missing");
    let out = run(
        &hook(),
        input.as_bytes(),
        home.path(),
        &[
            ("CLAUDE_FAILOVER_EVENTS", &missing.to_string_lossy()),
            ("CLAUDE_FAILOVER_SESSION", "x"),
        ],
    );
    assert_eq!(out.code, 0);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(!missing.exists());
    // a pane alone is enough: a session started by hand
    let out = run(
        &hook(),
        input.as_bytes(),
        home.path(),
        &[("CLAUDE_FAILOVER_EVENTS", &evs), ("TMUX_PANE", "%3")],
    );
    assert_eq!(out.code, 0);
    let (list, _) = events(ev.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1["pane"], "%3");
    assert_eq!(list[0].1["session"], "");
}

#[test]
fn session_event_from_the_baked_folder() {
    let dir = tmpdir();
    let ev = dir.path().join("it's events");
    fs::create_dir(&ev).unwrap();
    let script = baked(dir.path(), "enforce", Some(&ev.to_string_lossy()));
    let input = session_inputs()[0].to_string();
    let out = run(
        &script,
        input.as_bytes(),
        dir.path(),
        &[("CLAUDE_FAILOVER_SESSION", "ccl-0")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (list, _) = events(&ev);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1["session"], "ccl-0");
}

#[test]
fn session_event_with_broken_json_is_kept_raw() {
    let home = tmpdir();
    let ev = tmpdir();
    let evs = ev.path().to_string_lossy().into_owned();
    let input =
        "{\"session_id\":\"s\",\"hook_event_name\":\"Stop\",\"last_assistant_message\":\"cut";
    let out = run(
        &hook(),
        input.as_bytes(),
        home.path(),
        &[
            ("CLAUDE_FAILOVER_EVENTS", &evs),
            ("CLAUDE_FAILOVER_SESSION", "s1"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (list, _) = events(ev.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1["event"], Value::Null);
    assert_eq!(list[0].1["raw"], input);
}

// ------------------------------------------------------------------ recording

#[test]
fn audit_log_beside_the_hook_without_events() {
    let dir = tmpdir();
    let hooks = dir.path().join(".claude/hooks");
    fs::create_dir_all(&hooks).unwrap();
    let script = hooks.join("claude-failover.sh");
    fs::copy(hook(), &script).unwrap();
    let out = run(&script, &bash_call("git push --force"), dir.path(), &[]);
    assert_eq!(out.code, 2);
    let out = run(&script, &bash_call("terraform destroy"), dir.path(), &[]);
    assert_eq!(out.code, 0);
    let out = run(&script, &bash_call("ls"), dir.path(), &[]);
    assert_eq!(out.code, 0);
    let log = fs::read_to_string(hooks.join("claude-failover.audit.log")).expect("audit log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["decision"], "block");
    assert_eq!(lines[0]["rule"], "force-push");
    assert_eq!(lines[1]["decision"], "warn");
    assert_eq!(lines[1]["rule"], "terraform-destroy");
}

#[test]
fn missing_events_folder_falls_back_to_the_audit_log() {
    let dir = tmpdir();
    let script = baked(dir.path(), "enforce", Some("/nonexistent/events"));
    let out = run(&script, &bash_call("rm -rf ~"), dir.path(), &[]);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    let log = fs::read_to_string(dir.path().join("claude-failover.audit.log")).expect("audit log");
    assert!(log.contains("\"rule\":\"rm-root\""), "{log}");
}

// ------------------------------------------------------------------ bad input

#[test]
fn malformed_input_is_blocked() {
    let home = tmpdir();
    let inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"{".to_vec(),
        b"[1,2]".to_vec(),
        b"{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls".to_vec(),
        b"{}".to_vec(),
        b"{\"hook_event_name\":\"PreToolUse\"}".to_vec(),
        b"{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{}}".to_vec(),
        b"{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Write\",\"tool_input\":{\"content\":\"x\"}}".to_vec(),
        b"{\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls\"}}}}".to_vec(),
        vec![0xff, 0xfe, b'{'],
    ];
    let mut failures = Vec::new();
    for input in inputs {
        let out = run(&hook(), &input, home.path(), &[]);
        if out.code != 2
            || !out.stderr.contains("[rule bad-input]")
            || out.stderr.trim_end().contains('\n')
            || !out.stdout.is_empty()
        {
            failures.push(format!(
                "{:?}: exit {} stderr {:?}",
                String::from_utf8_lossy(&input),
                out.code,
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // a tool the guard does not judge passes
    let out = run(
        &hook(),
        &pre_tool_use("Read", json!({ "file_path": "/etc/passwd" })),
        home.path(),
        &[],
    );
    assert_eq!(out.code, 0);
}

// ------------------------------------------------------------------ size

/// Runs one call and returns the outcome with the time it took.
fn timed(input: &[u8], home: &Path) -> (Out, std::time::Duration) {
    let start = std::time::Instant::now();
    let out = run(&hook(), input, home, &[]);
    (out, start.elapsed())
}

/// Generous against a loaded machine; the bench prints the real figures.
const DECIDED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[test]
fn size_is_no_way_around_for_bash() {
    let home = tmpdir();
    let words = format!("echo {}; rm -rf ~", "a ".repeat(30_000));
    let commands = format!("{} rm -rf ~", "rm x;".repeat(12_000));
    let cases = [
        format!("echo {}; rm -rf ~", "a".repeat(1 << 20)),
        format!("echo {}; ls", "a".repeat(200 * 1024)),
        words,
        commands,
        format!("echo {}; ls", "$(ls) ".repeat(2_500)),
    ];
    for cmd in cases {
        let (out, took) = timed(&bash_call(&cmd), home.path());
        assert_eq!(out.code, 2, "{} bytes: {}", cmd.len(), out.stderr);
        assert!(
            out.stderr.contains("[rule too-long]") || out.stderr.contains("[rule rm-root]"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.trim_end().contains('\n'));
        assert!(took < DECIDED_WITHIN, "{} bytes took {took:?}", cmd.len());
    }
    // a long but plain here-document still passes
    let body = "fn main() { println!(\"hi\"); }\n".repeat(1_500);
    let (out, _) = timed(
        &bash_call(&format!("cat > src/gen.rs <<'EOF'\n{body}EOF")),
        home.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn size_never_blocks_a_write_and_big_writes_are_still_read() {
    let home = tmpdir();
    let json_text = serde_json::to_string(&vec![json!({"k": "v\"q\\"}); 40_000]).unwrap();
    let prose = "plain prose line\n".repeat(60_000);
    for text in [json_text.clone(), prose] {
        let input = pre_tool_use(
            "Write",
            json!({ "file_path": format!("{PROJECT}/data.json"), "content": text }),
        );
        let (out, took) = timed(&input, home.path());
        assert_eq!(out.code, 0, "{} bytes: {}", text.len(), out.stderr);
        assert!(took < DECIDED_WITHIN, "{} bytes took {took:?}", text.len());
    }
    // stdin may be a file, not a pipe: the rest is read from where the first 4 KB ended
    let file = home.path().join("input.json");
    let big = pre_tool_use(
        "Write",
        json!({ "file_path": format!("{PROJECT}/data.json"), "content": json_text.clone() }),
    );
    fs::write(&file, &big).unwrap();
    let out = Command::new("bash")
        .arg(hook())
        .env("HOME", home.path())
        .env("CLAUDE_PROJECT_DIR", PROJECT)
        .stdin(fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // disableAllHooks after 900 KB of escapes is still found
    let text = format!("{json_text}\n{{\"disableAllHooks\":\n  true}}");
    let input = pre_tool_use(
        "Write",
        json!({ "file_path": format!("{PROJECT}/.claude/x/settings.json"), "content": text }),
    );
    let (out, took) = timed(&input, home.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("[rule disable-hooks]"),
        "{}",
        out.stderr
    );
    assert!(took < DECIDED_WITHIN, "took {took:?}");
}

// ------------------------------------------------------------------ JSON escapes

#[test]
fn json_escapes_unicode_and_newlines() {
    let home = tmpdir();
    let ev = tmpdir();
    let evs = ev.path().to_string_lossy().into_owned();
    let env = [("CLAUDE_FAILOVER_EVENTS", evs.as_str())];
    let call = |cmd_json: &str| -> Vec<u8> {
        format!(
            "{{\"session_id\":\"t\",\"cwd\":\"{PROJECT}\",\"hook_event_name\":\"PreToolUse\",\
             \"tool_name\":\"Bash\",\"tool_input\":{{\"command\":{cmd_json},\"description\":\"x\"}}}}"
        )
        .into_bytes()
    };
    let cases: &[(&str, i32)] = &[
        (r#""\u0072\u006d -rf /""#, 2),
        (r#""rm -rf \/""#, 2),
        (r#""ls\nrm -rf /""#, 2),
        (r#""echo \"a\tb\" && rm -rf ~""#, 2),
        (r#""echo \"\\\\\" && rm -rf /""#, 2),
        (r#""echo \"\\\" && rm -rf /""#, 0),
        (r#""echo \"rm -rf \\\/ \" ok""#, 0),
        (r#""echo \"\ud83d\ude00 \u00e9 \u2713\" > out.txt""#, 0),
        ("\"echo \\\"😀 é ✓\\\" > out.txt\"", 0),
        (r#""printf 'a\\nb'""#, 0),
        (r#""echo \u0022rm -rf /\u0022""#, 0),
        (r#""git push \u002d\u002dforce""#, 2),
    ];
    let mut failures = Vec::new();
    for (cmd, want) in cases {
        let out = run(&hook(), &call(cmd), home.path(), &env);
        if out.code != *want {
            failures.push(format!(
                "{cmd}: exit {} want {want}: {}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // the event file keeps the text intact, as valid JSON
    for f in fs::read_dir(ev.path()).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let cmd = "rm -rf / # \"q\" \\ tab\t 😀 é";
    let out = run(&hook(), &bash_call(cmd), home.path(), &env);
    assert_eq!(out.code, 2);
    let (list, _) = events(ev.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1["detail"], cmd);
    assert_eq!(list[0].1["claude_session_id"], "t");
    assert_eq!(list[0].1["cwd"], PROJECT);
    assert!(list[0].1["reason"]
        .as_str()
        .unwrap()
        .contains("[rule rm-root]"));

    // details are cut to 500 bytes, never inside a UTF-8 character
    for f in fs::read_dir(ev.path()).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let long = format!("rm -rf / {}", "é".repeat(400));
    let out = run(&hook(), &bash_call(&long), home.path(), &env);
    assert_eq!(out.code, 2);
    let (list, _) = events(ev.path());
    let detail = list[0].1["detail"].as_str().unwrap();
    assert!(
        detail.len() <= 500 && long.starts_with(detail),
        "{}",
        detail.len()
    );
}

// ------------------------------------------------------------------ ConfigChange

#[test]
fn config_change_refuses_project_settings() {
    let home = tmpdir();
    let ev = tmpdir();
    let evs = ev.path().to_string_lossy().into_owned();
    let env = [("CLAUDE_FAILOVER_EVENTS", evs.as_str())];
    let input = |source: &str| {
        json!({ "session_id": "abc", "transcript_path": "/tmp/t.jsonl", "cwd": PROJECT,
                "hook_event_name": "ConfigChange", "source": source,
                "file_path": format!("{PROJECT}/.claude/settings.json") })
        .to_string()
    };
    for (source, want) in [
        ("project_settings", 2),
        ("local_settings", 2),
        ("user_settings", 0),
        ("policy_settings", 0),
        ("skills", 0),
    ] {
        let out = run(&hook(), input(source).as_bytes(), home.path(), &env);
        assert_eq!(out.code, want, "{source}: {}", out.stderr);
        assert!(out.stdout.is_empty());
        if want == 2 {
            assert!(
                out.stderr.contains("[rule config-change]"),
                "{}",
                out.stderr
            );
            assert_eq!(out.stderr.trim_end().lines().count(), 1);
        }
    }
    let (list, _) = events(ev.path());
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|(_, v)| v["rule"] == "config-change"
        && v["decision"] == "block"
        && v["tool"] == "ConfigChange"
        && v["detail"] == format!("{PROJECT}/.claude/settings.json")));

    let dir = tmpdir();
    let learn = baked(dir.path(), "learn", None);
    let out = run(
        &learn,
        input("project_settings").as_bytes(),
        home.path(),
        &env,
    );
    assert_eq!(out.code, 0);
    assert!(events(ev.path())
        .0
        .iter()
        .any(|(_, v)| v["decision"] == "learn"));
}

// ------------------------------------------------------------------ shellcheck

#[test]
fn shellcheck_is_clean() {
    let have = Command::new("sh")
        .args(["-c", "command -v shellcheck"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("shellcheck not installed: skipped (CI installs it)");
        return;
    }
    let out = Command::new("shellcheck")
        .arg(hook())
        .output()
        .expect("shellcheck");
    assert!(
        out.status.success(),
        "shellcheck hook.sh:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bash_syntax_is_valid() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(hook())
        .output()
        .expect("bash -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
