//! The running daemon: the shared context every component thread holds
//! (`Ctx`), the messages between components, start-up (lock, state, tmux
//! sessions, threads) and an orderly stop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::config::Config;
use crate::notice::Notice;
use crate::state::{state_path, State, StateLock};
use crate::tmux::Tmux;

/// Messages to the dispatcher thread.
#[derive(Debug)]
pub enum DispatchMsg {
    /// A session became free: give it the next task.
    SessionFree(String),
    /// Rescan every inbox now (`POST /scan`, SIGHUP, resumed dispatching).
    Scan,
    /// A launch thread finished.
    Launched(crate::dispatcher::LaunchOutcome),
}

/// Messages to the failover (account switcher) thread.
#[derive(Debug)]
pub enum FailoverMsg {
    /// The quota poller saw the account at or over a threshold.
    Threshold { account: String },
    /// A session's pane shows a usage-limit line.
    Limit { session: String },
    /// `StopFailure` with `rate_limit` and no limit line: maybe a throttle.
    RateLimited { session: String },
    /// The operator asked (`failover [--to NAME]`, `POST /failover`).
    Manual {
        to: Option<String>,
        reply: Option<Sender<Result<String, String>>>,
    },
}

/// Messages to the watcher thread.
#[derive(Debug)]
pub enum WatchMsg {
    /// Look at the events folder and every session now.
    Check,
    /// Stop the agent in this session and free it (`POST /sessions/NAME/recycle`).
    Recycle(String),
    /// A stop thread saw this session's agent leave.
    Stopped(String),
}

/// What every component thread shares.
pub struct Ctx {
    config: RwLock<Arc<Config>>,
    state: Mutex<State>,
    state_file: PathBuf,
    pub tmux: Tmux,
    pub to_dispatcher: Sender<DispatchMsg>,
    pub to_failover: Sender<FailoverMsg>,
    pub to_watcher: Sender<WatchMsg>,
    notices: Sender<Notice>,
    /// Never sent on; disconnected when the daemon stops, which wakes every
    /// thread blocked in a `select!` on it.
    pub stop: Receiver<()>,
    pub host: String,
}

/// The receiving ends, handed to the threads that own them.
pub struct Inboxes {
    pub dispatcher: Receiver<DispatchMsg>,
    pub failover: Receiver<FailoverMsg>,
    pub watcher: Receiver<WatchMsg>,
    pub notices: Receiver<Notice>,
}

/// Notices queued for the notifier beyond this are dropped (and counted):
/// a slow sink must never block a component.
pub const NOTICE_QUEUE: usize = 256;

impl Ctx {
    /// A context with its channels; `stop_tx` is dropped to stop everything.
    pub fn new(config: Config, state: State) -> (Arc<Ctx>, Inboxes, Sender<()>) {
        let (to_dispatcher, dispatcher) = unbounded();
        let (to_failover, failover) = unbounded();
        let (to_watcher, watcher) = unbounded();
        let (notice_tx, notices) = bounded(NOTICE_QUEUE);
        let (stop_tx, stop) = bounded(0);
        let ctx = Ctx {
            tmux: Tmux::new(config.tmux.socket.clone()),
            state_file: state_path(&config),
            config: RwLock::new(Arc::new(config)),
            state: Mutex::new(state),
            to_dispatcher,
            to_failover,
            to_watcher,
            notices: notice_tx,
            stop,
            host: hostname(),
        };
        (
            Arc::new(ctx),
            Inboxes {
                dispatcher,
                failover,
                watcher,
                notices,
            },
            stop_tx,
        )
    }

    /// The current config; a SIGHUP reload swaps it between loop turns.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_config(&self, c: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
    }

    /// Locks the state. A panic in another thread while holding it does not
    /// poison the daemon: the state is plain data and stays usable.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and persists it atomically.
    pub fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.state();
        let r = f(&mut st);
        if let Err(e) = st.save(&self.state_file) {
            log::error!("cannot write {}: {e}", self.state_file.display());
        }
        r
    }

    /// Queues a notice for the notifier and logs it. Never blocks.
    pub fn notify(&self, n: Notice) {
        log::warn!("{}: {}", n.event, n.message);
        if self.notices.try_send(n).is_err() {
            self.state().metrics.notices_dropped += 1;
        }
    }

    /// True once the daemon is stopping.
    pub fn stopping(&self) -> bool {
        matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Sleeps up to `d`, returning early (true) when the daemon stops.
    pub fn sleep(&self, d: Duration) -> bool {
        matches!(
            self.stop.recv_timeout(d),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }
}

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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
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
        let (mut state, warning) = State::load(&state_path(&config));
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
                Ok(SIGHUP) => reload(&daemon.ctx, config_path.as_deref()),
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

/// Re-reads the config from where it came from. An invalid file is refused
/// and the running config kept.
pub fn reload(ctx: &Ctx, path: Option<&std::path::Path>) {
    let old = ctx.config();
    let path = path.map(PathBuf::from).or_else(|| old.source.clone());
    let new = match Config::locate(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload refused, keeping the running config: {e}");
            return;
        }
    };
    let mut new = new;
    if new.state_dir != old.state_dir || new.tmux.socket != old.tmux.socket {
        log::warn!("state_dir and tmux.socket changes need a restart; keeping the old values");
        new.state_dir = old.state_dir.clone();
        new.tmux.socket = old.tmux.socket.clone();
    }
    log::info!("reloaded {}", new.name());
    ctx.update(|st| st.reconcile(&new));
    ctx.set_config(new);
    crate::dispatcher::ensure_sessions(ctx);
    let _ = ctx.to_dispatcher.send(DispatchMsg::Scan);
}
