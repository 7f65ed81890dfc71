//! An account's Claude Code config dir: making `.claude.json` ready for an
//! unattended launch (project trusted, one-time screens accepted), merged
//! under Claude Code's own lock, and reading the OAuth credentials.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::fsutil;

/// Claude Code (proper-lockfile) treats a lock older than this as stale.
const LOCK_STALE: Duration = Duration::from_secs(10);
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum AccountError {
    /// `.claude.json` exists but is not a JSON object: never overwrite it.
    Corrupt(PathBuf, String),
    Locked(PathBuf),
    Io(PathBuf, io::Error),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Corrupt(p, e) => write!(
                f,
                "{} is not valid JSON ({e}); not touching it",
                p.display()
            ),
            AccountError::Locked(p) => write!(f, "{} stayed locked by claude", p.display()),
            AccountError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for AccountError {}

/// `<config_dir>/.claude.json`: where claude keeps global state when
/// `CLAUDE_CONFIG_DIR` is set, which every launch does.
pub fn claude_json(config_dir: &Path) -> PathBuf {
    config_dir.join(".claude.json")
}

/// Marks `project` trusted and the one-time screens (onboarding, the
/// bypass-permissions warning) accepted, keeping everything else. Without
/// trust, claude runs no settings-file hook: no guard.
pub fn prepare(config_dir: &Path, project: &Path) -> Result<(), AccountError> {
    fs::create_dir_all(config_dir).map_err(|e| AccountError::Io(config_dir.into(), e))?;
    let path = claude_json(config_dir);
    let _lock = DirLock::acquire(&path)?;
    let (mut root, original) = match fs::read_to_string(&path) {
        Ok(t) if t.trim().is_empty() => (Map::new(), Some(t)),
        Ok(t) => match serde_json::from_str::<Value>(&t) {
            Ok(Value::Object(m)) => (m, Some(t)),
            Ok(_) => return Err(AccountError::Corrupt(path, "not an object".into())),
            Err(e) => return Err(AccountError::Corrupt(path, e.to_string())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Map::new(), None),
        Err(e) => return Err(AccountError::Io(path, e)),
    };
    let mut changed = original.is_none();
    for key in ["hasCompletedOnboarding", "bypassPermissionsModeAccepted"] {
        if root.get(key) != Some(&Value::Bool(true)) {
            root.insert(key.into(), Value::Bool(true));
            changed = true;
        }
    }
    let projects = root
        .entry("projects")
        .or_insert_with(|| Value::Object(Map::new()));
    if !projects.is_object() {
        *projects = Value::Object(Map::new());
        changed = true;
    }
    let entry = projects
        .as_object_mut()
        .expect("made an object above")
        .entry(project.to_string_lossy().into_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let entry = entry.as_object_mut().expect("made an object above");
    if entry.get("hasTrustDialogAccepted") != Some(&Value::Bool(true)) {
        entry.insert("hasTrustDialogAccepted".into(), Value::Bool(true));
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&Value::Object(root)).expect("serializable");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o600)
    };
    fsutil::atomic_write(&path, text.as_bytes(), mode).map_err(|e| AccountError::Io(path, e))
}

/// The lock Claude Code itself uses for `.claude.json`: a directory
/// `<file>.lock` created with mkdir, stale after ten seconds.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(file: &Path) -> Result<DirLock, AccountError> {
        let mut lock = file.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match fs::create_dir(&lock) {
                Ok(()) => return Ok(DirLock(lock)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .map(|t| {
                            SystemTime::now().duration_since(t).unwrap_or_default() > LOCK_STALE
                        })
                        .unwrap_or(false);
                    if stale {
                        log::warn!("removing stale lock {}", lock.display());
                        let _ = fs::remove_dir(&lock);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(AccountError::Locked(file.into()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(AccountError::Io(lock, e)),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// The OAuth access token and its expiry, from `<config_dir>/.credentials.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub access_token: String,
    /// Unix milliseconds, when the file says.
    pub expires_at_ms: Option<u64>,
}

impl Credentials {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

/// Reads the credentials; re-read before every use, since claude rewrites
/// the file when it refreshes. Never written by the daemon.
pub fn read_credentials(config_dir: &Path) -> Result<Credentials, String> {
    let path = config_dir.join(".credentials.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    let oauth = &v["claudeAiOauth"];
    let token = oauth["accessToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{}: no claudeAiOauth.accessToken", path.display()))?;
    Ok(Credentials {
        access_token: token.to_string(),
        expires_at_ms: oauth["expiresAt"].as_u64(),
    })
}

/// Where claude keeps a conversation's transcript.
pub fn transcript_path(config_dir: &Path, cwd: &Path, session_id: &str) -> PathBuf {
    let mangled: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    config_dir
        .join("projects")
        .join(mangled)
        .join(format!("{session_id}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_merges_and_keeps_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = claude_json(dir.path());
        fs::write(
            &p,
            r#"{"oauthAccount":{"email":"a@b"},"projects":{"/other":{"x":1}}}"#,
        )
        .unwrap();
        prepare(dir.path(), Path::new("/srv/p")).unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["oauthAccount"]["email"], "a@b");
        assert_eq!(v["projects"]["/other"]["x"], 1);
        assert_eq!(v["projects"]["/srv/p"]["hasTrustDialogAccepted"], true);
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(v["bypassPermissionsModeAccepted"], true);
        assert!(!dir.path().join(".claude.json.lock").exists());
    }

    #[test]
    fn corrupt_claude_json_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = claude_json(dir.path());
        fs::write(&p, "{broken").unwrap();
        assert!(matches!(
            prepare(dir.path(), Path::new("/x")),
            Err(AccountError::Corrupt(..))
        ));
        assert_eq!(fs::read_to_string(&p).unwrap(), "{broken");
    }

    #[test]
    fn transcript_path_mangles_cwd() {
        let p = transcript_path(Path::new("/c"), Path::new("/srv/my.proj"), "u1");
        assert_eq!(p, Path::new("/c/projects/-srv-my-proj/u1.jsonl"));
    }
}
