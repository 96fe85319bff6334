//! The pre-receive proxy against real repositories: what lands on which side, and what
//! the pusher is told.

use crate::util::{closed_port, TestEnv};
use std::path::{Path, PathBuf};

/// An upstream, a downstream proxying to it with `extra` lines in `[upstream]`, and a
/// work tree.
fn setup(extra: &str) -> (TestEnv, PathBuf, PathBuf, PathBuf) {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = {:?}\n{extra}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    (env, up, down, work)
}

fn both(env: &TestEnv, up: &Path, down: &Path, name: &str) -> (Option<String>, Option<String>) {
    (env.rev(up, name), env.rev(down, name))
}

#[test]
fn forwards_a_push_to_the_upstream() {
    let (env, up, down, work) = setup("");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(c.clone()), Some(c))
    );
    insta::assert_snapshot!(env.normalize(&pushed.stderr), @r"
    remote: mirror-hooks: the upstream [TMP]/up.git accepted refs/heads/main.
    To [TMP]/down.git
     * [new branch]      HEAD -> main
    ");
    let status = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["mirrors"][0]["name"], "upstream");
    assert_eq!(json["mirrors"][0]["update_status"], "finished");
}

#[test]
fn refs_outside_the_allowlist_stay_local() {
    let (env, up, down, work) =
        setup(r#"refs = ["refs/heads/main", "refs/heads/release/*", "!refs/heads/release/tmp/*"]"#);
    let c = env.commit(&work, "one");
    let pushed = env.push(
        &work,
        &down,
        &[
            "HEAD:refs/heads/feature",
            "HEAD:refs/heads/release/1.0/hotfix",
            "HEAD:refs/heads/release/tmp/x",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/feature"),
        (None, Some(c.clone()))
    );
    assert_eq!(
        both(&env, &up, &down, "refs/heads/release/1.0/hotfix"),
        (Some(c.clone()), Some(c.clone()))
    );
    assert_eq!(
        both(&env, &up, &down, "refs/heads/release/tmp/x"),
        (None, Some(c))
    );
}

#[test]
fn tags_are_forwarded_lightweight_and_annotated() {
    let (env, up, down, work) = setup("");
    let c = env.commit(&work, "one");
    env.git_ok(&work, &["tag", "light"]);
    env.git_ok(&work, &["tag", "-a", "-m", "release", "v1.0"]);
    let annotated = env.git_ok(&work, &["rev-parse", "refs/tags/v1.0"]);
    let pushed = env.push(&work, &down, &["--tags"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/tags/light"),
        (Some(c.clone()), Some(c))
    );
    assert_eq!(
        both(&env, &up, &down, "refs/tags/v1.0"),
        (Some(annotated.clone()), Some(annotated))
    );
    assert_eq!(
        env.git_ok(&up, &["cat-file", "-t", "refs/tags/v1.0"]),
        "tag"
    );
}

#[test]
fn a_stale_push_is_refused_and_changes_nothing() {
    let (env, up, down, work) = setup("");
    let base = env.commit(&work, "base");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);

    // Someone pushes to the upstream directly.
    let other = env.work("other");
    env.git_ok(&other, &["pull", "-q", up.to_str().unwrap(), "main"]);
    let theirs = env.commit(&other, "theirs");
    assert!(env.push(&other, &up, &["HEAD:refs/heads/main"]).success);

    let mine = env.commit(&work, "mine");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    // Refused, and before the answer this repository caught up with the upstream (no
    // [pull] table needed): the pusher's next fetch brings the upstream's commit.
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(theirs.clone()), Some(theirs.clone()))
    );
    assert_ne!(base, theirs);
    env.git_ok(&work, &["fetch", "-q", down.to_str().unwrap(), "main"]);
    env.git_ok(&work, &["rebase", "-q", "FETCH_HEAD"]);
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    let rebased = env.rev(&work, "HEAD");
    assert_ne!(rebased.as_deref(), Some(mine.as_str()));
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (rebased.clone(), rebased)
    );
    insta::assert_snapshot!(env.normalize(&pushed.stderr), @"
    remote: mirror-hooks: push refused: the upstream did not accept it.
    remote: mirror-hooks:   upstream refs/heads/main moved: it is no longer at [id].
    remote: mirror-hooks: nothing was changed, here or on the upstream.
    remote: mirror-hooks: this repository has just fetched the upstream's new commits.
    remote: mirror-hooks: next: fetch, rebase (or merge), push again.
    To [TMP]/down.git
     ! [remote rejected] HEAD -> main (refused by the upstream)
    error: failed to push some refs to '[TMP]/down.git'
    ");
}

#[test]
fn several_refs_with_one_stale_change_nothing_anywhere() {
    let (env, up, down, work) = setup("");
    let base = env.commit(&work, "base");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/dev"]
        )
        .success
    );
    // The upstream's dev moves behind our back.
    let moved = env.commit(&work, "elsewhere");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/dev"]).success);

    let (up_before, down_before) = (env.refs(&up), env.refs(&down));
    env.commit(&work, "mine");
    let pushed = env.push(
        &work,
        &down,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/dev",
            "HEAD:refs/heads/new",
        ],
    );
    assert!(!pushed.success);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(base.clone()), Some(base.clone()))
    );
    // Nothing of the push anywhere; the upstream's dev was brought here.
    assert_eq!(
        both(&env, &up, &down, "refs/heads/dev"),
        (Some(moved.clone()), Some(moved.clone()))
    );
    assert_ne!(moved, base);
    assert_eq!(both(&env, &up, &down, "refs/heads/new"), (None, None));
    assert!(
        pushed.stderr.contains("upstream refs/heads/dev moved"),
        "{}",
        pushed.stderr
    );
    assert!(pushed
        .stderr
        .contains("refs/heads/main was not forwarded because another ref was refused"));
    let mut caught_up = down_before;
    caught_up.insert("refs/heads/dev".to_owned(), moved);
    assert_eq!((env.refs(&up), env.refs(&down)), (up_before, caught_up));
}

#[test]
fn forced_updates_and_deletions_are_forwarded() {
    let (env, up, down, work) = setup("");
    env.commit(&work, "one");
    env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );

    env.git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = env.commit(&work, "rewritten");
    let pushed = env.push(
        &work,
        &down,
        &["+HEAD:refs/heads/main", ":refs/heads/topic"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(rewritten.clone()), Some(rewritten))
    );
    assert_eq!(both(&env, &up, &down, "refs/heads/topic"), (None, None));
}

#[test]
fn creating_a_ref_that_exists_upstream_is_refused() {
    let (env, up, down, work) = setup("");
    let theirs = env.commit(&work, "theirs");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/feature"]).success);
    env.git_ok(&work, &["reset", "-q", "--hard", "HEAD"]);
    let other = env.work("other");
    env.commit(&other, "mine");
    let pushed = env.push(&other, &down, &["HEAD:refs/heads/feature"]);
    assert!(!pushed.success);
    assert!(
        pushed
            .stderr
            .contains("refs/heads/feature already exists on the upstream; fetch it first."),
        "{}",
        pushed.stderr
    );
    // The upstream's branch was brought here before the answer.
    assert_eq!(
        both(&env, &up, &down, "refs/heads/feature"),
        (Some(theirs.clone()), Some(theirs))
    );
}

#[test]
fn a_retry_of_what_the_upstream_already_has_is_accepted() {
    let (env, up, down, work) = setup("");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    // As if an earlier proxied push reached the upstream but not this repository.
    let two = env.commit(&work, "two");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);

    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(two.clone()), Some(two))
    );
}

#[test]
fn an_unreachable_upstream_refuses_and_changes_nothing() {
    let env = TestEnv::new();
    let url = format!("git://127.0.0.1:{}/up.git", closed_port());
    let down = env.downstream("down.git", &format!("[upstream]\nurl = {url:?}\n"));
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert_eq!(env.rev(&down, "refs/heads/main"), None);
    let text = env.normalize(&pushed.stderr).replace(&url, "[URL]");
    assert!(
        text.contains("mirror-hooks: push refused: the upstream [URL] could not be reached"),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");

    let status = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["mirrors"][0]["update_status"], "failed");
    assert_eq!(json["mirrors"][0]["consecutive_failures"], 1);
}

#[test]
fn on_unreachable_accept_fails_open_and_records_it() {
    let env = TestEnv::new();
    let url = format!("git://127.0.0.1:{}/up.git", closed_port());
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = {url:?}\non_unreachable = \"accept\"\n"),
    );
    let work = env.work("work");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(c));
    assert!(
        pushed
            .stderr
            .contains("accepted here WITHOUT forwarding refs/heads/main"),
        "{}",
        pushed.stderr
    );

    let status = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let record = &json["mirrors"][0];
    assert_eq!(record["update_status"], "failed");
    assert_eq!(record["unforwarded_refs"][0], "refs/heads/main");
    assert!(record["last_error"]
        .as_str()
        .unwrap()
        .contains("on_unreachable"));
}

#[test]
fn a_broken_mirror_toml_refuses_every_push() {
    let env = TestEnv::new();
    let down = env.downstream(
        "down.git",
        "[upstream]\nurl = \"../up.git\"\nrefs = \"refs/heads/*\"\n",
    );
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/anything"]);
    assert!(!pushed.success);
    assert_eq!(env.rev(&down, "refs/heads/anything"), None);
    insta::assert_snapshot!(env.normalize(&pushed.stderr), @r#"
    remote: mirror-hooks: push refused: mirror.toml is invalid, so this push cannot be forwarded safely.
    remote: mirror-hooks: [TMP]/down.git/mirror.toml:3:8: upstream.refs: invalid type: string "refs/heads/*", expected a sequence
    remote: mirror-hooks: nothing was changed. A server administrator must fix mirror.toml (`git mirror doctor` explains).
    To [TMP]/down.git
     ! [remote rejected] HEAD -> anything (pre-receive hook declined)
    error: failed to push some refs to '[TMP]/down.git'
    "#);
}

#[test]
fn a_timeout_is_resolved_by_asking_the_upstream() {
    // The upstream's pre-receive never finishes in time: nothing landed, refused.
    let (env, up, down, work) = setup("timeout = \"1s\"");
    env.script(&up.join("hooks/pre-receive"), "sleep 30");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert_eq!(both(&env, &up, &down, "refs/heads/main"), (None, None));
    assert!(
        pushed
            .stderr
            .contains("not taken so far: it did not answer within 1s (upstream.timeout)"),
        "{}",
        pushed.stderr
    );

    // The upstream took the push but its post-receive hangs: ls-remote shows it landed.
    std::fs::remove_file(up.join("hooks/pre-receive")).unwrap();
    env.script(&up.join("hooks/post-receive"), "sleep 30");
    let c = env.git_ok(&work, &["rev-parse", "HEAD"]);
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(c.clone()), Some(c))
    );
}

#[test]
fn concurrent_pushes_of_one_ref_have_exactly_one_winner() {
    let (env, up, down, work) = setup("");
    // Both reach the upstream at once only in pre-receive mode; in two-phase mode the
    // second waits for the first one's local lock (twophase.rs).
    env.use_pre_receive_mode(&down);
    env.commit(&work, "base");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    // Each push waits in the upstream's hook until both are there (or 5 s passed).
    env.script(
        &up.join("hooks/pre-receive"),
        &format!(
            "touch {dir}/inside.$$; n=0; while [ $(ls {dir} | grep -c inside) -lt 2 ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done",
            dir = env.root().display()
        ),
    );
    let a = env.path("a");
    let b = env.path("b");
    env.git_ok(
        env.root(),
        &["clone", "-q", down.to_str().unwrap(), a.to_str().unwrap()],
    );
    env.git_ok(
        env.root(),
        &["clone", "-q", down.to_str().unwrap(), b.to_str().unwrap()],
    );
    let ca = env.commit(&a, "from a");
    let cb = env.commit(&b, "from b");
    let results: Vec<bool> = std::thread::scope(|s| {
        let ha = s.spawn(|| env.push(&a, &down, &["HEAD:refs/heads/main"]).success);
        let hb = s.spawn(|| env.push(&b, &down, &["HEAD:refs/heads/main"]).success);
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    let inside = std::fs::read_dir(env.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("inside.")
        })
        .count();
    assert_eq!(
        inside, 2,
        "both pushes reached the upstream at the same time"
    );
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    let winner = if results[0] { ca } else { cb };
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(winner.clone()), Some(winner))
    );
}

#[test]
fn a_refusing_chained_hook_stops_the_push_before_forwarding() {
    let (env, up, down, work) = setup("");
    env.script(
        &down.join("hooks/pre-receive.d/10-policy"),
        "while read old new ref; do echo \"policy: $ref is frozen\" >&2; done; exit 1",
    );
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert_eq!(both(&env, &up, &down, "refs/heads/main"), (None, None));
    assert!(
        pushed
            .stderr
            .contains("remote: policy: refs/heads/main is frozen"),
        "{}",
        pushed.stderr
    );
    assert!(pushed
        .stderr
        .contains("refused by the chained hook pre-receive.d/10-policy (exit status 1)"));
}

#[test]
fn local_rules_are_enforced_before_forwarding() {
    let (env, up, down, work) = setup("");
    env.commit(&work, "one");
    env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/keep"]
        )
        .success
    );
    let two = env.git_ok(&work, &["rev-parse", "HEAD"]);
    env.git_ok(&down, &["config", "receive.denyNonFastForwards", "true"]);
    env.git_ok(&down, &["config", "receive.denyDeletes", "true"]);

    env.git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    env.commit(&work, "rewritten");
    let pushed = env.push(&work, &down, &["+HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert!(
        pushed.stderr.contains("is not a fast-forward"),
        "{}",
        pushed.stderr
    );
    let pushed = env.push(&work, &down, &[":refs/heads/keep"]);
    assert!(!pushed.success);
    assert!(
        pushed
            .stderr
            .contains("deleting refs/heads/keep is not allowed"),
        "{}",
        pushed.stderr
    );
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(two.clone()), Some(two.clone()))
    );
    assert_eq!(
        both(&env, &up, &down, "refs/heads/keep"),
        (Some(two.clone()), Some(two))
    );
}

#[test]
fn only_allowlisted_push_options_are_forwarded() {
    let (env, up, down, work) = setup("push_options = [\"ci.skip\"]");
    env.git_ok(&down, &["config", "receive.advertisePushOptions", "true"]);
    env.git_ok(&up, &["config", "receive.advertisePushOptions", "true"]);
    env.script(
        &up.join("hooks/pre-receive"),
        "i=0; while [ $i -lt ${GIT_PUSH_OPTION_COUNT:-0} ]; do eval echo \\$GIT_PUSH_OPTION_$i >> options.txt; i=$((i+1)); done",
    );
    env.commit(&work, "one");
    let pushed = env.push_with(
        &work,
        &down,
        &["-o", "ci.skip", "-o", "secret=1"],
        &["HEAD:refs/heads/main"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        std::fs::read_to_string(up.join("options.txt")).unwrap(),
        "ci.skip\n"
    );
    assert!(pushed
        .stderr
        .contains("push option \"secret\" is not forwarded"));
}

#[test]
fn the_upstreams_own_refusal_reaches_the_pusher() {
    let (env, up, down, work) = setup("");
    env.script(
        &up.join("hooks/pre-receive"),
        "echo 'GL-HOOK-ERR: You are not allowed to push to main.' >&2; exit 1",
    );
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert_eq!(both(&env, &up, &down, "refs/heads/main"), (None, None));
    insta::assert_snapshot!(env.normalize(&pushed.stderr), @"
    remote: upstream: GL-HOOK-ERR: You are not allowed to push to main.
    remote: mirror-hooks: push refused: the upstream did not accept it.
    remote: mirror-hooks:   the upstream refused refs/heads/main: pre-receive hook declined.
    remote: mirror-hooks: nothing was changed, here or on the upstream.
    To [TMP]/down.git
     ! [remote rejected] HEAD -> main (refused by the upstream)
    error: failed to push some refs to '[TMP]/down.git'
    ");
}

#[test]
fn retrying_a_deletion_the_upstream_already_made_is_accepted() {
    let (env, up, down, work) = setup("");
    env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    // As if an earlier proxied deletion reached the upstream but not this repository.
    assert!(env.push(&work, &up, &[":refs/heads/topic"]).success);
    let pushed = env.push(&work, &down, &[":refs/heads/topic"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(both(&env, &up, &down, "refs/heads/topic"), (None, None));
}

#[test]
fn deleting_the_default_branch_is_refused_before_forwarding() {
    let (env, up, down, work) = setup("");
    let c = env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    env.git_ok(&up, &["config", "receive.denyDeleteCurrent", "ignore"]);
    let pushed = env.push(&work, &down, &[":refs/heads/main"]);
    assert!(!pushed.success);
    assert!(
        pushed
            .stderr
            .contains("refs/heads/main is this repository's default branch (HEAD)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(
        both(&env, &up, &down, "refs/heads/main"),
        (Some(c.clone()), Some(c))
    );
}
