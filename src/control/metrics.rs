//! The Prometheus text for `GET /metrics`.

#[allow(unused_imports)]
use super::*;

/// The `/metrics` document, Prometheus text exposition format 0.0.4.
pub fn metrics_text(st: &State, cfg: &Config, started: u64) -> String {
    let mut out = String::with_capacity(4096);
    let m = &st.metrics;
    let counters: [(&str, &str, u64); 11] = [
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
            "guard_blocks_total",
            "Tool calls the guard blocked.",
            m.guard_blocks,
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
            "notices_dropped_total",
            "Notices dropped because the notifier queue was full.",
            m.notices_dropped,
        ),
    ];
    for (name, help, v) in counters {
        metric_head(&mut out, name, help, "counter");
        out.push_str(&format!("claude_failover_{name} {v}\n"));
    }
    let (sent, failed) = (m.notices_sent, m.notices_failed);
    metric_head(
        &mut out,
        "notices_sent_total",
        "Notices delivered to a sink (one per sink).",
        "counter",
    );
    out.push_str(&format!("claude_failover_notices_sent_total {sent}\n"));
    metric_head(
        &mut out,
        "notices_failed_total",
        "Notices a sink could not take after every retry.",
        "counter",
    );
    out.push_str(&format!("claude_failover_notices_failed_total {failed}\n"));

    metric_head(&mut out, "sessions", "Pool sessions by state.", "gauge");
    for s in SessionState::ALL {
        let n = st.sessions.values().filter(|x| x.state == s).count();
        out.push_str(&format!(
            "claude_failover_sessions{{state=\"{}\"}} {n}\n",
            s.as_str()
        ));
    }
    metric_head(
        &mut out,
        "tasks_in_flight",
        "Tasks claimed by a session right now.",
        "gauge",
    );
    let in_flight = st.sessions.values().filter(|s| s.task.is_some()).count();
    out.push_str(&format!("claude_failover_tasks_in_flight {in_flight}\n"));

    let now = crate::timefmt::now_secs();
    let mut usage = String::new();
    let mut usable = String::new();
    let mut active = String::new();
    let mut age = String::new();
    for a in &cfg.accounts {
        let name = label(&a.name);
        let s = st.accounts.get(&a.name).cloned().unwrap_or_default();
        for (window, v) in [("five_hour", s.five_hour), ("seven_day", s.seven_day)] {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                usage.push_str(&format!(
                    "claude_failover_account_usage_percent{{account=\"{name}\",window=\"{window}\"}} {v}\n"
                ));
            }
        }
        usable.push_str(&format!(
            "claude_failover_account_usable{{account=\"{name}\"}} {}\n",
            u8::from(s.usable)
        ));
        active.push_str(&format!(
            "claude_failover_account_active{{account=\"{name}\"}} {}\n",
            u8::from(a.name == st.active_account)
        ));
        if let Some(t) = s.read_at {
            age.push_str(&format!(
                "claude_failover_account_reading_age_seconds{{account=\"{name}\"}} {}\n",
                now.saturating_sub(t)
            ));
        }
    }
    metric_head(
        &mut out,
        "account_usage_percent",
        "Last usage reading per account and window, in percent.",
        "gauge",
    );
    out.push_str(&usage);
    metric_head(
        &mut out,
        "account_usable",
        "1 when the account can take sessions.",
        "gauge",
    );
    out.push_str(&usable);
    metric_head(
        &mut out,
        "account_active",
        "1 for the account new launches use.",
        "gauge",
    );
    out.push_str(&active);
    metric_head(
        &mut out,
        "account_reading_age_seconds",
        "Seconds since the account's last good usage reading.",
        "gauge",
    );
    out.push_str(&age);
    metric_head(
        &mut out,
        "failover_in_progress",
        "1 while a failover runs.",
        "gauge",
    );
    out.push_str(&format!(
        "claude_failover_failover_in_progress {}\n",
        u8::from(st.failover_in_progress)
    ));
    metric_head(
        &mut out,
        "dispatch_paused",
        "1 while dispatching is paused (no usable account).",
        "gauge",
    );
    out.push_str(&format!(
        "claude_failover_dispatch_paused {}\n",
        u8::from(st.dispatch_paused.is_some())
    ));
    metric_head(
        &mut out,
        "start_time_seconds",
        "Unix time the control plane started.",
        "gauge",
    );
    out.push_str(&format!("claude_failover_start_time_seconds {started}\n"));
    out
}

pub(super) fn metric_head(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str(&format!(
        "# HELP claude_failover_{name} {help}\n# TYPE claude_failover_{name} {kind}\n"
    ));
}

/// A label value, escaped per the exposition format.
pub(super) fn label(v: &str) -> String {
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
