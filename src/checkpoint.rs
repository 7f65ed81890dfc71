//! (stub)

use std::sync::Arc;

use crate::daemon::Ctx;

pub fn run(ctx: Arc<Ctx>) {
    let _ = ctx.stop.recv();
}
