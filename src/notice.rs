//! Notices: what components tell people (through the notifier) about things
//! that need attention. One type for every component, so sinks format one
//! stable schema: `event`, `at`, `host`, `message`, fields.

use serde_json::{Map, Value};

/// One notable event. `event` is one of `config::EVENT_NAMES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: &'static str,
    /// Unix seconds.
    pub at: u64,
    /// One human line, also logged.
    pub message: String,
    pub fields: Map<String, Value>,
}

impl Notice {
    pub fn new(event: &'static str, message: impl Into<String>) -> Notice {
        debug_assert!(
            crate::config::EVENT_NAMES.contains(&event),
            "unknown event {event}"
        );
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
            "event": self.event,
            "at": crate::timefmt::rfc3339(self.at),
            "host": host,
            "message": self.message,
            "fields": self.fields,
        })
    }
}
