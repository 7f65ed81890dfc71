//! Guard deployment: writes the embedded `hook.sh` into a project's
//! `.claude/hooks/` (mode 0555) and registers it in `.claude/settings.json`,
//! merged into what the user has. Fail closed: if either cannot be done the
//! caller must not launch.
//!
//! Also the daemon-owned settings file passed with `claude --settings`,
//! which outranks project settings: it keeps the hooks registered and
//! `disableAllHooks` false even if an agent edits the project's files.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

use crate::config::GuardMode;
use crate::fsutil;

/// The guard script, embedded so one binary carries the authoritative copy.
pub const HOOK_SCRIPT: &str = include_str!("../hook.sh");
pub const HOOK_FILE: &str = "claude-failover.sh";
/// How claude runs the hook; also how we recognise our own registration.
pub const HOOK_COMMAND: &str = "\"${CLAUDE_PROJECT_DIR}\"/.claude/hooks/claude-failover.sh";
/// Seconds claude gives the hook. Short: a hung guard must not hang the agent.
const HOOK_TIMEOUT: u64 = 10;
/// Events the hook is registered for, with the tool matcher where one applies.
const EVENTS: &[(&str, Option<&str>)] = &[
    ("PreToolUse", Some("Bash|Edit|Write|MultiEdit|NotebookEdit")),
    ("SessionStart", None),
    ("Stop", None),
    ("StopFailure", None),
    ("Notification", None),
    ("SessionEnd", None),
    ("ConfigChange", None),
];

#[derive(Debug)]
pub enum GuardError {
    /// `.claude/settings.json` exists but is not a JSON object.
    Settings(PathBuf, String),
    /// `.claude` or `.claude/hooks` is a symlink: we would write elsewhere.
    Symlink(PathBuf),
    Io(PathBuf, io::Error),
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Settings(p, e) => write!(
                f,
                "{} is not valid settings JSON ({e}); fix it so the guard can be registered",
                p.display()
            ),
            GuardError::Symlink(p) => write!(
                f,
                "{} is a symbolic link; refusing to deploy the guard through it",
                p.display()
            ),
            GuardError::Io(p, e) => write!(f, "cannot write {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for GuardError {}

/// The script with the deploy-time settings baked in.
pub fn baked_script(mode: GuardMode, events_dir: Option<&Path>) -> String {
    let events = events_dir
        .map(|p| shell_quote(&p.to_string_lossy()))
        .unwrap_or_else(|| "''".into());
    let mut out = String::with_capacity(HOOK_SCRIPT.len() + 64);
    for line in HOOK_SCRIPT.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if bare.starts_with("CF_BAKED_MODE=") {
            out.push_str(&format!("CF_BAKED_MODE={}\n", mode.as_str()));
        } else if bare.starts_with("CF_BAKED_EVENTS=") {
            out.push_str(&format!("CF_BAKED_EVENTS={events}\n"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `'...'` with embedded quotes escaped: safe for any POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `hooks` object that registers the guard for every event.
pub fn registration() -> Value {
    let mut hooks = Map::new();
    for (event, matcher) in EVENTS {
        let mut group = Map::new();
        if let Some(m) = matcher {
            group.insert("matcher".into(), json!(m));
        }
        group.insert(
            "hooks".into(),
            json!([{ "type": "command", "command": HOOK_COMMAND, "timeout": HOOK_TIMEOUT }]),
        );
        hooks.insert((*event).into(), json!([Value::Object(group)]));
    }
    Value::Object(hooks)
}

/// Deploys the guard into `project`: the script, then the registration.
pub fn deploy(
    project: &Path,
    mode: GuardMode,
    events_dir: Option<&Path>,
) -> Result<(), GuardError> {
    deploy_script(project, mode, events_dir)?;
    merge_settings(&project.join(".claude/settings.json"))
}

/// Writes only the script: in a task's worktree the hooks come from the
/// daemon's `--settings` file, so the worktree's tracked settings stay as
/// committed.
pub fn deploy_script(
    dir: &Path,
    mode: GuardMode,
    events_dir: Option<&Path>,
) -> Result<(), GuardError> {
    let claude_dir = dir.join(".claude");
    let hooks_dir = claude_dir.join("hooks");
    for d in [&claude_dir, &hooks_dir] {
        if fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(GuardError::Symlink(d.clone()));
        }
    }
    fs::create_dir_all(&hooks_dir).map_err(|e| GuardError::Io(hooks_dir.clone(), e))?;
    write_script(&hooks_dir, &baked_script(mode, events_dir))
}

fn write_script(hooks_dir: &Path, script: &str) -> Result<(), GuardError> {
    let path = hooks_dir.join(HOOK_FILE);
    let intact = fs::symlink_metadata(&path)
        .is_ok_and(|m| m.file_type().is_file() && m.permissions().mode() & 0o7777 == 0o555)
        && fs::read(&path).is_ok_and(|b| b == script.as_bytes());
    if intact {
        return Ok(());
    }
    match fsutil::atomic_write(&path, script.as_bytes(), 0o555) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Someone made the folder read-only; it is ours to fix.
            fs::set_permissions(hooks_dir, fs::Permissions::from_mode(0o755))
                .and_then(|_| fsutil::atomic_write(&path, script.as_bytes(), 0o555))
                .map_err(|e| GuardError::Io(path, e))
        }
        Err(e) => Err(GuardError::Io(path, e)),
    }
}

/// Adds our registration to the settings file, keeping every key and hook
/// the user has, replacing our own earlier entries rather than adding more.
fn merge_settings(path: &Path) -> Result<(), GuardError> {
    let (mut root, original) = match fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => (Map::new(), Some(text)),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => (m, Some(text)),
            Ok(_) => {
                return Err(GuardError::Settings(
                    path.into(),
                    "the top level is not an object".into(),
                ))
            }
            Err(e) => return Err(GuardError::Settings(path.into(), e.to_string())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Map::new(), None),
        Err(e) => return Err(GuardError::Io(path.into(), e)),
    };
    if root.get("disableAllHooks") == Some(&Value::Bool(true)) {
        log::warn!(
            "{} sets disableAllHooks; agents launched by the daemon still run the guard (--settings), sessions started by hand do not",
            path.display()
        );
    }
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    if !hooks.is_object() {
        return Err(GuardError::Settings(
            path.into(),
            "`hooks` is not an object".into(),
        ));
    }
    let hooks = hooks.as_object_mut().expect("checked above");
    let Value::Object(ours) = registration() else {
        unreachable!()
    };
    for (event, groups) in ours {
        let list = hooks
            .entry(event.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(list) = list.as_array_mut() else {
            return Err(GuardError::Settings(
                path.into(),
                format!("`hooks.{event}` is not an array"),
            ));
        };
        remove_ours(list);
        list.extend(groups.as_array().cloned().unwrap_or_default());
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("serializable");
    text.push('\n');
    if original.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    fsutil::atomic_write(path, text.as_bytes(), mode).map_err(|e| GuardError::Io(path.into(), e))
}

/// Drops our hook from each group, and groups left empty by that.
fn remove_ours(groups: &mut Vec<Value>) {
    let is_ours = |h: &Value| {
        h.get("command")
            .and_then(Value::as_str)
            .is_some_and(|c| c.contains(HOOK_FILE))
    };
    groups.retain_mut(|g| {
        let Some(hs) = g.get_mut("hooks").and_then(Value::as_array_mut) else {
            return true;
        };
        let before = hs.len();
        hs.retain(|h| !is_ours(h));
        !(hs.is_empty() && before > 0)
    });
}

/// Writes the daemon-owned `--settings` file and returns its path.
pub fn write_pinned_settings(state_dir: &Path) -> io::Result<PathBuf> {
    let path = state_dir.join("guard-settings.json");
    let doc = json!({ "disableAllHooks": false, "hooks": registration() });
    let mut text = serde_json::to_string_pretty(&doc).expect("serializable");
    text.push('\n');
    if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        fsutil::atomic_write(&path, text.as_bytes(), 0o444)?;
    }
    Ok(path)
}

/// The guard's verdict on one tool call, for `hook check`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Warn(String),
    Block(String),
}

/// Runs the embedded script on a PreToolUse JSON, as claude would.
pub fn check(input: &str, mode: GuardMode) -> io::Result<Verdict> {
    let dir = std::env::temp_dir().join(format!("claude-failover-check-{}", std::process::id()));
    fs::create_dir_all(dir.join(".claude/hooks"))?;
    let script = dir.join(".claude/hooks").join(HOOK_FILE);
    fs::write(&script, baked_script(mode, None))?;
    let out = Command::new("bash")
        .arg(&script)
        .env("CLAUDE_PROJECT_DIR", &dir)
        .env_remove("CLAUDE_FAILOVER_EVENTS")
        .env_remove("CLAUDE_FAILOVER_SESSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(input.as_bytes());
            }
            child.wait_with_output()
        });
    let audit =
        fs::read_to_string(dir.join(".claude/hooks/claude-failover.audit.log")).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok(match out.status.code() {
        Some(2) => Verdict::Block(stderr),
        Some(0) if !audit.trim().is_empty() => {
            let last = audit.trim().lines().last().unwrap_or("");
            let reason = serde_json::from_str::<Value>(last)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| last.to_string());
            Verdict::Warn(reason)
        }
        Some(0) => Verdict::Allow,
        other => Verdict::Block(format!(
            "the guard failed (it {}): {stderr}",
            crate::exitinfo::pane_words(other)
        )),
    })
}

/// A PreToolUse input for one command (Bash) or path (file tools).
pub fn tool_call_json(tool: &str, arg: &str, cwd: &Path) -> String {
    let input = match tool {
        "Bash" => json!({ "command": arg, "description": "hook check" }),
        "NotebookEdit" => json!({ "notebook_path": arg, "new_source": "" }),
        "Edit" => json!({ "file_path": arg, "old_string": "", "new_string": "" }),
        _ => json!({ "file_path": arg, "content": "" }),
    };
    json!({
        "session_id": "hook-check",
        "transcript_path": "/dev/null",
        "cwd": cwd,
        "permission_mode": "bypassPermissions",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": "toolu_check",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bakes_mode_and_events() {
        let s = baked_script(GuardMode::Learn, Some(Path::new("/st/it's/events")));
        assert!(s.contains("\nCF_BAKED_MODE=learn\n"), "mode not baked");
        assert!(
            s.contains("\nCF_BAKED_EVENTS='/st/it'\\''s/events'\n"),
            "events not baked"
        );
    }

    #[test]
    fn merge_keeps_user_keys_and_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("settings.json");
        fs::write(
            &p,
            r#"{"model":"opus","hooks":{"Stop":[{"hooks":[{"type":"command","command":"notify-me"}]}]}}"#,
        )
        .unwrap();
        merge_settings(&p).unwrap();
        merge_settings(&p).unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["model"], "opus");
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2, "{stop:?}");
        assert_eq!(stop[0]["hooks"][0]["command"], "notify-me");
        assert_eq!(v["hooks"]["PreToolUse"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn invalid_settings_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".claude")).unwrap();
        fs::write(dir.path().join(".claude/settings.json"), "{ nope").unwrap();
        let e = deploy(dir.path(), GuardMode::Enforce, None).unwrap_err();
        assert!(matches!(e, GuardError::Settings(..)), "{e}");
        assert_eq!(
            fs::read_to_string(dir.path().join(".claude/settings.json")).unwrap(),
            "{ nope"
        );
    }

    #[test]
    fn tampered_hook_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        deploy(dir.path(), GuardMode::Enforce, None).unwrap();
        let hook = dir.path().join(".claude/hooks").join(HOOK_FILE);
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
        deploy(dir.path(), GuardMode::Enforce, None).unwrap();
        assert_eq!(
            fs::read_to_string(&hook).unwrap(),
            baked_script(GuardMode::Enforce, None)
        );
        assert_eq!(
            fs::metadata(&hook).unwrap().permissions().mode() & 0o777,
            0o555
        );
    }
}
