//! Stopping an agent the gentle way, doing what its screen needs and no
//! more: at its prompt (after a Stop) it gets `/exit` and Enter; a working
//! view or a menu gets Esc first, and the next step comes as soon as the
//! screen shows the last one took (the working view ended, the menu is
//! gone, `/exit` shows in the input line). Every wait is a condition with
//! a deadline; SIGTERM only when half of the stop timeout has passed, and
//! never SIGKILL: a kill during a token refresh can log the whole account
//! out.

use std::time::{Duration, Instant};

use crate::agent_exit::AgentExit;
use crate::launch::input_line;
use crate::tmux::Tmux;

/// How often the screen is read while waiting for it to change.
const SCREEN_POLL: Duration = Duration::from_millis(5);
/// Esc presses before an agent that keeps a working view or a menu gets SIGTERM.
const MAX_ESCAPES: u32 = 3;

/// What the screen says about the agent, as far as stopping it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    /// At its prompt; the text in the input line.
    Input(String),
    /// A turn runs (`esc to interrupt`).
    Working,
    /// A menu takes the keys (`❯ 1. …`).
    Menu,
    /// Neither (still drawing, or a screen we do not know).
    Other,
}

fn view(screen: &str) -> View {
    let menu = screen.lines().any(|l| {
        l.trim_start()
            .strip_prefix('❯')
            .map(str::trim_start)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()) && r.contains(". "))
    });
    if menu {
        View::Menu
    } else if screen.contains("esc to interrupt") {
        View::Working
    } else {
        input_line(screen).map_or(View::Other, |t| View::Input(t.to_string()))
    }
}

/// Stops the agent running as the pane's own process (bound to that
/// process: a later agent in the pane never gets our keys or SIGTERM).
/// Ok when no agent runs.
pub fn stop_agent(tmux: &Tmux, session: &str, timeout: Duration) -> Result<(), String> {
    let Some(pid) = tmux.agent_pid(session) else {
        return Ok(());
    };
    let exit = AgentExit::watch(pid);
    // Not ended yet: the pid is still this agent's.
    let sigterm = || {
        if !exit.ended() {
            crate::launch::sigterm(pid, session);
        }
    };
    stop_with(tmux, session, timeout, |d| exit.wait(d), sigterm)
}

/// The stop sequence for any kind of pane: `left(d)` waits up to `d` for
/// the agent to be gone (true once it is), `sigterm` sends it SIGTERM.
pub fn stop_with(
    tmux: &Tmux,
    session: &str,
    timeout: Duration,
    left: impl Fn(Duration) -> bool,
    sigterm: impl Fn(),
) -> Result<(), String> {
    let gentle = Instant::now() + timeout / 2;
    let mut escapes = 0;
    while !left(Duration::ZERO) && Instant::now() < gentle {
        let Ok(screen) = tmux.capture(session) else {
            break;
        };
        let now = view(&screen);
        match &now {
            View::Input(text) if text.is_empty() || text == "/exit" => {
                if text.is_empty() {
                    let _ = tmux.send_literal(session, "/exit");
                    let typed = |v: &View| *v == View::Input("/exit".into());
                    if !until_view(tmux, session, gentle, &left, typed) {
                        continue;
                    }
                }
                let _ = tmux.send_key(session, "Enter");
                if left(gentle.saturating_duration_since(Instant::now())) {
                    return Ok(());
                }
            }
            // `/exit` typed after text left in the input line (a paste whose
            // Enter never came) would submit both as a message.
            View::Input(_) => break,
            View::Working | View::Menu | View::Other => {
                if escapes == MAX_ESCAPES {
                    break;
                }
                escapes += 1;
                let _ = tmux.send_key(session, "Escape");
                until_view(tmux, session, gentle, &left, |v| *v != now);
            }
        }
    }
    if left(Duration::ZERO) {
        return Ok(());
    }
    log::info!("agent in {session} did not leave on /exit; sending SIGTERM");
    sigterm();
    if left(timeout / 2) {
        Ok(())
    } else {
        Err(format!(
            "the agent in {session} is still running after /exit and SIGTERM"
        ))
    }
}

/// `left` for an agent that is not the pane's own process: asks `gone`
/// every 25 ms up to the wait it is given.
pub fn asking(gone: impl Fn() -> bool) -> impl Fn(Duration) -> bool {
    move |d| {
        let deadline = Instant::now() + d;
        loop {
            if gone() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(25)));
        }
    }
}

/// Reads the screen until its view satisfies `done` (true), the agent left
/// or `deadline` passed (false).
fn until_view(
    tmux: &Tmux,
    session: &str,
    deadline: Instant,
    left: impl Fn(Duration) -> bool,
    done: impl Fn(&View) -> bool,
) -> bool {
    loop {
        match tmux.capture(session) {
            Ok(screen) if done(&view(&screen)) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(SCREEN_POLL);
        if wait.is_zero() || left(wait) {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views() {
        let rule = "─".repeat(30);
        assert_eq!(
            view(&format!("{rule}\n❯ \n{rule}\n")),
            View::Input(String::new())
        );
        assert_eq!(
            view(&format!("{rule}\n❯ /exit\n{rule}\n")),
            View::Input("/exit".into())
        );
        assert_eq!(
            view(&format!(
                "✻ Working… (esc to interrupt)\n{rule}\n❯ \n{rule}\n"
            )),
            View::Working
        );
        assert_eq!(
            view("What do you want to do?\n❯ 1. Stop and wait for limit to reset\n  2. Upgrade\n"),
            View::Menu
        );
        assert_eq!(view("starting…\n"), View::Other);
    }
}
