//! Git worktrees for task isolation (INTERFACE.md "Worktree isolation"):
//! probe a project, give a task a worktree on a branch of its own, keep
//! the guard's files out of that branch, summarise and tidy up at the end,
//! and sweep worktrees whose branch was merged.
//!
//! `git` runs git itself and reads the repository; `tree` makes, ends and
//! sweeps a task's worktree.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod git;
mod tree;

use tree::MAX_NAMES;

pub use git::{Git, MIN_VERSION};

#[derive(Debug)]
pub enum WorktreeError {
    /// The git program could not be started.
    NoGit(String),
    /// The git found is older than [`MIN_VERSION`].
    TooOld(String),
    NotARepo(PathBuf),
    /// `base` is `HEAD` and HEAD is detached (a rebase or bisect may be under way).
    Detached(PathBuf),
    /// `base` names no commit (an empty repository, a typo).
    NoBase {
        project: PathBuf,
        base: String,
    },
    /// Every candidate name for the task's branch or folder is taken.
    NoFreeName(String),
    /// A git command failed; `stderr` is its first line.
    Git {
        dir: PathBuf,
        command: String,
        stderr: String,
    },
    Io(PathBuf, io::Error),
}

impl WorktreeError {
    /// True when git cannot isolate this project at all, so its tasks run in
    /// the project itself, one at a time. False when the project is a git
    /// repository that is in no state to branch from: the task goes to
    /// `failed/` rather than run in a checkout someone is in the middle of.
    pub fn runs_in_place(&self) -> bool {
        matches!(
            self,
            WorktreeError::NoGit(_) | WorktreeError::TooOld(_) | WorktreeError::NotARepo(_)
        )
    }
}

impl fmt::Display for WorktreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = MIN_VERSION;
        match self {
            WorktreeError::NoGit(e) => write!(f, "cannot run git: {e}; worktrees need git {major}.{minor} or newer"),
            WorktreeError::TooOld(v) => write!(f, "{v} is too old; worktrees need git {major}.{minor} or newer"),
            WorktreeError::NotARepo(p) => write!(f, "{} is not a git repository", p.display()),
            WorktreeError::Detached(p) => write!(
                f,
                "HEAD of {} is detached (a rebase or bisect under way?); check out a branch or set isolation.base",
                p.display()
            ),
            WorktreeError::NoBase { project, base } => write!(
                f,
                "isolation.base `{base}` names no commit in {}",
                project.display()
            ),
            WorktreeError::NoFreeName(stem) => write!(
                f,
                "no free branch or folder name for task `{stem}` after {MAX_NAMES} tries"
            ),
            WorktreeError::Git { dir, command, stderr } => {
                write!(f, "`{command}` failed in {}: {stderr}", dir.display())
            }
            WorktreeError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for WorktreeError {}

/// A probed repository: where its worktrees come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub project: PathBuf,
    pub common_dir: PathBuf,
    /// The project's path inside the repository (empty at the top).
    pub prefix: PathBuf,
    pub bare: bool,
    /// The operator's checkout has uncommitted changes to tracked files;
    /// they are not in a task's worktree, which starts from `base_commit`.
    pub dirty: bool,
    pub base_commit: String,
}

/// One task's worktree, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// The project whose repository it belongs to.
    pub project: PathBuf,
    /// The worktree's top folder.
    pub dir: PathBuf,
    /// Where the agent starts: the project's place inside `dir`.
    pub cwd: PathBuf,
    pub branch: String,
    pub base_commit: String,
}

/// What a task left in its worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub worktree: PathBuf,
    pub branch: String,
    pub head: String,
    pub commits: u64,
    /// Files changed since the base, committed or not, repository-relative.
    pub changed: Vec<String>,
    pub uncommitted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Removed(Summary),
    Kept(Summary),
}

impl Summary {
    /// No commit, no change: the worktree can go without losing anything.
    pub fn left_nothing(&self, wt: &Worktree) -> bool {
        self.commits == 0 && !self.uncommitted && self.head == wt.base_commit
    }
}

impl Ending {
    pub fn summary(&self) -> &Summary {
        match self {
            Ending::Removed(s) | Ending::Kept(s) => s,
        }
    }
}

/// A task stem as a branch and folder name: letters, digits, `_` and `-`.
pub fn ref_safe(stem: &str) -> String {
    let mut out = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "task".into()
    } else {
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ref_safe() {
        assert_eq!(ref_safe("fix-login"), "fix-login");
        assert_eq!(ref_safe("a b..c~^:?*[\\x.lock"), "a-b-c-x-lock");
        assert_eq!(ref_safe("--x--"), "x");
        assert_eq!(ref_safe("ünï"), "n");
        assert_eq!(ref_safe("..."), "task");
    }
}
