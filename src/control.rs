//! The HTTP control plane (INTERFACE.md) and the small HTTP client the CLI
//! uses to talk to it.
//!
//! `std::net::TcpListener` with `httparse` doing the parsing, so every limit
//! is ours: an accept thread blocked in `accept()`, one short-lived thread
//! per connection, at most [`MAX_CONNECTIONS`] of them (beyond: 503 and
//! close), a request head of at most [`MAX_HEADER`] bytes and a body of at
//! most [`MAX_BODY`], each read within [`IO_TIMEOUT`] in total (a client
//! sending a byte a second is cut off, not kept), writes bounded the same.
//! Every path needs `Authorization: Bearer <token>`, compared in constant
//! time; the token lives in `control.token_file` (created 0600 if missing).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bus::{Ctx, DispatchMsg, FailoverMsg, WatchMsg};
use crate::config::Config;
use crate::state::{SessionState, State};

/// Request line and headers, in bytes.
pub const MAX_HEADER: usize = 8 * 1024;
/// Request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Headers at most.
const MAX_HEADERS: usize = 32;
/// Reading one request (head and body) and writing one response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; beyond, 503 and close.
pub const MAX_CONNECTIONS: usize = 16;
/// Requests on one kept-alive connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// How long `POST /failover` waits for the failover thread to answer.
const FAILOVER_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of connection threads: parsing and a JSON document, no recursion.
const CONN_STACK: usize = 256 * 1024;

/// `state_dir/control.addr`: the address the control plane is bound to
/// (useful with port 0), written at start-up.
pub fn addr_file(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("control.addr")
}

struct Server {
    ctx: Arc<Ctx>,
    token: String,
    active: AtomicUsize,
    stopping: AtomicBool,
    started: u64,
}

/// Starts the control plane when `control.listen` is set: binds, writes
/// `state_dir/control.addr`, and returns the accept thread.
pub fn start(ctx: Arc<Ctx>) -> Result<Option<JoinHandle<()>>, String> {
    let cfg = ctx.config();
    let addr_path = addr_file(&cfg);
    if cfg.control.listen.is_empty() {
        let _ = fs::remove_file(&addr_path);
        log::info!("control plane disabled (control.listen is empty)");
        return Ok(None);
    }
    let listen: SocketAddr = cfg
        .control
        .listen
        .parse()
        .map_err(|_| format!("control.listen `{}` is not host:port", cfg.control.listen))?;
    if !listen.ip().is_loopback() {
        log::warn!(
            "the control plane listens on {listen}, not on loopback: anyone who can reach it \
             and holds the token can steer the daemon; the traffic is not encrypted"
        );
    }
    let token = load_or_create_token(&cfg.control.token_file)?;
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the control plane's address: {e}"))?;
    crate::fsutil::atomic_write(&addr_path, format!("{bound}\n").as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", addr_path.display()))?;
    log::info!("control plane on http://{bound}");

    let server = Arc::new(Server {
        ctx,
        token,
        active: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        started: crate::timefmt::now_secs(),
    });
    // accept() blocks; at shutdown this thread wakes it with a connection.
    let s = server.clone();
    std::thread::Builder::new()
        .name("control-stop".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = s.ctx.stop.recv();
            s.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&connect_addr(bound), Duration::from_secs(1));
        })
        .map_err(|e| format!("cannot start thread control-stop: {e}"))?;
    let h = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            accept_loop(&server, listener);
            let _ = fs::remove_file(&addr_path);
        })
        .map_err(|e| format!("cannot start thread control: {e}"))?;
    Ok(Some(h))
}

fn accept_loop(server: &Arc<Server>, listener: TcpListener) {
    for conn in listener.incoming() {
        if server.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                log::warn!("control plane: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if server.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            server.active.fetch_sub(1, Ordering::SeqCst);
            log::debug!("control plane: {MAX_CONNECTIONS} connections busy; 503");
            reject_busy(stream);
            continue;
        }
        let slot = Slot(server.clone());
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                let slot = slot;
                slot.0.serve(stream);
            });
        if let Err(e) = spawned {
            log::warn!("control plane: cannot start a connection thread: {e}");
        }
    }
}

/// One of the `MAX_CONNECTIONS` slots; freed on drop (also on a panic).
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let resp = Response::error(503, "too many connections; try again").close();
    let _ = stream.write_all(&resp.to_bytes(false));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Where a client connects to reach a listener bound to `bound`.
fn connect_addr(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

// ------------------------------------------------------------------ token

/// Reads the token, or creates the file (mode 0600, folder 0700) with 32
/// random bytes in hex when it is missing.
pub fn load_or_create_token(path: &Path) -> Result<String, String> {
    match fs::read_to_string(path) {
        Ok(s) => {
            check_token(&s, path)?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "{} is readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        m.permissions().mode() & 0o777
                    );
                }
            }
            Ok(s.trim().to_string())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = crate::fsutil::parent(path);
            {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let bytes = crate::fsutil::random_bytes::<32>()
                .map_err(|e| format!("cannot read random bytes: {e}"))?;
            let token = hex(&bytes);
            crate::fsutil::atomic_write(path, format!("{token}\n").as_bytes(), 0o600)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            log::info!("created the control plane token in {}", path.display());
            // Another process may have raced us: what is on disk wins.
            let s = fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            check_token(&s, path)?;
            Ok(s.trim().to_string())
        }
        Err(e) => Err(format!("cannot read the token {}: {e}", path.display())),
    }
}

fn check_token(s: &str, path: &Path) -> Result<(), String> {
    let t = s.trim();
    if t.len() < 16 {
        return Err(format!(
            "the token in {} is empty or shorter than 16 characters; delete the file to have one made",
            path.display()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the token in {} must be printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal contents, in time that depends on the length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------- serving

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
    close: bool,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            extra: Vec::new(),
            close: false,
        }
    }

    fn json(status: u16, v: &Value) -> Response {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &json!({ "error": msg }))
    }

    fn close(mut self) -> Response {
        self.close = true;
        self
    }

    fn header(mut self, k: &'static str, v: impl Into<String>) -> Response {
        self.extra.push((k, v.into()));
        self
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
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

fn reason(status: u16) -> &'static str {
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
struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    authorized: bool,
    content_length: usize,
    chunked: bool,
    expect_continue: bool,
}

enum ReadHead {
    Head(Head),
    /// The client closed or went quiet between requests: just close.
    Closed,
    /// Answer this and close.
    Fail(Response),
}

impl Server {
    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        for served in 0..MAX_REQUESTS_PER_CONNECTION {
            let deadline = Instant::now() + IO_TIMEOUT;
            let head = match self.read_head(&mut stream, &mut buf, deadline, served == 0) {
                ReadHead::Head(h) => h,
                ReadHead::Closed => return,
                ReadHead::Fail(resp) => return finish(stream, resp, deadline),
            };
            if !head.authorized {
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

    fn read_head(
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

    fn head_of(&self, req: &httparse::Request) -> Result<Head, Response> {
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

    fn token_matches(&self, value: &[u8]) -> bool {
        let v = value.trim_ascii();
        if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        constant_time_eq(v[7..].trim_ascii(), self.token.as_bytes())
    }

    fn route(&self, method: &str, target: &str, body: &[u8]) -> Response {
        let path = target.split(['?', '#']).next().unwrap_or("");
        match (method, path) {
            ("GET", "/health") => Response::new(200, "text/plain; charset=utf-8", "ok"),
            ("GET", "/status") => {
                let cfg = self.ctx.config();
                // Copy the state out: the document reads every inbox, which
                // must not happen under the lock.
                let st = self.ctx.state().clone();
                Response::json(200, &st.status_json(&cfg))
            }
            ("GET", "/metrics") => {
                let cfg = self.ctx.config();
                let text = {
                    let st = self.ctx.state();
                    metrics_text(&st, &cfg, self.started)
                };
                Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text)
            }
            ("POST", "/failover") => self.failover(body),
            ("POST", "/scan") => match self.ctx.to_dispatcher.send(DispatchMsg::Scan) {
                Ok(()) => Response::json(202, &json!({ "accepted": true })),
                Err(_) => Response::error(503, "the dispatcher is not running"),
            },
            (_, "/health" | "/status" | "/metrics") => {
                Response::error(405, "use GET").header("Allow", "GET")
            }
            (_, "/failover" | "/scan") => Response::error(405, "use POST").header("Allow", "POST"),
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

    fn recycle(&self, name: &str) -> Response {
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

    fn failover(&self, body: &[u8]) -> Response {
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
                Ok(Err(text)) => {
                    let status = if text.contains("unknown account") || text.contains("no account named") { 400 } else { 409 };
                    Response::json(status, &json!({ "started": false, "error": text }))
                }
                Err(_) => Response::error(503, "the failover thread dropped the request"),
            },
            recv(self.ctx.stop) -> _ => Response::error(503, "the daemon is stopping"),
            default(FAILOVER_REPLY_TIMEOUT) => Response::error(503, "the failover thread did not answer in time"),
        }
    }
}

fn timed_out(buf: &[u8], first: bool) -> ReadHead {
    if buf.is_empty() && !first {
        // An idle kept-alive connection.
        ReadHead::Closed
    } else {
        ReadHead::Fail(Response::error(408, "the request did not arrive in time").close())
    }
}

fn read_body(
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
fn finish(mut stream: TcpStream, resp: Response, deadline: Instant) {
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

// ---------------------------------------------------------------- metrics

/// The `/metrics` document, Prometheus text exposition format 0.0.4.
pub fn metrics_text(st: &State, cfg: &Config, started: u64) -> String {
    let mut out = String::with_capacity(4096);
    let m = &st.metrics;
    let counters: [(&str, &str, u64); 11] = [
        (
            "tasks_dispatched_total",
            "Tasks handed to a session.",
            m.tasks_dispatched,
        ),
        (
            "tasks_done_total",
            "Tasks that finished (moved to done/).",
            m.tasks_done,
        ),
        (
            "tasks_failed_total",
            "Tasks given up (moved to failed/).",
            m.tasks_failed,
        ),
        (
            "launches_failed_total",
            "Agent launches that failed.",
            m.launches_failed,
        ),
        (
            "failovers_total",
            "Account failovers completed.",
            m.failovers,
        ),
        (
            "failovers_failed_total",
            "Account failovers that failed.",
            m.failovers_failed,
        ),
        (
            "guard_blocks_total",
            "Tool calls the guard blocked.",
            m.guard_blocks,
        ),
        (
            "guard_warns_total",
            "Tool calls the guard warned about.",
            m.guard_warns,
        ),
        (
            "events_applied_total",
            "Hook events read and applied.",
            m.events_applied,
        ),
        (
            "events_dropped_total",
            "Hook events dropped (unreadable, unknown or too many).",
            m.events_dropped,
        ),
        (
            "notices_dropped_total",
            "Notices dropped because the notifier queue was full.",
            m.notices_dropped,
        ),
    ];
    for (name, help, v) in counters {
        metric_head(&mut out, name, help, "counter");
        out.push_str(&format!("claude_failover_{name} {v}\n"));
    }
    let (sent, failed) = (m.notices_sent, m.notices_failed);
    metric_head(
        &mut out,
        "notices_sent_total",
        "Notices delivered to a sink (one per sink).",
        "counter",
    );
    out.push_str(&format!("claude_failover_notices_sent_total {sent}\n"));
    metric_head(
        &mut out,
        "notices_failed_total",
        "Notices a sink could not take after every retry.",
        "counter",
    );
    out.push_str(&format!("claude_failover_notices_failed_total {failed}\n"));

    metric_head(&mut out, "sessions", "Pool sessions by state.", "gauge");
    for s in SessionState::ALL {
        let n = st.sessions.values().filter(|x| x.state == s).count();
        out.push_str(&format!(
            "claude_failover_sessions{{state=\"{}\"}} {n}\n",
            s.as_str()
        ));
    }
    metric_head(
        &mut out,
        "tasks_in_flight",
        "Tasks claimed by a session right now.",
        "gauge",
    );
    let in_flight = st.sessions.values().filter(|s| s.task.is_some()).count();
    out.push_str(&format!("claude_failover_tasks_in_flight {in_flight}\n"));

    let now = crate::timefmt::now_secs();
    let mut usage = String::new();
    let mut usable = String::new();
    let mut active = String::new();
    let mut age = String::new();
    for a in &cfg.accounts {
        let name = label(&a.name);
        let s = st.accounts.get(&a.name).cloned().unwrap_or_default();
        for (window, v) in [("five_hour", s.five_hour), ("seven_day", s.seven_day)] {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                usage.push_str(&format!(
                    "claude_failover_account_usage_percent{{account=\"{name}\",window=\"{window}\"}} {v}\n"
                ));
            }
        }
        usable.push_str(&format!(
            "claude_failover_account_usable{{account=\"{name}\"}} {}\n",
            u8::from(s.usable)
        ));
        active.push_str(&format!(
            "claude_failover_account_active{{account=\"{name}\"}} {}\n",
            u8::from(a.name == st.active_account)
        ));
        if let Some(t) = s.read_at {
            age.push_str(&format!(
                "claude_failover_account_reading_age_seconds{{account=\"{name}\"}} {}\n",
                now.saturating_sub(t)
            ));
        }
    }
    metric_head(
        &mut out,
        "account_usage_percent",
        "Last usage reading per account and window, in percent.",
        "gauge",
    );
    out.push_str(&usage);
    metric_head(
        &mut out,
        "account_usable",
        "1 when the account can take sessions.",
        "gauge",
    );
    out.push_str(&usable);
    metric_head(
        &mut out,
        "account_active",
        "1 for the account new launches use.",
        "gauge",
    );
    out.push_str(&active);
    metric_head(
        &mut out,
        "account_reading_age_seconds",
        "Seconds since the account's last good usage reading.",
        "gauge",
    );
    out.push_str(&age);
    metric_head(
        &mut out,
        "failover_in_progress",
        "1 while a failover runs.",
        "gauge",
    );
    out.push_str(&format!(
        "claude_failover_failover_in_progress {}\n",
        u8::from(st.failover_in_progress)
    ));
    metric_head(
        &mut out,
        "dispatch_paused",
        "1 while dispatching is paused (no usable account).",
        "gauge",
    );
    out.push_str(&format!(
        "claude_failover_dispatch_paused {}\n",
        u8::from(st.dispatch_paused.is_some())
    ));
    metric_head(
        &mut out,
        "start_time_seconds",
        "Unix time the control plane started.",
        "gauge",
    );
    out.push_str(&format!("claude_failover_start_time_seconds {started}\n"));
    out
}

fn metric_head(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str(&format!(
        "# HELP claude_failover_{name} {help}\n# TYPE claude_failover_{name} {kind}\n"
    ));
}

/// A label value, escaped per the exposition format.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            _ => s.push(c),
        }
    }
    s
}

// ----------------------------------------------------------------- client

/// An answer from the control plane.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One request with `Connection: close`; the body is sent as JSON.
pub fn request(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(3)))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nUser-Agent: claude-failover/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.take(32 << 20).read_to_end(&mut raw)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the answer ended early",
            ))
        }
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {e}"),
            ))
        }
    };
    let status = resp.code.unwrap_or(0);
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let rest = &raw[n..];
    let rest = &rest[..len.unwrap_or(rest.len()).min(rest.len())];
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(rest).into_owned(),
    })
}

/// Where the CLI finds the daemon: `control.listen` (loopback for a wildcard
/// address), or `state_dir/control.addr` when the port is 0.
pub fn client_addr(cfg: &Config) -> Result<SocketAddr, String> {
    if cfg.control.listen.is_empty() {
        return Err("the control plane is disabled (control.listen is empty)".into());
    }
    let listen: SocketAddr = cfg
        .control
        .listen
        .parse()
        .map_err(|_| format!("control.listen `{}` is not host:port", cfg.control.listen))?;
    if listen.port() != 0 {
        return Ok(connect_addr(listen));
    }
    let p = addr_file(cfg);
    let text = fs::read_to_string(&p).map_err(|e| {
        format!(
            "control.listen has port 0 and {} cannot be read: {e}",
            p.display()
        )
    })?;
    text.trim()
        .parse::<SocketAddr>()
        .map(connect_addr)
        .map_err(|_| format!("{} does not hold an address", p.display()))
}

/// Asks the running daemon; `Err` says why no answer came (for the note).
fn ask(
    cfg: &Config,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(String, Reply), (String, String)> {
    let addr = client_addr(cfg).map_err(|e| {
        let shown = if cfg.control.listen.is_empty() {
            "control.listen (empty)".to_string()
        } else {
            cfg.control.listen.clone()
        };
        (shown, e)
    })?;
    let shown = addr.to_string();
    let token = fs::read_to_string(&cfg.control.token_file).map_err(|e| {
        (
            shown.clone(),
            format!(
                "cannot read the token {}: {e}",
                cfg.control.token_file.display()
            ),
        )
    })?;
    let timeout = if path == "/failover" {
        FAILOVER_REPLY_TIMEOUT + Duration::from_secs(5)
    } else {
        Duration::from_secs(10)
    };
    request(addr, token.trim(), method, path, body, timeout)
        .map(|r| (shown.clone(), r))
        .map_err(|e| (shown, e.to_string()))
}

fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

/// `status`: from the daemon, or from `state.json` when none answers.
pub fn cli_status(cfg: &Config, json: bool) -> Result<ExitCode, String> {
    let doc = match ask(cfg, "GET", "/status", None) {
        Ok((_, r)) if r.status == 200 => serde_json::from_str::<Value>(&r.body)
            .map_err(|e| format!("the daemon's /status is not JSON: {e}"))?,
        Ok((addr, r)) => {
            eprintln!(
                "the daemon at {addr} answered {}: {}; showing the saved state",
                r.status,
                error_text(&r.body)
            );
            saved_status(cfg)
        }
        Err((addr, why)) => {
            eprintln!("no daemon answered at {addr}; showing the saved state ({why})");
            saved_status(cfg)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!(
            "{}",
            crate::status::render(&doc, crate::timefmt::now_secs())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The status document from `state.json`, read only (a corrupt file is
/// reported, not moved).
fn saved_status(cfg: &Config) -> Value {
    let path = crate::state::state_path(cfg);
    let st = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<State>(&bytes).unwrap_or_else(|e| {
            eprintln!("{} cannot be read as a state ({e})", path.display());
            State::default()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("no saved state at {}", path.display());
            State {
                active_account: cfg.accounts[0].name.clone(),
                ..State::default()
            }
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            State::default()
        }
    };
    st.status_json(cfg)
}

/// `failover [--to NAME]`: asks the running daemon.
pub fn cli_failover(cfg: &Config, to: Option<String>) -> Result<ExitCode, String> {
    let body = json!({ "to": to }).to_string();
    match ask(cfg, "POST", "/failover", Some(&body)) {
        Ok((_, r)) if r.status == 202 || r.status == 200 => {
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let msg = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("failover started");
            println!("{msg}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, r)) => Err(format!(
            "failover refused ({}): {}",
            r.status,
            error_text(&r.body)
        )),
        Err((addr, why)) => Err(format!("no daemon answered at {addr}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/token");
        let t = load_or_create_token(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_token(&p).unwrap(), t);
        fs::write(&p, "\n").unwrap();
        assert!(load_or_create_token(&p).is_err());
    }

    #[test]
    fn label_escaping() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
