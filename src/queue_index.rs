//! The pending tasks of every project, kept in memory by the dispatcher so
//! a dispatch does not re-read every inbox: inotify names what changed, a
//! claim removes what it took, and the periodic rescan lists every inbox
//! again (a `stat` per file, re-reading only files whose size, mtime or
//! inode changed), which catches whatever the events missed (a file
//! deleted by hand, a lost event).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::task::{Priority, Queue, Task, TaskError};

/// Dispatch order: most urgent, then oldest, then project and name.
type Key = (Priority, SystemTime, PathBuf, String);

/// What tells a file changed without reading it.
type Stamp = (SystemTime, u64, u64);

/// A file in an inbox that is not a task (it went to `failed/` unless the
/// refresh was a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub project: PathBuf,
    pub name: String,
    pub reason: String,
}

#[derive(Default)]
struct Inbox {
    tasks: HashMap<String, (Task, Stamp)>,
    /// Names inotify reported since the last refresh.
    stale: HashSet<String>,
    /// List the whole inbox at the next refresh (new project, rescan).
    relist: bool,
}

#[derive(Default)]
pub struct QueueIndex {
    inboxes: HashMap<PathBuf, Inbox>,
    order: BTreeSet<Key>,
}

fn key(t: &Task) -> Key {
    (t.meta.priority, t.mtime, t.project.clone(), t.name.clone())
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path)?;
    Ok((md.modified()?, md.len(), md.ino()))
}

impl QueueIndex {
    /// The projects to index: new ones are listed in full at the next
    /// refresh, those no longer there are forgotten.
    pub fn set_projects(&mut self, projects: &[PathBuf]) {
        let keep: HashSet<&PathBuf> = projects.iter().collect();
        let gone: Vec<PathBuf> = self
            .inboxes
            .keys()
            .filter(|p| !keep.contains(p))
            .cloned()
            .collect();
        for p in gone {
            if let Some(inbox) = self.inboxes.remove(&p) {
                for (t, _) in inbox.tasks.values() {
                    self.order.remove(&key(t));
                }
            }
        }
        for p in projects {
            self.inboxes.entry(p.clone()).or_insert_with(|| Inbox {
                relist: true,
                ..Inbox::default()
            });
        }
    }

    /// inotify: `name` appeared or was rewritten in `project`'s inbox.
    pub fn changed(&mut self, project: &Path, name: &str) {
        if let Some(inbox) = self.inboxes.get_mut(project) {
            inbox.stale.insert(name.to_string());
        }
    }

    /// A task left the inbox (claimed, or found gone).
    pub fn remove(&mut self, project: &Path, name: &str) {
        if let Some((t, _)) = self
            .inboxes
            .get_mut(project)
            .and_then(|i| i.tasks.remove(name))
        {
            self.order.remove(&key(&t));
        }
    }

    /// The next refresh lists this project's inbox again (a watch was just
    /// added: what came before it had no event).
    pub fn relist(&mut self, project: &Path) {
        if let Some(inbox) = self.inboxes.get_mut(project) {
            inbox.relist = true;
        }
    }

    /// The next refresh lists every inbox again (the periodic rescan, an
    /// inotify overflow).
    pub fn relist_all(&mut self) {
        for inbox in self.inboxes.values_mut() {
            inbox.relist = true;
        }
    }

    /// Brings the index up to date with the disk, reading only what
    /// changed. Files that are not tasks go to `failed/` (unless `dry_run`)
    /// and are returned.
    pub fn refresh(&mut self, dry_run: bool) -> Vec<Bad> {
        let mut bad = Vec::new();
        let mut work: Vec<(PathBuf, Vec<String>, bool)> = Vec::new();
        for (project, inbox) in self.inboxes.iter_mut() {
            if inbox.relist {
                let q = Queue::new(project);
                match q.pending_names() {
                    Ok(names) => {
                        let present: HashSet<&String> = names.iter().collect();
                        let gone: Vec<String> = inbox
                            .tasks
                            .keys()
                            .filter(|n| !present.contains(n))
                            .cloned()
                            .collect();
                        work.push((project.clone(), gone, false));
                        work.push((project.clone(), names, true));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let all = inbox.tasks.keys().cloned().collect();
                        work.push((project.clone(), all, false));
                    }
                    Err(e) => log::warn!("cannot read {}: {e}", q.inbox().display()),
                }
                inbox.relist = false;
                inbox.stale.clear();
            } else if !inbox.stale.is_empty() {
                work.push((project.clone(), inbox.stale.drain().collect(), true));
            }
        }
        for (project, names, look) in work {
            for name in names {
                if look {
                    self.look(&project, &name, dry_run, &mut bad);
                } else {
                    self.remove(&project, &name);
                }
            }
        }
        bad
    }

    /// Re-reads one file when its stamp changed; drops it when it is gone
    /// or not a task.
    fn look(&mut self, project: &Path, name: &str, dry_run: bool, bad: &mut Vec<Bad>) {
        let q = Queue::new(project);
        let now = match stamp(&q.pending_path(name)) {
            Ok(s) => s,
            Err(_) => return self.remove(project, name),
        };
        let cached = self
            .inboxes
            .get(project)
            .and_then(|i| i.tasks.get(name))
            .map(|(_, s)| *s);
        if cached == Some(now) {
            return;
        }
        self.remove(project, name);
        match q.load(name) {
            Ok(t) => {
                self.order.insert(key(&t));
                if let Some(inbox) = self.inboxes.get_mut(project) {
                    inbox.tasks.insert(name.to_string(), (t, now));
                }
            }
            Err(e) if e.is_task_fault() => {
                let reason = format!("{name} {e}");
                if !dry_run {
                    if let Err(m) = q.fail(name, false, &reason) {
                        log::error!("cannot move {name} to failed/: {m}");
                    }
                }
                bad.push(Bad {
                    project: project.to_path_buf(),
                    name: name.to_string(),
                    reason,
                });
            }
            Err(TaskError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("skipping {name} in {}: {e}", project.display()),
        }
    }

    /// Pending tasks in dispatch order.
    pub fn ordered(&self) -> impl Iterator<Item = &Task> + '_ {
        self.order.iter().filter_map(|(_, _, p, n)| {
            self.inboxes
                .get(p)
                .and_then(|i| i.tasks.get(n))
                .map(|(t, _)| t)
        })
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn project(root: &Path, n: &str) -> PathBuf {
        let p = root.join(n);
        fs::create_dir_all(p.join(".agent-queue/inbox")).unwrap();
        p
    }

    fn names(ix: &QueueIndex) -> Vec<String> {
        ix.ordered().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn follows_events_claims_and_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let a = project(dir.path(), "a");
        let inbox = a.join(".agent-queue/inbox");
        fs::write(inbox.join("one.md"), "one").unwrap();
        let mut ix = QueueIndex::default();
        ix.set_projects(std::slice::from_ref(&a));
        assert!(ix.refresh(false).is_empty());
        assert_eq!(names(&ix), ["one.md"]);

        fs::write(inbox.join("two.md"), "---\npriority: high\n---\ntwo").unwrap();
        // Not listed again without an event or a rescan.
        ix.refresh(false);
        assert_eq!(ix.len(), 1);
        ix.changed(&a, "two.md");
        ix.refresh(false);
        assert_eq!(names(&ix), ["two.md", "one.md"]);

        // A claim renames the file and tells the index.
        fs::rename(inbox.join("two.md"), inbox.join("two.md.dispatched")).unwrap();
        ix.remove(&a, "two.md");
        fs::remove_file(inbox.join("one.md")).unwrap();
        assert_eq!(names(&ix), ["one.md"]);
        ix.relist_all();
        ix.refresh(false);
        assert!(ix.is_empty());
    }

    #[test]
    fn bad_files_go_to_failed_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = project(dir.path(), "a");
        fs::write(
            a.join(".agent-queue/inbox/bad.md"),
            "---\npriority: soon\n---\nx",
        )
        .unwrap();
        let mut ix = QueueIndex::default();
        ix.set_projects(std::slice::from_ref(&a));
        let bad = ix.refresh(false);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "bad.md");
        assert!(a.join(".agent-queue/failed/bad.md").exists());
        ix.relist_all();
        assert!(ix.refresh(false).is_empty());
        assert!(ix.is_empty());
    }

    #[test]
    fn a_rewritten_file_is_read_again_and_a_dropped_project_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let a = project(dir.path(), "a");
        let f = a.join(".agent-queue/inbox/t.md");
        fs::write(&f, "short").unwrap();
        let mut ix = QueueIndex::default();
        ix.set_projects(std::slice::from_ref(&a));
        ix.refresh(false);
        fs::write(&f, "a longer body").unwrap();
        ix.relist_all();
        ix.refresh(false);
        assert_eq!(ix.ordered().next().unwrap().body.trim(), "a longer body");
        ix.set_projects(&[]);
        assert!(ix.is_empty());
    }
}
