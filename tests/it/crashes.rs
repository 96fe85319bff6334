//! Crashes: the pull and the proxy killed with SIGKILL at several points of a transfer
//! (the upstream is served over HTTP with a delay per request, so each point is reached
//! and seen before the kill). Afterwards the repository passes `git fsck`, no lock blocks
//! the next run, and the next run converges.

use crate::servers;
use crate::util::{descendants_with, eventually, running, TestEnv, GIT_MIRROR};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn kill(pid: i32) {
    // SAFETY: kill(2) on a descendant of a process this test started; no memory involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Waits for a descendant of `child` whose command line holds `words`, then kills the
/// processes `victim` picks (given the child's pid, among its descendants).
fn kill_when(child: &mut Child, words: &[&str], victim: impl Fn(i32) -> Vec<i32>) {
    let pid = child.id() as i32;
    let seen = eventually(PATIENCE, || !descendants_with(pid, words).is_empty());
    assert!(seen, "never saw {words:?} running");
    for pid in victim(pid) {
        kill(pid);
    }
    let _ = child.wait();
}

struct Upstream {
    env: TestEnv,
    up: std::path::PathBuf,
    url: String,
    _server: servers::Server,
}

fn slow_upstream() -> Upstream {
    let env = TestEnv::new();
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    env.git_ok(&root, &["init", "-q", "--bare", "-b", "main", "up.git"]);
    let server = servers::http(&env, &root, "mirror", "pw", Duration::from_millis(400));
    let url = format!("http://mirror:pw@127.0.0.1:{}/git/up.git", server.port);
    Upstream {
        up: root.join("up.git"),
        env,
        url,
        _server: server,
    }
}

fn settle_and_check(env: &TestEnv, up: &Path, down: &Path) {
    // Nothing is left that blocks or confuses the next run, which converges.
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("already being updated"), "{said}");
    assert_eq!(env.heads_and_tags(down), env.heads_and_tags(up));
    assert!(env
        .refs(down)
        .keys()
        .all(|n| !n.starts_with("refs/mirror-hooks/")));
    env.git_ok(down, &["fsck", "--no-progress", "--no-dangling"]);
}

#[test]
fn a_pull_killed_while_listing_or_fetching_leaves_nothing_broken() {
    for point in ["ls-remote", "fetch"] {
        let u = slow_upstream();
        let env = &u.env;
        let work = env.work("work");
        for i in 0..5 {
            env.commit(&work, &format!("c{i}"));
            env.git_ok(&work, &["branch", "-f", &format!("b{i}")]);
        }
        assert!(
            env.push(&work, &u.up, &["refs/heads/*:refs/heads/*"])
                .success
        );
        let down = env.downstream("down.git", &format!("[pull]\nurl = {:?}\n", u.url));

        let mut child = env
            .command(GIT_MIRROR)
            .args(["pull", "--now", down.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let down_arg = format!("--git-dir={}", down.display());
        let gits = std::cell::RefCell::new(Vec::new());
        kill_when(&mut child, &[&down_arg, point], |pid| {
            *gits.borrow_mut() = descendants_with(pid, &[&down_arg, point]);
            vec![pid]
        });
        // git itself dies with its parent (PR_SET_PDEATHSIG); wait until it has.
        let all_gone = eventually(PATIENCE, || gits.borrow().iter().all(|&p| !running(p)));
        assert!(all_gone, "git {point} outlived the killed pull");
        settle_and_check(env, &u.up, &down);
    }
    // Killed between its fetch and its transaction (too short a moment to hit by
    // timing): the fetched refs stay behind, and the next run, even one with nothing
    // to do, removes them.
    let u = slow_upstream();
    let env = &u.env;
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &u.up, &["HEAD:refs/heads/main"]).success);
    let down = env.downstream("down.git", &format!("[pull]\nurl = {:?}\n", u.url));
    settle_and_check(env, &u.up, &down);
    env.git_ok(
        &down,
        &["update-ref", "refs/mirror-hooks/pull/refs/heads/main", &one],
    );
    settle_and_check(env, &u.up, &down);
}

#[test]
fn a_proxy_killed_mid_push_leaves_both_sides_reconcilable() {
    let u = slow_upstream();
    let env = &u.env;
    let work = env.work("work");
    env.commit(&work, "base");
    assert!(env.push(&work, &u.up, &["HEAD:refs/heads/main"]).success);
    let down = env.downstream_pre_receive(
        "down.git",
        &format!("[upstream]\nurl = {:?}\n\n[pull]\n", u.url),
    );
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(out.status.success());

    env.commit(&work, "pushed while the hook dies");
    let mut pusher = env
        .command("git")
        .arg("-C")
        .arg(&work)
        .args(["push", down.to_str().unwrap(), "HEAD:refs/heads/main"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The hook's forwarding push is under way: kill the hook.
    kill_when(
        &mut pusher,
        &["push", "--force-with-lease", "--porcelain"],
        |pusher| {
            let hooks = descendants_with(pusher, &["hooks/pre-receive"]);
            assert!(
                !hooks.is_empty(),
                "the hook is not among the push's processes"
            );
            hooks
        },
    );
    // Whatever reached the upstream (all of it, or nothing), a pull makes this side equal.
    settle_and_check(env, &u.up, &down);
    env.git_ok(&u.up, &["fsck", "--no-progress", "--no-dangling"]);
}

#[test]
fn an_upstream_that_vanishes_mid_push_changes_nothing_here_and_a_pull_reconciles() {
    let env = TestEnv::new();
    let root = env.path("served");
    std::fs::create_dir_all(&root).unwrap();
    env.git_ok(&root, &["init", "-q", "--bare", "-b", "main", "up.git"]);
    let up = root.join("up.git");
    let server = servers::http(&env, &root, "mirror", "pw", Duration::from_millis(400));
    let toml = |port: u16| {
        format!("[upstream]\nurl = \"http://mirror:pw@127.0.0.1:{port}/git/up.git\"\n\n[pull]\n")
    };
    let down = env.downstream("down.git", &toml(server.port));
    let work = env.work("work");
    let base = env.commit(&work, "base");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);

    env.commit(&work, "while the upstream goes away");
    let pusher = env
        .command("git")
        .arg("-C")
        .arg(&work)
        .args(["push", down.to_str().unwrap(), "HEAD:refs/heads/main"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = pusher.id() as i32;
    let forwarding = eventually(PATIENCE, || {
        !descendants_with(pid, &["push", "--force-with-lease", "--porcelain"]).is_empty()
    });
    assert!(forwarding);
    drop(server);
    let out = pusher.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "a push the upstream never confirmed was accepted"
    );
    assert_eq!(
        env.rev(&down, "refs/heads/main"),
        Some(base),
        "nothing changed here"
    );

    // The upstream comes back (on another port); a pull makes both sides equal.
    let server = servers::http(&env, &root, "mirror", "pw", Duration::ZERO);
    std::fs::write(down.join("mirror.toml"), toml(server.port)).unwrap();
    settle_and_check(&env, &up, &down);
}
