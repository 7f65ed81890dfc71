//! Running git: an argv, never a shell, with `-C DIR`, the `GIT_*`
//! variables that would redirect it removed, and `GIT_OPTIONAL_LOCKS=0` so
//! a read never takes the operator's index lock. Also what git says about a
//! repository: the probe and the list of worktrees.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Repo, Worktree, WorktreeError};

/// `git worktree remove` (2.17) is the newest command used here.
pub const MIN_VERSION: (u32, u32) = (2, 17);
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
    pub(super) fn run(&self, dir: &Path, args: &[&OsStr]) -> Result<String, WorktreeError> {
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
    pub(super) fn test(&self, dir: &Path, args: &[&OsStr]) -> Result<bool, WorktreeError> {
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

    /// A cheap check for the dispatch plan: git is usable and `project`
    /// is inside a repository.
    pub fn can_isolate(&self, project: &Path) -> bool {
        self.check_version().is_ok()
            && self
                .test(project, &["rev-parse", "--git-dir"].map(OsStr::new))
                .unwrap_or(false)
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
}

impl Git {
    /// Whether `dir` is still a worktree of `project` on `branch`: a restart
    /// re-adopts it, a failover resumes in it.
    pub fn is_live(&self, wt: &Worktree) -> Result<bool, WorktreeError> {
        let want = format!("refs/heads/{}", wt.branch);
        Ok(self
            .list(&wt.project)?
            .iter()
            .any(|e| same_path(&e.dir, &wt.dir) && e.branch.as_deref() == Some(want.as_str())))
    }

    pub(super) fn list(&self, project: &Path) -> Result<Vec<ListEntry>, WorktreeError> {
        let out = self.run(
            project,
            &["worktree", "list", "--porcelain"].map(OsStr::new),
        )?;
        Ok(parse_list(&out))
    }
}

#[derive(Debug, Default)]
pub(super) struct ListEntry {
    pub dir: PathBuf,
    pub head: String,
    pub branch: Option<String>,
    pub locked: bool,
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
}
