//! inotify with a clean stop: a reader thread blocks in `poll(2)` on the
//! inotify fd and a wake-up socket, and forwards events on a channel. Idle
//! means blocked in the kernel, not polling on a timer.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// One filesystem event, with the watched folder resolved.
#[derive(Debug, Clone)]
pub enum FsEvent {
    /// `name` appeared or was finished in `dir`.
    Changed { dir: PathBuf, name: OsString },
    /// A watched folder went away.
    DirGone(PathBuf),
    /// The kernel queue overflowed: events were lost, rescan everything.
    Overflow,
}

/// The watched folders, both ways: the reader resolves an event's
/// descriptor, discovery asks whether a folder is watched (thousands of
/// projects: hashed, not scanned).
#[derive(Default)]
struct Dirs {
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    watched: HashSet<PathBuf>,
}

impl Dirs {
    fn forget(&mut self, wd: &WatchDescriptor) -> Option<PathBuf> {
        let dir = self.by_wd.remove(wd)?;
        self.watched.remove(&dir);
        Some(dir)
    }
}

pub struct FsWatch {
    watches: Watches,
    dirs: Arc<Mutex<Dirs>>,
    wake: UnixStream,
    reader: Option<JoinHandle<()>>,
}

impl FsWatch {
    pub fn new() -> io::Result<(FsWatch, Receiver<FsEvent>)> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let (wake, wake_rx) = UnixStream::pair()?;
        let dirs: Arc<Mutex<Dirs>> = Arc::default();
        let (tx, rx) = unbounded();
        let d = dirs.clone();
        let reader = std::thread::Builder::new()
            .name("fswatch".into())
            .spawn(move || read_loop(inotify, wake_rx, d, tx))?;
        Ok((
            FsWatch {
                watches,
                dirs,
                wake,
                reader: Some(reader),
            },
            rx,
        ))
    }

    /// Watches `dir` for files finished (`CLOSE_WRITE`) or moved in
    /// (`MOVED_TO`), and subfolders created. Never bare `CREATE` for files:
    /// it fires before the writer is done.
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::CREATE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        let wd = self.watches.add(dir, mask)?;
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        dirs.forget(&wd);
        dirs.by_wd.insert(wd, dir.to_path_buf());
        dirs.watched.insert(dir.to_path_buf());
        Ok(())
    }

    pub fn is_watched(&self, dir: &Path) -> bool {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .watched
            .contains(dir)
    }
}

impl Drop for FsWatch {
    fn drop(&mut self) {
        let _ = self.wake.write_all(b"x");
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn read_loop(mut inotify: Inotify, wake: UnixStream, dirs: Arc<Mutex<Dirs>>, tx: Sender<FsEvent>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds = [
        libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("inotify poll failed: {}", io::Error::last_os_error());
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let events = match inotify.read_events(&mut buf) {
            Ok(ev) => ev,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::error!("inotify read failed: {e}");
                return;
            }
        };
        for ev in events {
            let out = if ev.mask.contains(EventMask::Q_OVERFLOW) {
                FsEvent::Overflow
            } else {
                let dir = {
                    let dirs = dirs.lock().unwrap_or_else(|e| e.into_inner());
                    dirs.by_wd.get(&ev.wd).cloned()
                };
                let Some(dir) = dir else { continue };
                if ev
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
                {
                    dirs.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .forget(&ev.wd);
                    FsEvent::DirGone(dir)
                } else if ev.mask.contains(EventMask::CREATE) && !ev.mask.contains(EventMask::ISDIR)
                {
                    // A file being created is not finished yet.
                    continue;
                } else {
                    match ev.name {
                        Some(name) => FsEvent::Changed {
                            dir,
                            name: name.to_os_string(),
                        },
                        None => continue,
                    }
                }
            };
            if tx.send(out).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_finished_files_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rx) = FsWatch::new().unwrap();
        w.watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.md"), "x").unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            FsEvent::Changed { name, .. } => assert_eq!(name, "a.md"),
            other => panic!("unexpected {other:?}"),
        }
        drop(w); // must not hang
    }
}
