//! What the upstream last held, and what follows from it: refs accepted while the upstream
//! was away are kept and forwarded later, a branch the upstream rewrote is followed here,
//! prune deletes only what the upstream deleted, real divergences are settled with
//! `git mirror resolve`, and the pusher is told what is really wrong.

use crate::util::{closed_port, TestEnv};
use std::path::{Path, PathBuf};
use std::process::Output;

/// An upstream, a downstream proxying to (and pulling from) it, a work tree.
struct Setup {
    env: TestEnv,
    up: PathBuf,
    down: PathBuf,
    work: PathBuf,
    /// Lines after `url` in `[upstream]`, and the `[pull]` table's lines (`None`: none).
    upstream_extra: String,
    pull: Option<String>,
}

impl Setup {
    fn new(upstream_extra: &str, pull: Option<&str>) -> Setup {
        let env = TestEnv::new();
        let up = env.bare("up.git");
        let down = env.downstream("down.git", "");
        let work = env.work("work");
        let s = Setup {
            env,
            up,
            down,
            work,
            upstream_extra: upstream_extra.to_owned(),
            pull: pull.map(str::to_owned),
        };
        s.upstream_is_back();
        s
    }

    fn write_toml(&self, url: &str) {
        let mut toml = format!("[upstream]\nurl = {url:?}\n{}\n", self.upstream_extra);
        if let Some(pull) = &self.pull {
            toml.push_str(&format!("\n[pull]\n{pull}\n"));
        }
        std::fs::write(self.down.join("mirror.toml"), toml).unwrap();
    }

    /// The upstream cannot be reached (nothing listens where mirror.toml points).
    fn upstream_goes_away(&self) {
        self.write_toml(&format!("git://127.0.0.1:{}/up.git", closed_port()));
    }

    fn upstream_is_back(&self) {
        self.write_toml(self.up.to_str().unwrap());
    }

    fn push(&self, refspecs: &[&str]) -> crate::util::Pushed {
        self.env.push(&self.work, &self.down, refspecs)
    }

    fn mirror(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.push(self.down.to_str().unwrap());
        self.env.git_mirror(&all)
    }

    fn both(&self, name: &str) -> (Option<String>, Option<String>) {
        (self.env.rev(&self.up, name), self.env.rev(&self.down, name))
    }

    fn status(&self) -> serde_json::Value {
        let out = self.mirror(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A commit made on the upstream directly, on top of `base` (or of nothing).
fn commit_upstream(env: &TestEnv, up: &Path, name: &str, base: Option<&str>) -> String {
    let other = env.path(&format!("other-{}", name.replace('/', "-")));
    if !other.exists() {
        env.git_ok(
            env.root(),
            &["init", "-q", "-b", "main", other.to_str().unwrap()],
        );
    }
    env.git_ok(
        &other,
        &[
            "fetch",
            "-q",
            up.to_str().unwrap(),
            "+refs/heads/*:refs/remotes/up/*",
        ],
    );
    match base {
        Some(base) => env.git_ok(&other, &["checkout", "-q", "--detach", base]),
        None => env.git_ok(&other, &["checkout", "-q", "--orphan", "fresh"]),
    };
    let c = env.commit(&other, name);
    let pushed = env.push_with(&other, up, &["--force"], &[&format!("HEAD:{name}")]);
    assert!(pushed.success, "{}", pushed.stderr);
    c
}

#[test]
fn refs_accepted_offline_survive_prune_and_the_next_pull_forwards_them() {
    let s = Setup::new("on_unreachable = \"accept\"", Some("prune = true"));
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    assert!(
        s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"])
            .success
    );
    assert_eq!(s.mirror(&["pull", "--now"]).status.code(), Some(0));

    s.upstream_goes_away();
    let offline = env.commit(&s.work, "offline");
    let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/offline"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(pushed
        .stderr
        .contains("The next pull, or the next push to it, forwards it."));
    assert_eq!(
        s.status()["mirrors"][0]["unforwarded_refs"],
        serde_json::json!(["refs/heads/main", "refs/heads/offline"])
    );

    // Back: a push of another ref goes through (this used to clear the record)…
    s.upstream_is_back();
    env.git_ok(&s.work, &["checkout", "-q", "-b", "t", &base]);
    let t = env.commit(&s.work, "topic");
    assert!(s.push(&["HEAD:refs/heads/topic"]).success);
    assert_eq!(s.both("refs/heads/topic"), (Some(t.clone()), Some(t)));

    // …and the pull, with prune = true, forwards the offline refs instead of deleting them.
    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert!(
        text(&pulled).contains("forwarded to the upstream"),
        "{}",
        text(&pulled)
    );
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(offline.clone()), Some(offline.clone()))
    );
    assert_eq!(
        s.both("refs/heads/offline"),
        (Some(offline.clone()), Some(offline))
    );
    assert_eq!(
        s.status()["mirrors"][0]["unforwarded_refs"],
        serde_json::json!([])
    );
}

#[test]
fn the_next_push_to_a_ref_accepted_offline_forwards_it() {
    let s = Setup::new("on_unreachable = \"accept\"", None);
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    s.upstream_goes_away();
    env.commit(&s.work, "offline");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);

    s.upstream_is_back();
    let next = env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    // The lease is on what the upstream last held (base), not on the value here.
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
    assert_ne!(env.rev(&s.up, "refs/heads/main"), Some(base));
    assert_eq!(
        s.status()["mirrors"][0]["unforwarded_refs"],
        serde_json::json!([])
    );
}

#[test]
fn an_offline_ref_the_upstream_moved_meanwhile_is_reported_and_resolved() {
    let s = Setup::new("on_unreachable = \"accept\"", Some(""));
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    s.upstream_goes_away();
    let ours = env.commit(&s.work, "ours");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    let theirs = commit_upstream(env, &s.up, "refs/heads/main", Some(&base));

    s.upstream_is_back();
    // A push on top of it is refused with the way out, not "fetch, rebase, push again"
    // (the fetch could never bring anything).
    env.commit(&s.work, "more");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
    assert!(
        pushed.stderr.contains("was accepted here while the upstream was away, and the upstream's refs/heads/main has moved since")
            && pushed.stderr.contains("`git mirror resolve refs/heads/main --take here`")
            && !pushed.stderr.contains("rebase"),
        "{}",
        pushed.stderr
    );
    env.git_ok(&s.work, &["reset", "-q", "--hard", "HEAD~"]);

    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(1), "{}", text(&pulled));
    assert!(
        text(&pulled).contains("git mirror resolve refs/heads/main --take here"),
        "{}",
        text(&pulled)
    );
    // Neither side lost anything.
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(theirs.clone()), Some(ours.clone()))
    );
    assert_eq!(
        s.status()["mirrors"][1]["divergent_refs"],
        serde_json::json!(["refs/heads/main"])
    );

    let resolved = s.mirror(&["resolve", "refs/heads/main", "--take", "here"]);
    assert_eq!(resolved.status.code(), Some(0), "{}", text(&resolved));
    assert!(text(&resolved).contains("the upstream's refs/heads/main now holds"));
    assert_eq!(s.both("refs/heads/main"), (Some(ours.clone()), Some(ours)));
    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    let status = s.status();
    assert_eq!(
        status["mirrors"][0]["unforwarded_refs"],
        serde_json::json!([])
    );
    assert_eq!(
        status["mirrors"][1]["divergent_refs"],
        serde_json::json!([])
    );
}

#[test]
fn a_branch_the_upstream_rewrote_is_followed_here_and_pushes_work_again() {
    let s = Setup::new("", Some(""));
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    env.commit(&s.work, "one");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    // A forced update made on the upstream directly.
    let rewritten = commit_upstream(env, &s.up, "refs/heads/main", Some(&base));

    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(rewritten.clone()), Some(rewritten.clone()))
    );
    env.git_ok(&s.work, &["fetch", "-q", s.down.to_str().unwrap(), "main"]);
    env.git_ok(&s.work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    let next = env.commit(&s.work, "next");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
}

#[test]
fn prune_deletes_only_what_the_upstream_deleted_and_all_makes_an_exact_copy() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let url = up.to_str().unwrap();
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {url:?}\nprune = true\n"),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &up,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    let pull = |code: i32| {
        let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    };
    pull(0);
    // A branch that only ever lived here (pushed outside the upstream's refs).
    assert!(
        env.push(&work, &down, &["HEAD:refs/heads/local-only"])
            .success
    );
    assert!(env.push(&work, &up, &[":refs/heads/topic"]).success);
    pull(0);
    let names: Vec<String> = env.heads_and_tags(&down).into_keys().collect();
    assert_eq!(names, ["refs/heads/local-only", "refs/heads/main"]);

    std::fs::write(
        down.join("mirror.toml"),
        format!("[pull]\nurl = {url:?}\nprune = \"all\"\n"),
    )
    .unwrap();
    pull(0);
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
}

#[test]
fn a_damaged_record_of_the_upstream_makes_the_pull_change_nothing() {
    let s = Setup::new("", Some("prune = \"all\"\noverwrite_diverged = true"));
    let env = &s.env;
    env.commit(&s.work, "one");
    assert!(
        s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"])
            .success
    );
    std::fs::write(s.down.join("mirror/upstream-refs.json"), "{ damaged").unwrap();
    assert!(env.push(&s.work, &s.up, &[":refs/heads/topic"]).success);
    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(1), "{}", text(&pulled));
    assert!(
        text(&pulled).contains("upstream-refs.json, is damaged"),
        "{}",
        text(&pulled)
    );
    assert!(
        env.rev(&s.down, "refs/heads/topic").is_some(),
        "nothing pruned"
    );
    let status = s.mirror(&["status"]);
    assert!(text(&status).contains("is damaged"), "{}", text(&status));
    assert!(!text(&status).contains("delete it"), "{}", text(&status));
    let doctor = s.mirror(&["doctor"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    assert!(text(&doctor).contains("is damaged"), "{}", text(&doctor));
}

#[test]
fn a_lasting_failure_is_told_as_one_retrying_cannot_fix() {
    let s = Setup::new("on_unreachable = \"accept\"", None);
    s.write_toml(s.env.path("no-such-upstream.git").to_str().unwrap());
    s.env.commit(&s.work, "one");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(
        !pushed.success,
        "a misconfigured upstream is not an outage to accept through"
    );
    assert!(
        pushed
            .stderr
            .contains("retrying will not help (repository not found)"),
        "{}",
        pushed.stderr
    );
    assert!(
        !pushed.stderr.contains("Try again later"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.env.rev(&s.down, "refs/heads/main"), None);
}

#[test]
fn push_options_work_out_of_the_box_and_fall_back_when_the_upstream_takes_none() {
    let s = Setup::new("push_options = [\"ci.skip\"]", None);
    s.env
        .git_ok(&s.down, &["config", "receive.advertisePushOptions", "true"]);
    let c = s.env.commit(&s.work, "one");
    let pushed = s.env.push_with(
        &s.work,
        &s.down,
        &["-o", "ci.skip"],
        &["HEAD:refs/heads/main"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("the upstream does not take push options, so ci.skip was not forwarded"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.both("refs/heads/main"), (Some(c.clone()), Some(c)));
}

#[test]
fn the_refs_held_back_by_an_atomic_refusal_say_so() {
    let s = Setup::new("", None);
    s.env.script(
        &s.up.join("hooks/update"),
        "[ \"$1\" = refs/heads/protected ] && { echo \"protected\" >&2; exit 1; }; exit 0",
    );
    s.env.commit(&s.work, "one");
    let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/protected"]);
    assert!(!pushed.success);
    assert!(
        pushed.stderr.contains(
            "refs/heads/main was not forwarded because another ref was refused (all or nothing)."
        ),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.both("refs/heads/main"), (None, None));
}

#[test]
fn the_known_window_shows_in_status_and_pull_now_closes_it_without_a_pull_table() {
    let s = Setup::new("", None);
    let env = &s.env;
    // Two-phase mode has no such window (twophase.rs): pre-receive mode does.
    env.use_pre_receive_mode(&s.down);
    let base = env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    // A stale lock (a crashed writer) makes git fail the local update after the upstream
    // has accepted.
    std::fs::write(s.down.join("refs/heads/main.lock"), "").unwrap();
    let next = env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(base)));
    let status = s.status();
    let upstream = &status["mirrors"][0];
    assert_eq!(upstream["update_status"], "failed");
    assert_eq!(
        upstream["unapplied_refs"],
        serde_json::json!(["refs/heads/main"])
    );
    assert!(
        upstream["last_error"]
            .as_str()
            .unwrap()
            .contains("`git mirror pull --now` brings them here"),
        "{upstream}"
    );

    let doctor = s.mirror(&["doctor"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    assert!(
        text(&doctor)
            .contains("the upstream holds pushes this repository did not apply: refs/heads/main"),
        "{}",
        text(&doctor)
    );

    std::fs::remove_file(s.down.join("refs/heads/main.lock")).unwrap();
    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
    assert_eq!(
        s.status()["mirrors"][0]["unapplied_refs"],
        serde_json::json!([])
    );
}

#[test]
fn a_push_built_on_a_value_the_upstream_no_longer_holds_never_overwrites_it_later() {
    let s = Setup::new("on_unreachable = \"accept\"", Some(""));
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    // main here gets a commit of its own behind the hooks' back (before mirror-hooks was
    // installed, say), while the upstream moves on: diverged.
    let local = env.commit(&s.work, "only here");
    env.git_ok(
        &s.down,
        &[
            "fetch",
            "-q",
            s.work.to_str().unwrap(),
            "+HEAD:refs/heads/main",
        ],
    );
    let theirs = commit_upstream(env, &s.up, "refs/heads/main", Some(&base));
    assert_eq!(s.mirror(&["pull", "--now"]).status.code(), Some(1));
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(theirs.clone()), Some(local))
    );

    // Offline, a push on top of this repository's value is accepted…
    s.upstream_goes_away();
    let offline = env.commit(&s.work, "offline");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    // …and, back, it is reported, never forwarded over the upstream's commit.
    s.upstream_is_back();
    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(1), "{}", text(&pulled));
    assert_eq!(s.both("refs/heads/main"), (Some(theirs), Some(offline)));
}

#[test]
fn an_upstream_that_takes_no_push_does_not_stop_the_pull() {
    let s = Setup::new("on_unreachable = \"accept\"", None);
    let env = &s.env;
    env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    s.upstream_goes_away();
    let feature = env.commit(&s.work, "feature");
    assert!(s.push(&["HEAD:refs/heads/feature"]).success);
    // The pull reads from the upstream's repository while pushes to it still fail.
    let closed = format!("git://127.0.0.1:{}/up.git", closed_port());
    std::fs::write(
        s.down.join("mirror.toml"),
        format!(
            "[upstream]\nurl = {closed:?}\non_unreachable = \"accept\"\n\n[pull]\nurl = {:?}\n",
            s.up.to_str().unwrap()
        ),
    )
    .unwrap();
    let other = commit_upstream(env, &s.up, "refs/heads/other", None);

    let pulled = s.mirror(&["pull", "--now"]);
    assert_eq!(pulled.status.code(), Some(1), "{}", text(&pulled));
    assert!(
        text(&pulled).contains("cannot forward the refs accepted while the upstream was away"),
        "{}",
        text(&pulled)
    );
    assert_eq!(env.rev(&s.down, "refs/heads/other"), Some(other));
    assert_eq!(env.rev(&s.down, "refs/heads/feature"), Some(feature));
    let status = s.status();
    assert_eq!(status["mirrors"][1]["consecutive_failures"], 0);
    assert_eq!(
        status["mirrors"][0]["unforwarded_refs"],
        serde_json::json!(["refs/heads/feature"])
    );
}

#[test]
fn the_catch_up_waits_for_a_pull_already_running() {
    let s = Setup::new("", Some("interval = \"1h\""));
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    assert!(s.push(&["HEAD:refs/heads/main"]).success);
    let theirs = commit_upstream(env, &s.up, "refs/heads/main", Some(&base));
    // Another pull holds the lock (here: the test) and lets go a moment later.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(s.down.join("mirror/pull.lock"))
        .unwrap();
    lock.lock().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(lock);
    });
    env.commit(&s.work, "mine");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    releaser.join().unwrap();
    assert!(!pushed.success);
    assert!(
        pushed
            .stderr
            .contains("this repository has just fetched the upstream's new commits"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&s.down, "refs/heads/main"), Some(theirs));
}
