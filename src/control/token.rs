//! The control plane's bearer token: created once (0600), compared in constant time.

#[allow(unused_imports)]
use super::*;

/// Reads the token, or creates the file (mode 0600, folder 0700) with 32
/// random bytes in hex when it is missing.
pub fn load_or_create_token(path: &Path) -> Result<String, String> {
    match fs::read_to_string(path) {
        Ok(s) => {
            check_token(&s, path)?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "{} is readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        m.permissions().mode() & 0o777
                    );
                }
            }
            Ok(s.trim().to_string())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = crate::fsutil::parent(path);
            {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let bytes = crate::fsutil::random_bytes::<32>()
                .map_err(|e| format!("cannot read random bytes: {e}"))?;
            let token = hex(&bytes);
            crate::fsutil::atomic_write(path, format!("{token}\n").as_bytes(), 0o600)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            log::info!("created the control plane token in {}", path.display());
            // Another process may have raced us: what is on disk wins.
            let s = fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            check_token(&s, path)?;
            Ok(s.trim().to_string())
        }
        Err(e) => Err(format!("cannot read the token {}: {e}", path.display())),
    }
}

pub fn check_token(s: &str, path: &Path) -> Result<(), String> {
    let t = s.trim();
    if t.len() < 16 {
        return Err(format!(
            "the token in {} is empty or shorter than 16 characters; delete the file to have one made",
            path.display()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the token in {} must be printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(())
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal contents, in time that depends on the length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}
