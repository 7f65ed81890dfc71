//! Notices: what components tell people (through the notifier) about things
//! that need attention. One type for every component, so sinks format one
//! stable schema: `event`, `at`, `host`, `message`, fields.

use std::fmt;

use serde_json::{Map, Value};

/// What a notice is about. [`NoticeKind::as_str`] is its name in `notify.events`,
/// webhook bodies and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    TaskDone,
    TaskFailed,
    Failover,
    QuotaWarning,
    TokenExpired,
    SessionDead,
    SessionStuck,
    SessionWaiting,
    GuardBlock,
    CircuitBreaker,
    LaunchUnguarded,
    DispatchPaused,
}

impl NoticeKind {
    /// Every kind, in the order the config's error lists them.
    pub const ALL: [NoticeKind; 12] = [
        NoticeKind::TaskDone,
        NoticeKind::TaskFailed,
        NoticeKind::Failover,
        NoticeKind::QuotaWarning,
        NoticeKind::TokenExpired,
        NoticeKind::SessionDead,
        NoticeKind::SessionStuck,
        NoticeKind::SessionWaiting,
        NoticeKind::GuardBlock,
        NoticeKind::CircuitBreaker,
        NoticeKind::LaunchUnguarded,
        NoticeKind::DispatchPaused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::TaskDone => "task_done",
            NoticeKind::TaskFailed => "task_failed",
            NoticeKind::Failover => "failover",
            NoticeKind::QuotaWarning => "quota_warning",
            NoticeKind::TokenExpired => "token_expired",
            NoticeKind::SessionDead => "session_dead",
            NoticeKind::SessionStuck => "session_stuck",
            NoticeKind::SessionWaiting => "session_waiting",
            NoticeKind::GuardBlock => "guard_block",
            NoticeKind::CircuitBreaker => "circuit_breaker",
            NoticeKind::LaunchUnguarded => "launch_unguarded",
            NoticeKind::DispatchPaused => "dispatch_paused",
        }
    }

    /// The kind a `notify.events` entry names.
    pub fn from_name(name: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notable event.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: NoticeKind,
    /// Unix seconds.
    pub at: u64,
    /// One human line, also logged.
    pub message: String,
    pub fields: Map<String, Value>,
}

impl Notice {
    /// `task_failed` for a task that went to `failed/`, with its task and project.
    pub fn task_failed(task: &str, project: &std::path::Path, why: &str) -> Notice {
        Notice::new(NoticeKind::TaskFailed, format!("{task} failed: {why}"))
            .field("task", task.to_string())
            .field("project", project.display().to_string())
    }

    pub fn new(event: NoticeKind, message: impl Into<String>) -> Notice {
        Notice {
            event,
            at: crate::timefmt::now_secs(),
            message: message.into(),
            fields: Map::new(),
        }
    }

    pub fn field(mut self, k: &str, v: impl Into<Value>) -> Notice {
        self.fields.insert(k.to_string(), v.into());
        self
    }

    /// The webhook body: a stable schema.
    pub fn to_json(&self, host: &str) -> Value {
        serde_json::json!({
            "event": self.event.as_str(),
            "at": crate::timefmt::rfc3339(self.at),
            "host": host,
            "message": self.message,
            "fields": self.fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::from_name(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(NoticeKind::from_name("Task_Failed"), None);
        let n = Notice::new(NoticeKind::TaskFailed, "x");
        assert_eq!(n.to_json("h")["event"], "task_failed");
    }
}
