//! `quota [--json]`: every account polled once, printed as JSON or a table.

#[allow(unused_imports)]
use super::*;

/// `quota [--json]`: polls every account once and prints the readings;
/// fails when none could be read.
pub fn cli_quota(cfg: &Config, json: bool) -> Result<ExitCode, String> {
    let agent = http_agent(cfg);
    let now = now_secs();
    let mut rows = Vec::new();
    for a in &cfg.accounts {
        let mut st = AccountStatus {
            usable: true,
            ..AccountStatus::default()
        };
        let (outcome, fp) = poll_account(&agent, &cfg.quota.endpoint, a, &st, now);
        apply(cfg, &mut st, &outcome, fp.as_deref(), now);
        rows.push((a.name.clone(), st));
    }
    let any = rows.iter().any(|(_, s)| s.read_at.is_some());
    if json {
        let doc: Vec<Value> = rows
            .iter()
            .map(|(n, s)| {
                serde_json::json!({
                    "name": n,
                    "usable": s.usable,
                    "five_hour": s.five_hour,
                    "seven_day": s.seven_day,
                    "five_hour_resets_at": s.five_hour_resets.map(rfc3339),
                    "seven_day_resets_at": s.seven_day_resets.map(rfc3339),
                    "token": s.token.map(TokenState::as_str),
                    "error": s.error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(doc)).unwrap_or_default()
        );
    } else {
        print!("{}", table(&rows));
    }
    if any {
        Ok(ExitCode::SUCCESS)
    } else {
        Err("no account's usage could be read".into())
    }
}

/// The `quota` table.
pub fn table(rows: &[(String, AccountStatus)]) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}%"));
    let t = |v: Option<u64>| v.map_or("-".to_string(), rfc3339);
    let mut lines = vec![[
        "ACCOUNT".to_string(),
        "5-HOUR".into(),
        "7-DAY".into(),
        "5H RESETS".into(),
        "7D RESETS".into(),
        "TOKEN".into(),
        "ERROR".into(),
    ]];
    for (n, s) in rows {
        lines.push([
            n.clone(),
            pct(s.five_hour),
            pct(s.seven_day),
            t(s.five_hour_resets),
            t(s.seven_day_resets),
            s.token.map_or("-", TokenState::as_str).to_string(),
            s.error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut row = String::new();
        for (i, c) in l.iter().enumerate() {
            if i == 6 {
                row.push_str(c);
            } else {
                row.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}
