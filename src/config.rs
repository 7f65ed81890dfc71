//! The configuration: one YAML file (INTERFACE.md), every key optional,
//! unknown keys rejected. Loading never guesses: a bad value is reported as
//! `file:line: what is wrong`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatcherConfig {
    pub interval: Dur,
    /// A session working longer than this is reported as stuck.
    pub stuck_after: Dur,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `host:port`; empty disables the control plane.
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

// ---------------------------------------------------------------- defaults

/// Readiness is the input line directly under a horizontal rule: a `❯` (or an
/// older `>`) that is not followed by a menu number, so the one-time dialogs,
/// whose menus also start with `❯`, never count as ready.
pub const DEFAULT_PROMPT_PATTERN: &str =
    r"(?m)^[─━]{8,}[ \t]*\n[ \t]*(?:❯|>)(?:[ \t\u{a0}]*$|[ \t\u{a0}]+[^0-9\s])";

/// Every usage-limit wording seen so far, and not the server-throttle line
/// ("Server is temporarily limiting requests (not your usage limit)").
pub const DEFAULT_LIMIT_PATTERN: &str = r"(?i)you[’']ve hit your [a-z0-9 -]*limit|\blimit reached\s*[∙·•|-]\s*resets|claude (?:ai )?usage limit reached|your limit will reset at";

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: expand_tilde("~/.local/state/claude-failover"),
            tmux: TmuxConfig::default(),
            agent: AgentConfig::default(),
            projects: Vec::new(),
            projects_dir: None,
            pool: PoolConfig::default(),
            dispatcher: DispatcherConfig::default(),
            watcher: WatcherConfig::default(),
            accounts: vec![AccountConfig {
                name: "main".into(),
                config_dir: expand_tilde("~/.claude"),
            }],
            quota: QuotaConfig::default(),
            failover: FailoverConfig::default(),
            checkpoint: CheckpointConfig::default(),
            janitor: JanitorConfig::default(),
            notify: NotifyConfig::default(),
            control: ControlConfig::default(),
            guard: GuardConfig::default(),
            source: None,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            command: "claude".into(),
            prompt_pattern: Pattern::new(DEFAULT_PROMPT_PATTERN).expect("default prompt pattern"),
            limit_pattern: Pattern::new(DEFAULT_LIMIT_PATTERN).expect("default limit pattern"),
            prompt_timeout: Dur::secs(30),
            models: Models::default(),
            message: "[{task}] {body}".into(),
        }
    }
}

impl Default for Models {
    fn default() -> Self {
        Models {
            critical: "opus".into(),
            high: "sonnet".into(),
            default: "sonnet".into(),
            low: "sonnet".into(),
        }
    }
}

impl Default for AutonomousPool {
    fn default() -> Self {
        AutonomousPool {
            prefix: "ccl-auto-".into(),
            start_index: 11,
            max: 10,
        }
    }
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            scan_interval: Dur::secs(60),
            cooldown: Dur::secs(300),
            max_attempts: 3,
        }
    }
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            interval: Dur::secs(5),
            stuck_after: Dur::secs(2 * 3600),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            endpoint: "https://api.anthropic.com/api/oauth/usage".into(),
            poll_interval: Dur::secs(300),
            five_hour_threshold: 90.0,
            seven_day_threshold: 95.0,
            timeout: Dur::secs(10),
        }
    }
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            shared_transcripts: expand_tilde("~/.claude-shared/projects"),
            cooldown: Dur::secs(600),
            stop_timeout: Dur::secs(10),
            throttle_pause: Dur::secs(30),
            retry_interval: Dur::secs(30),
            limit_hold: Dur::secs(3600),
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Dur::secs(120),
            keep: Dur::secs(7 * 86_400),
        }
    }
}

impl Default for JanitorConfig {
    fn default() -> Self {
        JanitorConfig {
            interval: Dur::secs(3600),
            stale_after: Dur::secs(6 * 3600),
            archive_after: Dur::secs(7 * 86_400),
        }
    }
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            bot_token_env: "TELEGRAM_BOT_TOKEN".into(),
            chat_id: String::new(),
            api_base: "https://api.telegram.org".into(),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: "127.0.0.1:7433".into(),
            token_file: expand_tilde("~/.config/claude-failover/token"),
        }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            mode: GuardMode::Enforce,
            breaker_blocks: 5,
            breaker_window: Dur::secs(600),
        }
    }
}

// ------------------------------------------------------------ value types

/// A duration written `500ms`, `30s`, `5m`, `2h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || {
            format!("invalid duration `{s}`: write a whole number and a unit, like 500ms, 30s, 5m, 2h or 7d")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        n.checked_mul(ms)
            .map(|ms| Dur(Duration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = ScalarString::deserialize(d)?;
        s.0.parse().map_err(serde::de::Error::custom)
    }
}

/// A regex from the config, compiled once at load.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    pub fn new(s: &str) -> Result<Pattern, regex::Error> {
        Regex::new(s).map(Pattern)
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(|e| {
            // regex errors span several lines; keep the last, which says what.
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            serde::de::Error::custom(format!("invalid regex `{s}`: {last}"))
        })
    }
}

/// Accepts a YAML string or number (`30s`, or an unquoted `5`) as text, so
/// the duration parser gives the error rather than serde's type message.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(ScalarString(
            match Raw::deserialize(d)
                .map_err(|_| serde::de::Error::custom("expected a duration like 30s"))?
            {
                Raw::S(s) => s,
                Raw::I(i) => i.to_string(),
                Raw::F(f) => f.to_string(),
            },
        ))
    }
}

/// `~` and `~/x` to the home folder; everything else as written.
pub fn expand_tilde(p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    if p == "~" {
        if let Some(h) = home() {
            return h;
        }
    } else if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = home() {
            return h.join(rest);
        }
    }
    PathBuf::from(p)
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom("path must not be empty"));
    }
    Ok(expand_tilde(&s))
}

fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(|s| expand_tilde(&s)))
}

fn de_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    Ok(v.iter().map(|s| expand_tilde(s)).collect())
}

// ------------------------------------------------------------------ loading

/// Notification event names a user may list in `notify.events`.
pub const EVENT_NAMES: &[&str] = &[
    "task_failed",
    "failover",
    "quota_warning",
    "token_expired",
    "session_dead",
    "session_stuck",
    "session_waiting",
    "guard_block",
    "circuit_breaker",
    "launch_unguarded",
    "dispatch_paused",
];

impl Config {
    /// The embedded default: the current directory as the one project, one
    /// autonomous session, account `~/.claude`.
    pub fn embedded_default() -> Config {
        let mut c = Config {
            projects: vec![std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))],
            ..Config::default()
        };
        c.pool.autonomous.max = 1;
        c
    }

    /// Finds the config per INTERFACE.md: `-c FILE`, `$CLAUDE_FAILOVER_CONFIG`,
    /// `~/.config/claude-failover/config.yaml`, else the embedded default.
    pub fn locate(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(p) = explicit {
            return Config::load(p);
        }
        if let Some(p) = std::env::var_os("CLAUDE_FAILOVER_CONFIG").filter(|p| !p.is_empty()) {
            return Config::load(Path::new(&p));
        }
        let user = expand_tilde("~/.config/claude-failover/config.yaml");
        if user.exists() {
            return Config::load(&user);
        }
        Ok(Config::embedded_default())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            msg: format!("cannot read: {e}"),
        })?;
        let mut c = Config::parse(&text, &path.display().to_string())?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |line, msg: String| ConfigError {
            file: file.to_string(),
            line,
            msg,
        };
        let c: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                err(line, strip_location(&e.to_string()))
            })?
        };
        c.validate()
            .map_err(|(keys, msg)| err(line_of(text, &keys), msg))?;
        Ok(c)
    }

    /// Checks what serde cannot: cross-key rules and value ranges. On error,
    /// returns the key path (to find its line) and the message.
    fn validate(&self) -> Result<(), (Vec<&'static str>, String)> {
        let fail = |keys: &[&'static str], msg: String| Err((keys.to_vec(), msg));
        if self.accounts.is_empty() {
            return fail(&["accounts"], "at least one account is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.accounts {
            if !valid_name(&a.name) {
                return fail(
                    &["accounts"],
                    format!(
                        "account name `{}` must be letters, digits, `-` or `_`",
                        a.name
                    ),
                );
            }
            if !names.insert(a.name.as_str()) {
                return fail(
                    &["accounts"],
                    format!("account `{}` is listed twice", a.name),
                );
            }
        }
        let mut sessions = std::collections::HashSet::new();
        for d in &self.pool.dedicated {
            if !valid_name(&d.name) {
                return fail(
                    &["pool", "dedicated"],
                    format!(
                        "session name `{}` must be letters, digits, `-` or `_`",
                        d.name
                    ),
                );
            }
            if !sessions.insert(d.name.clone()) {
                return fail(
                    &["pool", "dedicated"],
                    format!("session `{}` is listed twice", d.name),
                );
            }
        }
        if !self.pool.autonomous.prefix.is_empty() && !valid_name(&self.pool.autonomous.prefix) {
            return fail(
                &["pool", "autonomous", "prefix"],
                "prefix must be letters, digits, `-` or `_`".into(),
            );
        }
        if self.pool.autonomous.max > 0 && self.pool.autonomous.prefix.is_empty() {
            return fail(
                &["pool", "autonomous", "prefix"],
                "prefix must not be empty".into(),
            );
        }
        for name in self.autonomous_names() {
            if sessions.contains(&name) {
                return fail(
                    &["pool", "dedicated"],
                    format!("session `{name}` is both dedicated and autonomous"),
                );
            }
        }
        if self.pool.autonomous.max > 1000 {
            return fail(
                &["pool", "autonomous", "max"],
                "max must be at most 1000".into(),
            );
        }
        if self.dispatcher.max_attempts == 0 {
            return fail(
                &["dispatcher", "max_attempts"],
                "max_attempts must be at least 1".into(),
            );
        }
        for (keys, d) in [
            (
                &["dispatcher", "scan_interval"][..],
                self.dispatcher.scan_interval,
            ),
            (&["watcher", "interval"][..], self.watcher.interval),
            (&["quota", "poll_interval"][..], self.quota.poll_interval),
            (&["checkpoint", "interval"][..], self.checkpoint.interval),
            (&["janitor", "interval"][..], self.janitor.interval),
            (&["agent", "prompt_timeout"][..], self.agent.prompt_timeout),
            (&["quota", "timeout"][..], self.quota.timeout),
        ] {
            if d.0 < Duration::from_millis(10) {
                return fail(keys, format!("{} must be at least 10ms", keys.join(".")));
            }
        }
        for (keys, v) in [
            (
                &["quota", "five_hour_threshold"][..],
                self.quota.five_hour_threshold,
            ),
            (
                &["quota", "seven_day_threshold"][..],
                self.quota.seven_day_threshold,
            ),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return fail(
                    keys,
                    format!("{} must be a percentage from 0 to 100", keys.join(".")),
                );
            }
        }
        if self.agent.command.trim().is_empty() {
            return fail(&["agent", "command"], "command must not be empty".into());
        }
        // Launches run `env -u … COMMAND …`, and env takes NAME=VALUE words
        // as assignments.
        if self.agent.command.contains('=') || self.agent.command.starts_with('-') {
            return fail(
                &["agent", "command"],
                format!(
                    "command `{}` must not contain `=` or start with `-`",
                    self.agent.command
                ),
            );
        }
        for m in [
            &self.agent.models.critical,
            &self.agent.models.high,
            &self.agent.models.default,
            &self.agent.models.low,
        ] {
            if m.trim().is_empty() || m.starts_with('-') {
                return fail(
                    &["agent", "models"],
                    format!("model `{m}` is not a model name"),
                );
            }
        }
        if !self.control.listen.is_empty() && self.control.listen.parse::<SocketAddr>().is_err() {
            return fail(
                &["control", "listen"],
                format!(
                    "listen `{}` is not host:port (an IP address and a port)",
                    self.control.listen
                ),
            );
        }
        for e in &self.notify.events {
            if !EVENT_NAMES.contains(&e.as_str()) {
                return fail(
                    &["notify", "events"],
                    format!("unknown event `{e}`; known: {}", EVENT_NAMES.join(", ")),
                );
            }
        }
        if self.notify.rate_per_minute == 0 {
            return fail(
                &["notify", "rate_per_minute"],
                "rate_per_minute must be at least 1".into(),
            );
        }
        for w in &self.notify.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return fail(
                    &["notify", "webhooks"],
                    format!(
                        "webhook url `{}` must start with http:// or https://",
                        w.url
                    ),
                );
            }
        }
        if !(self.quota.endpoint.starts_with("http://")
            || self.quota.endpoint.starts_with("https://"))
        {
            return fail(
                &["quota", "endpoint"],
                "endpoint must start with http:// or https://".into(),
            );
        }
        if self.guard.breaker_blocks == 0 {
            return fail(
                &["guard", "breaker_blocks"],
                "breaker_blocks must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// Names of the autonomous sessions, in order.
    pub fn autonomous_names(&self) -> Vec<String> {
        let a = &self.pool.autonomous;
        (a.start_index..a.start_index + a.max)
            .map(|i| format!("{}{i}", a.prefix))
            .collect()
    }

    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The model a task of this priority runs on.
    /// Every project (see `task::discover_projects`).
    pub fn project_list(&self) -> Vec<PathBuf> {
        crate::task::discover_projects(&self.projects, self.projects_dir.as_deref())
    }

    pub fn model_for(&self, p: crate::task::Priority) -> &str {
        use crate::task::Priority::*;
        let m = &self.agent.models;
        match p {
            Critical => &m.critical,
            High => &m.high,
            Default => &m.default,
            Low => &m.low,
        }
    }

    pub fn events_dir(&self) -> PathBuf {
        self.state_dir.join("events")
    }

    pub fn name(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(embedded default)".into())
    }
}

/// Session and account names reach tmux targets and file names: keep them plain.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// serde_yaml appends " at line L column C"; we print the line ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The 1-based line of a nested key (`["pool", "autonomous", "max"]`), found
/// by walking the text: each key is looked for after its parent's line.
fn line_of(text: &str, keys: &[&str]) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for key in keys {
        let pat = format!("{key}:");
        let (i, _) = text.lines().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&pat)
                || t.starts_with(&format!("{{ {pat}"))
                || t.contains(&format!(" {pat}"))
        })?;
        found = Some(i + 1);
        from = i + 1;
    }
    found
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
        assert!(e.msg.contains("twice"), "{e}");
        assert_eq!(e.line, Some(1));
        let e = parse("quota:\n  poll_interval: 5m\n  five_hour_threshold: 120\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse("control:\n  listen: localhost\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
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
}

#[cfg(test)]
mod example_tests {
    /// The shipped example must stay valid and in step with the defaults.
    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.yaml");
        let c = super::Config::parse(text, "config.example.yaml").unwrap_or_else(|e| panic!("{e}"));
        let d = super::Config::default();
        assert_eq!(c.dispatcher.scan_interval, d.dispatcher.scan_interval);
        assert_eq!(c.failover.cooldown, d.failover.cooldown);
        assert_eq!(c.quota.five_hour_threshold, d.quota.five_hour_threshold);
        assert_eq!(c.guard.breaker_blocks, d.guard.breaker_blocks);
        assert_eq!(c.accounts.len(), 2);
    }
}
