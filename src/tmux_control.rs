//! One long-lived `tmux -C` (control mode) client, so a tmux command costs
//! a line on a pipe instead of a process: measured on tmux 3.3a, a
//! `capture-pane` is 0.09 ms this way against 11 ms (3 ms of CPU) as a
//! process. The client attaches with `no-output,ignore-size`: it gets no
//! pane output and never resizes a window.
//!
//! Every argument is sent double-quoted with each byte that is not an ASCII
//! letter or digit written as an octal escape, so tmux's command parser
//! sees nothing it could interpret (no `;`, `$`, `~`, `#`, quote or
//! newline): a task's text reaches `send-keys -l` as it was.
//!
//! When the server goes away the client ends; the next command starts a new
//! one. When none can be had (no server yet, no session to attach to) the
//! caller runs tmux as a process.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one command may take to answer before the client is dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connect, commands run as processes this long before the
/// next try (no server: every try would be a wasted process).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one command in the control client gave.
#[derive(Debug)]
pub enum Answer {
    /// Its output (what a process would print on stdout).
    Ok(String),
    /// Its error text (what a process would print on stderr).
    Err(String),
    /// The client ended or stopped answering after the command was sent:
    /// whether it ran is unknown.
    Lost(String),
}

pub struct Control {
    socket: Option<PathBuf>,
    conn: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    next_try: Option<Instant>,
}

impl Slot {
    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }
}

struct Conn {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Control {
    pub fn new(socket: Option<PathBuf>) -> Control {
        Control {
            socket,
            conn: Mutex::default(),
        }
    }

    /// Runs one command (`args` as for a tmux process) in the control
    /// client; `None` when there is no client to be had.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Option<Answer> {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A client whose server went away (or that was detached) is seen
        // before anything is sent to it.
        if slot.conn.as_mut().is_some_and(|c| !c.alive()) {
            slot.drop_conn();
        }
        if slot.conn.is_none() {
            if slot.next_try.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            match self.connect() {
                Ok(c) => slot.conn = Some(c),
                Err(e) => {
                    log::debug!("no tmux control client: {e}");
                    slot.next_try = Some(Instant::now() + RETRY_AFTER);
                    return None;
                }
            }
        }
        let conn = slot.conn.as_mut()?;
        if let Err(e) = conn.send(&command_line(args)) {
            // Not sent: the caller may run it as a process.
            log::debug!("tmux control client gone: {e}");
            slot.drop_conn();
            return None;
        }
        // Each command of a `;` sequence answers in its own block; after
        // an error tmux runs (and answers) none of the rest.
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let commands = 1 + args.iter().filter(|a| a.as_ref() == ";").count();
        let mut all = String::new();
        let mut answer = Answer::Ok(String::new());
        for _ in 0..commands {
            match conn.answer(deadline) {
                Answer::Ok(out) => all.push_str(&out),
                other => {
                    answer = other;
                    break;
                }
            }
        }
        if let Answer::Ok(out) = &mut answer {
            *out = all;
        }
        if let Answer::Lost(why) = &answer {
            log::debug!("tmux control client lost: {why}");
            slot.drop_conn();
        }
        Some(answer)
    }

    /// Starts a client and reads the answer to its own `attach-session`.
    fn connect(&self) -> io::Result<Conn> {
        // `-N`: never start a server (one with no session would exit at
        // once, under a `new-session` that is starting it).
        let mut c = Command::new("tmux");
        c.arg("-N");
        if let Some(s) = &self.socket {
            c.arg("-S").arg(s);
        }
        let mut child = c
            .args(["-C", "attach-session", "-f", "no-output,ignore-size"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("no pipes to the control client"));
        };
        let mut conn = Conn {
            child,
            stdin,
            stdout,
            buf: Vec::new(),
        };
        match conn.answer(Instant::now() + ANSWER_TIMEOUT) {
            Answer::Ok(_) => Ok(conn),
            Answer::Err(e) | Answer::Lost(e) => {
                conn.close();
                Err(io::Error::other(e))
            }
        }
    }
}

impl Conn {
    fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.stdin.write_all(line)?;
        self.stdin.flush()
    }

    /// False once the client has ended or was told to (`%exit`): takes in
    /// what it wrote meanwhile (notifications) without waiting.
    fn alive(&mut self) -> bool {
        loop {
            let mut fd = libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut fd, 1, 0) } <= 0 {
                break;
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stdout.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        !self.buf.starts_with(b"%exit") && !self.buf.windows(6).any(|w| w == b"\n%exit")
    }

    /// Reads up to the end of the next block this client's command opened
    /// (`%begin T N 1` … `%end T N 1` or `%error T N 1`). Lines outside a
    /// block are notifications: skipped.
    fn answer(&mut self, deadline: Instant) -> Answer {
        let mut open: Option<String> = None;
        let mut body = String::new();
        loop {
            let line = match self.line(deadline) {
                Ok(l) => l,
                Err(e) => return Answer::Lost(e.to_string()),
            };
            match &open {
                None => {
                    if let Some(id) = line.strip_prefix("%begin ") {
                        open = Some(id.to_string());
                    }
                }
                Some(id) => {
                    if line.strip_prefix("%end ") == Some(id) {
                        return Answer::Ok(body);
                    }
                    if line.strip_prefix("%error ") == Some(id) {
                        return Answer::Err(body.trim_end().to_string());
                    }
                    body.push_str(&line);
                    body.push('\n');
                }
            }
        }
    }

    /// One line of the client's output, waiting no later than `deadline`.
    fn line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "tmux did not answer",
                ));
            }
            let mut fd = libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut fd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                continue;
            }
            let mut chunk = [0u8; 64 * 1024];
            let got = self.stdout.read(&mut chunk)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the control client ended",
                ));
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    /// Ends our own client process (not an agent) and reaps it.
    fn close(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One command line for the control client: every argument quoted so that
/// only letters, digits, octal escapes and the quotes themselves appear. An
/// argument that is `;` alone separates commands, as it does in a tmux argv.
fn command_line<S: AsRef<OsStr>>(args: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if a.as_ref() == ";" {
            out.push(b';');
            continue;
        }
        out.push(b'"');
        for &b in a.as_ref().as_bytes() {
            if b.is_ascii_alphanumeric() {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            }
        }
        out.push(b'"');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_hold_only_letters_digits_and_escapes() {
        let line = command_line(&["send-keys", "a; run-shell 'x' $HOME\n#{é}", ";", "x"]);
        let text = String::from_utf8(line).unwrap();
        assert_eq!(
            text,
            "\"send\\055keys\" \"a\\073\\040run\\055shell\\040\\047x\\047\\040\\044HOME\\012\\043\\173\\303\\251\\175\" ; \"x\"\n"
        );
        assert!(text
            .trim_end()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "\\\" ;".contains(c)));
    }
}
