//! Webhook bodies: one notice rendered the way each receiving service
//! wants it (`notify.webhooks[].format`), plus the operator's own headers.
//!
//! - `generic`: the notice as JSON (`Notice::to_json`), for scripts;
//! - `slack`: `{"text"}` (an incoming webhook answers `400 no_text` without it),
//!   with `&`, `<`, `>` escaped as Slack's mrkdwn needs;
//! - `discord`: `{"content"}`, at most 2000 characters (Discord refuses
//!   more), mentions disabled so a task's text cannot ping `@everyone`;
//! - `ntfy`: the text as a plain body (ntfy shows a JSON body raw), with
//!   `Title`, `Priority` and `Tags` headers, each overridable in `headers`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::notice::Notice;

/// Discord refuses a `content` longer than this.
pub const DISCORD_MAX_CHARS: usize = 2000;
/// Slack shows longer texts cut or folded; stay readable.
pub const SLACK_MAX_CHARS: usize = 4000;
/// ntfy turns a longer body into an attachment.
pub const NTFY_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Generic,
    Slack,
    Discord,
    Ntfy,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::Slack => "slack",
            Format::Discord => "discord",
            Format::Ntfy => "ntfy",
        }
    }
}

/// What goes over the wire for one notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub content_type: &'static str,
    /// In sending order; the configured ones last, replacing a default of
    /// the same name.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Renders `n` for a webhook of `format`, with the configured `headers`.
pub fn render(
    format: Format,
    n: &Notice,
    host: &str,
    headers: &BTreeMap<String, String>,
) -> Request {
    const JSON: &str = "application/json";
    let (content_type, defaults, body) = match format {
        Format::Generic => (JSON, Vec::new(), n.to_json(host)),
        Format::Slack => (
            JSON,
            Vec::new(),
            json!({ "text": slack_escape(&text(n, host, SLACK_MAX_CHARS)) }),
        ),
        Format::Discord => (
            JSON,
            Vec::new(),
            json!({
                "content": text(n, host, DISCORD_MAX_CHARS),
                "allowed_mentions": { "parse": [] },
            }),
        ),
        Format::Ntfy => {
            let mut body = field_lines(n);
            truncate_bytes(&mut body, NTFY_MAX_BYTES);
            return Request {
                content_type: "text/plain; charset=utf-8",
                headers: merge(
                    vec![
                        (
                            "Title".into(),
                            ascii(&format!("claude-failover on {host}: {}", n.event)),
                        ),
                        ("Priority".into(), ntfy_priority(n.event.as_str()).into()),
                        (
                            "Tags".into(),
                            format!("{},{}", ntfy_tag(n.event.as_str()), n.event),
                        ),
                    ],
                    headers,
                ),
                body: body.into_bytes(),
            };
        }
    };
    Request {
        content_type,
        headers: merge(defaults, headers),
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// `claude-failover on HOST` / `EVENT: message` / `key: value` lines, cut
/// to `max_chars` with a `…`: the human text of every chat sink.
pub fn text(n: &Notice, host: &str, max_chars: usize) -> String {
    let mut t = format!("claude-failover on {host}\n{}", field_lines(n));
    if t.chars().count() > max_chars {
        t = t.chars().take(max_chars.saturating_sub(1)).collect();
        t.push('…');
    }
    t
}

/// `EVENT: message`, then one `key: value` line per field.
fn field_lines(n: &Notice) -> String {
    let mut t = format!("{}: {}", n.event, n.message);
    for (k, v) in &n.fields {
        t.push_str(&format!("\n{k}: {}", value_text(v)));
    }
    t
}

/// A field as a person reads it: strings bare, lists comma-separated
/// (`none` when empty), never JSON or Debug syntax.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Slack reads `&`, `<` and `>` as markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Header values must be visible ASCII; anything else becomes `?`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max - '…'.len_utf8();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push('…');
}

/// Events that want someone's attention now ring louder.
fn ntfy_priority(event: &str) -> &'static str {
    match event {
        "failover" | "task_failed" | "session_dead" | "token_expired" | "circuit_breaker"
        | "dispatch_paused" => "high",
        _ => "default",
    }
}

/// An emoji short code ntfy shows in front of the title.
fn ntfy_tag(event: &str) -> &'static str {
    match event {
        "task_done" => "white_check_mark",
        "task_failed" => "x",
        "failover" => "arrows_counterclockwise",
        "quota_warning" => "warning",
        "session_dead" => "skull",
        "guard_block" | "circuit_breaker" => "no_entry",
        "session_waiting" => "hourglass",
        _ => "bell",
    }
}

/// Defaults, with any configured header of the same name (case ignored)
/// replacing the default, then the other configured ones.
fn merge(
    defaults: Vec<(String, String)>,
    configured: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = defaults
        .into_iter()
        .filter(|(k, _)| !configured.keys().any(|c| c.eq_ignore_ascii_case(k)))
        .collect();
    out.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// A configured header the HTTP client can send as written: a token name,
/// a value without line breaks. `Content-Type` and `Content-Length` are the
/// format's to set.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "header name `{name}` must be letters, digits or `-` (no spaces or `:`)"
        ));
    }
    if ["content-type", "content-length", "host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return Err(format!("header `{name}` is set by the webhook format"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header `{name}` must fit on one line"));
    }
    Ok(())
}

/// POSTs a rendered notice; the caller judges the status.
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    r: &Request,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut req = agent.post(url).header("Content-Type", r.content_type);
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.send(&r.body[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::NoticeKind;

    fn notice() -> Notice {
        Notice::new(NoticeKind::TaskFailed, "fix-login.md failed: <boom> & more")
            .field("task", "fix-login.md")
            .field("moved", Value::Array(Vec::new()))
            .field("attempts", 3)
    }

    fn no_headers() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn formats_parse_from_yaml() {
        let f: Vec<Format> = serde_yaml::from_str("[generic, slack, discord, ntfy]").unwrap();
        assert_eq!(
            f,
            [
                Format::Generic,
                Format::Slack,
                Format::Discord,
                Format::Ntfy
            ]
        );
        assert!(serde_yaml::from_str::<Format>("teams").is_err());
        assert_eq!(Format::default(), Format::Generic);
    }

    #[test]
    fn text_is_readable_and_bounded() {
        let t = text(&notice(), "h", 4000);
        assert_eq!(
            t,
            "claude-failover on h\ntask_failed: fix-login.md failed: <boom> & more\nattempts: 3\nmoved: none\ntask: fix-login.md"
        );
        let long = Notice::new(NoticeKind::SessionStuck, "x".repeat(5000));
        assert_eq!(text(&long, "h", 2000).chars().count(), 2000);
        assert_eq!(
            value_text(&serde_json::json!(["ccl-1", "ccl-2"])),
            "ccl-1, ccl-2"
        );
    }

    #[test]
    fn slack_escapes_markup() {
        let r = render(Format::Slack, &notice(), "h", &no_headers());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let t = v["text"].as_str().unwrap();
        assert!(t.contains("&lt;boom&gt; &amp; more"), "{t}");
    }

    #[test]
    fn ntfy_headers_can_be_replaced_and_added() {
        let mut h = BTreeMap::new();
        h.insert("priority".to_string(), "urgent".to_string());
        h.insert("Authorization".to_string(), "Bearer tk_1".to_string());
        let r = render(Format::Ntfy, &notice(), "höst", &h);
        assert_eq!(
            r.headers,
            vec![
                (
                    "Title".to_string(),
                    "claude-failover on h?st: task_failed".to_string()
                ),
                ("Tags".to_string(), "x,task_failed".to_string()),
                ("Authorization".to_string(), "Bearer tk_1".to_string()),
                ("priority".to_string(), "urgent".to_string()),
            ]
        );
        let mut big = Notice::new(NoticeKind::SessionStuck, "é".repeat(3000));
        big.fields.clear();
        let r = render(Format::Ntfy, &big, "h", &no_headers());
        assert!(r.body.len() <= NTFY_MAX_BYTES);
        assert!(String::from_utf8(r.body).unwrap().ends_with('…'));
    }

    #[test]
    fn headers_are_checked() {
        assert!(check_header("Authorization", "Bearer x").is_ok());
        assert!(check_header("X-Priority", "5").is_ok());
        assert!(check_header("Bad Name", "x").is_err());
        assert!(check_header("", "x").is_err());
        assert!(check_header("Content-Type", "text/html").is_err());
        assert!(check_header("X", "a\r\nInjected: 1").is_err());
    }
}
