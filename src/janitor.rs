//! Janitor thread: every `janitor.interval`, requeues stale claims that no
//! session owns, archives old `done/` tasks to `archive/YYYY-MM/`, and
//! prunes old checkpoints. It never deletes a task.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bus::Ctx;
use crate::fsutil;
use crate::task::Queue;
use crate::timefmt::{now_secs, year_month};

pub fn run(ctx: Arc<Ctx>) {
    loop {
        if ctx.sleep(ctx.config().janitor.interval.get()) {
            return;
        }
        sweep(&ctx);
    }
}

/// One pass of every chore.
pub fn sweep(ctx: &Ctx) {
    let cfg = ctx.config();
    let now = now_secs();
    let in_use: Vec<PathBuf> = ctx
        .state()
        .sessions
        .values()
        .filter_map(|s| Some(s.task.as_ref()?.worktree.as_ref()?.dir.clone()))
        .collect();
    for project in cfg.project_list() {
        let q = Queue::new(&project);
        requeue_stale(ctx, &q, now);
        archive_done(&q, now, cfg.janitor.archive_after.get().as_secs());
        crate::isolation::sweep(&cfg, &project, &in_use);
    }
    prune_checkpoints(
        &crate::checkpoint::dir(&cfg.state_dir),
        now,
        cfg.checkpoint.keep.get().as_secs(),
    );
}

/// A claim is as old as its rename: the inode's change time.
fn age(path: &Path, now: u64) -> Option<u64> {
    fs::symlink_metadata(path)
        .ok()
        .map(|m| now.saturating_sub(m.ctime().max(0) as u64))
}

fn requeue_stale(ctx: &Ctx, q: &Queue, now: u64) {
    let cfg = ctx.config();
    let stale = cfg.janitor.stale_after.get().as_secs();
    for name in q.dispatched_names().unwrap_or_default() {
        if ctx.state().owner_of(&q.project, &name).is_some() {
            continue;
        }
        if age(&q.dispatched_path(&name), now).is_none_or(|a| a < stale) {
            continue;
        }
        let t = crate::state::TaskRef {
            project: q.project.clone(),
            name: name.clone(),
            priority: Default::default(),
            model: String::new(),
            started: 0,
            worktree: None,
        };
        log::info!(
            "janitor: {name} in {} is claimed by no session",
            q.project.display()
        );
        crate::lifecycle::give_back(
            ctx,
            &t,
            &crate::lifecycle::Cause::Orphaned("stale claim: no session owned it".into()),
        );
    }
}

fn archive_done(q: &Queue, now: u64, after: u64) {
    let Ok(rd) = fs::read_dir(q.done_dir()) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !crate::task::is_task_name(&name) {
            continue;
        }
        let path = e.path();
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        let done_at = md.ctime().max(0) as u64;
        if now.saturating_sub(done_at) < after {
            continue;
        }
        let dest_dir = q.archive_dir().join(year_month(done_at));
        match fsutil::move_no_clobber(&path, &dest_dir.join(&name)) {
            Ok(moved) => {
                let record = q.done_dir().join(format!("{name}.json"));
                if record.exists() {
                    let mut to = moved.as_os_str().to_owned();
                    to.push(".json");
                    if let Err(e) = fsutil::move_no_clobber(&record, Path::new(&to)) {
                        log::warn!("cannot archive {}: {e}", record.display());
                    }
                }
                log::info!("archived {} to {}", name, moved.display());
            }
            Err(e) => log::error!("cannot archive {}: {e}", path.display()),
        }
    }
}

/// Checkpoints are state, not tasks: old ones are removed.
fn prune_checkpoints(dir: &Path, now: u64, keep: u64) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let Ok(md) = e.metadata() else { continue };
        let mtime = md.mtime().max(0) as u64;
        if md.is_file() && now.saturating_sub(mtime) > keep {
            if let Err(err) = fs::remove_file(e.path()) {
                log::warn!("cannot prune {}: {err}", e.path().display());
            }
        }
    }
}
