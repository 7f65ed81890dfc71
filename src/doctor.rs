//! What a launch needs, checked before anything starts: the agent command,
//! tmux, each account's login, each project, the state dir, the control
//! port and its token. Every finding is one line that says what to do.
//!
//! Three depths share the checks. `check-config` ([`Scope::Config`]) runs
//! nothing and binds nothing, and reports the machine's problems as
//! warnings (the file may be meant for another machine). `run`
//! ([`Scope::Launch`]) fails on the first problem that would make every
//! launch fail, before any tmux session exists. `doctor` ([`Scope::Full`])
//! also runs `claude --version` and `tmux -V`.

use std::fs;
use std::net::TcpListener;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::Config;
use crate::probe::{find_program, nearest_existing, version, writable};

/// tmux 3.0 brought `-e` to `new-session` and `respawn-pane`.
const TMUX_MIN: (u32, u32) = (3, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No process, no port, no lock; machine problems are warnings.
    Config,
    /// What `run` checks before it creates a session.
    Launch,
    /// Everything, with the version of the agent and of tmux.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was checked: `agent`, `tmux`, `account main`, `project /p`, ...
    pub check: String,
    pub level: Level,
    pub message: String,
}

impl Finding {
    fn new(check: impl Into<String>, level: Level, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            level,
            message: message.into(),
        }
    }
}

/// Runs every check of `scope`, in a stable order.
pub fn checks(cfg: &Config, scope: Scope) -> Vec<Finding> {
    let mut out = vec![agent(cfg, scope), tmux(cfg, scope)];
    out.extend(accounts(cfg, scope));
    out.extend(projects(cfg, scope));
    out.push(state_dir(cfg, scope));
    if scope != Scope::Config {
        out.push(control_port(cfg, scope));
    }
    out.push(token_file(cfg, scope));
    if scope == Scope::Config {
        // The file may be meant for another machine: nothing here is fatal.
        for f in &mut out {
            f.level = f.level.min(Level::Warn);
        }
    }
    out
}

/// `run`'s gate: the first failure as one line, else the warnings to log.
pub fn preflight(cfg: &Config) -> Result<Vec<Finding>, String> {
    let found = checks(cfg, Scope::Launch);
    if let Some(f) = found.iter().find(|f| f.level == Level::Fail) {
        return Err(f.message.clone());
    }
    Ok(found
        .into_iter()
        .filter(|f| f.level == Level::Warn)
        .collect())
}

/// What a config must name that exists (its projects, its accounts' config
/// dirs): `run` and a reload refuse a config that misses one.
pub fn paths_gate(cfg: &Config) -> Result<(), String> {
    let missing = projects(cfg, Scope::Launch)
        .into_iter()
        .chain(accounts(cfg, Scope::Launch))
        .find(|f| f.level == Level::Fail && f.message.contains("does not exist"));
    match missing {
        Some(f) => Err(f.message),
        None => Ok(()),
    }
}

/// `ok    message` lines for a terminal.
pub fn report(found: &[Finding]) -> String {
    found
        .iter()
        .map(|f| format!("{:<5} {}\n", f.level.as_str(), f.message))
        .collect()
}

/// The `--json` form: one object per finding.
pub fn report_json(found: &[Finding]) -> Value {
    let items: Vec<Value> = found
        .iter()
        .map(|f| json!({"check": f.check, "status": f.level.as_str(), "message": f.message}))
        .collect();
    json!({ "ok": found.iter().all(|f| f.level != Level::Fail), "checks": items })
}

// ------------------------------------------------------------ the checks

fn agent(cfg: &Config, scope: Scope) -> Finding {
    let cmd = &cfg.agent.command;
    let path = match find_program(cmd) {
        Ok(p) => p,
        Err(why) => {
            return Finding::new(
                "agent",
                Level::Fail,
                format!("{why}: install Claude Code or set agent.command"),
            )
        }
    };
    if scope != Scope::Full {
        return Finding::new(
            "agent",
            Level::Ok,
            format!("agent `{cmd}` is {}", path.display()),
        );
    }
    match version(&path, &["--version"]) {
        Ok(v) => Finding::new(
            "agent",
            Level::Ok,
            format!("agent {} at {}", v, path.display()),
        ),
        Err(why) => Finding::new(
            "agent",
            Level::Fail,
            format!(
                "`{} --version` {why}: check that agent.command is Claude Code",
                path.display()
            ),
        ),
    }
}

fn tmux(_cfg: &Config, scope: Scope) -> Finding {
    let path = match find_program("tmux") {
        Ok(p) => p,
        Err(why) => {
            return Finding::new(
                "tmux",
                Level::Fail,
                format!("{why}: install tmux {}.{} or later", TMUX_MIN.0, TMUX_MIN.1),
            )
        }
    };
    if scope != Scope::Full {
        return Finding::new("tmux", Level::Ok, format!("tmux is {}", path.display()));
    }
    match version(&path, &["-V"]) {
        Ok(v) => match tmux_version(&v) {
            Some(n) if n < TMUX_MIN => Finding::new(
                "tmux",
                Level::Fail,
                format!(
                    "{v} is too old: sessions need tmux {}.{} or later (respawn-pane -e)",
                    TMUX_MIN.0, TMUX_MIN.1
                ),
            ),
            _ => Finding::new("tmux", Level::Ok, format!("{v} at {}", path.display())),
        },
        Err(why) => Finding::new(
            "tmux",
            Level::Fail,
            format!("`tmux -V` {why}: reinstall tmux"),
        ),
    }
}

/// `tmux 3.3a` → (3, 3); `tmux next-3.4` → (3, 4).
fn tmux_version(v: &str) -> Option<(u32, u32)> {
    let num = v.split_whitespace().nth(1)?;
    let num = num.trim_start_matches(|c: char| !c.is_ascii_digit());
    let (major, rest) = num.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn accounts(cfg: &Config, _scope: Scope) -> Vec<Finding> {
    let now_ms = crate::timefmt::now_ms();
    let mut out = Vec::new();
    let mut usable = 0;
    for (i, a) in cfg.accounts.iter().enumerate() {
        let check = format!("account {}", a.name);
        let dir = a.config_dir.display();
        let login = format!("log in with `CLAUDE_CONFIG_DIR={dir} claude`, then /login");
        if !a.config_dir.is_dir() {
            out.push(Finding::new(
                check,
                Level::Fail,
                format!(
                    "account {}: config_dir {dir} does not exist: fix accounts[{i}].config_dir, or create it and {login}",
                    a.name
                ),
            ));
            continue;
        }
        match crate::account::read_credentials(&a.config_dir) {
            Ok(c) => {
                usable += 1;
                let (level, when) = match c.expires_at_ms {
                    Some(t) if c.expired(now_ms) => (
                        Level::Warn,
                        format!(
                            "token expired at {}: claude renews it at its next start; if it cannot, {login}",
                            crate::timefmt::rfc3339(t / 1000)
                        ),
                    ),
                    Some(t) => (
                        Level::Ok,
                        format!("token valid until {}", crate::timefmt::rfc3339(t / 1000)),
                    ),
                    None => (Level::Ok, "token expiry not recorded".into()),
                };
                out.push(Finding::new(
                    check,
                    level,
                    format!("account {}: logged in ({dir}), {when}", a.name),
                ));
            }
            Err(why) => out.push(Finding::new(
                check,
                Level::Warn,
                format!("account {}: no usable credentials ({why}): {login}", a.name),
            )),
        }
    }
    if usable == 0 {
        out.push(Finding::new(
            "accounts",
            Level::Fail,
            "no account has usable credentials: log in to at least one (see above)",
        ));
    }
    out
}

fn projects(cfg: &Config, _scope: Scope) -> Vec<Finding> {
    let mut dirs: Vec<(&Path, String)> = cfg
        .projects
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_path(), format!("projects[{i}]")))
        .collect();
    for (i, d) in cfg.pool.dedicated.iter().enumerate() {
        if !dirs.iter().any(|(p, _)| *p == d.project) {
            dirs.push((&d.project, format!("pool.dedicated[{i}].project")));
        }
    }
    if let Some(p) = &cfg.projects_dir {
        dirs.push((p, "projects_dir".into()));
    }
    dirs.into_iter()
        .map(|(p, key)| {
            let check = format!("project {}", p.display());
            if !p.is_dir() {
                Finding::new(
                    check,
                    Level::Fail,
                    format!(
                        "project {} does not exist: create it, or fix {key}",
                        p.display()
                    ),
                )
            } else if !writable(p) {
                Finding::new(
                    check,
                    Level::Fail,
                    format!(
                        "project {} is not writable by this user: tasks could not move out of its inbox; fix its owner or mode",
                        p.display()
                    ),
                )
            } else {
                Finding::new(check, Level::Ok, format!("project {}: ready", p.display()))
            }
        })
        .collect()
}

fn state_dir(cfg: &Config, scope: Scope) -> Finding {
    let dir = &cfg.state_dir;
    let check = "state dir";
    if !dir.exists() {
        return match nearest_existing(dir) {
            Some(a) if writable(&a) => Finding::new(
                check,
                Level::Ok,
                format!("state dir {} will be created", dir.display()),
            ),
            Some(a) => Finding::new(
                check,
                Level::Fail,
                format!(
                    "state dir {} cannot be created: {} is not writable; set state_dir",
                    dir.display(),
                    a.display()
                ),
            ),
            None => Finding::new(
                check,
                Level::Fail,
                format!(
                    "state dir {} cannot be created; set state_dir",
                    dir.display()
                ),
            ),
        };
    }
    if !dir.is_dir() || !writable(dir) {
        return Finding::new(
            check,
            Level::Fail,
            format!(
                "state dir {} is not a writable directory: fix its mode or set state_dir",
                dir.display()
            ),
        );
    }
    if scope != Scope::Config {
        if let Some(pid) = daemon_holding(dir) {
            let level = if scope == Scope::Launch {
                Level::Fail
            } else {
                Level::Warn
            };
            return Finding::new(
                check,
                level,
                format!(
                    "state dir {}: a daemon ({pid}) already runs on it: stop it, or use another state_dir",
                    dir.display()
                ),
            );
        }
    }
    Finding::new(
        check,
        Level::Ok,
        format!("state dir {}: ready", dir.display()),
    )
}

/// Who holds the daemon's lock on `dir`, without taking it for long or
/// writing to it.
fn daemon_holding(dir: &Path) -> Option<String> {
    let path = dir.join("lock");
    let file = fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(fs::TryLockError::WouldBlock) => {
            let pid = fs::read_to_string(&path).unwrap_or_default();
            Some(match pid.trim() {
                "" => "pid unknown".to_string(),
                p => format!("pid {p}"),
            })
        }
        Err(fs::TryLockError::Error(_)) => None,
    }
}

fn control_port(cfg: &Config, scope: Scope) -> Finding {
    let check = "control port";
    let listen = &cfg.control.listen;
    if listen.is_empty() {
        return Finding::new(
            check,
            Level::Ok,
            "control plane disabled (control.listen is empty)",
        );
    }
    let addr = match crate::config::resolve_listen(listen) {
        Ok(a) => a,
        Err(e) => return Finding::new(check, Level::Fail, format!("control.listen: {e}")),
    };
    match TcpListener::bind(addr) {
        Ok(_) => Finding::new(check, Level::Ok, format!("control port {addr} is free")),
        Err(e) => {
            let ours = fs::read_to_string(crate::control::addr_file(cfg))
                .is_ok_and(|a| a.trim() == addr.to_string());
            if ours && scope == Scope::Full {
                return Finding::new(
                    check,
                    Level::Warn,
                    format!("control port {addr} is the running daemon's"),
                );
            }
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "is taken".to_string(),
                _ => format!("cannot be used ({e})"),
            };
            Finding::new(
                check,
                Level::Fail,
                format!(
                    "control port {addr} {why}: stop what listens there, or set control.listen to a free port (or empty to disable)"
                ),
            )
        }
    }
}

fn token_file(cfg: &Config, _scope: Scope) -> Finding {
    let check = "token file";
    let path = &cfg.control.token_file;
    if cfg.control.listen.is_empty() {
        return Finding::new(check, Level::Ok, "no token needed (control plane disabled)");
    }
    match fs::read_to_string(path) {
        Ok(s) => {
            if let Err(why) = crate::control::check_token(&s, path) {
                return Finding::new(check, Level::Fail, why);
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Finding::new(
                    check,
                    Level::Warn,
                    format!(
                        "token file {} is readable by others (mode {mode:o}): chmod 600 it",
                        path.display()
                    ),
                );
            }
            Finding::new(
                check,
                Level::Ok,
                format!("token file {}: ready", path.display()),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match nearest_existing(crate::fsutil::parent(path)) {
                Some(a) if writable(&a) => Finding::new(
                    check,
                    Level::Ok,
                    format!("token file {} will be created (mode 600)", path.display()),
                ),
                _ => Finding::new(
                    check,
                    Level::Fail,
                    format!(
                        "token file {} cannot be created there: set control.token_file",
                        path.display()
                    ),
                ),
            }
        }
        Err(e) => Finding::new(
            check,
            Level::Fail,
            format!(
                "token file {} cannot be read ({e}): fix its mode, or set control.token_file",
                path.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tmux_versions_parse() {
        assert_eq!(super::tmux_version("tmux 3.3a"), Some((3, 3)));
        assert_eq!(super::tmux_version("tmux next-3.4"), Some((3, 4)));
        assert_eq!(super::tmux_version("tmux 2.9"), Some((2, 9)));
        assert_eq!(super::tmux_version("tmux master"), None);
    }
}
