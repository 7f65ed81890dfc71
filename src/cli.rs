//! The command line (INTERFACE.md): parse with lexopt, run one command.
//! Exit codes: 0 ok, 1 failure (one line on stderr), 2 usage error.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::{Args, Cmd, USAGE};
use crate::config::Config;

/// Entry point for the binary; also callable from tests.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match crate::args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("claude-failover: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("claude-failover: {msg}");
            ExitCode::from(1)
        }
    }
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
        Cmd::CheckConfig => Ok(crate::commands::check_config(&load(&args.config)?)),
        Cmd::Doctor { json } => Ok(crate::commands::doctor(&load(&args.config)?, json)),
        Cmd::Run => {
            let c = load(&args.config)?;
            // Before any tmux session exists: a machine that cannot launch
            // is told so, and left as it was.
            for w in crate::doctor::preflight(&c)? {
                log::warn!("{}", w.message);
            }
            crate::daemon::run_foreground(c, args.config).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Add(a) => crate::commands::add(&load(&args.config)?, a),
        Cmd::Retry { project, name } => {
            crate::commands::retry(&load(&args.config)?, project.as_deref(), &name)
        }
        Cmd::Tasks { project, json } => {
            let c = load(&args.config)?;
            let only = project
                .map(|p| crate::taskcmd::resolve_project(&c, Some(&p)))
                .transpose()?;
            let (st, _) = crate::state::read_saved(&c);
            print!("{}", crate::commands::tasks(&c, &st, only.as_deref(), json));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reload => crate::control::cli_reload(&load(&args.config)?),
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
/// `--dry-run` reads the saved state without the lock and prints every
/// pending task's fate, as `tasks` does.
fn scan(cfg: Config, dry_run: bool) -> Result<ExitCode, String> {
    use crate::state::{state_path, State, StateLock};
    if dry_run {
        let (st, _) = crate::state::read_saved(&cfg);
        let fates = crate::commands::pending_fates(&cfg, &st, crate::timefmt::now_secs());
        if fates.is_empty() {
            println!("nothing pending");
        }
        for (task, fate) in &fates {
            println!("{}", crate::commands::pending_line(task, fate));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = StateLock::acquire(&cfg.state_dir)
        .map_err(|e| format!("{e}; ask it with POST /scan instead"))?;
    let (mut state, warning) = State::load(&state_path(&cfg));
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    state.reconcile(&cfg);
    let (ctx, _inboxes, _stop) = crate::daemon::Ctx::new(cfg, state);
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
