//! Task files and the per-project queue on disk:
//! `.agent-queue/{inbox,done,failed,archive}`. A task is claimed by renaming
//! it to `NAME.md.dispatched`; every move is a rename, and nothing here ever
//! deletes a task.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Task files larger than this are refused: a task is a prompt, not a payload.
pub const MAX_TASK_BYTES: u64 = 1 << 20;
pub const DISPATCHED: &str = ".dispatched";

/// Every project: the configured ones, and each child of `projects_dir`
/// that has an `.agent-queue` folder; each once, in that order.
pub fn discover_projects(configured: &[PathBuf], projects_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = configured.to_vec();
    if let Some(dir) = projects_dir {
        if let Ok(rd) = fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join(".agent-queue").is_dir())
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// How urgent a task is; also picks the model. Sorts most urgent first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Default,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Default => "default",
            Priority::Low => "low",
        }
    }
}

/// The optional YAML header of a task file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Frontmatter {
    pub title: Option<String>,
    pub priority: Priority,
    #[serde(deserialize_with = "de_tags")]
    pub tags: Vec<String>,
    pub needs_claude_code: Option<bool>,
    /// Overrides the model the priority would pick.
    pub model: Option<String>,
}

/// A task file read and parsed, ready to launch.
#[derive(Debug, Clone)]
pub struct Task {
    pub project: PathBuf,
    /// File name in the inbox, `NAME.md`.
    pub name: String,
    pub meta: Frontmatter,
    pub body: String,
    pub mtime: SystemTime,
}

/// Why a file in the inbox is not a task. Such files go to `failed/`.
#[derive(Debug)]
pub enum TaskError {
    Symlink,
    NotRegular,
    TooLarge(u64),
    NotUtf8,
    Frontmatter(String),
    BadModel(String),
    /// Nothing but white space to send (after any frontmatter).
    Empty,
    /// The file vanished or could not be read; not the task's fault.
    Io(io::Error),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Symlink => write!(
                f,
                "is a symbolic link; tasks must be regular files in the inbox"
            ),
            TaskError::NotRegular => write!(f, "is not a regular file"),
            TaskError::TooLarge(n) => write!(
                f,
                "is {n} bytes; tasks are limited to {MAX_TASK_BYTES} bytes"
            ),
            TaskError::NotUtf8 => write!(f, "is not UTF-8 text"),
            TaskError::Frontmatter(e) => write!(f, "has invalid frontmatter: {e}"),
            TaskError::BadModel(m) => write!(f, "names model `{m}`, which is not a model name"),
            TaskError::Empty => write!(f, "is empty: its body is only white space"),
            TaskError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl TaskError {
    /// True when the file itself is at fault (it goes to `failed/`); false
    /// for passing I/O trouble (it stays where it is).
    pub fn is_task_fault(&self) -> bool {
        !matches!(self, TaskError::Io(_))
    }
}

fn de_tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        One(String),
        Many(Vec<String>),
        None(()),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::One(s) => s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        Tags::Many(v) => v,
        Tags::None(()) => Vec::new(),
    })
}

/// Splits `---\nyaml\n---\nbody` into its parts. No header: all body.
pub fn parse(text: &str) -> Result<(Frontmatter, String), TaskError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return with_body(Frontmatter::default(), text);
    };
    // The header ends at the first line that is exactly `---`.
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "---" {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((yaml_end, body_start)) = end else {
        return Err(TaskError::Frontmatter(
            "the `---` header is never closed".into(),
        ));
    };
    let yaml = &rest[..yaml_end];
    let meta: Frontmatter = if yaml.trim().is_empty() {
        Frontmatter::default()
    } else {
        serde_yaml::from_str(yaml).map_err(|e| {
            let msg = e.to_string();
            TaskError::Frontmatter(match e.location() {
                // +1: the opening `---` is line 1 of the file.
                Some(l) => format!(
                    "line {}: {}",
                    l.line() + 1,
                    msg.split(" at line ").next().unwrap_or(&msg)
                ),
                None => msg,
            })
        })?
    };
    if let Some(m) = &meta.model {
        let ok = !m.is_empty()
            && !m.starts_with('-')
            && m.len() <= 100
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:[]/@".contains(&b));
        if !ok {
            return Err(TaskError::BadModel(m.clone()));
        }
    }
    with_body(meta, &rest[body_start..])
}

/// The trimmed body, refused when nothing is left: an empty message would
/// be sent as the bare template, or not taken at all.
fn with_body(meta: Frontmatter, body: &str) -> Result<(Frontmatter, String), TaskError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(TaskError::Empty);
    }
    Ok((meta, body.to_string()))
}

/// The queue folders of one project.
#[derive(Debug, Clone)]
pub struct Queue {
    pub project: PathBuf,
}

impl Queue {
    pub fn new(project: &Path) -> Queue {
        Queue {
            project: project.to_path_buf(),
        }
    }
    pub fn root(&self) -> PathBuf {
        self.project.join(".agent-queue")
    }
    pub fn inbox(&self) -> PathBuf {
        self.root().join("inbox")
    }
    pub fn done_dir(&self) -> PathBuf {
        self.root().join("done")
    }
    pub fn failed_dir(&self) -> PathBuf {
        self.root().join("failed")
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.root().join("archive")
    }
    pub fn pending_path(&self, name: &str) -> PathBuf {
        self.inbox().join(name)
    }
    pub fn dispatched_path(&self, name: &str) -> PathBuf {
        self.inbox().join(format!("{name}{DISPATCHED}"))
    }

    /// Names of pending tasks (`*.md`, not hidden), unsorted. A missing inbox
    /// is an empty queue.
    pub fn pending_names(&self) -> io::Result<Vec<String>> {
        list_names(&self.inbox(), is_task_name)
    }

    /// Names (`NAME.md`) of claimed tasks in the inbox.
    pub fn dispatched_names(&self) -> io::Result<Vec<String>> {
        Ok(list_names(&self.inbox(), |n| {
            n.strip_suffix(DISPATCHED).is_some_and(is_task_name)
        })?
        .into_iter()
        .map(|n| n.trim_end_matches(DISPATCHED).to_string())
        .collect())
    }

    /// Reads one pending task, refusing anything that is not a plain,
    /// small, UTF-8 file with valid frontmatter.
    pub fn load(&self, name: &str) -> Result<Task, TaskError> {
        load_file(&self.pending_path(name), &self.project, name)
    }

    /// Claims a task: `NAME.md` -> `NAME.md.dispatched`, before the launch,
    /// so a crash mid-launch leaves a claim the janitor can requeue. A task
    /// of that name may be claimed already (a second `nightly.md` dropped
    /// while the first runs): then it is claimed as `NAME.N.md`, never over
    /// the other's claim. Returns the name it is claimed under.
    pub fn claim(&self, name: &str) -> io::Result<String> {
        let taken = |n: &str| {
            fs::symlink_metadata(self.dispatched_path(n)).is_ok()
                || (n != name && fs::symlink_metadata(self.pending_path(n)).is_ok())
        };
        let claimed = (0..10_000)
            .map(|n| match n {
                0 => name.to_string(),
                n => fsutil::numbered(Path::new(name), n)
                    .to_string_lossy()
                    .into_owned(),
            })
            .find(|n| !taken(n))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("no free name to claim {name} under"),
                )
            })?;
        fs::rename(self.pending_path(name), self.dispatched_path(&claimed))?;
        fsutil::sync_dir(&self.inbox())?;
        Ok(claimed)
    }

    /// Puts a claimed task back in the inbox.
    pub fn unclaim(&self, name: &str) -> io::Result<PathBuf> {
        fsutil::move_no_clobber(&self.dispatched_path(name), &self.pending_path(name))
    }

    /// Moves a pending or claimed task to `failed/` and writes the reason
    /// beside it as `NAME.md.error`.
    pub fn fail(&self, name: &str, claimed: bool, reason: &str) -> io::Result<PathBuf> {
        let from = if claimed {
            self.dispatched_path(name)
        } else {
            self.pending_path(name)
        };
        let text = format!(
            "{}\n{}\n",
            crate::timefmt::rfc3339(crate::timefmt::now_secs()),
            reason
        );
        self.move_with_note(
            &from,
            &self.failed_dir().join(name),
            ".error",
            text.as_bytes(),
        )
    }

    /// Moves a claimed task to `done/` with a JSON record beside it.
    pub fn done(&self, name: &str, record: &serde_json::Value) -> io::Result<PathBuf> {
        let mut text = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        text.push(b'\n');
        self.move_with_note(
            &self.dispatched_path(name),
            &self.done_dir().join(name),
            ".json",
            &text,
        )
    }

    /// Moves `from` to a free name at `to`, the note (`.error`, `.json`)
    /// written first so whoever sees the task also finds why.
    fn move_with_note(
        &self,
        from: &Path,
        to: &Path,
        suffix: &str,
        note: &[u8],
    ) -> io::Result<PathBuf> {
        fs::symlink_metadata(from)?;
        fs::create_dir_all(fsutil::parent(to))?;
        let dest = fsutil::free_name(to)?;
        let mut note_path = dest.as_os_str().to_owned();
        note_path.push(suffix);
        fsutil::atomic_write(Path::new(&note_path), note, 0o644)?;
        if let Err(e) = fs::rename(from, &dest) {
            let _ = fs::remove_file(&note_path);
            return Err(e);
        }
        fsutil::sync_dir(fsutil::parent(&dest))?;
        Ok(dest)
    }
}

/// `NAME.md`, not hidden: what the dispatcher looks at.
pub fn is_task_name(n: &str) -> bool {
    n.ends_with(".md") && !n.starts_with('.') && n.len() > 3
}

fn list_names(dir: &Path, keep: impl Fn(&str) -> bool) -> io::Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        // Non-UTF-8 names are not ours to dispatch.
        if let Ok(n) = entry.file_name().into_string() {
            if keep(&n) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

fn load_file(path: &Path, project: &Path, name: &str) -> Result<Task, TaskError> {
    let md = fs::symlink_metadata(path).map_err(TaskError::Io)?;
    let ft = md.file_type();
    if ft.is_symlink() {
        return Err(TaskError::Symlink);
    }
    if !ft.is_file() || ft.is_fifo() || ft.is_socket() {
        return Err(TaskError::NotRegular);
    }
    if md.len() > MAX_TASK_BYTES {
        return Err(TaskError::TooLarge(md.len()));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    // O_NOFOLLOW: the file may have been swapped for a link since the lstat.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                TaskError::Symlink
            } else {
                TaskError::Io(e)
            }
        })?;
    f.take(MAX_TASK_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(TaskError::Io)?;
    if bytes.len() as u64 > MAX_TASK_BYTES {
        return Err(TaskError::TooLarge(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|_| TaskError::NotUtf8)?;
    if text.contains('\0') {
        return Err(TaskError::NotUtf8);
    }
    let (meta, body) = parse(&text)?;
    Ok(Task {
        project: project.to_path_buf(),
        name: name.to_string(),
        meta,
        body,
        mtime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontmatter_and_body() {
        let (m, b) = parse(
            "---\ntitle: Fix\npriority: critical\ntags: [a, b]\nmodel: opus\n---\n\nDo it.\n",
        )
        .unwrap();
        assert_eq!(m.priority, Priority::Critical);
        assert_eq!(m.title.as_deref(), Some("Fix"));
        assert_eq!(m.tags, vec!["a", "b"]);
        assert_eq!(m.model.as_deref(), Some("opus"));
        assert_eq!(b, "Do it.");
    }

    #[test]
    fn no_header_is_all_body() {
        let (m, b) = parse("just text\n---\nmore").unwrap();
        assert_eq!(m.priority, Priority::Default);
        assert_eq!(b, "just text\n---\nmore");
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(matches!(
            parse("---\ntitle: x\nbody"),
            Err(TaskError::Frontmatter(_))
        ));
        assert!(matches!(
            parse("---\npriority: urgent\n---\nx"),
            Err(TaskError::Frontmatter(_))
        ));
        assert!(matches!(
            parse("---\n: [\n---\nx"),
            Err(TaskError::Frontmatter(_))
        ));
        assert!(matches!(
            parse("---\nmodel: --evil\n---\nx"),
            Err(TaskError::BadModel(_))
        ));
        let e = parse("---\ntitle: ok\npriority: [x\n---\nb").unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn priority_orders_most_urgent_first() {
        let mut v = vec![
            Priority::Low,
            Priority::Critical,
            Priority::Default,
            Priority::High,
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                Priority::Critical,
                Priority::High,
                Priority::Default,
                Priority::Low
            ]
        );
    }

    #[test]
    fn queue_moves_never_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        fs::create_dir_all(q.inbox()).unwrap();
        fs::write(q.pending_path("a.md"), "one").unwrap();
        q.claim("a.md").unwrap();
        assert_eq!(q.dispatched_names().unwrap(), vec!["a.md"]);
        fs::write(q.pending_path("a.md"), "two").unwrap();
        let back = q.unclaim("a.md").unwrap();
        assert_eq!(back, q.inbox().join("a.1.md"));
        let f = q.fail("a.md", false, "broken").unwrap();
        assert!(fs::read_to_string(format!("{}.error", f.display()))
            .unwrap()
            .contains("broken"));
    }

    #[test]
    fn load_refuses_what_is_not_a_task() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        fs::create_dir_all(q.inbox()).unwrap();
        fs::write(dir.path().join("real"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), q.pending_path("l.md")).unwrap();
        assert!(matches!(q.load("l.md"), Err(TaskError::Symlink)));
        fs::write(q.pending_path("bin.md"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(q.load("bin.md"), Err(TaskError::NotUtf8)));
        fs::write(
            q.pending_path("big.md"),
            vec![b'a'; (MAX_TASK_BYTES + 1) as usize],
        )
        .unwrap();
        assert!(matches!(q.load("big.md"), Err(TaskError::TooLarge(_))));
        fs::create_dir(q.pending_path("dir.md")).unwrap();
        assert!(matches!(q.load("dir.md"), Err(TaskError::NotRegular)));
        assert!(matches!(q.load("gone.md"), Err(TaskError::Io(_))));
    }

    #[test]
    fn a_blank_body_is_refused() {
        assert!(matches!(parse(" \n\t\n"), Err(TaskError::Empty)));
        assert!(matches!(
            parse("---\ntitle: only\n---\n  \n"),
            Err(TaskError::Empty)
        ));
    }

    #[test]
    fn a_second_claim_of_one_name_gets_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        fs::create_dir_all(q.inbox()).unwrap();
        fs::write(q.pending_path("n.md"), "first").unwrap();
        assert_eq!(q.claim("n.md").unwrap(), "n.md");
        fs::write(q.pending_path("n.md"), "second").unwrap();
        // n.1.md waits in the inbox: not that name either.
        fs::write(q.pending_path("n.1.md"), "other").unwrap();
        assert_eq!(q.claim("n.md").unwrap(), "n.2.md");
        assert_eq!(
            fs::read_to_string(q.dispatched_path("n.md")).unwrap(),
            "first"
        );
        assert_eq!(
            fs::read_to_string(q.dispatched_path("n.2.md")).unwrap(),
            "second"
        );
    }
}
