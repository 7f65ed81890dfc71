//! The switcher's policy: when the active account must be left, which
//! account to go to, a manual request, a limit or throttle in one session,
//! pausing dispatch when no account is usable.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{earliest, instant_at, limit_is_history, Job, Switcher};
use crate::bus::{DispatchMsg, Refusal};
use crate::lifecycle::{self, AgentId, Event};
use crate::notice::{Notice, NoticeKind};
use crate::quota;
use crate::state::{Session, SessionState};
use crate::timefmt::{now_secs, rfc3339};

impl Switcher {
    pub(super) fn cooldown_until(&self) -> Option<u64> {
        let cfg = self.ctx.config();
        let last = self.ctx.state().last_failover?;
        let until = last + cfg.failover.cooldown.get().as_secs();
        (until > now_secs()).then_some(until)
    }

    /// Why the active account must be left, if it must.
    pub(super) fn active_problem(&self) -> Option<String> {
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
    pub(super) fn evaluate(&mut self, polled: bool) {
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
    pub(super) fn auto_switch(&mut self, why: String, pause: bool) -> bool {
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

    pub(super) fn manual(&mut self, to: Option<String>) -> Result<String, Refusal> {
        if self.running {
            return Err(Refusal::Running);
        }
        let cfg = self.ctx.config();
        let (active, target) = {
            let st = self.ctx.state();
            let active = st.active_account.clone();
            let target = match &to {
                Some(n) => {
                    if cfg.account(n).is_none() {
                        return Err(Refusal::UnknownAccount(n.clone()));
                    }
                    if let Some(s) = st.accounts.get(n).filter(|s| !s.usable) {
                        return Err(Refusal::Unusable {
                            account: n.clone(),
                            why: s.error.as_deref().unwrap_or("bad token").to_string(),
                        });
                    }
                    n.clone()
                }
                None => quota::choose_target(&cfg, &st.accounts, Some(&active), now_secs())
                    .ok_or(Refusal::NoUsableAccount)?,
            };
            (active, target)
        };
        if target == active {
            return Err(Refusal::AlreadyActive(target));
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

    pub(super) fn on_limit(&mut self, name: &str) {
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

    pub(super) fn on_rate_limited(&mut self, name: &str) {
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
                "{name}: rate limited and the usage API cannot answer for {account} ({outcome})"
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

    pub(super) fn session_and_active(&self, name: &str) -> Option<(Session, String)> {
        let st = self.ctx.state();
        let s = st.sessions.get(name)?.clone();
        Some((s, st.active_account.clone()))
    }

    pub(super) fn retry_now(&mut self, name: &str) {
        let agent = self.conversation_of(name);
        self.retry.insert(name.to_string(), agent);
        self.retry_at = Some(Instant::now());
    }

    /// A retry is for the conversation it was booked for (not a pid: a
    /// failed move has stopped the agent).
    pub(super) fn conversation_of(&self, name: &str) -> AgentId {
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
    pub(super) fn pause(&mut self, why: String) {
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
                    NoticeKind::DispatchPaused,
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

    pub(super) fn unpause(&mut self, account: &str) {
        self.resume_at = None;
        let was = self.ctx.update(|st| {
            st.paused_until = None;
            st.dispatch_paused.take()
        });
        if was.is_some() {
            self.ctx.notify(Notice::new(
                NoticeKind::DispatchPaused,
                format!("dispatching resumed on account {account}"),
            ));
            let _ = self.ctx.to_dispatcher.send(DispatchMsg::Scan);
        }
    }

    /// While paused: an account eligible again ends the pause (moving to it
    /// if it is not the active one, and restarting sessions left at a limit).
    pub(super) fn try_recover(&mut self, poll: bool) {
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
}
