//! The parts every speed scenario needs: a temp root with projects and
//! accounts, a config, the daemon binary under test as a child process
//! (so the same scenario runs against any build), a counting `tmux` on its
//! PATH.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Polls `cond` every 2 ms until it holds (true) or `timeout` passes.
pub fn until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

pub fn instant_agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/instant-agent")
}

fn real_tmux() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tmux"))
        .find(|p| p.is_file())
        .expect("tmux on PATH")
}

/// What a scenario sets up before the daemon starts.
pub struct Setup {
    pub projects: usize,
    /// Projects as children of `projects_dir` instead of listed one by one.
    pub projects_dir: bool,
    pub sessions: u32,
    pub agent: PathBuf,
    /// Extra top-level YAML (e.g. `quota:`), and the `watcher.interval`.
    pub extra: String,
    pub watcher_interval: &'static str,
    pub scan_interval: &'static str,
    pub control: bool,
    pub accounts: usize,
    /// Put a counting `tmux` first on the daemon's PATH.
    pub count_tmux: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            projects: 1,
            projects_dir: false,
            sessions: 1,
            agent: instant_agent(),
            extra: String::new(),
            watcher_interval: "1h",
            scan_interval: "1h",
            control: false,
            accounts: 1,
            count_tmux: false,
        }
    }
}

/// A temp world and (once started) one daemon in it.
pub struct Rig {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub projects: Vec<PathBuf>,
    pub accounts: Vec<PathBuf>,
    pub sock: PathBuf,
    pub cfg: PathBuf,
    /// The next `start` puts the counting `tmux` first on the PATH.
    pub count_tmux: bool,
    pub child: Option<Child>,
}

impl Rig {
    pub fn new(s: &Setup) -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("cf-speed")
            .tempdir()
            .unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let base = if s.projects_dir {
            root.join("projects")
        } else {
            root.clone()
        };
        let projects: Vec<PathBuf> = (0..s.projects)
            .map(|i| {
                let p = base.join(format!("proj{i:04}"));
                fs::create_dir_all(p.join(".agent-queue/inbox")).unwrap();
                p
            })
            .collect();
        let accounts: Vec<PathBuf> = (0..s.accounts)
            .map(|i| {
                let a = root.join(format!("acct{i}"));
                fs::create_dir_all(&a).unwrap();
                // An account without readable credentials is not used.
                let exp = now_us() / 1000 + 86_400_000;
                fs::write(
                    a.join(".credentials.json"),
                    format!(r#"{{"claudeAiOauth":{{"accessToken":"tok-a{i}","refreshToken":"never-used","expiresAt":{exp}}}}}"#),
                )
                .unwrap();
                a
            })
            .collect();
        let mut yaml = format!(
            "state_dir: '{r}/state'\ntmux: {{ socket: '{r}/tmux.sock' }}\n\
             agent: {{ command: '{agent}', prompt_timeout: 10s }}\n\
             pool:\n  autonomous: {{ prefix: s-, start_index: 1, max: {n} }}\n\
             dispatcher: {{ scan_interval: {scan}, cooldown: 1s }}\n\
             watcher: {{ interval: {wi} }}\n\
             failover: {{ shared_transcripts: '{r}/shared', stop_timeout: 4s }}\n\
             control: {ctl}\n{extra}",
            r = root.display(),
            agent = s.agent.display(),
            n = s.sessions,
            scan = s.scan_interval,
            wi = s.watcher_interval,
            ctl = if s.control {
                format!(
                    "{{ listen: '127.0.0.1:0', token_file: '{}/token' }}",
                    root.display()
                )
            } else {
                "{ listen: '' }".into()
            },
            extra = s.extra,
        );
        if !s.extra.contains("quota:") {
            yaml.push_str("quota: { endpoint: 'http://127.0.0.1:9/' }\n");
        }
        yaml.push_str("accounts:\n");
        for (i, a) in accounts.iter().enumerate() {
            yaml.push_str(&format!(
                "  - {{ name: a{i}, config_dir: '{}' }}\n",
                a.display()
            ));
        }
        if s.projects_dir {
            yaml.push_str(&format!("projects_dir: '{}'\n", base.display()));
        } else {
            yaml.push_str("projects:\n");
            for p in &projects {
                yaml.push_str(&format!("  - '{}'\n", p.display()));
            }
        }
        let cfg = root.join("config.yaml");
        fs::write(&cfg, yaml).unwrap();
        {
            let bin = root.join("bin");
            fs::create_dir_all(&bin).unwrap();
            let w = bin.join("tmux");
            // One line per tmux process the daemon starts: when, and the
            // command (the daemon always passes `-S SOCKET` first).
            fs::write(
                &w,
                format!(
                    "#!/bin/bash\nprintf '%s %s\\n' \"${{EPOCHREALTIME/./}}\" \"$3\" >>'{log}'\nexec '{real}' \"$@\"\n",
                    log = root.join("tmux-calls.log").display(),
                    real = real_tmux().display()
                ),
            )
            .unwrap();
            fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Rig {
            root: root.clone(),
            projects,
            accounts,
            sock: root.join("tmux.sock"),
            cfg,
            count_tmux: s.count_tmux,
            child: None,
            _dir: dir,
        }
    }

    /// Starts `bin run -c CFG`, its log in `daemon.log`.
    pub fn start(&mut self, bin: &Path) {
        let mut c = Command::new(bin);
        c.args(["run", "-c"])
            .arg(&self.cfg)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("CLAUDE_FAILOVER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.root.join("daemon.log"))
                    .unwrap(),
            );
        if self.count_tmux {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut p = self.root.join("bin").into_os_string();
            p.push(":");
            p.push(path);
            c.env("PATH", p);
        }
        self.child = Some(c.spawn().unwrap());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM to the daemon and wait (agents keep running in tmux).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child with a plain signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Waits for `cond`; on timeout panics with the end of the daemon's log.
    pub fn wait(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !until(timeout, cond) {
            let log = fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            panic!(
                "timed out after {timeout:?} waiting for {what}; the daemon's log ends:\n{tail}"
            );
        }
    }

    pub fn tmux(&self) -> Command {
        let mut c = Command::new(real_tmux());
        c.arg("-S")
            .arg(&self.sock)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Writes a task atomically (temp + rename).
    pub fn task(&self, project: usize, name: &str, body: &str) {
        let inbox = self.projects[project].join(".agent-queue/inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        fs::write(&tmp, body).unwrap();
        fs::rename(&tmp, inbox.join(name)).unwrap();
    }

    /// Times (unix µs) of the instant agent's log lines of `kind`
    /// (`paste`, `stop`) on account `a`, in file order.
    pub fn agent_times(&self, a: usize, kind: &str) -> Vec<u64> {
        fs::read_to_string(self.accounts[a].join("bench.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(kind))
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect()
    }

    /// The state of every session in state.json (`idle`, `working`, …).
    pub fn session_states(&self) -> Vec<String> {
        let Ok(text) = fs::read_to_string(self.root.join("state/state.json")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["sessions"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|s| s["state"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn done_count(&self) -> usize {
        self.projects
            .iter()
            .map(|p| {
                fs::read_dir(p.join(".agent-queue/done"))
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .filter(|e| e.file_name().to_string_lossy().ends_with(".md"))
                            .count()
                    })
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The tmux calls the daemon made in `[from, to)` (unix µs), by command.
    pub fn tmux_calls(&self, from: u64, to: u64) -> (usize, Vec<(String, usize)>) {
        let text = fs::read_to_string(self.root.join("tmux-calls.log")).unwrap_or_default();
        let mut by: HashMap<String, usize> = HashMap::new();
        let mut n = 0;
        for l in text.lines() {
            let Some((t, cmd)) = l.split_once(' ') else {
                continue;
            };
            let Ok(t) = t.parse::<u64>() else { continue };
            if t >= from && t < to {
                n += 1;
                *by.entry(cmd.to_string()).or_default() += 1;
            }
        }
        let mut by: Vec<_> = by.into_iter().collect();
        by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        (n, by)
    }

    /// How many sessions the tmux server has.
    pub fn tmux_sessions(&self) -> usize {
        self.tmux()
            .args(["list-sessions", "-F", "x"])
            .output()
            .map(|o| o.stdout.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0)
    }

    /// The tmux server's pid (asked once, before measuring).
    pub fn tmux_server_pid(&self) -> Option<u32> {
        let out = self
            .tmux()
            .args(["list-sessions", "-F", "#{pid}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .parse()
            .ok()
    }

    /// The control plane's address and token, once the daemon serves it.
    pub fn control(&self) -> (SocketAddr, String) {
        let addr = self.root.join("state/control.addr");
        self.wait("the control plane", Duration::from_secs(60), || {
            addr.exists()
        });
        let a = fs::read_to_string(&addr).unwrap().trim().parse().unwrap();
        let t = fs::read_to_string(self.root.join("token"))
            .unwrap()
            .trim()
            .to_string();
        (a, t)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// One POST on the control plane; true for a 2xx answer.
pub fn post(addr: SocketAddr, token: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 2")
}

pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
