//! How a pull writes: the objects of what changed are fetched by id into no ref, then
//! one ref transaction names only the refs that change; a protocol v0 server that will
//! not serve an object by id still gets its refs pulled (by name, through the private
//! namespace, which is left empty); leftovers of an older version's killed pull go.

use crate::servers;
use crate::util::TestEnv;
use std::path::{Path, PathBuf};

/// Pulls `down` now and fails the test, with what it said, unless it succeeds.
fn pull_ok(env: &TestEnv, down: &Path) {
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(down.join("mirror/log")).unwrap_or_default()
    );
}

fn private_refs(env: &TestEnv, repo: &Path) -> String {
    env.git_ok(repo, &["for-each-ref", "refs/mirror-hooks/"])
}

#[test]
fn a_pull_makes_one_transaction_naming_only_the_refs_it_changes() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream("down.git", &format!("[pull]\nurl = {up:?}\n"));
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &up,
            &[
                "HEAD:refs/heads/main",
                "HEAD:refs/heads/a",
                "HEAD:refs/heads/b"
            ]
        )
        .success
    );
    pull_ok(&env, &down);
    // Every ref transaction git commits here, as a reference-transaction hook sees it
    // (what a site's auditing or CI hook would see).
    let seen = env.path("transactions");
    env.script(
        &down.join("hooks/reference-transaction"),
        &format!(
            "[ \"$1\" = committed ] || {{ cat >/dev/null; exit 0; }}\n{{ echo begin; cat; }} >>{:?}",
            seen.to_str().unwrap()
        ),
    );

    let two = env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &up,
            &[
                "HEAD:refs/heads/a",
                "HEAD:refs/heads/b",
                "HEAD:refs/heads/c"
            ]
        )
        .success
    );
    pull_ok(&env, &down);

    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
    let said = std::fs::read_to_string(&seen).unwrap_or_default();
    let names: Vec<&str> = said
        .lines()
        .map(|line| line.split(' ').nth(2).unwrap_or(line))
        .collect();
    assert_eq!(
        names,
        ["begin", "refs/heads/a", "refs/heads/b", "refs/heads/c"],
        "one transaction of the three changed refs, nothing else:\n{said}"
    );
    assert!(
        said.lines().skip(1).all(|line| line.contains(&two)),
        "{said}"
    );
    assert_eq!(private_refs(&env, &down), "");
}

/// A `git daemon` serving `up.git` under `root`, whose access hook counts the
/// upload-pack connections in `root/connections` and, at connection `move_at`, first
/// points the upstream's main at what `refs/keep/next` holds: the tip a pull listed
/// then is no longer advertised when its fetch connects.
fn daemon_moving_main_at(env: &TestEnv, root: &Path, move_at: u32) -> servers::Server {
    let hook = env.path("access-hook");
    let count = root.join("connections");
    let up = root.join("up.git");
    env.script(
        &hook,
        &format!(
            "[ \"$1\" = upload-pack ] || exit 0\n\
             n=$(( $(cat {count:?} 2>/dev/null || echo 0) + 1 ))\n\
             echo $n >{count:?}\n\
             if [ $n -eq {move_at} ]; then\n\
             git --git-dir={up:?} update-ref refs/heads/main refs/keep/next || exit 1\n\
             fi"
        ),
    );
    servers::start(env, "git-daemon", |port| {
        let mut cmd = env.command("git");
        cmd.arg("daemon")
            .arg(format!("--base-path={}", root.display()))
            .arg(format!("--access-hook={}", hook.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(root);
        cmd
    })
}

fn connections(root: &Path) -> u32 {
    std::fs::read_to_string(root.join("connections"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_protocol_v0_server_that_refuses_fetch_by_id_still_has_its_refs_pulled() {
    let env = TestEnv::new();
    let root: PathBuf = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    env.git_ok(&root, &["init", "-q", "--bare", "-b", "main", "up.git"]);
    let up = root.join("up.git");
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    // The second pull's fetch (connection 4, after pull 1's listing and fetch and
    // pull 2's listing) finds main moved on.
    let daemon = daemon_moving_main_at(&env, &root, 4);
    let url = format!("git://127.0.0.1:{}/up.git", daemon.port);
    let down = env.downstream("down.git", &format!("[pull]\nurl = {url:?}\n"));
    // Protocol v0, where git asks only for what the server advertised (v2 servers
    // serve any object they have); no uploadpack.allow*SHA1InWant upstream.
    env.git_ok(&down, &["config", "protocol.version", "0"]);

    // The tips as listed are still advertised: fetched by id, over v0 too.
    pull_ok(&env, &down);
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
    assert_eq!(connections(&root), 2, "one listing, one fetch");

    env.commit(&work, "two");
    let next = env.commit(&work, "three, pushed while the pull runs");
    assert!(
        env.push(
            &work,
            &up,
            &["HEAD~:refs/heads/main", "HEAD:refs/keep/next"]
        )
        .success
    );
    pull_ok(&env, &down);
    assert_eq!(
        connections(&root),
        5,
        "a listing, a fetch by id the server refused, a fetch by name: {}",
        daemon.log()
    );
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(next));
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
    assert_eq!(private_refs(&env, &down), "");
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap();
    assert!(
        log.contains("would not serve the listed objects by id"),
        "{log}"
    );
    env.git_ok(&down, &["fsck", "--no-progress", "--no-dangling"]);
}

#[test]
fn fetched_refs_an_older_version_left_are_removed_even_when_packed() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream("down.git", &format!("[pull]\nurl = {up:?}\n"));
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    pull_ok(&env, &down);
    // What an older version killed between its fetch and its transaction left, then
    // packed by a `git gc`; the next pull has nothing to fetch.
    env.git_ok(
        &down,
        &["update-ref", "refs/mirror-hooks/pull/refs/heads/main", &one],
    );
    env.git_ok(&down, &["pack-refs", "--all"]);
    pull_ok(&env, &down);
    assert_eq!(private_refs(&env, &down), "");
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
}
