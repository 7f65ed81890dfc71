//! Programs and paths as this process would meet them: where a command
//! resolves on `PATH`, whether a path is writable, what `--version` says,
//! all without a shell and with a deadline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `--version` that takes longer than this is reported as hanging.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `cmd` would be run from: itself when it names a path, else the
/// first executable of that name on `PATH`.
pub fn find_program(cmd: &str) -> Result<PathBuf, String> {
    if cmd.contains('/') {
        let p = crate::config::expand_tilde(cmd);
        return if !p.is_file() {
            Err(format!("`{cmd}` does not exist"))
        } else if !executable(&p) {
            Err(format!("`{cmd}` is not executable"))
        } else {
            Ok(p)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .map(|d| d.join(cmd))
        .find(|p| p.is_file() && executable(p))
        .ok_or_else(|| format!("`{cmd}` not found on PATH"))
}

fn executable(p: &Path) -> bool {
    access(p, libc::X_OK)
}

pub fn writable(p: &Path) -> bool {
    access(p, libc::W_OK | libc::X_OK)
}

fn access(p: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

pub fn nearest_existing(p: &Path) -> Option<PathBuf> {
    p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}

/// Runs `prog args` with no input and a deadline; the first line it
/// printed, or why not, in words.
pub fn version(prog: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot be started ({e})"))?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not answer within {}s",
                    VERSION_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot be waited for ({e})")),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.by_ref().take(64 * 1024).read_to_string(&mut out);
    }
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.by_ref().take(64 * 1024).read_to_string(&mut err);
        }
        let said = err
            .lines()
            .chain(out.lines())
            .find(|l| !l.trim().is_empty());
        let words = crate::exitinfo::status_words(status);
        return Err(match said {
            Some(l) => format!("{words} ({})", l.trim()),
            None => words,
        });
    }
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(String::from)
        .ok_or_else(|| "printed nothing".into())
}
