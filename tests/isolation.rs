//! Issue 13 end to end: the per-project limit and worktree isolation, with
//! real git in temp repositories, a private tmux server and the stand-in
//! claude. The stand-in never runs commands, so "the agent's work" is done
//! by the test with git in the agent's own directory while its turn lasts.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use claude_failover::bus::FailoverMsg;
use claude_failover::daemon::Daemon;
use claude_failover::state::SessionState;
use claude_failover::worktree::Worktree;
use serde_json::Value;
use support::{git, wait_for, Env};

const T: Duration = Duration::from_secs(25);

/// Makes project `p` a git repository with one commit: a README and a
/// tracked `.claude/settings.json` of the user's.
fn make_repo(env: &Env, p: usize) -> PathBuf {
    let dir = env.projects[p].clone();
    fs::create_dir_all(dir.join(".claude")).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    fs::write(dir.join("README"), "hello\n").unwrap();
    fs::write(dir.join(".claude/settings.json"), "{\"model\":\"opus\"}\n").unwrap();
    git(&dir, &["add", "README", ".claude/settings.json"]);
    git(&dir, &["commit", "-q", "-m", "first"]);
    dir
}

fn worktree_env(projects: usize, sessions: u32, per_project: u32) -> Env {
    let mut env = Env::new(projects, sessions);
    env.per_project = per_project;
    env.extra = "isolation: { mode: worktree }\n".into();
    env
}

fn start(env: &Env) -> Daemon {
    Daemon::start(env.config()).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
}

fn stop(d: Daemon) {
    d.shutdown(Duration::from_secs(3));
}

/// The worktree of the running task `name`, once its session works.
fn worktree_of(d: &Daemon, name: &str) -> Option<Worktree> {
    d.ctx.state().sessions.values().find_map(|s| {
        let t = s.task.as_ref()?;
        (t.name == name && s.state == SessionState::Working)
            .then(|| t.worktree.clone())
            .flatten()
    })
}

fn record(env: &Env, p: usize, name: &str) -> Value {
    let path = env.queue_dir(p, "done").join(format!("{name}.json"));
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Projects of the tasks running now, one entry per running task.
fn running_projects(d: &Daemon) -> Vec<PathBuf> {
    d.ctx
        .state()
        .sessions
        .values()
        .filter_map(|s| s.task.as_ref().map(|t| t.project.clone()))
        .collect()
}

#[test]
fn mode_none_runs_one_task_per_project_and_lends_the_session_to_another() {
    let mut env = Env::new(2, 2);
    env.per_project = 1;
    let d = start(&env);
    env.task(0, "a1.md", "a1 @fake:sleep=1.5");
    env.task(0, "a2.md", "a2 @fake:sleep=1.5");
    env.task(1, "b1.md", "b1 @fake:sleep=1.5");
    let (p0, p1) = (env.projects[0].clone(), env.projects[1].clone());
    let mut side_by_side = false;
    let mut waited = false;
    let deadline = Instant::now() + T;
    while env.files(0, "done").len() < 2 || env.files(1, "done").is_empty() {
        assert!(Instant::now() < deadline, "tasks not done in time");
        let running = running_projects(&d);
        let of0 = running.iter().filter(|p| **p == p0).count();
        assert!(of0 <= 1, "two tasks of one project at once: {running:?}");
        side_by_side |= of0 == 1 && running.contains(&p1);
        if of0 == 1 && !waited {
            let listed =
                claude_failover::commands::tasks(&d.ctx.config(), &d.ctx.state(), None, false);
            waited = listed.contains("waits: project busy (1 of 1 running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        side_by_side,
        "the second session never took the other project's task"
    );
    assert!(
        waited,
        "`tasks` never showed a task waiting for its project"
    );
    stop(d);
}

#[test]
fn worktree_mode_runs_a_projects_tasks_side_by_side_each_on_its_branch() {
    let env = worktree_env(1, 2, 2);
    let repo = make_repo(&env, 0);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    // The queue's own files aside (the daemon moves tasks there).
    let status = |r: &Path| git(r, &["status", "--porcelain", "--", ".", ":!.agent-queue"]);
    let status_before = status(&repo);
    let d = start(&env);
    env.task(0, "work.md", "work @fake:sleep=8");
    env.task(0, "idle.md", "idle @fake:sleep=2 @fake:bash=rm -rf ~");
    wait_for("both tasks working", T, || {
        worktree_of(&d, "work.md").is_some() && worktree_of(&d, "idle.md").is_some()
    });
    let work = worktree_of(&d, "work.md").unwrap();
    let idle = worktree_of(&d, "idle.md").unwrap();
    // `tasks` and `status` name each running task's worktree.
    let cfg = d.ctx.config();
    let listed = claude_failover::commands::tasks(&cfg, &d.ctx.state(), None, false);
    assert!(
        listed.contains(&format!("in {} on cf/work", work.dir.display())),
        "{listed}"
    );
    let doc = d.ctx.state().status_json(&cfg);
    let rows = doc["sessions"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|s| s["branch"] == "cf/work" && s["worktree"] == work.dir.display().to_string()),
        "{doc}"
    );
    assert_ne!(work.dir, idle.dir);
    assert_eq!(work.branch, "cf/work");
    assert_eq!(idle.branch, "cf/idle");
    assert_eq!(
        work.dir,
        env.state_dir.join("worktrees/proj0/work"),
        "default place"
    );
    // Each agent starts in its own worktree, guarded there.
    let cwds: Vec<String> = env
        .log(0, "start")
        .iter()
        .map(|r| r["cwd"].as_str().unwrap().to_string())
        .collect();
    assert!(cwds.contains(&work.cwd.display().to_string()), "{cwds:?}");
    assert!(cwds.contains(&idle.cwd.display().to_string()), "{cwds:?}");
    wait_for("the guard's verdict on rm -rf ~", T, || {
        env.log(0, "hook")
            .iter()
            .any(|h| h["hook_event_name"] == "PreToolUse" && h["exit_code"] == 2)
    });
    // The agent's work: a commit on its branch, while its turn lasts.
    fs::write(work.cwd.join("feature.txt"), "done\n").unwrap();
    git(&work.cwd, &["add", "-A"]);
    git(&work.cwd, &["commit", "-q", "-m", "feature"]);
    let commit = git(&work.cwd, &["rev-parse", "HEAD"]);
    assert_eq!(
        git(&work.cwd, &["show", "--name-only", "--format=", "HEAD"]),
        "feature.txt",
        "only the agent's file is in the commit"
    );
    wait_for("both tasks done", T, || env.files(0, "done").len() == 4);
    let r = record(&env, 0, "work.md");
    assert_eq!(r["worktree"], work.dir.display().to_string());
    assert_eq!(r["branch"], "cf/work");
    assert_eq!(r["commit"], commit.as_str());
    assert_eq!(r["changed"], serde_json::json!(["feature.txt"]));
    assert_eq!(r["kept"], true);
    assert!(
        work.dir.join("feature.txt").exists(),
        "a changed worktree is kept"
    );
    let r = record(&env, 0, "idle.md");
    assert_eq!(r["kept"], false);
    wait_for("the clean worktree removed", T, || !idle.dir.exists());
    assert!(git(&repo, &["branch", "--list", "cf/idle"]).is_empty());
    // The branch has the commit; the operator's checkout is as it was.
    assert_eq!(git(&repo, &["rev-parse", "cf/work"]), commit);
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(status(&repo), status_before);
    assert_eq!(
        git(&work.dir, &["diff", &head, "cf/work", "--", ".claude"]),
        ""
    );
    stop(d);
}

#[test]
fn a_project_that_is_not_a_repository_runs_in_place_one_at_a_time() {
    let env = worktree_env(1, 2, 2);
    let d = start(&env);
    env.task(0, "n1.md", "n1 @fake:sleep=1");
    env.task(0, "n2.md", "n2 @fake:sleep=1");
    let deadline = Instant::now() + T;
    while env.files(0, "done").len() < 4 {
        assert!(Instant::now() < deadline, "tasks not done in time");
        assert!(
            running_projects(&d).len() <= 1,
            "two agents in one checkout"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in env.log(0, "start") {
        assert_eq!(r["cwd"], env.projects[0].display().to_string());
    }
    assert!(record(&env, 0, "n1.md").get("worktree").is_none());
    stop(d);
}

#[test]
fn a_detached_head_sends_the_task_to_failed_with_the_reason() {
    let env = worktree_env(1, 1, 1);
    let repo = make_repo(&env, 0);
    git(&repo, &["checkout", "-q", "--detach"]);
    let d = start(&env);
    env.task(0, "d.md", "d");
    wait_for("d.md in failed/", T, || {
        env.files(0, "failed").contains(&"d.md.error".to_string())
    });
    let why = fs::read_to_string(env.queue_dir(0, "failed").join("d.md.error")).unwrap();
    assert!(
        why.contains("HEAD of") && why.contains("is detached"),
        "{why}"
    );
    assert!(env.log(0, "start").is_empty(), "an agent was started");
    stop(d);
}

#[test]
fn a_failover_resumes_in_the_same_worktree() {
    let env = worktree_env(1, 1, 1);
    make_repo(&env, 0);
    let d = start(&env);
    env.task(0, "long.md", "long @fake:sleep=600");
    wait_for("long.md working", T, || {
        worktree_of(&d, "long.md").is_some()
    });
    let wt = worktree_of(&d, "long.md").unwrap();
    wait_for("hooks confirmed", T, || {
        d.ctx.state().sessions.values().any(|s| s.hooks_confirmed)
    });
    d.ctx
        .to_failover
        .send(FailoverMsg::Manual {
            to: Some("backup".into()),
            reply: None,
        })
        .unwrap();
    wait_for("resumed on backup", T, || {
        env.log(1, "start").iter().any(|r| r["resumed"] == true)
    });
    let r = &env.log(1, "start")[0];
    assert_eq!(r["cwd"], wt.cwd.display().to_string());
    // The stand-in answers the move's note at once, which ends the task:
    // its record names the same worktree.
    wait_for("long.md done after the move", T, || {
        env.files(0, "done").contains(&"long.md.json".to_string())
    });
    assert_eq!(
        record(&env, 0, "long.md")["worktree"],
        wt.dir.display().to_string()
    );
    // The backup account trusts the worktree too.
    let cj: Value =
        serde_json::from_str(&fs::read_to_string(env.accounts[1].1.join(".claude.json")).unwrap())
            .unwrap();
    assert_eq!(
        cj["projects"][wt.cwd.display().to_string()]["hasTrustDialogAccepted"],
        true
    );
    stop(d);
}

#[test]
fn a_kill_dash_nine_restart_keeps_the_worktree() {
    let env = worktree_env(1, 1, 1);
    make_repo(&env, 0);
    let cfg = env.write_config();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_claude-failover"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    env.task(0, "k.md", "k @fake:sleep=4");
    let mut child = spawn();
    wait_for("k.md delivered", T, || !env.messages(0).is_empty());
    let cwd = env.log(0, "start")[0]["cwd"].as_str().unwrap().to_string();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut child = spawn();
    wait_for("k.md done after the restart", T, || {
        env.files(0, "done").contains(&"k.md.json".to_string())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(env.messages(0).len(), 1, "delivered again");
    let r = record(&env, 0, "k.md");
    assert_eq!(r["worktree"], cwd.as_str());
    let dirs: Vec<_> = fs::read_dir(env.state_dir.join("worktrees/proj0"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(dirs.len() <= 1, "a second worktree was made: {dirs:?}");
}

#[test]
fn the_janitor_removes_a_worktree_once_its_branch_is_merged() {
    let env = worktree_env(1, 1, 1);
    let repo = make_repo(&env, 0);
    let d = start(&env);
    env.task(0, "m.md", "m @fake:sleep=3");
    wait_for("m.md working", T, || worktree_of(&d, "m.md").is_some());
    let wt = worktree_of(&d, "m.md").unwrap();
    fs::write(wt.cwd.join("m.txt"), "m\n").unwrap();
    git(&wt.cwd, &["add", "-A"]);
    git(&wt.cwd, &["commit", "-q", "-m", "m"]);
    wait_for("m.md done", T, || {
        env.files(0, "done").contains(&"m.md.json".to_string())
    });
    claude_failover::janitor::sweep(&d.ctx);
    assert!(wt.dir.exists(), "an unmerged worktree was removed");
    git(&repo, &["merge", "-q", "--ff-only", "cf/m"]);
    claude_failover::janitor::sweep(&d.ctx);
    assert!(!wt.dir.exists(), "the merged worktree is still there");
    assert!(git(&repo, &["branch", "--list", "cf/m"]).is_empty());
    stop(d);
}
