//! The HTTP control plane (INTERFACE.md) and the small HTTP client the CLI
//! uses to talk to it.
//!
//! `std::net::TcpListener` with `httparse` doing the parsing, so every limit
//! is ours: an accept thread blocked in `accept()`, one short-lived thread
//! per connection, at most [`MAX_CONNECTIONS`] of them (beyond, the oldest
//! connection that has not sent a request yet is closed to make room; 503
//! only when every slot serves requests), a request head of at most [`MAX_HEADER`] bytes and a body of at
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

mod client;
mod http;
pub mod metrics;
mod token;
#[allow(unused_imports)]
pub use self::client::{cli_failover, cli_reload, cli_status, client_addr, request, Reply};
use self::http::*;
pub use self::metrics::metrics_text;
pub use self::token::{check_token, constant_time_eq, load_or_create_token};

/// Request line and headers, in bytes.
pub const MAX_HEADER: usize = 8 * 1024;
/// Request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Headers at most.
const MAX_HEADERS: usize = 32;
/// Reading one request (head and body) and writing one response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once (see `Server::take_slot` beyond).
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
    /// Connections that have not sent their first request yet, oldest
    /// first: the ones given up when every slot is taken.
    waiting: std::sync::Mutex<std::collections::VecDeque<(u64, TcpStream)>>,
    next_id: std::sync::atomic::AtomicU64,
    stopping: AtomicBool,
    started: u64,
}

impl Server {
    /// Takes a slot for a new connection. When all are taken, the oldest
    /// connection that never sent a request gives its slot up (it is
    /// closed): clients that only connect cannot hold every slot. False
    /// when every slot is serving requests.
    fn take_slot(&self) -> bool {
        if self.active.fetch_add(1, Ordering::SeqCst) < MAX_CONNECTIONS {
            return true;
        }
        let oldest = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match oldest {
            // Its thread sees the close at once and frees its slot; until
            // then one more runs than the limit.
            Some((_, idle)) if self.active.load(Ordering::SeqCst) <= 2 * MAX_CONNECTIONS => {
                let _ = idle.shutdown(Shutdown::Both);
                true
            }
            _ => {
                self.active.fetch_sub(1, Ordering::SeqCst);
                false
            }
        }
    }

    /// Remembers a connection as waiting for its first request.
    fn waiting(&self, stream: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            w.push_back((id, clone));
        }
        id
    }

    /// The connection sent its first request (or closed): no longer idle.
    fn settled(&self, id: u64) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|(i, _)| *i != id);
    }
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
    let listen = crate::config::resolve_listen(&cfg.control.listen)
        .map_err(|e| format!("control.listen: {e}"))?;
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
        waiting: Default::default(),
        next_id: Default::default(),
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
        if !server.take_slot() {
            log::debug!("control plane: {MAX_CONNECTIONS} connections busy; 503");
            reject_busy(stream);
            continue;
        }
        let id = server.waiting(&stream);
        let slot = Slot(server.clone(), id);
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                let slot = slot;
                slot.0.serve(stream, slot.1);
            });
        if let Err(e) = spawned {
            log::warn!("control plane: cannot start a connection thread: {e}");
        }
    }
}

/// One of the `MAX_CONNECTIONS` slots and its connection's id; freed on
/// drop (also on a panic).
struct Slot(Arc<Server>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.settled(self.1);
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
}
