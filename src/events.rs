//! Event files that hook.sh drops into `state_dir/events` (one JSON object
//! per file, written atomically), parsed into types. The watcher applies
//! them in name (time) order and removes each once applied; a file that
//! cannot be read as an event is moved to `events/rejected/`, not deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Event files larger than this are rejected unread (hook input can carry a
/// whole file's content; we only need the small fields).
const MAX_EVENT_BYTES: u64 = 4 << 20;

/// What one event file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `CLAUDE_FAILOVER_SESSION`, empty for sessions started by hand.
    pub session: String,
    /// `TMUX_PANE` (`%3`), to find sessions started by hand.
    pub pane: String,
    /// Unix milliseconds when the hook ran.
    pub at: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Hook(HookEvent),
    Guard(GuardRecord),
}

/// The Claude Code hook events the daemon acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum HookEvent {
    SessionStart {
        session_id: String,
        source: String,
        transcript_path: Option<PathBuf>,
    },
    Stop {
        session_id: String,
        /// Non-empty `background_tasks`: the agent waits for background work.
        background: bool,
    },
    StopFailure {
        session_id: String,
        error: String,
        message: String,
    },
    Notification {
        session_id: String,
        kind: String,
        message: String,
    },
    SessionEnd {
        session_id: String,
        reason: String,
    },
    Other {
        name: String,
    },
}

impl HookEvent {
    pub fn session_id(&self) -> Option<&str> {
        match self {
            HookEvent::SessionStart { session_id, .. }
            | HookEvent::Stop { session_id, .. }
            | HookEvent::StopFailure { session_id, .. }
            | HookEvent::Notification { session_id, .. }
            | HookEvent::SessionEnd { session_id, .. } => Some(session_id),
            HookEvent::Other { .. } => None,
        }
    }
}

/// A guard decision the hook recorded (block, warn, learn).
#[derive(Debug, Clone, PartialEq)]
pub struct GuardRecord {
    pub decision: String,
    pub rule: String,
    pub tool: String,
    pub detail: String,
    pub claude_session_id: String,
    pub cwd: String,
}

/// The longest string field kept from an event: a hook's input can carry a
/// whole command or message of megabytes, and these strings go into log
/// lines, notices and audit.log.
pub const MAX_FIELD_BYTES: usize = 4096;

/// A string field, cut at `MAX_FIELD_BYTES` (on a character boundary, with
/// a mark saying how much was left out).
fn s(v: &Value, k: &str) -> String {
    let text = v.get(k).and_then(Value::as_str).unwrap_or("");
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_string();
    }
    let mut cut = MAX_FIELD_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} more bytes]", &text[..cut], text.len() - cut)
}

/// Parses one event file's content.
pub fn parse(bytes: &[u8]) -> Result<Record, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let session = s(&v, "session");
    let pane = s(&v, "pane");
    let at = v.get("at").and_then(Value::as_u64).unwrap_or(0);
    let kind = match v.get("kind").and_then(Value::as_str) {
        Some("hook") => {
            let e = v
                .get("event")
                .filter(|e| e.is_object())
                .ok_or("hook record without an event object")?;
            let session_id = s(e, "session_id");
            Kind::Hook(
                match e
                    .get("hook_event_name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                {
                    "SessionStart" => HookEvent::SessionStart {
                        session_id,
                        source: s(e, "source"),
                        transcript_path: e
                            .get("transcript_path")
                            .and_then(Value::as_str)
                            .map(PathBuf::from),
                    },
                    "Stop" => HookEvent::Stop {
                        session_id,
                        background: e
                            .get("background_tasks")
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty()),
                    },
                    "StopFailure" => HookEvent::StopFailure {
                        session_id,
                        error: s(e, "error"),
                        message: s(e, "last_assistant_message"),
                    },
                    "Notification" => HookEvent::Notification {
                        session_id,
                        kind: s(e, "notification_type"),
                        message: s(e, "message"),
                    },
                    "SessionEnd" => HookEvent::SessionEnd {
                        session_id,
                        reason: s(e, "reason"),
                    },
                    "" => return Err("hook event without hook_event_name".into()),
                    other => HookEvent::Other {
                        name: other.to_string(),
                    },
                },
            )
        }
        Some("guard") => Kind::Guard(GuardRecord {
            decision: s(&v, "decision"),
            rule: s(&v, "rule"),
            tool: s(&v, "tool"),
            detail: s(&v, "detail"),
            claude_session_id: s(&v, "claude_session_id"),
            cwd: s(&v, "cwd"),
        }),
        Some(other) => return Err(format!("unknown kind `{other}`")),
        None => return Err("no kind".into()),
    };
    Ok(Record {
        session,
        pane,
        at,
        kind,
    })
}

/// Event files waiting in `dir`, oldest first (names start with epoch ms).
pub fn pending(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                !n.starts_with('.') && n.ends_with(".json")
            })
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// Reads one event file (bounded).
pub fn read(path: &Path) -> Result<Record, String> {
    let md = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !md.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if md.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_EVENT_BYTES} limit",
            md.len()
        ));
    }
    parse(&fs::read(path).map_err(|e| e.to_string())?)
}

/// Moves a bad event file to `rejected/` beside it.
pub fn reject(path: &Path) {
    let dir = crate::fsutil::parent(path).join("rejected");
    let to = dir.join(path.file_name().unwrap_or_default());
    if let Err(e) = crate::fsutil::move_no_clobber(path, &to) {
        log::error!("cannot move {} aside: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabyte_strings_are_cut() {
        let big = "é".repeat(1 << 20);
        let v = serde_json::json!({"kind": "guard", "detail": big, "rule": "r"});
        let Kind::Guard(g) = parse(v.to_string().as_bytes()).unwrap().kind else {
            panic!("not a guard record")
        };
        assert!(g.detail.len() < MAX_FIELD_BYTES + 64, "{}", g.detail.len());
        assert!(
            g.detail.ends_with("more bytes]"),
            "{}",
            &g.detail[g.detail.len() - 40..]
        );
        assert_eq!(g.rule, "r");
    }

    #[test]
    fn parses_hook_events() {
        let r = parse(br#"{"v":1,"kind":"hook","at":5,"session":"s1","pane":"%1","event":{"hook_event_name":"Stop","session_id":"u","background_tasks":[]}}"#).unwrap();
        assert_eq!(r.session, "s1");
        assert_eq!(
            r.kind,
            Kind::Hook(HookEvent::Stop {
                session_id: "u".into(),
                background: false
            })
        );
        let r = parse(br#"{"kind":"hook","event":{"hook_event_name":"Stop","session_id":"u","background_tasks":[{"id":"b"}]}}"#).unwrap();
        assert_eq!(
            r.kind,
            Kind::Hook(HookEvent::Stop {
                session_id: "u".into(),
                background: true
            })
        );
        let r = parse(br#"{"kind":"hook","event":{"hook_event_name":"StopFailure","session_id":"u","error":"rate_limit"}}"#).unwrap();
        assert!(
            matches!(r.kind, Kind::Hook(HookEvent::StopFailure { ref error, .. }) if error == "rate_limit")
        );
    }

    #[test]
    fn parses_guard_records() {
        let r = parse(br#"{"kind":"guard","session":"s","decision":"block","rule":"force-push","tool":"Bash"}"#).unwrap();
        match r.kind {
            Kind::Guard(g) => assert_eq!(
                (g.decision.as_str(), g.rule.as_str()),
                ("block", "force-push")
            ),
            _ => panic!(),
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[1]").is_err());
        assert!(parse(br#"{"kind":"hook","event":null,"raw":"x"}"#).is_err());
        assert!(parse(br#"{"kind":"what"}"#).is_err());
    }
}
