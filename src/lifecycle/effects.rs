//! The effect side of the lifecycle: stepping a session under the state
//! lock, then doing what the step asked for.

use std::path::PathBuf;

use super::{step, Cause, Effect, Event};
use crate::bus::{Ctx, DispatchMsg, FailoverMsg, WatchMsg};
use crate::launch;
use crate::notice::{Notice, NoticeKind};
use crate::state::{Session, TaskRef};
use crate::timefmt::{now_secs, rfc3339};
use crate::worktree::Worktree;

/// Steps the named session under the state lock and persists it. `None`
/// when there is no such session.
pub fn apply(ctx: &Ctx, name: &str, ev: &Event) -> Option<(Session, Vec<Effect>)> {
    ctx.update(|st| {
        let s = st.sessions.get_mut(name)?;
        let (next, fx) = step(s, ev, now_secs());
        *s = next;
        Some((s.clone(), fx))
    })
}

/// `handle` for many sessions at once, with one state write (start-up
/// adopting a hundred sessions would otherwise write state.json a hundred
/// times).
pub fn handle_all(ctx: &Ctx, events: Vec<(String, Event)>) {
    let now = now_secs();
    let stepped: Vec<(Session, Vec<Effect>)> = ctx.update(|st| {
        events
            .iter()
            .filter_map(|(name, ev)| {
                let s = st.sessions.get_mut(name)?;
                let (next, fx) = step(s, ev, now);
                *s = next;
                Some((s.clone(), fx))
            })
            .collect()
    });
    for (s, fx) in stepped {
        perform(ctx, &s, fx);
    }
}

/// `apply`, then `perform`: what most callers want.
pub fn handle(ctx: &Ctx, name: &str, ev: Event) {
    if let Some((s, fx)) = apply(ctx, name, &ev) {
        perform(ctx, &s, fx);
    }
}

/// Does what a step asked for. The worktree of a task that leaves the
/// session is released once its agent is gone (after the stop, if any).
pub fn perform(ctx: &Ctx, s: &Session, effects: Vec<Effect>) {
    let name = s.name.as_str();
    let mut leaving: Vec<Worktree> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Finish(t) | Effect::GiveBack(t, _) | Effect::Fail(t, _) => t.worktree.clone(),
            _ => None,
        })
        .collect();
    for e in effects {
        match e {
            Effect::StopAgent => stop_in_background(ctx, name, std::mem::take(&mut leaving)),
            Effect::Terminate => launch::terminate(&ctx.tmux, name),
            Effect::Finish(t) => finish(ctx, s, &t),
            Effect::GiveBack(t, cause) => give_back(ctx, &t, &cause),
            Effect::Fail(t, why) => match t.queue().fail(&t.name, true, &why) {
                Ok(_) => ctx.update(|st| {
                    st.metrics.tasks_failed += 1;
                    st.attempts.remove(&t.key());
                }),
                Err(e) => log::error!("cannot move {} to failed/: {e}", t.name),
            },
            Effect::Report(event, msg) => {
                ctx.notify(Notice::new(event, format!("{name}: {msg}")).field("session", name))
            }
            Effect::ReportTask(event, task, msg) => ctx.notify(
                Notice::new(event, format!("{name}: {msg}"))
                    .field("session", name)
                    .field("task", task),
            ),
            Effect::Free => {
                let _ = ctx
                    .to_dispatcher
                    .send(DispatchMsg::SessionFree(name.into()));
            }
            Effect::AskFailover => {
                log::warn!("{name}: usage limit reached");
                let _ = ctx.to_failover.send(FailoverMsg::Limit {
                    session: name.into(),
                });
            }
            Effect::Throttled => {
                let _ = ctx.to_failover.send(FailoverMsg::RateLimited {
                    session: name.into(),
                });
            }
            Effect::Recreate => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/".into());
                match ctx.tmux.new_session(name, &home) {
                    Ok(()) => {
                        log::info!("recreated tmux session {name}");
                        handle(ctx, name, Event::Recreated);
                    }
                    Err(e) => handle(
                        ctx,
                        name,
                        Event::RecreateFailed(format!("cannot recreate tmux session {name}: {e}")),
                    ),
                }
            }
            Effect::Check => {
                let _ = ctx.to_watcher.send(WatchMsg::Check);
            }
            Effect::Nudge => nudge_in_background(ctx, s),
        }
    }
    for wt in &leaving {
        crate::isolation::release(wt);
    }
}

/// The task is done: to `done/` with a record.
fn finish(ctx: &Ctx, s: &Session, t: &TaskRef) {
    let mut record = serde_json::json!({
        "task": t.name,
        "project": t.project,
        "session": s.name,
        "account": s.account,
        "claude_session_id": s.claude_session_id,
        "model": t.model,
        "priority": t.priority.as_str(),
        "started": rfc3339(t.started),
        "ended": rfc3339(now_secs()),
    });
    // Worktree mode: the record and the notice name the branch and commit.
    let mut branch = Vec::new();
    if let Some(wt) = &t.worktree {
        let fields = crate::isolation::record_fields(wt);
        for key in ["branch", "commit"] {
            if let Some(v) = fields.get(key).and_then(|v| v.as_str()) {
                branch.push((key, v.to_string()));
            }
        }
        if let Some(m) = record.as_object_mut() {
            m.extend(fields);
        }
    }
    match t.queue().done(&t.name, &record) {
        Ok(p) => {
            log::info!("{}: {} done -> {}", s.name, t.name, p.display());
            let took = now_secs().saturating_sub(t.started);
            let mut notice = Notice::new(
                NoticeKind::TaskDone,
                format!(
                    "{} done in {} after {}",
                    t.name,
                    s.name,
                    crate::config::Dur::secs(took)
                ),
            )
            .field("task", t.name.clone())
            .field("project", t.project.display().to_string())
            .field("session", s.name.clone())
            .field("record", format!("{}.json", p.display()));
            for (key, v) in branch {
                notice = notice.field(key, v);
            }
            ctx.notify(notice);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("{}: {} was no longer claimed", s.name, t.name)
        }
        Err(e) => log::error!("{}: cannot move {} to done/: {e}", s.name, t.name),
    }
    ctx.update(|st| {
        st.attempts.remove(&t.key());
        st.metrics.tasks_done += 1;
    });
}

/// Stops the agent in `name` off the caller's thread (`/exit` takes a
/// moment), then tells the watcher which agent left. One that would not
/// leave stays `stopping`, and keeps the worktrees it was to release.
fn stop_in_background(ctx: &Ctx, name: &str, release: Vec<Worktree>) {
    let tmux = ctx.tmux.clone();
    let timeout = ctx.config().failover.stop_timeout.get();
    let to_watcher = ctx.to_watcher.clone();
    let n = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("stop-{name}"))
        .spawn(move || match crate::stop::stop_agent(&tmux, &n, timeout) {
            Ok(()) => {
                for wt in &release {
                    crate::isolation::release(wt);
                }
                let _ = to_watcher.send(WatchMsg::Stopped(n));
            }
            Err(e) => log::error!("{e}"),
        });
    if let Err(e) = spawned {
        log::error!("cannot start a thread to stop {name}: {e}");
    }
}

/// What a waiting agent is told, once, in a pool where no one answers.
pub const NUDGE: &str = "No one will answer questions in this session: nobody is watching it. \
Decide for yourself, say in one line what you chose and why, and go on with the task.";

/// Tells a waiting agent that no one will answer: Esc first (it closes a
/// question or menu, which would take the keys), then the note.
fn nudge_in_background(ctx: &Ctx, s: &Session) {
    let tmux = ctx.tmux.clone();
    let name = s.name.clone();
    let transcript = s.transcript_path.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("nudge-{name}"))
        .spawn(move || {
            let _ = tmux.send_key(&name, "Escape");
            match launch::deliver(&tmux, &name, NUDGE, transcript.as_deref()) {
                Ok(()) => log::info!("{name}: told that no one will answer"),
                Err(e) => log::warn!("{name}: cannot tell it that no one will answer: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start a thread to tell {} to go on: {e}", s.name);
    }
}

/// Puts a claimed task back in the inbox, logging what cannot be done.
fn requeue(t: &TaskRef) {
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

/// Back to the inbox; when the cause charges an attempt, to `failed/` once
/// `max_attempts` are used up.
pub fn give_back(ctx: &Ctx, task: &TaskRef, cause: &Cause) {
    let reason = cause.as_str();
    if !cause.charges_attempt() {
        log::info!("{} goes back to the inbox ({reason})", task.name);
        requeue(task);
        return;
    }
    let attempts = ctx.update(|st| {
        let n = st.attempts.entry(task.key()).or_insert(0);
        *n += 1;
        *n
    });
    let max = ctx.config().dispatcher.max_attempts;
    if attempts < max {
        requeue(task);
        log::info!(
            "{} is back in the inbox (attempt {attempts} of {max}): {reason}",
            task.name
        );
        return;
    }
    let why = format!("{attempts} launches failed; last: {reason}");
    match task.queue().fail(&task.name, true, &why) {
        Ok(_) => {
            ctx.update(|st| {
                st.attempts.remove(&task.key());
                st.metrics.tasks_failed += 1;
            });
            ctx.notify(Notice::task_failed(&task.name, &task.project, &why));
        }
        Err(e) => log::error!("cannot move {} to failed/: {e}", task.name),
    }
}
