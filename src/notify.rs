//! The notifier: takes notices from every component (a bounded queue; the
//! sender drops and counts when it is full) and hands them to the sinks,
//! Telegram `sendMessage` and webhooks.
//!
//! The notifier thread filters (`notify.events`) and de-duplicates bursts
//! (the same event and message within `notify.dedup_window` goes out once,
//! then one summary with the count). Each sink has its own worker thread
//! and bounded queue, so a dead or slow sink delays nobody else: when its
//! queue is full the notice is dropped for that sink and counted. A worker
//! rate-limits itself (`notify.rate_per_minute`) and retries with backoff,
//! honouring a 429's `retry_after` (Telegram's `parameters.retry_after`)
//! or `Retry-After`. A notice is sent to a sink until it is taken once,
//! never again after that.
//!
//! The Telegram bot token comes from the environment variable named in
//! `bot_token_env`; it is part of the request URL, so nothing that may hold
//! the URL (ureq's errors) is logged without the token redacted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde_json::Value;

use crate::bus::Ctx;
use crate::config::NotifyConfig;
use crate::notice::{Notice, NoticeKind};

/// Notices queued per sink.
pub const SINK_QUEUE: usize = 64;
/// Tries per notice and sink.
const MAX_ATTEMPTS: u32 = 6;
/// One HTTP exchange with a sink, connect to last byte.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between tries, also for a server's `retry_after`.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Telegram refuses longer texts.
const TELEGRAM_MAX_CHARS: usize = 4000;

pub fn run(ctx: Arc<Ctx>, rx: Receiver<Notice>) {
    let mut cfg = ctx.config();
    let mut sinks = start_sinks(&ctx, &cfg.notify);
    let mut dedup = Dedup::new(cfg.notify.dedup_window.get());
    let mut out = Vec::new();
    loop {
        let timer = match dedup.next_flush() {
            Some(t) => crossbeam_channel::at(t),
            None => crossbeam_channel::never(),
        };
        crossbeam_channel::select! {
            recv(ctx.stop) -> _ => return,
            recv(rx) -> n => match n {
                Ok(n) => {
                    let now_cfg = ctx.config();
                    if !Arc::ptr_eq(&now_cfg, &cfg) {
                        if now_cfg.notify != cfg.notify {
                            log::info!("notify settings changed; restarting the sinks");
                            sinks = start_sinks(&ctx, &now_cfg.notify);
                            dedup.window = now_cfg.notify.dedup_window.get();
                        }
                        cfg = now_cfg;
                    }
                    if wanted(&cfg.notify, n.event.as_str()) {
                        dedup.push(n, Instant::now(), &mut out);
                    }
                }
                Err(_) => return,
            },
            recv(timer) -> _ => dedup.flush(Instant::now(), &mut out),
        }
        for n in out.drain(..) {
            for s in &sinks {
                match s.tx.try_send(n.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        log::warn!("{}: queue full, dropping a {} notice", s.name, n.event);
                        ctx.state().metrics.notices_dropped += 1;
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
        }
    }
}

/// `notify.events` empty sends everything but `task_done`, which comes
/// once per task and is sent only when listed.
fn wanted(cfg: &NotifyConfig, event: &str) -> bool {
    (cfg.events.is_empty() && event != "task_done") || cfg.events.iter().any(|e| e == event)
}

// ------------------------------------------------------------------ dedup

struct Burst {
    first: Instant,
    repeats: u32,
    last: Notice,
}

/// Collapses repeats of (event, message) within `window`.
struct Dedup {
    window: Duration,
    seen: HashMap<(NoticeKind, String), Burst>,
}

impl Dedup {
    fn new(window: Duration) -> Dedup {
        Dedup {
            window,
            seen: HashMap::new(),
        }
    }

    /// Adds what must be sent now to `out`.
    fn push(&mut self, n: Notice, now: Instant, out: &mut Vec<Notice>) {
        self.flush(now, out);
        if self.window.is_zero() {
            out.push(n);
            return;
        }
        let key = (n.event, n.message.clone());
        match self.seen.get_mut(&key) {
            Some(b) => {
                b.repeats += 1;
                b.last = n;
            }
            None => {
                self.seen.insert(
                    key,
                    Burst {
                        first: now,
                        repeats: 0,
                        last: n.clone(),
                    },
                );
                out.push(n);
            }
        }
    }

    /// Ends the bursts whose window is over, with a summary for those that
    /// had repeats.
    fn flush(&mut self, now: Instant, out: &mut Vec<Notice>) {
        let window = self.window;
        self.seen.retain(|_, b| {
            if now.duration_since(b.first) < window {
                return true;
            }
            if b.repeats > 0 {
                let mut n = b.last.clone();
                n.message = format!(
                    "{} (repeated {} more time{} within {}s)",
                    n.message,
                    b.repeats,
                    if b.repeats == 1 { "" } else { "s" },
                    window.as_secs()
                );
                n.fields
                    .insert("repeated".into(), Value::from(u64::from(b.repeats)));
                out.push(n);
            }
            false
        });
    }

    /// When the next summary is due, if any.
    fn next_flush(&self) -> Option<Instant> {
        self.seen
            .values()
            .filter(|b| b.repeats > 0)
            .map(|b| b.first + self.window)
            .min()
    }
}

// ------------------------------------------------------------------ sinks

struct SinkHandle {
    name: String,
    tx: Sender<Notice>,
}

enum Target {
    Telegram {
        /// `{api_base}/bot{token}/sendMessage`: a secret.
        url: String,
        token: String,
        chat_id: String,
    },
    Webhook {
        url: String,
        format: crate::webhook::Format,
        headers: std::collections::BTreeMap<String, String>,
    },
}

struct Sink {
    name: String,
    /// The `sink` label of `/metrics`: `telegram`, `webhook 1`, …
    metric: String,
    target: Target,
    agent: ureq::Agent,
    host: String,
}

fn start_sinks(ctx: &Arc<Ctx>, cfg: &NotifyConfig) -> Vec<SinkHandle> {
    let mut targets = Vec::new();
    if let Some(t) = &cfg.telegram {
        let token = std::env::var(&t.bot_token_env).unwrap_or_default();
        if t.chat_id.trim().is_empty() {
            log::warn!("notify.telegram.chat_id is empty; Telegram notices are off");
        } else if token.trim().is_empty() {
            log::warn!("${} is not set; Telegram notices are off", t.bot_token_env);
        } else {
            let token = token.trim().to_string();
            targets.push((
                "telegram".to_string(),
                Target::Telegram {
                    url: format!(
                        "{}/bot{}/sendMessage",
                        t.api_base.trim_end_matches('/'),
                        token
                    ),
                    token,
                    chat_id: t.chat_id.clone(),
                },
            ));
        }
    }
    for (i, w) in cfg.webhooks.iter().enumerate() {
        targets.push((
            format!("webhook {} ({})", i + 1, shown_url(&w.url)),
            Target::Webhook {
                url: w.url.clone(),
                format: w.format,
                headers: w.headers.clone(),
            },
        ));
    }
    let mut sinks = Vec::new();
    for (name, target) in targets {
        let (tx, rx) = bounded(SINK_QUEUE);
        let metric = name.split(" (").next().unwrap_or(&name).to_string();
        let sink = Sink {
            name: name.clone(),
            metric,
            target,
            agent: agent(),
            host: ctx.host.clone(),
        };
        let c = ctx.clone();
        let rate = cfg.rate_per_minute.max(1);
        let spawned = std::thread::Builder::new()
            .name("notify-sink".into())
            .stack_size(512 * 1024)
            .spawn(move || worker(c, sink, rx, rate));
        match spawned {
            Ok(_) => sinks.push(SinkHandle { name, tx }),
            Err(e) => log::error!("cannot start the {name} sink: {e}"),
        }
    }
    sinks
}

fn agent() -> ureq::Agent {
    crate::http::agent(SEND_TIMEOUT, None, 2)
}

/// Scheme and host of a URL: webhook URLs often carry a secret in the path.
fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}/…")
}

/// Allows `per_minute` sends per minute, in bursts of up to that many.
struct Bucket {
    tokens: f64,
    cap: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Bucket {
        let cap = f64::from(per_minute);
        Bucket {
            tokens: cap,
            cap,
            per_sec: cap / 60.0,
            at: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

fn worker(ctx: Arc<Ctx>, sink: Sink, rx: Receiver<Notice>, per_minute: u32) {
    let mut bucket = Bucket::new(per_minute);
    loop {
        let n = crossbeam_channel::select! {
            recv(rx) -> n => match n {
                Ok(n) => n,
                Err(_) => return, // the notifier restarted the sinks or stopped
            },
            recv(ctx.stop) -> _ => return,
        };
        loop {
            match bucket.take(Instant::now()) {
                Ok(()) => break,
                Err(wait) => {
                    if ctx.sleep(wait) {
                        return;
                    }
                }
            }
        }
        if !deliver(&ctx, &sink, &n) {
            return;
        }
    }
}

enum Failure {
    /// Worth another try, after the server's wish if it said one.
    Retry(String, Option<Duration>),
    /// A 4xx other than 429: another try would fail the same way.
    Permanent(String),
}

/// Sends one notice until it is taken or given up; false when the daemon
/// stopped meanwhile.
fn deliver(ctx: &Ctx, sink: &Sink, n: &Notice) -> bool {
    for attempt in 0..MAX_ATTEMPTS {
        match sink.send(n) {
            Ok(()) => {
                sink.count(ctx, true);
                log::debug!("{}: sent {}", sink.name, n.event);
                return true;
            }
            Err(Failure::Permanent(why)) => {
                sink.count(ctx, false);
                log::error!("{}: {} notice refused: {why}", sink.name, n.event);
                return true;
            }
            Err(Failure::Retry(why, after)) => {
                if attempt + 1 == MAX_ATTEMPTS {
                    sink.count(ctx, false);
                    log::error!(
                        "{}: giving up on a {} notice after {MAX_ATTEMPTS} tries: {why}",
                        sink.name,
                        n.event
                    );
                    return true;
                }
                let wait = after
                    .unwrap_or_else(|| Duration::from_secs(1 << attempt.min(6)))
                    .min(MAX_WAIT);
                log::warn!(
                    "{}: {why}; trying again in {}s",
                    sink.name,
                    wait.as_secs_f64().ceil()
                );
                if ctx.sleep(wait) {
                    return false;
                }
            }
        }
    }
    true
}

impl Sink {
    /// One notice taken (`sent`) or given up, in the totals and per sink.
    fn count(&self, ctx: &Ctx, sent: bool) {
        let mut st = ctx.state();
        let m = &mut st.metrics;
        let per = m.notices_by_sink.entry(self.metric.clone()).or_default();
        if sent {
            per.sent += 1;
            m.notices_sent += 1;
        } else {
            per.failed += 1;
            m.notices_failed += 1;
        }
    }

    fn send(&self, n: &Notice) -> Result<(), Failure> {
        let (url, req) = match &self.target {
            Target::Telegram { url, chat_id, .. } => {
                let body = serde_json::json!({
                    "chat_id": chat_id,
                    "text": crate::webhook::text(n, &self.host, TELEGRAM_MAX_CHARS),
                    "disable_web_page_preview": true,
                });
                (
                    url,
                    crate::webhook::Request {
                        content_type: "application/json",
                        headers: Vec::new(),
                        body: serde_json::to_vec(&body).unwrap_or_default(),
                    },
                )
            }
            Target::Webhook {
                url,
                format,
                headers,
            } => (url, crate::webhook::render(*format, n, &self.host, headers)),
        };
        let result = crate::webhook::post(&self.agent, url, &req);
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return Err(Failure::Retry(self.redact(&e.to_string()), None)),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            // Read the (small) answer so the connection can be reused.
            let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
            return Ok(());
        }
        let header_wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let body_wait = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/parameters/retry_after").and_then(Value::as_u64))
            .map(Duration::from_secs);
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("description")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        let why = self.redact(&format!("HTTP {status}: {}", detail.trim()));
        if status == 429 || status == 408 || status >= 500 {
            Err(Failure::Retry(why, body_wait.or(header_wait)))
        } else {
            Err(Failure::Permanent(why))
        }
    }

    /// Removes the secret parts (bot token, webhook URL) from a message.
    fn redact(&self, s: &str) -> String {
        match &self.target {
            Target::Telegram { url, token, .. } => s
                .replace(url.as_str(), "<telegram sendMessage URL>")
                .replace(token.as_str(), "<redacted>"),
            Target::Webhook { url, .. } => s.replace(url.as_str(), &shown_url(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_sent_once_then_summarised() {
        let mut d = Dedup::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut out = Vec::new();
        let n = Notice::new(NoticeKind::SessionDead, "ccl-1 is gone");
        d.push(n.clone(), t0, &mut out);
        d.push(n.clone(), t0 + Duration::from_secs(1), &mut out);
        d.push(n.clone(), t0 + Duration::from_secs(2), &mut out);
        d.push(
            Notice::new(NoticeKind::SessionDead, "ccl-2 is gone"),
            t0 + Duration::from_secs(3),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(d.next_flush(), Some(t0 + Duration::from_secs(60)));
        out.clear();
        d.flush(t0 + Duration::from_secs(61), &mut out);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].message.contains("repeated 2 more times"),
            "{}",
            out[0].message
        );
        assert_eq!(out[0].fields["repeated"], 2);
        assert_eq!(d.next_flush(), None);
        out.clear();
        d.push(n, t0 + Duration::from_secs(62), &mut out);
        assert_eq!(out.len(), 1, "a new window sends again");
    }

    #[test]
    fn bucket_limits_rate() {
        let mut b = Bucket::new(2);
        let t = Instant::now();
        assert!(b.take(t).is_ok());
        assert!(b.take(t).is_ok());
        let wait = b.take(t).unwrap_err();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(b.take(t + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            shown_url("https://user:pw@hooks.example.com/services/T0/B0/secret?x=1"),
            "https://hooks.example.com/…"
        );
    }

    #[test]
    fn the_bot_token_never_shows_in_errors() {
        for base in ["http://127.0.0.1:1", "http://[::1", "ftp://x"] {
            let token = "999:TOPSECRET";
            let sink = Sink {
                name: "telegram".into(),
                metric: "telegram".into(),
                target: Target::Telegram {
                    url: format!("{base}/bot{token}/sendMessage"),
                    token: token.into(),
                    chat_id: "1".into(),
                },
                agent: agent(),
                host: "h".into(),
            };
            match sink.send(&Notice::new(NoticeKind::Failover, "x")) {
                Err(Failure::Retry(why, _)) | Err(Failure::Permanent(why)) => {
                    assert!(!why.contains("TOPSECRET"), "{why}");
                }
                Ok(()) => panic!("sent to {base}?"),
            }
        }
    }

    #[test]
    fn telegram_text_is_bounded() {
        let n = Notice::new(NoticeKind::TaskFailed, "x".repeat(5000)).field("task", "a.md");
        let t = crate::webhook::text(&n, "h", TELEGRAM_MAX_CHARS);
        assert_eq!(t.chars().count(), TELEGRAM_MAX_CHARS);
        let n = Notice::new(NoticeKind::TaskFailed, "boom").field("task", "a.md");
        assert_eq!(
            crate::webhook::text(&n, "h", TELEGRAM_MAX_CHARS),
            "claude-failover on h\ntask_failed: boom\ntask: a.md"
        );
    }
}
