//! HTTP control plane on loopback. (stub)

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::daemon::Ctx;

/// Starts the control plane when `control.listen` is set.
pub fn start(_ctx: Arc<Ctx>) -> Result<Option<JoinHandle<()>>, String> {
    Ok(None)
}

/// `status`: from the daemon, or from `state.json` when none answers.
pub fn cli_status(
    cfg: &crate::config::Config,
    json: bool,
) -> Result<std::process::ExitCode, String> {
    let (st, _) = crate::state::State::load(&crate::state::state_path(cfg));
    let doc = st.status_json(cfg);
    if json {
        println!("{doc:#}");
    } else {
        println!("{doc:#}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `failover [--to NAME]`: asks the running daemon.
pub fn cli_failover(
    _cfg: &crate::config::Config,
    _to: Option<String>,
) -> Result<std::process::ExitCode, String> {
    Err("not implemented yet".into())
}
