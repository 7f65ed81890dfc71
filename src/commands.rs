//! The operator's commands that need no daemon: `doctor`, `check-config`'s
//! warnings, `add`, `tasks` (and the same plan for `scan --dry-run`),
//! `retry`. Each prints for a person, or JSON for a script.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::args::AddArgs;
use crate::config::Config;
use crate::doctor::{self, Level, Scope};
use crate::plan::Fate;
use crate::state::State;
use crate::task::Task;
use crate::taskcmd::{self, NewTask};

/// `doctor [--json]`: every check; exit 1 when one fails.
pub fn doctor(cfg: &Config, json: bool) -> ExitCode {
    let found = doctor::checks(cfg, Scope::Full);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&doctor::report_json(&found)).unwrap_or_default()
        );
    } else {
        print!("{}", doctor::report(&found));
    }
    if found.iter().any(|f| f.level == Level::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `check-config`: the file is valid (or loading failed before this); what
/// this machine lacks is said as warnings.
pub fn check_config(cfg: &Config) -> ExitCode {
    for f in doctor::checks(cfg, Scope::Config) {
        if f.level != Level::Ok {
            eprintln!("warning: {}", f.message);
        }
    }
    println!("{}: ok", cfg.name());
    ExitCode::SUCCESS
}

/// `add`: the task's text from the words or stdin, into the project's inbox.
pub fn add(cfg: &Config, a: AddArgs) -> Result<ExitCode, String> {
    let project = taskcmd::resolve_project(cfg, a.project.as_deref())?;
    if let Some(m) = &a.model {
        crate::config::strict::model(m).map_err(|e| format!("--model: {e}"))?;
    }
    let body = match a.text.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .take(crate::task::MAX_TASK_BYTES + 1)
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the task from stdin: {e}"))?;
            s
        }
        Some(t) => t.to_string(),
    };
    let path = taskcmd::add(
        &project,
        &NewTask {
            title: a.title,
            priority: a.priority,
            model: a.model,
            name: a.name,
            body,
        },
    )?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `retry NAME`: failed/NAME back into the inbox.
pub fn retry(cfg: &Config, project: Option<&str>, name: &str) -> Result<ExitCode, String> {
    let project = taskcmd::resolve_project(cfg, project)?;
    let path = taskcmd::retry(&project, name)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Every pending task in dispatch order, with its fate in this state.
pub fn pending_fates(cfg: &Config, st: &State, now: u64) -> Vec<(Task, Fate)> {
    let (tasks, _) = crate::dispatcher::pending_tasks(cfg, true);
    let refs: Vec<&Task> = tasks.iter().collect();
    let limits = crate::dispatcher::project_limits(cfg, &refs);
    let projects: Vec<&Path> = tasks.iter().map(|t| t.project.as_path()).collect();
    let fates = crate::plan::assign(
        &projects,
        &crate::plan::slots(cfg, st, now),
        &crate::plan::running(st),
        |p| limits.get(p).copied().unwrap_or(cfg.dispatcher.per_project),
        crate::plan::pause(st, now).as_ref(),
    );
    tasks.into_iter().zip(fates).collect()
}

/// One pending line: priority, project, task, fate.
pub fn pending_line(t: &Task, f: &Fate) -> String {
    format!(
        "{:<8}  {}  {}  {f}",
        t.meta.priority.as_str(),
        t.project.display(),
        t.name
    )
}

/// `tasks [-p PROJECT] [--json]`: pending (in order, with fates), running,
/// failed (with the reason), recently done.
pub fn tasks(cfg: &Config, st: &State, only: Option<&Path>, json: bool) -> String {
    let now = crate::timefmt::now_secs();
    let keep = |p: &Path| only.is_none_or(|o| o == p);
    let pending: Vec<(Task, Fate)> = pending_fates(cfg, st, now)
        .into_iter()
        .filter(|(t, _)| keep(&t.project))
        .collect();
    let running: Vec<_> = st
        .sessions
        .values()
        .filter_map(|s| s.task.as_ref().map(|t| (s, t)))
        .filter(|(_, t)| keep(&t.project))
        .collect();
    let projects: Vec<_> = cfg.project_list().into_iter().filter(|p| keep(p)).collect();
    let failed: Vec<_> = projects
        .iter()
        .flat_map(|p| taskcmd::failed(p).into_iter().map(move |f| (p.clone(), f)))
        .collect();
    let done: Vec<_> = projects
        .iter()
        .flat_map(|p| {
            taskcmd::recent_done(p)
                .into_iter()
                .map(move |d| (p.clone(), d))
        })
        .collect();
    if json {
        let doc = json!({
            "pending": pending.iter().map(|(t, f)| {
                let mut v = f.to_json();
                v["task"] = json!(t.name);
                v["project"] = json!(t.project.display().to_string());
                v["priority"] = json!(t.meta.priority.as_str());
                v
            }).collect::<Vec<Value>>(),
            "running": running.iter().map(|(s, t)| json!({
                "session": s.name, "task": t.name,
                "project": t.project.display().to_string(),
                "since": crate::timefmt::rfc3339(t.started),
                "worktree": t.worktree.as_ref().map(|w| w.dir.display().to_string()),
                "branch": t.worktree.as_ref().map(|w| w.branch.clone()),
            })).collect::<Vec<Value>>(),
            "failed": failed.iter().map(|(p, f)| json!({
                "project": p.display().to_string(), "task": f.name,
                "reason": f.reason, "at": f.at,
            })).collect::<Vec<Value>>(),
            "done": done.iter().map(|(p, d)| json!({
                "project": p.display().to_string(), "task": d,
            })).collect::<Vec<Value>>(),
        });
        return serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    }
    let mut out = String::from("PENDING (in dispatch order)\n");
    let none = |out: &mut String, empty: bool| {
        if empty {
            out.push_str("  none\n");
        }
    };
    for (t, f) in &pending {
        out.push_str(&format!("  {}\n", pending_line(t, f)));
    }
    none(&mut out, pending.is_empty());
    out.push_str("RUNNING\n");
    for (s, t) in &running {
        let place = t
            .worktree
            .as_ref()
            .map(|w| format!("  in {} on {}", w.dir.display(), w.branch))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {}  {}  since {}{place}\n",
            s.name,
            t.project.display(),
            t.name,
            crate::timefmt::rfc3339(t.started)
        ));
    }
    none(&mut out, running.is_empty());
    out.push_str("FAILED\n");
    for (p, f) in &failed {
        out.push_str(&format!(
            "  {}  {}  {}\n",
            p.display(),
            f.name,
            f.reason.as_deref().unwrap_or("(no reason recorded)")
        ));
    }
    none(&mut out, failed.is_empty());
    out.push_str("DONE (most recent)\n");
    for (p, d) in &done {
        out.push_str(&format!("  {}  {d}\n", p.display()));
    }
    none(&mut out, done.is_empty());
    out
}
