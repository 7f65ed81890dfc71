//! The command line (INTERFACE.md): parse with lexopt, run one command.
//! Exit codes: 0 ok, 1 failure (one line on stderr), 2 usage error.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

const USAGE: &str = "\
claude-failover: keeps a pool of Claude Code agents working in tmux

Usage:
  claude-failover run          [-c FILE]             the daemon, in the foreground
  claude-failover scan         [-c FILE] [--dry-run] dispatch what is pending to free sessions once
  claude-failover status       [-c FILE] [--json]    sessions, tasks, accounts, usage
  claude-failover quota        [-c FILE] [--json]    poll every account's usage now
  claude-failover failover     [-c FILE] [--to NAME] ask the running daemon to switch accounts
  claude-failover check-config [-c FILE]             validate the config
  claude-failover hook install DIR [-c FILE]         deploy the guard into a project
  claude-failover hook check   [--tool T] [CMD|-]    run the guard on a command or a PreToolUse JSON
  claude-failover systemd-unit [-c FILE]             print a systemd unit for the daemon
  claude-failover --help | --version

Config: -c FILE, else $CLAUDE_FAILOVER_CONFIG, else ~/.config/claude-failover/config.yaml,
else the embedded default (this directory as the one project, one session, account ~/.claude).
Logs go to stderr; RUST_LOG sets the level (default info).
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Cmd {
    Run,
    Scan { dry_run: bool },
    Status { json: bool },
    Quota { json: bool },
    Failover { to: Option<String> },
    CheckConfig,
    HookInstall { dir: PathBuf },
    HookCheck { tool: String, arg: Option<String> },
    SystemdUnit,
    Help,
    Version,
}

#[derive(Debug)]
struct Args {
    cmd: Cmd,
    config: Option<PathBuf>,
}

fn parse(args: Vec<OsString>) -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut config = None;
    let mut words: Vec<String> = Vec::new();
    let (mut json, mut dry_run) = (false, false);
    let mut to = None;
    let mut tool = "Bash".to_string();
    while let Some(arg) = p.next()? {
        match arg {
            Short('c') | Long("config") => config = Some(PathBuf::from(p.value()?)),
            Long("json") => json = true,
            Long("dry-run") => dry_run = true,
            Long("to") => to = Some(p.value()?.string()?),
            Long("tool") => tool = p.value()?.string()?,
            Short('h') | Long("help") => {
                return Ok(Args {
                    cmd: Cmd::Help,
                    config,
                })
            }
            Short('V') | Long("version") => {
                return Ok(Args {
                    cmd: Cmd::Version,
                    config,
                })
            }
            Value(v) => words.push(v.string()?),
            // `-` alone (stdin) arrives as Value; anything else is unknown.
            _ => return Err(arg.unexpected()),
        }
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = match w.as_slice() {
        ["run"] => Cmd::Run,
        ["scan"] => Cmd::Scan { dry_run },
        ["status"] => Cmd::Status { json },
        ["quota"] => Cmd::Quota { json },
        ["failover"] => Cmd::Failover { to },
        ["check-config"] => Cmd::CheckConfig,
        ["hook", "install", dir] => Cmd::HookInstall {
            dir: PathBuf::from(dir),
        },
        ["hook", "check"] => Cmd::HookCheck { tool, arg: None },
        ["hook", "check", rest @ ..] => Cmd::HookCheck {
            tool,
            arg: Some(rest.join(" ")),
        },
        ["systemd-unit"] => Cmd::SystemdUnit,
        [] => return Err("no command given; try --help".into()),
        other => return Err(format!("unknown command `{}`; try --help", other.join(" ")).into()),
    };
    Ok(Args { cmd, config })
}

/// Entry point for the binary; also callable from tests.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("claude-failover: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("claude-failover: {msg}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, r| {
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                crate::timefmt::rfc3339(crate::timefmt::now_secs()),
                r.level(),
                r.target().trim_start_matches("claude_failover::"),
                r.args()
            )
        })
        .try_init();
}

fn load(path: &Option<PathBuf>) -> Result<Config, String> {
    Config::locate(path.as_deref()).map_err(|e| e.to_string())
}

fn run(args: Args) -> Result<ExitCode, String> {
    match args.cmd {
        Cmd::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Version => {
            println!("claude-failover {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig => {
            let c = load(&args.config)?;
            println!("{}: ok", c.name());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run => {
            let c = load(&args.config)?;
            crate::daemon::run_foreground(c, args.config).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Scan { dry_run } => scan(load(&args.config)?, dry_run),
        Cmd::Status { json } => crate::control::cli_status(&load(&args.config)?, json),
        Cmd::Quota { json } => crate::quota::cli_quota(&load(&args.config)?, json),
        Cmd::Failover { to } => crate::control::cli_failover(&load(&args.config)?, to),
        Cmd::SystemdUnit => {
            let c = load(&args.config)?;
            print!("{}", crate::systemd::unit(&c));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HookInstall { dir } => {
            let c = load(&args.config)?;
            if !dir.is_dir() {
                return Err(format!("{} is not a directory", dir.display()));
            }
            crate::guard::deploy(&dir, c.guard.mode, Some(&c.events_dir()))
                .map_err(|e| e.to_string())?;
            println!(
                "guard installed in {} (mode {})",
                dir.join(".claude/hooks")
                    .join(crate::guard::HOOK_FILE)
                    .display(),
                c.guard.mode.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HookCheck { tool, arg } => hook_check(&tool, arg),
    }
}

fn hook_check(tool: &str, arg: Option<String>) -> Result<ExitCode, String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let input = match arg.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .take(4 << 20)
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            if s.trim_start().starts_with('{') {
                s
            } else {
                crate::guard::tool_call_json(tool, s.trim_end_matches('\n'), &cwd)
            }
        }
        Some(cmd) => crate::guard::tool_call_json(tool, cmd, &cwd),
    };
    match crate::guard::check(&input, crate::config::GuardMode::Enforce)
        .map_err(|e| format!("cannot run the guard: {e}"))?
    {
        crate::guard::Verdict::Allow => {
            println!("allow");
            Ok(ExitCode::SUCCESS)
        }
        crate::guard::Verdict::Warn(r) => {
            println!("warn: {r}");
            Ok(ExitCode::SUCCESS)
        }
        crate::guard::Verdict::Block(r) => {
            println!("block: {r}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `scan`: one dispatch round; refuses while a daemon holds the state dir.
fn scan(cfg: Config, dry_run: bool) -> Result<ExitCode, String> {
    use crate::state::{state_path, State, StateLock};
    let _lock = StateLock::acquire(&cfg.state_dir)
        .map_err(|e| format!("{e}; ask it with POST /scan instead"))?;
    let (mut state, warning) = State::load(&state_path(&cfg));
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    state.reconcile(&cfg);
    let (ctx, _inboxes, _stop) = crate::bus::Ctx::new(cfg, state);
    if dry_run {
        // Report which sessions exist or would be created, without touching tmux.
        let plan = crate::dispatcher::dry_plan(&ctx);
        if plan.is_empty() {
            println!("nothing to dispatch");
        }
        for (session, task) in plan {
            println!(
                "{session}\t{}\t{}\t{}",
                task.meta.priority.as_str(),
                task.project.display(),
                task.name
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(ctx.config().events_dir()).map_err(|e| e.to_string())?;
    crate::dispatcher::ensure_sessions(&ctx);
    crate::dispatcher::requeue_orphans(&ctx);
    let started = crate::dispatcher::scan_once(&ctx);
    let mut failed = false;
    for (session, task, result) in &started {
        match result {
            Ok(()) => println!("{session}\t{task}\tstarted"),
            Err(e) => {
                failed = true;
                println!("{session}\t{task}\tfailed: {e}");
            }
        }
    }
    if started.is_empty() {
        println!("nothing to dispatch");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, String> {
        parse(s.split_whitespace().map(OsString::from).collect())
            .map(|a| a.cmd)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p("run").unwrap(), Cmd::Run);
        assert_eq!(p("scan --dry-run").unwrap(), Cmd::Scan { dry_run: true });
        assert_eq!(
            p("failover --to backup").unwrap(),
            Cmd::Failover {
                to: Some("backup".into())
            }
        );
        assert_eq!(
            p("hook check --tool Write /etc/x").unwrap(),
            Cmd::HookCheck {
                tool: "Write".into(),
                arg: Some("/etc/x".into())
            }
        );
        assert_eq!(
            p("hook check -").unwrap(),
            Cmd::HookCheck {
                tool: "Bash".into(),
                arg: Some("-".into())
            }
        );
        assert!(p("frobnicate").is_err());
        assert!(p("").is_err());
        assert!(p("run --bogus").is_err());
    }
}
