//! Dispatch latency with an agent that is ready at once (benches/instant-agent):
//! - inbox-to-paste: a task renamed into the inbox until the agent reads the
//!   first byte of the paste (target: median ≤ 50 ms);
//! - lifecycle overhead: the agent's Stop event until the next task's paste
//!   reaches the recycled session (target: median ≤ 500 ms).
//!
//! Real parts: the daemon in-process, a private tmux server, inotify.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use claude_failover::config::Config;
use claude_failover::daemon::Daemon;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn log_lines(account: &Path, kind: &str) -> Vec<u64> {
    fs::read_to_string(account.join("bench.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(kind))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

fn stats(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name}: n={} median={:.1} ms p90={:.1} ms min={:.1} ms max={:.1} ms",
        v.len(),
        pct(0.5),
        pct(0.9),
        v[0],
        v[v.len() - 1]
    );
}

fn setup(root: &Path) -> (Config, std::path::PathBuf, std::path::PathBuf) {
    let project = root.join("proj");
    let account = root.join("acct");
    fs::create_dir_all(project.join(".agent-queue/inbox")).unwrap();
    fs::create_dir_all(&account).unwrap();
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/instant-agent");
    let yaml = format!(
        "state_dir: '{r}/state'\ntmux: {{ socket: '{r}/tmux.sock' }}\n\
         agent: {{ command: '{agent}', prompt_timeout: 10s }}\nprojects: ['{p}']\n\
         pool: {{ autonomous: {{ prefix: b-, start_index: 1, max: 1 }} }}\n\
         dispatcher: {{ scan_interval: 1h }}\nwatcher: {{ interval: 1h }}\n\
         accounts: [ {{ name: main, config_dir: '{a}' }} ]\n\
         quota: {{ endpoint: 'http://127.0.0.1:9/' }}\ncontrol: {{ listen: '' }}\n",
        r = root.display(),
        agent = agent.display(),
        p = project.display(),
        a = account.display(),
    );
    (Config::parse(&yaml, "bench").unwrap(), project, account)
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let (cfg, project, account) = setup(&root);
    let d = Daemon::start(cfg).unwrap();
    let inbox = project.join(".agent-queue/inbox");
    let n = 40;

    // Inbox to paste: one task at a time into an idle, ready session.
    let mut latencies = Vec::new();
    for i in 0..n {
        wait("an idle session", Duration::from_secs(10), || {
            d.ctx
                .state()
                .sessions
                .values()
                .all(|s| s.state == claude_failover::state::SessionState::Idle)
        });
        let tmp = inbox.join(format!(".t{i}.tmp"));
        fs::write(&tmp, format!("task {i}")).unwrap();
        let t0 = now_us();
        fs::rename(&tmp, inbox.join(format!("t{i:03}.md"))).unwrap();
        wait("the paste", Duration::from_secs(10), || {
            log_lines(&account, "paste").len() > i
        });
        latencies.push((log_lines(&account, "paste")[i] - t0) as f64 / 1000.0);
    }
    stats("inbox-to-paste", latencies);

    // Lifecycle: many tasks queued; Stop of one to the paste of the next.
    let before = log_lines(&account, "paste").len();
    for i in 0..n {
        let tmp = inbox.join(format!(".q{i}.tmp"));
        fs::write(&tmp, format!("queued {i}")).unwrap();
        fs::rename(&tmp, inbox.join(format!("q{i:03}.md"))).unwrap();
    }
    wait("all queued tasks pasted", Duration::from_secs(120), || {
        log_lines(&account, "paste").len() >= before + n
    });
    let pastes = log_lines(&account, "paste");
    let stops = log_lines(&account, "stop");
    let overhead: Vec<f64> = (before..before + n - 1)
        .map(|k| (pastes[k + 1] - stops[k]) as f64 / 1000.0)
        .collect();
    stats("stop-to-next-paste", overhead);
    d.shutdown(Duration::from_secs(2));
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(root.join("tmux.sock"))
        .arg("kill-server")
        .output();
}
