//! Adversarial review of issue 14 (speed at scale): one durable job per push fanned out by
//! the worker, forwarded values noted in `mirror/upstream-refs.seen`, pushes from a
//! scratch directory. Each test states what a user must be able to rely on.

use crate::util::{eventually, TestEnv};
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn mirror_toml(name: &str, url: &Path) -> String {
    format!(
        "[[push]]\nname = {name:?}\nurl = {:?}\n",
        url.to_str().unwrap()
    )
}

fn status(env: &TestEnv, repo: &Path) -> serde_json::Value {
    let out = env.git_mirror(&["status", "--json", repo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn record(env: &TestEnv, repo: &Path, name: &str) -> serde_json::Value {
    let all = status(env, repo);
    all["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no record {name}: {all}"))
}

/// A push mirror added to mirror.toml gets the pushes made after it was added, even while
/// a worker started before the edit is still running. Here that worker (its mirror is
/// slow) fans out the next push's job with the configuration it read at its start, takes
/// the new mirror for one "no longer in mirror.toml" and drops its share of the job; the
/// new mirror's own worker then finds nothing queued.
#[test]
fn a_mirror_added_while_a_worker_runs_gets_the_next_push() {
    let env = TestEnv::new();
    let a = env.bare("a.git");
    let c = env.bare("c.git");
    // Mirror a accepts only once the test opens the gate; it says when it is waiting.
    let gate = env.path("gate");
    let entered = env.path("entered");
    env.script(
        &a.join("hooks/pre-receive"),
        &format!(
            "touch {}\nn=0\nwhile [ ! -e {} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done",
            entered.display(),
            gate.display()
        ),
    );
    let down = env.downstream("down.git", &mirror_toml("a", &a));
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    // a's worker (it read mirror.toml when it started) is pushing, held at the gate.
    assert!(eventually(PATIENCE, || entered.exists()));

    // The administrator adds mirror c.
    std::fs::write(
        down.join("mirror.toml"),
        mirror_toml("a", &a) + &mirror_toml("c", &c),
    )
    .unwrap();
    // A chained post-receive hook that takes a moment (a CI trigger, say).
    env.script(&down.join("hooks/post-receive.d/ci"), "sleep 3");

    // The next push, made while a's worker still runs.
    let two = env.commit(&work, "two");
    let pusher = env
        .command("git")
        .arg("-C")
        .arg(&work)
        .args(["push", down.to_str().unwrap(), "HEAD:refs/heads/two"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its job is queued (post-receive wrote it): a's push finishes now.
    let incoming = down.join("mirror/queue/_incoming");
    assert!(eventually(PATIENCE, || std::fs::read_dir(&incoming)
        .map(|d| d
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json")))
        .unwrap_or(false)));
    std::fs::write(&gate, "").unwrap();
    let out = pusher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // c, configured before the push was made, gets it.
    let got = eventually(PATIENCE, || {
        env.rev(&c, "refs/heads/two") == Some(two.clone())
    });
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap_or_default();
    assert!(
        got,
        "mirror c never got refs/heads/two; c has {:?}; status of c: {}; log:\n{log}",
        env.refs(&c),
        record(&env, &down, "c")
    );
}

/// Lines in `mirror/upstream-refs.seen`, the values forwarded pushes noted.
fn noted_lines(down: &Path) -> usize {
    std::fs::read_to_string(down.join("mirror/upstream-refs.seen"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// What forwarded pushes note about the upstream is folded into the record by the next
/// pull, so the notes do not pile up: every pull (and status, doctor) reads all of them.
/// Here every change reaches the upstream through this repository, so each pull finds
/// nothing to do and takes the path that writes nothing; the notes are never folded and
/// grow by one line per forwarded ref for ever.
#[test]
fn notes_of_forwarded_pushes_do_not_pile_up_across_pulls() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!(
            "[upstream]\nurl = {:?}\nrefs = [\"refs/heads/*\"]\n\n[pull]\nrefs = [\"refs/heads/*\"]\n",
            up.to_str().unwrap()
        ),
    );
    let work = env.work("work");
    let mut before = 0;
    for round in 0..3 {
        for i in 0..3 {
            env.commit(&work, &format!("{round}-{i}"));
            let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
            assert!(pushed.success, "{}", pushed.stderr);
        }
        assert_eq!(
            env.rev(&up, "refs/heads/main"),
            env.rev(&down, "refs/heads/main")
        );
        // The scheduled pull: nothing to bring.
        let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let after = noted_lines(&down);
        assert!(
            after <= before.max(1),
            "round {round}: mirror/upstream-refs.seen grew from {before} to {after} lines across a pull"
        );
        before = after;
    }
}

/// A note cut short (a crash or a full disk in the middle of the append) must cost at
/// most its own value. Here the next forwarded push's note is appended to the cut line,
/// so that line no longer reads as `ID NAME` and is skipped: the record keeps the old
/// value of refs/heads/main, and status reports main as a push the upstream took but this
/// repository did not apply, while both sides hold the same commit.
#[test]
fn a_note_cut_short_does_not_swallow_the_next_forwarded_push() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!(
            "[upstream]\nurl = {:?}\nrefs = [\"refs/heads/*\"]\n",
            up.to_str().unwrap()
        ),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    // The append of another push was cut short after a few bytes of its id.
    let seen = down.join("mirror/upstream-refs.seen");
    assert!(seen.exists(), "the forwarded push noted nothing");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&seen)
        .unwrap();
    use std::io::Write;
    file.write_all(b"5e4f0c").unwrap();
    drop(file);

    let two = env.commit(&work, "two");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(two.clone()));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(two));

    let upstream = record(&env, &down, "upstream");
    assert_eq!(
        upstream["unapplied_refs"],
        serde_json::json!([]),
        "both sides hold the same main, yet status says: {upstream:#}"
    );
    assert_ne!(upstream["update_status"], "failed", "{upstream:#}");
}

/// Creates `names` in `repo` at `id`, in one transaction.
fn create_refs(env: &TestEnv, repo: &Path, names: &[String], id: &str) {
    let input: String = names.iter().map(|n| format!("create {n} {id}\n")).collect();
    env.update_refs(repo, &input);
}

/// A push of more refs than a command line holds, when no scratch directory can be made
/// (here `mirror/scratch` is in the way; in the field: `mirror/scratch` made by another
/// user, a root push or a second account of a group-shared repository, so this user
/// cannot create a directory in it). The proxy checked that it can forward them (it can,
/// staged), then the push falls back to the command line, cannot carry them, and that
/// local limitation is taken for an unreachable upstream: with `on_unreachable =
/// "accept"` the push is accepted here WITHOUT forwarding (the upstream was reachable all
/// along), and no later pull can forward it either.
#[test]
fn a_push_that_cannot_be_staged_is_not_taken_for_an_unreachable_upstream() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!(
            "[upstream]\nurl = {:?}\non_unreachable = \"accept\"\n",
            up.to_str().unwrap()
        ),
    );
    let work = env.work("work");
    let c = env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    assert_eq!(env.rev(&up, "refs/heads/main"), Some(c.clone()));
    std::fs::remove_dir_all(down.join("mirror/scratch")).ok();
    std::fs::write(down.join("mirror/scratch"), "").unwrap();

    let out = std::process::Command::new("getconf")
        .arg("ARG_MAX")
        .output()
        .unwrap();
    let max: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let names: Vec<String> = (0..max / 400 + 200)
        .map(|i| format!("refs/tags/{}-{i:06}", "t".repeat(180)))
        .collect();
    create_refs(&env, &work, &names, &c);
    let pushed = env.push_with(&work, &down, &["--atomic"], &["refs/tags/*:refs/tags/*"]);
    let (here, there) = (env.rev(&down, &names[0]), env.rev(&up, &names[0]));
    let told: Vec<String> = pushed
        .stderr
        .lines()
        .filter(|l| l.contains("mirror-hooks"))
        .map(|l| l.chars().take(240).collect())
        .collect();
    assert_eq!(
        here,
        there,
        "accepted here: {here:?}, upstream: {there:?}; the pusher was told:\n{}\nstatus: {}",
        told.join("\n"),
        record(&env, &down, "upstream")["last_error"]
    );
    let unforwarded = record(&env, &down, "upstream")["unforwarded_refs"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(unforwarded, 0, "refs left waiting to be forwarded");
}
