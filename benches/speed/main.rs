//! The speed figures of issue 12, measured on the daemon binary as a child
//! process with real parts (a private tmux server, inotify, the instant
//! agent `benches/instant-agent` or the stand-in claude), so one run can
//! compare two builds:
//!
//!     CF_BENCH_BEFORE=/path/to/old/claude-failover cargo bench --bench speed
//!     cargo bench --bench speed -- cycle rest      (only these scenarios)
//!
//! `CF_BENCH_AFTER` replaces the binary under test (default: this build);
//! `CF_BENCH_SECS` is the window at rest (default 60). Scenarios: cycle,
//! throughput, dispatch, rescan, discovery, startup, failover, rest. Each
//! runs against every binary in turn before the next starts; a table of
//! every figure closes the run.

#[path = "../procstat.rs"]
mod procstat;
mod rig;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use procstat::{cpu_ticks, settle, status_kb, thread_ticks, tick_ms};
use rig::{median, now_us, post, Rig, Setup};
use support::fake_claude;
use support::usage::{creds, Server};

const T: Duration = Duration::from_secs(120);

struct Bin {
    label: &'static str,
    path: PathBuf,
}

/// Figures in the order measured: (figure, binary label, value).
#[derive(Default)]
struct Report(Vec<(String, &'static str, String)>);

impl Report {
    fn add(&mut self, bin: &Bin, figure: impl Into<String>, value: impl Into<String>) {
        let (figure, value) = (figure.into(), value.into());
        println!("[{}] {figure}: {value}", bin.label);
        self.0.push((figure, bin.label, value));
    }

    fn table(&self, bins: &[Bin]) {
        let mut figures: Vec<&str> = Vec::new();
        for (f, _, _) in &self.0 {
            if !figures.contains(&f.as_str()) {
                figures.push(f);
            }
        }
        print!("\n| figure |");
        for b in bins {
            print!(" {} |", b.label);
        }
        print!("\n|---|");
        for _ in bins {
            print!("---|");
        }
        println!();
        for f in figures {
            print!("| {f} |");
            for b in bins {
                let v = self
                    .0
                    .iter()
                    .find(|(g, l, _)| g == f && *l == b.label)
                    .map_or("", |(_, _, v)| v.as_str());
                print!(" {v} |");
            }
            println!();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut bins = Vec::new();
    if let Some(p) = std::env::var_os("CF_BENCH_BEFORE") {
        bins.push(Bin {
            label: "before",
            path: p.into(),
        });
    }
    let after = std::env::var_os("CF_BENCH_AFTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_claude-failover").into());
    bins.push(Bin {
        label: "after",
        path: after,
    });
    for b in &bins {
        println!("{}: {}", b.label, b.path.display());
    }
    type Scenario = fn(&Bin, &mut Report);
    let all: [(&str, Scenario); 8] = [
        ("cycle", cycle),
        ("throughput", throughput),
        ("dispatch", dispatch),
        ("rescan", rescan),
        ("discovery", discovery),
        ("startup", startup),
        ("failover", failover),
        ("rest", rest),
    ];
    let mut report = Report::default();
    for (name, f) in all {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        for b in &bins {
            f(b, &mut report);
        }
    }
    report.table(&bins);
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Waits until every session is idle in state.json (there is at least one).
fn wait_idle(r: &Rig, n: usize) {
    r.wait("idle sessions", T, || {
        let s = r.session_states();
        s.len() == n && s.iter().all(|x| x == "idle")
    });
}

/// One session, an agent that answers at once: inbox to paste with the
/// session idle, the whole cycle (paste to next paste) with a full queue,
/// and the tmux processes one cycle starts.
fn cycle(bin: &Bin, rep: &mut Report) {
    let mut r = Rig::new(&Setup::default());
    r.start(&bin.path);
    let mut lat = Vec::new();
    for i in 0..20 {
        wait_idle(&r, 1);
        let inbox = r.projects[0].join(".agent-queue/inbox");
        fs::write(inbox.join(format!(".t{i}.tmp")), format!("task {i}")).unwrap();
        let t0 = now_us();
        fs::rename(
            inbox.join(format!(".t{i}.tmp")),
            inbox.join(format!("t{i:03}.md")),
        )
        .unwrap();
        r.wait("the paste", T, || r.agent_times(0, "paste").len() > i);
        lat.push(ms(r.agent_times(0, "paste")[i] - t0));
    }
    rep.add(
        bin,
        "inbox to paste, idle session (median)",
        format!("{:.1} ms", median(lat)),
    );

    let queued = |r: &Rig, tag: &str, n: usize| {
        let before = r.agent_times(0, "paste").len();
        for i in 0..n {
            r.task(0, &format!("{tag}{i:03}.md"), &format!("queued {i}"));
        }
        r.wait("the queued tasks", T, || {
            r.agent_times(0, "paste").len() >= before + n
        });
        wait_idle(r, 1);
        before
    };
    let n = 30;
    let b = queued(&r, "q", n);
    let (p, s) = (r.agent_times(0, "paste"), r.agent_times(0, "stop"));
    let cyc: Vec<f64> = (b..b + n - 1).map(|k| ms(p[k + 1] - p[k])).collect();
    let gap: Vec<f64> = (b..b + n - 1).map(|k| ms(p[k + 1] - s[k])).collect();
    rep.add(
        bin,
        "task cycle, 1 session, instant agent (median)",
        format!("{:.1} ms", median(cyc)),
    );
    rep.add(
        bin,
        "Stop to next paste (median)",
        format!("{:.1} ms", median(gap)),
    );

    // Counted on a restart, with a counting `tmux` first on the PATH (its
    // own start-up would distort the timings above).
    r.stop();
    r.count_tmux = true;
    r.start(&bin.path);
    let n = 15;
    let b = queued(&r, "c", n);
    let p = r.agent_times(0, "paste");
    let (calls, by) = r.tmux_calls(p[b], p[b + n - 1]);
    let per = calls as f64 / (n - 1) as f64;
    let by: Vec<String> = by
        .iter()
        .map(|(c, k)| format!("{c} {:.1}", *k as f64 / (n - 1) as f64))
        .collect();
    rep.add(
        bin,
        "tmux processes per task cycle",
        format!("{per:.1} ({})", by.join(", ")),
    );
}

/// Ten sessions, 200 tasks over 10 projects, an agent that answers at once.
fn throughput(bin: &Bin, rep: &mut Report) {
    let mut r = Rig::new(&Setup {
        projects: 10,
        sessions: 10,
        ..Setup::default()
    });
    r.start(&bin.path);
    // state.json lists the sessions before they exist in tmux.
    r.wait("10 tmux sessions", T, || r.tmux_sessions() == 10);
    wait_idle(&r, 10);
    let server = r.tmux_server_pid().expect("the tmux server's pid");
    let n = 200;
    let (d0, c0) = cpu_ticks(r.pid());
    let (s0, _) = cpu_ticks(server);
    let t0 = Instant::now();
    for i in 0..n {
        r.task(i % 10, &format!("t{i:03}.md"), &format!("task {i}"));
    }
    r.wait("200 tasks done", Duration::from_secs(600), || {
        r.done_count() >= n
    });
    let secs = t0.elapsed().as_secs_f64();
    let (d1, c1) = cpu_ticks(r.pid());
    let (s1, _) = cpu_ticks(server);
    let per = |a: u64, b: u64| (b - a) as f64 * tick_ms() / n as f64;
    rep.add(
        bin,
        "10 sessions, instant agent: tasks/min",
        format!("{:.0}", n as f64 / secs * 60.0),
    );
    rep.add(
        bin,
        "  CPU per task: daemon / tmux clients / tmux server",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            per(d0, d1),
            per(c0, c1),
            per(s0, s1)
        ),
    );
}

/// Writes `n` pending tasks round-robin over the rig's projects, oldest first.
fn pending(r: &Rig, n: usize) {
    for i in 0..n {
        let inbox = r.projects[i % r.projects.len()].join(".agent-queue/inbox");
        fs::write(inbox.join(format!("p{i:05}.md")), format!("pending {i}")).unwrap();
    }
}

/// Dispatcher CPU per dispatch with 100, 400 and 10,000 pending tasks over
/// 1,000 projects (one session, an agent that answers at once).
fn dispatch(bin: &Bin, rep: &mut Report) {
    let mut costs = Vec::new();
    for n in [100, 400, 10_000] {
        let mut r = Rig::new(&Setup {
            projects: 1000,
            projects_dir: true,
            ..Setup::default()
        });
        pending(&r, n);
        r.start(&bin.path);
        r.wait("the first paste", T, || {
            r.agent_times(0, "paste").len() >= 2
        });
        let k = 20;
        let sample = |r: &Rig| {
            (
                thread_ticks(r.pid(), "dispatcher").unwrap_or(0),
                cpu_ticks(r.pid()).0,
            )
        };
        let (a0, p0) = sample(&r);
        r.wait("the dispatches", T, || {
            r.agent_times(0, "paste").len() >= 2 + k
        });
        let (a1, p1) = sample(&r);
        let per = (a1 - a0) as f64 * tick_ms() / k as f64;
        costs.push(per);
        rep.add(
            bin,
            format!("dispatch, {n} pending / 1000 projects: dispatcher / daemon CPU per dispatch"),
            format!(
                "{per:.1} / {:.1} ms",
                (p1 - p0) as f64 * tick_ms() / k as f64
            ),
        );
    }
    rep.add(
        bin,
        "dispatch cost ratio, 10000 vs 100 pending",
        format!("{:.2}", costs[2] / costs[0].max(tick_ms() / 20.0)),
    );
}

/// Dispatcher CPU of one `POST /scan` while the only session is busy.
fn scan_cost(bin: &Bin, projects: usize, tasks: usize) -> f64 {
    let mut r = Rig::new(&Setup {
        projects,
        projects_dir: true,
        control: true,
        ..Setup::default()
    });
    fs::write(r.accounts[0].join("hold"), "").unwrap();
    pending(&r, tasks.max(1));
    r.start(&bin.path);
    let (addr, token) = r.control();
    r.wait("a working session", T, || r.session_states() == ["working"]);
    let pid = r.pid();
    let ticks = || thread_ticks(pid, "dispatcher").unwrap_or(0);
    let settle = || {
        let mut last = ticks();
        let mut same = 0;
        while same < 3 {
            std::thread::sleep(Duration::from_millis(50));
            let t = ticks();
            same = if t == last { same + 1 } else { 0 };
            last = t;
        }
        last
    };
    let scans = 10;
    let t0 = settle();
    for _ in 0..scans {
        assert!(post(addr, &token, "/scan"), "POST /scan refused");
        settle();
    }
    let t1 = ticks();
    (t1 - t0) as f64 * tick_ms() / scans as f64
}

fn rescan(bin: &Bin, rep: &mut Report) {
    let c = scan_cost(bin, 1000, 10_000);
    rep.add(
        bin,
        "rescan, 10000 tasks / 1000 projects (dispatcher CPU)",
        format!("{c:.1} ms"),
    );
}

fn discovery(bin: &Bin, rep: &mut Report) {
    let v: Vec<String> = [1000, 2000, 4000]
        .iter()
        .map(|&n| format!("{:.0}", scan_cost(bin, n, 0)))
        .collect();
    rep.add(
        bin,
        "discovery at 1k / 2k / 4k projects (dispatcher CPU per scan)",
        format!("{} ms", v.join(" / ")),
    );
}

/// From `run` to the first paste with 100 sessions: a fresh tmux server
/// (every session created), then a restart (every session there).
fn startup(bin: &Bin, rep: &mut Report) {
    let mut r = Rig::new(&Setup {
        sessions: 100,
        ..Setup::default()
    });
    let first = |r: &mut Rig, i: usize| {
        r.task(0, &format!("s{i}.md"), "first");
        let t0 = now_us();
        r.start(&bin.path);
        r.wait("the first paste", T, || r.agent_times(0, "paste").len() > i);
        let d = ms(r.agent_times(0, "paste")[i] - t0);
        wait_idle(r, 100);
        r.stop();
        d
    };
    let cold = first(&mut r, 0);
    let warm = first(&mut r, 1);
    r.count_tmux = true;
    let t0 = now_us();
    first(&mut r, 2);
    let p = r.agent_times(0, "paste")[2];
    let (calls, _) = r.tmux_calls(t0, p);
    rep.add(
        bin,
        "start to first dispatch, 100 sessions: new / existing (tmux processes)",
        format!("{cold:.0} / {warm:.0} ms ({calls})"),
    );
}

/// A working session on an account whose usage crosses the threshold:
/// from the reading over it to the conversation relaunched on the backup.
fn failover(bin: &Bin, rep: &mut Report) {
    let mut v = Vec::new();
    for _ in 0..3 {
        let usage = Server::start();
        let url = format!("{}/usage", usage.url);
        let mut r = Rig::new(&Setup {
            agent: fake_claude(),
            accounts: 2,
            extra: format!("quota: {{ endpoint: '{url}', poll_interval: 1s, timeout: 2s }}\n"),
            ..Setup::default()
        });
        for (i, a) in r.accounts.iter().enumerate() {
            creds(a, &format!("tok-a{i}"), now_us() / 1000 + 3_600_000);
            usage.usage(&format!("tok-a{i}"), 10.0, 10.0);
        }
        r.task(0, "w.md", "work @fake:sleep=600");
        r.start(&bin.path);
        let state = r.root.join("state/state.json");
        r.wait("a working, confirmed session", T, || {
            let v: serde_json::Value = fs::read_to_string(&state)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            v["sessions"]["s-1"]["state"] == "working"
                && v["sessions"]["s-1"]["hooks_confirmed"] == true
        });
        let changed = Instant::now();
        usage.usage("tok-a0", 95.0, 10.0);
        let log = r.accounts[1].join("fake-claude/log.jsonl");
        let resumed = || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "start" && v["resumed"] == true)
                .and_then(|v| v["at"].as_u64())
        };
        r.wait("the reading over the threshold", T, || {
            usage.last_request("tok-a0").is_some_and(|t| t > changed)
        });
        let ago = usage.last_request("tok-a0").unwrap().elapsed();
        let crossed = (now_us() - ago.as_micros() as u64) / 1000;
        r.wait("the relaunch on the backup", T, || resumed().is_some());
        v.push(resumed().unwrap().saturating_sub(crossed) as f64);
    }
    let all: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
    rep.add(
        bin,
        "failover of a working session: reading over threshold to relaunch (median)",
        format!("{:.0} ms ({})", median(v), all.join(", ")),
    );
}

/// 200 projects, 10 sessions (each ran a task), default intervals: CPU,
/// RSS and tmux processes per minute at rest.
fn rest(bin: &Bin, rep: &mut Report) {
    let secs: u64 = std::env::var("CF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut r = Rig::new(&Setup {
        projects: 200,
        sessions: 10,
        watcher_interval: "5s",
        scan_interval: "60s",
        count_tmux: true,
        ..Setup::default()
    });
    r.start(&bin.path);
    for i in 0..10 {
        r.task(i, "warm.md", "warm up");
    }
    r.wait("10 tasks done", T, || r.done_count() >= 10);
    wait_idle(&r, 10);
    let pid = r.pid();
    settle(pid);
    let (u0, c0) = cpu_ticks(pid);
    let (from, t0) = (now_us(), Instant::now());
    let mut rss = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        rss = rss.max(status_kb(pid, "VmRSS:"));
    }
    let el = t0.elapsed().as_secs_f64();
    let (u1, c1) = cpu_ticks(pid);
    let (calls, by) = r.tmux_calls(from, now_us());
    let pct = |a: u64, b: u64| (b - a) as f64 * tick_ms() / 10.0 / el;
    rep.add(
        bin,
        "at rest, 200 projects / 10 sessions: CPU daemon / tmux clients",
        format!("{:.2} / {:.2} %", pct(u0, u1), pct(c0, c1)),
    );
    rep.add(
        bin,
        "at rest: VmRSS (max)",
        format!("{:.2} MiB", rss as f64 / 1024.0),
    );
    let by: Vec<String> = by
        .iter()
        .map(|(c, k)| format!("{c} {:.0}", *k as f64 * 60.0 / el))
        .collect();
    rep.add(
        bin,
        "at rest: tmux processes per minute",
        format!("{:.0} ({})", calls as f64 * 60.0 / el, by.join(", ")),
    );
}
