//! Exit statuses in words, for every message that reports a process's end
//! ("exited with status 127: command not found"), never `Some(127)`.

use std::process::ExitStatus;

/// An exit code as a person reads it, with what the shell convention says
/// it means when it says something.
pub fn code_words(code: i32) -> String {
    let gloss = match code {
        126 => Some("found but not executable".to_string()),
        127 => Some("command not found".to_string()),
        129..=192 => Some(signal_words(code - 128)),
        _ => None,
    };
    match gloss {
        Some(g) => format!("exited with status {code}: {g}"),
        None => format!("exited with status {code}"),
    }
}

/// A pane's exit code as tmux reports it, which may be missing.
pub fn pane_words(code: Option<i32>) -> String {
    code.map_or_else(|| "exited (status unknown)".into(), code_words)
}

/// A child's end: its code, or the signal that ended it.
pub fn status_words(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => code_words(c),
        (None, Some(sig)) => signal_words(sig),
        (None, None) => "ended (status unknown)".into(),
    }
}

/// `killed by signal 9 (SIGKILL)`.
pub fn signal_words(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("killed by signal {sig}"),
    };
    format!("killed by signal {sig} ({name})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_words() {
        assert_eq!(code_words(127), "exited with status 127: command not found");
        assert_eq!(
            code_words(126),
            "exited with status 126: found but not executable"
        );
        assert_eq!(code_words(1), "exited with status 1");
        assert_eq!(
            code_words(137),
            "exited with status 137: killed by signal 9 (SIGKILL)"
        );
        assert_eq!(pane_words(None), "exited (status unknown)");
        assert_eq!(pane_words(Some(0)), "exited with status 0");
    }

    #[test]
    fn real_statuses_read_as_words() {
        let s = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .unwrap();
        assert_eq!(status_words(s), "exited with status 3");
        let s = std::process::Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(status_words(s), "killed by signal 15 (SIGTERM)");
    }
}
