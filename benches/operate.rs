//! Footprint of the daemon at rest and the control plane's throughput.
//!
//! Starts the (bench-profile) binary `claude-failover run -c CFG` watching
//! 200 temp projects with 10 autonomous sessions on a private tmux socket,
//! lets it settle, then over `CF_BENCH_SECS` (default 20) seconds reads
//! VmRSS, VmHWM and Threads from /proc/PID/status and the CPU time
//! (utime+stime; children's separately) from /proc/PID/stat. Then 8
//! clients hammer `GET /health` for 3 s, kept-alive and one connection
//! per request.
//!
//! `cargo bench --bench operate`

#[path = "procstat.rs"]
#[allow(dead_code)]
mod procstat;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procstat::{cpu_ticks, settle, status_kb};

const PROJECTS: usize = 200;
const SESSIONS: usize = 10;
const CLIENTS: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let secs: u64 = std::env::var("CF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let bin = env!("CARGO_BIN_EXE_claude-failover");
    let dir = tempfile::Builder::new()
        .prefix("cf-bench")
        .tempdir()
        .unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let mut projects = String::new();
    for i in 0..PROJECTS {
        let p = root.join(format!("proj{i:03}"));
        fs::create_dir_all(p.join(".agent-queue/inbox")).unwrap();
        projects.push_str(&format!("  - '{}'\n", p.display()));
    }
    fs::create_dir_all(root.join("acct")).unwrap();
    // `run` refuses to start without a login.
    fs::write(
        root.join("acct/.credentials.json"),
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-test","expiresAt":4102444800000}}"#,
    )
    .unwrap();
    let sock = root.join("tmux.sock");
    let cfg = root.join("config.yaml");
    fs::write(
        &cfg,
        format!(
            "state_dir: '{r}/state'\n\
             tmux: {{ socket: '{r}/tmux.sock' }}\n\
             agent: {{ command: /bin/true }}\n\
             projects:\n{projects}\
             pool:\n  autonomous: {{ prefix: bench-, start_index: 1, max: {SESSIONS} }}\n\
             accounts:\n  - {{ name: main, config_dir: '{r}/acct' }}\n\
             quota: {{ endpoint: 'http://127.0.0.1:9/' }}\n\
             failover: {{ shared_transcripts: '{r}/shared' }}\n\
             control: {{ listen: '127.0.0.1:0', token_file: '{r}/token' }}\n",
            r = root.display()
        ),
    )
    .unwrap();
    let log = root.join("daemon.log");
    let mut child = Command::new(bin)
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let cleanup = |child: &mut std::process::Child| {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    };

    let addr_file = root.join("state/control.addr");
    let started = Instant::now();
    while !addr_file.exists() {
        if started.elapsed() > Duration::from_secs(20) {
            cleanup(&mut child);
            panic!(
                "the daemon did not start:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: SocketAddr = fs::read_to_string(&addr_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let token = fs::read_to_string(root.join("token"))
        .unwrap()
        .trim()
        .to_string();
    let startup = started.elapsed();
    // Wait for the sessions, then let start-up work settle.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(["list-sessions", "-F", "#{session_name}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0);
        if n >= SESSIONS {
            break;
        }
        if Instant::now() > deadline {
            cleanup(&mut child);
            panic!("only {n} tmux sessions after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Start-up work (creating sessions, first scans, stopping stray
    // programs in fresh panes) is over when a 2 s window costs at most a
    // tick, in the daemon and in its tmux children.
    let settled = settle(pid);

    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (u0, c0) = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut rss_max = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        rss_max = rss_max.max(status_kb(pid, "VmRSS:"));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (u1, c1) = cpu_ticks(pid);
    let idle_cpu = (u1 - u0) as f64 / tick / elapsed * 100.0;
    let child_cpu = (c1 - c0) as f64 / tick / elapsed * 100.0;
    let rss = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    let threads = status_kb(pid, "Threads:");

    let keep_alive = hammer(addr, &token, true);
    let per_conn = hammer(addr, &token, false);
    let rss_after = status_kb(pid, "VmRSS:");
    let threads_after = status_kb(pid, "Threads:");
    let exe_size = fs::metadata(bin).map(|m| m.len()).unwrap_or(0);

    cleanup(&mut child);
    println!("claude-failover footprint: {PROJECTS} projects, {SESSIONS} sessions, {elapsed:.0} s at rest");
    println!(
        "  start-up to control plane    {:.0} ms",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "  settled after                {:.1} s",
        settled.as_secs_f64()
    );
    println!(
        "  binary size                  {:.1} MiB",
        exe_size as f64 / 1048576.0
    );
    println!(
        "  VmRSS at rest                {:.2} MiB (max {:.2} MiB while sampling)",
        rss as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );
    println!(
        "  VmHWM (peak incl. start-up)  {:.2} MiB",
        hwm as f64 / 1024.0
    );
    println!("  threads                      {threads}");
    println!("  CPU at rest (daemon)         {idle_cpu:.3} % of a core");
    println!("  CPU at rest (tmux children)  {child_cpu:.3} % of a core (waited-for children)");
    println!("  GET /health, {CLIENTS} clients, keep-alive      {keep_alive:.0} req/s");
    println!("  GET /health, {CLIENTS} clients, conn per request {per_conn:.0} req/s");
    println!(
        "  VmRSS / threads after load   {:.2} MiB / {threads_after}",
        rss_after as f64 / 1024.0
    );
}

/// Requests per second over 3 s from `CLIENTS` threads.
fn hammer(addr: SocketAddr, token: &str, keep_alive: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\n{}\r\n",
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, done, req) = (stop.clone(), done.clone(), req.clone());
            std::thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    let s = match conn.as_mut() {
                        Some(s) => s,
                        None => {
                            let s = TcpStream::connect(addr).unwrap();
                            s.set_nodelay(true).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            conn.insert(s)
                        }
                    };
                    if s.write_all(req.as_bytes()).is_err() {
                        conn = None;
                        continue;
                    }
                    match read_reply(s, &mut buf) {
                        Some(true) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(false) => panic!("not 200"),
                        None => {
                            conn = None;
                            continue;
                        }
                    }
                    if !keep_alive {
                        conn = None;
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    for t in threads {
        let _ = t.join();
    }
    n as f64 / el
}

/// Reads one `/health` answer; Some(true) for a 200.
fn read_reply(s: &mut TcpStream, buf: &mut [u8]) -> Option<bool> {
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).ok()?;
        if n == 0 {
            return None;
        }
        have += n;
        let text = &buf[..have];
        if let Some(i) = find(text, b"\r\n\r\n") {
            if have >= i + 4 + 2 {
                return Some(text.starts_with(b"HTTP/1.1 200"));
            }
        }
        if have == buf.len() {
            return None;
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
