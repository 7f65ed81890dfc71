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
