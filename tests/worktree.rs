//! The git side of worktree isolation, with real git in temp repositories.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use claude_failover::worktree::{Ending, Git, Worktree, WorktreeError};
use support::git;
use tempfile::TempDir;

struct Fixture {
    _tmp: TempDir,
    repo: PathBuf,
    root: PathBuf,
}

/// A repository with one commit on `main` (a README and a tracked
/// `.claude/settings.json`), and a folder for worktrees.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let repo = base.join("api");
    fs::create_dir_all(repo.join(".claude")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("README"), "hello\n").unwrap();
    fs::write(repo.join(".claude/settings.json"), "{\"model\":\"opus\"}\n").unwrap();
    git(&repo, &["add", "README", ".claude/settings.json"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    Fixture {
        _tmp: tmp,
        root: base.join("worktrees/api"),
        repo,
    }
}

fn create(f: &Fixture, stem: &str) -> Worktree {
    let g = Git::default();
    let repo = g.probe(&f.repo, "HEAD").unwrap();
    g.create(&repo, &f.root, "cf/", stem).unwrap()
}

/// What the guard writes into a worktree at a launch.
fn deploy_guard_files(dir: &Path) {
    let hooks = dir.join(".claude/hooks");
    fs::create_dir_all(&hooks).unwrap();
    let script = hooks.join("claude-failover.sh");
    let _ = fs::set_permissions(&script, fs::Permissions::from_mode(0o755));
    fs::write(&script, "#!/bin/bash\nexit 0\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o555)).unwrap();
    fs::write(hooks.join("claude-failover.audit.log"), "{}\n").unwrap();
}

fn commit_file(dir: &Path, name: &str) {
    fs::write(dir.join(name), "work\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", name]);
}

#[test]
fn probe_says_what_runs_in_place_and_what_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let g = Git::default();
    let e = g.probe(tmp.path(), "HEAD").unwrap_err();
    assert!(
        matches!(e, WorktreeError::NotARepo(_)) && e.runs_in_place(),
        "{e}"
    );
    assert!(e.to_string().ends_with("is not a git repository"), "{e}");

    let e = Git::new(tmp.path().join("no-such-git"))
        .probe(tmp.path(), "HEAD")
        .unwrap_err();
    assert!(
        matches!(e, WorktreeError::NoGit(_)) && e.runs_in_place(),
        "{e}"
    );

    let old = tmp.path().join("old-git");
    fs::write(&old, "#!/bin/sh\necho 'git version 2.16.0'\n").unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
    let e = Git::new(&old).probe(tmp.path(), "HEAD").unwrap_err();
    assert!(
        matches!(e, WorktreeError::TooOld(_)) && e.runs_in_place(),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "git version 2.16.0 is too old; worktrees need git 2.17 or newer"
    );

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    git(&empty, &["init", "-q", "-b", "main"]);
    let e = g.probe(&empty, "HEAD").unwrap_err();
    assert!(
        matches!(e, WorktreeError::NoBase { .. }) && !e.runs_in_place(),
        "{e}"
    );

    let f = fixture();
    let e = g.probe(&f.repo, "--output=/tmp/x").unwrap_err();
    assert!(matches!(e, WorktreeError::NoBase { .. }), "{e}");
    let e = g.probe(&f.repo, "nosuchbranch").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "isolation.base `nosuchbranch` names no commit in {}",
            f.repo.display()
        )
    );
}

#[test]
fn detached_head_fails_unless_base_names_a_branch() {
    let f = fixture();
    git(&f.repo, &["checkout", "-q", "--detach"]);
    let g = Git::default();
    let e = g.probe(&f.repo, "HEAD").unwrap_err();
    assert!(
        matches!(e, WorktreeError::Detached(_)) && !e.runs_in_place(),
        "{e}"
    );
    let repo = g.probe(&f.repo, "main").unwrap();
    assert_eq!(repo.base_commit, git(&f.repo, &["rev-parse", "main"]));
}

#[test]
fn dirty_checkout_is_noted_and_left_alone() {
    let f = fixture();
    fs::write(f.repo.join("README"), "operator's edit\n").unwrap();
    let g = Git::default();
    let repo = g.probe(&f.repo, "HEAD").unwrap();
    assert!(repo.dirty);
    let wt = g.create(&repo, &f.root, "cf/", "t").unwrap();
    assert_eq!(
        fs::read_to_string(wt.dir.join("README")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(f.repo.join("README")).unwrap(),
        "operator's edit\n"
    );
}

#[test]
fn a_task_gets_its_own_branch_and_the_operator_checkout_is_untouched() {
    let f = fixture();
    let head = git(&f.repo, &["rev-parse", "HEAD"]);
    let wt = create(&f, "fix login!");
    assert_eq!(wt.dir, f.root.join("fix-login"));
    assert_eq!(wt.cwd.as_os_str(), wt.dir.as_os_str(), "no trailing slash");
    assert_eq!(wt.branch, "cf/fix-login");
    assert_eq!(wt.base_commit, head);
    assert_eq!(
        git(&wt.dir, &["symbolic-ref", "HEAD"]),
        "refs/heads/cf/fix-login"
    );

    deploy_guard_files(&wt.cwd);
    assert_eq!(
        git(&wt.dir, &["status", "--porcelain"]),
        "",
        "guard files show"
    );
    commit_file(&wt.dir, "feature.rs");
    let files = git(&wt.dir, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(files, "feature.rs");
    assert_eq!(
        git(&wt.dir, &["log", "--format=%H", "-1", "HEAD~1"]),
        head,
        "the commit is on the task's branch, on the base"
    );
    // The tracked settings file is the one committed, and the operator's
    // checkout is where it was.
    assert_eq!(git(&wt.dir, &["diff", &head, "HEAD", "--", ".claude"]), "");
    assert_eq!(git(&f.repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&f.repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(&f.repo, &["status", "--porcelain"]), "");
    assert!(!f.repo.join("feature.rs").exists());
    // The exclude is added once, with what the user had kept.
    let exclude = f.repo.join(".git/info/exclude");
    let before = fs::read_to_string(&exclude).unwrap();
    let _second = create(&f, "other");
    assert_eq!(fs::read_to_string(&exclude).unwrap(), before);
    assert!(before.contains("**/.claude/hooks/claude-failover.sh"));
}

#[test]
fn a_tracked_guard_script_is_not_reported_as_changed() {
    let f = fixture();
    deploy_guard_files(&f.repo);
    git(&f.repo, &["add", "-f", ".claude/hooks/claude-failover.sh"]);
    git(
        &f.repo,
        &["commit", "-q", "-m", "guard committed in mode none"],
    );
    let wt = create(&f, "t");
    fs::set_permissions(
        wt.dir.join(".claude/hooks/claude-failover.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    deploy_guard_files(&wt.dir);
    fs::write(
        wt.dir.join(".claude/hooks/claude-failover.sh"),
        "#!/bin/bash\n# v2\n",
    )
    .unwrap();
    assert_eq!(git(&wt.dir, &["status", "--porcelain"]), "");
    let g = Git::default();
    assert!(matches!(g.finish(&wt).unwrap(), Ending::Removed(_)));
}

#[test]
fn name_clashes_get_a_distinct_name() {
    let f = fixture();
    git(&f.repo, &["branch", "cf/a"]);
    fs::create_dir_all(f.root.join("b")).unwrap();
    let a = create(&f, "a");
    assert_eq!(
        (a.dir.clone(), a.branch.as_str()),
        (f.root.join("a-2"), "cf/a-2")
    );
    let b = create(&f, "b");
    assert_eq!(
        (b.dir.clone(), b.branch.as_str()),
        (f.root.join("b-2"), "cf/b-2")
    );
    let b3 = create(&f, "b");
    assert_eq!(b3.dir, f.root.join("b-3"));
    assert_eq!(
        git(&f.repo, &["rev-parse", "cf/a"]),
        git(&f.repo, &["rev-parse", "main"])
    );
}

#[test]
fn clean_worktrees_go_and_changed_ones_stay() {
    let f = fixture();
    let g = Git::default();
    let clean = create(&f, "clean");
    deploy_guard_files(&clean.cwd);
    let ended = g.finish(&clean).unwrap();
    let Ending::Removed(s) = ended else {
        panic!("kept: {ended:?}")
    };
    assert_eq!((s.commits, s.uncommitted, s.changed.len()), (0, false, 0));
    assert!(!clean.dir.exists());
    assert!(git(&f.repo, &["branch", "--list", "cf/clean"]).is_empty());

    let committed = create(&f, "committed");
    commit_file(&committed.dir, "new.rs");
    fs::write(committed.dir.join("README"), "changed\n").unwrap();
    let Ending::Kept(s) = g.finish(&committed).unwrap() else {
        panic!("removed")
    };
    assert_eq!(s.branch, "cf/committed");
    assert_eq!(s.head, git(&committed.dir, &["rev-parse", "HEAD"]));
    assert_eq!((s.commits, s.uncommitted), (1, true));
    assert_eq!(s.changed, vec!["README", "new.rs"]);
    assert!(committed.dir.join("new.rs").exists());

    let untracked = create(&f, "untracked");
    fs::create_dir_all(untracked.dir.join("notes")).unwrap();
    fs::write(untracked.dir.join("notes/x.md"), "x\n").unwrap();
    let Ending::Kept(s) = g.finish(&untracked).unwrap() else {
        panic!("removed")
    };
    assert_eq!(
        (s.commits, s.changed.clone()),
        (0, vec!["notes/x.md".to_string()])
    );
    assert!(untracked.dir.join("notes/x.md").exists());
}

#[test]
fn the_sweep_removes_merged_worktrees_only() {
    let f = fixture();
    let g = Git::default();
    let merged = create(&f, "merged");
    deploy_guard_files(&merged.dir);
    commit_file(&merged.dir, "m.rs");
    let unmerged = create(&f, "unmerged");
    commit_file(&unmerged.dir, "u.rs");
    let busy = create(&f, "busy");
    let gone = create(&f, "gone");
    fs::remove_dir_all(&gone.dir).unwrap();
    git(&f.repo, &["merge", "-q", "--ff-only", "cf/merged"]);
    // The operator's own worktree on a merged branch is not ours to touch.
    let own = f.root.parent().unwrap().join("own");
    git(
        &f.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "cf/own",
            own.to_str().unwrap(),
            "main",
        ],
    );

    let removed = g
        .sweep(&f.repo, &f.root, "cf/", "HEAD", |d| d == busy.dir)
        .unwrap();
    assert_eq!(removed, vec![merged.dir.clone()]);
    assert!(!merged.dir.exists() && unmerged.dir.exists() && busy.dir.exists() && own.exists());
    assert!(git(&f.repo, &["branch", "--list", "cf/merged"]).is_empty());
    assert!(!git(&f.repo, &["branch", "--list", "cf/unmerged"]).is_empty());
    let list = git(&f.repo, &["worktree", "list", "--porcelain"]);
    assert!(
        !list.contains(gone.dir.to_str().unwrap()),
        "not pruned: {list}"
    );
    assert!(g.is_live(&busy).unwrap() && !g.is_live(&merged).unwrap());
}

#[test]
fn a_project_in_a_subfolder_starts_there_and_bare_repositories_work() {
    let f = fixture();
    let sub = f.repo.join("svc/web");
    fs::create_dir_all(&sub).unwrap();
    commit_file(&f.repo, "svc/web/index.html");
    let g = Git::default();
    let repo = g.probe(&sub, "HEAD").unwrap();
    let wt = g.create(&repo, &f.root, "cf/", "t").unwrap();
    assert_eq!(wt.cwd, wt.dir.join("svc/web"));
    assert!(wt.cwd.join("index.html").exists());
    deploy_guard_files(&wt.cwd);
    assert_eq!(git(&wt.dir, &["status", "--porcelain"]), "");

    let bare = f.repo.parent().unwrap().join("bare.git");
    git(
        f.repo.parent().unwrap(),
        &[
            "clone",
            "-q",
            "--bare",
            f.repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let repo = g.probe(&bare, "HEAD").unwrap();
    assert!(repo.bare);
    let wt = g.create(&repo, &f.root, "cf/", "b").unwrap();
    assert!(wt.dir.join("README").exists());
    assert!(matches!(g.finish(&wt).unwrap(), Ending::Removed(_)));
}
