//! A claimed task's launch on its own thread, and what its outcome does:
//! the lifecycle event, the metrics, and the pause after agents that never
//! came up several times in a row.

use crate::bus::{Ctx, LaunchOutcome};
use crate::isolation::Place;
use crate::launch::{self, Conversation, Launch, LaunchError};
use crate::lifecycle::{self, Event};
use crate::notice::{Notice, NoticeKind};
use crate::state::TaskRef;
use crate::task::Task;
use crate::timefmt::now_secs;

/// Starts the agent and hands it the task message.
pub fn launch_task(
    ctx: &Ctx,
    session: &str,
    task: &Task,
    tref: &TaskRef,
    place: Place,
) -> Result<(), LaunchError> {
    let cfg = ctx.config();
    let account_name = ctx.state().active_account.clone();
    let account = cfg.account(&account_name).cloned().ok_or_else(|| {
        LaunchError::Account(format!("account `{account_name}` is not configured"))
    })?;
    let id = crate::fsutil::new_uuid().map_err(|e| LaunchError::Account(e.to_string()))?;
    // claude's cwd is the physical path; trust is keyed by it.
    let project = std::fs::canonicalize(&task.project).unwrap_or_else(|_| task.project.clone());
    let (cwd, in_worktree) = match place {
        Place::InProject => (project, false),
        Place::Worktree(repo) => {
            let wt =
                crate::isolation::create(&cfg, &repo, &task.name).map_err(LaunchError::Worktree)?;
            let cwd = wt.cwd.clone();
            lifecycle::handle(ctx, session, Event::Isolated(wt));
            (cwd, true)
        }
    };
    let l = Launch {
        session,
        project: &cwd,
        in_worktree,
        account: &account,
        model: &tref.model,
        conversation: Conversation::New(id.clone()),
    };
    lifecycle::handle(
        ctx,
        session,
        Event::Launching {
            conversation: id.clone(),
            account: account.name.clone(),
        },
    );
    let transcript = launch::start_agent(&cfg, &ctx.tmux, &l)?;
    lifecycle::handle(
        ctx,
        session,
        Event::AgentUp {
            transcript: transcript.clone(),
        },
    );
    launch::deliver(
        &ctx.tmux,
        session,
        &launch::render_message(&cfg.agent.message, task),
        Some(&transcript),
    )
}

/// Applies a launch's result (see `lifecycle::Event::LaunchFailed`).
pub fn finish_launch(ctx: &Ctx, o: LaunchOutcome) {
    let LaunchOutcome {
        session,
        task,
        result,
    } = o;
    let never_started = result
        .as_ref()
        .err()
        .is_some_and(LaunchError::never_started);
    count_start_failures(ctx, never_started, &result);
    let ev = match result {
        Ok(()) => {
            log::info!("{session} took {}", task.name);
            ctx.state().metrics.tasks_dispatched += 1;
            Event::Launched { task: task.name }
        }
        Err(e) => {
            log::warn!("launch of {} in {session} failed: {e}", task.name);
            ctx.state().metrics.launches_failed += 1;
            let cooldown = ctx.config().dispatcher.cooldown.get().as_secs();
            Event::LaunchFailed {
                task: task.name,
                reason: e.to_string(),
                vanished: matches!(e, LaunchError::Tmux(crate::tmux::TmuxError::Gone(_))),
                never_started,
                terminate: matches!(e, LaunchError::NotReady { .. } | LaunchError::NotTaken),
                rest_until: e.session_fault().then(|| now_secs() + cooldown),
            }
        }
    };
    lifecycle::handle(ctx, &session, ev);
}

/// Agents that never came up this many launches in a row hold launching:
/// a broken agent command would otherwise keep failing launch after launch.
pub const START_FAILURES_TO_PAUSE: u32 = 3;

/// Counts launches in a row whose agent never came up. At
/// `START_FAILURES_TO_PAUSE` launching pauses, with one notice; after each
/// `dispatcher.cooldown` one launch tries again, and while it fails the
/// pause goes on without another notice. A launch that works, or a reload,
/// ends it.
fn count_start_failures(ctx: &Ctx, never_started: bool, result: &Result<(), LaunchError>) {
    let cooldown = ctx.config().dispatcher.cooldown.get().as_secs();
    let (paused_now, resumed) = ctx.update(|st| {
        if !never_started {
            if result.is_ok() {
                st.start_failures = 0;
                st.launches_paused_until = None;
                return (None, st.launches_paused.take());
            }
            return (None, None);
        }
        st.start_failures += 1;
        if st.start_failures < START_FAILURES_TO_PAUSE {
            return (None, None);
        }
        st.launches_paused_until = Some(now_secs() + cooldown.max(1));
        if st.launches_paused.is_some() {
            return (None, None);
        }
        let why = format!(
            "the agent failed to start {} times in a row (last: {})",
            st.start_failures,
            result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        st.launches_paused = Some(why.clone());
        (Some(why), None)
    });
    if let Some(why) = paused_now {
        let msg = format!(
            "{why}; dispatching paused (one launch tries again every {}); check agent.command",
            ctx.config().dispatcher.cooldown
        );
        log::error!("{msg}");
        ctx.notify(Notice::new(NoticeKind::DispatchPaused, msg));
    }
    if resumed.is_some() {
        log::info!("the agent starts again; dispatching resumed");
        ctx.notify(Notice::new(
            NoticeKind::DispatchPaused,
            "the agent starts again; dispatching resumed".to_string(),
        ));
    }
}
