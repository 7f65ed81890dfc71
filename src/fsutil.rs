//! File operations that must not lose data: atomic writes, no-clobber moves,
//! moving a corrupt file aside. Every state file and every task move goes
//! through here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically: temp file in the same folder, fsync,
/// rename over the target, fsync the folder. Readers see the old or the new
/// content, never a torn one, even across a crash.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        unique()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Renames `from` to `to` only if `to` does not exist, in one step
/// (`renameat2(RENAME_NOREPLACE)`): the name appears complete, as a move
/// inotify reports, and nothing is ever replaced. `AlreadyExists` when taken.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths for the call's duration.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // A filesystem without RENAME_NOREPLACE: check, then rename.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        _ => Err(e),
    }
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The folder a path lives in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The first of `to`, `to` with `.1`, `.2`, … before the extension, that
/// does not exist yet.
pub fn free_name(to: &Path) -> io::Result<PathBuf> {
    let mut candidate = to.to_path_buf();
    for n in 1..10_000 {
        if fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
        candidate = numbered(to, n);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {}", to.display()),
    ))
}

/// Renames `from` to `to`, or to `to` with a `.N` suffix before the extension
/// when `to` exists: a task is never overwritten. Returns the path used.
pub fn move_no_clobber(from: &Path, to: &Path) -> io::Result<PathBuf> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut candidate = to.to_path_buf();
    for n in 1..10_000 {
        // link + unlink would be race-free, but tasks may be symlinks or
        // live on filesystems without hard links; the daemon is the only
        // writer of these folders, so exists-then-rename is enough.
        if fs::symlink_metadata(&candidate).is_err() {
            fs::rename(from, &candidate)?;
            let _ = sync_dir(parent(&candidate));
            return Ok(candidate);
        }
        candidate = numbered(to, n);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {}", to.display()),
    ))
}

/// `dir/name.md` -> `dir/name.N.md`; `dir/name` -> `dir/name.N`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name.rfind('.') {
        Some(i) if i > 0 => format!("{}.{}{}", &name[..i], n, &name[i..]),
        _ => format!("{name}.{n}"),
    };
    path.with_file_name(renamed)
}

/// Moves a file that could not be parsed to `NAME.corrupt-<unix secs>` so a
/// person can look at it; never deletes it.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = crate::timefmt::now_secs();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    move_no_clobber(path, Path::new(&aside))
}

/// A per-process counter to keep temp names distinct between threads.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// 16 random bytes from the kernel, for uuids and tokens.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut f = File::open("/dev/urandom")?;
    io::Read::read_exact(&mut f, &mut buf)?;
    Ok(buf)
}

/// A random (version 4) uuid, as claude expects for `--session-id`.
pub fn new_uuid() -> io::Result<String> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o555).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o555
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp file left behind");
    }

    #[test]
    fn move_no_clobber_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.md");
        let b = dir.path().join("b.md");
        let dest = dir.path().join("out/x.md");
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        assert_eq!(move_no_clobber(&a, &dest).unwrap(), dest);
        let second = move_no_clobber(&b, &dest).unwrap();
        assert_eq!(second, dir.path().join("out/x.1.md"));
        assert_eq!(fs::read_to_string(&dest).unwrap(), "a");
        assert_eq!(fs::read_to_string(&second).unwrap(), "b");
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid().unwrap());
    }
}
