//! Watcher thread: keeps each pool session's state true. It applies the
//! hook events as they land (inotify on the events folder, and those queued
//! while the daemon was down) and checks tmux every `watcher.interval` as the
//! fallback. What it sees goes to `lifecycle` as events; the transitions
//! and what follows from them are there.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver};

use crate::bus::{Ctx, WatchMsg};
use crate::events::{self, GuardRecord, HookEvent, Kind};
use crate::fswatch::{FsEvent, FsWatch};
use crate::lifecycle::{handle, Event};
use crate::notice::{Notice, NoticeKind};
use crate::state::{Session, SessionKind, SessionState};
use crate::timefmt::{now_secs, rfc3339};
use crate::tmux::PaneInfo;

pub fn run(ctx: Arc<Ctx>, rx: Receiver<WatchMsg>) {
    let events_dir = ctx.config().events_dir();
    let (watch, fs_rx) = match FsWatch::new() {
        Ok((mut w, rx)) => match w.watch(&events_dir) {
            Ok(()) => (Some(w), rx),
            Err(e) => {
                log::error!(
                    "cannot watch {}: {e}; reading events every {}",
                    events_dir.display(),
                    ctx.config().watcher.interval
                );
                (None, crossbeam_channel::never())
            }
        },
        Err(e) => {
            log::error!("inotify unavailable ({e}); reading events every tick");
            (None, crossbeam_channel::never())
        }
    };
    let mut w = Watcher::default();
    w.apply_events(&ctx);
    w.check(&ctx);
    let mut next = Instant::now() + ctx.config().watcher.interval.get();
    loop {
        let timeout = next.saturating_duration_since(Instant::now());
        select! {
            recv(ctx.stop) -> _ => break,
            recv(fs_rx) -> ev => match ev {
                Ok(FsEvent::Changed { .. }) | Ok(FsEvent::Overflow) => w.apply_events(&ctx),
                Ok(FsEvent::DirGone(_)) => log::error!("the events folder {} went away", events_dir.display()),
                Err(_) => break,
            },
            recv(rx) -> m => match m {
                Ok(WatchMsg::Check) => {
                    w.apply_events(&ctx);
                    w.check(&ctx);
                }
                Ok(WatchMsg::Recycle(name)) => {
                    log::info!("recycling {name} (operator request)");
                    handle(&ctx, &name, Event::Recycle);
                }
                Ok(WatchMsg::Stopped(name)) => handle(&ctx, &name, Event::AgentGone("stopped".into())),
                Err(_) => break,
            },
            default(timeout) => {
                w.apply_events(&ctx);
                w.check(&ctx);
                next = Instant::now() + ctx.config().watcher.interval.get();
            }
        }
    }
    drop(watch);
}

/// One agent as the watcher tells them apart: its pane's pid and account.
type Agent = (Option<u32>, Option<String>);

/// What the watcher remembers between ticks (not persisted).
#[derive(Default)]
struct Watcher {
    /// Last screen per session, to tell a busy agent from one at rest.
    screens: HashMap<String, (u64, u64)>,
    /// Per session: the agent's pid and how many limit lines its screen
    /// showed that are old news. A resumed conversation redraws its history,
    /// limit line included; only a line beyond those counts.
    limit_base: HashMap<String, (Agent, usize)>,
}

impl Watcher {
    /// Applies every queued event file, oldest first, and removes it.
    fn apply_events(&mut self, ctx: &Ctx) {
        let dir = ctx.config().events_dir();
        let files = match events::pending(&dir) {
            Ok(f) => f,
            Err(e) => {
                log::error!("cannot read {}: {e}", dir.display());
                return;
            }
        };
        for path in files {
            match events::read(&path) {
                Ok(rec) => {
                    apply_record(ctx, rec);
                    ctx.state().metrics.events_applied += 1;
                    if let Err(e) = std::fs::remove_file(&path) {
                        log::warn!("cannot remove applied event {}: {e}", path.display());
                    }
                }
                Err(e) if path.exists() => {
                    log::warn!("rejecting event file {}: {e}", path.display());
                    ctx.state().metrics.events_dropped += 1;
                    events::reject(&path);
                }
                Err(_) => {}
            }
        }
    }

    /// The tmux fallback: session gone, pane dead, limit line, unguarded
    /// launches, stuck sessions, and `.agent-queue/status.json`.
    fn check(&mut self, ctx: &Ctx) {
        let cfg = ctx.config();
        // Sessions first, panes second: a pane seen dead is then never
        // older than the launch the session snapshot knows about.
        let sessions: Vec<Session> = ctx.state().sessions.values().cloned().collect();
        let panes = match ctx.tmux.panes() {
            Ok(p) => p,
            Err(e) => {
                log::error!("cannot list tmux panes: {e}");
                return;
            }
        };
        let now = now_secs();
        for s in sessions {
            let Some(pane) = panes.get(&s.name) else {
                handle(ctx, &s.name, Event::SessionGone);
                continue;
            };
            if s.state == SessionState::Dead {
                handle(ctx, &s.name, Event::SessionPresent);
            }
            self.check_pane(ctx, &s, pane, now);
            if let Some(why) = project_gone(&s) {
                handle(ctx, &s.name, Event::ProjectGone(why));
                continue;
            }
            let waited = cfg.watcher.waiting_timeout.get().as_secs();
            if s.state == SessionState::WaitingInput && now.saturating_sub(s.since) >= waited {
                let asked = s
                    .transcript_path
                    .as_deref()
                    .and_then(crate::conversation::pending_question)
                    .unwrap_or_else(|| "(the question is not in its transcript)".into());
                handle(ctx, &s.name, Event::WaitedTooLong(asked));
            }
            if s.state == SessionState::Working && !s.reported {
                let stuck = cfg.watcher.stuck_after.get().as_secs();
                if now.saturating_sub(s.since) >= stuck {
                    let why = format!(
                        "working on the same task for more than {}",
                        cfg.watcher.stuck_after
                    );
                    handle(ctx, &s.name, Event::Stuck(why));
                }
            }
        }
    }

    fn check_pane(&mut self, ctx: &Ctx, s: &Session, pane: &PaneInfo, now: u64) {
        use SessionState::*;
        let cfg = ctx.config();
        if pane.dead {
            self.screens.remove(&s.name);
            // Only a session with an agent to lose acts on a dead pane; then:
            // still the same launch, and still dead? (A new launch may have
            // started since the snapshot.) At rest nothing more is asked.
            if !matches!(s.state, Working | WaitingInput | Limited | Stopping) {
                return;
            }
            let same = ctx.state().sessions.get(&s.name).is_some_and(|now| {
                now.state == s.state
                    && now.task.as_ref().map(|t| &t.name) == s.task.as_ref().map(|t| &t.name)
            });
            if same && ctx.tmux.pane_info(&s.name).is_ok_and(|p| p.dead) {
                let why = format!(
                    "the agent {}",
                    crate::exitinfo::pane_words(pane.exit_status)
                );
                handle(ctx, &s.name, Event::AgentGone(why));
            }
            return;
        }
        let watched =
            matches!(s.state, Working | WaitingInput | Limited) || s.kind == SessionKind::Dedicated;
        if !watched {
            return;
        }
        let Ok(screen) = ctx.tmux.capture(&s.name) else {
            return;
        };
        let limits = cfg.agent.limit_pattern.0.find_iter(&screen).count();
        // An agent is its pane's process and its account; an agent in the
        // operator's shell keeps the shell's pid, so the account tells a
        // relaunch there. A relaunch resumes a conversation, history included.
        let agent = (pane.pid, s.account.clone());
        let base = match self.limit_base.get_mut(&s.name) {
            Some(b) if b.0 == agent => b,
            previous => {
                let relaunched = previous.is_some() && s.kind == SessionKind::Dedicated;
                let resumed = relaunched || pane.start_command.contains("--resume");
                self.limit_base
                    .entry(s.name.clone())
                    .insert_entry((agent, if resumed { limits } else { 0 }))
                    .into_mut()
            }
        };
        // Old lines scroll away: follow the count down, never up.
        base.1 = base.1.min(limits);
        if limits > base.1 {
            handle(ctx, &s.name, Event::LimitShown);
            return;
        }
        let hash = crate::http::fnv1a(screen.as_bytes());
        // A change counts as activity only against a screen seen after the
        // agent began waiting: the question being drawn is not an answer.
        let seen = self.screens.insert(s.name.clone(), (hash, now));
        let changed_while_waiting = seen.is_some_and(|(h, at)| h != hash && at > s.since);
        if s.state == WaitingInput && changed_while_waiting {
            handle(ctx, &s.name, Event::Active);
        }
        let Some(task) = &s.task else { return };
        if s.kind != SessionKind::Autonomous {
            return;
        }
        // A launch whose SessionStart never came: the hooks (the guard) do
        // not fire in this agent. Stop it rather than run unguarded.
        if !s.hooks_confirmed
            && now.saturating_sub(task.started) > cfg.agent.prompt_timeout.get().as_secs() + 1
        {
            unguarded(ctx, s);
            return;
        }
        if status_says_idle(&task.project, task.started) {
            log::info!(
                "{}: {} says idle",
                s.name,
                task.project.join(".agent-queue/status.json").display()
            );
            handle(ctx, &s.name, Event::TurnDone);
        }
    }
}

/// A running task whose project folder was removed: there is nowhere to
/// finish it.
fn project_gone(s: &Session) -> Option<String> {
    use SessionState::*;
    let t = s.task.as_ref()?;
    let running = matches!(s.state, Working | WaitingInput | Limited);
    (running && !t.project.is_dir()).then(|| {
        format!(
            "the project {} was removed while {} ran",
            t.project.display(),
            t.name
        )
    })
}

/// `.agent-queue/status.json` written after the launch says `idle`.
fn status_says_idle(project: &Path, since: u64) -> bool {
    let p = project.join(".agent-queue/status.json");
    let Ok(md) = std::fs::metadata(&p) else {
        return false;
    };
    let fresh = md.modified().map(crate::timefmt::secs_of).unwrap_or(0) > since;
    fresh
        && std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["state"] == "idle")
}

/// Finds the pool session an event is about: by name, or by tmux pane for
/// sessions the operator started by hand.
fn resolve_session(ctx: &Ctx, rec: &events::Record) -> Option<String> {
    if !rec.session.is_empty() {
        return ctx
            .state()
            .sessions
            .contains_key(&rec.session)
            .then(|| rec.session.clone());
    }
    if rec.pane.is_empty() {
        return None;
    }
    let name = ctx.tmux.session_of_pane(&rec.pane)?;
    ctx.state().sessions.contains_key(&name).then_some(name)
}

/// Applies one event record.
fn apply_record(ctx: &Ctx, rec: events::Record) {
    let Some(name) = resolve_session(ctx, &rec) else {
        log::debug!(
            "event for an unknown session ignored (session `{}`, pane `{}`)",
            rec.session,
            rec.pane
        );
        return;
    };
    match rec.kind {
        Kind::Guard(g) => guard_record(ctx, &name, g),
        Kind::Hook(ev) => {
            let current = ctx
                .state()
                .sessions
                .get(&name)
                .and_then(|s| s.claude_session_id.clone());
            // Events from an earlier agent in this session (a SessionEnd
            // after its /exit) must not touch the next task.
            let stale = match (&ev, ev.session_id(), &current) {
                (HookEvent::SessionStart { .. }, _, _) => false,
                (_, Some(id), Some(cur)) => !id.is_empty() && id != cur,
                _ => false,
            };
            if stale {
                log::debug!("{name}: ignoring {ev:?} from an earlier conversation");
                return;
            }
            // Persisted with the signal's transition just below: one write
            // per event, not two.
            if let Some(s) = ctx.state().sessions.get_mut(&name) {
                s.last_activity = rec.at / 1000;
            }
            let sig = match ev {
                HookEvent::SessionStart {
                    session_id,
                    transcript_path,
                    source,
                } => {
                    log::info!("{name}: SessionStart ({source}) {session_id}");
                    // The transcript lives under the account's config dir:
                    // how a session started by hand tells its account.
                    let account = transcript_path.as_ref().and_then(|t| {
                        ctx.config()
                            .accounts
                            .iter()
                            .find(|a| t.starts_with(&a.config_dir))
                            .map(|a| a.name.clone())
                    });
                    Event::Started {
                        claude_session_id: session_id,
                        transcript: transcript_path,
                        account,
                    }
                }
                HookEvent::Stop {
                    background: false, ..
                } => Event::TurnDone,
                HookEvent::Stop {
                    background: true, ..
                } => Event::Active,
                HookEvent::StopFailure { error, message, .. } => {
                    log::warn!("{name}: StopFailure {error}: {message}");
                    // A usage limit, or an account that cannot be used at
                    // all: move off the account. Otherwise it may be a
                    // short server throttle.
                    let account_out =
                        matches!(error.as_str(), "authentication_failed" | "billing_error");
                    if account_out
                        || (is_limit_error(&error) && is_usage_limit(ctx, &name, &message))
                    {
                        Event::LimitShown
                    } else {
                        Event::ApiError(error)
                    }
                }
                HookEvent::Notification { kind, message, .. }
                    if kind == "permission_prompt" || kind == "idle_prompt" =>
                {
                    Event::WaitingInput(format!("{kind}: {message}"))
                }
                HookEvent::Notification { .. } => Event::Active,
                HookEvent::SessionEnd { reason, .. } => {
                    Event::AgentGone(format!("SessionEnd ({reason})"))
                }
                HookEvent::Other { .. } => return,
            };
            handle(ctx, &name, sig);
        }
    }
}

fn is_limit_error(e: &str) -> bool {
    e == "rate_limit"
}

/// Whether a `rate_limit` StopFailure is a usage limit rather than a server
/// throttle. The event's own message says it, or the transcript does (claude
/// writes the limit message there); the pane comes last: claude draws the
/// limit line only after the event, and a small pane scrolls it away.
fn is_usage_limit(ctx: &Ctx, name: &str, message: &str) -> bool {
    let cfg = ctx.config();
    let limit = &cfg.agent.limit_pattern;
    if limit.is_match(message) {
        return true;
    }
    let transcript = ctx
        .state()
        .sessions
        .get(name)
        .and_then(|s| s.transcript_path.clone());
    if transcript.is_some_and(|t| {
        crate::conversation::limit_message(&t, |text| limit.is_match(text)).is_some()
    }) {
        return true;
    }
    ctx.tmux
        .capture(name)
        .is_ok_and(|screen| limit.is_match(&screen))
}

/// No SessionStart within the prompt timeout: the agent runs unguarded.
fn unguarded(ctx: &Ctx, s: &Session) {
    let why = "no SessionStart event from the agent: its hooks (the guard) do not fire there (untrusted folder or hooks disabled)";
    handle(ctx, &s.name, Event::Unguarded(why.into()));
}

/// A guard decision: audit line, metrics, notice, and the circuit breaker.
fn guard_record(ctx: &Ctx, name: &str, g: GuardRecord) {
    let cfg = ctx.config();
    let line = format!(
        "{} session={} decision={} rule={} tool={} cwd={:?} detail={:?}\n",
        rfc3339(now_secs()),
        name,
        g.decision,
        g.rule,
        g.tool,
        g.cwd,
        g.detail
    );
    let audit = cfg.state_dir.join("audit.log");
    if let Err(e) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&audit)
        .and_then(|mut f| f.write_all(line.as_bytes()))
    {
        log::error!("cannot append to {}: {e}", audit.display());
    }
    if g.decision != "block" {
        ctx.state().metrics.guard_warns += 1;
        return;
    }
    let now = now_secs();
    let window = cfg.guard.breaker_window.get().as_secs();
    // Not persisted (recent blocks and metrics): no state write.
    let count = {
        let mut st = ctx.state();
        st.metrics.guard_blocks += 1;
        *st.metrics
            .guard_blocks_by_rule
            .entry(g.rule.clone())
            .or_insert(0) += 1;
        st.sessions.get_mut(name).map(|s| {
            s.recent_blocks.push_back(now);
            while s
                .recent_blocks
                .front()
                .is_some_and(|&t| now.saturating_sub(t) > window)
            {
                s.recent_blocks.pop_front();
            }
            s.recent_blocks.len() as u32
        })
    };
    ctx.notify(
        Notice::new(
            NoticeKind::GuardBlock,
            format!("{name}: blocked {} ({}): {}", g.tool, g.rule, g.detail),
        )
        .field("session", name)
        .field("rule", g.rule.clone()),
    );
    let Some(count) = count else {
        return;
    };
    if count < cfg.guard.breaker_blocks {
        return;
    }
    let why = format!(
        "circuit breaker: {count} guard blocks within {}; the agent may be following injected instructions",
        cfg.guard.breaker_window
    );
    handle(ctx, name, Event::Breaker(why));
}
