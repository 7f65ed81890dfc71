//! The one owner of a session's life. `step` is a pure function from a
//! session and an event (something a thread observed or did) to the new
//! session and the effects it asks for; [`effects`] holds the other half:
//! `apply` locks the state, steps, persists, and `perform` then does the
//! effects (stop an agent, give a task back, move it to `done/` or
//! `failed/`, notify, wake a thread). No other module assigns a session's
//! state.

use std::path::PathBuf;

use crate::notice::NoticeKind;
pub use crate::state::Move;
use crate::state::{Session, SessionKind, SessionState, TaskRef};
use crate::worktree::Worktree;

mod effects;
pub use self::effects::{apply, give_back, handle, handle_all, perform};

/// One agent: its pane's pid and its conversation. A follow-up booked for
/// an agent (a throttle's `continue`, a move retry) is dropped once the
/// session runs another; a `None` field matches any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentId {
    pub pid: Option<u32>,
    pub conversation: Option<String>,
}

impl AgentId {
    pub fn of(s: &Session, pid: Option<u32>) -> AgentId {
        AgentId {
            pid,
            conversation: s.claude_session_id.clone(),
        }
    }

    /// Whether the session (whose pane runs `pid`) still runs this agent.
    pub fn matches(&self, s: &Session, pid: Option<u32>) -> bool {
        fn same<T: PartialEq>(booked: &Option<T>, now: &Option<T>) -> bool {
            booked.is_none() || booked == now
        }
        same(&self.pid, &pid) && same(&self.conversation, &s.claude_session_id)
    }
}

/// Why a task goes back to the inbox. The one attempts rule: an attempt is
/// charged only when the task itself could be at fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// Its launch failed (the project, the account or the agent).
    LaunchFailed(String),
    /// The agent never came up to be handed it: the agent command's fault.
    AgentNeverStarted(String),
    /// Its agent died mid-task.
    AgentDied(String),
    /// Its agent's hooks (the guard) never fired.
    Unguarded(String),
    /// Its tmux session vanished.
    SessionVanished,
    /// The operator recycled its session.
    Recycled,
    /// The daemon stopped mid-launch, or a claim no session owns.
    Orphaned(String),
}

impl Cause {
    pub fn charges_attempt(&self) -> bool {
        matches!(
            self,
            Cause::LaunchFailed(_) | Cause::AgentDied(_) | Cause::Unguarded(_)
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            Cause::LaunchFailed(w)
            | Cause::AgentNeverStarted(w)
            | Cause::AgentDied(w)
            | Cause::Unguarded(w) => w,
            Cause::Orphaned(w) => w,
            Cause::SessionVanished => "its tmux session disappeared",
            Cause::Recycled => "operator request",
        }
    }
}

/// Something a thread observed about a session, or did to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The agent started (or `/clear`ed): its conversation id, and the
    /// account its transcript path names.
    Started {
        claude_session_id: String,
        transcript: Option<PathBuf>,
        account: Option<String>,
    },
    /// The agent ended its turn with nothing left in the background.
    TurnDone,
    /// The agent asked for input mid-task.
    WaitingInput(String),
    /// Working on the same task for too long (reported once per state).
    Stuck(String),
    /// Waiting for input longer than `watcher.waiting_timeout`; what it
    /// asked.
    WaitedTooLong(String),
    /// A sign of life (tool call, pane change): not waiting any more.
    Active,
    /// The pane shows a usage-limit line.
    LimitShown,
    /// StopFailure: `rate_limit` without a limit line, or another API error.
    ApiError(String),
    /// The agent process is gone (pane dead, SessionEnd, a stop finished).
    AgentGone(String),
    /// The tmux session is gone.
    SessionGone,
    /// The tmux session exists (again).
    SessionPresent,
    /// The tmux session was created again.
    Recreated,
    /// The tmux session could not be created again.
    RecreateFailed(String),
    /// The dispatcher claimed this task for the session.
    Claimed { task: TaskRef, account: String },
    /// The launch chose the conversation id and account.
    Launching {
        conversation: String,
        account: String,
    },
    /// The agent is up; its transcript will be here.
    AgentUp { transcript: PathBuf },
    /// The launch made the task's worktree.
    Isolated(Worktree),
    /// The launch of `task` handed the message over.
    Launched { task: String },
    /// The launch of `task` failed. `vanished`: the tmux session went
    /// away under it; `rest_until`: the session rests (its own fault).
    LaunchFailed {
        task: String,
        reason: String,
        vanished: bool,
        /// The agent never came up (before the message was pasted).
        never_started: bool,
        terminate: bool,
        rest_until: Option<u64>,
    },
    /// The operator asked to stop the agent; its task goes back.
    Recycle,
    /// No SessionStart within the prompt timeout.
    Unguarded(String),
    /// Too many guard blocks: the task fails, the agent stops.
    Breaker(String),
    /// The task's project was removed under it: the agent stops.
    ProjectGone(String),
    /// The mover begins moving the session.
    MoveBegin(Move),
    /// The old agent could not be stopped: the session stays where it was.
    MoveAborted,
    /// The conversation runs on `Move::to` now.
    MoveDone { transcript: PathBuf },
    /// The limit line on screen was history from before a move.
    LimitIsHistory,
    /// At start-up: what tmux shows of the session.
    Restarted {
        alive: bool,
        exists: bool,
        transcript_exists: bool,
    },
}

/// What the threads do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Stop the session's agent (off the caller's thread), then report
    /// `AgentGone`.
    StopAgent,
    /// Kill a half-started agent at once.
    Terminate,
    /// Move the task to `done/` with its record.
    Finish(TaskRef),
    /// Back to the inbox, charging an attempt when the cause says so
    /// (`failed/` after `max_attempts`).
    GiveBack(TaskRef, Cause),
    /// Straight to `failed/`.
    Fail(TaskRef, String),
    /// A notice about the session.
    Report(NoticeKind, String),
    /// A notice about the session's task: its kind, the task, the text.
    ReportTask(NoticeKind, String, String),
    /// The session is free: tell the dispatcher.
    Free,
    /// The session is at a usage limit: tell the switcher.
    AskFailover,
    /// A server throttle: tell the switcher.
    Throttled,
    /// Create the tmux session again.
    Recreate,
    /// Have the watcher look at every session now.
    Check,
    /// Tell the waiting agent that no one will answer (off the caller's
    /// thread).
    Nudge,
}

/// Changes state and stamps `since`; a no-op when unchanged.
fn enter(s: &mut Session, state: SessionState, now: u64) {
    if s.state != state {
        log::debug!(
            "session {}: {} -> {}",
            s.name,
            s.state.as_str(),
            state.as_str()
        );
        s.state = state;
        s.since = now;
        s.reported = false;
    }
}

/// The task ended: to `done/`, agent stopped, session stopping.
fn finished(s: &mut Session, fx: &mut Vec<Effect>, now: u64) {
    if let Some(t) = s.task.take() {
        fx.push(Effect::Finish(t));
    }
    s.moving = None;
    enter(s, SessionState::Stopping, now);
    fx.push(Effect::StopAgent);
}

fn is_task(s: &Session, name: &str) -> bool {
    s.task.as_ref().is_some_and(|t| t.name == name)
}

/// The transition table: the new session and what to do about it.
pub fn step(old: &Session, ev: &Event, now: u64) -> (Session, Vec<Effect>) {
    use SessionState::*;
    let mut s = old.clone();
    let mut fx = Vec::new();
    let has_task = s.task.is_some();
    let autonomous = s.kind == SessionKind::Autonomous;
    match (s.state, ev) {
        (
            _,
            Event::Started {
                claude_session_id,
                transcript,
                account,
            },
        ) => {
            s.claude_session_id = Some(claude_session_id.clone());
            if transcript.is_some() {
                s.transcript_path = transcript.clone();
            }
            if account.is_some() {
                s.account = account.clone();
            }
            s.hooks_confirmed = true;
        }
        (Working | WaitingInput | Limited, Event::TurnDone) if has_task => {
            finished(&mut s, &mut fx, now)
        }
        // The turn ended before the launch or move reported: it finishes
        // the task when it does.
        (Starting | Moving, Event::TurnDone) if has_task => enter(&mut s, Finishing, now),
        (Working, Event::WaitingInput(m)) => {
            enter(&mut s, WaitingInput, now);
            s.reported = true;
            fx.push(Effect::Report(NoticeKind::SessionWaiting, m.clone()));
        }
        (Working, Event::Stuck(m)) if !s.reported => {
            s.reported = true;
            fx.push(Effect::Report(NoticeKind::SessionStuck, m.clone()));
        }
        (WaitingInput, Event::Active) => enter(&mut s, Working, now),
        // Told once to decide by itself; waiting again ends the task.
        (WaitingInput, Event::WaitedTooLong(_)) if has_task && autonomous && !s.nudged => {
            s.nudged = true;
            enter(&mut s, Working, now);
            fx.push(Effect::Nudge);
        }
        (WaitingInput, Event::WaitedTooLong(asked)) if has_task && autonomous => {
            let t = s.task.take().expect("has a task");
            fx.push(Effect::Fail(
                t,
                format!("it waited for an answer after being told no one will give one; it asked: {asked}"),
            ));
            enter(&mut s, Stopping, now);
            fx.push(Effect::StopAgent);
        }
        (Starting | Working | WaitingInput | Idle, Event::LimitShown)
            if has_task || !autonomous =>
        {
            enter(&mut s, Limited, now);
            fx.push(Effect::AskFailover);
        }
        // Also while the launch still reports: the throttle can answer the
        // first message before the launch thread does.
        (Starting | Working | WaitingInput | Limited, Event::ApiError(e)) if e == "rate_limit" => {
            fx.push(Effect::Throttled)
        }
        (Stopping, Event::AgentGone(_)) => {
            enter(&mut s, Idle, now);
            fx.push(Effect::Free);
        }
        // A move stops the agent itself.
        (Moving | Finishing | Starting, Event::AgentGone(_)) => {}
        (Working | WaitingInput | Limited, Event::AgentGone(why)) if has_task && autonomous => {
            let t = s.task.take().expect("has a task");
            s.claude_session_id = None;
            enter(&mut s, Idle, now);
            fx.push(Effect::GiveBack(t, Cause::AgentDied(why.clone())));
            fx.push(Effect::Free);
        }
        (_, Event::AgentGone(_)) if !autonomous => enter(&mut s, Idle, now),
        (Dead, Event::SessionPresent) => {
            enter(&mut s, Idle, now);
            fx.push(Effect::Free);
        }
        // A launch or a move in flight finds out itself.
        (Starting | Finishing | Moving, Event::SessionGone) => {}
        (_, Event::SessionGone) if autonomous => {
            if let Some(t) = s.task.take() {
                fx.push(Effect::GiveBack(t, Cause::SessionVanished));
            }
            enter(&mut s, Dead, now);
            fx.push(Effect::Recreate);
        }
        (Dead, Event::SessionGone) => {}
        (_, Event::SessionGone) => {
            enter(&mut s, Dead, now);
            s.reported = true;
            fx.push(Effect::Report(
                NoticeKind::SessionDead,
                format!("tmux session {} is gone", s.name),
            ));
        }
        (_, Event::Recreated) => {
            s.task = None;
            enter(&mut s, Idle, now);
            fx.push(Effect::Free);
        }
        (_, Event::RecreateFailed(why)) if !s.reported => {
            s.reported = true;
            fx.push(Effect::Report(NoticeKind::SessionDead, why.clone()));
        }
        (_, Event::Claimed { task, account }) => {
            s.project = Some(task.project.clone());
            s.task = Some(task.clone());
            s.account = Some(account.clone());
            s.claude_session_id = None;
            s.transcript_path = None;
            s.hooks_confirmed = false;
            s.nudged = false;
            enter(&mut s, Starting, now);
        }
        (
            _,
            Event::Launching {
                conversation,
                account,
            },
        ) => {
            s.claude_session_id = Some(conversation.clone());
            s.account = Some(account.clone());
        }
        (_, Event::AgentUp { transcript }) => s.transcript_path = Some(transcript.clone()),
        (_, Event::Isolated(wt)) => {
            if let Some(t) = s.task.as_mut() {
                t.worktree = Some(wt.clone());
            }
        }
        (Starting, Event::Launched { task }) if is_task(&s, task) => {
            s.last_activity = now;
            enter(&mut s, Working, now);
        }
        (Finishing, Event::Launched { task }) if is_task(&s, task) => {
            s.last_activity = now;
            finished(&mut s, &mut fx, now);
        }
        (
            _,
            Event::LaunchFailed {
                task,
                reason,
                vanished,
                never_started,
                terminate,
                rest_until,
            },
        ) if is_task(&s, task) => {
            if *terminate {
                fx.push(Effect::Terminate);
            }
            let t = s.task.take().expect("is the task");
            s.claude_session_id = None;
            if !vanished {
                s.cooldown_until = rest_until.or(s.cooldown_until);
            }
            enter(&mut s, if *vanished { Dead } else { Idle }, now);
            let cause = if *vanished {
                fx.push(Effect::Check);
                Cause::SessionVanished
            } else if *never_started {
                Cause::AgentNeverStarted(reason.clone())
            } else {
                Cause::LaunchFailed(reason.clone())
            };
            fx.push(Effect::GiveBack(t, cause));
        }
        (_, Event::Recycle) => {
            if let Some(t) = s.task.take() {
                fx.push(Effect::GiveBack(t, Cause::Recycled));
            }
            s.moving = None;
            enter(&mut s, Stopping, now);
            fx.push(Effect::StopAgent);
        }
        (_, Event::Unguarded(why)) if has_task => {
            let t = s.task.take().expect("has a task");
            fx.push(Effect::ReportTask(
                NoticeKind::LaunchUnguarded,
                t.name.clone(),
                format!("{why}; stopping it"),
            ));
            fx.push(Effect::GiveBack(t, Cause::Unguarded(why.clone())));
            enter(&mut s, Stopping, now);
            fx.push(Effect::StopAgent);
        }
        (_, Event::Breaker(why)) => {
            fx.push(Effect::Report(NoticeKind::CircuitBreaker, why.clone()));
            if let Some(t) = s.task.take() {
                fx.push(Effect::Fail(t, why.clone()));
            }
            s.recent_blocks.clear();
            s.moving = None;
            enter(&mut s, Stopping, now);
            fx.push(Effect::StopAgent);
        }
        (Working | WaitingInput | Limited, Event::ProjectGone(why)) if has_task => {
            let t = s.task.take().expect("has a task");
            fx.push(Effect::ReportTask(
                NoticeKind::TaskFailed,
                t.name,
                why.clone(),
            ));
            s.moving = None;
            enter(&mut s, Stopping, now);
            fx.push(Effect::StopAgent);
        }
        (Moving | Finishing, Event::MoveBegin(m)) => {
            // Resumed after a restart: the first record's `before` stands.
            let before = s.moving.as_ref().map_or(m.before, |x| x.before);
            s.moving = Some(Move {
                before,
                ..m.clone()
            });
        }
        (_, Event::MoveBegin(m)) => {
            s.moving = Some(Move {
                before: s.state,
                ..m.clone()
            });
            enter(&mut s, Moving, now);
        }
        (Moving, Event::MoveAborted) => {
            let before = s.moving.take().map_or(Idle, |m| m.before);
            enter(&mut s, before, now);
        }
        (Finishing, Event::MoveAborted) => finished(&mut s, &mut fx, now),
        (Moving | Finishing, Event::MoveDone { transcript }) => {
            let m = s.moving.take();
            if let Some(m) = &m {
                s.account = Some(m.to.clone());
                s.claude_session_id = Some(m.conversation.clone());
            }
            s.transcript_path = Some(transcript.clone());
            s.last_activity = now;
            if s.state == Finishing {
                finished(&mut s, &mut fx, now);
            } else if autonomous {
                enter(&mut s, if has_task { Working } else { Idle }, now);
            } else {
                let before = m.map_or(Idle, |m| m.before);
                enter(&mut s, if before == Limited { Idle } else { before }, now);
            }
        }
        (Limited, Event::LimitIsHistory) => {
            enter(&mut s, if has_task { Working } else { Idle }, now)
        }
        (
            state,
            Event::Restarted {
                alive,
                exists,
                transcript_exists,
            },
        ) => restarted(
            &mut s,
            &mut fx,
            state,
            *alive,
            *exists,
            *transcript_exists,
            now,
        ),
        _ => {}
    }
    (s, fx)
}

/// A restart re-adopts what runs: a working agent keeps its task, a launch
/// cut short after the message was taken (its transcript exists) is adopted,
/// a move is finished by the switcher; any other claim goes back.
fn restarted(
    s: &mut Session,
    fx: &mut Vec<Effect>,
    state: SessionState,
    alive: bool,
    exists: bool,
    transcript_exists: bool,
    now: u64,
) {
    use SessionState::*;
    if state == Moving {
        return;
    }
    if s.kind == SessionKind::Dedicated {
        if !exists {
            enter(s, Dead, now);
        } else if state == Dead {
            enter(s, Idle, now);
        }
        return;
    }
    let has_task = s.task.is_some();
    let delivered = transcript_exists && matches!(state, Starting | Finishing);
    match state {
        Working | WaitingInput | Limited if has_task && alive => {}
        Starting if has_task && alive && delivered => {
            log::info!(
                "session {}: its launch was cut short after the message was taken; adopting it",
                s.name
            );
            enter(s, Working, now);
        }
        // Its turn ended before the crash; the Stop event is gone.
        Finishing if has_task && alive && delivered => finished(s, fx, now),
        _ => {
            if let Some(t) = s.task.take() {
                fx.push(Effect::GiveBack(
                    t,
                    Cause::Orphaned("its agent is gone or was mid-launch".into()),
                ));
            }
            if alive {
                // A leftover agent (a crash mid-launch or mid-recycle).
                enter(s, Stopping, now);
                fx.push(Effect::StopAgent);
            } else {
                enter(s, if exists { Idle } else { Dead }, now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
