//! Where a task's agent works (INTERFACE.md "Worktree isolation"): in the
//! project itself (`isolation.mode: none`, or a project git cannot isolate)
//! or in a worktree of its own; how many tasks of one project may run at
//! once; and what a task leaves behind, for its `done/` record.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::config::{Config, IsolationMode};
use crate::worktree::{Ending, Git, Repo, Worktree, WorktreeError};

/// The git every daemon thread uses (its version is checked once).
pub fn git() -> &'static Git {
    static GIT: OnceLock<Git> = OnceLock::new();
    GIT.get_or_init(Git::default)
}

/// Where a task of a project runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    InProject,
    Worktree(Repo),
}

/// Decides where a task of `project` runs. An error means the task must not
/// run at all (a repository in no state to branch from): it goes to
/// `failed/` with this reason.
pub fn place(cfg: &Config, project: &Path) -> Result<Place, WorktreeError> {
    if cfg.isolation.mode == IsolationMode::None {
        return Ok(Place::InProject);
    }
    match git().probe(project, &cfg.isolation.base) {
        Ok(repo) => {
            if repo.dirty {
                log::warn!(
                    "{} has uncommitted changes; a task's worktree starts from the last commit without them",
                    project.display()
                );
            }
            Ok(Place::Worktree(repo))
        }
        Err(e) if e.runs_in_place() => {
            log::warn!(
                "{e}; tasks of {} run in the project itself, one at a time",
                project.display()
            );
            Ok(Place::InProject)
        }
        Err(e) => Err(e),
    }
}

/// The most tasks of `project` running at once (0: no limit). A project
/// that runs its tasks in place never has two agents in its checkout
/// unless `mode: none` was asked for with a limit above 1.
pub fn limit(cfg: &Config, project: &Path) -> u32 {
    let n = cfg.dispatcher.per_project;
    if cfg.isolation.mode == IsolationMode::None || n == 1 || git().can_isolate(project) {
        n
    } else {
        1
    }
}

/// `<isolation.worktrees or state_dir/worktrees>/<project folder name>`.
pub fn root_for(cfg: &Config, project: &Path) -> PathBuf {
    let base = cfg
        .isolation
        .worktrees
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join("worktrees"));
    let name = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    base.join(name)
}

/// Makes the worktree for task `name` (`NAME.md`) of a probed repository.
pub fn create(cfg: &Config, repo: &Repo, name: &str) -> Result<Worktree, WorktreeError> {
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let wt = git().create(
        repo,
        &root_for(cfg, &repo.project),
        &cfg.isolation.branch_prefix,
        stem,
    )?;
    log::info!(
        "{name}: worktree {} on branch {}",
        wt.dir.display(),
        wt.branch
    );
    Ok(wt)
}

/// A task left its worktree (done, given back, failed): a worktree with no
/// commit and no change goes with its branch, any other stays for review.
pub fn release(wt: &Worktree) -> Option<Ending> {
    match git().finish(wt) {
        Ok(Ending::Removed(s)) => {
            log::info!(
                "removed worktree {} and branch {}: nothing was changed",
                wt.dir.display(),
                wt.branch
            );
            Some(Ending::Removed(s))
        }
        Ok(Ending::Kept(s)) => {
            log::info!(
                "kept worktree {} (branch {} at {}, {} commit(s), {} file(s) changed)",
                wt.dir.display(),
                wt.branch,
                short(&s.head),
                s.commits,
                s.changed.len()
            );
            Some(Ending::Kept(s))
        }
        Err(e) => {
            log::warn!("worktree {} left as it is: {e}", wt.dir.display());
            None
        }
    }
}

/// The janitor's pass over one project's worktrees (any mode: worktrees
/// kept from an earlier `mode: worktree` still get tidied). `in_use`: the
/// worktrees of running tasks, never touched.
pub fn sweep(cfg: &Config, project: &Path, in_use: &[PathBuf]) {
    let root = root_for(cfg, project);
    let Ok(root) = std::fs::canonicalize(&root) else {
        return; // no worktree was ever made here
    };
    let swept = git().sweep(
        project,
        &root,
        &cfg.isolation.branch_prefix,
        &cfg.isolation.base,
        |d| in_use.iter().any(|u| u == d),
    );
    match swept {
        Ok(removed) => {
            for d in removed {
                log::info!(
                    "janitor: removed worktree {} (its branch is merged)",
                    d.display()
                );
            }
        }
        Err(e) => log::warn!(
            "janitor: worktrees of {} left as they are: {e}",
            project.display()
        ),
    }
}

/// The `done/` record's worktree fields.
pub fn record_fields(wt: &Worktree) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("worktree".into(), json!(wt.dir));
    m.insert("branch".into(), json!(wt.branch));
    match git().summarise(wt) {
        Ok(s) => {
            let kept = !s.left_nothing(wt);
            m.insert("commit".into(), json!(s.head));
            m.insert("commits".into(), json!(s.commits));
            m.insert("changed".into(), json!(s.changed));
            m.insert("uncommitted".into(), json!(s.uncommitted));
            m.insert("kept".into(), json!(kept));
        }
        Err(e) => {
            log::warn!("cannot summarise worktree {}: {e}", wt.dir.display());
            m.insert("kept".into(), json!(true));
        }
    }
    m
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
