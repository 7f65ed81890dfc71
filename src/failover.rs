//! Account switcher thread: one failover at a time. (stub)

use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::daemon::{Ctx, FailoverMsg};

pub fn run(ctx: Arc<Ctx>, rx: Receiver<FailoverMsg>) {
    loop {
        crossbeam_channel::select! {
            recv(ctx.stop) -> _ => return,
            recv(rx) -> m => match m {
                Ok(m) => log::info!("failover request (not implemented yet): {m:?}"),
                Err(_) => return,
            },
        }
    }
}
