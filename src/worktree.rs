//! Git worktrees for task isolation (INTERFACE.md "Worktree isolation"):
//! probe a project, give a task a worktree on a branch of its own, keep
//! the guard's files out of that branch, summarise and tidy up at the end,
//! and sweep worktrees whose branch was merged.
//!
//! Git runs through `std::process::Command` with an argv, never a shell,
//! with `-C DIR`, the `GIT_*` variables that would redirect it removed, and
//! `GIT_OPTIONAL_LOCKS=0` so a read never takes the operator's index lock.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// `git worktree remove` (2.17) is the newest command used here.
pub const MIN_VERSION: (u32, u32) = (2, 17);
/// Paths the guard writes into a worktree, as `info/exclude` patterns.
const GUARD_PATTERNS: &[&str] = &[
    "**/.claude/hooks/claude-failover.sh",
    "**/.claude/hooks/claude-failover.audit.log",
];
const EXCLUDE_HEADER: &str =
    "# claude-failover: the guard's own files, never part of a task's work";
/// Names tried for one task before giving up (`stem`, `stem-2`, ...).
const MAX_NAMES: u32 = 100;
/// Variables that would point git at another repository or index.
const REDIRECTING_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
];

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

/// The git program, with its version checked once.
#[derive(Debug)]
pub struct Git {
    program: OsString,
    /// `Err((true, text))`: too old; `Err((false, why))`: cannot run.
    version: OnceLock<Result<(), (bool, String)>>,
}

impl Default for Git {
    fn default() -> Self {
        Git::new("git")
    }
}

impl Git {
    pub fn new(program: impl Into<OsString>) -> Git {
        Git {
            program: program.into(),
            version: OnceLock::new(),
        }
    }

    fn command(&self, dir: &Path, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-C").arg(dir).args(args);
        for v in REDIRECTING_ENV {
            cmd.env_remove(v);
        }
        cmd.env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs git in `dir`; its stdout on success.
    fn run(&self, dir: &Path, args: &[&OsStr]) -> Result<String, WorktreeError> {
        let out = self
            .command(dir, args)
            .output()
            .map_err(|e| WorktreeError::NoGit(e.to_string()))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let words: Vec<String> = args
            .iter()
            .take(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Err(WorktreeError::Git {
            dir: dir.to_path_buf(),
            command: format!("git {}", words.join(" ")),
            stderr: first.trim().to_string(),
        })
    }

    /// Runs git for a yes/no answer: exit 0 is yes, 1 is no, anything else an error.
    fn test(&self, dir: &Path, args: &[&OsStr]) -> Result<bool, WorktreeError> {
        let status = self
            .command(dir, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| WorktreeError::NoGit(e.to_string()))?;
        match status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => self.run(dir, args).map(|_| true),
        }
    }

    fn check_version(&self) -> Result<(), WorktreeError> {
        let checked = self.version.get_or_init(|| {
            let out = Command::new(&self.program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| (false, e.to_string()))?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match parse_version(&text) {
                Some(v) if v >= MIN_VERSION => Ok(()),
                _ if text.is_empty() => Err((false, "it printed no version".into())),
                _ => Err((true, text)),
            }
        });
        match checked {
            Ok(()) => Ok(()),
            Err((true, v)) => Err(WorktreeError::TooOld(v.clone())),
            Err((false, e)) => Err(WorktreeError::NoGit(e.clone())),
        }
    }

    /// Whether `project` can have worktrees made from `base`, and where.
    pub fn probe(&self, project: &Path, base: &str) -> Result<Repo, WorktreeError> {
        self.check_version()?;
        if base.starts_with('-') || base.is_empty() {
            return Err(WorktreeError::NoBase {
                project: project.into(),
                base: base.into(),
            });
        }
        let out = match self.run(
            project,
            &[
                "rev-parse",
                "--is-bare-repository",
                "--git-common-dir",
                "--show-prefix",
            ]
            .map(OsStr::new),
        ) {
            Ok(out) => out,
            Err(WorktreeError::Git { .. }) => return Err(WorktreeError::NotARepo(project.into())),
            Err(e) => return Err(e),
        };
        let mut lines = out.lines();
        let bare = lines.next() == Some("true");
        let common = PathBuf::from(lines.next().unwrap_or(".git"));
        let prefix = PathBuf::from(lines.next().unwrap_or(""));
        if base == "HEAD" && !self.test(project, &["symbolic-ref", "-q", "HEAD"].map(OsStr::new))? {
            return Err(WorktreeError::Detached(project.into()));
        }
        let base_commit = self.resolve(project, base)?;
        let dirty = !bare
            && !self
                .run(
                    project,
                    &["status", "--porcelain", "-z", "--untracked-files=no"].map(OsStr::new),
                )?
                .is_empty();
        Ok(Repo {
            project: project.into(),
            common_dir: project.join(common),
            prefix,
            bare,
            dirty,
            base_commit,
        })
    }

    fn resolve(&self, project: &Path, base: &str) -> Result<String, WorktreeError> {
        let spec = format!("{base}^{{commit}}");
        self.run(
            project,
            &["rev-parse", "--verify", "--quiet", &spec].map(OsStr::new),
        )
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WorktreeError::NoBase {
            project: project.into(),
            base: base.into(),
        })
    }

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
                        cwd: dir.join(&repo.prefix),
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

    /// Whether `dir` is still a worktree of `project` on `branch`: a restart
    /// re-adopts it, a failover resumes in it.
    pub fn is_live(&self, wt: &Worktree) -> Result<bool, WorktreeError> {
        let want = format!("refs/heads/{}", wt.branch);
        Ok(self
            .list(&wt.project)?
            .iter()
            .any(|e| same_path(&e.dir, &wt.dir) && e.branch.as_deref() == Some(want.as_str())))
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
        if summary.commits > 0 || summary.uncommitted || summary.head != wt.base_commit {
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

    fn list(&self, project: &Path) -> Result<Vec<ListEntry>, WorktreeError> {
        let out = self.run(
            project,
            &["worktree", "list", "--porcelain"].map(OsStr::new),
        )?;
        Ok(parse_list(&out))
    }
}

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

impl Ending {
    pub fn summary(&self) -> &Summary {
        match self {
            Ending::Removed(s) | Ending::Kept(s) => s,
        }
    }
}

#[derive(Debug, Default)]
struct ListEntry {
    dir: PathBuf,
    head: String,
    branch: Option<String>,
    locked: bool,
}

fn parse_list(out: &str) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    let mut cur: Option<ListEntry> = None;
    for line in out.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            entries.extend(cur.take());
            cur = Some(ListEntry {
                dir: p.into(),
                ..Default::default()
            });
        } else if let Some(e) = cur.as_mut() {
            if let Some(h) = line.strip_prefix("HEAD ") {
                e.head = h.into();
            } else if let Some(b) = line.strip_prefix("branch ") {
                e.branch = Some(b.into());
            } else if line == "locked" || line.starts_with("locked ") {
                e.locked = true;
            }
        }
    }
    entries.extend(cur);
    entries
}

/// Paths in `git status --porcelain -z` output (renames are off).
fn status_paths(out: &str) -> Vec<String> {
    out.split('\0')
        .filter(|s| s.len() > 3)
        .map(|s| s[3..].to_string())
        .collect()
}

/// `git version 2.47.3` (or `2.39.2.windows.1`) as (major, minor).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.strip_prefix("git version ")?;
    let mut parts = v.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
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

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || fs::canonicalize(a)
            .ok()
            .is_some_and(|a| fs::canonicalize(b).ok() == Some(a))
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

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.39.2.windows.1"), Some((2, 39)));
        assert_eq!(parse_version("git version 1.8"), Some((1, 8)));
        assert_eq!(parse_version("hub 2"), None);
    }

    #[test]
    fn list_parses_porcelain() {
        let out = "worktree /r\nHEAD aa\nbranch refs/heads/main\n\nworktree /w/x\nHEAD bb\nbranch refs/heads/cf/x\nlocked\n\nworktree /w/y\nHEAD cc\ndetached\n";
        let l = parse_list(out);
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].dir, PathBuf::from("/w/x"));
        assert_eq!(l[1].branch.as_deref(), Some("refs/heads/cf/x"));
        assert!(l[1].locked && !l[0].locked);
        assert_eq!(l[2].branch, None);
        assert_eq!(l[2].head, "cc");
    }

    #[test]
    fn status_paths_split() {
        assert_eq!(status_paths(" M a b\0?? c/d\0"), vec!["a b", "c/d"]);
    }
}
