//! The log (INTERFACE.md "Logs"): one line per event on stderr. Under
//! systemd, journald already stamps each line and reads a `<N>` syslog
//! priority prefix, so there the line is `<N>target: message` and nothing
//! else; `journalctl -p err` then finds the errors. Elsewhere a line is
//! `TIMESTAMP LEVEL target: message`.
//!
//! `RUST_LOG` picks the level. env_logger reads an empty value or a typo
//! (`inf`) as "only a module named inf", which silences every line; here
//! such a value means `info`, said once as a warning.

use std::io::Write;

use log::Level;

/// The level when `RUST_LOG` is unset or unusable.
const DEFAULT_SPEC: &str = "info";
/// Our own targets start with this; shown without it.
const CRATE_PREFIX: &str = "claude_failover";
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Installs the logger for the process (once; later calls do nothing).
pub fn init() {
    let (spec, warning) = filter_spec(std::env::var("RUST_LOG").ok().as_deref());
    let journald = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let installed = env_logger::Builder::new()
        .parse_filters(&spec)
        .format(move |buf, r| {
            let line = format_line(
                journald,
                r.level(),
                r.target(),
                &r.args().to_string(),
                crate::timefmt::now_secs(),
            );
            writeln!(buf, "{line}")
        })
        .try_init()
        .is_ok();
    if installed {
        if let Some(w) = warning {
            log::warn!("{w}");
        }
    }
}

/// The filter to use for a `RUST_LOG` value, and the warning to give when
/// the value cannot be used. A valid value without a bare level gets `info`
/// in front, so `RUST_LOG=ureq=debug` keeps the daemon's own lines.
pub fn filter_spec(rust_log: Option<&str>) -> (String, Option<String>) {
    let Some(raw) = rust_log else {
        return (DEFAULT_SPEC.into(), None);
    };
    let spec = raw.trim();
    if spec.is_empty() {
        return (
            DEFAULT_SPEC.into(),
            Some("RUST_LOG is empty; logging at info".into()),
        );
    }
    if let Err(why) = check_spec(spec) {
        return (
            DEFAULT_SPEC.into(),
            Some(format!("RUST_LOG `{spec}`: {why}; logging at info")),
        );
    }
    let modules = spec.split('/').next().unwrap_or("");
    let has_level = modules
        .split(',')
        .map(str::trim)
        .any(|d| is_level(d) && !d.is_empty());
    if has_level {
        (spec.into(), None)
    } else {
        (format!("{DEFAULT_SPEC},{spec}"), None)
    }
}

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// Accepts what env_logger means and a user would write: `LEVEL`,
/// `TARGET=LEVEL`, a bare target that is a module path (`claude_failover`,
/// `a::b`), comma-separated, optionally `/text`. A bare word that is
/// neither a level nor a module path is almost always a typo.
fn check_spec(spec: &str) -> Result<(), String> {
    let levels = LEVELS.join(", ");
    let mut parts = spec.splitn(2, '/');
    let modules = parts.next().unwrap_or("");
    if parts.next().is_some_and(|f| f.contains('/')) {
        return Err("more than one `/`".into());
    }
    for d in modules.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match d.split_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() || level.contains('=') {
                    return Err(format!("`{d}` is not TARGET=LEVEL"));
                }
                if !is_level(level.trim()) {
                    return Err(format!(
                        "`{}` is not a level (one of {levels})",
                        level.trim()
                    ));
                }
            }
            None => {
                if !is_level(d) && !d.starts_with(CRATE_PREFIX) && !d.contains("::") {
                    return Err(format!(
                        "`{d}` is not a level (one of {levels}) nor TARGET=LEVEL"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd for a
/// service whose output goes to the journal) names the file on fd 2.
/// Another process's variable, inherited through a shell, names a
/// different file and is ignored.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(parse_journal_stream) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes into the buffer it is given; fd 2 may be closed,
    // in which case it fails and the buffer is not read.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled the struct.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

fn parse_journal_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority journald reads from a `<N>` prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One log line (without the newline). For journald every line of a
/// multi-line message carries the prefix, since journald reads each line
/// as an entry of its own.
pub fn format_line(journald: bool, level: Level, target: &str, msg: &str, now: u64) -> String {
    let target = target
        .strip_prefix(CRATE_PREFIX)
        .map(|t| t.trim_start_matches("::"))
        .filter(|t| !t.is_empty())
        .unwrap_or(target);
    if journald {
        let prefix = format!("<{}>", priority(level));
        let mut out = String::new();
        for (i, line) in msg.split('\n').enumerate() {
            if i == 0 {
                out.push_str(&format!("{prefix}{target}: {line}"));
            } else {
                out.push_str(&format!("\n{prefix}{target}: {line}"));
            }
        }
        out
    } else {
        format!(
            "{} {:<5} {target}: {msg}",
            crate::timefmt::rfc3339(now),
            level
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_is_info_without_warning() {
        assert_eq!(filter_spec(None), ("info".into(), None));
    }

    #[test]
    fn empty_or_typo_is_info_with_one_warning() {
        for bad in [
            "",
            "  ",
            "inf",
            "claude_failover=verbose",
            "=debug",
            "a/b/c",
        ] {
            let (spec, warning) = filter_spec(Some(bad));
            assert_eq!(spec, "info", "{bad:?}");
            let w = warning.unwrap_or_else(|| panic!("no warning for {bad:?}"));
            assert!(w.ends_with("logging at info"), "{w}");
            assert!(!w.contains("Some("), "{w}");
        }
        let (_, w) = filter_spec(Some("inf"));
        assert_eq!(
            w.unwrap(),
            "RUST_LOG `inf`: `inf` is not a level (one of off, error, warn, info, debug, trace) nor TARGET=LEVEL; logging at info"
        );
    }

    #[test]
    fn valid_specs_are_kept() {
        for good in [
            "debug",
            "WARN",
            "info,ureq=debug",
            "claude_failover::watcher=trace,info",
        ] {
            assert_eq!(filter_spec(Some(good)), (good.into(), None), "{good}");
        }
        assert_eq!(
            filter_spec(Some("ureq=debug")),
            ("info,ureq=debug".into(), None),
            "the daemon's own lines stay at info"
        );
        assert_eq!(
            filter_spec(Some("claude_failover")),
            ("info,claude_failover".into(), None)
        );
    }

    #[test]
    fn the_spec_means_what_env_logger_does() {
        let (spec, _) = filter_spec(Some("claude_failover::quota=debug"));
        let logger = env_logger::Builder::new().parse_filters(&spec).build();
        let meta = |target: &'static str, level| {
            log::Metadata::builder().target(target).level(level).build()
        };
        use log::Log;
        assert!(logger.enabled(&meta("claude_failover::quota", Level::Debug)));
        assert!(logger.enabled(&meta("claude_failover::watcher", Level::Info)));
        assert!(!logger.enabled(&meta("claude_failover::watcher", Level::Debug)));
        assert!(logger.enabled(&meta("claude_failover::watcher", Level::Error)));
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let l = format_line(
            true,
            Level::Error,
            "claude_failover::watcher",
            "ccl-1: gone",
            0,
        );
        assert_eq!(l, "<3>watcher: ccl-1: gone");
        assert_eq!(
            format_line(true, Level::Warn, "ureq::tls", "x\ny", 0),
            "<4>ureq::tls: x\n<4>ureq::tls: y"
        );
        assert_eq!(
            format_line(true, Level::Info, "claude_failover", "m", 0),
            "<6>claude_failover: m"
        );
        assert_eq!(priority(Level::Debug), 7);
        assert_eq!(priority(Level::Trace), 7);
    }

    #[test]
    fn terminal_lines_carry_time_and_level() {
        let l = format_line(
            false,
            Level::Info,
            "claude_failover::daemon",
            "ready",
            1_764_585_600,
        );
        assert_eq!(l, "2025-12-01T10:40:00Z INFO  daemon: ready");
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: as in stderr_is_journal.
        let ok = unsafe { libc::fstat(2, st.as_mut_ptr()) } == 0;
        if ok {
            // SAFETY: fstat succeeded.
            let st = unsafe { st.assume_init() };
            let ours = format!("{}:{}", st.st_dev, st.st_ino);
            assert!(stderr_is_journal(Some(&ours)), "{ours}");
            let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
            assert!(!stderr_is_journal(Some(&other)));
        }
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("")));
        assert!(!stderr_is_journal(Some("8:abc")));
        assert!(!stderr_is_journal(Some("12345")));
    }
}
