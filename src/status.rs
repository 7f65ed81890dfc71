//! `claude-failover status` as a table: the `/status` document
//! (INTERFACE.md) rendered for a terminal.

use serde_json::Value;

/// Renders the status document. `now` (unix seconds) turns timestamps into ages.
pub fn render(doc: &Value, now: u64) -> String {
    let mut out = String::new();
    let s = |v: &Value, k: &str| -> String {
        match v.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(x) => x.to_string(),
        }
    };
    out.push_str(&format!("active account: {}", s(doc, "active_account")));
    if doc.get("failover_in_progress").and_then(Value::as_bool) == Some(true) {
        out.push_str("   failover in progress");
    }
    for key in ["dispatch_paused", "launches_paused"] {
        if let Some(p) = doc.get(key).and_then(Value::as_str) {
            out.push_str(&format!("   dispatching paused: {p}"));
        }
    }
    if let Some(t) = doc.get("last_failover").and_then(Value::as_str) {
        out.push_str(&format!("   last failover: {}", since(t, now)));
    }
    out.push_str("\n\n");

    let empty = Vec::new();
    let list = |k: &str| doc.get(k).and_then(Value::as_array).unwrap_or(&empty);

    let mut rows = vec![row(&[
        "SESSION", "KIND", "STATE", "TASK", "ACCOUNT", "SINCE",
    ])];
    for x in list("sessions") {
        rows.push(vec![
            s(x, "name"),
            s(x, "kind"),
            match x.get("resting_until").and_then(Value::as_str) {
                Some(t) => format!("{} (resting until {t})", s(x, "state")),
                None => s(x, "state"),
            },
            s(x, "task"),
            s(x, "account"),
            x.get("since")
                .and_then(Value::as_str)
                .map(|t| since(t, now))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    if rows.len() == 1 {
        out.push_str("no sessions\n");
    } else {
        out.push_str(&table(&rows));
    }
    // Worktree mode: where each running task works, and on which branch.
    let mut rows = vec![row(&["SESSION", "BRANCH", "WORKTREE"])];
    for x in list("sessions")
        .iter()
        .filter(|x| x.get("worktree").is_some_and(Value::is_string))
    {
        rows.push(vec![s(x, "name"), s(x, "branch"), s(x, "worktree")]);
    }
    if rows.len() > 1 {
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out.push('\n');

    let mut rows = vec![row(&[
        "ACCOUNT", "ACTIVE", "USABLE", "5H %", "7D %", "READING", "ERROR",
    ])];
    for x in list("accounts") {
        let pct = |k: &str| {
            x.get(k)
                .and_then(Value::as_f64)
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        let yes = |k: &str| match x.get(k).and_then(Value::as_bool) {
            Some(true) => "yes".to_string(),
            Some(false) => "no".to_string(),
            None => "-".to_string(),
        };
        rows.push(vec![
            s(x, "name"),
            if x.get("active").and_then(Value::as_bool) == Some(true) {
                "*".into()
            } else {
                String::new()
            },
            yes("usable"),
            pct("five_hour"),
            pct("seven_day"),
            x.get("reading_age_s")
                .and_then(Value::as_u64)
                .map(|a| format!("{} ago", age(a)))
                .unwrap_or_else(|| "never".into()),
            s(x, "error"),
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');

    let mut rows = vec![row(&["PROJECT", "PENDING", "DISPATCHED", "FAILED"])];
    for x in list("projects") {
        rows.push(vec![
            s(x, "path"),
            s(x, "pending"),
            s(x, "dispatched"),
            s(x, "failed"),
        ]);
    }
    if rows.len() == 1 {
        out.push_str("no projects\n");
    } else {
        out.push_str(&table(&rows));
    }
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart; control characters shown as `?`.
fn table(rows: &[Vec<String>]) -> String {
    let clean = |c: &str| -> String {
        c.chars()
            .map(|ch| if ch.is_control() { '?' } else { ch })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                let pad = widths[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2026-11-21T18:00:00Z` as `18:00:00Z (12m ago)` today, else the full stamp.
fn since(t: &str, now: u64) -> String {
    match crate::timefmt::parse_rfc3339(t) {
        Some(secs) if secs <= now => format!("{t} ({} ago)", age(now - secs)),
        _ => t.to_string(),
    }
}

/// `41s`, `12m`, `3h`, `2d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_all_three_tables() {
        let now = crate::timefmt::parse_rfc3339("2026-11-21T18:10:00Z").unwrap();
        let doc = json!({
            "active_account": "main",
            "failover_in_progress": false,
            "sessions": [{ "name": "ccl-auto-11", "kind": "autonomous", "state": "working",
                           "task": "fix-login.md", "account": "main",
                           "since": "2026-11-21T18:00:00Z" },
                         { "name": "ccl-auto-12", "kind": "autonomous", "state": "working",
                           "task": "docs.md", "account": "main", "since": null,
                           "worktree": "/st/worktrees/api/docs", "branch": "cf/docs" }],
            "accounts": [{ "name": "main", "active": true, "usable": true, "five_hour": 37.0,
                           "seven_day": 12.0, "reading_age_s": 41, "error": null },
                         { "name": "backup", "active": false, "usable": false, "five_hour": null,
                           "seven_day": null, "reading_age_s": null, "error": "token expired" }],
            "projects": [{ "path": "/srv/work/api", "pending": 3, "dispatched": 1, "failed": 0 }]
        });
        let t = render(&doc, now);
        assert!(t.contains("active account: main"), "{t}");
        assert!(t.contains("ccl-auto-11  autonomous  working  fix-login.md  main     2026-11-21T18:00:00Z (10m ago)"), "{t}");
        assert!(
            t.contains("main     *       yes     37    12    41s ago  -"),
            "{t}"
        );
        assert!(t.contains("token expired"), "{t}");
        assert!(
            t.contains(
                "SESSION      BRANCH   WORKTREE\nccl-auto-12  cf/docs  /st/worktrees/api/docs\n"
            ),
            "{t}"
        );
        assert!(t.contains("/srv/work/api  3        1           0"), "{t}");
    }
}
