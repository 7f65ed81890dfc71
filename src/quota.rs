//! Quota thread: polls each account's usage. (stub)

use std::sync::Arc;

use crate::daemon::Ctx;

pub fn run(ctx: Arc<Ctx>) {
    let _ = ctx.stop.recv();
}

/// `quota [--json]`: polls every account once and prints the readings.
pub fn cli_quota(
    _cfg: &crate::config::Config,
    _json: bool,
) -> Result<std::process::ExitCode, String> {
    Err("not implemented yet".into())
}
