//! Starting an agent in a tmux session and handing it a message, per
//! INTERFACE.md "A launch in a session": account ready, guard deployed,
//! `respawn-pane` with an argv (no shell), wait for the input line, one
//! bracketed paste, a separate Enter, and a check that it was taken.
//! Used for new tasks (dispatcher) and resumed conversations (failover).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{AccountConfig, Config};
use crate::tmux::{Tmux, TmuxError};

/// What the daemon sets for each launch (INTERFACE.md), in this order.
pub const DAEMON_ENV: [&str; 4] = [
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_FAILOVER_SESSION",
    "CLAUDE_FAILOVER_EVENTS",
    "DISABLE_AUTOUPDATER",
];

/// What an agent started in its own pane gets from the daemon's environment
/// (when set there), not from the tmux server's. TERM is left to tmux: it
/// sets the pane's from `default-terminal`, the one right inside tmux.
pub const PASSED_ON: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "IS_SANDBOX"];

/// Variables that would override the account's OAuth login.
pub const OVERRIDING_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];
const POLL: Duration = Duration::from_millis(15);
/// How long the agent gets to show that it took the message.
const TAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a paste may take to show in the input line.
const PASTE_TIMEOUT: Duration = Duration::from_secs(3);

/// A new conversation with a fixed id, or one to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    New(String),
    Resume(String),
}

impl Conversation {
    pub fn id(&self) -> &str {
        match self {
            Conversation::New(id) | Conversation::Resume(id) => id,
        }
    }
}

/// Everything one launch needs.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub session: &'a str,
    /// Where the agent starts: the project, or the task's worktree.
    pub project: &'a Path,
    /// `project` is a task's worktree: the guard's script goes there, its
    /// hooks come from the `--settings` file alone (no settings merge that
    /// would show as a change on the task's branch).
    pub in_worktree: bool,
    pub account: &'a AccountConfig,
    pub model: &'a str,
    pub conversation: Conversation,
}

#[derive(Debug)]
pub enum LaunchError {
    /// The account's `.claude.json` could not be made ready.
    Account(String),
    /// The guard could not be deployed: never launch unguarded.
    Guard(String),
    /// The task's worktree could not be made.
    Worktree(crate::worktree::WorktreeError),
    Tmux(TmuxError),
    /// The agent exited before it was ready.
    Exited {
        status: Option<i32>,
        screen: String,
    },
    /// The agent exited while the message was handed over.
    ExitedTaking {
        screen: String,
    },
    /// No input line within `prompt_timeout`.
    NotReady {
        screen: String,
    },
    /// The message stayed in the input line.
    NotTaken,
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Account(e) => write!(f, "account not ready: {e}"),
            LaunchError::Guard(e) => write!(f, "guard not deployed: {e}"),
            LaunchError::Worktree(e) => write!(f, "no worktree for the task: {e}"),
            LaunchError::Tmux(e) => write!(f, "{e}"),
            LaunchError::Exited { status, screen } => {
                write!(
                    f,
                    "the agent {} before it was ready; screen: {}",
                    crate::exitinfo::pane_words(*status),
                    tail(screen)
                )
            }
            LaunchError::ExitedTaking { screen } => write!(
                f,
                "the agent exited while it was handed the message; screen: {}",
                tail(screen)
            ),
            LaunchError::NotReady { screen } => write!(
                f,
                "no prompt within the prompt timeout; screen: {}",
                tail(screen)
            ),
            LaunchError::NotTaken => write!(f, "the agent did not take the message"),
        }
    }
}

impl std::error::Error for LaunchError {}

impl LaunchError {
    /// Whether the session itself misbehaved (it rests for `cooldown`), as
    /// opposed to the project or account.
    pub fn session_fault(&self) -> bool {
        matches!(
            self,
            LaunchError::Tmux(_)
                | LaunchError::Exited { .. }
                | LaunchError::ExitedTaking { .. }
                | LaunchError::NotReady { .. }
                | LaunchError::NotTaken
        )
    }

    /// The agent never came up to be handed the message: its command is
    /// broken or missing, which is no fault of the task's.
    pub fn never_started(&self) -> bool {
        matches!(
            self,
            LaunchError::Exited { .. } | LaunchError::NotReady { .. }
        )
    }
}

impl From<TmuxError> for LaunchError {
    fn from(e: TmuxError) -> Self {
        LaunchError::Tmux(e)
    }
}

/// The last few non-empty lines of a screen, on one line, for error text.
fn tail(screen: &str) -> String {
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

/// Prepares the account and the guard, then starts the agent and waits for
/// its input line. Returns the transcript path of the conversation.
pub fn start_agent(cfg: &Config, tmux: &Tmux, l: &Launch) -> Result<PathBuf, LaunchError> {
    crate::account::prepare(&l.account.config_dir, l.project)
        .map_err(|e| LaunchError::Account(e.to_string()))?;
    let events = cfg.events_dir();
    if l.in_worktree {
        crate::guard::deploy_script(l.project, cfg.guard.mode, Some(&events))
    } else {
        crate::guard::deploy(l.project, cfg.guard.mode, Some(&events))
    }
    .map_err(|e| LaunchError::Guard(e.to_string()))?;
    let pinned = crate::guard::write_pinned_settings(&cfg.state_dir)
        .map_err(|e| LaunchError::Guard(e.to_string()))?;

    let cmd = agent_command(
        cfg,
        l.account,
        l.session,
        l.model,
        &l.conversation,
        Some(&pinned),
    );
    cmd.respawn(tmux, l.session, l.project)?;
    wait_ready(cfg, tmux, l.session)?;
    Ok(crate::account::transcript_path(
        &l.account.config_dir,
        l.project,
        l.conversation.id(),
    ))
}

/// One word of the agent's command line: ours (never quoted in a shell
/// line) or a value from the config, a task or a session (always quoted).
#[derive(Debug, Clone)]
pub enum Arg {
    Ours(&'static str),
    Value(OsString),
}

impl Arg {
    fn os(&self) -> &OsStr {
        match self {
            Arg::Ours(s) => OsStr::new(s),
            Arg::Value(v) => v,
        }
    }

    fn shell(&self) -> String {
        match self {
            Arg::Ours(s) => (*s).to_string(),
            Arg::Value(v) => crate::guard::shell_quote(&v.to_string_lossy()),
        }
    }
}

/// The agent's command line, built in this one place: `env -u` for what
/// would override the account's login (it execs the agent, so the pane's
/// process is the agent), the environment, then claude and its flags.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    pub env: Vec<(String, Arg)>,
    /// `env -u ...` then the agent's argv.
    pub argv: Vec<Arg>,
}

pub fn agent_command(
    cfg: &Config,
    account: &AccountConfig,
    session: &str,
    model: &str,
    conversation: &Conversation,
    settings: Option<&Path>,
) -> AgentCommand {
    let val = |v: &OsStr| Arg::Value(v.to_os_string());
    let mut env: Vec<(String, Arg)> = cfg
        .agent
        .env
        .iter()
        .map(|(k, v)| (k.clone(), val(OsStr::new(v))))
        .collect();
    let ours = [
        val(account.config_dir.as_os_str()),
        val(OsStr::new(session)),
        val(cfg.events_dir().as_os_str()),
        Arg::Ours("1"),
    ];
    env.extend(DAEMON_ENV.iter().map(|k| k.to_string()).zip(ours));
    let mut argv = vec![Arg::Ours("env")];
    for v in OVERRIDING_ENV {
        argv.extend([Arg::Ours("-u"), Arg::Ours(v)]);
    }
    let flag = match conversation {
        Conversation::New(_) => "--session-id",
        Conversation::Resume(_) => "--resume",
    };
    argv.extend([
        val(OsStr::new(&cfg.agent.command)),
        Arg::Ours("--model"),
        val(OsStr::new(model)),
        Arg::Ours("--dangerously-skip-permissions"),
        Arg::Ours(flag),
        val(OsStr::new(conversation.id())),
    ]);
    if let Some(p) = settings {
        argv.extend([Arg::Ours("--settings"), val(p.as_os_str())]);
    }
    AgentCommand { env, argv }
}

impl AgentCommand {
    /// Runs it as the pane's own process (`respawn-pane`) in `cwd`.
    /// The daemon's own `PASSED_ON` variables go first: a pane gets the tmux
    /// server's environment, which may be someone else's.
    pub fn respawn(&self, tmux: &Tmux, session: &str, cwd: &Path) -> Result<(), TmuxError> {
        let inherited: Vec<(&str, std::ffi::OsString)> = PASSED_ON
            .iter()
            .filter(|k| !self.env.iter().any(|(set, _)| set == *k))
            .filter_map(|k| Some((*k, std::env::var_os(k)?)))
            .collect();
        let env: Vec<(&str, &OsStr)> = inherited
            .iter()
            .map(|(k, v)| (*k, v.as_os_str()))
            .chain(self.env.iter().map(|(k, v)| (k.as_str(), v.os())))
            .collect();
        let argv: Vec<&OsStr> = self.argv.iter().map(Arg::os).collect();
        tmux.respawn(session, cwd, &env, &argv)
    }

    /// The line typed into an operator's shell: `cd DIR && env -u ...
    /// K=V ... claude ...`, every value shell-quoted.
    pub fn shell_line(&self, cwd: &Path) -> String {
        let unset = 1 + 2 * OVERRIDING_ENV.len();
        let mut words = vec![
            "cd".to_string(),
            crate::guard::shell_quote(&cwd.to_string_lossy()),
            "&&".into(),
        ];
        words.extend(self.argv[..unset].iter().map(Arg::shell));
        words.extend(self.env.iter().map(|(k, v)| format!("{k}={}", v.shell())));
        words.extend(self.argv[unset..].iter().map(Arg::shell));
        words.join(" ")
    }
}

/// Polls the pane until the prompt pattern shows, the agent exits, or
/// `prompt_timeout` passes.
pub fn wait_ready(cfg: &Config, tmux: &Tmux, session: &str) -> Result<(), LaunchError> {
    let deadline = Instant::now() + cfg.agent.prompt_timeout.get();
    loop {
        let screen = tmux.capture(session)?;
        if cfg.agent.prompt_pattern.is_match(&screen) {
            return Ok(());
        }
        let info = tmux.pane_info(session)?;
        if info.dead {
            // tmux can show the pane dead a moment before its status.
            let status = info.exit_status.or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                tmux.pane_info(session).ok().and_then(|i| i.exit_status)
            });
            return Err(LaunchError::Exited { status, screen });
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::NotReady { screen });
        }
        std::thread::sleep(POLL);
    }
}

/// What is pasted for `text`: claude reads a message that starts with `!`
/// as a bash-mode command (run with no guard) and one that starts with `/`
/// as a slash command (`/exit`, `/clear`); a leading space makes either plain
/// text. A short paste that ends in `\` would turn the Enter into a line
/// break (and lose the backslash); claude trims the trailing space added.
pub fn as_pasted(text: &str) -> std::borrow::Cow<'_, str> {
    let lead = if text.starts_with(['!', '/']) {
        " "
    } else {
        ""
    };
    let tail = if text.ends_with('\\') { " " } else { "" };
    if lead.is_empty() && tail.is_empty() {
        text.into()
    } else {
        format!("{lead}{text}{tail}").into()
    }
}

/// Pastes `text` into a ready agent and submits it with a separate Enter.
/// The agent may exit at any moment: only `send-keys`, never `paste-buffer`.
/// A prompt entry that shows up in `transcript` (the conversation's) proves
/// the message was taken where the screen cannot tell.
pub fn deliver(
    tmux: &Tmux,
    session: &str,
    text: &str,
    transcript: Option<&Path>,
) -> Result<(), LaunchError> {
    let text = as_pasted(text);
    let text = text.as_ref();
    let from = transcript.map_or(0, crate::conversation::len);
    let taken = || transcript.is_some_and(|t| crate::conversation::prompt_since(t, from));
    // Phase 1: the paste must show in the input line before the Enter. An
    // empty input line right after the paste may only mean the agent has
    // not read it yet, so it proves nothing.
    let mut pasted = false;
    for _ in 0..2 {
        tmux.paste(session, text)?;
        if wait_input(tmux, session, PASTE_TIMEOUT, |line| !line.is_empty())? {
            pasted = true;
            break;
        }
        log::warn!("{session}: the paste did not show in the input line; pasting again");
    }
    if !pasted {
        return Err(LaunchError::NotTaken);
    }
    // Phase 2: Enter submits it; the input line empties (or the screen
    // changes to the working view).
    tmux.send_key(session, "Enter")?;
    if wait_input(tmux, session, TAKE_TIMEOUT / 2, str::is_empty)? || taken() {
        return Ok(());
    }
    // The Enter raced the agent's reading of the paste; one more is safe.
    tmux.send_key(session, "Enter")?;
    if wait_input(tmux, session, TAKE_TIMEOUT / 2, str::is_empty)? || taken() {
        Ok(())
    } else {
        Err(LaunchError::NotTaken)
    }
}

/// Polls the input line until `done` holds for it (or the screen shows no
/// input line: the agent is busy). False on timeout; an error when the
/// agent exits.
fn wait_input(
    tmux: &Tmux,
    session: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<bool, LaunchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let screen = tmux.capture(session)?;
        if input_line(&screen).is_none_or(&done) {
            return Ok(true);
        }
        if tmux.pane_info(session)?.dead {
            return Err(LaunchError::ExitedTaking { screen });
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// The text after `❯` on the input line (the line under a rule), if the
/// screen shows one. The bottom-most such pair: a full redraw (after
/// SIGCONT) leaves old rule and `❯` lines above the live input box.
pub fn input_line(screen: &str) -> Option<&str> {
    let mut prev_rule = false;
    let mut found = None;
    for line in screen.lines() {
        let t = line.trim_start();
        if prev_rule {
            if let Some(rest) = t.strip_prefix('❯').or_else(|| t.strip_prefix('>')) {
                found = Some(rest.trim_matches(|c: char| c.is_whitespace()));
            }
        }
        prev_rule = t.starts_with("────");
    }
    found
}

/// Fills the `agent.message` template: `{task}` file name, `{body}` text,
/// `{title}`, `{project}`.
pub fn render_message(template: &str, task: &crate::task::Task) -> String {
    let title = task.meta.title.clone().unwrap_or_default();
    let project = task.project.display().to_string();
    // One pass, so a body that contains `{task}` is not expanded again.
    let mut out = String::with_capacity(template.len() + task.body.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let (value, len) = if after.starts_with("{task}") {
            (Some(task.name.as_str()), 6)
        } else if after.starts_with("{body}") {
            (Some(task.body.as_str()), 6)
        } else if after.starts_with("{title}") {
            (Some(title.as_str()), 7)
        } else if after.starts_with("{project}") {
            (Some(project.as_str()), 9)
        } else {
            (None, 1)
        };
        out.push_str(value.unwrap_or("{"));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Sends SIGTERM to the agent in a session's pane (never SIGKILL).
pub fn terminate(tmux: &Tmux, session: &str) {
    if let Some(pid) = tmux.agent_pid(session) {
        sigterm(pid, session);
    }
}

/// The one SIGTERM (never SIGKILL) the daemon sends, to an agent's `pid`
/// in `session`; a failure is logged.
pub fn sigterm(pid: u32, session: &str) {
    // SAFETY: kill(2) with a pid from tmux or /proc and a plain signal.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
        log::warn!(
            "cannot SIGTERM agent {pid} in {session}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_line_found_under_rule() {
        let rule = "─".repeat(30);
        assert_eq!(input_line(&format!("x\n{rule}\n❯ \n{rule}\n")), Some(""));
        assert_eq!(
            input_line(&format!("{rule}\n❯ [Pasted text #1 +3 lines]\n")),
            Some("[Pasted text #1 +3 lines]")
        );
        assert_eq!(input_line("❯ 1. No, exit\n"), None);
        // A ghost box from a redraw stays above the live one.
        let ghost = format!("{rule}\n❯ \n{rule}\nfooter\n{rule}\n❯ typed\n{rule}\n");
        assert_eq!(input_line(&ghost), Some("typed"));
    }

    #[test]
    fn bang_slash_and_a_final_backslash_are_made_plain_text() {
        assert_eq!(as_pasted("!rm -rf x"), " !rm -rf x");
        assert_eq!(as_pasted("/clear"), " /clear");
        assert_eq!(as_pasted("ends in \\"), "ends in \\ ");
        assert_eq!(as_pasted("[t.md] ok"), "[t.md] ok");
        assert_eq!(as_pasted(" !already text"), " !already text");
    }

    #[test]
    fn template_expands_once() {
        let task = crate::task::Task {
            project: "/p".into(),
            name: "t.md".into(),
            meta: Default::default(),
            body: "use {task} literally".into(),
            mtime: std::time::SystemTime::UNIX_EPOCH,
        };
        assert_eq!(
            render_message("[{task}] {body} {x}", &task),
            "[t.md] use {task} literally {x}"
        );
    }
}
