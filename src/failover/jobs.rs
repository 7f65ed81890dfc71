//! The switcher's jobs: starting a move job on the worker, taking its
//! report (retries, notices), and the timers (retries, rechecks, the end of
//! a pause, a throttled session's `continue`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{earliest, limit_is_history, mover, Job, Report, Switcher, LATER};
use crate::bus::DispatchMsg;
use crate::launch;
use crate::lifecycle::AgentId;
use crate::notice::{Notice, NoticeKind};
use crate::state::{SessionKind, SessionState};
use crate::timefmt::now_secs;

impl Switcher {
    pub(super) fn start(&mut self, job: Job) {
        if let Some((from, why)) = &job.switch {
            self.ctx.update(|st| {
                st.failover_in_progress = true;
                st.active_account = job.to.clone();
            });
            self.ctx.notify(
                Notice::new(
                    NoticeKind::Failover,
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
                let r = mover::run_job(&ctx, job);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            log::error!("cannot start the failover worker: {e}");
            self.running = false;
            self.ctx.update(|st| st.failover_in_progress = false);
            self.retry_at = Some(Instant::now() + self.ctx.config().failover.retry_interval.get());
        }
    }

    pub(super) fn finished(&mut self, r: Report) {
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
                "failover from {from} to {} {} in {:.1}s: {}{}",
                r.job.to,
                if ok { "done" } else { "finished with failures" },
                r.elapsed.as_secs_f64(),
                sessions_moved(&r.moved),
                if ok {
                    String::new()
                } else {
                    format!(
                        "; failed (retried every {}): {}",
                        cfg.failover.retry_interval,
                        failed_txt.join("; ")
                    )
                }
            );
            self.ctx.notify(
                Notice::new(NoticeKind::Failover, msg)
                    .field("from", from.clone())
                    .field("to", r.job.to.clone())
                    .field("phase", if ok { "done" } else { "failed" })
                    .field("moved", moved_list)
                    .field("failed", failed_list),
            );
        } else if !r.moved.is_empty() {
            self.ctx.notify(
                Notice::new(
                    NoticeKind::Failover,
                    format!("{} to {}", sessions_moved(&r.moved), r.job.to),
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

    pub(super) fn timers(&mut self) {
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
    pub(super) fn drop_gone_bookings(&mut self) {
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
    pub(super) fn continue_session(&self, name: &str, agent: &AgentId) {
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
        match launch::deliver(
            &self.ctx.tmux,
            name,
            "continue",
            s.transcript_path.as_deref(),
        ) {
            Ok(()) => log::info!("{name}: told to continue after a throttle"),
            Err(e) => log::warn!("{name}: cannot tell it to continue: {e}"),
        }
    }
}

/// `moved ccl-1, ccl-2` or `no session to move`: never `moved []`.
fn sessions_moved(moved: &[String]) -> String {
    if moved.is_empty() {
        "no session to move".into()
    } else {
        format!("moved {}", moved.join(", "))
    }
}
