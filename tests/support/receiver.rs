//! A loopback HTTP receiver for notification tests: std `TcpListener` on
//! 127.0.0.1, `httparse` for the head, a judge per request that answers as
//! the real service would. Every request it saw is kept for the test.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the judge answers: status and body.
pub type Judge = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// Serves until the test process ends.
    pub fn start(judge: Box<Judge>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/secret", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let judge: Arc<Judge> = Arc::from(judge);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, judge) = (s.clone(), judge.clone());
                std::thread::spawn(move || serve(conn, &s, &*judge));
            }
        });
        Receiver { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for `n` requests, with a deadline.
    pub fn wait(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.seen();
            if s.len() >= n {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {n} requests; got {s:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>, judge: &Judge) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = req.parse(&buf) else {
            continue;
        };
        let hs: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let (method, path) = (
            req.method.unwrap_or("").to_string(),
            req.path.unwrap_or("").to_string(),
        );
        let len: usize = hs
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head + len {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let s = Seen {
            method,
            path,
            headers: hs,
            body: buf[head..head + len].to_vec(),
        };
        let (status, body) = judge(&s);
        seen.lock().unwrap().push(s);
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(resp.as_bytes());
        return;
    }
}

/// The judges: what each real service requires of a webhook POST.
pub mod services {
    use super::Seen;
    use serde_json::Value;

    fn json(s: &Seen) -> Option<Value> {
        if !s.header("content-type")?.starts_with("application/json") {
            return None;
        }
        serde_json::from_slice(&s.body).ok()
    }

    /// Slack incoming webhooks: `400 no_text` without a non-empty `text`.
    pub fn slack(s: &Seen) -> (u16, String) {
        match json(s).as_ref().and_then(|v| v["text"].as_str()) {
            Some(t) if !t.trim().is_empty() => (200, "ok".into()),
            _ => (400, "no_text".into()),
        }
    }

    /// Discord webhooks: `content` from 1 to 2000 characters, else 400
    /// (code 50006 for an empty message); 204 when taken.
    pub fn discord(s: &Seen) -> (u16, String) {
        match json(s).as_ref().and_then(|v| v["content"].as_str()) {
            None | Some("") => (
                400,
                r#"{"message": "Cannot send an empty message", "code": 50006}"#.into(),
            ),
            Some(c) if c.chars().count() > 2000 => (
                400,
                r#"{"content": ["Must be 2000 or fewer in length."]}"#.into(),
            ),
            Some(_) => (204, String::new()),
        }
    }

    /// ntfy: the body is the message as sent; a JSON body would be shown
    /// raw, so it is refused here; over 4096 bytes becomes an attachment.
    pub fn ntfy(s: &Seen) -> (u16, String) {
        let text = std::str::from_utf8(&s.body);
        match text {
            Ok(t) if !t.trim_start().starts_with('{') && !t.is_empty() && t.len() <= 4096 => (
                200,
                serde_json::json!({"id": "x1", "event": "message", "message": t}).to_string(),
            ),
            _ => (
                400,
                r#"{"code":40000,"error":"not a plain text message"}"#.into(),
            ),
        }
    }

    /// A generic receiver: any JSON object with `event` and `message`.
    pub fn generic(s: &Seen) -> (u16, String) {
        match json(s) {
            Some(v) if v["event"].is_string() && v["message"].is_string() => (200, "{}".into()),
            _ => (400, "expected the notice as JSON".into()),
        }
    }
}
