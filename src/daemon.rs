//! The top of the house: start-up (lock, state, tmux sessions, every
//! component thread), the foreground loop (signals, watchdog, reload) and
//! an orderly stop. Nothing imports it but the CLI.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};

pub use crate::bus::{Ctx, DispatchMsg, FailoverMsg, Inboxes, WatchMsg, NOTICE_QUEUE};
use crate::config::Config;
pub use crate::reload::reload;
use crate::state::{state_path, State, StateLock};

/// The operator's sessions get the guard too (and so report their events,
/// recognised by their tmux pane): their agents also skip permissions.
fn deploy_dedicated_guards(ctx: &Ctx) {
    let cfg = ctx.config();
    for d in &cfg.pool.dedicated {
        if let Err(e) = crate::guard::deploy(&d.project, cfg.guard.mode, Some(&cfg.events_dir())) {
            log::warn!(
                "cannot deploy the guard for dedicated session {} in {}: {e}",
                d.name,
                d.project.display()
            );
        }
    }
}

/// A started daemon: its context and threads. Dropping `stop` stops them.
pub struct Daemon {
    pub ctx: Arc<Ctx>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    stop: Option<Sender<()>>,
    _lock: StateLock,
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Daemon {
    /// Takes the state-dir lock, loads the state, creates missing sessions
    /// and starts every component thread.
    pub fn start(config: Config) -> Result<Daemon, StartError> {
        let lock = StateLock::acquire(&config.state_dir).map_err(|e| StartError(e.to_string()))?;
        std::fs::create_dir_all(config.events_dir()).map_err(|e| {
            StartError(format!(
                "cannot create {}: {e}",
                config.events_dir().display()
            ))
        })?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            log::warn!(
                "running as root: Claude Code refuses --dangerously-skip-permissions as root unless IS_SANDBOX=1 is in its environment; run the daemon as a normal user"
            );
        }
        // Anything but a file (a directory made by mistake) would make every
        // save fail: refuse, as for a state dir that cannot be written.
        let path = state_path(&config);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(StartError(format!(
                "{} is not a regular file; move it aside and start again",
                path.display()
            )));
        }
        let (mut state, warning) = State::load(&path);
        if let Some(w) = warning {
            log::warn!("{w}");
        }
        state.reconcile(&config);
        let (ctx, inboxes, stop) = Ctx::new(config, state);
        ctx.update(|_| ());
        crate::dispatcher::ensure_sessions(&ctx);
        crate::dispatcher::requeue_orphans(&ctx);
        deploy_dedicated_guards(&ctx);

        let mut threads = Vec::new();
        let spawn = |name: &'static str,
                     f: Box<dyn FnOnce() + Send>|
         -> Result<(&'static str, JoinHandle<()>), StartError> {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(|h| (name, h))
                .map_err(|e| StartError(format!("cannot start thread {name}: {e}")))
        };
        let c = ctx.clone();
        let rx = inboxes.notices;
        threads.push(spawn(
            "notify",
            Box::new(move || crate::notify::run(c, rx)),
        )?);
        let c = ctx.clone();
        let rx = inboxes.watcher;
        threads.push(spawn(
            "watcher",
            Box::new(move || crate::watcher::run(c, rx)),
        )?);
        let c = ctx.clone();
        let rx = inboxes.dispatcher;
        threads.push(spawn(
            "dispatcher",
            Box::new(move || crate::dispatcher::run(c, rx)),
        )?);
        let c = ctx.clone();
        let rx = inboxes.failover;
        threads.push(spawn(
            "failover",
            Box::new(move || crate::failover::run(c, rx)),
        )?);
        let c = ctx.clone();
        threads.push(spawn("quota", Box::new(move || crate::quota::run(c)))?);
        let c = ctx.clone();
        threads.push(spawn(
            "checkpoint",
            Box::new(move || crate::checkpoint::run(c)),
        )?);
        let c = ctx.clone();
        threads.push(spawn("janitor", Box::new(move || crate::janitor::run(c)))?);
        if let Some(h) = crate::control::start(ctx.clone()).map_err(StartError)? {
            threads.push(("control", h));
        }
        Ok(Daemon {
            ctx,
            threads,
            stop: Some(stop),
            _lock: lock,
        })
    }

    /// Names of component threads that have ended (a panic, a bug): the
    /// watchdog stops petting systemd when this is not empty.
    pub fn dead_components(&self) -> Vec<&'static str> {
        self.threads
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(n, _)| *n)
            .collect()
    }

    /// Stops every thread and waits for them (bounded by `grace`), saving the
    /// state. Agents in tmux keep running.
    pub fn shutdown(mut self, grace: Duration) {
        drop(self.stop.take());
        let deadline = std::time::Instant::now() + grace;
        for (name, h) in self.threads.drain(..) {
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::warn!("thread {name} did not stop in time");
            }
        }
        self.ctx.update(|_| ());
    }
}

/// `run`: the daemon in the foreground until SIGTERM or SIGINT (exit 0,
/// agents keep running); SIGHUP reloads the config, keeping the old one if
/// the new one is invalid.
pub fn run_foreground(config: Config, config_path: Option<PathBuf>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let sig_handle = signals.handle();
    let (sig_tx, sig_rx) = unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(s).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;

    log::info!("starting with {}", config.name());
    let daemon = Daemon::start(config).map_err(|e| e.0)?;
    crate::systemd::notify("READY=1");
    log::info!("ready");
    let watchdog = crate::systemd::watchdog_interval();
    let mut reported_dead = false;
    loop {
        let tick = watchdog.unwrap_or(Duration::from_secs(3600));
        crossbeam_channel::select! {
            recv(sig_rx) -> s => match s {
                Ok(SIGHUP) => {
                    let _ = reload(&daemon.ctx, config_path.as_deref());
                }
                Ok(s) => {
                    log::info!("signal {s}: stopping (agents keep running in tmux)");
                    break;
                }
                Err(_) => break,
            },
            default(tick) => {}
        }
        let dead = daemon.dead_components();
        if dead.is_empty() {
            if watchdog.is_some() {
                crate::systemd::notify("WATCHDOG=1");
            }
        } else if !reported_dead {
            reported_dead = true;
            log::error!(
                "component thread(s) stopped: {}; no longer petting the watchdog",
                dead.join(", ")
            );
        }
    }
    crate::systemd::notify("STOPPING=1");
    sig_handle.close();
    daemon.shutdown(Duration::from_millis(1500));
    Ok(())
}
