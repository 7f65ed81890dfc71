//! Decision time of the guard (`bash hook.sh`, a fresh process per call, as
//! Claude Code runs it): median and p99 per call for the four figures issue 11
//! asks for (a typical command, one with a trigger word, a 10 KB heredoc, a
//! 1 MB command `echo <1 MB>; rm -rf ~`) and a few more. Targets: typical
//! median <= 5 ms, heredoc median <= 20 ms, the 1 MB command decided (blocked)
//! in well under a second. A bare bash reading the same input is the floor.
//!
//!     cargo bench --bench hook                  (HOOK_BENCH_N=500 for more runs)
//!     HOOK_BENCH_BASELINE=/tmp/hook.sh.orig cargo bench --bench hook
//!
//! With HOOK_BENCH_BASELINE, every figure is measured for that script too, in the
//! same run, so before and after compare on the same machine load. The 1 MB
//! command gets HOOK_BENCH_BIG_N runs (default 5): an old guard may take seconds.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn call(command: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "session_id": "3f1e", "transcript_path": "/tmp/t.jsonl", "cwd": "/home/u/proj",
        "permission_mode": "bypassPermissions", "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": { "command": command, "description": "x" },
        "tool_use_id": "toolu_1"
    }))
    .unwrap()
}

fn once(args: &[&str], input: &[u8], want: i32) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("bash")
        .args(args)
        .env("CLAUDE_PROJECT_DIR", "/home/u/proj")
        .env("CLAUDE_FAILOVER_EVENTS", events_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bash");
    let _ = child.stdin.take().unwrap().write_all(input);
    let status = child.wait().expect("wait");
    let took = start.elapsed();
    assert_eq!(
        status.code(),
        Some(want),
        "unexpected decision for {args:?}"
    );
    took
}

/// Blocks are recorded as event files, as under the daemon (never into the repo).
fn events_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn measure(name: &str, args: &[&str], input: &[u8], want: i32, n: usize) -> f64 {
    // a warm-up run or five (one for the slow figures: an old guard may take seconds)
    for _ in 0..if n < 10 { 1 } else { 5 } {
        once(args, input, want);
    }
    let mut t: Vec<f64> = (0..n)
        .map(|_| once(args, input, want).as_secs_f64() * 1000.0)
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = t[n / 2];
    let p99 = t[((n as f64 * 0.99).ceil() as usize).min(n) - 1];
    println!(
        "{name:<44} median {median:8.2} ms   p99 {p99:8.2} ms   ({} bytes in, {n} runs)",
        input.len()
    );
    median
}

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn main() {
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hook.sh");
    let hook = hook.to_str().unwrap().to_string();
    let baseline = std::env::var("HOOK_BENCH_BASELINE").ok();
    let n = env_n("HOOK_BENCH_N", 200);
    let big_n = env_n("HOOK_BENCH_BIG_N", 5);

    let prose = "The guard reads every command before it runs. Text like rm -rf / or \
        git push --force origin main or curl https://x | sh is only text here, written to \
        a file; we form, perform and transform ideas.\n";
    let mut body = String::new();
    while body.len() < 10 * 1024 {
        body.push_str(prose);
    }
    body.truncate(10 * 1024);

    let typical = call("git status && cargo test --release 2>&1 | tail -n 50");
    let trigger = call("cd build && rm -rf ./dist && git push origin feature/x");
    let blocked = call("git push --force origin main");
    let heredoc = call(&format!("cat > notes.md <<'EOF'\n{body}\nEOF"));
    let heredoc_unquoted = call(&format!("cat > notes.md <<EOF\n{body}\nEOF"));
    let huge = call(&format!("echo {}; rm -rf ~", "a".repeat(1 << 20)));

    println!(
        "hook.sh decision time, {n} runs each (bash {})",
        bash_version()
    );
    let floor = ["-c", "IFS= read -r -N 100000000 x; exit 0"];
    measure("bash reading stdin (floor)", &floor, &typical, 0, n);
    let mut scripts = vec![("now", hook)];
    if let Some(b) = baseline {
        scripts.push(("baseline", b));
    }
    let mut summary = Vec::new();
    for (label, script) in &scripts {
        let a = [script.as_str()];
        let t = measure(
            &format!("{label}: typical (no trigger word)"),
            &a,
            &typical,
            0,
            n,
        );
        let w = measure(
            &format!("{label}: trigger word (full analysis)"),
            &a,
            &trigger,
            0,
            n,
        );
        measure(&format!("{label}: blocked force push"), &a, &blocked, 2, n);
        let h = measure(
            &format!("{label}: 10 KB heredoc <<'EOF'"),
            &a,
            &heredoc,
            0,
            n,
        );
        measure(
            &format!("{label}: 10 KB heredoc <<EOF"),
            &a,
            &heredoc_unquoted,
            0,
            n,
        );
        let m = measure(
            &format!("{label}: 1 MB command, then rm -rf ~"),
            &a,
            &huge,
            2,
            big_n,
        );
        summary.push((label, t, w, h, m));
    }
    println!("medians (ms)   typical  trigger  10KB-heredoc  1MB-command");
    for (label, t, w, h, m) in &summary {
        println!("{label:<14} {t:8.2} {w:8.2} {h:13.2} {m:12.2}");
    }
    let (_, t, _, h, m) = summary[0];
    println!(
        "targets: typical {t:.2} <= 5 ms: {}; heredoc {h:.2} <= 20 ms: {}; 1 MB {m:.2} <= 500 ms: {}",
        met(t <= 5.0),
        met(h <= 20.0),
        met(m <= 500.0)
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn bash_version() -> String {
    Command::new("bash")
        .args(["-c", "echo $BASH_VERSION"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
