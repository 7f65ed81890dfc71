//! A task's worktree from start to end: made on a branch of its own with
//! the guard's files kept out of it, summarised, removed when the task left
//! nothing, and swept by the janitor once its branch is merged.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{ref_safe, Ending, Git, Repo, Summary, Worktree, WorktreeError};
use crate::fsutil;

/// Paths the guard writes into a worktree, as `info/exclude` patterns.
const GUARD_PATTERNS: &[&str] = &[
    "**/.claude/hooks/claude-failover.sh",
    "**/.claude/hooks/claude-failover.audit.log",
];
const EXCLUDE_HEADER: &str =
    "# claude-failover: the guard's own files, never part of a task's work";
/// Names tried for one task before giving up (`stem`, `stem-2`, ...).
pub(super) const MAX_NAMES: u32 = 100;

impl Git {
    /// Makes a worktree for task `stem` under `root` on a new branch
    /// `<prefix><stem>` from the probed base commit. A branch or folder that
    /// exists already is never reused: the next free `stem-N` is taken.
    pub fn create(
        &self,
        repo: &Repo,
        root: &Path,
        prefix: &str,
        stem: &str,
    ) -> Result<Worktree, WorktreeError> {
        self.exclude_guard(repo)?;
        fs::create_dir_all(root).map_err(|e| WorktreeError::Io(root.into(), e))?;
        // The physical path: claude's cwd, and so its trust and transcripts, are.
        let root = &fs::canonicalize(root).map_err(|e| WorktreeError::Io(root.into(), e))?;
        let name = ref_safe(stem);
        for n in 1..=MAX_NAMES {
            let candidate = if n == 1 {
                name.clone()
            } else {
                format!("{name}-{n}")
            };
            let dir = root.join(&candidate);
            let branch = format!("{prefix}{candidate}");
            if fs::symlink_metadata(&dir).is_ok() || self.branch_exists(&repo.project, &branch)? {
                continue;
            }
            let added = self.run(
                &repo.project,
                &[
                    OsStr::new("worktree"),
                    OsStr::new("add"),
                    OsStr::new("-b"),
                    OsStr::new(&branch),
                    dir.as_os_str(),
                    OsStr::new(&repo.base_commit),
                ],
            );
            match added {
                Ok(_) => {
                    let wt = Worktree {
                        project: repo.project.clone(),
                        // `join("")` would add a trailing `/`: a different
                        // key for claude's trust and transcripts.
                        cwd: if repo.prefix.as_os_str().is_empty() {
                            dir.clone()
                        } else {
                            dir.join(&repo.prefix)
                        },
                        dir,
                        branch,
                        base_commit: repo.base_commit.clone(),
                    };
                    self.hide_tracked_guard_files(&wt)?;
                    return Ok(wt);
                }
                // Someone took the name between the check and the add.
                Err(_)
                    if fs::symlink_metadata(&dir).is_ok()
                        || self.branch_exists(&repo.project, &branch)? => {}
                Err(e) => return Err(e),
            }
        }
        Err(WorktreeError::NoFreeName(name))
    }

    fn branch_exists(&self, project: &Path, branch: &str) -> Result<bool, WorktreeError> {
        let full = format!("refs/heads/{branch}");
        self.test(
            project,
            &["show-ref", "--verify", "--quiet", &full].map(OsStr::new),
        )
    }

    /// Adds the guard's paths to the repository's `info/exclude` (shared by
    /// every worktree), keeping what the user has there.
    fn exclude_guard(&self, repo: &Repo) -> Result<(), WorktreeError> {
        let path = repo.common_dir.join("info/exclude");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(WorktreeError::Io(path, e)),
        };
        let missing: Vec<&str> = GUARD_PATTERNS
            .iter()
            .copied()
            .filter(|p| !text.lines().any(|l| l.trim() == *p))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut out = text;
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(EXCLUDE_HEADER);
        out.push('\n');
        for p in missing {
            out.push_str(p);
            out.push('\n');
        }
        let dir = fsutil::parent(&path).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| WorktreeError::Io(dir, e))?;
        fsutil::atomic_write(&path, out.as_bytes(), 0o644).map_err(|e| WorktreeError::Io(path, e))
    }

    /// A project that tracks the guard's files (committed in mode none)
    /// would see the guard's rewrite as a change: tell this worktree's index
    /// to leave them be.
    fn hide_tracked_guard_files(&self, wt: &Worktree) -> Result<(), WorktreeError> {
        let tracked = self.run(
            &wt.cwd,
            &[
                "ls-files",
                "-z",
                "--",
                ".claude/hooks/claude-failover.sh",
                ".claude/hooks/claude-failover.audit.log",
            ]
            .map(OsStr::new),
        )?;
        let files: Vec<&OsStr> = tracked
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(OsStr::new)
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let mut args = ["update-index", "--skip-worktree", "--"]
            .map(OsStr::new)
            .to_vec();
        args.extend(files);
        self.run(&wt.dir, &args).map(|_| ())
    }

    /// What the task left: head commit, commits since the base, changed files.
    pub fn summarise(&self, wt: &Worktree) -> Result<Summary, WorktreeError> {
        let head = self
            .run(&wt.dir, &["rev-parse", "HEAD"].map(OsStr::new))?
            .trim()
            .to_string();
        let range = format!("{}..HEAD", wt.base_commit);
        let commits = self
            .run(&wt.dir, &["rev-list", "--count", &range].map(OsStr::new))?
            .trim()
            .parse()
            .unwrap_or(0);
        let committed = self.run(
            &wt.dir,
            &[
                "diff",
                "--name-only",
                "--no-renames",
                "-z",
                &wt.base_commit,
                "HEAD",
                "--",
            ]
            .map(OsStr::new),
        )?;
        let status = self.run(
            &wt.dir,
            &[
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=all",
                "--no-renames",
            ]
            .map(OsStr::new),
        )?;
        let pending = status_paths(&status);
        let mut changed: Vec<String> = committed
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .chain(pending.iter().cloned())
            .collect();
        changed.sort();
        changed.dedup();
        Ok(Summary {
            worktree: wt.dir.clone(),
            branch: wt.branch.clone(),
            head,
            commits,
            uncommitted: !pending.is_empty(),
            changed,
        })
    }

    /// At a task's end: a worktree with no commit and no change goes, with
    /// its branch; any other stays for review.
    pub fn finish(&self, wt: &Worktree) -> Result<Ending, WorktreeError> {
        let summary = self.summarise(wt)?;
        if !summary.left_nothing(wt) {
            return Ok(Ending::Kept(summary));
        }
        self.remove(&wt.project, &wt.dir, &wt.branch, &summary.head)?;
        Ok(Ending::Removed(summary))
    }

    /// Removes a clean worktree and then its branch, the branch only if it
    /// still points at `head` (git refuses a dirty worktree by itself).
    fn remove(
        &self,
        project: &Path,
        dir: &Path,
        branch: &str,
        head: &str,
    ) -> Result<(), WorktreeError> {
        self.run(
            project,
            &[
                OsStr::new("worktree"),
                OsStr::new("remove"),
                dir.as_os_str(),
            ],
        )?;
        let full = format!("refs/heads/{branch}");
        self.run(project, &["update-ref", "-d", &full, head].map(OsStr::new))
            .map(|_| ())
    }

    /// The janitor's pass over one project: prune git's list of worktrees
    /// whose folder is gone, then remove each clean worktree under `root` on
    /// a `prefix` branch that is merged into `base`, unless `in_use` says a
    /// task runs there. Returns the folders removed.
    pub fn sweep(
        &self,
        project: &Path,
        root: &Path,
        prefix: &str,
        base: &str,
        in_use: impl Fn(&Path) -> bool,
    ) -> Result<Vec<PathBuf>, WorktreeError> {
        let repo = self.probe(project, base)?;
        self.run(project, &["worktree", "prune"].map(OsStr::new))?;
        let ours = format!("refs/heads/{prefix}");
        let mut removed = Vec::new();
        for e in self.list(project)? {
            let Some(branch) = e
                .branch
                .as_deref()
                .and_then(|b| b.strip_prefix("refs/heads/"))
            else {
                continue;
            };
            if e.locked
                || !e.branch.as_deref().is_some_and(|b| b.starts_with(&ours))
                || !e.dir.starts_with(root)
                || in_use(&e.dir)
            {
                continue;
            }
            let merged = self.test(
                project,
                &["merge-base", "--is-ancestor", &e.head, &repo.base_commit].map(OsStr::new),
            )?;
            let clean = self
                .run(
                    &e.dir,
                    &["status", "--porcelain", "-z", "--untracked-files=all"].map(OsStr::new),
                )
                .is_ok_and(|s| s.is_empty());
            if merged && clean {
                self.remove(project, &e.dir, branch, &e.head)?;
                removed.push(e.dir);
            }
        }
        Ok(removed)
    }
}

/// Paths in `git status --porcelain -z` output (renames are off).
fn status_paths(out: &str) -> Vec<String> {
    out.split('\0')
        .filter(|s| s.len() > 3)
        .map(|s| s[3..].to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paths_split() {
        assert_eq!(status_paths(" M a b\0?? c/d\0"), vec!["a b", "c/d"]);
    }
}
