//! The CLI side: requests to a running daemon, `status` and `failover`.

#[allow(unused_imports)]
use super::*;

/// An answer from the control plane.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Answers larger than this are cut (a status document is a few KB).
const MAX_REPLY: u64 = 32 << 20;

/// One request through the CLI's local agent ([`crate::http::local_agent`]), within
/// `timeout` in all; a body goes as JSON. Any HTTP status is a [`Reply`];
/// `Err` is only a failure to get one (refused, timed out, not HTTP).
pub fn request(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<Reply> {
    let agent = crate::http::local_agent(timeout);
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("Authorization", format!("Bearer {token}"));
    let invalid = |e: ureq::http::Error| io::Error::new(io::ErrorKind::InvalidInput, e);
    let sent = if method == "GET" {
        agent.run(req.body(()).map_err(invalid)?)
    } else {
        let req = req.header("Content-Type", "application/json");
        agent.run(req.body(body.unwrap_or("")).map_err(invalid)?)
    };
    let mut resp = sent.map_err(ureq::Error::into_io)?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_vec()
        .map_err(ureq::Error::into_io)?;
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Where the CLI finds the daemon: `control.listen` (loopback for a wildcard
/// address), or `state_dir/control.addr` when the port is 0.
pub fn client_addr(cfg: &Config) -> Result<SocketAddr, String> {
    if cfg.control.listen.is_empty() {
        return Err("the control plane is disabled (control.listen is empty)".into());
    }
    let listen = crate::config::resolve_listen(&cfg.control.listen)
        .map_err(|e| format!("control.listen: {e}"))?;
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
pub(super) fn ask(
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

pub(super) fn error_text(body: &str) -> String {
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
pub(super) fn saved_status(cfg: &Config) -> Value {
    let (st, note) = crate::state::read_saved(cfg);
    if let Some(n) = note {
        eprintln!("{n}");
    }
    let mut doc = st.status_json(cfg);
    doc["source"] = json!("state_file");
    doc
}

/// `reload`: asks the running daemon to re-read its config; the reason
/// when it refuses.
pub fn cli_reload(cfg: &Config) -> Result<ExitCode, String> {
    match ask(cfg, "POST", "/reload", None) {
        Ok((_, r)) if r.status == 200 => {
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            match v.get("reloaded").and_then(Value::as_str) {
                Some(name) => println!("reloaded {name}"),
                None => println!("reloaded"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, r)) => Err(format!("reload refused: {}", error_text(&r.body))),
        Err((addr, why)) => Err(format!("no daemon answered at {addr}: {why}")),
    }
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
