//! CPU time and memory of a process from /proc, for the benches that run
//! the daemon as a child process.

use std::fs;
use std::time::{Duration, Instant};

/// CPU time of a process in clock ticks: (own utime+stime, waited-for children's).
pub fn cpu_ticks(pid: u32) -> (u64, u64) {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// CPU ticks of the process's thread named `name` (all of them summed).
pub fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    let mut sum = None;
    for e in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let (t, _) = stat_ticks(&e.path().join("stat").to_string_lossy());
            *sum.get_or_insert(0) += t;
        }
    }
    sum
}

fn stat_ticks(path: &str) -> (u64, u64) {
    let Ok(s) = fs::read_to_string(path) else {
        return (0, 0);
    };
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // rest[0] is field 3: utime is field 14, stime 15, cutime 16, cstime 17.
    (f[11] + f[12], f[13] + f[14])
}

pub fn tick_ms() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

pub fn status_kb(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until start-up work is over (a 2 s window costs at most a tick,
/// in the process and its waited-for children; at most 60 s); how long.
pub fn settle(pid: u32) -> Duration {
    let start = Instant::now();
    loop {
        let (a0, b0) = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(2));
        let (a1, b1) = cpu_ticks(pid);
        if (a1 - a0) + (b1 - b0) <= 1 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    start.elapsed()
}
