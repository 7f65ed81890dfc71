//! Notifier thread: sends notices to Telegram and webhooks. (stub)

use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::daemon::Ctx;
use crate::notice::Notice;

pub fn run(ctx: Arc<Ctx>, rx: Receiver<Notice>) {
    loop {
        crossbeam_channel::select! {
            recv(ctx.stop) -> _ => return,
            recv(rx) -> n => if n.is_err() { return },
        }
    }
}
