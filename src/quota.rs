//! Quota thread: every `quota.poll_interval`, reads each account's usage
//! (`GET quota.endpoint` with the account's OAuth access token) and keeps
//! the reading in the shared state; then tells the switcher when the active
//! account is at or over a threshold, or unusable.
//!
//! The token is re-read from `<config_dir>/.credentials.json` before every
//! request (claude rewrites it when it refreshes) and never written, logged
//! or refreshed here. An account without that file is not polled. A token
//! past its `expiresAt`, or one the API rejects (401/403), makes the account
//! unusable and raises `token_expired`. A 429 is honoured per token
//! (`retry-after`, else a doubling backoff); errors and garbage keep the
//! last good reading and its age, with the error beside it.
//!
//! Also the rules the switcher decides with: `over_threshold`,
//! `choose_target`, `earliest_recovery` (pure functions, unit-tested here).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use crate::bus::{Ctx, FailoverMsg};
use crate::config::{AccountConfig, Config};
use crate::notice::Notice;
use crate::state::AccountStatus;
use crate::timefmt::{now_ms, now_secs, parse_rfc3339, rfc3339};

/// The beta header the OAuth usage endpoint wants.
pub const BETA: &str = "oauth-2025-04-20";
/// Longest `retry-after` honoured as given.
const MAX_BACKOFF: u64 = 6 * 3600;
/// The doubling backoff when a 429 says nothing: from this, up to an hour.
const BASE_BACKOFF: u64 = 60;
/// Bodies larger than this are not a usage answer.
const MAX_BODY: u64 = 1 << 20;

/// One usage answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub five_hour: Option<f64>,
    pub seven_day: Option<f64>,
    pub five_hour_resets: Option<u64>,
    pub seven_day_resets: Option<u64>,
}

/// What one poll of one account gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reading(Reading),
    /// No credentials file or no token in it: not polled.
    NoCredentials(String),
    /// `expiresAt` has passed: not polled.
    Expired,
    /// The API refused the token (401/403).
    Rejected(u16),
    /// 429: back off (the server's `retry-after`, in seconds, if it said).
    Throttled(Option<u64>),
    /// This token is still backing off until then (unix seconds): not polled.
    BackingOff(u64),
    /// Network error, timeout, 5xx, garbage.
    Failed(String),
}

impl Outcome {
    /// Whether the API gave no usable answer (for a `rate_limit` check).
    pub fn unanswered(&self) -> bool {
        !matches!(self, Outcome::Reading(_))
    }
}

/// Parses a usage answer tolerantly: windows may be null or missing,
/// unknown keys are ignored, numbers may come as strings. An answer with
/// neither window key (an error document, HTML, ...) is an error.
pub fn parse_usage(body: &str) -> Result<Reading, String> {
    let v: Value =
        serde_json::from_str(body.trim()).map_err(|_| format!("not JSON: {}", snippet(body)))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", snippet(body)))?;
    if !obj.contains_key("five_hour") && !obj.contains_key("seven_day") {
        return Err(format!("no usage windows in the answer: {}", snippet(body)));
    }
    let window = |k: &str| -> (Option<f64>, Option<u64>) {
        let w = &v[k];
        if !w.is_object() {
            return (None, None);
        }
        let util = number(&w["utilization"]).filter(|u| u.is_finite() && *u >= 0.0);
        let resets = match &w["resets_at"] {
            Value::String(s) => parse_rfc3339(s),
            Value::Number(n) => n
                .as_u64()
                .map(|t| if t > 10_000_000_000 { t / 1000 } else { t }),
            _ => None,
        };
        (util, resets)
    };
    let (five_hour, five_hour_resets) = window("five_hour");
    let (seven_day, seven_day_resets) = window("seven_day");
    Ok(Reading {
        five_hour,
        seven_day,
        five_hour_resets,
        seven_day_resets,
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    }
}

fn snippet(s: &str) -> String {
    let t: String = s.trim().chars().take(80).collect();
    if t.is_empty() {
        "(empty)".into()
    } else {
        t
    }
}

/// `retry-after`: seconds, or an HTTP date.
pub fn parse_retry_after(v: &str, now: u64) -> Option<u64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s);
    }
    // IMF-fixdate: "Wed, 21 Oct 2015 07:28:00 GMT"
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? + 1;
    let day: u32 = parts[1].parse().ok()?;
    let year: u32 = parts[3].parse().ok()?;
    let at = parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{}Z", parts[4]))?;
    Some(at.saturating_sub(now))
}

/// A ureq agent with the configured connect and read timeouts; HTTP error
/// statuses come back as responses so 401/429 bodies and headers can be read.
pub fn http_agent(cfg: &Config) -> ureq::Agent {
    let t = cfg.quota.timeout.get();
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(t))
            .timeout_send_request(Some(t))
            .timeout_recv_response(Some(t))
            .timeout_recv_body(Some(t))
            .timeout_global(Some(t * 3))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections(4)
            .user_agent(format!("claude-failover/{}", env!("CARGO_PKG_VERSION")))
            .build(),
    )
}

/// One request with one token. Never logs the token (ureq's errors hold
/// the URL only).
pub fn fetch(agent: &ureq::Agent, endpoint: &str, token: &str) -> Outcome {
    let resp = agent
        .get(endpoint)
        .header("Authorization", format!("Bearer {token}"))
        .header("anthropic-beta", BETA)
        .header("Accept", "application/json")
        .call();
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(redact(&e.to_string(), token)),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_secs()));
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string();
    match status {
        200..=299 => match body {
            Ok(b) => match parse_usage(&b) {
                Ok(r) => Outcome::Reading(r),
                Err(e) => Outcome::Failed(redact(&e, token)),
            },
            Err(e) => Outcome::Failed(format!(
                "reading the answer: {}",
                redact(&e.to_string(), token)
            )),
        },
        401 | 403 => Outcome::Rejected(status),
        429 => Outcome::Throttled(retry_after),
        _ => Outcome::Failed(format!(
            "HTTP {status}: {}",
            redact(&snippet(&body.unwrap_or_default()), token)
        )),
    }
}

fn redact(s: &str, token: &str) -> String {
    if token.len() >= 4 {
        s.replace(token, "[token]")
    } else {
        s.to_string()
    }
}

/// A fingerprint of a token (FNV-1a), to key its backoff without keeping it.
pub fn fingerprint(token: &str) -> String {
    let h = token.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Reads the credentials and polls one account, honouring a running backoff
/// recorded in `status`. Does not change `status`.
pub fn poll_account(
    agent: &ureq::Agent,
    endpoint: &str,
    acct: &AccountConfig,
    status: &AccountStatus,
    now: u64,
) -> (Outcome, Option<String>) {
    let creds = match crate::account::read_credentials(&acct.config_dir) {
        Ok(c) => c,
        Err(e) => return (Outcome::NoCredentials(e), None),
    };
    if creds.expired(now_ms()) {
        return (Outcome::Expired, None);
    }
    let fp = fingerprint(&creds.access_token);
    if let (Some(until), Some(key)) = (status.backoff_until, &status.backoff_key) {
        if *key == fp && until > now {
            return (Outcome::BackingOff(until), Some(fp));
        }
    }
    (fetch(agent, endpoint, &creds.access_token), Some(fp))
}

/// What `apply` found worth telling people.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The account just became unusable (token expired or refused).
    TokenBad(String),
    /// The account is usable again.
    TokenGood,
    /// The account just crossed a threshold.
    Crossed(String),
}

/// Records an outcome in an account's status. Returns what changed.
pub fn apply(
    cfg: &Config,
    st: &mut AccountStatus,
    outcome: &Outcome,
    fp: Option<&str>,
    now: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let was_usable = st.usable;
    match outcome {
        Outcome::Reading(r) => {
            st.five_hour = r.five_hour;
            st.seven_day = r.seven_day;
            st.five_hour_resets = r.five_hour_resets;
            st.seven_day_resets = r.seven_day_resets;
            st.read_at = Some(now);
            st.error = None;
            st.backoff_until = None;
            st.backoff_key = None;
            st.backoff_strikes = 0;
            st.token = Some("ok".into());
            st.usable = true;
            if !was_usable {
                changes.push(Change::TokenGood);
            }
            match over_which(cfg, st, now) {
                Some(w) if !st.warned => {
                    st.warned = true;
                    changes.push(Change::Crossed(w));
                }
                Some(_) => {}
                None => st.warned = false,
            }
        }
        Outcome::NoCredentials(e) => {
            st.error = Some(format!("no credentials: {e}"));
            st.token = Some("missing".into());
        }
        Outcome::Expired => {
            st.error = Some("token expired (expiresAt has passed)".into());
            st.token = Some("expired".into());
            st.usable = false;
            if was_usable {
                changes.push(Change::TokenBad("its OAuth token has expired".into()));
            }
        }
        Outcome::Rejected(code) => {
            st.error = Some(format!("token rejected (HTTP {code})"));
            st.token = Some("rejected".into());
            st.usable = false;
            if was_usable {
                changes.push(Change::TokenBad(format!(
                    "the usage API rejected its token (HTTP {code})"
                )));
            }
        }
        Outcome::Throttled(after) => {
            st.backoff_strikes = st.backoff_strikes.saturating_add(1);
            let secs = match after {
                Some(s) => (*s).clamp(1, MAX_BACKOFF),
                None => {
                    let exp = st.backoff_strikes.saturating_sub(1).min(6);
                    (BASE_BACKOFF << exp).min(3600)
                }
            };
            st.backoff_until = Some(now + secs);
            st.backoff_key = fp.map(str::to_string);
            st.error = Some(format!(
                "rate limited by the usage API (429); next try in {secs}s"
            ));
        }
        Outcome::BackingOff(_) => {}
        Outcome::Failed(e) => {
            st.error = Some(e.clone());
        }
    }
    changes
}

/// A window whose reset time has passed counts as reset (0%) until the
/// next reading says otherwise.
pub fn effective(st: &AccountStatus, now: u64) -> (Option<f64>, Option<f64>) {
    let eff = |u: Option<f64>, r: Option<u64>| match (u, r) {
        (Some(_), Some(r)) if r <= now => Some(0.0),
        _ => u,
    };
    (
        eff(st.five_hour, st.five_hour_resets),
        eff(st.seven_day, st.seven_day_resets),
    )
}

/// Which window is at or over its threshold, if any.
pub fn over_which(cfg: &Config, st: &AccountStatus, now: u64) -> Option<String> {
    let (five, seven) = effective(st, now);
    if let Some(f) = five.filter(|f| *f >= cfg.quota.five_hour_threshold) {
        return Some(format!(
            "5-hour usage {f:.0}% ≥ {:.0}%",
            cfg.quota.five_hour_threshold
        ));
    }
    if let Some(s) = seven.filter(|s| *s >= cfg.quota.seven_day_threshold) {
        return Some(format!(
            "7-day usage {s:.0}% ≥ {:.0}%",
            cfg.quota.seven_day_threshold
        ));
    }
    None
}

pub fn over_threshold(cfg: &Config, st: &AccountStatus, now: u64) -> bool {
    over_which(cfg, st, now).is_some()
}

/// Whether new work can go to this account: token usable, no pane limit
/// held against it, under both thresholds.
pub fn eligible(cfg: &Config, st: &AccountStatus, now: u64) -> bool {
    st.usable && st.limited_until.is_none_or(|t| t <= now) && !over_threshold(cfg, st, now)
}

/// Room left before the nearer threshold, in percentage points; `None`
/// without a reading.
pub fn headroom(cfg: &Config, st: &AccountStatus, now: u64) -> Option<f64> {
    st.read_at?;
    let (five, seven) = effective(st, now);
    Some(
        (cfg.quota.five_hour_threshold - five.unwrap_or(0.0))
            .min(cfg.quota.seven_day_threshold - seven.unwrap_or(0.0)),
    )
}

/// The account to move to: eligible, the most headroom first, config order
/// breaking ties. Accounts never read yet (no credentials file, or not
/// polled yet) count as usable with unknown headroom and come after every
/// account with a reading.
pub fn choose_target(
    cfg: &Config,
    accounts: &BTreeMap<String, AccountStatus>,
    exclude: Option<&str>,
    now: u64,
) -> Option<String> {
    let fresh = AccountStatus {
        usable: true,
        ..AccountStatus::default()
    };
    let mut candidates: Vec<(usize, &str, Option<f64>)> = cfg
        .accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| Some(a.name.as_str()) != exclude)
        .filter_map(|(i, a)| {
            let st = accounts.get(&a.name).unwrap_or(&fresh);
            eligible(cfg, st, now).then(|| (i, a.name.as_str(), headroom(cfg, st, now)))
        })
        .collect();
    candidates.sort_by(|a, b| match (a.2, b.2) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    candidates.first().map(|c| c.1.to_string())
}

/// When the first account should be eligible again by the clock alone:
/// for each account with a usable token, the latest reset among the windows
/// over their threshold (and the end of a held pane limit); the earliest of
/// those. `None` when no time is known.
pub fn earliest_recovery(
    cfg: &Config,
    accounts: &BTreeMap<String, AccountStatus>,
    now: u64,
) -> Option<u64> {
    cfg.accounts
        .iter()
        .filter_map(|a| {
            let st = accounts.get(&a.name)?;
            if !st.usable {
                return None;
            }
            let (five, seven) = effective(st, now);
            let mut at = now;
            if five.is_some_and(|f| f >= cfg.quota.five_hour_threshold) {
                at = at.max(st.five_hour_resets?);
            }
            if seven.is_some_and(|s| s >= cfg.quota.seven_day_threshold) {
                at = at.max(st.seven_day_resets?);
            }
            if let Some(l) = st.limited_until.filter(|l| *l > now) {
                at = at.max(l);
            }
            Some(at)
        })
        .min()
}

/// Polls one account now and records the outcome (state, notices).
pub fn poll_and_record(ctx: &Ctx, agent: &ureq::Agent, acct: &AccountConfig) -> Outcome {
    let cfg = ctx.config();
    let status = ctx
        .state()
        .accounts
        .get(&acct.name)
        .cloned()
        .unwrap_or(AccountStatus {
            usable: true,
            ..AccountStatus::default()
        });
    let now = now_secs();
    let (outcome, fp) = poll_account(agent, &cfg.quota.endpoint, acct, &status, now);
    match &outcome {
        Outcome::Reading(r) => log::debug!(
            "usage of {}: 5h {:?}% 7d {:?}%",
            acct.name,
            r.five_hour,
            r.seven_day
        ),
        Outcome::BackingOff(until) => log::debug!(
            "usage of {}: backing off until {}",
            acct.name,
            rfc3339(*until)
        ),
        Outcome::NoCredentials(e) => log::debug!("usage of {}: not polled ({e})", acct.name),
        other => log::warn!("usage of {}: {other:?}", acct.name),
    }
    let changes = ctx.update(|st| {
        let s = st
            .accounts
            .entry(acct.name.clone())
            .or_insert_with(|| status.clone());
        apply(&cfg, s, &outcome, fp.as_deref(), now)
    });
    for c in changes {
        match c {
            Change::TokenBad(why) => ctx.notify(
                Notice::new(
                    "token_expired",
                    format!(
                        "account {}: {why}; it is not used until it works again",
                        acct.name
                    ),
                )
                .field("account", acct.name.clone()),
            ),
            Change::TokenGood => log::info!("account {} is usable again", acct.name),
            Change::Crossed(w) => ctx.notify(
                Notice::new("quota_warning", format!("account {}: {w}", acct.name))
                    .field("account", acct.name.clone()),
            ),
        }
    }
    outcome
}

/// One round: every account, then the trigger check.
pub fn poll_round(ctx: &Ctx, agent: &ureq::Agent) {
    let cfg = ctx.config();
    for a in &cfg.accounts {
        if ctx.stopping() {
            return;
        }
        poll_and_record(ctx, agent, a);
    }
    let (active, trigger) = {
        let st = ctx.state();
        let now = now_secs();
        let a = st.active_account.clone();
        let s = st.accounts.get(&a);
        let bad = s.is_some_and(|s| !s.usable || over_threshold(&cfg, s, now));
        (a, bad || st.dispatch_paused.is_some())
    };
    if trigger {
        let _ = ctx
            .to_failover
            .send(FailoverMsg::Threshold { account: active });
    }
}

/// The quota thread: a round at start, then one every `poll_interval`;
/// between rounds it only waits on the stop channel.
pub fn run(ctx: Arc<Ctx>) {
    let mut cfg = ctx.config();
    let mut agent = http_agent(&cfg);
    loop {
        let now_cfg = ctx.config();
        if now_cfg.quota.timeout != cfg.quota.timeout {
            agent = http_agent(&now_cfg);
        }
        cfg = now_cfg;
        poll_round(&ctx, &agent);
        if ctx.sleep(cfg.quota.poll_interval.get()) {
            return;
        }
    }
}

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
                    "token": s.token,
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
            s.token.clone().unwrap_or_else(|| "-".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(accounts: &[&str]) -> Config {
        let acc: Vec<String> = accounts
            .iter()
            .map(|a| format!("  - {{ name: {a}, config_dir: /tmp/{a} }}"))
            .collect();
        Config::parse(
            &format!(
                "accounts:\n{}\nquota: {{ five_hour_threshold: 90, seven_day_threshold: 95 }}\n",
                acc.join("\n")
            ),
            "t",
        )
        .unwrap()
    }

    fn reading(five: f64, seven: f64) -> AccountStatus {
        AccountStatus {
            usable: true,
            five_hour: Some(five),
            seven_day: Some(seven),
            read_at: Some(1),
            ..AccountStatus::default()
        }
    }

    #[test]
    fn parses_the_documented_shape() {
        let r = parse_usage(
            r#"{"five_hour":{"utilization":37.0,"resets_at":"2026-11-21T18:00:00.123+00:00"},
                "seven_day":{"utilization":12,"resets_at":null},"seven_day_opus":null,"new_key":[1]}"#,
        )
        .unwrap();
        assert_eq!(r.five_hour, Some(37.0));
        assert_eq!(r.seven_day, Some(12.0));
        assert_eq!(r.five_hour_resets, parse_rfc3339("2026-11-21T18:00:00Z"));
        assert_eq!(r.seven_day_resets, None);
    }

    #[test]
    fn parses_null_windows_and_strings() {
        let r = parse_usage(r#"{"five_hour":null,"seven_day":{"utilization":"88.5"}}"#).unwrap();
        assert_eq!(r.five_hour, None);
        assert_eq!(r.seven_day, Some(88.5));
        let r = parse_usage(r#"{"five_hour":{"utilization":-3,"resets_at":1800000000}}"#).unwrap();
        assert_eq!(r.five_hour, None);
        assert_eq!(r.five_hour_resets, Some(1_800_000_000));
    }

    #[test]
    fn garbage_is_an_error() {
        for body in [
            "",
            "<html>oops</html>",
            "[1,2]",
            r#"{"error":"nope"}"#,
            "null",
        ] {
            assert!(parse_usage(body).is_err(), "{body}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        let now = parse_rfc3339("2015-10-21T07:27:00Z").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(60)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_keep_the_last_reading() {
        let c = cfg(&["a"]);
        let mut st = reading(40.0, 10.0);
        apply(&c, &mut st, &Outcome::Failed("timeout".into()), None, 100);
        assert_eq!(st.five_hour, Some(40.0));
        assert_eq!(st.read_at, Some(1));
        assert_eq!(st.error.as_deref(), Some("timeout"));
        assert!(st.usable);
    }

    #[test]
    fn throttle_backs_off_per_token() {
        let c = cfg(&["a"]);
        let mut st = reading(40.0, 10.0);
        apply(&c, &mut st, &Outcome::Throttled(Some(30)), Some("fp"), 100);
        assert_eq!(st.backoff_until, Some(130));
        apply(&c, &mut st, &Outcome::Throttled(None), Some("fp"), 200);
        assert_eq!(st.backoff_until, Some(200 + 2 * BASE_BACKOFF));
        assert_eq!(st.backoff_key.as_deref(), Some("fp"));
        apply(
            &c,
            &mut st,
            &Outcome::Reading(Reading::default()),
            Some("fp"),
            300,
        );
        assert_eq!(st.backoff_until, None);
        assert_eq!(st.backoff_strikes, 0);
    }

    #[test]
    fn bad_tokens_make_unusable_once() {
        let c = cfg(&["a"]);
        let mut st = reading(1.0, 1.0);
        assert_eq!(apply(&c, &mut st, &Outcome::Expired, None, 5).len(), 1);
        assert!(!st.usable);
        assert!(apply(&c, &mut st, &Outcome::Rejected(401), None, 6).is_empty());
        let ch = apply(&c, &mut st, &Outcome::Reading(Reading::default()), None, 7);
        assert_eq!(ch, vec![Change::TokenGood]);
        assert!(st.usable);
        // A missing file does not change usability.
        apply(&c, &mut st, &Outcome::NoCredentials("x".into()), None, 8);
        assert!(st.usable);
    }

    #[test]
    fn crossing_warns_once() {
        let c = cfg(&["a"]);
        let mut st = AccountStatus::default();
        let over = Outcome::Reading(Reading {
            five_hour: Some(91.0),
            ..Reading::default()
        });
        assert!(matches!(
            apply(&c, &mut st, &over, None, 1).as_slice(),
            [Change::TokenGood, Change::Crossed(_)]
        ));
        assert!(apply(&c, &mut st, &over, None, 2).is_empty());
    }

    #[test]
    fn target_is_most_headroom_then_config_order() {
        let c = cfg(&["a", "b", "c", "d"]);
        let mut m = BTreeMap::new();
        m.insert("a".into(), reading(95.0, 10.0)); // over 5h
        m.insert("b".into(), reading(50.0, 10.0)); // headroom 40
        m.insert("c".into(), reading(20.0, 85.0)); // headroom 10 (7-day)
        m.insert("d".into(), reading(50.0, 10.0)); // tie with b
        assert_eq!(choose_target(&c, &m, Some("a"), 10).as_deref(), Some("b"));
        assert_eq!(choose_target(&c, &m, Some("b"), 10).as_deref(), Some("d"));
        m.get_mut("b").unwrap().usable = false;
        m.get_mut("d").unwrap().limited_until = Some(100);
        assert_eq!(choose_target(&c, &m, Some("a"), 10).as_deref(), Some("c"));
        // after the held limit ends, d is back
        assert_eq!(choose_target(&c, &m, Some("a"), 100).as_deref(), Some("d"));
    }

    #[test]
    fn unread_accounts_rank_last_but_count() {
        let c = cfg(&["a", "b", "c"]);
        let mut m = BTreeMap::new();
        m.insert(
            "b".into(),
            AccountStatus {
                usable: true,
                ..AccountStatus::default()
            },
        );
        m.insert("c".into(), reading(89.0, 0.0));
        assert_eq!(choose_target(&c, &m, Some("a"), 10).as_deref(), Some("c"));
        m.insert("c".into(), reading(90.0, 0.0));
        assert_eq!(choose_target(&c, &m, Some("a"), 10).as_deref(), Some("b"));
        m.get_mut("b").unwrap().usable = false;
        // "a" has no status at all: usable, unknown headroom
        assert_eq!(choose_target(&c, &m, None, 10).as_deref(), Some("a"));
        assert_eq!(choose_target(&c, &m, Some("a"), 10), None);
    }

    #[test]
    fn a_window_past_its_reset_counts_as_reset() {
        let c = cfg(&["a", "b"]);
        let mut m = BTreeMap::new();
        let mut a = reading(99.0, 50.0);
        a.five_hour_resets = Some(1000);
        let mut b = reading(50.0, 97.0);
        b.seven_day_resets = Some(5000);
        m.insert("a".into(), a);
        m.insert("b".into(), b);
        assert_eq!(choose_target(&c, &m, None, 999), None);
        assert_eq!(earliest_recovery(&c, &m, 999), Some(1000));
        assert_eq!(choose_target(&c, &m, None, 1000).as_deref(), Some("a"));
        // unknown reset: no time from that account
        m.get_mut("a").unwrap().five_hour_resets = None;
        assert_eq!(earliest_recovery(&c, &m, 999), Some(5000));
    }

    #[test]
    fn table_has_a_row_per_account() {
        let t = table(&[("main".into(), reading(37.0, 12.0))]);
        assert!(t.starts_with("ACCOUNT"), "{t}");
        assert!(
            t.contains("main") && t.contains("37.0%") && t.contains("12.0%"),
            "{t}"
        );
    }
}
