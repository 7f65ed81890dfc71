//! Dispatcher thread: watches every project's inbox with inotify and gives
//! one task at a time to a free autonomous session, most urgent and oldest
//! first. The claim (rename to `.dispatched`) happens before the launch; a
//! launch runs on its own short-lived thread so a slow agent never stalls
//! dispatching elsewhere, and reports back with `DispatchMsg::Launched`.

mod launches;

pub use launches::{finish_launch, launch_task, START_FAILURES_TO_PAUSE};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::bus::{Ctx, DispatchMsg, LaunchOutcome};
use crate::config::Config;
use crate::fswatch::{FsEvent, FsWatch};
use crate::isolation::Place;
use crate::lifecycle::{self, Event};
use crate::notice::{Notice, NoticeKind};
use crate::plan::Fate;
use crate::queue_index::QueueIndex;
use crate::state::{SessionKind, State, TaskRef};
use crate::task::{Queue, Task};
use crate::timefmt::now_secs;

/// How long to wait after a change under `projects_dir` before looking for
/// new projects: `mkdir -p p/.agent-queue/inbox` arrives as several events.
const DISCOVER_DELAY: Duration = Duration::from_millis(200);

/// Creates missing autonomous sessions and re-adopts what runs (see
/// `lifecycle::Event::Restarted`).
pub fn ensure_sessions(ctx: &Ctx) {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into());
    let sessions: Vec<(String, SessionKind, bool)> = ctx
        .state()
        .sessions
        .values()
        .map(|s| {
            // A crash mid-launch: if the conversation's transcript exists,
            // claude took the message (it writes it at the first one).
            let transcript = match (&s.transcript_path, &s.claude_session_id) {
                (Some(p), Some(id)) => p.ends_with(format!("{id}.jsonl")) && p.exists(),
                _ => false,
            };
            (s.name.clone(), s.kind, transcript)
        })
        .collect();
    // One question for every session at once, then only what is missing.
    let panes = ctx.tmux.panes().unwrap_or_else(|e| {
        log::error!("cannot list tmux panes: {e}");
        Default::default()
    });
    let mut events = Vec::new();
    for (name, kind, transcript_exists) in sessions {
        let pane = panes.get(&name);
        let mut exists = pane.is_some();
        if !exists && kind == SessionKind::Autonomous {
            match ctx.tmux.new_session(&name, &home) {
                Ok(()) => {
                    log::info!("created tmux session {name}");
                    exists = true;
                }
                Err(e) => log::error!("cannot create tmux session {name}: {e}"),
            }
        } else if kind == SessionKind::Autonomous {
            if let Err(e) = ctx.tmux.fix_size(&name) {
                log::warn!("cannot resize tmux session {name}: {e}");
            }
        }
        let ev = Event::Restarted {
            alive: pane.is_some_and(|p| p.has_agent() && p.pid.is_some()),
            exists,
            transcript_exists,
        };
        events.push((name, ev));
    }
    lifecycle::handle_all(ctx, events);
}

pub fn run(ctx: Arc<Ctx>, rx: Receiver<DispatchMsg>) {
    let (mut watch, fs_rx) = match FsWatch::new() {
        Ok(w) => (Some(w.0), w.1),
        Err(e) => {
            log::error!("inotify unavailable ({e}); dispatching on the scan interval only");
            (None, crossbeam_channel::never())
        }
    };
    let mut q = Queues {
        watch: watch.take(),
        watched_root: None,
        index: QueueIndex::default(),
        unwatched: 0,
        unclaimable: Unclaimable::new(),
    };
    q.rescan(&ctx);
    dispatch_round(&ctx, &mut q);
    let mut next_scan = Instant::now() + ctx.config().dispatcher.scan_interval.get();
    let mut discover_at: Option<Instant> = None;
    loop {
        let rested = cooldown_end(&ctx);
        let wake = [discover_at, rested]
            .into_iter()
            .flatten()
            .fold(next_scan, Instant::min);
        let timeout = wake.saturating_duration_since(Instant::now());
        select! {
            recv(ctx.stop) -> _ => return,
            recv(fs_rx) -> ev => match ev {
                Ok(FsEvent::Changed { dir, name }) => {
                    if q.watched_root.as_deref() == Some(dir.as_path()) {
                        discover_at.get_or_insert(Instant::now() + DISCOVER_DELAY);
                    } else if dir.file_name().is_some_and(|n| n == "inbox") {
                        if let (Some(name), Some(project)) = (
                            name.to_str().filter(|n| crate::task::is_task_name(n)),
                            dir.parent().and_then(Path::parent),
                        ) {
                            q.index.changed(project, name);
                            dispatch_round(&ctx, &mut q);
                        }
                    } else {
                        // A project folder or its .agent-queue got a child.
                        discover_at.get_or_insert(Instant::now() + DISCOVER_DELAY);
                    }
                }
                Ok(FsEvent::DirGone(dir)) => {
                    log::info!("stopped watching {} (removed)", dir.display());
                    // An inbox removed and made again is watched at once, not
                    // after the next scan.
                    discover_at.get_or_insert(Instant::now() + DISCOVER_DELAY);
                }
                Ok(FsEvent::Overflow) => {
                    log::warn!("inotify queue overflowed; rescanning every inbox");
                    q.rescan(&ctx);
                    dispatch_round(&ctx, &mut q);
                }
                Err(_) => return,
            },
            recv(rx) -> msg => match msg {
                Ok(DispatchMsg::SessionFree(_)) => dispatch_round(&ctx, &mut q),
                Ok(DispatchMsg::Scan) => {
                    q.rescan(&ctx);
                    dispatch_round(&ctx, &mut q);
                }
                Ok(DispatchMsg::Launched(outcome)) => {
                    finish_launch(&ctx, *outcome);
                    dispatch_round(&ctx, &mut q);
                }
                Err(_) => return,
            },
            default(timeout) => {
                if discover_at.is_some_and(|d| Instant::now() >= d) {
                    discover_at = None;
                    q.discover(&ctx);
                    dispatch_round(&ctx, &mut q);
                }
                if rested.is_some_and(|r| Instant::now() >= r) {
                    dispatch_round(&ctx, &mut q);
                }
                if Instant::now() >= next_scan {
                    q.rescan(&ctx);
                    dispatch_round(&ctx, &mut q);
                    next_scan = Instant::now() + ctx.config().dispatcher.scan_interval.get();
                }
            }
        }
    }
}

/// When the first resting session is free again (to dispatch then).
fn cooldown_end(ctx: &Ctx) -> Option<Instant> {
    let now = now_secs();
    let st = ctx.state();
    let until = st
        .sessions
        .values()
        .filter(|s| s.kind == SessionKind::Autonomous && s.task.is_none())
        .filter_map(|s| s.cooldown_until)
        .chain(st.launches_paused_until)
        .filter(|&t| t > now)
        .min()?;
    Some(Instant::now() + Duration::from_secs(until - now))
}

/// What the dispatcher keeps of the queues: the inotify watches and the
/// index of pending tasks they keep current.
struct Queues {
    watch: Option<FsWatch>,
    watched_root: Option<PathBuf>,
    index: QueueIndex,
    /// Projects whose inbox could not be watched, as last reported.
    unwatched: usize,
    unclaimable: Unclaimable,
}

impl Queues {
    /// Finds the projects, adds inotify watches for every inbox (creating
    /// the inbox of a configured project) and for `projects_dir` and its
    /// children, and tells the index which projects there are.
    fn discover(&mut self, ctx: &Ctx) {
        let cfg = ctx.config();
        let projects = cfg.project_list();
        self.index.set_projects(&projects);
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let mut unwatched = 0;
        let mut last_error = None;
        for p in &projects {
            let inbox = Queue::new(p).inbox();
            // A project folder that is gone (removed under a running task)
            // is not made again: only its missing inbox is.
            if watch.is_watched(&inbox) || !p.is_dir() {
                continue;
            }
            let made = if !inbox.is_dir() {
                std::fs::create_dir_all(&inbox)
            } else {
                Ok(())
            };
            match made.and_then(|()| watch.watch(&inbox)) {
                Ok(()) => self.index.relist(p),
                Err(e) => {
                    unwatched += 1;
                    last_error = Some(e);
                }
            }
        }
        if unwatched != self.unwatched {
            self.unwatched = unwatched;
            if let Some(e) = last_error {
                log::warn!(
                    "{unwatched} of {} projects could not be watched ({e}); their tasks start only at each rescan (dispatcher.scan_interval); raise the limit with: sysctl fs.inotify.max_user_watches=N",
                    projects.len()
                );
            }
        }
        if let Some(root) = &cfg.projects_dir {
            if !watch.is_watched(root) {
                match watch.watch(root) {
                    Ok(()) => self.watched_root = Some(root.clone()),
                    Err(e) => log::warn!("cannot watch {}: {e}", root.display()),
                }
            }
            // New project folders get their .agent-queue later: watch them too.
            if let Ok(rd) = std::fs::read_dir(root) {
                for e in rd.filter_map(Result::ok) {
                    let p = e.path();
                    if p.is_dir() && !p.join(".agent-queue").is_dir() && !watch.is_watched(&p) {
                        let _ = watch.watch(&p);
                    }
                    let aq = p.join(".agent-queue");
                    if aq.is_dir() && !aq.join("inbox").is_dir() && !watch.is_watched(&aq) {
                        let _ = watch.watch(&aq);
                    }
                }
            }
        }
    }

    /// The full rescan: discovery, then every inbox listed again against
    /// the index (files re-read only when they changed).
    fn rescan(&mut self, ctx: &Ctx) {
        self.discover(ctx);
        self.index.relist_all();
        refresh(ctx, &mut self.index, false);
    }
}

/// Reads every inbox: valid tasks sorted most urgent, then oldest first.
/// Files that are not tasks go to `failed/` (unless `dry_run`), reported in
/// the second list.
pub fn pending_tasks(cfg: &Config, dry_run: bool) -> (Vec<Task>, Vec<(PathBuf, String, String)>) {
    let mut ix = QueueIndex::default();
    ix.set_projects(&cfg.project_list());
    let bad = ix
        .refresh(dry_run)
        .into_iter()
        .map(|b| (b.project, b.name, b.reason))
        .collect();
    (ix.ordered().cloned().collect(), bad)
}

/// Brings the index up to date; files that are not tasks went to `failed/`
/// (unless `dry_run`) and are reported.
fn refresh(ctx: &Ctx, index: &mut QueueIndex, dry_run: bool) {
    let bad = index.refresh(dry_run);
    if dry_run {
        return;
    }
    for b in bad {
        ctx.state().metrics.tasks_failed += 1;
        ctx.notify(
            Notice::new(
                NoticeKind::TaskFailed,
                format!("{}; moved to failed/", b.reason),
            )
            .field("task", b.name)
            .field("project", b.project.display().to_string()),
        );
    }
}

/// Free sessions in pool order.
fn free_sessions(st: &State, cfg: &Config) -> Vec<String> {
    let now = now_secs();
    cfg.autonomous_names()
        .into_iter()
        .filter(|n| st.sessions.get(n).is_some_and(|s| s.is_free(now)))
        .collect()
}

/// Every pending task in dispatch order with its fate: the session it
/// gets, or why it waits; read from the inboxes now (`tasks`, `scan
/// --dry-run`).
pub fn fates(ctx: &Ctx, dry_run: bool) -> Vec<(Task, Fate)> {
    let mut ix = QueueIndex::default();
    ix.set_projects(&ctx.config().project_list());
    refresh(ctx, &mut ix, dry_run);
    let ordered: Vec<&Task> = ix.ordered().collect();
    let (fates, _, _) = assign(ctx, &ordered);
    ordered.into_iter().cloned().zip(fates).collect()
}

/// Tasks each project runs now, or each pending task's project limit.
pub type Counts = HashMap<PathBuf, u32>;

/// The fates of `tasks` (in dispatch order), with the running counts and
/// the limits they were decided on.
fn assign(ctx: &Ctx, tasks: &[&Task]) -> (Vec<Fate>, Counts, Counts) {
    let cfg = ctx.config();
    let (slots, running, pause) = {
        let st = ctx.state();
        (
            crate::plan::slots(&cfg, &st, now_secs()),
            crate::plan::running(&st),
            crate::plan::pause(&st, now_secs()),
        )
    };
    let limits = project_limits(&cfg, tasks);
    let projects: Vec<&Path> = tasks.iter().map(|t| t.project.as_path()).collect();
    let fates = crate::plan::assign(
        &projects,
        &slots,
        &running,
        |p| limits.get(p).copied().unwrap_or(cfg.dispatcher.per_project),
        pause.as_ref(),
    );
    (fates, running, limits)
}

/// Each pending task's project limit (`dispatcher.per_project`, or 1 for
/// a project that runs in place under worktree isolation): one look at
/// each project's repository, only when it matters.
pub fn project_limits(cfg: &Config, tasks: &[&Task]) -> Counts {
    let mut limits = Counts::new();
    for t in tasks {
        if !limits.contains_key(&t.project) {
            limits.insert(t.project.clone(), crate::isolation::limit(cfg, &t.project));
        }
    }
    limits
}

/// The sessions that take a task now and, from the index (brought up to
/// date first), the tasks for them in order: the planned ones, then up to
/// `spare` waiting ones a session could still take if a planned task cannot
/// be claimed, never more of one project than its limit allows.
fn candidates(
    ctx: &Ctx,
    index: &mut QueueIndex,
    dry_run: bool,
    spare: usize,
) -> (Vec<String>, Vec<Task>) {
    let cfg = ctx.config();
    let (paused, free) = {
        let st = ctx.state();
        let held = st.launches_paused_until.is_some_and(|t| t > now_secs());
        let paused = st.dispatch_paused.is_some() || held;
        (paused, free_sessions(&st, &cfg))
    };
    if paused || free.is_empty() {
        return (Vec::new(), Vec::new());
    }
    refresh(ctx, index, dry_run);
    let ordered: Vec<&Task> = index.ordered().collect();
    let (fates, mut counts, limits) = assign(ctx, &ordered);
    let (mut free, mut tasks, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
    for (t, f) in ordered.into_iter().zip(fates) {
        match f {
            Fate::Start(s) => {
                *counts.entry(t.project.clone()).or_insert(0) += 1;
                free.push(s);
                tasks.push(t.clone());
            }
            Fate::NoFreeSession | Fate::Resting { .. } => waiting.push(t),
            Fate::ProjectBusy { .. } | Fate::Paused(_) => {}
        }
    }
    for t in waiting.into_iter().take(spare) {
        let n = counts.entry(t.project.clone()).or_insert(0);
        let limit = limits.get(&t.project).copied().unwrap_or(0);
        if limit == 0 || *n < limit {
            *n += 1;
            tasks.push(t.clone());
        }
    }
    (free, tasks)
}

/// Files that could not be claimed, each said once.
type Unclaimable = std::collections::HashSet<PathBuf>;

/// Gives pending tasks to free sessions; each launch runs on its own thread.
fn dispatch_round(ctx: &Arc<Ctx>, q: &mut Queues) {
    // Files that cannot be claimed stay first in line: one more candidate
    // each. One newly found among them means another pass, for the
    // sessions it left free.
    loop {
        let skipped = q.unclaimable.len();
        let (free, tasks) = candidates(ctx, &mut q.index, false, skipped);
        let mut tasks = tasks.into_iter();
        for session in free {
            let Some((task, tref, place)) =
                claim_next(ctx, &session, &mut tasks, &mut q.unclaimable, &mut q.index)
            else {
                break;
            };
            let c = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("launch-{session}"))
                .spawn(move || {
                    let result = launch_task(&c, &session, &task, &tref, place);
                    let _ = c
                        .to_dispatcher
                        .send(DispatchMsg::Launched(Box::new(LaunchOutcome {
                            session,
                            task: tref,
                            result,
                        })));
                });
            if let Err(e) = spawned {
                log::error!("cannot start a launch thread: {e}");
            }
        }
        if q.unclaimable.len() == skipped {
            return;
        }
    }
}

/// Claims the first of `tasks` that can be claimed for `session`. A file
/// that cannot be (its claimed name too long, an inbox it cannot write) is
/// skipped, said once, so it never holds the session from the next task;
/// one whose repository is in no state to branch from goes to `failed/`.
fn claim_next(
    ctx: &Ctx,
    session: &str,
    tasks: &mut impl Iterator<Item = Task>,
    unclaimable: &mut Unclaimable,
    index: &mut QueueIndex,
) -> Option<(Task, TaskRef, Place)> {
    for mut task in tasks {
        let place = match crate::isolation::place(&ctx.config(), &task.project) {
            Ok(p) => p,
            Err(e) => {
                index.remove(&task.project, &task.name);
                refuse(ctx, &task, &e.to_string());
                continue;
            }
        };
        match claim(ctx, session, &task) {
            Ok(tref) => {
                index.remove(&task.project, &task.name);
                task.name = tref.name.clone();
                return Some((task, tref, place));
            }
            // Taken or removed meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                index.remove(&task.project, &task.name);
            }
            Err(e) => {
                if unclaimable.insert(task.project.join(&task.name)) {
                    log::warn!(
                        "cannot claim {} in {}: {e}; skipping it (it stays in the inbox)",
                        task.name,
                        task.project.display()
                    );
                }
            }
        }
    }
    None
}

/// Claims `task` for `session`: the rename, then the state; the task's
/// name may change (a name already claimed).
fn claim(ctx: &Ctx, session: &str, task: &Task) -> std::io::Result<TaskRef> {
    let cfg = ctx.config();
    let name = Queue::new(&task.project).claim(&task.name)?;
    let model = task
        .meta
        .model
        .clone()
        .unwrap_or_else(|| cfg.model_for(task.meta.priority).to_string());
    let tref = TaskRef {
        project: task.project.clone(),
        name,
        priority: task.meta.priority,
        model,
        started: now_secs(),
        worktree: None,
    };
    let account = ctx.state().active_account.clone();
    lifecycle::handle(
        ctx,
        session,
        Event::Claimed {
            task: tref.clone(),
            account,
        },
    );
    log::info!(
        "dispatching {} ({}) from {} to {session}",
        tref.name,
        tref.model,
        task.project.display()
    );
    Ok(tref)
}

/// A task that must not run: straight to `failed/` with the reason.
fn refuse(ctx: &Ctx, task: &Task, why: &str) {
    if let Err(e) = Queue::new(&task.project).fail(&task.name, false, why) {
        log::error!("cannot move {} to failed/: {e}", task.name);
        return;
    }
    ctx.state().metrics.tasks_failed += 1;
    ctx.notify(Notice::task_failed(&task.name, &task.project, why));
}

/// `scan`: one dispatch round in the foreground; returns what was started.
pub fn scan_once(ctx: &Arc<Ctx>) -> Vec<(String, String, Result<(), String>)> {
    let mut out = Vec::new();
    let mut index = QueueIndex::default();
    index.set_projects(&ctx.config().project_list());
    // Every pending task may be needed: any of them may be unclaimable.
    let (free, tasks) = candidates(ctx, &mut index, false, usize::MAX / 2);
    let mut tasks = tasks.into_iter();
    let mut unclaimable = Unclaimable::new();
    for session in free {
        let Some((task, tref, place)) =
            claim_next(ctx, &session, &mut tasks, &mut unclaimable, &mut index)
        else {
            break;
        };
        let result = launch_task(ctx, &session, &task, &tref, place);
        let shown = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        finish_launch(
            ctx,
            LaunchOutcome {
                session: session.clone(),
                task: tref,
                result,
            },
        );
        out.push((session, task.name.clone(), shown));
    }
    out
}

/// `scan --dry-run`: every fate without moving or starting anything.
pub fn dry_plan(ctx: &Ctx) -> Vec<(Task, Fate)> {
    fates(ctx, true)
}

/// At start-up only (no launch can be in flight): claims that no session
/// owns go back to the inbox. A crash between the claim and the state write
/// leaves such a claim.
pub fn requeue_orphans(ctx: &Ctx) {
    let cfg = ctx.config();
    for project in cfg.project_list() {
        let q = Queue::new(&project);
        for name in q.dispatched_names().unwrap_or_default() {
            if ctx.state().owner_of(&project, &name).is_none() {
                log::info!(
                    "{name} in {} was claimed by no session; back to the inbox",
                    project.display()
                );
                if let Err(e) = q.unclaim(&name) {
                    log::error!("cannot put {name} back in the inbox: {e}");
                }
            }
        }
    }
}
