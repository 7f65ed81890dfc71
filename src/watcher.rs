//! Watcher thread. (stub)

use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::daemon::{Ctx, WatchMsg};

pub fn run(ctx: Arc<Ctx>, rx: Receiver<WatchMsg>) {
    loop {
        crossbeam_channel::select! {
            recv(ctx.stop) -> _ => return,
            recv(rx) -> m => if m.is_err() { return },
        }
    }
}

/// Sends SIGTERM to the agent in a session's pane (never SIGKILL: a kill
/// mid token-refresh can log the whole account out).
pub fn terminate_agent(tmux: &crate::tmux::Tmux, session: &str) {
    if let Some(pid) = tmux.agent_pid(session) {
        // SAFETY: kill(2) with a pid from tmux and a plain signal number.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            log::warn!(
                "cannot SIGTERM agent {pid} in {session}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
