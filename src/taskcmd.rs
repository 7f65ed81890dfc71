//! The task commands on the queue folders: `add` (a new task, written
//! atomically under a name no other task has), `retry` (failed/ back to
//! the inbox) and the file side of `tasks` (what is running, failed, done).
//! The daemon is not needed: it sees the files through inotify.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::task::{Priority, Queue};

/// A task name is cut to this many characters before `.md`.
const MAX_STEM: usize = 60;
/// `tasks` shows this many done tasks per project.
pub const RECENT_DONE: usize = 5;

/// What `add` writes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NewTask {
    pub title: Option<String>,
    pub priority: Option<Priority>,
    pub model: Option<String>,
    /// The wished-for name (without `.md`); made unique.
    pub name: Option<String>,
    pub body: String,
}

/// The project `-p` names: a configured project's path (as written or
/// resolved), or its folder name when only one project has it. Without
/// `-p`: the project the current directory is in, else the only project.
pub fn resolve_project(cfg: &Config, wanted: Option<&str>) -> Result<PathBuf, String> {
    let projects = cfg.project_list();
    let names = || {
        projects
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if projects.is_empty() {
        return Err("no project is configured: add one under projects".into());
    }
    let same = |a: &Path, b: &Path| {
        a == b || matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    };
    let Some(w) = wanted else {
        if let Ok(cwd) = std::env::current_dir() {
            if let Some(p) = projects
                .iter()
                .find(|p| cwd.ancestors().any(|a| same(a, p)))
            {
                return Ok(p.clone());
            }
        }
        return match projects.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(format!(
                "{} projects are configured: name one with -p ({})",
                projects.len(),
                names()
            )),
        };
    };
    let path = crate::config::expand_tilde(w);
    if let Some(p) = projects.iter().find(|p| same(p, &path)) {
        return Ok(p.clone());
    }
    let by_name: Vec<&PathBuf> = projects
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == w))
        .collect();
    match by_name.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "`{w}` is not a configured project; projects: {}",
            names()
        )),
        _ => Err(format!(
            "`{w}` names several projects; give its path: {}",
            names()
        )),
    }
}

/// Writes the task into `project`'s inbox and returns its path. The text
/// is complete before the name appears (a hidden temp file, then a rename
/// that fails rather than replace anything), so the dispatcher never reads
/// half a task and no task is ever overwritten.
pub fn add(project: &Path, t: &NewTask) -> Result<PathBuf, String> {
    if t.body.trim().is_empty() {
        return Err("the task is empty: give its text as an argument or on stdin (-)".into());
    }
    let text = render(t)?;
    // The same checks the dispatcher makes, before anything is written.
    crate::task::parse(&text).map_err(|e| format!("the task {e}"))?;
    if text.len() as u64 > crate::task::MAX_TASK_BYTES {
        return Err(format!(
            "the task is {} bytes; tasks are limited to {} bytes",
            text.len(),
            crate::task::MAX_TASK_BYTES
        ));
    }
    let q = Queue::new(project);
    let inbox = q.inbox();
    fs::create_dir_all(&inbox).map_err(|e| format!("cannot create {}: {e}", inbox.display()))?;
    let stem = slug(t.name.as_deref().or(t.title.as_deref()).unwrap_or(&t.body));
    let tmp = inbox.join(format!(".{stem}.md.add-{}", std::process::id()));
    write_new(&tmp, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let result = (1..10_000)
        .map(|n| match n {
            1 => format!("{stem}.md"),
            n => format!("{stem}-{n}.md"),
        })
        .filter(|name| !taken(&q, name))
        .find_map(|name| {
            let dest = inbox.join(&name);
            match crate::fsutil::rename_noreplace(&tmp, &dest) {
                Ok(()) => Some(Ok(dest)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(format!("cannot add {}: {e}", dest.display()))),
            }
        })
        .unwrap_or_else(|| Err(format!("no free name for {stem}.md in {}", inbox.display())));
    let _ = fs::remove_file(&tmp);
    let dest = result?;
    let _ = crate::fsutil::sync_dir(&inbox);
    Ok(dest)
}

/// A name already used anywhere in the queue, so records never mix.
fn taken(q: &Queue, name: &str) -> bool {
    [
        q.pending_path(name),
        q.dispatched_path(name),
        q.done_dir().join(name),
        q.failed_dir().join(name),
    ]
    .iter()
    .any(|p| fs::symlink_metadata(p).is_ok())
}

fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The file: frontmatter for what was given (YAML-quoted), then the body.
fn render(t: &NewTask) -> Result<String, String> {
    let mut meta = serde_yaml::Mapping::new();
    if let Some(title) = &t.title {
        meta.insert("title".into(), title.as_str().into());
    }
    if let Some(p) = t.priority {
        meta.insert("priority".into(), p.as_str().into());
    }
    if let Some(m) = &t.model {
        meta.insert("model".into(), m.as_str().into());
    }
    let body = t.body.trim_end();
    if meta.is_empty() {
        return Ok(format!("{body}\n"));
    }
    let yaml =
        serde_yaml::to_string(&meta).map_err(|e| format!("cannot write the frontmatter: {e}"))?;
    Ok(format!("---\n{yaml}---\n{body}\n"))
}

/// A file-name stem from free text: lowercase ASCII letters and digits,
/// `-` between words, at most [`MAX_STEM`] characters; `task` if nothing is left.
pub fn slug(text: &str) -> String {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let first = first.strip_suffix(".md").unwrap_or(first);
    let mut out = String::new();
    for c in first.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= MAX_STEM {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "task".into()
    } else {
        out
    }
}

/// `failed/NAME` back into the inbox under the same name (refused when
/// the inbox has one: nothing is overwritten); its `.error` note stays in
/// `failed/` as `NAME.error.retried`, so the reason is not lost.
pub fn retry(project: &Path, name: &str) -> Result<PathBuf, String> {
    let name = if name.ends_with(".md") {
        name.to_string()
    } else {
        format!("{name}.md")
    };
    if name.contains('/') || !crate::task::is_task_name(&name) {
        return Err(format!("`{name}` is not a task name"));
    }
    let q = Queue::new(project);
    let from = q.failed_dir().join(&name);
    if fs::symlink_metadata(&from).is_err() {
        let failed = failed(project)
            .into_iter()
            .map(|f| f.name)
            .collect::<Vec<_>>();
        return Err(match failed.as_slice() {
            [] => format!(
                "{name} is not in {}: nothing has failed there",
                q.failed_dir().display()
            ),
            f => format!(
                "{name} is not in {}; failed there: {}",
                q.failed_dir().display(),
                f.join(", ")
            ),
        });
    }
    let queued = [q.pending_path(&name), q.dispatched_path(&name)];
    if queued.iter().any(|p| fs::symlink_metadata(p).is_ok()) {
        return Err(format!("{name} is already in {}", q.inbox().display()));
    }
    fs::create_dir_all(q.inbox())
        .map_err(|e| format!("cannot create {}: {e}", q.inbox().display()))?;
    let dest = q.pending_path(&name);
    crate::fsutil::rename_noreplace(&from, &dest)
        .map_err(|e| format!("cannot move {name} back: {e}"))?;
    let note = q.failed_dir().join(format!("{name}.error"));
    if note.exists() {
        let _ = crate::fsutil::move_no_clobber(
            &note,
            &q.failed_dir().join(format!("{name}.error.retried")),
        );
    }
    let _ = crate::fsutil::sync_dir(&q.inbox());
    Ok(dest)
}

/// A task in `failed/` and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub name: String,
    /// The reason line of `NAME.error`, when there is one.
    pub reason: Option<String>,
    /// When it failed, as written in the note.
    pub at: Option<String>,
}

/// `failed/`, oldest first.
pub fn failed(project: &Path) -> Vec<Failed> {
    let dir = Queue::new(project).failed_dir();
    names_by_mtime(&dir)
        .into_iter()
        .map(|name| {
            let note = fs::read_to_string(dir.join(format!("{name}.error"))).unwrap_or_default();
            let mut lines = note.lines();
            let at = lines.next().map(str::to_string).filter(|s| !s.is_empty());
            let reason = lines.collect::<Vec<_>>().join(" ");
            Failed {
                name,
                reason: Some(reason).filter(|r| !r.trim().is_empty()),
                at,
            }
        })
        .collect()
}

/// The newest `RECENT_DONE` of `done/`, newest first.
pub fn recent_done(project: &Path) -> Vec<String> {
    let mut done = names_by_mtime(&Queue::new(project).done_dir());
    done.reverse();
    done.truncate(RECENT_DONE);
    done
}

/// Task names (`*.md`) in `dir`, oldest first.
fn names_by_mtime(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(std::time::SystemTime, String)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !crate::task::is_task_name(&name) {
                return None;
            }
            let t = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((t, name))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}
