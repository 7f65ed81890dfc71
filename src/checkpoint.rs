//! Checkpoints thread: every `checkpoint.interval`, for each session with a
//! conversation, writes `state_dir/checkpoints/SESSION.json` atomically:
//! what a failover needs to resume it (task, project, account, claude
//! session id, transcript path, last activity).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::bus::Ctx;
use crate::state::{Session, SessionState};
use crate::timefmt::rfc3339;

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoints")
}

pub fn run(ctx: Arc<Ctx>) {
    loop {
        if ctx.sleep(ctx.config().checkpoint.interval.get()) {
            return;
        }
        write_all(&ctx);
    }
}

/// Writes a checkpoint for every session that has a conversation.
pub fn write_all(ctx: &Ctx) {
    let cfg = ctx.config();
    let sessions: Vec<Session> = ctx
        .state()
        .sessions
        .values()
        .filter(|s| {
            s.claude_session_id.is_some()
                && !matches!(s.state, SessionState::Idle | SessionState::Dead)
        })
        .cloned()
        .collect();
    if sessions.is_empty() {
        return;
    }
    let d = dir(&cfg.state_dir);
    if let Err(e) = std::fs::create_dir_all(&d) {
        log::error!("cannot create {}: {e}", d.display());
        return;
    }
    for s in sessions {
        let doc = json!({
            "session": s.name,
            "kind": s.kind,
            "state": s.state.as_str(),
            "task": s.task.as_ref().map(|t| t.name.clone()),
            "project": s.task.as_ref().map(|t| t.project.clone()).or(s.project.clone()),
            "model": s.task.as_ref().map(|t| t.model.clone()),
            "account": s.account,
            "claude_session_id": s.claude_session_id,
            "transcript_path": s.transcript_path,
            "last_activity": rfc3339(s.last_activity),
            "written": rfc3339(crate::timefmt::now_secs()),
        });
        let path = d.join(format!("{}.json", s.name));
        let text = serde_json::to_vec_pretty(&doc).expect("serializable");
        if let Err(e) = crate::fsutil::atomic_write(&path, &text, 0o600) {
            log::error!("cannot write {}: {e}", path.display());
        }
    }
}

/// The claude session id recorded for `session`, if a checkpoint has one.
pub fn read_session_id(state_dir: &Path, session: &str) -> Option<String> {
    let text = std::fs::read(dir(state_dir).join(format!("{session}.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v["claude_session_id"].as_str().map(str::to_string)
}
