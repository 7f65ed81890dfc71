//! Loading a config file and validating it (one clear line with file:line for what is wrong).

#[allow(unused_imports)]
use super::*;
use crate::notice::NoticeKind;

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
    /// `$XDG_CONFIG_HOME/claude-failover/config.yaml` (`~/.config/…`), else
    /// the embedded default.
    pub fn locate(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(p) = explicit {
            return Config::load(p);
        }
        if let Some(p) = std::env::var_os("CLAUDE_FAILOVER_CONFIG").filter(|p| !p.is_empty()) {
            return Config::load(Path::new(&p));
        }
        let user = config_home().join("claude-failover/config.yaml");
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
        // A file emptied by mistake (`: > config.yaml`) must not load as
        // the defaults: every project would be dropped and sessions started
        // on `~/.claude`. The embedded default is for no file at all.
        let blank = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        });
        if blank {
            return Err(ConfigError {
                file: path.display().to_string(),
                line: None,
                msg: "the file is empty; restore it, or remove it to use the built-in default"
                    .into(),
            });
        }
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
                let at = line.and_then(|l| text.lines().nth(l.saturating_sub(1)));
                let msg = strict::full_key(&strip_location(&e.to_string()), at);
                err(line, strict::words(&msg))
            })?
        };
        c.validate()
            .map_err(|(key, msg)| err(strict::line_of(text, &key), format!("{key}: {msg}")))?;
        Ok(c)
    }

    /// Checks what serde cannot: cross-key rules, value ranges, likely
    /// mistakes. On error, returns the full key (`accounts[1].name`, to
    /// find its own line) and what is wrong with it.
    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: String, msg: String| Err((key, msg));
        let plain = "must be letters, digits, `-` or `_`";
        if self.accounts.is_empty() {
            return fail("accounts".into(), "at least one account is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            if !valid_name(&a.name) {
                return fail(
                    format!("accounts[{i}].name"),
                    format!("`{}` {plain}", a.name),
                );
            }
            if !names.insert(a.name.as_str()) {
                return fail(
                    format!("accounts[{i}].name"),
                    format!("account `{}` is listed twice", a.name),
                );
            }
        }
        let mut sessions = std::collections::HashSet::new();
        for (i, d) in self.pool.dedicated.iter().enumerate() {
            if !valid_name(&d.name) {
                return fail(
                    format!("pool.dedicated[{i}].name"),
                    format!("`{}` {plain}", d.name),
                );
            }
            if !sessions.insert(d.name.clone()) {
                return fail(
                    format!("pool.dedicated[{i}].name"),
                    format!("session `{}` is listed twice", d.name),
                );
            }
        }
        let auto = &self.pool.autonomous;
        if !auto.prefix.is_empty() && !valid_name(&auto.prefix) {
            return fail(
                "pool.autonomous.prefix".into(),
                format!("`{}` {plain}", auto.prefix),
            );
        }
        if auto.max > 0 && auto.prefix.is_empty() {
            return fail("pool.autonomous.prefix".into(), "must not be empty".into());
        }
        for name in self.autonomous_names() {
            if sessions.contains(&name) {
                return fail(
                    "pool.dedicated".into(),
                    format!("session `{name}` is both dedicated and autonomous"),
                );
            }
        }
        if auto.max > 1000 {
            return fail("pool.autonomous.max".into(), "must be at most 1000".into());
        }
        if let Some((key, msg)) = isolation_problem(&self.isolation) {
            return fail(format!("isolation.{key}"), msg);
        }
        if self.dispatcher.max_attempts == 0 {
            return fail(
                "dispatcher.max_attempts".into(),
                "must be at least 1".into(),
            );
        }
        for (key, d) in [
            ("dispatcher.scan_interval", self.dispatcher.scan_interval),
            ("watcher.interval", self.watcher.interval),
            ("quota.poll_interval", self.quota.poll_interval),
            ("checkpoint.interval", self.checkpoint.interval),
            ("janitor.interval", self.janitor.interval),
            ("agent.prompt_timeout", self.agent.prompt_timeout),
            ("quota.timeout", self.quota.timeout),
        ] {
            if d.0 < Duration::from_millis(10) {
                return fail(key.into(), "must be at least 10ms".into());
            }
        }
        for (key, v) in [
            ("quota.five_hour_threshold", self.quota.five_hour_threshold),
            ("quota.seven_day_threshold", self.quota.seven_day_threshold),
        ] {
            strict::threshold(v).map_err(|m| (key.to_string(), m))?;
        }
        if self.agent.command.trim().is_empty() {
            return fail("agent.command".into(), "must not be empty".into());
        }
        // Launches run `env -u … COMMAND …`, and env takes NAME=VALUE words
        // as assignments.
        if self.agent.command.contains('=') || self.agent.command.starts_with('-') {
            return fail(
                "agent.command".into(),
                format!(
                    "`{}` must not contain `=` or start with `-`",
                    self.agent.command
                ),
            );
        }
        for k in self.agent.env.keys() {
            let name_ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return fail(
                    format!("agent.env.{k}"),
                    format!("`{k}` is not an environment variable name"),
                );
            }
            if crate::launch::DAEMON_ENV.contains(&k.as_str())
                || crate::launch::OVERRIDING_ENV.contains(&k.as_str())
            {
                return fail(
                    format!("agent.env.{k}"),
                    format!("`{k}` is set by the daemon for each account and session; it cannot be set here"),
                );
            }
        }
        let m = &self.agent.models;
        for (key, name) in [
            ("agent.models.critical", &m.critical),
            ("agent.models.high", &m.high),
            ("agent.models.default", &m.default),
            ("agent.models.low", &m.low),
        ] {
            strict::model(name).map_err(|e| (key.to_string(), e))?;
        }
        if !self.control.listen.is_empty() {
            resolve_listen(&self.control.listen).map_err(|e| ("control.listen".to_string(), e))?;
        }
        for (i, e) in self.notify.events.iter().enumerate() {
            if NoticeKind::from_name(e).is_none() {
                let known: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.as_str()).collect();
                return fail(
                    format!("notify.events[{i}]"),
                    format!("unknown event `{e}`; known: {}", known.join(", ")),
                );
            }
        }
        if self.notify.rate_per_minute == 0 {
            return fail("notify.rate_per_minute".into(), "must be at least 1".into());
        }
        for (i, w) in self.notify.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return fail(
                    format!("notify.webhooks[{i}].url"),
                    format!("`{}` must start with http:// or https://", w.url),
                );
            }
            for (k, v) in &w.headers {
                crate::webhook::check_header(k, v)
                    .map_err(|e| (format!("notify.webhooks[{i}].headers"), e))?;
            }
        }
        if !(self.quota.endpoint.starts_with("http://")
            || self.quota.endpoint.starts_with("https://"))
        {
            return fail(
                "quota.endpoint".into(),
                "must start with http:// or https://".into(),
            );
        }
        if self.guard.breaker_blocks == 0 {
            return fail("guard.breaker_blocks".into(), "must be at least 1".into());
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

/// What is wrong with `isolation` (the key and the message), if anything:
/// a branch prefix git would refuse or misread, a base that reads as an option.
fn isolation_problem(i: &IsolationConfig) -> Option<(&'static str, String)> {
    let p = &i.branch_prefix;
    let bad_char = p
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')));
    let bad_part = p.split('/').enumerate().any(|(n, part)| {
        part.starts_with('.')
            || part.ends_with(".lock")
            || (part.is_empty() && n == 0 && !p.is_empty())
    });
    if bad_char || bad_part || p.starts_with('-') || p.contains("..") || p.contains("//") {
        return Some((
            "branch_prefix",
            format!("`{p}` must be letters, digits, `-`, `_`, `.` and `/` that git takes in a branch name (no `..`, `//`, leading `/`, `-` or `.`)"),
        ));
    }
    let b = &i.base;
    if b.is_empty() || b.starts_with('-') || b.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Some((
            "base",
            format!("`{b}` must name a commit (a branch, tag or HEAD), without spaces, not starting with `-`"),
        ));
    }
    None
}

/// serde_yaml appends " at line L column C"; we print the line ourselves.
pub(super) fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
