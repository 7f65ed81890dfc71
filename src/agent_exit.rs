//! Waiting for an agent's process to end without asking tmux: a pidfd
//! (Linux 5.3+) turns readable when the process exits, so a stop waits in
//! `poll(2)` with a deadline instead of polling the pane. Bound to the
//! process itself, never to a pid number another process may get later.
//! Without pidfd support, /proc is read every few milliseconds, the
//! process told apart by its start time.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often /proc is read when there is no pidfd.
const PROC_POLL: Duration = Duration::from_millis(5);

pub struct AgentExit {
    pid: u32,
    fd: Option<OwnedFd>,
    /// Start time (field 22 of /proc/PID/stat) when there is no pidfd.
    started: Option<u64>,
}

impl AgentExit {
    pub fn watch(pid: u32) -> AgentExit {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = (fd >= 0).then(|| {
            // SAFETY: the syscall returned a fresh fd that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        let started = if fd.is_none() { start_time(pid) } else { None };
        AgentExit { pid, fd, started }
    }

    /// Whether the process has ended.
    pub fn ended(&self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `d` for the process to end; true once it has.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let Some(fd) = &self.fd else {
            loop {
                let alive = self.started.is_some() && start_time(self.pid) == self.started;
                if !alive {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(PROC_POLL));
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n > 0 {
                return true;
            }
            if n == 0 && left.is_zero() {
                return false;
            }
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }
}

/// The start time of a live (not zombie) process, from /proc.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field 22 (starttime) is f[19].
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn sees_the_end_and_not_before() {
        let mut long = Command::new("sleep").arg("10").spawn().unwrap();
        let w = AgentExit::watch(long.id());
        assert!(!w.wait(Duration::from_millis(50)));
        crate::launch::sigterm(long.id(), "test");
        // A zombie (not reaped yet) has ended too.
        assert!(w.wait(Duration::from_secs(5)));
        long.wait().unwrap();
        assert!(w.ended());
        // No such process: ended.
        assert!(AgentExit::watch(u32::MAX / 2).ended());
    }
}
