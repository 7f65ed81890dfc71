//! Operating the daemon: the control plane (auth, limits, endpoints), the
//! notifier against real stand-in servers, the CLI's `status`/`failover`,
//! SIGHUP reload and sd_notify datagrams. Everything on 127.0.0.1 and a
//! private tmux socket.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claude_failover::bus::Refusal;
use claude_failover::config::Config;
use claude_failover::control;
use claude_failover::daemon::{Ctx, Daemon, FailoverMsg};
use claude_failover::notice::{Notice, NoticeKind};
use claude_failover::state::State;
use serde_json::Value;
use support::wait_for;
use tempfile::TempDir;

const T: Duration = Duration::from_secs(15);
const BIN: &str = env!("CARGO_BIN_EXE_claude-failover");

// -------------------------------------------------------------- the setup

/// The control plane's setup: no agents (`/bin/true`), a listening control
/// plane, two accounts. (Agents and tmux sessions: `support::Env`.)
struct ControlEnv {
    _dir: TempDir,
    root: PathBuf,
    /// Appended to the YAML: `notify:` and the like.
    extra: String,
    dedicated: bool,
}

impl Drop for ControlEnv {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.root.join("tmux.sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

impl ControlEnv {
    fn new() -> ControlEnv {
        let dir = tempfile::Builder::new().prefix("cf-op").tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("proj/.agent-queue/inbox")).unwrap();
        // Readable credentials: an account without is not usable.
        for a in ["acct-main", "acct-backup"] {
            let expires = claude_failover::timefmt::now_ms() + 3_600_000;
            support::usage::creds(&root.join(a), &format!("tok-{a}"), expires);
        }
        ControlEnv {
            _dir: dir,
            root,
            extra: String::new(),
            dedicated: false,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    fn token_file(&self) -> PathBuf {
        self.root.join("conf/token")
    }

    fn yaml(&self) -> String {
        let r = self.root.display();
        let dedicated = if self.dedicated {
            format!("  dedicated: [ {{ name: ops-1, project: '{r}/proj' }} ]\n")
        } else {
            String::new()
        };
        format!(
            "state_dir: '{r}/state'\n\
             tmux: {{ socket: '{r}/tmux.sock' }}\n\
             agent: {{ command: /bin/true }}\n\
             projects: [ '{r}/proj' ]\n\
             pool:\n{dedicated}  autonomous: {{ prefix: op-, max: 0 }}\n\
             dispatcher: {{ scan_interval: 1h }}\n\
             watcher: {{ interval: 1h }}\n\
             accounts:\n  - {{ name: main, config_dir: '{r}/acct-main' }}\n  - {{ name: backup, config_dir: '{r}/acct-backup' }}\n\
             quota: {{ endpoint: 'http://127.0.0.1:9/' }}\n\
             failover: {{ shared_transcripts: '{r}/shared' }}\n\
             control: {{ listen: '127.0.0.1:0', token_file: '{r}/conf/token' }}\n\
             {}",
            self.extra
        )
    }

    fn config(&self) -> Config {
        Config::parse(&self.yaml(), "test").unwrap_or_else(|e| panic!("{e}\n{}", self.yaml()))
    }

    fn config_file(&self) -> PathBuf {
        let p = self.root.join("config.yaml");
        fs::write(&p, self.yaml()).unwrap();
        p
    }

    fn addr(&self) -> SocketAddr {
        let p = self.state_dir().join("control.addr");
        wait_for("control.addr", T, || p.exists());
        fs::read_to_string(p).unwrap().trim().parse().unwrap()
    }

    fn token(&self) -> String {
        fs::read_to_string(self.token_file())
            .unwrap()
            .trim()
            .to_string()
    }
}

struct Running {
    d: Option<Daemon>,
    addr: SocketAddr,
    token: String,
}

impl Running {
    fn start(env: &ControlEnv) -> Running {
        let d = Daemon::start(env.config()).unwrap_or_else(|e| panic!("daemon: {e}"));
        Running {
            d: Some(d),
            addr: env.addr(),
            token: env.token(),
        }
    }

    fn ctx(&self) -> &Arc<Ctx> {
        &self.d.as_ref().unwrap().ctx
    }

    fn req(&self, method: &str, path: &str, body: Option<&str>) -> control::Reply {
        control::request(self.addr, &self.token, method, path, body, T).unwrap()
    }

    fn health_ok(&self) -> bool {
        control::request(
            self.addr,
            &self.token,
            "GET",
            "/health",
            None,
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200 && r.body == "ok")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(d) = self.d.take() {
            d.shutdown(Duration::from_secs(2));
        }
    }
}

/// Sends raw bytes, reads the answer until close (bounded), returns the status.
fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

// ------------------------------------------------------------ the plane

const PATHS: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("POST", "/failover"),
    ("POST", "/scan"),
    ("POST", "/sessions/ops-1/recycle"),
    ("GET", "/no-such-path"),
];

#[test]
fn every_path_but_health_needs_the_token() {
    let env = ControlEnv::new();
    let r = Running::start(&env);
    assert_eq!(r.token.len(), 64);
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(env.token_file()).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600);
    for (m, p) in PATHS {
        let (status, text) = raw(
            r.addr,
            format!("{m} {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        // Probes ask /health without a token; it says nothing but "ok".
        let want = if *p == "/health" { 200 } else { 401 };
        assert_eq!(status, want, "{m} {p} without a token: {text}");
        for auth in [
            format!("Bearer {}x", r.token),
            format!("Bearer {}", &r.token[..63]),
            "Bearer ".to_string(),
            format!("Basic {}", r.token),
            r.token.clone(),
        ] {
            let (status, text) = raw(
                r.addr,
                format!("{m} {p} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(status, want, "{m} {p} with `{auth}`: {text}");
        }
    }
    let ok = r.req("GET", "/health", None);
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
    // The scheme is case-insensitive, as RFC 9110 says.
    let (status, _) = raw(
        r.addr,
        format!(
            "GET /health HTTP/1.1\r\nauthorization: bearer {}\r\nConnection: close\r\n\r\n",
            r.token
        )
        .as_bytes(),
    );
    assert_eq!(status, 200);
}

#[test]
fn status_document_and_actions() {
    let mut env = ControlEnv::new();
    env.dedicated = true;
    fs::write(env.root.join("proj/.agent-queue/inbox/a.md"), "do a\n").unwrap();
    fs::write(env.root.join("proj/.agent-queue/inbox/b.md"), "do b\n").unwrap();
    let r = Running::start(&env);
    r.ctx().update(|st| {
        let a = st.accounts.get_mut("main").unwrap();
        a.five_hour = Some(37.0);
        a.seven_day = Some(12.0);
        a.read_at = Some(claude_failover::timefmt::now_secs() - 41);
    });
    let s = r.req("GET", "/status", None);
    assert_eq!(s.status, 200, "{}", s.body);
    let v: Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(v["active_account"], "main");
    assert_eq!(v["failover_in_progress"], false);
    let sess = v["sessions"].as_array().unwrap();
    let ops = sess.iter().find(|x| x["name"] == "ops-1").expect("ops-1");
    assert_eq!(ops["kind"], "dedicated");
    for k in [
        "state",
        "task",
        "account",
        "since",
        "project",
        "claude_session_id",
    ] {
        assert!(ops.get(k).is_some(), "session key {k}: {ops}");
    }
    let accts = v["accounts"].as_array().unwrap();
    assert_eq!(accts.len(), 2);
    let main = &accts[0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["usable"], true);
    assert_eq!(main["five_hour"], 37.0);
    assert_eq!(main["seven_day"], 12.0);
    assert!(main["reading_age_s"].as_u64().unwrap() >= 41);
    assert!(main.get("error").is_some());
    assert_eq!(accts[1]["reading_age_s"], Value::Null);
    let projects = v["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["pending"], 2);
    assert_eq!(projects[0]["dispatched"], 0);
    assert_eq!(projects[0]["failed"], 0);

    assert_eq!(r.req("POST", "/scan", Some("")).status, 202);
    assert_eq!(r.req("GET", "/scan", None).status, 405);
    assert_eq!(r.req("POST", "/health", Some("")).status, 405);
    assert_eq!(r.req("GET", "/nope", None).status, 404);
    assert_eq!(
        r.req("POST", "/sessions/ops-1/recycle", Some("")).status,
        202
    );
    assert_eq!(
        r.req("POST", "/sessions/nobody/recycle", Some("")).status,
        404
    );
    assert_eq!(
        r.req("POST", "/sessions/ops-1/recycle/x", Some("")).status,
        404
    );
    // Failover: unknown account and bad bodies are refused before asking;
    // one already running is a conflict.
    let f = r.req("POST", "/failover", Some(r#"{"to":"nosuch"}"#));
    assert_eq!(f.status, 400, "{}", f.body);
    assert!(f.body.contains("unknown account"), "{}", f.body);
    assert_eq!(r.req("POST", "/failover", Some("[1]")).status, 400);
    assert_eq!(r.req("POST", "/failover", Some(r#"{"to":5}"#)).status, 400);
    r.ctx().update(|st| st.failover_in_progress = true);
    let f = r.req("POST", "/failover", Some(r#"{"to":"backup"}"#));
    assert_eq!(f.status, 409, "{}", f.body);
    r.ctx().update(|st| st.failover_in_progress = false);
}

/// The reply mapping of `POST /failover`, with the test acting as the
/// failover thread (so it does not depend on that thread's progress).
#[test]
fn failover_replies_map_to_202_and_409() {
    let env = ControlEnv::new();
    let cfg = env.config();
    fs::create_dir_all(env.state_dir()).unwrap();
    let mut st = State::default();
    st.reconcile(&cfg);
    let (ctx, inboxes, stop) = Ctx::new(cfg, st);
    let h = control::start(ctx.clone()).unwrap().expect("listening");
    let addr = env.addr();
    let token = env.token();
    let failover = inboxes.failover;
    let answers = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for reply in [
            Ok("failover to backup started".to_string()),
            Err(Refusal::Running),
            Err(Refusal::NoUsableAccount),
        ] {
            match failover.recv_timeout(T).expect("a request") {
                FailoverMsg::Manual {
                    to,
                    reply: Some(tx),
                } => {
                    seen.push(to);
                    tx.send(reply).unwrap();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    });
    let ask =
        |body: &str| control::request(addr, &token, "POST", "/failover", Some(body), T).unwrap();
    let a = ask(r#"{"to":"backup"}"#);
    assert_eq!(a.status, 202, "{}", a.body);
    assert!(a.body.contains("failover to backup started"));
    let b = ask("");
    assert_eq!(b.status, 409, "{}", b.body);
    assert!(b.body.contains("already running"));
    let c = ask("{}");
    assert_eq!(c.status, 409, "{}", c.body);
    assert_eq!(
        answers.join().unwrap(),
        vec![Some("backup".to_string()), None, None]
    );
    drop(stop);
    wait_for("the control thread to stop", T, || h.is_finished());
    assert!(!env.state_dir().join("control.addr").exists());
}

/// `POST /failover` through the daemon's own failover thread: a switch to
/// the other account starts (202); asking for the account already active
/// is refused (409), as is the CLI's request.
#[test]
fn failover_through_the_daemon() {
    let env = ControlEnv::new();
    let cfg = env.config_file();
    let r = Running::start(&env);
    let f = r.req("POST", "/failover", Some(r#"{"to":"backup"}"#));
    assert_eq!(f.status, 202, "{}", f.body);
    wait_for("the switch to backup", T, || {
        let st = r.ctx().state();
        st.active_account == "backup" && !st.failover_in_progress
    });
    let f = r.req("POST", "/failover", Some(r#"{"to":"backup"}"#));
    assert_eq!(f.status, 409, "{}", f.body);
    let out = cli(&["failover", "-c", cfg.to_str().unwrap(), "--to", "backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already the active account"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["failover", "-c", cfg.to_str().unwrap(), "--to", "main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the switch back to main", T, || {
        let st = r.ctx().state();
        st.active_account == "main" && !st.failover_in_progress
    });
}

/// A small checker of the Prometheus text exposition format (0.0.4).
fn check_prometheus(text: &str) -> HashMap<String, f64> {
    fn name_ok(n: &str) -> bool {
        let mut b = n.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    }
    assert!(text.ends_with('\n'), "must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut done_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let kind = w.next().unwrap();
            let name = w.next().unwrap_or_else(|| panic!("{at}"));
            assert!(name_ok(name), "{at}");
            match kind {
                "HELP" => {
                    assert!(helps.insert(name.into(), ()).is_none(), "two HELP: {at}");
                }
                "TYPE" => {
                    let t = w.next().unwrap_or_else(|| panic!("{at}"));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{at}"
                    );
                    assert!(
                        types.insert(name.into(), t.into()).is_none(),
                        "two TYPE: {at}"
                    );
                    assert!(!done_families.contains(&name.to_string()), "{at}");
                    if let Some(c) = current.replace(name.to_string()) {
                        done_families.push(c);
                    }
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "blank line: {at}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{at}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {at}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                Some(l.strip_suffix('}').unwrap_or_else(|| panic!("{at}"))),
            ),
            None => (series, None),
        };
        assert!(name_ok(name), "{at}");
        if let Some(l) = labels {
            // name="value" pairs, value escaped.
            let mut rest = l;
            while !rest.is_empty() {
                let (k, r) = rest.split_once("=\"").unwrap_or_else(|| panic!("{at}"));
                assert!(name_ok(k), "label name: {at}");
                let mut chars = r.char_indices();
                let mut end = None;
                while let Some((j, c)) = chars.next() {
                    match c {
                        '\\' => {
                            let (_, e) = chars.next().unwrap_or_else(|| panic!("{at}"));
                            assert!(matches!(e, '\\' | '"' | 'n'), "escape: {at}");
                        }
                        '"' => {
                            end = Some(j);
                            break;
                        }
                        '\n' => panic!("{at}"),
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated: {at}"));
                rest = &r[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let family = current
            .clone()
            .unwrap_or_else(|| panic!("sample before TYPE: {at}"));
        assert_eq!(name, family, "sample outside its family: {at}");
        if types[&family] == "counter" {
            assert!(name.ends_with("_total"), "{at}");
            assert!(v >= 0.0, "{at}");
        }
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "duplicate series: {at}"
        );
    }
    samples
}

#[test]
fn metrics_are_prometheus_text() {
    let env = ControlEnv::new();
    let r = Running::start(&env);
    r.ctx().update(|st| {
        let a = st.accounts.get_mut("backup").unwrap();
        a.five_hour = Some(91.5);
        a.read_at = Some(claude_failover::timefmt::now_secs());
        st.metrics.tasks_dispatched = 7;
        st.metrics.guard_blocks = 2;
        st.metrics
            .guard_blocks_by_rule
            .insert("force-push".into(), 2);
        st.metrics.notices_by_sink.insert(
            "webhook 1".into(),
            claude_failover::state::SinkCounts { sent: 3, failed: 1 },
        );
    });
    let m = r.req("GET", "/metrics", None);
    assert_eq!(m.status, 200);
    let samples = check_prometheus(&m.body);
    let get = |k: &str| {
        *samples
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing:\n{}", m.body))
    };
    assert_eq!(get("claude_failover_tasks_dispatched_total"), 7.0);
    assert_eq!(
        get("claude_failover_guard_blocks_total{rule=\"force-push\"}"),
        2.0
    );
    assert_eq!(
        get("claude_failover_notifications_total{sink=\"webhook 1\",outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        get(&format!(
            "claude_failover_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    for k in [
        "claude_failover_tasks_done_total",
        "claude_failover_tasks_failed_total",
        "claude_failover_failovers_total",
        "claude_failover_events_dropped_total",
        "claude_failover_notices_dropped_total",
        "claude_failover_sessions{state=\"idle\"}",
        "claude_failover_sessions{state=\"dead\"}",
        "claude_failover_account_active{account=\"main\"}",
        "claude_failover_account_usable{account=\"backup\"}",
    ] {
        get(k);
    }
    assert_eq!(
        get("claude_failover_account_usage_ratio{account=\"backup\",window=\"five_hour\"}"),
        0.915
    );
    assert_eq!(get("claude_failover_account_active{account=\"main\"}"), 1.0);
    assert!(m.body.contains("# HELP claude_failover_sessions "));
}

#[test]
fn hostile_clients_do_not_stall_the_plane() {
    let env = ControlEnv::new();
    let r = Running::start(&env);
    let addr = r.addr;
    let token = r.token.clone();
    let mut clients = Vec::new();
    // Garbage bytes.
    clients.push(std::thread::spawn(move || {
        let (status, _) = raw(addr, b"\x00\xff\x13garbage\r\n\r\n\x01\x02");
        assert!(status == 400 || status == 0, "garbage got {status}");
        "garbage"
    }));
    // A 200 KB request line.
    clients.push(std::thread::spawn(move || {
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 200 * 1024));
        req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        let (status, _) = raw(addr, &req);
        assert!(status == 431 || status == 0, "long line got {status}");
        "long line"
    }));
    // A huge Content-Length, with and without the token.
    let t = token.clone();
    clients.push(std::thread::spawn(move || {
        let started = Instant::now();
        let (status, text) = raw(
            addr,
            format!(
                "POST /scan HTTP/1.1\r\nAuthorization: Bearer {t}\r\nContent-Length: 99999999999999999999999\r\n\r\nxx"
            )
            .as_bytes(),
        );
        assert_eq!(status, 413, "{text}");
        let (status, text) = raw(
            addr,
            format!(
                "POST /scan HTTP/1.1\r\nAuthorization: Bearer {t}\r\nContent-Length: 1000000000\r\n\r\nxx"
            )
            .as_bytes(),
        );
        assert_eq!(status, 413, "{text}");
        let (status, _) = raw(
            addr,
            b"POST /scan HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\nxx",
        );
        assert_eq!(status, 401);
        assert!(started.elapsed() < Duration::from_secs(4));
        "huge body"
    }));
    // A slow client: one byte a second; it is cut off at the read deadline.
    let t = token.clone();
    clients.push(std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let req = format!("GET /health HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n");
        let started = Instant::now();
        let mut cut = false;
        for b in req.bytes() {
            if s.write_all(&[b]).is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            cut || out.starts_with("HTTP/1.1 408") || out.is_empty(),
            "slow client got {out:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        "slow"
    }));
    // Meanwhile the plane answers, quickly.
    let until = Instant::now() + Duration::from_secs(6);
    let mut answered = 0;
    while Instant::now() < until {
        let t0 = Instant::now();
        assert!(r.health_ok(), "/health while hostile clients are connected");
        assert!(
            t0.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t0.elapsed()
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered >= 10);
    for c in clients {
        c.join().unwrap();
    }
    assert!(r.health_ok());
}

#[test]
fn connection_cap_answers_503_and_recovers() {
    let env = ControlEnv::new();
    let r = Running::start(&env);
    // Fill every slot with connections that never send a byte: they cannot
    // hold the control plane (the oldest idle one is closed to make room).
    let idle: Vec<TcpStream> = (0..control::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(r.addr).unwrap())
        .collect();
    let t0 = Instant::now();
    assert!(r.health_ok(), "no answer with every slot idle");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    drop(idle);
    // A kept-alive connection serves many requests.
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let req = format!(
        "GET /health HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n",
        r.token
    );
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        s.write_all(req.as_bytes()).unwrap();
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
    }
    let _ = s.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------- notifications

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    body: Value,
    status: u16,
}

/// A stand-in HTTP server that records requests and answers with
/// `respond(n, path, body)` (n counts requests from 0).
struct Stub {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Stub {
    fn start(respond: impl Fn(usize, &str) -> (u16, String) + Send + Sync + 'static) -> Stub {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        let respond = Arc::new(respond);
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let (h, respond, count) = (h.clone(), respond.clone(), count.clone());
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(T)).unwrap();
                    loop {
                        let Some((path, body)) = read_request(&mut s) else {
                            return;
                        };
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let (status, answer) = respond(n, &path);
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        h.lock().unwrap().push(Hit { path, body, status });
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Stub { addr, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Successful deliveries of `event` (and `message` when given).
    fn delivered(&self, pick: impl Fn(&Hit) -> bool) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.status == 200 && pick(h))
            .count()
    }
}

fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
            let path = req.path.unwrap().to_string();
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
                .unwrap_or(0);
            while buf.len() < n + len {
                let k = s.read(&mut chunk).ok()?;
                if k == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            return Some((path, buf[n..n + len].to_vec()));
        }
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

fn event_of(h: &Hit) -> String {
    // Webhook: the event field; Telegram: the second line of the text.
    if let Some(e) = h.body.get("event").and_then(Value::as_str) {
        return e.to_string();
    }
    h.body["text"]
        .as_str()
        .and_then(|t| t.lines().nth(1))
        .and_then(|l| l.split(':').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn each_event_reaches_each_sink_once() {
    let token_var = format!("CF_TEST_TG_{}", std::process::id());
    let token = "123456:secret-bot-token";
    std::env::set_var(&token_var, token);
    // Telegram says 429 (retry after 1 s) to its first request.
    let telegram = Stub::start(|n, _| {
        if n == 0 {
            (
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#.into(),
            )
        } else {
            (200, r#"{"ok":true,"result":{}}"#.into())
        }
    });
    // The webhook fails once with a 500 on the second request.
    let hook = Stub::start(|n, _| {
        if n == 1 {
            (500, "oops".into())
        } else {
            (200, "{}".into())
        }
    });
    // A closed port and a server that accepts and never answers.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let bh_addr = blackhole.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in blackhole.incoming().flatten() {
            h2.lock().unwrap().push(s);
        }
    });

    let mut env = ControlEnv::new();
    env.extra = format!(
        "notify:\n  telegram: {{ bot_token_env: {token_var}, chat_id: '42', api_base: 'http://{tg}' }}\n  \
         webhooks:\n    - {{ url: 'http://{bh}/hook' }}\n    - {{ url: 'http://{closed}/hook' }}\n    - {{ url: 'http://{hook}/hook/secret' }}\n  \
         events: [task_failed, failover, guard_block, dispatch_paused]\n  dedup_window: 2s\n",
        tg = telegram.addr,
        bh = bh_addr,
        hook = hook.addr,
    );
    let r = Running::start(&env);
    let ctx = r.ctx().clone();
    let sent = Instant::now();
    ctx.notify(Notice::new(NoticeKind::TaskFailed, "a.md failed: boom").field("task", "a.md"));
    ctx.notify(Notice::new(NoticeKind::SessionStuck, "filtered out"));
    ctx.notify(Notice::new(NoticeKind::Failover, "main -> backup").field("to", "backup"));
    for _ in 0..3 {
        ctx.notify(Notice::new(
            NoticeKind::GuardBlock,
            "ops-1: rm -rf / blocked",
        ));
    }
    // The live webhook has both events quickly, its 500 retried, despite
    // the dead webhooks listed before it.
    wait_for("task_failed and failover at the webhook", T, || {
        hook.delivered(|h| event_of(h) == "failover") == 1
            && hook.delivered(|h| event_of(h) == "task_failed") == 1
            && hook.delivered(|h| event_of(h) == "guard_block") == 1
    });
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "a dead sink delayed the live one: {:?}",
        sent.elapsed()
    );
    wait_for("the events at Telegram, after its 429", T, || {
        ["task_failed", "failover", "guard_block"]
            .iter()
            .all(|e| telegram.delivered(|h| event_of(h) == *e) == 1)
    });
    // The repeats come as one summary with the count.
    wait_for("the guard_block summary", T, || {
        hook.delivered(|h| h.body["fields"]["repeated"] == 2) == 1
            && telegram.delivered(|h| {
                h.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("repeated: 2"))
            }) == 1
    });
    // A marker: each sink is FIFO, so once it arrives nothing earlier is
    // still on its way.
    ctx.notify(Notice::new(NoticeKind::DispatchPaused, "marker"));
    wait_for("the marker at both sinks", T, || {
        hook.delivered(|h| event_of(h) == "dispatch_paused") == 1
            && telegram.delivered(|h| event_of(h) == "dispatch_paused") == 1
    });
    for (name, stub) in [("webhook", &hook), ("telegram", &telegram)] {
        let ok: Vec<String> = stub
            .hits()
            .iter()
            .filter(|h| h.status == 200)
            .map(event_of)
            .collect();
        let mut sorted = ok.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "dispatch_paused",
                "failover",
                "guard_block",
                "guard_block",
                "task_failed"
            ],
            "{name}: {ok:?}"
        );
    }
    // Telegram: the right URL and body; the 429 was retried, not dropped.
    let tg = telegram.hits();
    assert_eq!(tg[0].status, 429);
    assert!(tg
        .iter()
        .all(|h| h.path == format!("/bot{token}/sendMessage")));
    assert!(tg.iter().all(|h| h.body["chat_id"] == "42"));
    let t = tg
        .iter()
        .find(|h| event_of(h) == "task_failed" && h.status == 200)
        .unwrap();
    assert!(t.body["text"]
        .as_str()
        .unwrap()
        .contains("a.md failed: boom"));
    // Webhook: the stable schema.
    let w = hook
        .hits()
        .into_iter()
        .find(|h| event_of(h) == "task_failed")
        .unwrap();
    assert_eq!(w.path, "/hook/secret");
    assert_eq!(w.body["message"], "a.md failed: boom");
    assert_eq!(w.body["fields"]["task"], "a.md");
    assert_eq!(w.body["host"].as_str().unwrap(), ctx.host);
    assert!(w.body["at"].as_str().unwrap().ends_with('Z'));
    // Nobody was blocked: the daemon's plane still answers at once.
    assert!(r.health_ok());
    drop(held);
}

// ------------------------------------------------------------ the binary

/// The CLI with a dead proxy in its environment: the local daemon is
/// reached directly (the token never goes through a proxy).
fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CLAUDE_FAILOVER_CONFIG")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap()
}

#[test]
fn status_and_failover_with_and_without_a_daemon() {
    let env = ControlEnv::new();
    let cfg = env.config_file();
    let c = cfg.to_str().unwrap();
    // No daemon yet: the saved state (none) with a note.
    let out = cli(&["status", "-c", c]);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no daemon answered at"), "{err}");
    assert!(err.contains("showing the saved state"), "{err}");
    assert!(text.contains("ACCOUNT"), "{text}");
    assert!(text.contains("PROJECT"), "{text}");
    let out = cli(&["status", "-c", c, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active_account"], "main");
    let out = cli(&["failover", "-c", c]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon answered"));

    let mut env2 = env;
    env2.dedicated = true;
    let cfg = env2.config_file();
    let c = cfg.to_str().unwrap();
    let r = Running::start(&env2);
    r.ctx().update(|st| {
        st.accounts.get_mut("main").unwrap().five_hour = Some(55.0);
    });
    let out = cli(&["status", "-c", c]);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("no daemon"), "{err}");
    assert!(text.contains("SESSION"), "{text}");
    assert!(text.contains("ops-1"), "{text}");
    assert!(text.contains("55"), "{text}");
    let out = cli(&["status", "-c", c, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accounts"][0]["five_hour"], 55.0);
    // Refusals: exit 1 with the reason.
    let out = cli(&["failover", "-c", c, "--to", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown account"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.ctx().update(|st| st.failover_in_progress = true);
    let out = cli(&["failover", "-c", c, "--to", "backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_daemon(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(BIN);
    c.args(["run", "-c"])
        .arg(cfg)
        .env_remove("CLAUDE_FAILOVER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().unwrap())
}

fn signal(p: &Proc, sig: i32) {
    assert_eq!(unsafe { libc::kill(p.0.id() as i32, sig) }, 0);
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one() {
    let env = ControlEnv::new();
    let cfg = env.config_file();
    let log = env.root.join("daemon.log");
    let mut p = spawn_daemon(&cfg, &log, &[]);
    let addr = env.addr();
    let token = env.token();
    let health = || {
        control::request(addr, &token, "GET", "/health", None, Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200)
    };
    wait_for("/health", T, health);
    let logged = |s: &str| fs::read_to_string(&log).unwrap_or_default().contains(s);
    wait_for("ready", T, || logged("ready"));
    fs::write(&cfg, "accounts: [ {name: main\nbogus: 1\n").unwrap();
    signal(&p, libc::SIGHUP);
    wait_for("`reload refused` in the log", T, || {
        logged("reload refused")
    });
    assert!(health(), "the daemon stopped answering after a bad reload");
    assert!(p.0.try_wait().unwrap().is_none(), "the daemon exited");
    // A good config is taken.
    fs::write(&cfg, env.yaml()).unwrap();
    signal(&p, libc::SIGHUP);
    wait_for("`reloaded` in the log", T, || logged("reloaded"));
    assert!(health());
    signal(&p, libc::SIGTERM);
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn ready_watchdog_and_stopping_datagrams() {
    for kind in ["path", "abstract"] {
        let env = ControlEnv::new();
        let cfg = env.config_file();
        let (sock, target) = if kind == "path" {
            let p = env.root.join("notify.sock");
            (UnixDatagram::bind(&p).unwrap(), p.display().to_string())
        } else {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("cf-test-notify-{}", std::process::id());
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (UnixDatagram::bind_addr(&a).unwrap(), format!("@{name}"))
        };
        sock.set_read_timeout(Some(T)).unwrap();
        let log = env.root.join("daemon.log");
        let p = spawn_daemon(
            &cfg,
            &log,
            &[("NOTIFY_SOCKET", &target), ("WATCHDOG_USEC", "200000")],
        );
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let recv = |buf: &mut [u8]| -> String {
            let n = sock.recv(buf).expect("a datagram");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        got.push(recv(&mut buf));
        assert_eq!(got[0], "READY=1", "{kind}");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(recv(&mut buf), "WATCHDOG=1", "{kind}");
        }
        // Every 100 ms (half of 200 ms): three arrive well within 2 s.
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        signal(&p, libc::SIGTERM);
        let mut last = String::new();
        let deadline = Instant::now() + T;
        while last != "STOPPING=1" {
            assert!(Instant::now() < deadline, "{kind}: no STOPPING=1");
            last = recv(&mut buf);
        }
    }
}

#[test]
fn systemd_unit_is_a_notify_user_unit() {
    let env = ControlEnv::new();
    let cfg = env.config_file();
    let out = cli(&["systemd-unit", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let u = String::from_utf8_lossy(&out.stdout);
    let exe = fs::canonicalize(BIN).unwrap();
    for line in [
        "Type=notify".to_string(),
        "WatchdogSec=30".into(),
        "Restart=on-failure".into(),
        format!("ExecStart={} run -c {}", exe.display(), cfg.display()),
        format!("ExecReload={} reload -c {}", exe.display(), cfg.display()),
        "KillMode=process".into(),
        "NoNewPrivileges=yes".into(),
        "PrivateTmp=no".into(),
        "WantedBy=default.target".into(),
    ] {
        assert!(u.lines().any(|l| l == line), "missing `{line}` in:\n{u}");
    }
    assert!(
        !u.lines().any(|l| l.starts_with("ProtectHome=")),
        "projects live under $HOME"
    );
}
