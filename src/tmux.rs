//! tmux, driven through one long-lived control-mode client
//! (`tmux_control`) and, when there is none (no server yet), through
//! `std::process::Command`: no shell ever sees a session name, path or
//! message. Everything a launch needs is
//! here: sessions, respawning a pane with an argv, reading the screen,
//! typing into it.
//!
//! Never `paste-buffer`: tmux 3.3a crashes its whole server (every session in
//! the pool) when it targets a dead pane, and an agent can exit between any
//! check and the paste. Text goes in with `send-keys -l`, wrapped in the
//! bracketed-paste markers, which is harmless on a dead pane.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::tmux_control::{Answer, Control};

/// The size of the daemon's sessions. What it reads off the screen needs
/// room: below about 14 rows claude's limit menu pushes the limit line off
/// the screen. Kept fixed (`window-size manual`) so a client attaching
/// with a small terminal does not shrink it.
pub const COLUMNS: u32 = 200;
pub const ROWS: u32 = 50;

/// tmux limits the size of one command message; stay well under it.
const SEND_CHUNK: usize = 4000;

#[derive(Debug)]
pub enum TmuxError {
    /// No such session, or no server at all.
    Gone(String),
    /// tmux could not be run or failed otherwise.
    Failed(String),
}

impl fmt::Display for TmuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmuxError::Gone(m) => write!(f, "tmux session gone: {m}"),
            TmuxError::Failed(m) => write!(f, "tmux failed: {m}"),
        }
    }
}

impl std::error::Error for TmuxError {}

pub type Result<T> = std::result::Result<T, TmuxError>;

/// What the daemon needs to know about a session's (single) pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneInfo {
    /// The process in the pane has exited (`remain-on-exit` keeps the pane).
    pub dead: bool,
    pub pid: Option<u32>,
    pub exit_status: Option<i32>,
    pub current_command: String,
    /// What the pane was started with: empty for a session's default shell,
    /// the agent's argv after a respawn.
    pub start_command: String,
}

impl PaneInfo {
    /// An agent the daemon started runs in this pane.
    pub fn has_agent(&self) -> bool {
        !self.dead && !self.start_command.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Tmux {
    socket: Option<PathBuf>,
    control: Arc<Control>,
}

/// Commands that only read: one whose control client was lost is asked
/// again as a process. Any other may have run already.
const READS: &[&str] = &[
    "capture-pane",
    "display-message",
    "list-panes",
    "list-sessions",
    "has-session",
];

impl Tmux {
    pub fn new(socket: Option<PathBuf>) -> Tmux {
        Tmux {
            control: Arc::new(Control::new(socket.clone())),
            socket,
        }
    }

    /// One tmux command: its output, or its error text. In the control
    /// client when there is one, else as a process.
    fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<std::result::Result<String, String>> {
        match self.control.run(args) {
            Some(Answer::Ok(out)) => return Ok(Ok(out)),
            Some(Answer::Err(e)) => return Ok(Err(e)),
            Some(Answer::Lost(e)) => {
                let read = args
                    .first()
                    .is_some_and(|c| READS.iter().any(|r| c.as_ref() == OsStr::new(r)));
                if !read {
                    return Err(TmuxError::Failed(e));
                }
            }
            None => {}
        }
        let mut c = Command::new("tmux");
        if let Some(s) = &self.socket {
            c.arg("-S").arg(s);
        }
        let out = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TmuxError::Failed(format!("cannot run tmux: {e}")))?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        })
    }

    /// Runs tmux with `args`, returning stdout.
    fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        self.exec(&args)?.map_err(|err| {
            if err.contains("can't find")
                || err.contains("no server running")
                || err.contains("error connecting")
                || err.contains("no current")
                || err.contains("session not found")
                || err.contains("no such session")
                || err.contains("no such window")
            {
                TmuxError::Gone(err)
            } else {
                TmuxError::Failed(err)
            }
        })
    }

    /// `=NAME` matches the session name exactly (no prefix matching).
    fn target(name: &str) -> String {
        format!("={name}")
    }

    /// The pane of a session: `=NAME:` is its current window's active pane.
    fn pane(name: &str) -> String {
        format!("={name}:")
    }

    pub fn has_session(&self, name: &str) -> bool {
        self.run(["has-session", "-t", &Self::target(name)]).is_ok()
    }

    /// Creates a detached session in `cwd` running the default shell, with
    /// `remain-on-exit` so the daemon sees an agent end instead of losing
    /// the pane.
    pub fn new_session(&self, name: &str, cwd: &Path) -> Result<()> {
        let (x, y) = (COLUMNS.to_string(), ROWS.to_string());
        let args = ["new-session", "-d", "-s", name, "-x", &x, "-y", &y, "-c"];
        let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        args.push(cwd.as_os_str());
        match self.run(args) {
            // Someone (an earlier run, the operator) created it: that is fine.
            Err(TmuxError::Failed(e)) if e.contains("duplicate session") => {}
            r => {
                r?;
            }
        }
        self.run([
            "set-option",
            "-w",
            "-t",
            &Self::pane(name),
            "remain-on-exit",
            "on",
        ])?;
        self.fix_size(name)
    }

    /// Gives a session that exists (made by someone else, or shrunk) the
    /// daemon's fixed size.
    pub fn fix_size(&self, name: &str) -> Result<()> {
        let pane = Self::pane(name);
        let (x, y) = (COLUMNS.to_string(), ROWS.to_string());
        self.run([
            "set-option",
            "-w",
            "-t",
            &pane,
            "window-size",
            "manual",
            ";",
            "resize-window",
            "-t",
            &pane,
            "-x",
            &x,
            "-y",
            &y,
        ])
        .map(|_| ())
    }

    /// Replaces whatever runs in the session's pane with `argv`, executed
    /// directly (tmux execs a multi-word command without a shell).
    pub fn respawn(
        &self,
        name: &str,
        cwd: &Path,
        env: &[(&str, &OsStr)],
        argv: &[&OsStr],
    ) -> Result<()> {
        if argv.len() < 2 {
            // A single word would be handed to `sh -c`.
            return Err(TmuxError::Failed(
                "respawn needs at least two argv words".into(),
            ));
        }
        let mut args: Vec<OsString> = ["respawn-pane", "-k", "-t", &Self::pane(name), "-c"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(cwd.into());
        for (k, v) in env {
            let mut kv = OsString::from(k);
            kv.push("=");
            kv.push(v);
            args.extend([OsString::from("-e"), kv]);
        }
        args.push("--".into());
        args.extend(argv.iter().map(OsString::from));
        self.run(args)?;
        // Keep the pane after the agent exits, also on sessions created by hand.
        let _ = self.run([
            "set-option",
            "-w",
            "-t",
            &Self::pane(name),
            "remain-on-exit",
            "on",
        ]);
        Ok(())
    }

    /// The visible screen of the session's pane, as text.
    pub fn capture(&self, name: &str) -> Result<String> {
        self.run(["capture-pane", "-p", "-t", &Self::pane(name)])
    }

    pub fn pane_info(&self, name: &str) -> Result<PaneInfo> {
        let out = self.run([
            "display-message",
            "-p",
            "-t",
            &Self::pane(name),
            "#{pane_dead}\t#{pane_pid}\t#{pane_dead_status}\t#{pane_current_command}\t#{pane_start_command}",
        ])?;
        let mut f = out.trim_end_matches('\n').split('\t');
        let dead = f.next() == Some("1");
        let pid = f.next().and_then(|p| p.parse().ok()).filter(|&p| p > 0);
        let exit_status = f.next().and_then(|p| p.parse().ok());
        let current_command = f.next().unwrap_or("").to_string();
        let start_command = f.next().unwrap_or("").to_string();
        Ok(PaneInfo {
            dead,
            pid,
            exit_status,
            current_command,
            start_command,
        })
    }

    /// The active pane of every session, in one call: what the watcher
    /// needs each tick without one process per session.
    pub fn panes(&self) -> Result<std::collections::HashMap<String, PaneInfo>> {
        let out = match self.run([
            "list-panes",
            "-a",
            "-F",
            "#{window_active}#{pane_active}\t#{session_name}\t#{pane_dead}\t#{pane_pid}\t#{pane_dead_status}\t#{pane_current_command}\t#{pane_start_command}",
        ]) {
            Ok(out) => out,
            Err(TmuxError::Gone(_)) => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let mut map = std::collections::HashMap::new();
        for line in out.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 7 || f[0] != "11" {
                continue;
            }
            map.insert(
                f[1].to_string(),
                PaneInfo {
                    dead: f[2] == "1",
                    pid: f[3].parse().ok().filter(|&p| p > 0),
                    exit_status: f[4].parse().ok(),
                    current_command: f[5].to_string(),
                    start_command: f[6].to_string(),
                },
            );
        }
        Ok(map)
    }

    /// The session a pane (`%3`) belongs to.
    pub fn session_of_pane(&self, pane: &str) -> Option<String> {
        self.run(["display-message", "-p", "-t", pane, "#{session_name}"])
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Types `text` literally. Harmless on a dead pane.
    pub fn send_literal(&self, name: &str, text: &str) -> Result<()> {
        for chunk in chunks(text, SEND_CHUNK) {
            self.run(["send-keys", "-l", "-t", &Self::pane(name), "--", chunk])?;
        }
        Ok(())
    }

    /// Sends one named key (`Enter`, `Escape`, `C-c`).
    pub fn send_key(&self, name: &str, key: &str) -> Result<()> {
        self.run(["send-keys", "-t", &Self::pane(name), key])
            .map(|_| ())
    }

    /// Delivers `text` as one bracketed paste (the agent sees a single paste,
    /// newlines included, and does not submit it). Escape characters in the
    /// text are dropped so it cannot end the paste early.
    pub fn paste(&self, name: &str, text: &str) -> Result<()> {
        let clean: String = text
            .chars()
            .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
            .collect();
        let mut s = String::with_capacity(clean.len() + 12);
        s.push_str("\x1b[200~");
        s.push_str(&clean);
        s.push_str("\x1b[201~");
        self.send_literal(name, &s)
    }

    pub fn kill_session(&self, name: &str) -> Result<()> {
        self.run(["kill-session", "-t", &Self::target(name)])
            .map(|_| ())
    }

    /// The process running in the pane of a session when it has an agent.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.pane_info(name)
            .ok()
            .filter(PaneInfo::has_agent)
            .and_then(|p| p.pid)
    }
}

/// Splits at char boundaries into pieces of at most `max` bytes.
fn chunks(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_char_boundaries() {
        let s = "é".repeat(5000);
        let parts = chunks(&s, 4000);
        assert!(parts.iter().all(|p| p.len() <= 4000));
        assert_eq!(parts.concat(), s);
        assert!(chunks("", 10).is_empty());
    }
}
