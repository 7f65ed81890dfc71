//! The bus below every component thread: the context they share (`Ctx`:
//! config, the one `Mutex<State>`, tmux, the channels), the messages they
//! send each other and the outcomes they report. It imports no thread
//! module; threads import it, and only the daemon's start-up imports them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::config::Config;
use crate::launch::LaunchError;
use crate::notice::Notice;
use crate::state::{state_path, State, TaskRef};
use crate::tmux::Tmux;

/// The result of one launch, sent back to the dispatcher thread.
#[derive(Debug)]
pub struct LaunchOutcome {
    pub session: String,
    pub task: TaskRef,
    pub result: Result<(), LaunchError>,
}

/// Messages to the dispatcher thread.
#[derive(Debug)]
pub enum DispatchMsg {
    /// A session became free: give it the next task.
    SessionFree(String),
    /// Rescan every inbox now (`POST /scan`, SIGHUP, resumed dispatching).
    Scan,
    /// A launch thread finished (boxed: a task and an error are large).
    Launched(Box<LaunchOutcome>),
}

/// Why the switcher refused a manual failover; the control plane answers
/// 400 for a request naming no such account, 409 for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Running,
    UnknownAccount(String),
    Unusable { account: String, why: String },
    NoUsableAccount,
    AlreadyActive(String),
}

impl Refusal {
    /// The request itself is wrong (not the moment).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Refusal::UnknownAccount(_))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Running => f.write_str("a failover is already running"),
            Refusal::UnknownAccount(n) => write!(f, "no account named `{n}`"),
            Refusal::Unusable { account, why } => {
                write!(f, "account `{account}` is not usable: {why}")
            }
            Refusal::NoUsableAccount => f.write_str("no usable account"),
            Refusal::AlreadyActive(n) => write!(f, "`{n}` is already the active account"),
        }
    }
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
        reply: Option<Sender<Result<String, Refusal>>>,
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
        let level = if n.event == crate::notice::NoticeKind::TaskDone {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        log::log!(level, "{}: {}", n.event, n.message);
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
