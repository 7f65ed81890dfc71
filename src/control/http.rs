//! Serving one connection: reading a request within its limits, routing it, writing the answer.

#[allow(unused_imports)]
use super::*;

pub(super) struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
    close: bool,
}

impl Response {
    pub(super) fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            extra: Vec::new(),
            close: false,
        }
    }

    pub(super) fn json(status: u16, v: &Value) -> Response {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    pub(super) fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &json!({ "error": msg }))
    }

    pub(super) fn close(mut self) -> Response {
        self.close = true;
        self
    }

    pub(super) fn header(mut self, k: &'static str, v: impl Into<String>) -> Response {
        self.extra.push((k, v.into()));
        self
    }

    pub(super) fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if self.close { "close" } else { "keep-alive" }
        );
        for (k, v) in &self.extra {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the handlers need from a parsed request head.
pub(super) struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    authorized: bool,
    content_length: usize,
    chunked: bool,
    expect_continue: bool,
}

pub(super) enum ReadHead {
    Head(Head),
    /// The client closed or went quiet between requests: just close.
    Closed,
    /// Answer this and close.
    Fail(Response),
}

impl Server {
    pub(super) fn serve(&self, mut stream: TcpStream, id: u64) {
        let _ = stream.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        for served in 0..MAX_REQUESTS_PER_CONNECTION {
            let deadline = Instant::now() + IO_TIMEOUT;
            let head = self.read_head(&mut stream, &mut buf, deadline, served == 0);
            if served == 0 {
                self.settled(id);
            }
            let head = match head {
                ReadHead::Head(h) => h,
                ReadHead::Closed => return,
                ReadHead::Fail(resp) => return finish(stream, resp, deadline),
            };
            // Probes ask `/health` without a token; it says nothing but "ok".
            let health =
                head.method == "GET" && head.path.split(['?', '#']).next() == Some("/health");
            if !head.authorized && !health {
                let resp = Response::error(401, "missing or wrong bearer token")
                    .header("WWW-Authenticate", "Bearer")
                    .close();
                return finish(stream, resp, deadline);
            }
            if head.chunked {
                let resp = Response::error(411, "send a Content-Length, not chunks").close();
                return finish(stream, resp, deadline);
            }
            if head.content_length > MAX_BODY {
                let resp =
                    Response::error(413, &format!("the body may have at most {MAX_BODY} bytes"))
                        .close();
                return finish(stream, resp, deadline);
            }
            if head.expect_continue && head.content_length > buf.len() {
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return;
                }
            }
            let body = match read_body(&mut stream, &mut buf, head.content_length, deadline) {
                Ok(b) => b,
                Err(_) => {
                    let resp = Response::error(408, "the body did not arrive in time").close();
                    return finish(stream, resp, deadline);
                }
            };
            let mut resp = self.route(&head.method, &head.path, &body);
            let last = !head.keep_alive
                || served + 1 == MAX_REQUESTS_PER_CONNECTION
                || self.stopping.load(Ordering::Relaxed);
            if last {
                resp.close = true;
            }
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            if stream.write_all(&resp.to_bytes(false)).is_err() || resp.close {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
        }
    }

    pub(super) fn read_head(
        &self,
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Instant,
        first: bool,
    ) -> ReadHead {
        loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let head = self.head_of(&req);
                        buf.drain(..n);
                        return match head {
                            Ok(h) => ReadHead::Head(h),
                            Err(r) => ReadHead::Fail(r),
                        };
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return ReadHead::Fail(Response::error(431, "too many headers").close())
                    }
                    Err(e) => {
                        return ReadHead::Fail(
                            Response::error(400, &format!("not an HTTP request: {e}")).close(),
                        )
                    }
                }
            }
            if buf.len() >= MAX_HEADER {
                return ReadHead::Fail(
                    Response::error(
                        431,
                        &format!(
                            "the request line and headers may have at most {MAX_HEADER} bytes"
                        ),
                    )
                    .close(),
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return timed_out(buf, first);
            }
            let _ = stream.set_read_timeout(Some(deadline - now));
            let mut chunk = [0u8; 2048];
            let want = chunk.len().min(MAX_HEADER - buf.len());
            match stream.read(&mut chunk[..want]) {
                Ok(0) => return ReadHead::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return timed_out(buf, first)
                }
                Err(_) => return ReadHead::Closed,
            }
        }
    }

    pub(super) fn head_of(&self, req: &httparse::Request) -> Result<Head, Response> {
        let version = req.version.unwrap_or(1);
        let mut keep_alive = version >= 1;
        let mut authorized = false;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut expect_continue = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("authorization") {
                authorized = self.token_matches(h.value);
            } else if name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Response::error(400, "bad Content-Length").close());
                }
                // Beyond usize is beyond MAX_BODY too.
                let n = v.parse::<usize>().unwrap_or(usize::MAX);
                if content_length.is_some_and(|c| c != n) {
                    return Err(Response::error(400, "conflicting Content-Length").close());
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        Ok(Head {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("").to_string(),
            keep_alive,
            authorized,
            content_length: content_length.unwrap_or(0),
            chunked,
            expect_continue,
        })
    }

    pub(super) fn token_matches(&self, value: &[u8]) -> bool {
        let v = value.trim_ascii();
        if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        constant_time_eq(v[7..].trim_ascii(), self.token.as_bytes())
    }

    pub(super) fn route(&self, method: &str, target: &str, body: &[u8]) -> Response {
        let path = target.split(['?', '#']).next().unwrap_or("");
        match (method, path) {
            ("GET", "/health") => Response::new(200, "text/plain; charset=utf-8", "ok"),
            ("GET", "/status") => {
                let cfg = self.ctx.config();
                // Copy the state out: the document reads every inbox, which
                // must not happen under the lock.
                let st = self.ctx.state().clone();
                let mut doc = st.status_json(&cfg);
                doc["source"] = json!("daemon");
                Response::json(200, &doc)
            }
            ("GET", "/metrics") => {
                let cfg = self.ctx.config();
                // A copy: the text reads every inbox, never under the lock.
                let st = self.ctx.state().clone();
                let text = metrics_text(&st, &cfg, self.started);
                Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text)
            }
            ("POST", "/failover") => self.failover(body),
            ("POST", "/reload") => match crate::reload::reload(&self.ctx, None) {
                Ok(name) => Response::json(200, &json!({ "reloaded": name })),
                Err(why) => Response::error(422, &why),
            },
            ("POST", "/scan") => match self.ctx.to_dispatcher.send(DispatchMsg::Scan) {
                Ok(()) => Response::json(202, &json!({ "accepted": true })),
                Err(_) => Response::error(503, "the dispatcher is not running"),
            },
            (_, "/health" | "/status" | "/metrics") => {
                Response::error(405, "use GET").header("Allow", "GET")
            }
            (_, "/failover" | "/scan" | "/reload") => {
                Response::error(405, "use POST").header("Allow", "POST")
            }
            (m, p) => match p
                .strip_prefix("/sessions/")
                .and_then(|r| r.strip_suffix("/recycle"))
            {
                Some(name) if m == "POST" => self.recycle(name),
                Some(_) => Response::error(405, "use POST").header("Allow", "POST"),
                None => Response::error(404, "no such path"),
            },
        }
    }

    pub(super) fn recycle(&self, name: &str) -> Response {
        if !self.ctx.state().sessions.contains_key(name) {
            return Response::error(404, &format!("no session named `{name}`"));
        }
        match self
            .ctx
            .to_watcher
            .send(WatchMsg::Recycle(name.to_string()))
        {
            Ok(()) => Response::json(202, &json!({ "accepted": true, "session": name })),
            Err(_) => Response::error(503, "the watcher is not running"),
        }
    }

    pub(super) fn failover(&self, body: &[u8]) -> Response {
        let to = if body.trim_ascii().is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) => match m.get("to") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Response::error(400, "`to` must be an account name"),
                },
                _ => {
                    return Response::error(
                        400,
                        "the body must be a JSON object like {\"to\": \"backup\"}",
                    )
                }
            }
        };
        if let Some(t) = &to {
            if self.ctx.config().account(t).is_none() {
                return Response::error(400, &format!("unknown account `{t}`"));
            }
        }
        if self.ctx.state().failover_in_progress {
            return Response::error(409, "a failover is already running");
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .ctx
            .to_failover
            .send(FailoverMsg::Manual {
                to,
                reply: Some(tx),
            })
            .is_err()
        {
            return Response::error(503, "the failover thread is not running");
        }
        crossbeam_channel::select! {
            recv(rx) -> r => match r {
                Ok(Ok(text)) => Response::json(202, &json!({ "started": true, "message": text })),
                Ok(Err(refusal)) => {
                    let status = if refusal.is_bad_request() { 400 } else { 409 };
                    Response::json(status, &json!({ "started": false, "error": refusal.to_string() }))
                }
                Err(_) => Response::error(503, "the failover thread dropped the request"),
            },
            recv(self.ctx.stop) -> _ => Response::error(503, "the daemon is stopping"),
            default(FAILOVER_REPLY_TIMEOUT) => Response::error(503, "the failover thread did not answer in time"),
        }
    }
}

pub(super) fn timed_out(buf: &[u8], first: bool) -> ReadHead {
    if buf.is_empty() && !first {
        // An idle kept-alive connection.
        ReadHead::Closed
    } else {
        ReadHead::Fail(Response::error(408, "the request did not arrive in time").close())
    }
}

pub(super) fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    while buf.len() < len {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(len - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.drain(..len).collect())
}

/// Writes a final response and closes. What the client still sends is read
/// and dropped for a moment (bounded), so the kernel does not answer it with
/// a reset that would destroy the response before the client reads it.
pub(super) fn finish(mut stream: TcpStream, resp: Response, deadline: Instant) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(&resp.to_bytes(false)).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let linger_until =
        (Instant::now() + Duration::from_millis(500)).min(deadline.max(Instant::now()));
    let mut drained = 0usize;
    let mut sink = [0u8; 4096];
    while drained < 256 * 1024 {
        let now = Instant::now();
        if now >= linger_until {
            break;
        }
        let _ = stream.set_read_timeout(Some(linger_until - now));
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}
