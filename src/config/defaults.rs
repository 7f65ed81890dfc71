//! Every default value of the config, in one place (`Default` impls and the default patterns).

#[allow(unused_imports)]
use super::*;

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
            isolation: IsolationConfig::default(),
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
            env: Default::default(),
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
            per_project: 1,
        }
    }
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            mode: IsolationMode::None,
            worktrees: None,
            branch_prefix: "cf/".into(),
            base: "HEAD".into(),
        }
    }
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            interval: Dur::secs(5),
            stuck_after: Dur::secs(2 * 3600),
            waiting_timeout: Dur::secs(600),
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
            token_file: config_home().join("claude-failover/token"),
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
