//! `add` and `retry` on real queue folders.

use std::fs;

use claude_failover::config::Config;
use claude_failover::task::{Priority, Queue};
use claude_failover::taskcmd::{self, NewTask};

fn cfg(root: &std::path::Path, projects: &[&str]) -> Config {
    let list: Vec<String> = projects
        .iter()
        .map(|p| root.join(p).display().to_string())
        .collect();
    for p in &list {
        fs::create_dir_all(p).unwrap();
    }
    Config::parse(&format!("projects: [{}]\n", list.join(", ")), "c.yaml").unwrap()
}

#[test]
fn add_writes_a_task_the_dispatcher_reads_under_a_fresh_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &["api"]);
    let project = taskcmd::resolve_project(&c, Some("api")).unwrap();
    let t = NewTask {
        title: Some("Fix: the login page!".into()),
        priority: Some(Priority::High),
        model: Some("opus".into()),
        body: "Make the login page load.\n".into(),
        ..NewTask::default()
    };
    let a = taskcmd::add(&project, &t).unwrap();
    assert_eq!(a.file_name().unwrap(), "fix-the-login-page.md");
    let b = taskcmd::add(&project, &t).unwrap();
    assert_eq!(b.file_name().unwrap(), "fix-the-login-page-2.md");
    let q = Queue::new(&project);
    let task = q.load("fix-the-login-page.md").unwrap();
    assert_eq!(task.meta.priority, Priority::High);
    assert_eq!(task.meta.title.as_deref(), Some("Fix: the login page!"));
    assert_eq!(task.meta.model.as_deref(), Some("opus"));
    assert_eq!(task.body, "Make the login page load.");
    // A done task keeps its name: a new one does not take it.
    fs::create_dir_all(q.done_dir()).unwrap();
    fs::write(q.done_dir().join("x.md"), "old").unwrap();
    let c3 = taskcmd::add(
        &project,
        &NewTask {
            body: "x".into(),
            ..NewTask::default()
        },
    )
    .unwrap();
    assert_eq!(c3.file_name().unwrap(), "x-2.md");
    let names: Vec<String> = fs::read_dir(q.inbox())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temp file left: {names:?}");
    assert!(taskcmd::add(
        &project,
        &NewTask {
            body: "  \n".into(),
            ..NewTask::default()
        }
    )
    .unwrap_err()
    .contains("the task is empty"));
}

#[test]
fn projects_resolve_by_path_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &["api", "web"]);
    assert_eq!(
        taskcmd::resolve_project(&c, Some("web")).unwrap(),
        dir.path().join("web")
    );
    let e = taskcmd::resolve_project(&c, Some("nope")).unwrap_err();
    assert!(
        e.starts_with("`nope` is not a configured project; projects: "),
        "{e}"
    );
    let e = taskcmd::resolve_project(&c, None).unwrap_err();
    assert!(
        e.starts_with("2 projects are configured: name one with -p"),
        "{e}"
    );
}

#[test]
fn retry_moves_a_failed_task_back_and_keeps_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), &["api"]);
    let project = taskcmd::resolve_project(&c, None).unwrap();
    let q = Queue::new(&project);
    fs::create_dir_all(q.inbox()).unwrap();
    fs::write(q.pending_path("t.md"), "do it\n").unwrap();
    q.fail(
        "t.md",
        false,
        "3 launches failed; last: the agent exited with status 127: command not found",
    )
    .unwrap();
    let f = taskcmd::failed(&project);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].reason.as_deref(),
        Some("3 launches failed; last: the agent exited with status 127: command not found")
    );
    let e = taskcmd::retry(&project, "other").unwrap_err();
    assert!(
        e.contains("other.md is not in") && e.ends_with("failed there: t.md"),
        "{e}"
    );
    let back = taskcmd::retry(&project, "t").unwrap();
    assert_eq!(back, q.pending_path("t.md"));
    assert_eq!(fs::read_to_string(&back).unwrap(), "do it\n");
    assert!(!q.failed_dir().join("t.md").exists());
    assert!(q.failed_dir().join("t.md.error.retried").exists());
    assert!(taskcmd::failed(&project).is_empty());
    // Refused when the inbox has that name.
    fs::write(q.failed_dir().join("t.md"), "again\n").unwrap();
    assert!(taskcmd::retry(&project, "t.md")
        .unwrap_err()
        .contains("already in"));
    assert_eq!(fs::read_to_string(&back).unwrap(), "do it\n");
}

#[test]
fn slugs_are_plain() {
    assert_eq!(
        taskcmd::slug("  Überprüfe: die API (v2)!  \nmore"),
        "berpr-fe-die-api-v2"
    );
    assert_eq!(taskcmd::slug("!!!"), "task");
    assert_eq!(taskcmd::slug("notes.md"), "notes");
    assert!(taskcmd::slug(&"a".repeat(200)).len() <= 60);
}
