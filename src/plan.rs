//! The dispatch plan: for each pending task, in dispatch order, its fate —
//! the session it gets now, or why it waits. One pure function, so the
//! dispatcher (which acts on the `Start`s), `tasks` and `scan --dry-run`
//! (which print every fate) can never disagree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::Config;
use crate::state::{SessionKind, SessionState, State};

/// What the planner knows of one dispatchable session, in pool order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Idle and rested: takes a task now.
    Free,
    /// Idle, but resting after a failed launch until this Unix second.
    Resting(u64),
    /// Working, starting, stopping, dead: not a candidate.
    Busy,
}

/// Whether dispatching is held, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub reason: String,
    pub until: Option<u64>,
}

/// What becomes of one pending task in this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Starts in this session.
    Start(String),
    /// Its project already runs `limit` tasks (`dispatcher.per_project`).
    ProjectBusy {
        running: u32,
        limit: u32,
    },
    /// Every session is taken; this one is the next to be rested.
    Resting {
        session: String,
        until: u64,
    },
    /// Every session is taken and none is about to come free.
    NoFreeSession,
    Paused(Pause),
}

impl Fate {
    /// A stable word for scripts (`tasks --json`).
    pub fn kind(&self) -> &'static str {
        match self {
            Fate::Start(_) => "session",
            Fate::ProjectBusy { .. } => "project_busy",
            Fate::Resting { .. } => "session_resting",
            Fate::NoFreeSession => "no_free_session",
            Fate::Paused(_) => "dispatch_paused",
        }
    }

    pub fn to_json(&self) -> Value {
        let rfc = crate::timefmt::rfc3339;
        match self {
            Fate::Start(s) => json!({"fate": self.kind(), "session": s}),
            Fate::ProjectBusy { running, limit } => {
                json!({"fate": self.kind(), "running": running, "limit": limit})
            }
            Fate::Resting { session, until } => {
                json!({"fate": self.kind(), "session": session, "until": rfc(*until)})
            }
            Fate::NoFreeSession => json!({"fate": self.kind()}),
            Fate::Paused(p) => json!({
                "fate": self.kind(),
                "reason": p.reason,
                "until": p.until.map(rfc),
            }),
        }
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rfc = crate::timefmt::rfc3339;
        match self {
            Fate::Start(s) => write!(f, "would start in {s}"),
            Fate::ProjectBusy { running, limit } => write!(
                f,
                "waits: project busy ({running} of {limit} running, dispatcher.per_project)"
            ),
            Fate::Resting { session, until } => {
                write!(f, "waits: {session} is resting until {}", rfc(*until))
            }
            Fate::NoFreeSession => f.write_str("waits: no free session"),
            Fate::Paused(Pause { reason, until }) => match until {
                Some(t) => write!(f, "waits: dispatch paused until {} ({reason})", rfc(*t)),
                None => write!(f, "waits: dispatch paused ({reason})"),
            },
        }
    }
}

/// Gives each task (`projects[i]` is task i's project, in dispatch order)
/// its fate. A task whose project is at its limit waits and the next task
/// of another project gets the session, so no session idles while other
/// work could run. `running` counts the tasks each project runs now;
/// `limit` gives a project's limit (`dispatcher.per_project`, or 1 for a
/// project that runs in place under worktree isolation); 0 means no limit.
pub fn assign(
    projects: &[&Path],
    slots: &[Slot],
    running: &HashMap<PathBuf, u32>,
    limit: impl Fn(&Path) -> u32,
    pause: Option<&Pause>,
) -> Vec<Fate> {
    if let Some(p) = pause {
        return vec![Fate::Paused(p.clone()); projects.len()];
    }
    let mut free = slots
        .iter()
        .filter(|s| s.state == SlotState::Free)
        .map(|s| s.name.clone());
    let mut resting: Vec<(u64, &str)> = slots
        .iter()
        .filter_map(|s| match s.state {
            SlotState::Resting(t) => Some((t, s.name.as_str())),
            _ => None,
        })
        .collect();
    resting.sort();
    let mut resting = resting.into_iter();
    let mut running = running.clone();
    projects
        .iter()
        .map(|&project| {
            let now = running.get(project).copied().unwrap_or(0);
            let limit = limit(project);
            if limit > 0 && now >= limit {
                return Fate::ProjectBusy {
                    running: now,
                    limit,
                };
            }
            let fate = match free.next() {
                Some(s) => Fate::Start(s),
                None => match resting.next() {
                    Some((until, s)) => Fate::Resting {
                        session: s.to_string(),
                        until,
                    },
                    None => return Fate::NoFreeSession,
                },
            };
            // A task that gets (or is next for) a session counts against
            // its project for the tasks after it.
            *running.entry(project.to_path_buf()).or_insert(0) += 1;
            fate
        })
        .collect()
}

/// The autonomous pool as slots, in pool order. A session the state does
/// not know yet is free: it is created before dispatching.
pub fn slots(cfg: &Config, st: &State, now: u64) -> Vec<Slot> {
    cfg.autonomous_names()
        .into_iter()
        .map(|name| {
            let state = match st.sessions.get(&name) {
                None => SlotState::Free,
                Some(s) if s.is_free(now) => SlotState::Free,
                Some(s) if s.kind == SessionKind::Autonomous && s.state == SessionState::Idle => {
                    match s.cooldown_until {
                        Some(t) if t > now => SlotState::Resting(t),
                        _ => SlotState::Busy,
                    }
                }
                Some(_) => SlotState::Busy,
            };
            Slot { name, state }
        })
        .collect()
}

/// The hold on dispatching the state records, if any: no usable account,
/// or launches held after an agent that would not start.
pub fn pause(st: &State, now: u64) -> Option<Pause> {
    if let Some(reason) = &st.dispatch_paused {
        return Some(Pause {
            reason: reason.clone(),
            until: st.paused_until,
        });
    }
    match (&st.launches_paused, st.launches_paused_until) {
        (Some(reason), Some(t)) if t > now => Some(Pause {
            reason: reason.clone(),
            until: Some(t),
        }),
        _ => None,
    }
}

/// Tasks each project runs now, from the sessions that hold one.
pub fn running(st: &State) -> HashMap<PathBuf, u32> {
    let mut out = HashMap::new();
    for t in st.sessions.values().filter_map(|s| s.task.as_ref()) {
        *out.entry(t.project.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, state: SlotState) -> Slot {
        Slot {
            name: name.into(),
            state,
        }
    }

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn a_busy_project_lets_the_next_project_have_the_session() {
        let slots = [slot("s1", SlotState::Free), slot("s2", SlotState::Free)];
        let fates = assign(
            &[p("/a"), p("/a"), p("/b")],
            &slots,
            &HashMap::new(),
            |_| 1,
            None,
        );
        assert_eq!(
            fates,
            vec![
                Fate::Start("s1".into()),
                Fate::ProjectBusy {
                    running: 1,
                    limit: 1
                },
                Fate::Start("s2".into()),
            ]
        );
        let unlimited = assign(&[p("/a"), p("/a")], &slots, &HashMap::new(), |_| 0, None);
        assert_eq!(
            unlimited,
            vec![Fate::Start("s1".into()), Fate::Start("s2".into())]
        );
    }

    #[test]
    fn running_tasks_count_against_their_project() {
        let slots = [slot("s1", SlotState::Free)];
        let running = HashMap::from([(PathBuf::from("/a"), 2)]);
        assert_eq!(
            assign(&[p("/a"), p("/b")], &slots, &running, |_| 2, None),
            vec![
                Fate::ProjectBusy {
                    running: 2,
                    limit: 2
                },
                Fate::Start("s1".into())
            ]
        );
    }

    #[test]
    fn without_a_free_session_tasks_wait_for_the_first_rested() {
        let slots = [
            slot("s1", SlotState::Busy),
            slot("s2", SlotState::Resting(200)),
            slot("s3", SlotState::Resting(100)),
        ];
        let fates = assign(
            &[p("/a"), p("/b"), p("/c")],
            &slots,
            &HashMap::new(),
            |_| 1,
            None,
        );
        assert_eq!(
            fates,
            vec![
                Fate::Resting {
                    session: "s3".into(),
                    until: 100
                },
                Fate::Resting {
                    session: "s2".into(),
                    until: 200
                },
                Fate::NoFreeSession,
            ]
        );
        assert_eq!(
            fates[0].to_string(),
            "waits: s3 is resting until 1970-01-01T00:01:40Z"
        );
        assert_eq!(fates[2].to_string(), "waits: no free session");
    }

    #[test]
    fn a_pause_holds_every_task() {
        let pause = Pause {
            reason: "no usable account".into(),
            until: Some(60),
        };
        let fates = assign(
            &[p("/a"), p("/b")],
            &[slot("s1", SlotState::Free)],
            &HashMap::new(),
            |_| 1,
            Some(&pause),
        );
        assert_eq!(fates, vec![Fate::Paused(pause.clone()); 2]);
        assert_eq!(
            fates[0].to_string(),
            "waits: dispatch paused until 1970-01-01T00:01:00Z (no usable account)"
        );
        assert_eq!(fates[0].to_json()["fate"], "dispatch_paused");
        assert_eq!(
            Fate::Start("s1".into()).to_json(),
            json!({"fate": "session", "session": "s1"})
        );
    }
}
