//! systemd integration: `sd_notify` datagrams (`READY=1`, `WATCHDOG=1`,
//! `STOPPING=1`) over `$NOTIFY_SOCKET`, the watchdog period, and the user
//! unit printed by `claude-failover systemd-unit`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET` when set. Errors are
/// logged at debug level and otherwise ignored: without systemd there is
/// nobody to tell.
pub fn notify(state: &str) {
    let Some(sock) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return;
    };
    let sock = sock.to_string_lossy().into_owned();
    if let Err(e) = send(&sock, state) {
        log::debug!("sd_notify {state} to {sock}: {e}");
    }
}

/// One datagram to a path or an abstract (`@name`) socket.
pub fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let addr = socket_addr(socket)?;
    let dgram = UnixDatagram::unbound()?;
    dgram.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

fn socket_addr(socket: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = socket.strip_prefix('@') {
        abstract_addr(name.as_bytes())
    } else {
        SocketAddr::from_pathname(Path::new(socket))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// Half of `$WATCHDOG_USEC`, when systemd asks for a watchdog for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = pid.map(str::trim).filter(|p| !p.is_empty()) {
        if p.parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A user unit for `claude-failover run` with the current executable and
/// config file. Install it as `~/.config/systemd/user/claude-failover.service`.
pub fn unit(cfg: &Config) -> String {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "claude-failover".into());
    let config = cfg
        .source
        .as_ref()
        .map(|src| {
            let src = std::fs::canonicalize(src).unwrap_or_else(|_| src.clone());
            format!(" -c {}", quote(&src.display().to_string()))
        })
        .unwrap_or_default();
    let exec = format!("{} run{config}", quote(&exe));
    // `reload` waits for the daemon's answer: a refused config makes
    // `systemctl reload` fail with the reason, where a SIGHUP could not.
    let reload = format!("{} reload{config}", quote(&exe));
    // The agents need what the operator's shell finds (tmux, claude, git,
    // node): a user manager's PATH is often minimal, so the current one is
    // written in.
    let path = std::env::var("PATH")
        .ok()
        .filter(|p| !p.is_empty() && !p.contains(['"', '\\', '\n', '%']))
        .map(|p| format!("Environment=\"PATH={p}\"\n"))
        .unwrap_or_default();
    format!(
        "\
# claude-failover user unit. Install:
#   claude-failover systemd-unit > ~/.config/systemd/user/claude-failover.service
#   systemctl --user daemon-reload
#   systemctl --user enable --now claude-failover
#   loginctl enable-linger \"$USER\"   # keep it running while logged out
[Unit]
Description=claude-failover: keeps a pool of Claude Code agents working in tmux
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec}
ExecReload={reload}
Restart=on-failure
RestartSec=5
WatchdogSec=30
TimeoutStopSec=20
# The tmux server and the agents run in this unit's cgroup: stopping or
# restarting the daemon must not kill them.
KillMode=process
Environment=RUST_LOG=info
{path}\
# Hardening that still lets tmux and the projects work: the agents write
# to the projects under $HOME and tmux keeps its sockets in /tmp, so no
# ProtectHome and no PrivateTmp.
NoNewPrivileges=yes
PrivateTmp=no
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes

[Install]
WantedBy=default.target
"
    )
}

/// Quotes one ExecStart word the way systemd reads it.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period() {
        assert_eq!(
            watchdog_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
    }

    #[test]
    fn exec_words_are_quoted() {
        assert_eq!(
            quote("/usr/bin/claude-failover"),
            "/usr/bin/claude-failover"
        );
        assert_eq!(quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(quote("/a$b%c\"d"), "\"/a$$b%%c\\\"d\"");
    }

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&p).unwrap();
        send(p.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("cf-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&abstract_addr(name.as_bytes()).unwrap()).unwrap();
        send(&format!("@{name}"), "WATCHDOG=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
