//! SHA-256 repositories (`git init --object-format=sha256`) on every side: the proxy,
//! the pull and the push mirrors work with 64-hex ids as they do with SHA-1.

use crate::util::{eventually, TestEnv};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn sha256_env() -> TestEnv {
    TestEnv::with_object_format("sha256")
}

/// Fails unless `repo` really is a SHA-256 repository and `id` a SHA-256 id.
fn assert_sha256(env: &TestEnv, repo: &Path, id: &str) {
    assert_eq!(
        env.git_ok(repo, &["rev-parse", "--show-object-format"]),
        "sha256"
    );
    assert_eq!(id.len(), 64, "{id}");
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The status record `name` of `repo`.
fn record(env: &TestEnv, repo: &Path, name: &str) -> serde_json::Value {
    let out = env.git_mirror(&["status", "--json", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    all["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no record {name}: {all}"))
}

#[test]
fn the_proxy_forwards_to_a_sha256_upstream_and_refuses_a_stale_push() {
    let env = sha256_env();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    let base = env.commit(&work, "base");
    assert_sha256(&env, &down, &base);

    let pushed = env.push(
        &work,
        &down,
        &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.heads_and_tags(&up), env.heads_and_tags(&down));
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(base.clone()));

    // A deletion and a fast-forward go through together.
    let next = env.commit(&work, "next");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main", ":refs/heads/topic"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(next.clone()));
    assert_eq!(env.rev(&up, "refs/heads/topic"), None);
    assert_eq!(env.heads_and_tags(&up), env.heads_and_tags(&down));

    // Someone pushes to the upstream directly: a push here is refused, nothing of it
    // lands, and the upstream's commit is brought here before the answer.
    let other = env.work("other");
    env.git_ok(&other, &["pull", "-q", up.to_str().unwrap(), "main"]);
    let theirs = env.commit(&other, "theirs");
    assert!(env.push(&other, &up, &["HEAD:refs/heads/main"]).success);
    env.commit(&work, "mine");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("upstream refs/heads/main moved: it is no longer at"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(theirs.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(theirs));
    assert_ne!(env.rev(&down, "refs/heads/main"), Some(next));
}

#[test]
fn a_pull_from_a_sha256_upstream_fast_forwards_creates_tags_and_prunes() {
    let env = sha256_env();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {:?}\nprune = true\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    let pull = || {
        let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    };

    let one = env.commit(&work, "one");
    assert_sha256(&env, &up, &one);
    env.git_ok(&work, &["tag", "-a", "-m", "release", "v1"]);
    let pushed = env.push(
        &work,
        &up,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/topic",
            "refs/tags/v1",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    pull();
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(one));
    assert_eq!(
        env.git_ok(&down, &["cat-file", "-t", "refs/tags/v1"]),
        "tag"
    );

    // A fast-forward, a new branch, a new lightweight tag, a branch deleted upstream.
    let two = env.commit(&work, "two");
    env.git_ok(&work, &["tag", "light"]);
    let pushed = env.push(
        &work,
        &up,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/feature",
            "refs/tags/light",
            ":refs/heads/topic",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    pull();
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(two.clone()));
    assert_eq!(env.rev(&down, "refs/heads/feature"), Some(two.clone()));
    assert_eq!(env.rev(&down, "refs/tags/light"), Some(two));
    assert_eq!(env.rev(&down, "refs/heads/topic"), None);
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
    env.git_ok(&down, &["fsck", "--no-progress"]);
    let pull_record = record(&env, &down, "pull");
    assert_eq!(pull_record["update_status"], "finished", "{pull_record}");
    assert_eq!(pull_record["last_error"], serde_json::Value::Null);
}

#[test]
fn a_push_mirror_of_sha256_repositories_follows_updates_and_deletions() {
    let env = sha256_env();
    let mirror = env.bare("mirror.git");
    let down = env.downstream(
        "down.git",
        &format!(
            "[[push]]\nname = \"backup\"\nurl = {:?}\n",
            mirror.to_str().unwrap()
        ),
    );
    let work = env.work("work");
    let converges = |expected: &BTreeMap<String, String>| {
        let ok = eventually(PATIENCE, || &env.heads_and_tags(&mirror) == expected);
        assert!(
            ok,
            "the mirror has {:#?}, expected {:#?}; status: {}",
            env.heads_and_tags(&mirror),
            expected,
            record(&env, &down, "backup")
        );
    };

    let one = env.commit(&work, "one");
    assert_sha256(&env, &mirror, &one);
    env.git_ok(&work, &["tag", "-a", "-m", "release", "v1"]);
    let pushed = env.push(
        &work,
        &down,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/topic",
            "refs/tags/v1",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    converges(&env.heads_and_tags(&down));
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(one));

    // A fast-forward, a forced update and a deletion.
    let two = env.commit(&work, "two");
    env.git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = env.commit(&work, "rewritten");
    let pushed = env.push(
        &work,
        &down,
        &[
            &format!("{two}:refs/heads/main"),
            "+HEAD:refs/heads/topic",
            ":refs/tags/v1",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    converges(&env.heads_and_tags(&down));
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(two));
    assert_eq!(env.rev(&mirror, "refs/heads/topic"), Some(rewritten));
    assert_eq!(env.rev(&mirror, "refs/tags/v1"), None);
    assert!(eventually(PATIENCE, || record(&env, &down, "backup")
        ["update_status"]
        == "finished"));
}

#[test]
fn a_sha1_repository_and_a_sha256_upstream_are_told_apart_at_once() {
    let env = sha256_env();
    let up = env.bare("up.git");
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    env.git_ok(
        env.root(),
        &["init", "-q", "--bare", "--object-format=sha1", "down.git"],
    );
    let down = env.path("down.git");
    std::fs::write(
        down.join("mirror.toml"),
        format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    )
    .unwrap();
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    // Retrying cannot help: the pull says why and stops.
    let pull_record = record(&env, &down, "pull");
    assert_eq!(pull_record["update_status"], "hard_failed", "{pull_record}");
    let error = pull_record["last_error"].as_str().unwrap();
    assert!(
        error.contains("different object formats (SHA-1 and SHA-256)"),
        "{error}"
    );
    assert_eq!(env.refs(&down), BTreeMap::new());
}
