//! Pushes of many refs at once: forwarded in ONE atomic leased push however many there
//! are (more than a command line can carry included), each ref checked against the value
//! the upstream must hold, in both modes.

use crate::util::TestEnv;
use std::path::{Path, PathBuf};

/// An upstream, a downstream forwarding to it (two-phase, or pre-receive mode), a work
/// tree with one commit.
fn setup(two_phase: bool) -> (TestEnv, PathBuf, PathBuf, PathBuf, String) {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let toml = format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap());
    let down = if two_phase {
        env.downstream("down.git", &toml)
    } else {
        env.downstream_pre_receive("down.git", &toml)
    };
    let work = env.work("work");
    let c = env.commit(&work, "one");
    (env, up, down, work, c)
}

/// Creates `names` in `repo` at `id`, in one transaction.
fn create_refs(env: &TestEnv, repo: &Path, names: &[String], id: &str) {
    let input: String = names.iter().map(|n| format!("create {n} {id}\n")).collect();
    env.update_refs(repo, &input);
}

/// How many tags with 200-byte names a push needs to carry more than this system's
/// whole argument limit (`getconf ARG_MAX`): one git push could not name them all.
fn more_than_a_command_line() -> usize {
    let out = std::process::Command::new("getconf")
        .arg("ARG_MAX")
        .output()
        .unwrap();
    let max: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Each ref takes a lease and a refspec, both naming it.
    max / (2 * 200) + 200
}

fn long_tag(i: usize) -> String {
    format!("refs/tags/{}-{i:06}", "t".repeat(180))
}

fn more_than_a_command_line_goes_in_one_atomic_push(two_phase: bool) {
    let (env, up, down, work, c) = setup(two_phase);
    let names: Vec<String> = (0..more_than_a_command_line()).map(long_tag).collect();
    create_refs(&env, &work, &names, &c);
    // One of them is already on the upstream, at another commit: the lease of that
    // creation fails, so the atomic push must leave every ref alone on both sides.
    let other = env.commit(&work, "two");
    env.git_ok(
        &work,
        &[
            "push",
            "-q",
            up.to_str().unwrap(),
            &format!("{other}:{}", names[7]),
        ],
    );
    let pushed = env.push_with(&work, &down, &["--atomic"], &["refs/tags/*:refs/tags/*"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains(&format!("{} (stale info)", names[7]))
            || pushed.stderr.contains(&names[7]),
        "the pusher is told which ref failed: {}",
        pushed.stderr
    );
    assert_eq!(
        env.rev(&up, &names[0]),
        None,
        "nothing else reached the upstream"
    );
    assert_eq!(env.rev(&up, &names[7]), Some(other.clone()));
    // Here, nothing of the push; only the upstream's tag, brought by the catch-up pull.
    let here: Vec<_> = env.heads_and_tags(&down).into_iter().collect();
    assert_eq!(here, [(names[7].clone(), other)]);

    // Once neither side has it any more, the same push lands whole on both.
    env.git_ok(&up, &["update-ref", "-d", &names[7]]);
    env.git_ok(&down, &["update-ref", "-d", &names[7]]);
    let pushed = env.push_with(&work, &down, &["--atomic"], &["refs/tags/*:refs/tags/*"]);
    assert!(pushed.success, "{}", pushed.stderr);
    for side in [&up, &down] {
        let tags = env.heads_and_tags(side);
        assert_eq!(tags.len(), names.len());
        assert!(tags.values().all(|v| *v == c));
    }
    // One line tells what the upstream took, not every name.
    let told = pushed
        .stderr
        .lines()
        .find(|l| l.contains("accepted"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        told.trim_end()
            .ends_with(&format!(" and {} more.", names.len() - 10)),
        "{told}"
    );
}

#[test]
fn more_than_a_command_line_goes_in_one_atomic_push_two_phase() {
    more_than_a_command_line_goes_in_one_atomic_push(true);
}

#[test]
fn more_than_a_command_line_goes_in_one_atomic_push_pre_receive_mode() {
    more_than_a_command_line_goes_in_one_atomic_push(false);
}

/// Updates, creations and deletions in one push, some names with characters that need
/// quoting in git's configuration: every ref's lease holds, and a moved one stops all.
fn every_ref_of_a_big_push_is_leased(two_phase: bool) {
    let (env, up, down, work, a) = setup(two_phase);
    let names = [
        "refs/heads/main",
        "refs/heads/we\"ird#x;y",
        "refs/heads/feature/one",
        "refs/tags/v1",
        "refs/heads/gone",
        "refs/heads/gone\"too;#",
    ];
    let all: Vec<String> = names.iter().map(|n| format!("HEAD:{n}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let pushed = env.push(&work, &down, &all);
    assert!(pushed.success, "{}", pushed.stderr);

    // Then: two updates, one creation, two deletions, a tag moved by force...
    let b = env.commit(&work, "two");
    let specs = [
        "HEAD:refs/heads/main",
        "HEAD:refs/heads/we\"ird#x;y",
        "HEAD:refs/heads/feature/two",
        "+HEAD:refs/tags/v1",
        ":refs/heads/gone",
        ":refs/heads/gone\"too;#",
    ];
    // ... while on the upstream, unknown to this side, `we"ird#x;y` moved.
    let elsewhere = env.commit(&work, "elsewhere");
    env.git_ok(&work, &["reset", "-q", "--hard", &b]);
    let moved = format!("{elsewhere}:refs/heads/we\"ird#x;y");
    env.git_ok(&work, &["push", "-q", "-f", up.to_str().unwrap(), &moved]);
    let pushed = env.push_with(&work, &down, &["--atomic"], &specs);
    assert!(!pushed.success, "{}", pushed.stderr);
    for name in ["refs/heads/main", "refs/heads/gone", "refs/tags/v1"] {
        assert_eq!(
            env.rev(&down, name),
            Some(a.clone()),
            "{name} unchanged here"
        );
    }
    assert_eq!(env.rev(&down, "refs/heads/feature/two"), None);
    // The moved ref was brought here by the catch-up pull that follows a refusal.
    let weird = "refs/heads/we\"ird#x;y";
    assert_eq!(env.rev(&down, weird), Some(elsewhere.clone()));
    assert_eq!(
        env.rev(&up, "refs/heads/main"),
        Some(a.clone()),
        "nothing forwarded"
    );
    assert_eq!(env.rev(&up, "refs/heads/gone"), Some(a.clone()));
    assert_eq!(env.rev(&up, "refs/heads/feature/two"), None);

    // This side now knows where the upstream's ref is, and the same push's leases hold
    // (`we"ird#x;y` goes back from `elsewhere` to `b`: a forced update).
    let specs = specs.map(|s| {
        if s.contains("we\"ird") {
            "+HEAD:refs/heads/we\"ird#x;y"
        } else {
            s
        }
    });
    let pushed = env.push_with(&work, &down, &["--atomic"], &specs);
    assert!(pushed.success, "{}", pushed.stderr);
    for side in [&up, &down] {
        assert_eq!(env.rev(side, "refs/heads/main"), Some(b.clone()));
        assert_eq!(env.rev(side, "refs/heads/we\"ird#x;y"), Some(b.clone()));
        assert_eq!(env.rev(side, "refs/heads/feature/two"), Some(b.clone()));
        assert_eq!(env.rev(side, "refs/tags/v1"), Some(b.clone()));
        assert_eq!(env.rev(side, "refs/heads/gone"), None);
        assert_eq!(env.rev(side, "refs/heads/gone\"too;#"), None);
        assert_eq!(env.rev(side, "refs/heads/feature/one"), Some(a.clone()));
    }
    // Nothing of the push is left behind in the repository.
    let left: Vec<_> = std::fs::read_dir(down.join("mirror/scratch"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_ref_of_a_big_push_is_leased_two_phase() {
    every_ref_of_a_big_push_is_leased(true);
}

#[test]
fn every_ref_of_a_big_push_is_leased_pre_receive_mode() {
    every_ref_of_a_big_push_is_leased(false);
}

/// Leased updates of `count` refs (above 64, the leases go by directory pattern): one
/// moved upstream stops them all; then they all land.
fn leased_updates(two_phase: bool, count: usize) {
    let (env, up, down, work, a) = setup(two_phase);
    let names: Vec<String> = (0..count)
        .map(|i| format!("refs/heads/team/b{i:03}"))
        .collect();
    let specs: Vec<String> = names.iter().map(|n| format!("HEAD:{n}")).collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let pushed = env.push(&work, &down, &specs);
    assert!(pushed.success, "{}", pushed.stderr);
    // The upstream's copy of one of them moves to `between`, which the push's `b` fast-
    // forwards: only its lease can stop the push.
    let between = env.commit(&work, "between");
    let b = env.commit(&work, "two");
    let up_path = up.to_str().unwrap();
    let moved = format!("{between}:{}", names[count / 2]);
    env.git_ok(&work, &["push", "-q", up_path, &moved]);
    let pushed = env.push_with(&work, &down, &["--atomic"], &specs);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert_eq!(
        env.rev(&up, &names[0]),
        Some(a.clone()),
        "nothing forwarded"
    );
    assert_eq!(env.rev(&up, &names[count / 2]), Some(between.clone()));
    assert_eq!(
        env.rev(&down, &names[count - 1]),
        Some(a.clone()),
        "nothing changed here"
    );

    // Back where this side saw it: every lease holds.
    env.git_ok(
        &work,
        &[
            "push",
            "-q",
            "-f",
            up_path,
            &format!("{a}:{}", names[count / 2]),
        ],
    );
    env.git_ok(&down, &["update-ref", &names[count / 2], &a]);
    let pushed = env.push_with(&work, &down, &["--atomic"], &specs);
    assert!(pushed.success, "{}", pushed.stderr);
    for name in &names {
        assert_eq!(
            both(&env, &up, &down, name),
            (Some(b.clone()), Some(b.clone()))
        );
    }
}

fn both(env: &TestEnv, up: &Path, down: &Path, name: &str) -> (Option<String>, Option<String>) {
    (env.rev(up, name), env.rev(down, name))
}

#[test]
fn leased_updates_two_phase() {
    leased_updates(true, 5);
    leased_updates(true, 100);
}

#[test]
fn leased_updates_pre_receive_mode() {
    leased_updates(false, 5);
    leased_updates(false, 100);
}

/// A scratch directory a killed push left is removed by the next push; one whose lock is
/// held (its process runs in another pid namespace, say) is left alone.
#[test]
fn scratch_directories_of_dead_pushes_are_removed_and_live_ones_kept() {
    let (env, up, down, work, c) = setup(true);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let home = down.join("mirror/scratch");
    let (left, live) = (
        home.join(format!("{dead}-1.git")),
        home.join(format!("{dead}-2.git")),
    );
    for dir in [&left, &live] {
        std::fs::create_dir_all(dir.join("refs")).unwrap();
    }
    let lock = std::fs::File::create(live.join("in-use.lock")).unwrap();
    lock.try_lock().unwrap();
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(c));
    assert!(!left.exists(), "the dead push's directory is removed");
    assert!(live.exists(), "a directory whose lock is held is kept");
    drop(lock);
}
