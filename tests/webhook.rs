//! Each webhook format against a loopback receiver that answers as the real
//! service does (tests/support/receiver.rs): Slack refuses without `text`,
//! Discord without `content` or over 2000 characters, ntfy shows a JSON body
//! raw.

#[path = "support/receiver.rs"]
mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use claude_failover::notice::{Notice, NoticeKind};
use claude_failover::webhook::{self, Format};
use receiver::{services, Receiver};
use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build(),
    )
}

fn send(format: Format, n: &Notice, headers: &BTreeMap<String, String>, r: &Receiver) -> u16 {
    let req = webhook::render(format, n, "box1", headers);
    webhook::post(&agent(), &r.url, &req)
        .expect("the receiver answers")
        .status()
        .as_u16()
}

fn failed() -> Notice {
    Notice::new(
        NoticeKind::TaskFailed,
        "fix-login.md failed: the agent exited with status 127: command not found",
    )
    .field("task", "fix-login.md")
    .field("project", "/srv/work/api")
}

#[test]
fn the_judges_refuse_what_the_services_refuse() {
    // The generic body is what Slack and Discord refuse: proof the judges bite.
    let n = failed();
    let slack = Receiver::start(Box::new(services::slack));
    assert_eq!(send(Format::Generic, &n, &BTreeMap::new(), &slack), 400);
    let discord = Receiver::start(Box::new(services::discord));
    assert_eq!(send(Format::Generic, &n, &BTreeMap::new(), &discord), 400);
    let ntfy = Receiver::start(Box::new(services::ntfy));
    assert_eq!(send(Format::Generic, &n, &BTreeMap::new(), &ntfy), 400);
}

#[test]
fn slack_gets_text() {
    let r = Receiver::start(Box::new(services::slack));
    assert_eq!(send(Format::Slack, &failed(), &BTreeMap::new(), &r), 200);
    let seen = r.wait(1, Duration::from_secs(5));
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("claude-failover on box1\ntask_failed: fix-login.md failed"),
        "{text}"
    );
    assert!(text.contains("\nproject: /srv/work/api"), "{text}");
    assert_eq!(seen[0].method, "POST");
}

#[test]
fn discord_gets_content_within_its_limit() {
    let r = Receiver::start(Box::new(services::discord));
    assert_eq!(send(Format::Discord, &failed(), &BTreeMap::new(), &r), 204);
    let long = Notice::new(NoticeKind::SessionStuck, "y".repeat(5000));
    assert_eq!(send(Format::Discord, &long, &BTreeMap::new(), &r), 204);
    let seen = r.wait(2, Duration::from_secs(5));
    let v: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(v["content"].as_str().unwrap().chars().count(), 2000);
    assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
}

#[test]
fn ntfy_gets_plain_text_and_headers() {
    let r = Receiver::start(Box::new(services::ntfy));
    let mut h = BTreeMap::new();
    h.insert("Authorization".to_string(), "Bearer tk_abc".to_string());
    h.insert("Tags".to_string(), "robot".to_string());
    assert_eq!(send(Format::Ntfy, &failed(), &h, &r), 200);
    let seen = r.wait(1, Duration::from_secs(5));
    let s = &seen[0];
    assert_eq!(
        s.text(),
        "task_failed: fix-login.md failed: the agent exited with status 127: command not found\nproject: /srv/work/api\ntask: fix-login.md"
    );
    assert_eq!(
        s.header("title"),
        Some("claude-failover on box1: task_failed")
    );
    assert_eq!(s.header("priority"), Some("high"));
    assert_eq!(s.header("tags"), Some("robot"), "configured headers win");
    assert_eq!(s.header("authorization"), Some("Bearer tk_abc"));
    assert!(s.header("content-type").unwrap().starts_with("text/plain"));
}

#[test]
fn generic_is_the_notice_as_json() {
    let r = Receiver::start(Box::new(services::generic));
    let mut h = BTreeMap::new();
    h.insert("Authorization".to_string(), "Bearer s3cret".to_string());
    assert_eq!(send(Format::Generic, &failed(), &h, &r), 200);
    let seen = r.wait(1, Duration::from_secs(5));
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["event"], "task_failed");
    assert_eq!(v["host"], "box1");
    assert_eq!(v["fields"]["task"], "fix-login.md");
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
}
