//! Account switcher thread: one failover at a time.
//!
//! Triggers arrive as `FailoverMsg`: the quota thread's `Threshold` (the
//! active account at or over a threshold, unusable, or dispatching paused),
//! the watcher's `Limit` (a pane shows a usage limit: act now) and
//! `RateLimited` (a `StopFailure` `rate_limit` without a limit line: poll
//! the account now; fail over if it is over or the API cannot answer,
//! otherwise tell the session to continue after `failover.throttle_pause`),
//! and the operator's `Manual`.
//!
//! A failover picks the target (`quota::choose_target`), makes it active
//! (new launches go there at once), makes sure every account's `projects`
//! links to the shared transcripts, then moves every session that has an
//! agent on another account: stop it (`/exit`, SIGTERM, never SIGKILL),
//! relaunch it with `--resume <id>` under the new `CLAUDE_CONFIG_DIR`, and
//! paste a note that it moved. The moves run on a worker thread (sessions in
//! parallel) so this thread keeps answering (`Manual` gets "a failover is
//! already running"). Sessions that fail to move are retried every
//! `failover.retry_interval`. Automatic failovers respect
//! `failover.cooldown`; manual ones do not. With no usable account,
//! dispatching pauses until the earliest reset.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use crate::bus::{Ctx, FailoverMsg};
use crate::config::Pattern;
use crate::lifecycle::AgentId;
use crate::quota;
use crate::state::SessionState;
use crate::timefmt::now_secs;

/// In the note pasted into a moved conversation; also how a limit line that
/// is only history (above the note) is recognised.
pub const NOTE_MARK: &str = "moved to another account";
/// A session the dispatcher is still launching is looked at again this soon.
const LATER: Duration = Duration::from_secs(2);
/// Sessions moved at once.
const PARALLEL: usize = 8;

/// The note a moved conversation gets.
pub fn note(from: &str, to: &str, manual: bool) -> String {
    let why = if manual {
        "at the operator's request"
    } else {
        "because of a usage limit"
    };
    format!(
        "This conversation {NOTE_MARK} ({from} → {to}) {why}. Continue your task where you left off."
    )
}

/// Whether the last limit line on a screen is above our move note: history
/// shown by a resumed conversation, not a new limit.
pub fn limit_is_history(screen: &str, pattern: &Pattern) -> bool {
    match (pattern.0.find_iter(screen).last(), screen.rfind(NOTE_MARK)) {
        (Some(l), Some(n)) => l.start() < n,
        _ => false,
    }
}

#[derive(Debug, Clone)]
struct Job {
    /// `(from, why)` when the job switches the active account.
    switch: Option<(String, String)>,
    manual: bool,
    to: String,
    /// Only these sessions (a retry); `None`: every session that needs it.
    only: Option<BTreeSet<String>>,
    /// Sessions whose earlier move failed (stopped but not relaunched).
    failed_before: BTreeSet<String>,
    /// Also restart sessions sitting at a limit on `to` (after a reset).
    limited_on_target: bool,
}

#[derive(Debug)]
struct Report {
    job: Job,
    moved: Vec<String>,
    failed: Vec<(String, mover::MoveError)>,
    later: Vec<String>,
    elapsed: Duration,
}

pub fn run(ctx: Arc<Ctx>, rx: Receiver<FailoverMsg>) {
    let (done_tx, done_rx) = unbounded();
    let mut sw = Switcher::new(ctx.clone(), done_tx);
    sw.rearm_pause();
    sw.finish_cut_short();
    loop {
        let timer = match sw.next_timer() {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(ctx.stop) -> _ => return,
            recv(rx) -> m => match m {
                Ok(m) => sw.handle(m),
                Err(_) => return,
            },
            recv(done_rx) -> r => {
                if let Ok(r) = r {
                    sw.finished(r);
                }
            }
            recv(timer) -> _ => sw.timers(),
        }
    }
}

struct Switcher {
    ctx: Arc<Ctx>,
    done_tx: Sender<Report>,
    http: ureq::Agent,
    running: bool,
    /// Session messages that came while a job ran.
    deferred: VecDeque<FailoverMsg>,
    /// Sessions whose move failed: tried again at `retry_at`.
    retry: BTreeMap<String, AgentId>,
    /// Sessions the dispatcher was still launching on the old account.
    later: BTreeMap<String, AgentId>,
    retry_at: Option<Instant>,
    /// `continue` for throttled sessions, each for the agent it was meant for.
    continues: Vec<(Instant, String, AgentId)>,
    /// Look again when the cooldown ends.
    recheck_at: Option<Instant>,
    /// Dispatching paused: look again then.
    resume_at: Option<Instant>,
    /// The cooldown end already logged as holding a failover.
    held_logged: Option<u64>,
}

fn instant_at(unix: u64) -> Instant {
    Instant::now() + Duration::from_secs(unix.saturating_sub(now_secs()))
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Switcher {
    fn new(ctx: Arc<Ctx>, done_tx: Sender<Report>) -> Switcher {
        let http = quota::http_agent(&ctx.config());
        Switcher {
            ctx,
            done_tx,
            http,
            running: false,
            deferred: VecDeque::new(),
            retry: BTreeMap::new(),
            later: BTreeMap::new(),
            retry_at: None,
            continues: Vec::new(),
            recheck_at: None,
            resume_at: None,
            held_logged: None,
        }
    }

    /// A failover the daemon was killed in the middle of (the flag still
    /// set, or a session still `Moving`): its moves to the active account
    /// are finished now.
    fn finish_cut_short(&mut self) {
        let (to, moving, cut) = {
            let st = self.ctx.state();
            let moving: BTreeSet<String> = st
                .sessions
                .values()
                .filter(|s| s.state == SessionState::Moving || s.moving.is_some())
                .map(|s| s.name.clone())
                .collect();
            let cut = st.failover_in_progress || !moving.is_empty();
            (st.active_account.clone(), moving, cut)
        };
        if !cut {
            return;
        }
        log::warn!("a failover to {to} was cut short; finishing its moves");
        self.ctx.update(|st| st.failover_in_progress = true);
        self.start(Job {
            switch: None,
            manual: false,
            to,
            only: None,
            failed_before: moving,
            limited_on_target: false,
        });
    }

    /// A pause saved before a restart gets its timer back.
    fn rearm_pause(&mut self) {
        let until = {
            let st = self.ctx.state();
            st.dispatch_paused.as_ref().map(|_| st.paused_until)
        };
        if let Some(until) = until {
            self.resume_at = Some(instant_at(until.unwrap_or(0)));
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        [
            self.retry_at,
            self.recheck_at,
            self.resume_at,
            self.continues.iter().map(|c| c.0).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle(&mut self, m: FailoverMsg) {
        match m {
            FailoverMsg::Manual { to, reply } => {
                let r = self.manual(to);
                match &r {
                    Ok(m) => log::info!("{m}"),
                    Err(e) => log::warn!("failover refused: {e}"),
                }
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            FailoverMsg::Threshold { .. } if self.running => {}
            m if self.running => self.deferred.push_back(m),
            FailoverMsg::Threshold { account } => {
                log::debug!("threshold check for {account}");
                self.evaluate(false);
            }
            FailoverMsg::Limit { session } => self.on_limit(&session),
            FailoverMsg::RateLimited { session } => self.on_rate_limited(&session),
        }
    }
}

mod jobs;
mod mover;
mod switcher;

pub use mover::dedicated_command_line;
