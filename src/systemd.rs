//! systemd integration: sd_notify datagrams and the unit file. (stub)

use std::time::Duration;

use crate::config::Config;

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET` when set.
pub fn notify(_state: &str) {}

/// Half of `$WATCHDOG_USEC`, when systemd asks for a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    None
}

/// A unit file for `claude-failover run`.
pub fn unit(_cfg: &Config) -> String {
    String::new()
}
