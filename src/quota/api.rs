//! The usage API: one request with an account's token, its answer parsed, a 429's retry-after, never the token in a message.

#[allow(unused_imports)]
use super::*;

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

/// A usage percent, or `unknown` when the window was not in the answer.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".into(), |p| format!("{p}%"))
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reading(r) => write!(
                f,
                "5-hour {}, 7-day {}",
                percent(r.five_hour),
                percent(r.seven_day)
            ),
            Outcome::NoCredentials(e) => write!(f, "no credentials ({e})"),
            Outcome::Expired => f.write_str("the token has expired"),
            Outcome::Rejected(code) => write!(f, "the token was refused (HTTP {code})"),
            Outcome::Throttled(Some(s)) => write!(f, "throttled (HTTP 429), retry after {s}s"),
            Outcome::Throttled(None) => f.write_str("throttled (HTTP 429)"),
            Outcome::BackingOff(t) => {
                write!(f, "backing off until {}", crate::timefmt::rfc3339(*t))
            }
            Outcome::Failed(e) => write!(f, "the usage request failed: {e}"),
        }
    }
}

impl Outcome {
    /// Whether the API gave no usable answer (for a `rate_limit` check).
    pub fn unanswered(&self) -> bool {
        !matches!(self, Outcome::Reading(_))
    }
}

/// Parses a usage answer tolerantly: windows may be null or missing,
/// unknown keys are ignored, numbers may come as strings. An answer with
/// neither window key (an error document, HTML, ...) is an error, and so is
/// a window whose utilization is missing, null, negative or above 1000 %:
/// such a reading must not replace the last good one.
pub fn parse_usage(body: &str) -> Result<Reading, String> {
    let v: Value =
        serde_json::from_str(body.trim()).map_err(|_| format!("not JSON: {}", snippet(body)))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", snippet(body)))?;
    if !obj.contains_key("five_hour") && !obj.contains_key("seven_day") {
        return Err(format!("no usage windows in the answer: {}", snippet(body)));
    }
    let window = |k: &str| -> Result<(Option<f64>, Option<u64>), String> {
        let w = &v[k];
        if !w.is_object() {
            return Ok((None, None));
        }
        let util = number(&w["utilization"])
            .filter(|u| u.is_finite() && (0.0..=1000.0).contains(u))
            .ok_or_else(|| {
                format!(
                    "implausible {k} utilization {} in the answer",
                    snippet(&w["utilization"].to_string())
                )
            })?;
        let resets = match &w["resets_at"] {
            Value::String(s) => parse_rfc3339(s),
            Value::Number(n) => n
                .as_u64()
                .map(|t| if t > 10_000_000_000 { t / 1000 } else { t }),
            _ => None,
        };
        Ok((Some(util), resets))
    };
    let (five_hour, five_hour_resets) = window("five_hour")?;
    let (seven_day, seven_day_resets) = window("seven_day")?;
    Ok(Reading {
        five_hour,
        seven_day,
        five_hour_resets,
        seven_day_resets,
    })
}

pub(super) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    }
}

pub(super) fn snippet(s: &str) -> String {
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
    crate::http::agent(t * 3, Some(t), 4)
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

pub(super) fn redact(s: &str, token: &str) -> String {
    if token.len() >= 4 {
        s.replace(token, "[token]")
    } else {
        s.to_string()
    }
}

/// A fingerprint of a token (FNV-1a), to key its backoff without keeping it.
pub fn fingerprint(token: &str) -> String {
    format!("{:016x}", crate::http::fnv1a(token.as_bytes()))
}
