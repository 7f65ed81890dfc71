//! Session and task transitions: what a signal about a session (an event,
//! a tmux observation, a stop) changes, and what is then done about it
//! (task to `done/`, agent stopped, task given back, failover asked for,
//! reports). Every thread that learns something about a session comes here.

use crate::bus::{Ctx, DispatchMsg, FailoverMsg, WatchMsg};
use crate::launch;
use crate::notice::Notice;
use crate::state::{Session, SessionKind, SessionState, TaskRef};
use crate::timefmt::{now_secs, rfc3339};

/// Something observed about a session, from an event or from tmux.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The agent started (or `/clear`ed): its conversation id.
    Started {
        claude_session_id: String,
        transcript: Option<std::path::PathBuf>,
    },
    /// The agent ended its turn with nothing left in the background.
    TurnDone,
    /// The agent asked for input mid-task.
    WaitingInput(String),
    /// A sign of life (tool call, pane change): not waiting any more.
    Active,
    /// The pane shows a usage-limit line.
    LimitShown,
    /// StopFailure: `rate_limit` without a limit line, or another API error.
    ApiError(String),
    /// The agent process is gone (pane dead, SessionEnd).
    AgentGone(String),
    /// The tmux session is gone.
    SessionGone,
    /// The tmux session exists (again).
    SessionPresent,
}

/// What a transition asks to be done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    /// Task done: to `done/`, stop the agent, free the session.
    Finish,
    /// The agent died mid-task: task back to the inbox (an attempt).
    Requeue(String),
    /// A recycle finished: tell the dispatcher.
    Freed,
    Failover,
    Throttled,
    /// The turn ended before the launch thread reported: finish after it.
    EarlyStop,
    Report(&'static str, String),
    Recreate,
}

/// The one place where session states change in response to signals.
pub fn transition(s: &Session, sig: &Signal) -> (Option<SessionState>, Action) {
    use SessionState::*;
    let has_task = s.task.is_some();
    match (s.state, sig) {
        (_, Signal::Started { .. }) => (None, Action::None),
        (Working | WaitingInput | Limited, Signal::TurnDone) if has_task => {
            (Some(Stopping), Action::Finish)
        }
        (Starting, Signal::TurnDone) if has_task => (None, Action::EarlyStop),
        (Working, Signal::WaitingInput(m)) => (
            Some(WaitingInput),
            Action::Report("session_waiting", m.clone()),
        ),
        (WaitingInput, Signal::Active) => (Some(Working), Action::None),
        (Limited, _) if matches!(sig, Signal::LimitShown) => (None, Action::None),
        (Starting | Working | WaitingInput | Idle, Signal::LimitShown)
            if has_task || s.kind == SessionKind::Dedicated =>
        {
            (Some(Limited), Action::Failover)
        }
        (Working | WaitingInput | Limited, Signal::ApiError(e)) if e == "rate_limit" => {
            (None, Action::Throttled)
        }
        (Stopping, Signal::AgentGone(_)) => (Some(Idle), Action::Freed),
        (Working | WaitingInput | Limited, Signal::AgentGone(why))
            if has_task && s.kind == SessionKind::Autonomous =>
        {
            (Some(Idle), Action::Requeue(why.clone()))
        }
        (_, Signal::AgentGone(_)) if s.kind == SessionKind::Dedicated => (Some(Idle), Action::None),
        (Dead, Signal::SessionPresent) => (Some(Idle), Action::Freed),
        // A launch in flight finds out itself (and puts its task back).
        (Starting, Signal::SessionGone) => (None, Action::None),
        (_, Signal::SessionGone) if s.kind == SessionKind::Autonomous => {
            (Some(Dead), Action::Recreate)
        }
        (Dead, Signal::SessionGone) => (None, Action::None),
        (_, Signal::SessionGone) => (
            Some(Dead),
            Action::Report("session_dead", format!("tmux session {} is gone", s.name)),
        ),
        _ => (None, Action::None),
    }
}

/// Applies a signal: transition, then its action.
pub fn signal(ctx: &Ctx, name: &str, sig: Signal) {
    // The transcript lives under the account's config dir: how a session
    // started by hand tells which account it runs on.
    let account_of_transcript = match &sig {
        Signal::Started {
            transcript: Some(t),
            ..
        } => {
            let cfg = ctx.config();
            cfg.accounts
                .iter()
                .find(|a| t.starts_with(&a.config_dir))
                .map(|a| a.name.clone())
        }
        _ => None,
    };
    let (action, session) = ctx
        .update(|st| {
            let s = st.sessions.get_mut(name)?;
            if let Signal::Started {
                claude_session_id,
                transcript,
            } = &sig
            {
                s.claude_session_id = Some(claude_session_id.clone());
                if transcript.is_some() {
                    s.transcript_path = transcript.clone();
                }
                if account_of_transcript.is_some() {
                    s.account = account_of_transcript.clone();
                }
                s.hooks_confirmed = true;
            }
            let (next, action) = transition(s, &sig);
            if let Some(n) = next {
                s.set_state(n);
            }
            // Under the same lock as the transition: the launch thread reads
            // it when it reports, and must not miss it in between.
            if action == Action::EarlyStop {
                s.early_stop = true;
            }
            Some((action, s.clone()))
        })
        .unzip();
    if let (Some(action), Some(session)) = (action, session) {
        act(ctx, &session, action);
    }
}

fn act(ctx: &Ctx, s: &Session, action: Action) {
    match action {
        Action::None => {}
        Action::Finish => finish(ctx, s),
        // Recorded with the transition itself, in `signal`.
        Action::EarlyStop => {}
        Action::Requeue(why) => {
            if let Some(t) = &s.task {
                log::warn!("{}: {why}; {} goes back to the inbox", s.name, t.name);
                let attempts = ctx.update(|st| {
                    if let Some(x) = st.sessions.get_mut(&s.name) {
                        x.task = None;
                        x.claude_session_id = None;
                    }
                    let n = st.attempts.entry(t.key()).or_insert(0);
                    *n += 1;
                    *n
                });
                crate::lifecycle::give_back(ctx, t, attempts, &why);
            }
            let _ = ctx
                .to_dispatcher
                .send(DispatchMsg::SessionFree(s.name.clone()));
        }
        Action::Freed => {
            let _ = ctx
                .to_dispatcher
                .send(DispatchMsg::SessionFree(s.name.clone()));
        }
        Action::Failover => {
            log::warn!("{}: usage limit reached", s.name);
            let _ = ctx.to_failover.send(FailoverMsg::Limit {
                session: s.name.clone(),
            });
        }
        Action::Throttled => {
            let _ = ctx.to_failover.send(FailoverMsg::RateLimited {
                session: s.name.clone(),
            });
        }
        Action::Report(event, msg) => report(ctx, &s.name, event, msg),
        Action::Recreate => {
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| "/".into());
            // Not the task's fault: back to the inbox without an attempt.
            if let Some(t) = &s.task {
                log::warn!(
                    "{}: tmux session disappeared; {} goes back to the inbox",
                    s.name,
                    t.name
                );
                ctx.update(|st| {
                    if let Some(x) = st.sessions.get_mut(&s.name) {
                        x.task = None;
                    }
                });
                crate::lifecycle::requeue(t);
            }
            match ctx.tmux.new_session(&s.name, &home) {
                Ok(()) => {
                    log::info!("recreated tmux session {}", s.name);
                    ctx.update(|st| {
                        if let Some(x) = st.sessions.get_mut(&s.name) {
                            x.task = None;
                            x.set_state(SessionState::Idle);
                        }
                    });
                    let _ = ctx
                        .to_dispatcher
                        .send(DispatchMsg::SessionFree(s.name.clone()));
                }
                Err(e) => {
                    let already = ctx
                        .state()
                        .sessions
                        .get(&s.name)
                        .is_some_and(|x| x.reported);
                    if !already {
                        report(
                            ctx,
                            &s.name,
                            "session_dead",
                            format!("cannot recreate tmux session {}: {e}", s.name),
                        );
                    }
                }
            }
        }
    }
}

/// Raises a notice about a session once per state.
pub(crate) fn report(ctx: &Ctx, name: &str, event: &'static str, msg: String) {
    ctx.update(|st| {
        if let Some(s) = st.sessions.get_mut(name) {
            s.reported = true;
        }
    });
    ctx.notify(Notice::new(event, format!("{name}: {msg}")).field("session", name));
}

/// The task is done: to `done/` with a record, then the agent is stopped
/// and the session freed (on a short-lived thread: `/exit` takes a moment).
pub fn finish(ctx: &Ctx, s: &Session) {
    let Some(t) = &s.task else { return };
    let now = now_secs();
    let record = serde_json::json!({
        "task": t.name,
        "project": t.project,
        "session": s.name,
        "account": s.account,
        "claude_session_id": s.claude_session_id,
        "model": t.model,
        "priority": t.priority.as_str(),
        "started": rfc3339(t.started),
        "ended": rfc3339(now),
    });
    match t.queue().done(&t.name, &record) {
        Ok(p) => log::info!("{}: {} done -> {}", s.name, t.name, p.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("{}: {} was no longer claimed", s.name, t.name)
        }
        Err(e) => log::error!("{}: cannot move {} to done/: {e}", s.name, t.name),
    }
    ctx.update(|st| {
        st.attempts.remove(&t.key());
        st.metrics.tasks_done += 1;
        if let Some(x) = st.sessions.get_mut(&s.name) {
            x.task = None;
        }
    });
    stop_in_background(ctx, &s.name);
}

/// Stops the agent in `name` and frees the session, off the caller's thread.
pub(crate) fn stop_in_background(ctx: &Ctx, name: &str) {
    let tmux = ctx.tmux.clone();
    let timeout = ctx.config().failover.stop_timeout.get();
    let to_watcher = ctx.to_watcher.clone();
    let n = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("stop-{name}"))
        .spawn(move || {
            // Say which agent left rather than have the watcher poll tmux
            // for every session. One that would not leave stays `stopping`.
            match launch::stop_agent(&tmux, &n, timeout) {
                Ok(()) => {
                    let _ = to_watcher.send(WatchMsg::Stopped(n));
                }
                Err(e) => log::error!("{e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start a thread to stop {name}: {e}");
    }
}

/// `POST /sessions/NAME/recycle`: stop the agent; its task goes back.
pub fn recycle(ctx: &Ctx, name: &str, why: &str) {
    let Some(s) = ctx.state().sessions.get(name).cloned() else {
        return;
    };
    log::info!("recycling {name} ({why})");
    if let Some(t) = &s.task {
        let _ = t.queue().unclaim(&t.name);
    }
    ctx.update(|st| {
        if let Some(x) = st.sessions.get_mut(name) {
            x.task = None;
            x.set_state(SessionState::Stopping);
        }
    });
    stop_in_background(ctx, name);
}

/// Puts a claimed task back in the inbox, logging what cannot be done.
pub(crate) fn requeue(t: &TaskRef) {
    match t.queue().unclaim(&t.name) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::error!(
            "cannot put {} back in the inbox of {}: {e}",
            t.name,
            t.project.display()
        ),
    }
}

/// After a failed launch: back to the inbox, or to `failed/` once
/// `max_attempts` launches have failed.
pub fn give_back(ctx: &Ctx, task: &TaskRef, attempts: u32, reason: &str) {
    let cfg = ctx.config();
    let q = task.queue();
    if attempts >= cfg.dispatcher.max_attempts {
        let why = format!("{} launches failed; last: {reason}", attempts);
        match q.fail(&task.name, true, &why) {
            Ok(_) => {
                ctx.update(|st| {
                    st.attempts.remove(&task.key());
                    st.metrics.tasks_failed += 1;
                });
                ctx.notify(
                    Notice::new("task_failed", format!("{} failed: {why}", task.name))
                        .field("task", task.name.clone())
                        .field("project", task.project.display().to_string()),
                );
            }
            Err(e) => log::error!("cannot move {} to failed/: {e}", task.name),
        }
    } else {
        requeue(task);
        log::info!(
            "{} is back in the inbox (attempt {attempts} of {})",
            task.name,
            cfg.dispatcher.max_attempts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SessionKind;

    fn with_task(state: SessionState) -> Session {
        let mut s = Session::new("s", SessionKind::Autonomous, None);
        s.state = state;
        s.task = Some(TaskRef {
            project: "/p".into(),
            name: "t.md".into(),
            priority: Default::default(),
            model: "sonnet".into(),
            started: 0,
        });
        s
    }

    #[test]
    fn turn_done_finishes_a_working_task() {
        let (next, a) = transition(&with_task(SessionState::Working), &Signal::TurnDone);
        assert_eq!((next, a), (Some(SessionState::Stopping), Action::Finish));
        let idle = Session::new("s", SessionKind::Autonomous, None);
        assert_eq!(transition(&idle, &Signal::TurnDone), (None, Action::None));
    }

    #[test]
    fn agent_death_requeues_but_a_stop_frees() {
        let (next, a) = transition(
            &with_task(SessionState::Working),
            &Signal::AgentGone("x".into()),
        );
        assert_eq!(
            (next, a),
            (Some(SessionState::Idle), Action::Requeue("x".into()))
        );
        let mut s = with_task(SessionState::Stopping);
        s.task = None;
        assert_eq!(
            transition(&s, &Signal::AgentGone("x".into())),
            (Some(SessionState::Idle), Action::Freed)
        );
    }

    #[test]
    fn limit_fails_over_once() {
        let (next, a) = transition(&with_task(SessionState::Working), &Signal::LimitShown);
        assert_eq!((next, a), (Some(SessionState::Limited), Action::Failover));
        assert_eq!(
            transition(&with_task(SessionState::Limited), &Signal::LimitShown),
            (None, Action::None)
        );
    }

    #[test]
    fn a_launch_in_flight_owns_its_gone_session() {
        let s = with_task(SessionState::Starting);
        assert_eq!(transition(&s, &Signal::SessionGone), (None, Action::None));
    }

    #[test]
    fn gone_sessions() {
        let s = with_task(SessionState::Working);
        assert_eq!(
            transition(&s, &Signal::SessionGone),
            (Some(SessionState::Dead), Action::Recreate)
        );
        let mut d = Session::new("d", SessionKind::Dedicated, None);
        d.state = SessionState::Idle;
        assert!(matches!(
            transition(&d, &Signal::SessionGone).1,
            Action::Report("session_dead", _)
        ));
    }
}
