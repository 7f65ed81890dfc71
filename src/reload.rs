//! Re-reading the config in a running daemon (SIGHUP, `POST /reload`,
//! `claude-failover reload`): the new file is checked as `run` checks it,
//! applied whole or refused whole, and the caller told which.

use std::path::PathBuf;

use crate::bus::{Ctx, DispatchMsg};
use crate::config::Config;

/// Re-reads the config from where it came from (SIGHUP, `POST /reload`).
/// A file `run` would refuse is refused, the running config kept, and the
/// reason returned; on success, what was loaded.
pub fn reload(ctx: &Ctx, path: Option<&std::path::Path>) -> Result<String, String> {
    // A SIGHUP and a POST at once apply one after the other.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let old = ctx.config();
    let path = path.map(PathBuf::from).or_else(|| old.source.clone());
    let checked = Config::locate(path.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|c| crate::doctor::paths_gate(&c).map(|()| c));
    let mut new = match checked {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload refused, keeping the running config: {e}");
            return Err(e);
        }
    };
    if new.state_dir != old.state_dir || new.tmux.socket != old.tmux.socket {
        log::warn!("state_dir and tmux.socket changes need a restart; keeping the old values");
        new.state_dir = old.state_dir.clone();
        new.tmux.socket = old.tmux.socket.clone();
    }
    let name = new.name();
    log::info!("reloaded {name}");
    let held = ctx.update(|st| {
        st.reconcile(&new);
        // A new config (a fixed agent.command) gets its launches again.
        st.start_failures = 0;
        st.launches_paused_until = None;
        st.launches_paused.take()
    });
    if held.is_some() {
        log::info!("launching resumed after the reload");
    }
    ctx.set_config(new);
    crate::dispatcher::ensure_sessions(ctx);
    let _ = ctx.to_dispatcher.send(DispatchMsg::Scan);
    Ok(name)
}
