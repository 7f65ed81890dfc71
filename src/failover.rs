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
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use crate::bus::{Ctx, DispatchMsg, FailoverMsg};
use crate::config::{AccountConfig, Config, Pattern};
use crate::launch::{self, Conversation, Launch, LaunchError};
use crate::lifecycle::{self, AgentId, Event, Move};
use crate::notice::Notice;
use crate::quota;
use crate::state::{Session, SessionKind, SessionState};
use crate::timefmt::{now_secs, rfc3339};
use crate::tmux::{PaneInfo, Tmux};

/// In the note pasted into a moved conversation; also how a limit line that
/// is only history (above the note) is recognised.
pub const NOTE_MARK: &str = "moved to another account";
/// A session the dispatcher is still launching is looked at again this soon.
const LATER: Duration = Duration::from_secs(2);
/// Sessions moved at once.
const PARALLEL: usize = 8;
/// Foreground programs that mean "the operator's shell, no agent".
const SHELLS: &[&str] = &[
    "bash", "zsh", "sh", "dash", "fish", "ksh", "mksh", "tcsh", "csh", "login",
];

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
    failed: Vec<(String, String)>,
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

    fn cooldown_until(&self) -> Option<u64> {
        let cfg = self.ctx.config();
        let last = self.ctx.state().last_failover?;
        let until = last + cfg.failover.cooldown.get().as_secs();
        (until > now_secs()).then_some(until)
    }

    /// Why the active account must be left, if it must.
    fn active_problem(&self) -> Option<String> {
        let cfg = self.ctx.config();
        let now = now_secs();
        let st = self.ctx.state();
        let a = &st.active_account;
        let s = st.accounts.get(a)?;
        if !s.usable {
            return Some(format!(
                "account {a} is not usable ({})",
                s.error.as_deref().unwrap_or("token")
            ));
        }
        if s.limited_until.is_some_and(|t| t > now) {
            return Some(format!("a session on account {a} hit its usage limit"));
        }
        quota::over_which(&cfg, s, now).map(|w| format!("account {a}: {w}"))
    }

    /// The automatic check: leave the active account when it must be left.
    fn evaluate(&mut self, polled: bool) {
        if self.ctx.state().dispatch_paused.is_some() {
            self.try_recover(polled);
            return;
        }
        if let Some(why) = self.active_problem() {
            self.auto_switch(why, true);
        }
    }

    /// Starts an automatic failover unless the cooldown holds it. With no
    /// target, pauses dispatching when `pause` says so. True when started.
    fn auto_switch(&mut self, why: String, pause: bool) -> bool {
        if let Some(until) = self.cooldown_until() {
            if self.held_logged != Some(until) {
                self.held_logged = Some(until);
                log::info!(
                    "{why}; holding: the last failover was less than {} ago (until {})",
                    self.ctx.config().failover.cooldown,
                    rfc3339(until)
                );
            }
            self.recheck_at = earliest(self.recheck_at, instant_at(until));
            return false;
        }
        let cfg = self.ctx.config();
        let (active, target) = {
            let st = self.ctx.state();
            let active = st.active_account.clone();
            let t = quota::choose_target(&cfg, &st.accounts, Some(&active), now_secs());
            (active, t)
        };
        match target {
            Some(to) => {
                self.start(Job {
                    switch: Some((active, why)),
                    manual: false,
                    to,
                    only: None,
                    failed_before: BTreeSet::new(),
                    limited_on_target: false,
                });
                true
            }
            None if pause => {
                self.pause(why);
                false
            }
            None => {
                log::warn!("{why}; but no other account is usable");
                false
            }
        }
    }

    fn manual(&mut self, to: Option<String>) -> Result<String, String> {
        if self.running {
            return Err("a failover is already running".into());
        }
        let cfg = self.ctx.config();
        let (active, target) = {
            let st = self.ctx.state();
            let active = st.active_account.clone();
            let target = match &to {
                Some(n) => {
                    if cfg.account(n).is_none() {
                        return Err(format!("no account named `{n}`"));
                    }
                    if let Some(s) = st.accounts.get(n).filter(|s| !s.usable) {
                        return Err(format!(
                            "account `{n}` is not usable: {}",
                            s.error.as_deref().unwrap_or("bad token")
                        ));
                    }
                    n.clone()
                }
                None => quota::choose_target(&cfg, &st.accounts, Some(&active), now_secs())
                    .ok_or_else(|| "no usable account".to_string())?,
            };
            (active, target)
        };
        if target == active {
            return Err(format!("`{target}` is already the active account"));
        }
        self.start(Job {
            switch: Some((active.clone(), "operator request".into())),
            manual: true,
            to: target.clone(),
            only: None,
            failed_before: BTreeSet::new(),
            limited_on_target: false,
        });
        Ok(format!("failover from {active} to {target} started"))
    }

    fn on_limit(&mut self, name: &str) {
        let cfg = self.ctx.config();
        let Some((s, active)) = self.session_and_active(name) else {
            return;
        };
        let account = s.account.clone().unwrap_or_else(|| active.clone());
        if account != active {
            // Still on an account we already left (a move that failed or
            // a launch that raced the switch): move it now.
            log::info!("{name}: at a limit on {account}, which is no longer active; moving it");
            self.retry_now(name);
            return;
        }
        let screen = self.ctx.tmux.capture(name).unwrap_or_default();
        if limit_is_history(&screen, &cfg.agent.limit_pattern) {
            log::info!("{name}: the limit line on screen is history from before its move");
            lifecycle::handle(&self.ctx, name, Event::LimitIsHistory);
            return;
        }
        let now = now_secs();
        self.ctx.update(|st| {
            if let Some(a) = st.accounts.get_mut(&account) {
                let until = a
                    .five_hour_resets
                    .filter(|t| *t > now)
                    .unwrap_or(now + cfg.failover.limit_hold.get().as_secs());
                a.limited_until = Some(until);
            }
        });
        log::warn!("{name}: usage limit on account {account}");
        self.evaluate(false);
    }

    fn on_rate_limited(&mut self, name: &str) {
        let cfg = self.ctx.config();
        let Some((s, active)) = self.session_and_active(name) else {
            return;
        };
        let account = s.account.clone().unwrap_or_else(|| active.clone());
        if account != active {
            self.retry_now(name);
            return;
        }
        let Some(acct) = cfg.account(&account).cloned() else {
            return;
        };
        let outcome = quota::poll_and_record(&self.ctx, &self.http, &acct);
        let why = if outcome.unanswered() {
            Some(format!(
                "{name}: rate limited and the usage API cannot answer for {account} ({outcome:?})"
            ))
        } else {
            self.active_problem()
        };
        let started = match why {
            Some(why) => self.auto_switch(why, false),
            None => false,
        };
        if !started {
            let pause = cfg.failover.throttle_pause.get();
            log::info!(
                "{name}: a server throttle on {account}; it continues in {}",
                cfg.failover.throttle_pause
            );
            let agent = AgentId::of(&s, self.ctx.tmux.agent_pid(name));
            self.continues
                .push((Instant::now() + pause, name.to_string(), agent));
        }
    }

    fn session_and_active(&self, name: &str) -> Option<(Session, String)> {
        let st = self.ctx.state();
        let s = st.sessions.get(name)?.clone();
        Some((s, st.active_account.clone()))
    }

    fn retry_now(&mut self, name: &str) {
        let agent = self.conversation_of(name);
        self.retry.insert(name.to_string(), agent);
        self.retry_at = Some(Instant::now());
    }

    /// A retry is for the conversation it was booked for (not a pid: a
    /// failed move has stopped the agent).
    fn conversation_of(&self, name: &str) -> AgentId {
        let conversation = self
            .ctx
            .state()
            .sessions
            .get(name)
            .and_then(|s| s.claude_session_id.clone());
        AgentId {
            pid: None,
            conversation,
        }
    }

    /// No usable account: pause dispatching until the earliest reset.
    fn pause(&mut self, why: String) {
        let cfg = self.ctx.config();
        let now = now_secs();
        let until = {
            let st = self.ctx.state();
            quota::earliest_recovery(&cfg, &st.accounts, now)
        }
        .filter(|t| *t > now)
        .unwrap_or(now + cfg.quota.poll_interval.get().as_secs().max(1));
        let first = self.ctx.update(|st| {
            let first = st.dispatch_paused.is_none();
            st.dispatch_paused = Some(format!("no usable account: {why}"));
            st.paused_until = Some(until);
            first
        });
        if first {
            self.ctx.notify(
                Notice::new(
                    "dispatch_paused",
                    format!(
                        "no usable account ({why}); dispatching paused until {}",
                        rfc3339(until)
                    ),
                )
                .field("until", rfc3339(until)),
            );
        }
        self.resume_at = Some(instant_at(until));
    }

    fn unpause(&mut self, account: &str) {
        self.resume_at = None;
        let was = self.ctx.update(|st| {
            st.paused_until = None;
            st.dispatch_paused.take()
        });
        if was.is_some() {
            self.ctx.notify(Notice::new(
                "dispatch_paused",
                format!("dispatching resumed on account {account}"),
            ));
            let _ = self.ctx.to_dispatcher.send(DispatchMsg::Scan);
        }
    }

    /// While paused: an account eligible again ends the pause (moving to it
    /// if it is not the active one, and restarting sessions left at a limit).
    fn try_recover(&mut self, poll: bool) {
        let cfg = self.ctx.config();
        if poll {
            for a in &cfg.accounts {
                quota::poll_and_record(&self.ctx, &self.http, a);
            }
        }
        let now = now_secs();
        let (active, active_ok, target, limited_here) = {
            let st = self.ctx.state();
            let active = st.active_account.clone();
            let ok = st
                .accounts
                .get(&active)
                .is_none_or(|s| quota::eligible(&cfg, s, now));
            let t = quota::choose_target(&cfg, &st.accounts, None, now);
            let limited = st.sessions.values().any(|s| {
                s.state == SessionState::Limited
                    && s.account.as_deref().unwrap_or(&active) == active
            });
            (active, ok, t, limited)
        };
        if active_ok {
            log::info!("account {active} is usable again");
            self.unpause(&active);
            if limited_here {
                self.start(Job {
                    switch: None,
                    manual: false,
                    to: active,
                    only: None,
                    failed_before: BTreeSet::new(),
                    limited_on_target: true,
                });
            }
            return;
        }
        match target {
            Some(to) => self.start(Job {
                switch: Some((active, "an account is usable again".into())),
                manual: false,
                to,
                only: None,
                failed_before: BTreeSet::new(),
                limited_on_target: true,
            }),
            None => {
                let why = self
                    .active_problem()
                    .unwrap_or_else(|| "every account is over a threshold".into());
                self.pause(why);
            }
        }
    }

    fn start(&mut self, job: Job) {
        if let Some((from, why)) = &job.switch {
            self.ctx.update(|st| {
                st.failover_in_progress = true;
                st.active_account = job.to.clone();
            });
            self.ctx.notify(
                Notice::new(
                    "failover",
                    format!("failover from {from} to {}: {why}", job.to),
                )
                .field("from", from.clone())
                .field("to", job.to.clone())
                .field("phase", "started"),
            );
            let to = job.to.clone();
            self.unpause(&to);
            let _ = self.ctx.to_dispatcher.send(DispatchMsg::Scan);
        }
        self.running = true;
        let ctx = self.ctx.clone();
        let tx = self.done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("failover-job".into())
            .spawn(move || {
                let r = run_job(&ctx, job);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            log::error!("cannot start the failover worker: {e}");
            self.running = false;
            self.ctx.update(|st| st.failover_in_progress = false);
            self.retry_at = Some(Instant::now() + self.ctx.config().failover.retry_interval.get());
        }
    }

    fn finished(&mut self, r: Report) {
        self.running = false;
        let cfg = self.ctx.config();
        let now = now_secs();
        let switched = r.job.switch.is_some();
        self.ctx.update(|st| {
            st.failover_in_progress = false;
            if switched {
                st.last_failover = Some(now);
                st.metrics.failovers += 1;
                if r.moved.is_empty() && !r.failed.is_empty() {
                    st.metrics.failovers_failed += 1;
                }
            }
        });
        for m in &r.moved {
            self.retry.remove(m);
            self.later.remove(m);
        }
        if let Some(only) = &r.job.only {
            // Those that needed nothing any more are done with.
            for n in only {
                if !r.failed.iter().any(|f| &f.0 == n) && !r.later.contains(n) {
                    self.retry.remove(n);
                    self.later.remove(n);
                }
            }
        }
        for (n, _) in &r.failed {
            let agent = self.conversation_of(n);
            self.retry.insert(n.clone(), agent);
        }
        for n in &r.later {
            let agent = self.conversation_of(n);
            self.later.insert(n.clone(), agent);
        }
        if !r.failed.is_empty() {
            self.retry_at = earliest(
                self.retry_at,
                Instant::now() + cfg.failover.retry_interval.get(),
            );
        }
        if !r.later.is_empty() {
            self.retry_at = earliest(self.retry_at, Instant::now() + LATER);
        }
        let failed_txt: Vec<String> = r.failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        let moved_list = serde_json::Value::from(r.moved.clone());
        let failed_list = serde_json::Value::from(failed_txt.clone());
        if let Some((from, _)) = &r.job.switch {
            let ok = r.failed.is_empty();
            let msg = format!(
                "failover from {from} to {} {} in {:.1}s: moved [{}]{}",
                r.job.to,
                if ok { "done" } else { "finished with failures" },
                r.elapsed.as_secs_f64(),
                r.moved.join(", "),
                if ok {
                    String::new()
                } else {
                    format!(
                        "; failed (retried every {}) [{}]",
                        cfg.failover.retry_interval,
                        failed_txt.join("; ")
                    )
                }
            );
            self.ctx.notify(
                Notice::new("failover", msg)
                    .field("from", from.clone())
                    .field("to", r.job.to.clone())
                    .field("phase", if ok { "done" } else { "failed" })
                    .field("moved", moved_list)
                    .field("failed", failed_list),
            );
        } else if !r.moved.is_empty() {
            self.ctx.notify(
                Notice::new(
                    "failover",
                    format!("moved [{}] to {}", r.moved.join(", "), r.job.to),
                )
                .field("to", r.job.to.clone())
                .field("phase", "retry")
                .field("moved", moved_list)
                .field("failed", failed_list),
            );
        } else if !r.failed.is_empty() {
            log::warn!(
                "moving sessions to {} failed again: {}",
                r.job.to,
                failed_txt.join("; ")
            );
        }
        let _ = self.ctx.to_dispatcher.send(DispatchMsg::Scan);
        while !self.running {
            let Some(m) = self.deferred.pop_front() else {
                break;
            };
            self.handle(m);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = self.continues.drain(..).partition(|c| c.0 <= now);
        self.continues = keep;
        for (_, name, agent) in due {
            self.continue_session(&name, &agent);
        }
        let busy_again = Instant::now() + Duration::from_millis(500);
        if self.retry_at.is_some_and(|t| t <= now) {
            if self.running {
                self.retry_at = Some(busy_again);
            } else {
                self.retry_at = None;
                self.drop_gone_bookings();
                let only: BTreeSet<String> = self
                    .retry
                    .keys()
                    .chain(self.later.keys())
                    .cloned()
                    .collect();
                if !only.is_empty() {
                    let to = self.ctx.state().active_account.clone();
                    self.start(Job {
                        switch: None,
                        manual: false,
                        to,
                        only: Some(only),
                        failed_before: self.retry.keys().cloned().collect(),
                        limited_on_target: false,
                    });
                }
            }
        }
        if self.recheck_at.is_some_and(|t| t <= now) {
            if self.running {
                self.recheck_at = Some(busy_again);
            } else {
                self.recheck_at = None;
                self.evaluate(false);
            }
        }
        if self.resume_at.is_some_and(|t| t <= now) {
            if self.running {
                self.resume_at = Some(busy_again);
            } else {
                self.resume_at = None;
                self.try_recover(true);
            }
        }
    }

    /// Retries booked for a conversation the session no longer has.
    fn drop_gone_bookings(&mut self) {
        let st = self.ctx.state();
        let live = |n: &String, a: &mut AgentId| {
            let keep = st.sessions.get(n).is_some_and(|s| a.matches(s, None));
            if !keep {
                log::info!("{n}: its booked move retry was for another conversation; dropped");
            }
            keep
        };
        self.retry.retain(live);
        self.later.retain(live);
    }

    /// After a throttle: the session tries again, unless things changed.
    fn continue_session(&self, name: &str, agent: &AgentId) {
        let cfg = self.ctx.config();
        let Some(s) = self.ctx.state().sessions.get(name).cloned() else {
            return;
        };
        if s.state == SessionState::Moving || !agent.matches(&s, self.ctx.tmux.agent_pid(name)) {
            log::info!("{name}: its throttled agent is gone or moved; no continue");
            return;
        }
        if !matches!(s.state, SessionState::Working | SessionState::WaitingInput)
            && s.kind == SessionKind::Autonomous
        {
            return;
        }
        if self.ctx.tmux.pane_info(name).map_or(true, |p| p.dead) {
            return;
        }
        let screen = self.ctx.tmux.capture(name).unwrap_or_default();
        if cfg.agent.limit_pattern.is_match(&screen)
            && !limit_is_history(&screen, &cfg.agent.limit_pattern)
        {
            return;
        }
        match launch::deliver(&self.ctx.tmux, name, "continue") {
            Ok(()) => log::info!("{name}: told to continue after a throttle"),
            Err(e) => log::warn!("{name}: cannot tell it to continue: {e}"),
        }
    }
}

// ------------------------------------------------------------- the worker

enum Need {
    No,
    Move,
    /// The dispatcher is still launching it: look again shortly.
    Later,
}

fn is_shell(cmd: &str) -> bool {
    let c = cmd.trim_start_matches('-');
    SHELLS.contains(&c)
}

/// Whether a dedicated session's pane runs an agent.
fn runs_agent(cfg: &Config, pane: &PaneInfo) -> bool {
    if pane.dead || is_shell(&pane.current_command) {
        return false;
    }
    let ours = Path::new(&cfg.agent.command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = pane.current_command.as_str();
    c == ours || c == "node" || c.contains("claude")
}

fn needs_move(cfg: &Config, s: &Session, job: &Job, pane: Option<&PaneInfo>) -> Need {
    use SessionState::*;
    let on_target = s.account.as_deref() == Some(job.to.as_str());
    if on_target && !(job.limited_on_target && s.state == Limited) {
        return Need::No;
    }
    let retrying = job.failed_before.contains(&s.name);
    match s.kind {
        _ if s.state == Moving || s.moving.is_some() => Need::Move,
        SessionKind::Autonomous => {
            if s.task.is_none() {
                return Need::No;
            }
            match s.state {
                Working | WaitingInput | Limited => Need::Move,
                Starting | Finishing if retrying => Need::Move,
                Starting | Finishing => Need::Later,
                _ => Need::No,
            }
        }
        SessionKind::Dedicated => {
            if s.state == Limited || retrying {
                return Need::Move;
            }
            let agent = pane.is_some_and(|p| runs_agent(cfg, p));
            if agent && s.claude_session_id.is_some() {
                Need::Move
            } else {
                Need::No
            }
        }
    }
}

fn run_job(ctx: &Ctx, job: Job) -> Report {
    let t0 = Instant::now();
    let cfg = ctx.config();
    let mut report = Report {
        job: job.clone(),
        moved: Vec::new(),
        failed: Vec::new(),
        later: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let Some(to) = cfg.account(&job.to).cloned() else {
        log::error!("account {} is not configured", job.to);
        return report;
    };
    for a in &cfg.accounts {
        match crate::transcripts::share(&a.config_dir, &cfg.failover.shared_transcripts, &a.name) {
            Ok(r) if r.already => {}
            Ok(r) => log::info!(
                "{}/projects now links to {} ({} files merged, {} kept under conflict names{})",
                a.config_dir.display(),
                cfg.failover.shared_transcripts.display(),
                r.moved,
                r.conflicts.len(),
                r.aside
                    .map(|p| format!(", leftovers in {}", p.display()))
                    .unwrap_or_default()
            ),
            Err(e) => log::error!(
                "cannot link {}/projects to {}: {e}; resuming there may fail",
                a.config_dir.display(),
                cfg.failover.shared_transcripts.display()
            ),
        }
    }
    let panes = ctx.tmux.panes().unwrap_or_default();
    let sessions: Vec<Session> = ctx.state().sessions.values().cloned().collect();
    let mut todo = Vec::new();
    for s in sessions {
        if job.only.as_ref().is_some_and(|o| !o.contains(&s.name)) {
            continue;
        }
        match needs_move(&cfg, &s, &job, panes.get(&s.name)) {
            Need::Move => todo.push(s),
            Need::Later => report.later.push(s.name.clone()),
            Need::No => {}
        }
    }
    if !todo.is_empty() {
        log::info!(
            "moving {} session(s) to {}: {}",
            todo.len(),
            to.name,
            todo.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for chunk in todo.chunks(PARALLEL) {
        let results: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|s| {
                    let (cfg, to, job) = (&cfg, &to, &job);
                    (
                        s.name.clone(),
                        scope.spawn(move || move_one(ctx, cfg, s, to, job)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| {
                    (
                        n,
                        h.join()
                            .unwrap_or_else(|_| Err("the move panicked".to_string())),
                    )
                })
                .collect()
        });
        for (n, r) in results {
            match r {
                Ok(()) => report.moved.push(n),
                Err(e) => {
                    log::error!("{n}: not moved to {}: {e}", to.name);
                    report.failed.push((n, e));
                }
            }
        }
    }
    report.elapsed = t0.elapsed();
    report
}

/// Moves one session's conversation to `to`: `Moving` (persisted) while
/// the old agent is stopped and the conversation resumed on `to`. A move
/// cut short by a restart is picked up from its record.
fn move_one(
    ctx: &Ctx,
    cfg: &Config,
    s: &Session,
    to: &AccountConfig,
    job: &Job,
) -> Result<(), String> {
    let name = s.name.as_str();
    let earlier = s.moving.as_ref();
    let id = earlier
        .map(|m| m.conversation.clone())
        .or_else(|| s.claude_session_id.clone())
        .or_else(|| crate::checkpoint::read_session_id(&cfg.state_dir, name))
        .ok_or("no conversation id to resume (no SessionStart seen, no checkpoint)")?;
    let project = earlier
        .map(|m| m.project.clone())
        .or_else(|| s.task.as_ref().map(|t| t.project.clone()))
        .or_else(|| s.project.clone())
        .ok_or("no project known")?;
    let project = std::fs::canonicalize(&project).unwrap_or(project);
    let model = s
        .task
        .as_ref()
        .map(|t| t.model.clone())
        .unwrap_or_else(|| cfg.agent.models.default.clone());
    let from = earlier
        .and_then(|m| m.from.clone())
        .or_else(|| s.account.clone());
    let autonomous = s.kind == SessionKind::Autonomous;
    let mv = Move {
        to: to.name.clone(),
        from: from.clone(),
        conversation: id.clone(),
        project: project.clone(),
        task: s.task.clone(),
        manual: job.manual,
        before: s.state,
    };
    lifecycle::handle(ctx, name, Event::MoveBegin(mv));
    let from = from.unwrap_or_else(|| "?".into());
    let stopped = if autonomous || pane_is_agent(&ctx.tmux, name) {
        launch::stop_agent(&ctx.tmux, name, cfg.failover.stop_timeout.get())
    } else {
        stop_in_shell(&ctx.tmux, name, cfg.failover.stop_timeout.get())
    };
    if let Err(e) = stopped {
        lifecycle::handle(ctx, name, Event::MoveAborted);
        return Err(format!("cannot stop it on {from}: {e}"));
    }
    // From here a failure leaves it `Moving`: the retry (or a restart)
    // resumes the conversation.
    let transcript = if autonomous {
        relaunch(ctx, cfg, name, &project, to, &model, &id)?
    } else {
        relaunch_dedicated(ctx, cfg, name, &project, to, &model, &id)?
    };
    let text = note(&from, &to.name, job.manual);
    if let Err(e) = launch::deliver(&ctx.tmux, name, &text) {
        log::warn!(
            "{name}: resumed on {}, but the note was not taken: {e}",
            to.name
        );
    }
    lifecycle::handle(ctx, name, Event::MoveDone { transcript });
    log::info!("{name}: conversation {id} moved from {from} to {}", to.name);
    Ok(())
}

/// Relaunches an autonomous session's conversation under `to`. When only
/// the guard's redeploy fails and its earlier copy is in place, the launch
/// goes on with that copy (logged).
fn relaunch(
    ctx: &Ctx,
    cfg: &Config,
    name: &str,
    project: &Path,
    to: &AccountConfig,
    model: &str,
    id: &str,
) -> Result<PathBuf, String> {
    let l = Launch {
        session: name,
        project,
        account: to,
        model,
        conversation: Conversation::Resume(id.to_string()),
    };
    match launch::start_agent(cfg, &ctx.tmux, &l) {
        Ok(p) => Ok(p),
        Err(LaunchError::Guard(e)) if guard_in_place(project) => {
            log::warn!(
                "{name}: cannot redeploy the guard in {} ({e}); the copy in place stays",
                project.display()
            );
            start_with_guard_in_place(cfg, &ctx.tmux, &l).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn guard_in_place(project: &Path) -> bool {
    project
        .join(".claude/hooks")
        .join(crate::guard::HOOK_FILE)
        .is_file()
}

/// `launch::start_agent` without the guard deployment.
fn start_with_guard_in_place(
    cfg: &Config,
    tmux: &Tmux,
    l: &Launch,
) -> Result<PathBuf, LaunchError> {
    crate::account::prepare(&l.account.config_dir, l.project)
        .map_err(|e| LaunchError::Account(e.to_string()))?;
    let pinned = cfg.state_dir.join("guard-settings.json");
    let events = cfg.events_dir();
    let env: [(&str, &OsStr); 4] = [
        ("CLAUDE_CONFIG_DIR", l.account.config_dir.as_os_str()),
        ("CLAUDE_FAILOVER_SESSION", OsStr::new(l.session)),
        ("CLAUDE_FAILOVER_EVENTS", events.as_os_str()),
        ("DISABLE_AUTOUPDATER", OsStr::new("1")),
    ];
    let mut argv: Vec<&OsStr> = vec![OsStr::new("env")];
    for v in launch::OVERRIDING_ENV {
        argv.push(OsStr::new("-u"));
        argv.push(OsStr::new(v));
    }
    argv.extend([
        OsStr::new(cfg.agent.command.as_str()),
        OsStr::new("--model"),
        OsStr::new(l.model),
        OsStr::new("--dangerously-skip-permissions"),
        OsStr::new("--resume"),
        OsStr::new(l.conversation.id()),
    ]);
    if pinned.is_file() {
        argv.extend([OsStr::new("--settings"), pinned.as_os_str()]);
    }
    tmux.respawn(l.session, l.project, &env, &argv)?;
    launch::wait_ready(cfg, tmux, l.session)?;
    Ok(crate::account::transcript_path(
        &l.account.config_dir,
        l.project,
        l.conversation.id(),
    ))
}

/// The command line typed into a dedicated session's shell, every value
/// shell-quoted.
pub fn dedicated_command_line(
    cfg: &Config,
    to: &AccountConfig,
    session: &str,
    project: &Path,
    model: &str,
    id: &str,
) -> String {
    let q = |s: &str| crate::guard::shell_quote(s);
    let mut parts = vec![
        "cd".to_string(),
        q(&project.to_string_lossy()),
        "&&".into(),
        "env".into(),
    ];
    for v in launch::OVERRIDING_ENV {
        parts.push("-u".into());
        parts.push((*v).into());
    }
    parts.push(format!(
        "CLAUDE_CONFIG_DIR={}",
        q(&to.config_dir.to_string_lossy())
    ));
    parts.push(format!("CLAUDE_FAILOVER_SESSION={}", q(session)));
    parts.push(format!(
        "CLAUDE_FAILOVER_EVENTS={}",
        q(&cfg.events_dir().to_string_lossy())
    ));
    parts.push("DISABLE_AUTOUPDATER=1".into());
    parts.push(q(&cfg.agent.command));
    parts.push("--model".into());
    parts.push(q(model));
    parts.push("--dangerously-skip-permissions".into());
    parts.push("--resume".into());
    parts.push(q(id));
    parts.join(" ")
}

/// Restarts a dedicated session's agent in its own shell (respawning the
/// shell first if the pane is dead) and waits for its input line.
fn relaunch_dedicated(
    ctx: &Ctx,
    cfg: &Config,
    name: &str,
    project: &Path,
    to: &AccountConfig,
    model: &str,
    id: &str,
) -> Result<PathBuf, String> {
    let tmux = &ctx.tmux;
    crate::account::prepare(&to.config_dir, project).map_err(|e| e.to_string())?;
    if let Err(e) = crate::guard::deploy(project, cfg.guard.mode, Some(&cfg.events_dir())) {
        log::warn!(
            "{name}: cannot redeploy the guard in {} ({e}); the copy in place stays",
            project.display()
        );
    }
    let info = tmux.pane_info(name).map_err(|e| e.to_string())?;
    if info.dead {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        tmux.respawn(name, project, &[], &[OsStr::new(&shell), OsStr::new("-l")])
            .map_err(|e| format!("cannot restart the shell: {e}"))?;
    }
    let line = dedicated_command_line(cfg, to, name, project, model, id);
    tmux.send_key(name, "C-u").map_err(|e| e.to_string())?;
    tmux.send_literal(name, &line).map_err(|e| e.to_string())?;
    tmux.send_key(name, "Enter").map_err(|e| e.to_string())?;
    launch::wait_ready(cfg, tmux, name).map_err(|e| e.to_string())?;
    Ok(crate::account::transcript_path(&to.config_dir, project, id))
}

/// Whether the pane's own process is the agent (started without a shell):
/// then it dies (remain-on-exit) when the agent leaves.
fn pane_is_agent(tmux: &Tmux, name: &str) -> bool {
    tmux.pane_info(name)
        .is_ok_and(|p| p.dead || !is_shell(&p.current_command) && foreground_pid(p.pid) == p.pid)
}

/// The foreground process of the pane's terminal (`tpgid` of its shell).
fn foreground_pid(pane_pid: Option<u32>) -> Option<u32> {
    let pid = pane_pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let tpgid: i64 = rest.split_whitespace().nth(5)?.parse().ok()?;
    u32::try_from(tpgid).ok().filter(|p| *p > 0)
}

/// Stops an agent that runs in the operator's shell: Esc, `/exit`, then
/// SIGTERM to the terminal's foreground process (never the shell, never
/// SIGKILL). Done when the shell is in the foreground again.
fn stop_in_shell(tmux: &Tmux, name: &str, timeout: Duration) -> Result<(), String> {
    let back = |tmux: &Tmux| {
        tmux.pane_info(name)
            .map_or(true, |p| p.dead || is_shell(&p.current_command))
    };
    let sigterm = |tmux: &Tmux| {
        let Ok(info) = tmux.pane_info(name) else {
            return;
        };
        if let Some(fg) = foreground_pid(info.pid).filter(|fg| Some(*fg) != info.pid) {
            // SAFETY: kill(2) with a pid read from /proc and a plain signal.
            unsafe {
                libc::kill(fg as libc::pid_t, libc::SIGTERM);
            }
        }
    };
    launch::stop_with(tmux, name, timeout, back, sigterm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_above_the_note_is_history() {
        let p = Pattern::new(crate::config::DEFAULT_LIMIT_PATTERN).unwrap();
        let old = "● You've hit your session limit · resets 8:12pm (UTC)\n";
        let n = note("main", "backup", false);
        assert!(limit_is_history(&format!("{old}\n❯ {n}\n● Done.\n"), &p));
        assert!(!limit_is_history(&format!("❯ {n}\n{old}"), &p));
        assert!(!limit_is_history(old, &p));
    }

    #[test]
    fn dedicated_line_quotes_everything() {
        let cfg = Config::parse(
            "agent: { command: \"/opt/my claude/claude\" }\nstate_dir: /s\n",
            "t",
        )
        .unwrap();
        let to = AccountConfig {
            name: "b".into(),
            config_dir: "/home/o/.claude it's".into(),
        };
        let line =
            dedicated_command_line(&cfg, &to, "ccl-0", Path::new("/srv/a b"), "sonnet", "0b3c");
        assert_eq!(
            line,
            "cd '/srv/a b' && env -u ANTHROPIC_API_KEY -u ANTHROPIC_AUTH_TOKEN -u CLAUDE_CODE_OAUTH_TOKEN \
             CLAUDE_CONFIG_DIR='/home/o/.claude it'\\''s' CLAUDE_FAILOVER_SESSION='ccl-0' \
             CLAUDE_FAILOVER_EVENTS='/s/events' DISABLE_AUTOUPDATER=1 '/opt/my claude/claude' \
             --model 'sonnet' --dangerously-skip-permissions --resume '0b3c'"
        );
    }

    #[test]
    fn shells_are_not_agents() {
        assert!(is_shell("bash") && is_shell("-zsh") && !is_shell("claude"));
    }
}
