//! The repository's own `update` hook (where access-control layers enforce per-ref rules)
//! runs before anything is forwarded: what it refuses never reaches the upstream, and the
//! pusher reads the hook's own words.

use crate::util::TestEnv;
use std::path::{Path, PathBuf};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// An upstream, a downstream proxying to it, and a work tree with one commit on `main`
/// already on both sides.
fn setup() -> (TestEnv, PathBuf, PathBuf, PathBuf) {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    env.commit(&work, "base");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    (env, up, down, work)
}

/// An update hook at `path` that refuses the refs for which the shell test `refuse`
/// holds (`$1` ref, `$2` old, `$3` new), saying why on its stdout and its stderr.
fn refusing_hook(env: &TestEnv, path: &Path, refuse: &str) {
    env.script(
        path,
        &format!(
            "if {refuse}; then\n  echo \"policy: $1 may not be changed by you\"\n  echo \"policy: ask the release team\" >&2\n  exit 1\nfi\nexit 0"
        ),
    );
}

/// Branches and tags of the upstream and of the downstream.
fn sides(env: &TestEnv, up: &Path, down: &Path) -> (String, String) {
    (
        format!("{:?}", env.heads_and_tags(up)),
        format!("{:?}", env.heads_and_tags(down)),
    )
}

#[test]
fn a_branch_the_update_hook_refuses_is_not_forwarded_and_the_pusher_reads_why() {
    let (env, up, down, work) = setup();
    refusing_hook(
        &env,
        &down.join("hooks/update"),
        r#"[ "$1" = refs/heads/release ]"#,
    );
    let before = sides(&env, &up, &down);
    env.commit(&work, "release candidate");

    let pushed = env.push(&work, &down, &["HEAD:refs/heads/release"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);
    insta::assert_snapshot!(env.normalize(&pushed.stderr), @r"
    remote: policy: refs/heads/release may not be changed by you
    remote: policy: ask the release team
    remote: mirror-hooks: push refused: the update hook refused refs/heads/release (exit status 1); nothing was forwarded to the upstream or changed here.
    To [TMP]/down.git
     ! [remote rejected] HEAD -> release (refused by this server's rules)
    error: failed to push some refs to '[TMP]/down.git'
    ");

    // Other branches still go through, and the hook saw their pushed commits.
    let c = env.git_ok(&work, &["rev-parse", "HEAD"]);
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(c.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(c));
}

#[test]
fn a_tag_the_update_hook_refuses_is_not_forwarded() {
    let (env, up, down, work) = setup();
    refusing_hook(
        &env,
        &down.join("hooks/update"),
        r#"case "$1" in refs/tags/*) true;; *) false;; esac"#,
    );
    let before = sides(&env, &up, &down);
    env.git_ok(&work, &["tag", "-a", "-m", "release", "v1.0"]);

    let pushed = env.push(&work, &down, &["refs/tags/v1.0"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains(
            "mirror-hooks: push refused: the update hook refused refs/tags/v1.0 (exit status 1)"
        ),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);
}

#[test]
fn a_deletion_the_update_hook_refuses_is_not_forwarded() {
    let (env, up, down, work) = setup();
    assert!(env.push(&work, &down, &["HEAD:refs/heads/keep"]).success);
    refusing_hook(
        &env,
        &down.join("hooks/update"),
        &format!(r#"[ "$3" = {ZERO} ]"#),
    );
    let before = sides(&env, &up, &down);

    let pushed = env.push(&work, &down, &[":refs/heads/keep"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("the update hook refused refs/heads/keep"),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);
    assert!(env.rev(&up, "refs/heads/keep").is_some());
}

#[test]
fn one_refused_ref_refuses_the_whole_push_atomic_or_not() {
    let (env, up, down, work) = setup();
    refusing_hook(
        &env,
        &down.join("hooks/update"),
        r#"[ "$1" = refs/heads/main ] || [ "$1" = refs/tags/v2 ]"#,
    );
    let before = sides(&env, &up, &down);
    env.commit(&work, "two");
    env.git_ok(&work, &["tag", "v1"]);
    env.git_ok(&work, &["tag", "v2"]);
    let refspecs = [
        "HEAD:refs/heads/topic",
        "HEAD:refs/heads/main",
        "refs/tags/v1",
        "refs/tags/v2",
    ];

    for options in [&["--atomic"][..], &[]] {
        let pushed = env.push_with(&work, &down, options, &refspecs);
        assert!(!pushed.success, "{options:?}: {}", pushed.stderr);
        assert_eq!(
            sides(&env, &up, &down),
            before,
            "{options:?}: {}",
            pushed.stderr
        );
        let ours: Vec<&str> = pushed
            .stderr
            .lines()
            .filter(|l| l.contains("mirror-hooks:"))
            .map(str::trim_end)
            .collect();
        assert_eq!(
            ours,
            [
                "remote: mirror-hooks: push refused: the update hook refused refs/heads/main (exit status 1) and refs/tags/v2 (exit status 1); nothing was forwarded to the upstream or changed here.",
                "remote: mirror-hooks: a push is taken whole or not at all, so refs/heads/topic and refs/tags/v1 were not applied either.",
            ],
            "{options:?}: {}",
            pushed.stderr
        );
    }
}

#[test]
fn the_update_hook_is_found_under_core_hooks_path() {
    let (env, up, down, work) = setup();
    // The hook in hooks/ is not the one git runs once core.hooksPath is set.
    env.script(&down.join("hooks/update"), "exit 0");
    refusing_hook(
        &env,
        &down.join("policy/update"),
        r#"[ "$1" = refs/heads/main ]"#,
    );
    let elsewhere = env.path("site-hooks");
    refusing_hook(
        &env,
        &elsewhere.join("update"),
        r#"[ "$1" = refs/heads/next ]"#,
    );
    // Git runs hooks in a bare repository's own directory: a relative path starts there.
    env.git_ok(&down, &["config", "core.hooksPath", "policy"]);
    std::os::unix::fs::symlink(crate::util::PRE_RECEIVE, down.join("policy/pre-receive")).unwrap();
    // Two-phase: git routes every ref to the proc-receive it finds there.
    std::os::unix::fs::symlink(crate::util::PROC_RECEIVE, down.join("policy/proc-receive"))
        .unwrap();
    let before = sides(&env, &up, &down);
    env.commit(&work, "two");

    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("the update hook refused refs/heads/main (exit status 1)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);

    env.git_ok(
        &down,
        &["config", "core.hooksPath", elsewhere.to_str().unwrap()],
    );
    std::os::unix::fs::symlink(crate::util::PRE_RECEIVE, elsewhere.join("pre-receive")).unwrap();
    std::os::unix::fs::symlink(crate::util::PROC_RECEIVE, elsewhere.join("proc-receive")).unwrap();
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/next"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("the update hook refused refs/heads/next (exit status 1)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);
}

#[test]
fn the_update_hook_sees_the_commits_being_pushed() {
    let (env, up, down, work) = setup();
    // A policy on content: the pushed commits are still in git's quarantine.
    env.script(
        &down.join("hooks/update"),
        r#"case "$(git log -1 --format=%s "$3")" in
  WIP*) echo "policy: no work in progress on $1"; exit 1;;
esac"#,
    );
    let before = sides(&env, &up, &down);
    env.commit(&work, "WIP: half done");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("remote: policy: no work in progress on refs/heads/main"),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);

    let done = env.commit(&work, "done");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(done));
}

/// An update hook that records each call (`REF OLD NEW`) in `log`.
fn recording_hook(env: &TestEnv, repo: &Path, log: &Path) {
    env.script(
        &repo.join("hooks/update"),
        &format!(r#"echo "$1 $2 $3" >> {}"#, log.display()),
    );
}

#[test]
fn an_allowed_push_goes_through_and_the_hook_runs_twice_per_ref() {
    let (env, up, down, work) = setup();
    // Two-phase mode runs it once (twophase.rs): receive-pack skips it for routed refs.
    env.use_pre_receive_mode(&down);
    let log = env.path("update.log");
    recording_hook(&env, &down, &log);
    let old = env.git_ok(&work, &["rev-parse", "HEAD"]);
    let new = env.commit(&work, "two");
    env.git_ok(&work, &["tag", "v1"]);

    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main", "refs/tags/v1"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.heads_and_tags(&up), env.heads_and_tags(&down));
    assert_eq!(env.rev(&up, "refs/tags/v1"), Some(new.clone()));
    // Once by mirror-hooks before forwarding, once by git itself afterwards.
    let calls = std::fs::read_to_string(&log).unwrap();
    let main = format!("refs/heads/main {old} {new}");
    let tag = format!("refs/tags/v1 {ZERO} {new}");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [&main, &tag, &main, &tag],
        "{calls}"
    );
}

#[test]
fn without_an_upstream_only_git_runs_the_update_hook() {
    let env = TestEnv::new();
    let down = env.bare("down.git");
    env.install_hooks(&down);
    let log = env.path("update.log");
    recording_hook(&env, &down, &log);
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn an_update_hook_git_would_not_run_is_not_run() {
    let (env, up, down, work) = setup();
    // Not executable: git passes it over, and so do we.
    refusing_hook(&env, &down.join("hooks/update"), "true");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        down.join("hooks/update"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let c = env.commit(&work, "two");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(c.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(c));
}

#[test]
fn an_update_hook_without_an_interpreter_line_runs_with_the_shell_as_git_does() {
    let (env, up, down, work) = setup();
    let hook = down.join("hooks/update");
    std::fs::write(&hook, "echo \"policy: not today\"\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = sides(&env, &up, &down);
    env.commit(&work, "two");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("remote: policy: not today")
            && pushed
                .stderr
                .contains("the update hook refused refs/heads/main (exit status 3)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(sides(&env, &up, &down), before, "{}", pushed.stderr);
}
