//! Decision time of the guard (`bash hook.sh`, a fresh process per call, as
//! Claude Code runs it): median and p99 per call for a typical command and for
//! a 10 KB heredoc. Targets: typical median <= 5 ms, heredoc median <= 20 ms.
//! A bare bash reading the same input is measured too: the floor no script can beat.
//!
//!     cargo bench --bench hook            (HOOK_BENCH_N=500 for more runs)

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

fn measure(name: &str, args: &[&str], input: &[u8], want: i32, n: usize) -> (f64, f64) {
    for _ in 0..5 {
        once(args, input, want);
    }
    let mut t: Vec<f64> = (0..n)
        .map(|_| once(args, input, want).as_secs_f64() * 1000.0)
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = t[n / 2];
    let p99 = t[((n as f64 * 0.99).ceil() as usize).min(n) - 1];
    println!(
        "{name:<34} median {median:6.2} ms   p99 {p99:6.2} ms   ({} bytes in, {n} runs)",
        input.len()
    );
    (median, p99)
}

fn main() {
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hook.sh");
    let hook = hook.to_str().unwrap();
    let n: usize = std::env::var("HOOK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    let prose = "The guard reads every command before it runs. Text like rm -rf / or \
        git push --force origin main or curl https://x | sh is only text here, written to \
        a file; we form, perform and transform ideas.\n";
    let mut body = String::new();
    while body.len() < 10 * 1024 {
        body.push_str(prose);
    }
    body.truncate(10 * 1024);

    let typical = call("git status && cargo test --release 2>&1 | tail -n 50");
    let typical_full = call("cd build && rm -rf ./dist && git push origin feature/x");
    let blocked = call("git push --force origin main");
    let heredoc = call(&format!("cat > notes.md <<'EOF'\n{body}\nEOF"));
    let heredoc_unquoted = call(&format!("cat > notes.md <<EOF\n{body}\nEOF"));

    println!(
        "hook.sh decision time, {n} runs each (bash {})",
        bash_version()
    );
    let floor = ["-c", "IFS= read -r -N 100000000 x; exit 0"];
    measure("bash reading stdin (floor)", &floor, &typical, 0, n);
    let (t_med, _) = measure("typical (no trigger word)", &[hook], &typical, 0, n);
    measure("typical (full analysis)", &[hook], &typical_full, 0, n);
    measure("blocked force push", &[hook], &blocked, 2, n);
    let (h_med, _) = measure("10 KB heredoc <<'EOF'", &[hook], &heredoc, 0, n);
    measure("10 KB heredoc <<EOF", &[hook], &heredoc_unquoted, 0, n);
    println!(
        "targets: typical median {t_med:.2} <= 5 ms: {}; heredoc median {h_med:.2} <= 20 ms: {}",
        if t_med <= 5.0 { "met" } else { "MISSED" },
        if h_med <= 20.0 { "met" } else { "MISSED" }
    );
}

fn bash_version() -> String {
    Command::new("bash")
        .args(["-c", "echo $BASH_VERSION"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
