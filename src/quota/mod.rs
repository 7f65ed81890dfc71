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
use crate::notice::{Notice, NoticeKind};
use crate::state::{AccountStatus, TokenState};
use crate::timefmt::{now_ms, now_secs, parse_rfc3339, rfc3339};

mod api;
mod cli;
mod rules;
#[allow(unused_imports)]
pub use self::{api::*, cli::*, rules::*};

/// The beta header the OAuth usage endpoint wants.
pub const BETA: &str = "oauth-2025-04-20";
/// Longest `retry-after` honoured as given.
const MAX_BACKOFF: u64 = 6 * 3600;
/// The doubling backoff when a 429 says nothing: from this, up to an hour.
const BASE_BACKOFF: u64 = 60;
/// Bodies larger than this are not a usage answer.
const MAX_BODY: u64 = 1 << 20;

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

/// The account's token cannot be used: unusable until a good reading, and
/// `why` (for the notice) when it was usable until now.
fn token_bad(
    st: &mut AccountStatus,
    changes: &mut Vec<Change>,
    token: TokenState,
    error: String,
    why: String,
) {
    if st.usable {
        changes.push(Change::TokenBad(why));
    }
    st.error = Some(error);
    st.token = Some(token);
    st.usable = false;
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
            st.token = Some(TokenState::Ok);
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
        // Claude cannot log in with what it cannot read either.
        Outcome::NoCredentials(e) => token_bad(
            st,
            &mut changes,
            TokenState::Missing,
            format!("no credentials: {e}"),
            format!("its credentials cannot be read ({e})"),
        ),
        Outcome::Expired => token_bad(
            st,
            &mut changes,
            TokenState::Expired,
            "token expired (expiresAt has passed)".into(),
            "its OAuth token has expired".into(),
        ),
        Outcome::Rejected(code) => token_bad(
            st,
            &mut changes,
            TokenState::Rejected,
            format!("token rejected (HTTP {code})"),
            format!("the usage API rejected its token (HTTP {code})"),
        ),
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
        Outcome::Reading(_) | Outcome::BackingOff(_) => {
            log::debug!("usage of {}: {outcome}", acct.name)
        }
        Outcome::NoCredentials(e) => log::debug!("usage of {}: not polled ({e})", acct.name),
        other => log::warn!("usage of {}: {other}", acct.name),
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
                    NoticeKind::TokenExpired,
                    format!(
                        "account {}: {why}; it is not used until it works again",
                        acct.name
                    ),
                )
                .field("account", acct.name.clone()),
            ),
            Change::TokenGood => log::info!("account {} is usable again", acct.name),
            Change::Crossed(w) => ctx.notify(
                Notice::new(
                    NoticeKind::QuotaWarning,
                    format!("account {}: {w}", acct.name),
                )
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
        for bad in ["-3", "1000.5", "null", "\"n/a\""] {
            let body = format!(r#"{{"five_hour":{{"utilization":{bad},"resets_at":1800000000}}}}"#);
            assert!(parse_usage(&body).is_err(), "{body}");
        }
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
        // Credentials that cannot be read: claude cannot log in either.
        let ch = apply(&c, &mut st, &Outcome::NoCredentials("x".into()), None, 8);
        assert!(matches!(&ch[..], [Change::TokenBad(_)]), "{ch:?}");
        assert!(!st.usable);
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
