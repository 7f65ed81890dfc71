//! Failover timing with the real parts (private tmux, the stand-in claude,
//! a loopback usage endpoint). Prints:
//! - threshold: from the usage reading that crosses the threshold (served
//!   by the endpoint) to the last of 5 working sessions relaunched on the
//!   backup (its resumed agent started), and from the moment the usage
//!   changed (so including the wait for the next poll);
//! - limit: from the agent hitting its limit (the StopFailure) to its
//!   conversation relaunched on the backup.
//!
//! `cargo bench --bench failover`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_failover::config::Config;
use claude_failover::daemon::Daemon;
use claude_failover::state::SessionState;
use claude_failover::timefmt::now_ms;
use serde_json::Value;
use support::{fake_claude, wait_for, Env};

const T: Duration = Duration::from_secs(60);
const POLL_MS: u64 = 1000;

#[derive(Default)]
struct Usage {
    five: HashMap<String, f64>,
    /// When the first answer at or over 90% went out, per token (unix ms).
    first_over: HashMap<String, u64>,
}

fn server() -> (String, Arc<Mutex<Usage>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let u = Arc::new(Mutex::new(Usage::default()));
    let u2 = u.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let u = u2.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut token = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            token = v.trim().trim_start_matches("Bearer ").to_string();
                        }
                    }
                }
                let five = {
                    let mut g = u.lock().unwrap();
                    let f = g.five.get(&token).copied().unwrap_or(0.0);
                    if f >= 90.0 {
                        g.first_over.entry(token).or_insert_with(now_ms);
                    }
                    f
                };
                let body = format!(
                    r#"{{"five_hour":{{"utilization":{five},"resets_at":null}},"seven_day":null}}"#
                );
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, u)
}

fn setup(sessions: u32, poll: &str) -> (Env, String, Arc<Mutex<Usage>>, Config) {
    let env = Env::new(1, sessions);
    let (url, usage) = server();
    for (name, dir) in &env.accounts {
        fs::write(
            dir.join(".credentials.json"),
            format!(
                r#"{{"claudeAiOauth":{{"accessToken":"tok-{name}","expiresAt":{}}}}}"#,
                now_ms() + 3_600_000
            ),
        )
        .unwrap();
        usage
            .lock()
            .unwrap()
            .five
            .insert(format!("tok-{name}"), 10.0);
    }
    let accounts: Vec<String> = env
        .accounts
        .iter()
        .map(|(n, d)| format!("  - {{ name: {n}, config_dir: '{}' }}", d.display()))
        .collect();
    let yaml = format!(
        "state_dir: '{state}'\ntmux: {{ socket: '{sock}' }}\n\
         agent:\n  command: '{fake}'\n  prompt_timeout: 10s\n\
         projects:\n  - '{proj}'\n\
         pool:\n  autonomous: {{ prefix: b-, start_index: 1, max: {sessions} }}\n\
         dispatcher: {{ scan_interval: 1h, cooldown: 1s }}\n\
         watcher: {{ interval: 300ms }}\n\
         accounts:\n{accounts}\n\
         quota: {{ endpoint: '{url}/usage', poll_interval: {poll}, timeout: 2s }}\n\
         failover: {{ shared_transcripts: '{shared}', stop_timeout: 4s }}\n\
         control: {{ listen: '' }}\n",
        state = env.state_dir.display(),
        sock = env.sock.display(),
        fake = fake_claude().display(),
        proj = env.projects[0].display(),
        accounts = accounts.join("\n"),
        shared = env.root().join("shared").display(),
    );
    let cfg = Config::parse(&yaml, "bench.yaml").unwrap();
    (env, url, usage, cfg)
}

fn resumed_starts(env: &Env) -> Vec<Value> {
    env.log(1, "start")
        .into_iter()
        .filter(|r| r["resumed"] == true)
        .collect()
}

fn threshold_bench() {
    let (env, _url, usage, cfg) = setup(5, &format!("{POLL_MS}ms"));
    let d = Daemon::start(cfg).unwrap();
    for i in 0..5 {
        env.task(0, &format!("t{i}.md"), "work @fake:sleep=600");
    }
    wait_for("5 working", T, || {
        d.ctx
            .state()
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Working && s.hooks_confirmed)
            .count()
            == 5
    });
    let changed = now_ms();
    usage.lock().unwrap().five.insert("tok-main".into(), 95.0);
    wait_for("5 relaunched on backup", T, || {
        resumed_starts(&env).len() == 5
    });
    let last = resumed_starts(&env)
        .iter()
        .filter_map(|r| r["at"].as_u64())
        .max()
        .unwrap();
    let crossed = usage.lock().unwrap().first_over["tok-main"];
    println!(
        "threshold, 5 sessions: reading → last relaunch {} ms; usage change → last relaunch {} ms (poll interval {POLL_MS} ms)",
        last.saturating_sub(crossed),
        last.saturating_sub(changed)
    );
    d.shutdown(Duration::from_secs(3));
}

fn limit_bench() {
    let (env, _url, _usage, cfg) = setup(1, "1h");
    let d = Daemon::start(cfg).unwrap();
    env.task(0, "lim.md", "lim.md @fake:limit");
    wait_for("relaunched on backup", T, || {
        !resumed_starts(&env).is_empty()
    });
    let hit = env.log(0, "limit")[0]["at"].as_u64().unwrap();
    let start = resumed_starts(&env)[0]["at"].as_u64().unwrap();
    let ready = env
        .log(1, "ready")
        .iter()
        .filter_map(|r| r["at"].as_u64())
        .next()
        .unwrap_or(start);
    println!(
        "limit: StopFailure → relaunch {} ms (→ ready {} ms)",
        start.saturating_sub(hit),
        ready.saturating_sub(hit)
    );
    d.shutdown(Duration::from_secs(3));
}

fn main() {
    let _ = env_logger::builder().try_init();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for _ in 0..3 {
        threshold_bench();
    }
    for _ in 0..3 {
        limit_bench();
    }
}
