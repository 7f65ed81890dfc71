//! The configuration: one YAML file (INTERFACE.md), every key optional,
//! unknown keys rejected. Loading never guesses: a bad value is reported as
//! `file:line: what is wrong`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};

mod defaults;
mod load;
pub mod strict;
mod values;
#[allow(unused_imports)]
pub use self::{defaults::*, load::*, values::*};

/// Where the config came from and what was wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.msg),
            None => write!(f, "{}: {}", self.file, self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "de_path")]
    pub state_dir: PathBuf,
    pub tmux: TmuxConfig,
    pub agent: AgentConfig,
    #[serde(deserialize_with = "de_paths")]
    pub projects: Vec<PathBuf>,
    #[serde(deserialize_with = "de_opt_path")]
    pub projects_dir: Option<PathBuf>,
    pub pool: PoolConfig,
    pub dispatcher: DispatcherConfig,
    pub isolation: IsolationConfig,
    pub watcher: WatcherConfig,
    pub accounts: Vec<AccountConfig>,
    pub quota: QuotaConfig,
    pub failover: FailoverConfig,
    pub checkpoint: CheckpointConfig,
    pub janitor: JanitorConfig,
    pub notify: NotifyConfig,
    pub control: ControlConfig,
    pub guard: GuardConfig,
    /// The file this was read from; `None` for the embedded default.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TmuxConfig {
    /// `tmux -S PATH`; `None` is tmux's default server.
    #[serde(deserialize_with = "de_opt_path")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub command: String,
    pub prompt_pattern: Pattern,
    pub limit_pattern: Pattern,
    pub prompt_timeout: Dur,
    pub models: Models,
    pub message: String,
    /// Extra environment for every agent, passed explicitly on each launch.
    pub env: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    pub critical: String,
    pub high: String,
    pub default: String,
    pub low: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub dedicated: Vec<DedicatedSession>,
    pub autonomous: AutonomousPool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedicatedSession {
    pub name: String,
    #[serde(deserialize_with = "de_path")]
    pub project: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutonomousPool {
    pub prefix: String,
    pub start_index: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherConfig {
    pub scan_interval: Dur,
    pub cooldown: Dur,
    pub max_attempts: u32,
    /// Most tasks of one project running at once; 0: no limit.
    pub per_project: u32,
}

/// Where agents work: in the project, or each task in a git worktree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationConfig {
    pub mode: IsolationMode,
    /// Where worktrees go; `None`: `<state_dir>/worktrees`.
    #[serde(deserialize_with = "de_opt_path")]
    pub worktrees: Option<PathBuf>,
    pub branch_prefix: String,
    pub base: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    None,
    Worktree,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatcherConfig {
    pub interval: Dur,
    /// A session working longer than this is reported as stuck.
    pub stuck_after: Dur,
    /// An agent waiting for input this long is told once that no one will
    /// answer; if it waits again, it is stopped and its task failed.
    pub waiting_timeout: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    #[serde(deserialize_with = "de_path")]
    pub config_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    pub endpoint: String,
    pub poll_interval: Dur,
    pub five_hour_threshold: f64,
    pub seven_day_threshold: f64,
    /// Connect and read timeout of one usage request.
    pub timeout: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    #[serde(deserialize_with = "de_path")]
    pub shared_transcripts: PathBuf,
    pub cooldown: Dur,
    /// How long a stopping agent gets to leave after `/exit` before SIGTERM.
    pub stop_timeout: Dur,
    /// After a `StopFailure` `rate_limit` that is only a server throttle:
    /// how long the session rests before it is told to continue.
    pub throttle_pause: Dur,
    /// How often sessions that failed to move are tried again.
    pub retry_interval: Dur,
    /// After a pane showed a usage limit on an account, how long it is not
    /// a failover target when the account's 5-hour reset time is unknown.
    pub limit_hold: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    pub interval: Dur,
    pub keep: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JanitorConfig {
    pub interval: Dur,
    pub stale_after: Dur,
    pub archive_after: Dur,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub telegram: Option<TelegramConfig>,
    pub webhooks: Vec<WebhookConfig>,
    /// Event names to send; empty sends every event.
    pub events: Vec<String>,
    /// The same event with the same message within this is sent once,
    /// followed by one summary with the count; `0s` sends every repeat.
    pub dedup_window: Dur,
    /// Notices per minute per sink at most (a burst waits, then queues).
    pub rate_per_minute: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            telegram: None,
            webhooks: Vec::new(),
            events: Vec::new(),
            dedup_window: Dur::secs(60),
            rate_per_minute: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// Name of the environment variable holding the bot token (never the token).
    pub bot_token_env: String,
    pub chat_id: String,
    pub api_base: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// How the body is shaped for the receiving service.
    #[serde(default)]
    pub format: crate::webhook::Format,
    /// Sent with every request (a bearer token, ntfy's Title/Priority/Tags).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `host:port` (`localhost:7433` too); empty disables the control plane.
    pub listen: String,
    #[serde(deserialize_with = "de_path")]
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub mode: GuardMode,
    /// Guard blocks by one session within `breaker_window` that stop its agent.
    pub breaker_blocks: u32,
    pub breaker_window: Dur,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    Enforce,
    Learn,
    Off,
}

impl GuardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardMode::Enforce => "enforce",
            GuardMode::Learn => "learn",
            GuardMode::Off => "off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, ConfigError> {
        Config::parse(y, "c.yaml")
    }

    #[test]
    fn durations() {
        assert_eq!(
            "500ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "7d".parse::<Dur>().unwrap().0,
            Duration::from_secs(7 * 86_400)
        );
        assert!("5 minutes".parse::<Dur>().is_err());
        assert!("5".parse::<Dur>().is_err());
        assert!("m".parse::<Dur>().is_err());
        assert_eq!(Dur::secs(7200).to_string(), "2h");
    }

    #[test]
    fn an_unknown_notice_event_names_the_known_ones() {
        let c = parse("notify: { events: [task_failed, guard_block] }\n").unwrap();
        assert_eq!(c.notify.events, ["task_failed", "guard_block"]);
        let e = parse("notify: { events: [task_failed, task_exploded] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown event `task_exploded`"), "{e}");
        assert!(e.contains("task_failed, failover,"), "{e}");
        assert!(e.contains("dispatch_paused"), "{e}");
    }

    #[test]
    fn an_empty_file_is_refused_but_no_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "  \n", "# nothing\n"] {
            let p = dir.path().join("c.yaml");
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains("empty"), "{e}");
            assert!(Config::locate(Some(&p)).is_err());
        }
        assert!(Config::load(&dir.path().join("none.yaml")).is_err());
    }

    #[test]
    fn agent_env_names_are_checked() {
        let ok = parse("agent: { env: { IS_SANDBOX: '1', MY_VAR_2: x } }").unwrap();
        assert_eq!(ok.agent.env["IS_SANDBOX"], "1");
        for bad in ["2X", "A-B", "CLAUDE_CONFIG_DIR", "ANTHROPIC_API_KEY"] {
            let e = parse(&format!("agent: {{ env: {{ '{bad}': x }} }}")).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.pool.autonomous.max, 10);
        assert_eq!(c.accounts[0].name, "main");
        assert_eq!(c.guard.mode, GuardMode::Enforce);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("state_dir: /tmp/x\npool:\n  autonomous:\n    max: lots\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().starts_with("c.yaml:4: "), "{e}");

        let e = parse("agent:\n  prompt_pattern: '(unclosed'\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("invalid regex"), "{e}");

        let e = parse("watcher:\n  interval: 5 minutes\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("invalid duration"), "{e}");

        let e = parse("tmux:\n  sockett: /x\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("unknown field"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let e =
            parse("accounts:\n  - name: a\n    config_dir: /a\n  - name: a\n    config_dir: /b\n")
                .unwrap_err();
        assert_eq!(e.msg, "accounts[1].name: account `a` is listed twice");
        assert_eq!(e.line, Some(4), "the entry's own line");
        let e = parse("quota:\n  poll_interval: 5m\n  five_hour_threshold: 120\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse("control:\n  listen: localhost\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(parse("control:\n  listen: localhost:7433\n").is_ok());
        let e = parse("quota:\n  five_hour_threshold: 0.9\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:2: quota.five_hour_threshold: 0.9 is a percent, not a fraction: did you mean 90?"
        );
        let e = parse("agent:\n  models:\n    critical: opus\n    high: sonet\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:4: agent.models.high: `sonet` is not a model claude knows: did you mean sonnet?"
        );
        let e = parse("watcher:\n  interval: 5 minutes\n").unwrap_err();
        assert!(
            e.msg.starts_with("watcher.interval: invalid duration"),
            "{e}"
        );
        let e = parse("pool:\n  autonomous:\n    max: lots\n").unwrap_err();
        assert_eq!(
            e.msg,
            "pool.autonomous.max: the text \"lots\", expected a whole number of 0 or more"
        );
        let e =
            parse("notify:\n  webhooks:\n    - url: http://x\n      format: teams\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(!e.msg.contains("enum"), "{e}");
    }

    #[test]
    fn a_command_env_would_misread_is_refused() {
        let e = parse("agent:\n  command: /opt/a=b/claude\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("must not contain `=`"), "{e}");
    }

    #[test]
    fn tilde_expands() {
        let home = std::env::var("HOME").unwrap();
        let c = parse("state_dir: ~/st\n").unwrap();
        assert_eq!(c.state_dir, Path::new(&home).join("st"));
    }

    #[test]
    fn default_prompt_pattern_is_the_input_line_not_a_menu() {
        let p = Pattern::new(DEFAULT_PROMPT_PATTERN).unwrap();
        let rule = "─".repeat(40);
        assert!(p.is_match(&format!(
            "banner\n{rule}\n❯ \n{rule}\n  ⏵⏵ bypass permissions on\n"
        )));
        assert!(p.is_match(&format!("{rule}\n❯\u{a0}\n{rule}\n")));
        assert!(p.is_match(&format!("{rule}\n❯ Try \"fix lint\"\n{rule}\n")));
        assert!(!p.is_match("WARNING: Claude Code running in Bypass Permissions mode\n\n❯ 1. No, exit\n  2. Yes, I accept\n"));
        assert!(!p.is_match(&format!(
            "{rule}\n Do you trust the files in this folder?\n\n❯ 1. Yes, proceed\n"
        )));
        assert!(!p.is_match(&format!("{rule}\n❯ 1. Dark mode\n")));
    }

    #[test]
    fn default_limit_pattern() {
        let p = Pattern::new(DEFAULT_LIMIT_PATTERN).unwrap();
        for line in [
            "⎿  You've hit your session limit · resets 3:45pm",
            "You've hit your weekly limit · resets Mon 12:00am",
            "You’ve hit your Opus limit · resets 9pm",
            "5-hour limit reached ∙ resets 9pm",
            "Claude usage limit reached. Your limit will reset at 1pm",
        ] {
            assert!(p.is_match(line), "{line}");
        }
        assert!(!p.is_match(
            "● API Error: Server is temporarily limiting requests (not your usage limit) · Rate limit reached"
        ));
    }

    #[test]
    fn isolation_keys() {
        let d = parse("").unwrap();
        assert_eq!(d.dispatcher.per_project, 1);
        assert_eq!(d.isolation.mode, IsolationMode::None);
        assert_eq!(
            (
                d.isolation.branch_prefix.as_str(),
                d.isolation.base.as_str()
            ),
            ("cf/", "HEAD")
        );
        let c = parse("dispatcher: { per_project: 0 }\nisolation:\n  mode: worktree\n  worktrees: /w\n  branch_prefix: agents/x-\n  base: main\n").unwrap();
        assert_eq!(c.dispatcher.per_project, 0);
        assert_eq!(c.isolation.mode, IsolationMode::Worktree);
        assert_eq!(c.isolation.worktrees.as_deref(), Some(Path::new("/w")));
        let e = parse("isolation:\n  branch_prefix: 'a..b/'\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.to_string()
                .starts_with("c.yaml:2: isolation.branch_prefix: `a..b/` must be"),
            "{e}"
        );
        for bad in ["-x", "/x", ".x/", "a b", "x.lock/"] {
            assert!(
                parse(&format!("isolation: {{ branch_prefix: '{bad}' }}")).is_err(),
                "{bad}"
            );
        }
        let e = parse("isolation:\n  mode: worktree\n  base: --output=x\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(parse("isolation: { mode: copy }").is_err());
        assert!(parse("isolation: { depth: 1 }").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    /// The shipped example must stay valid and in step with the defaults.
    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config.example.yaml");
        let c = super::Config::parse(text, "config.example.yaml").unwrap_or_else(|e| panic!("{e}"));
        let d = super::Config::default();
        assert_eq!(c.dispatcher.scan_interval, d.dispatcher.scan_interval);
        assert_eq!(c.failover.cooldown, d.failover.cooldown);
        assert_eq!(c.quota.five_hour_threshold, d.quota.five_hour_threshold);
        assert_eq!(c.guard.breaker_blocks, d.guard.breaker_blocks);
        assert_eq!(c.dispatcher.per_project, d.dispatcher.per_project);
        assert_eq!(c.isolation.mode, d.isolation.mode);
        assert_eq!(c.isolation.worktrees, d.isolation.worktrees);
        assert_eq!(c.isolation.branch_prefix, d.isolation.branch_prefix);
        assert_eq!(c.isolation.base, d.isolation.base);
        assert_eq!(c.accounts.len(), 2);
    }
}
