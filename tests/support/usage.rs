//! The stand-in usage endpoint (which also catches the webhook notices) and
//! a failover setup around it: accounts with credentials, the support
//! builder's config with this server as the usage API and webhook, quick
//! failover timings.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claude_failover::daemon::Daemon;
use claude_failover::timefmt::{now_ms, rfc3339};
use serde_json::Value;

use super::Env;

// ------------------------------------------------------------ usage server

/// How the stand-in usage endpoint answers one token.
#[derive(Clone, Debug)]
pub enum Mode {
    Usage {
        five: f64,
        seven: f64,
        resets: Option<u64>,
    },
    TooMany(u64),
    Unauthorized,
    Garbage,
    Slow(Duration),
}

#[derive(Default)]
pub struct Inner {
    modes: HashMap<String, Mode>,
    /// Token and time of every usage request.
    requests: Vec<(String, Instant)>,
    /// Webhook bodies (the daemon's notices).
    notices: Vec<Value>,
}

#[derive(Clone)]
pub struct Server {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Server {
    pub fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner::default()));
        let i = inner.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let i = i.clone();
                std::thread::spawn(move || serve(c, &i));
            }
        });
        Server { url, inner }
    }

    pub fn set(&self, token: &str, m: Mode) {
        self.inner.lock().unwrap().modes.insert(token.into(), m);
    }

    pub fn usage(&self, token: &str, five: f64, seven: f64) {
        self.set(
            token,
            Mode::Usage {
                five,
                seven,
                resets: None,
            },
        );
    }

    pub fn requests(&self, token: &str) -> usize {
        let g = self.inner.lock().unwrap();
        g.requests.iter().filter(|r| r.0 == token).count()
    }

    pub fn last_request(&self, token: &str) -> Option<Instant> {
        let g = self.inner.lock().unwrap();
        g.requests.iter().rev().find(|r| r.0 == token).map(|r| r.1)
    }

    /// Every notice the webhook got, whatever its event.
    pub fn all_notices(&self) -> Vec<Value> {
        self.inner.lock().unwrap().notices.clone()
    }

    pub fn notices(&self, event: &str) -> Vec<Value> {
        let g = self.inner.lock().unwrap();
        g.notices
            .iter()
            .filter(|n| n["event"] == event)
            .cloned()
            .collect()
    }
}

fn serve(mut c: TcpStream, inner: &Mutex<Inner>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let reply = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            c,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
    };
    if first.starts_with("POST /hook") {
        let n: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; n];
        let _ = r.read_exact(&mut body);
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            inner.lock().unwrap().notices.push(v);
        }
        reply(&mut c, "200 OK", "", "{}");
        return;
    }
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    assert_eq!(
        headers.get("anthropic-beta").map(String::as_str),
        Some("oauth-2025-04-20")
    );
    let mode = {
        let mut g = inner.lock().unwrap();
        g.requests.push((token.clone(), Instant::now()));
        g.modes.get(&token).cloned()
    };
    match mode {
        None | Some(Mode::Unauthorized) => reply(
            &mut c,
            "401 Unauthorized",
            "",
            r#"{"error":{"type":"authentication_error"}}"#,
        ),
        Some(Mode::TooMany(s)) => reply(
            &mut c,
            "429 Too Many Requests",
            &format!("Retry-After: {s}\r\n"),
            r#"{"error":{"type":"rate_limit_error"}}"#,
        ),
        Some(Mode::Garbage) => reply(&mut c, "200 OK", "", "<html>gateway</html>"),
        Some(Mode::Slow(d)) => {
            std::thread::sleep(d);
            reply(
                &mut c,
                "200 OK",
                "",
                r#"{"five_hour":null,"seven_day":null}"#,
            )
        }
        Some(Mode::Usage {
            five,
            seven,
            resets,
        }) => {
            let resets = resets.map_or(Value::Null, |t| Value::from(rfc3339(t)));
            let body = serde_json::json!({
                "five_hour": { "utilization": five, "resets_at": resets },
                "seven_day": { "utilization": seven, "resets_at": null },
                "seven_day_opus": null,
                "extra_usage": { "is_enabled": false },
            });
            reply(&mut c, "200 OK", "", &body.to_string())
        }
    }
}

// ------------------------------------------------------------------ setup

pub struct Setup {
    pub env: Env,
    pub server: Server,
    pub poll: &'static str,
    pub cooldown: &'static str,
    pub throttle_pause: &'static str,
}

impl Setup {
    pub fn new(projects: usize, sessions: u32) -> Setup {
        let env = Env::new(projects, sessions);
        let server = Server::start();
        for (name, dir) in &env.accounts {
            creds(dir, &format!("tok-{name}"), now_ms() + 3_600_000);
        }
        server.usage("tok-main", 10.0, 5.0);
        server.usage("tok-backup", 20.0, 5.0);
        Setup {
            env,
            server,
            poll: "300ms",
            cooldown: "10m",
            throttle_pause: "1s",
        }
    }

    pub fn shared(&self) -> PathBuf {
        self.env.root().join("shared")
    }

    /// The support builder's config with this server as the usage API and
    /// webhook, and quick failover timings.
    pub fn yaml(&self) -> String {
        let quota = format!(
            "{{ endpoint: '{}/usage', poll_interval: {}, timeout: 1s }}",
            self.server.url, self.poll
        );
        let failover = format!(
            "{{ shared_transcripts: '{}', stop_timeout: 4s, cooldown: {}, throttle_pause: {}, retry_interval: 2s }}",
            self.shared().display(),
            self.cooldown,
            self.throttle_pause
        );
        let extra = format!(
            "notify: {{ webhooks: [ {{ url: '{}/hook' }} ], dedup_window: 0s }}\n",
            self.server.url
        );
        self.env.yaml_with(&quota, &failover, &extra)
    }

    pub fn start(&self) -> Daemon {
        let cfg = claude_failover::config::Config::parse(&self.yaml(), "test.yaml")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.yaml()));
        Daemon::start(cfg).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
    }

    /// Queues a task that keeps its agent working (a long turn).
    pub fn long_task(&self, project: usize, name: &str) {
        self.env
            .task(project, name, &format!("{name}: work @fake:sleep=600"));
    }
}

pub fn creds(dir: &Path, token: &str, expires_ms: u64) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join(".credentials.json"),
        serde_json::json!({
            "claudeAiOauth": {
                "accessToken": token,
                "refreshToken": "never-used",
                "expiresAt": expires_ms,
                "scopes": ["user:inference"],
            }
        })
        .to_string(),
    )
    .unwrap();
}
