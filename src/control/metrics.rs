//! `GET /metrics` in the Prometheus text format, named per Prometheus
//! conventions: the `claude_failover_` prefix, counters end in `_total`,
//! durations in `_seconds`, instants in `_timestamp_seconds`, ratios are
//! 0–1, and what varies (project, state, account, rule, sink) is a label.

use std::fmt::Write;
use std::path::PathBuf;

use crate::config::Config;
use crate::state::{SessionState, State};

const PREFIX: &str = "claude_failover_";

/// Tasks of one project, as the queue folders show them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDepth {
    pub project: PathBuf,
    pub pending: usize,
    pub running: usize,
}

/// The exposition text, one family at a time.
#[derive(Default)]
pub struct Exposition {
    out: String,
    family: String,
}

impl Exposition {
    /// Starts a family; `kind` is `counter`, `gauge` or `info`-style gauge.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        debug_assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "metric name {name}"
        );
        debug_assert!(
            (kind == "counter") == name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        self.family = format!("{PREFIX}{name}");
        let _ = writeln!(self.out, "# HELP {} {help}", self.family);
        let _ = writeln!(self.out, "# TYPE {} {kind}", self.family);
        self
    }

    /// One sample of the current family. Non-finite values are left out.
    pub fn sample(&mut self, labels: &[(&str, &str)], v: f64) -> &mut Self {
        if !v.is_finite() {
            return self;
        }
        self.out.push_str(&self.family);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.out, " {v}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value, escaped per the exposition format.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            _ => s.push(c),
        }
    }
    s
}

/// The `/metrics` document, Prometheus text exposition format 0.0.4. It
/// reads every inbox: call it on a copy of the state, not under the lock.
pub fn metrics_text(st: &State, cfg: &Config, started: u64) -> String {
    render(st, cfg, started, &queue_depths(cfg, st))
}

/// Pending tasks per project from the inboxes, running ones from the state.
pub fn queue_depths(cfg: &Config, st: &State) -> Vec<QueueDepth> {
    let running = crate::plan::running(st);
    cfg.project_list()
        .into_iter()
        .map(|project| QueueDepth {
            pending: crate::task::Queue::new(&project)
                .pending_names()
                .map(|n| n.len())
                .unwrap_or(0),
            running: running.get(&project).copied().unwrap_or(0) as usize,
            project,
        })
        .collect()
}

/// Everything `/metrics` shows.
pub fn render(st: &State, cfg: &Config, started: u64, queues: &[QueueDepth]) -> String {
    let m = &st.metrics;
    let mut e = Exposition::default();
    e.family("build_info", "gauge", "Always 1; the version is a label.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    e.family(
        "start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
    )
    .sample(&[], started as f64);

    e.family(
        "tasks_pending",
        "gauge",
        "Tasks waiting in a project's inbox.",
    );
    for q in queues {
        let p = q.project.display().to_string();
        e.sample(&[("project", &p)], q.pending as f64);
    }
    e.family(
        "tasks_running",
        "gauge",
        "Tasks a session is working on, per project.",
    );
    for q in queues {
        let p = q.project.display().to_string();
        e.sample(&[("project", &p)], q.running as f64);
    }
    e.family(
        "tasks_in_flight",
        "gauge",
        "Tasks claimed by a session right now.",
    )
    .sample(
        &[],
        st.sessions.values().filter(|s| s.task.is_some()).count() as f64,
    );
    e.family("sessions", "gauge", "Pool sessions by state.");
    for s in SessionState::ALL {
        let n = st.sessions.values().filter(|x| x.state == s).count();
        e.sample(&[("state", s.as_str())], n as f64);
    }

    for (name, help, v) in [
        (
            "tasks_dispatched_total",
            "Tasks handed to a session.",
            m.tasks_dispatched,
        ),
        (
            "tasks_done_total",
            "Tasks that finished (moved to done/).",
            m.tasks_done,
        ),
        (
            "tasks_failed_total",
            "Tasks given up (moved to failed/).",
            m.tasks_failed,
        ),
        (
            "launches_failed_total",
            "Agent launches that failed.",
            m.launches_failed,
        ),
        (
            "failovers_total",
            "Account failovers completed.",
            m.failovers,
        ),
        (
            "failovers_failed_total",
            "Account failovers that failed.",
            m.failovers_failed,
        ),
        (
            "guard_warns_total",
            "Tool calls the guard warned about.",
            m.guard_warns,
        ),
        (
            "events_applied_total",
            "Hook events read and applied.",
            m.events_applied,
        ),
        (
            "events_dropped_total",
            "Hook events dropped (unreadable, unknown or too many).",
            m.events_dropped,
        ),
        (
            "notices_sent_total",
            "Notices delivered to a sink (one per sink).",
            m.notices_sent,
        ),
        (
            "notices_failed_total",
            "Notices a sink could not take after every retry.",
            m.notices_failed,
        ),
        (
            "notices_dropped_total",
            "Notices dropped because a queue was full.",
            m.notices_dropped,
        ),
    ] {
        e.family(name, "counter", help).sample(&[], v as f64);
    }

    e.family(
        "guard_blocks_total",
        "counter",
        "Tool calls the guard blocked, per rule.",
    );
    for (rule, n) in &m.guard_blocks_by_rule {
        e.sample(&[("rule", rule)], *n as f64);
    }
    e.family(
        "notifications_total",
        "counter",
        "Notices per sink and outcome (sent, or failed after every retry).",
    );
    for (sink, c) in &m.notices_by_sink {
        e.sample(&[("sink", sink), ("outcome", "sent")], c.sent as f64);
        e.sample(&[("sink", sink), ("outcome", "failed")], c.failed as f64);
    }

    let now = crate::timefmt::now_secs();
    let accounts: Vec<_> = cfg
        .accounts
        .iter()
        .map(|a| (a, st.accounts.get(&a.name).cloned().unwrap_or_default()))
        .collect();
    e.family(
        "account_usage_ratio",
        "gauge",
        "Last usage reading per account and window, 0 to 1.",
    );
    for (a, s) in &accounts {
        for (w, v) in [("five_hour", s.five_hour), ("seven_day", s.seven_day)] {
            if let Some(v) = v {
                e.sample(&[("account", &a.name), ("window", w)], v / 100.0);
            }
        }
    }
    e.family(
        "account_reset_timestamp_seconds",
        "gauge",
        "Unix time the account's usage window resets.",
    );
    for (a, s) in &accounts {
        for (w, v) in [
            ("five_hour", s.five_hour_resets),
            ("seven_day", s.seven_day_resets),
        ] {
            if let Some(v) = v {
                e.sample(&[("account", &a.name), ("window", w)], v as f64);
            }
        }
    }
    e.family(
        "account_usable",
        "gauge",
        "1 when the account can take sessions.",
    );
    for (a, s) in &accounts {
        e.sample(&[("account", &a.name)], f64::from(u8::from(s.usable)));
    }
    e.family(
        "account_active",
        "gauge",
        "1 for the account new launches use.",
    );
    for (a, _) in &accounts {
        e.sample(
            &[("account", &a.name)],
            f64::from(u8::from(a.name == st.active_account)),
        );
    }
    e.family(
        "account_reading_age_seconds",
        "gauge",
        "Seconds since the account's last good usage reading.",
    );
    for (a, s) in &accounts {
        if let Some(t) = s.read_at {
            e.sample(&[("account", &a.name)], now.saturating_sub(t) as f64);
        }
    }
    e.family("failover_in_progress", "gauge", "1 while a failover runs.")
        .sample(&[], f64::from(u8::from(st.failover_in_progress)));
    e.family(
        "dispatch_paused",
        "gauge",
        "1 while dispatching is paused (no usable account).",
    )
    .sample(&[], f64::from(u8::from(st.dispatch_paused.is_some())));
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_conventions() {
        let mut st = State {
            active_account: "main".into(),
            ..State::default()
        };
        st.accounts.insert(
            "main".into(),
            crate::state::AccountStatus {
                five_hour: Some(37.0),
                five_hour_resets: Some(1_800_000_000),
                usable: true,
                ..Default::default()
            },
        );
        st.metrics.tasks_done = 4;
        let cfg = Config::default();
        let q = [QueueDepth {
            project: "/srv/a \"b\"".into(),
            pending: 3,
            running: 1,
        }];
        let text = render(&st, &cfg, 1_700_000_000, &q);
        for line in [
            format!(
                "claude_failover_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "claude_failover_tasks_pending{project=\"/srv/a \\\"b\\\"\"} 3".into(),
            "claude_failover_tasks_running{project=\"/srv/a \\\"b\\\"\"} 1".into(),
            "claude_failover_tasks_done_total 4".into(),
            "claude_failover_account_usage_ratio{account=\"main\",window=\"five_hour\"} 0.37"
                .into(),
            "claude_failover_account_reset_timestamp_seconds{account=\"main\",window=\"five_hour\"} 1800000000".into(),
            "claude_failover_account_active{account=\"main\"} 1".into(),
            "claude_failover_start_time_seconds 1700000000".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("percent"), "{text}");
        for l in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let w: Vec<&str> = l.split(' ').collect();
            assert_eq!(w[3] == "counter", w[2].ends_with("_total"), "{l}");
        }
    }
}
