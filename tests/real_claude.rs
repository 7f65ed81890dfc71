//! Checks with the real Claude Code, run by hand (ignored otherwise, so
//! they never count as passed without running) with `CF_REAL_CLAUDE` naming
//! its binary (npm's `@anthropic-ai/claude-code-linux-x64` holds it). It
//! runs offline in a network namespace with only loopback (`unshare -n`,
//! root), against tests/model-standin.py.
//!
//! `CF_REAL_CLAUDE=/path/to/claude cargo test --test real_claude -- --ignored`

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use claude_failover::config::GuardMode;
use claude_failover::guard;
use claude_failover::worktree::Git;
use support::git;

fn real_claude() -> PathBuf {
    let p = PathBuf::from(
        std::env::var_os("CF_REAL_CLAUDE").expect("set CF_REAL_CLAUDE to the real claude binary"),
    );
    assert!(p.is_file(), "CF_REAL_CLAUDE={} is not a file", p.display());
    p
}

/// The guard as worktree mode deploys it: the script only; the hooks come
/// from the daemon's `--settings` file, and a blocked command is blocked.
#[test]
#[ignore = "needs the real claude: CF_REAL_CLAUDE=... cargo test --test real_claude -- --ignored"]
fn the_guard_blocks_in_a_worktree_with_the_real_claude() {
    let claude = real_claude();
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let repo = root.join("repo");
    fs::create_dir_all(repo.join(".claude")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("README"), "hi\n").unwrap();
    fs::write(repo.join(".claude/settings.json"), "{\"model\":\"opus\"}\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let g = Git::default();
    let probed = g.probe(&repo, "HEAD").unwrap();
    let wt = g
        .create(&probed, &root.join("worktrees"), "cf/", "check")
        .unwrap();
    guard::deploy_script(&wt.cwd, GuardMode::Enforce, None).unwrap();
    let state = root.join("state");
    fs::create_dir_all(&state).unwrap();
    let pinned = guard::write_pinned_settings(&state).unwrap();

    let ran = root.join("RAN");
    let command = format!("touch {}; git push --force origin main", ran.display());
    let log = root.join("model.log");
    let config = root.join("config");
    fs::create_dir_all(&config).unwrap();
    let script = root.join("run.sh");
    fs::write(
        &script,
        r#"set -u
ip link set lo up
python3 "$MODEL" 18555 "$COMMAND" "$LOG" & model=$!
sleep 0.5
cd "$WT" && "$CLAUDE" -p "run the check" --settings "$PINNED" --dangerously-skip-permissions --output-format json
rc=$?
kill $model
exit $rc
"#,
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("unshare")
        .args(["-n", "bash"])
        .arg(&script)
        .env(
            "MODEL",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model-standin.py"),
        )
        .env("COMMAND", &command)
        .env("LOG", &log)
        .env("WT", &wt.cwd)
        .env("CLAUDE", &claude)
        .env("PINNED", &pinned)
        .env("HOME", &root)
        .env("CLAUDE_CONFIG_DIR", &config)
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:18555")
        .env("ANTHROPIC_API_KEY", "sk-ant-offline")
        .env("IS_SANDBOX", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model_log = fs::read_to_string(&log).unwrap();
    assert!(
        model_log.contains("claude-failover guard blocked Bash")
            && model_log.contains("force-push"),
        "the block did not reach the model: {model_log}"
    );
    assert!(!ran.exists(), "the blocked command ran");
    // Neither the script nor its audit log shows as a change.
    assert!(wt
        .cwd
        .join(".claude/hooks/claude-failover.audit.log")
        .exists());
    assert_eq!(git(&wt.dir, &["status", "--porcelain"]), "");
}
