//! The transition table on its own, with every race found so far.

use super::*;
use SessionState::*;

fn task(name: &str) -> TaskRef {
    TaskRef {
        project: "/p".into(),
        name: name.into(),
        priority: Default::default(),
        model: "sonnet".into(),
        started: 0,
        worktree: None,
    }
}

fn auto(state: SessionState, with_task: bool) -> Session {
    let mut s = Session::new("s", SessionKind::Autonomous, None);
    s.state = state;
    if with_task {
        s.task = Some(task("t.md"));
        s.claude_session_id = Some("c1".into());
        s.account = Some("main".into());
    }
    s
}

fn dedicated(state: SessionState) -> Session {
    let mut s = Session::new("d", SessionKind::Dedicated, Some("/p".into()));
    s.state = state;
    s.claude_session_id = Some("c9".into());
    s
}

fn gone(why: &str) -> Event {
    Event::AgentGone(why.into())
}

fn launched() -> Event {
    Event::Launched {
        task: "t.md".into(),
    }
}

fn failed(vanished: bool) -> Event {
    Event::LaunchFailed {
        task: "t.md".into(),
        reason: "no prompt".into(),
        vanished,
        never_started: false,
        terminate: !vanished,
        rest_until: Some(99),
    }
}

fn moving_to(to: &str) -> Move {
    Move {
        to: to.into(),
        from: Some("main".into()),
        conversation: "c1".into(),
        project: "/p".into(),
        task: Some(task("t.md")),
        manual: false,
        before: Working,
    }
}

fn restarted(alive: bool, exists: bool, transcript_exists: bool) -> Event {
    Event::Restarted {
        alive,
        exists,
        transcript_exists,
    }
}

fn give_back(cause: Cause) -> Effect {
    Effect::GiveBack(task("t.md"), cause)
}

/// Runs events in order from a session; the final state, whether it still
/// has its task, and every effect asked for.
fn run(mut s: Session, events: &[Event]) -> (SessionState, bool, Vec<Effect>) {
    let mut all = Vec::new();
    for ev in events {
        let (next, fx) = step(&s, ev, 1000);
        s = next;
        all.extend(fx);
    }
    (s.state, s.task.is_some(), all)
}

/// What, from, events, then: state, still has its task, effects.
type Case = (
    &'static str,
    Session,
    Vec<Event>,
    SessionState,
    bool,
    Vec<Effect>,
);

#[test]
fn the_table() {
    let finish = vec![Effect::Finish(task("t.md")), Effect::StopAgent];
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("turn done finishes a working task",
            auto(Working, true), vec![Event::TurnDone], Stopping, false, finish.clone()),
        ("turn done on an idle session does nothing",
            auto(Idle, false), vec![Event::TurnDone], Idle, false, vec![]),
        ("a stop frees the session",
            auto(Stopping, false), vec![gone("stopped")], Idle, false, vec![Effect::Free]),
        ("an agent dying mid-task charges the task",
            auto(Working, true), vec![gone("exit 1")], Idle, false,
            vec![give_back(Cause::AgentDied("exit 1".into())), Effect::Free]),
        ("a limit fails over once",
            auto(Working, true), vec![Event::LimitShown, Event::LimitShown], Limited, true,
            vec![Effect::AskFailover]),
        ("a limit line that is history goes back to work",
            auto(Limited, true), vec![Event::LimitIsHistory], Working, true, vec![]),
        ("a throttle is the switcher's",
            auto(Working, true), vec![Event::ApiError("rate_limit".into())], Working, true,
            vec![Effect::Throttled]),
        ("race: a throttle answering the first message before the launch reports",
            auto(Starting, true), vec![Event::ApiError("rate_limit".into()), launched()], Working, true,
            vec![Effect::Throttled]),
        ("waiting for input is reported, then a sign of life clears it",
            auto(Working, true), vec![Event::WaitingInput("perm".into()), Event::Active], Working, true,
            vec![Effect::Report(NoticeKind::SessionWaiting, "perm".into())]),
        ("a gone session with a task: back without an attempt, recreated",
            auto(Working, true), vec![Event::SessionGone], Dead, false,
            vec![give_back(Cause::SessionVanished), Effect::Recreate]),
        ("a recreated session is free",
            auto(Dead, false), vec![Event::Recreated], Idle, false, vec![Effect::Free]),
        ("a dedicated session that is gone is reported",
            dedicated(Idle), vec![Event::SessionGone, Event::SessionGone], Dead, false,
            vec![Effect::Report(NoticeKind::SessionDead, "tmux session d is gone".into())]),
        ("a launch succeeds",
            auto(Starting, true), vec![launched()], Working, true, vec![]),
        ("a failed launch charges the task and rests the session",
            auto(Starting, true), vec![failed(false)], Idle, false,
            vec![Effect::Terminate, give_back(Cause::LaunchFailed("no prompt".into()))]),
        ("recycle: back without an attempt, agent stopped",
            auto(Working, true), vec![Event::Recycle], Stopping, false,
            vec![give_back(Cause::Recycled), Effect::StopAgent]),
        ("unguarded: charged, reported, stopped",
            auto(Working, true), vec![Event::Unguarded("no hooks".into())], Stopping, false,
            vec![Effect::ReportTask(NoticeKind::LaunchUnguarded, "t.md".into(), "no hooks; stopping it".into()),
                 give_back(Cause::Unguarded("no hooks".into())), Effect::StopAgent]),
        ("the breaker fails the task",
            auto(Working, true), vec![Event::Breaker("5 blocks".into())], Stopping, false,
            vec![Effect::Report(NoticeKind::CircuitBreaker, "5 blocks".into()),
                 Effect::Fail(task("t.md"), "5 blocks".into()), Effect::StopAgent]),
        ("a project removed under its task: reported, agent stopped",
            auto(Working, true), vec![Event::ProjectGone("gone".into())], Stopping, false,
            vec![Effect::ReportTask(NoticeKind::TaskFailed, "t.md".into(), "gone".into()), Effect::StopAgent]),
        ("a question no one answers: told once to decide, then failed",
            auto(WaitingInput, true),
            vec![Event::WaitedTooLong("Which?".into()), Event::WaitingInput("asks".into()),
                 Event::WaitedTooLong("Which?".into())],
            Stopping, false,
            vec![Effect::Nudge, Effect::Report(NoticeKind::SessionWaiting, "asks".into()),
                 Effect::Fail(task("t.md"), "it waited for an answer after being told no one will give one; it asked: Which?".into()),
                 Effect::StopAgent]),
        ("stuck is reported once per state",
            auto(Working, true), vec![Event::Stuck("long".into()), Event::Stuck("long".into())], Working, true,
            vec![Effect::Report(NoticeKind::SessionStuck, "long".into())]),
        // Races fixed before (git log), one line each.
        ("race: the Stop beats the launch report; the report finishes the task",
            auto(Starting, true), vec![Event::TurnDone, launched()], Stopping, false, finish.clone()),
        ("race: the Stop beats the move; the move's end finishes the task",
            auto(Working, true),
            vec![Event::MoveBegin(moving_to("backup")), Event::TurnDone,
                 Event::MoveDone { transcript: "/t".into() }],
            Stopping, false, finish.clone()),
        ("race: a session vanishing mid-launch is the launch's, at no attempt",
            auto(Starting, true), vec![Event::SessionGone, failed(true)], Dead, false,
            vec![Effect::Check, give_back(Cause::SessionVanished)]),
        ("race: a recycled launch reports late and changes nothing",
            auto(Starting, true), vec![Event::Recycle, launched(), gone("stopped")], Idle, false,
            vec![give_back(Cause::Recycled), Effect::StopAgent, Effect::Free]),
        ("race: a late launch failure of an earlier task leaves the next one alone",
            { let mut s = auto(Working, true); s.task = Some(task("next.md")); s },
            vec![failed(false)], Working, true, vec![]),
        ("race: the old agent leaving during a move is not a death",
            auto(Working, true),
            vec![Event::MoveBegin(moving_to("backup")), gone("SessionEnd (exit)"),
                 Event::SessionGone, Event::LimitShown],
            Moving, true, vec![]),
        ("a move that cannot stop the agent leaves it where it was",
            auto(Working, true), vec![Event::MoveBegin(moving_to("backup")), Event::MoveAborted],
            Working, true, vec![]),
        ("a dedicated session at its limit is idle once moved",
            dedicated(Limited),
            vec![Event::MoveBegin(moving_to("backup")), gone("SessionEnd"),
                 Event::MoveDone { transcript: "/t".into() }],
            Idle, false, vec![]),
        // Restarts.
        ("restart: a working agent is kept",
            auto(Working, true), vec![restarted(true, true, false)], Working, true, vec![]),
        ("restart: a launch cut short after the message was taken is adopted",
            auto(Starting, true), vec![restarted(true, true, true)], Working, true, vec![]),
        ("restart: a launch whose turn already ended is finished",
            auto(Finishing, true), vec![restarted(true, true, true)], Stopping, false, finish.clone()),
        ("restart: a launch cut short before delivery goes back at no attempt, agent stopped",
            auto(Starting, true), vec![restarted(true, true, false)], Stopping, false,
            vec![give_back(Cause::Orphaned("its agent is gone or was mid-launch".into())), Effect::StopAgent]),
        ("restart: a dead agent's task goes back",
            auto(Working, true), vec![restarted(false, true, false)], Idle, false,
            vec![give_back(Cause::Orphaned("its agent is gone or was mid-launch".into()))]),
        ("restart: a move in the middle is kept for the switcher",
            { let mut s = auto(Moving, true); s.moving = Some(moving_to("backup")); s },
            vec![restarted(false, true, false)], Moving, true, vec![]),
        ("restart: a dedicated session without tmux is dead",
            dedicated(Idle), vec![restarted(false, false, false)], Dead, false, vec![]),
    ];
    for (what, s, events, state, has_task, effects) in cases {
        let got = run(s, &events);
        assert_eq!(got, (state, has_task, effects), "{what}");
    }
}

#[test]
fn the_attempts_rule() {
    for (cause, charged) in [
        (Cause::LaunchFailed("x".into()), true),
        (Cause::AgentNeverStarted("x".into()), false),
        (Cause::AgentDied("x".into()), true),
        (Cause::Unguarded("x".into()), true),
        (Cause::SessionVanished, false),
        (Cause::Recycled, false),
        (Cause::Orphaned("x".into()), false),
    ] {
        assert_eq!(cause.charges_attempt(), charged, "{cause:?}");
    }
}

#[test]
fn a_move_records_what_a_restart_needs_and_ends_on_the_new_account() {
    let s = auto(Working, true);
    let (s, _) = step(&s, &Event::MoveBegin(moving_to("backup")), 5);
    assert_eq!(s.state, Moving);
    let m = s.moving.clone().expect("the move is recorded");
    assert_eq!((m.to.as_str(), m.conversation.as_str()), ("backup", "c1"));
    assert_eq!(m.before, Working);
    // A restart resumes it: the first record's `before` stands.
    let (s, _) = step(&s, &Event::MoveBegin(moving_to("backup")), 6);
    assert_eq!(s.moving.as_ref().unwrap().before, Working);
    let (s, fx) = step(
        &s,
        &Event::MoveDone {
            transcript: "/t".into(),
        },
        7,
    );
    assert!(fx.is_empty());
    assert_eq!(s.state, Working);
    assert_eq!(s.account.as_deref(), Some("backup"));
    assert_eq!(s.claude_session_id.as_deref(), Some("c1"));
    assert!(s.moving.is_none());
    // Persisted: the record survives a round trip through state.json.
    let (moving, _) = step(&auto(Working, true), &Event::MoveBegin(moving_to("b")), 5);
    let json = serde_json::to_string(&moving).unwrap();
    let back: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(back.state, Moving);
    assert_eq!(back.moving, moving.moving);
}

#[test]
fn a_booked_follow_up_is_for_one_agent() {
    let s = auto(Working, true);
    let booked = AgentId::of(&s, Some(42));
    assert!(booked.matches(&s, Some(42)));
    // The agent was replaced (SIGTERM must not reach the next one).
    assert!(!booked.matches(&s, Some(43)));
    let mut next = s.clone();
    next.claude_session_id = Some("c2".into());
    assert!(!booked.matches(&next, Some(42)));
    // A retry booked for a conversation alone.
    let retry = AgentId {
        pid: None,
        conversation: Some("c1".into()),
    };
    assert!(retry.matches(&s, None) && !retry.matches(&next, None));
}
