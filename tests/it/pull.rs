//! Pull mirroring against real repositories: what the upstream has arrives here, what
//! was pushed here is never undone, and the schedule does what status says.

use crate::util::{closed_port, eventually, TestEnv};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// An upstream with a work tree that pushes to it, and a downstream pulling from it.
struct Setup {
    env: TestEnv,
    up: PathBuf,
    down: PathBuf,
    work: PathBuf,
}

fn setup(pull_table: &str) -> Setup {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let toml = format!("[pull]\nurl = {:?}\n{pull_table}\n", up.to_str().unwrap());
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    Setup {
        env,
        up,
        down,
        work,
    }
}

impl Setup {
    fn pull(&self, args: &[&str]) -> Output {
        let mut all = vec!["pull"];
        all.extend(args);
        all.push(self.down.to_str().unwrap());
        self.env.git_mirror(&all)
    }

    /// Pulls and checks the exit code; returns what it printed.
    fn pull_expect(&self, args: &[&str], code: i32) -> String {
        let out = self.pull(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{text}");
        self.env.normalize(&text)
    }

    fn push_up(&self, refspecs: &[&str]) {
        let pushed = self.env.push(&self.work, &self.up, refspecs);
        assert!(pushed.success, "{}", pushed.stderr);
    }

    fn record(&self) -> serde_json::Value {
        let out = self
            .env
            .git_mirror(&["status", "--json", self.down.to_str().unwrap()]);
        assert!(out.status.success());
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all["mirrors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "pull")
            .cloned()
            .unwrap()
    }

    fn write_toml(&self, pull_table: &str) {
        let toml = format!(
            "[pull]\nurl = {:?}\n{pull_table}\n",
            self.up.to_str().unwrap()
        );
        std::fs::write(self.down.join("mirror.toml"), toml).unwrap();
    }
}

fn time(value: &serde_json::Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}"))).unwrap()
}

#[test]
fn the_first_pull_brings_everything_and_the_next_is_not_due() {
    let s = setup("");
    let env = &s.env;
    env.commit(&s.work, "one");
    env.git_ok(&s.work, &["tag", "-a", "-m", "release", "v1"]);
    env.commit(&s.work, "two");
    s.push_up(&[
        "HEAD:refs/heads/main",
        "HEAD~1:refs/heads/topic",
        "refs/tags/v1",
    ]);

    let said = s.pull_expect(&[], 0);
    assert_eq!(said, "pull: updated 3 refs (3 fetched, 0 unchanged)");
    assert_eq!(env.heads_and_tags(&s.down), env.heads_and_tags(&s.up));
    assert_eq!(
        env.git_ok(&s.down, &["cat-file", "-t", "refs/tags/v1"]),
        "tag",
        "the annotated tag arrives as it is"
    );
    // The private namespace is cleaned up, and git is happy with the result.
    assert!(env
        .refs(&s.down)
        .keys()
        .all(|name| !name.starts_with("refs/mirror-hooks/")));
    env.git_ok(&s.down, &["fsck", "--no-progress"]);

    let record = s.record();
    assert_eq!(record["update_status"], "finished");
    assert_eq!(record["consecutive_failures"], 0);
    assert_eq!(record["last_error"], serde_json::Value::Null);
    let next = time(&record["next_update_at"]);
    let last = time(&record["last_successful_update_at"]);
    assert_eq!(
        next.duration_since(last).unwrap(),
        Duration::from_secs(30 * 60)
    );

    let out = env.git_mirror(&["status", s.down.to_str().unwrap()]);
    insta::assert_snapshot!(env.normalize(&String::from_utf8_lossy(&out.stdout)), @"
    repository: [TMP]/down.git
    MIRROR  DIRECTION  STATUS    LAST SUCCESS          URL
    pull    pull       finished  [TIME]  [TMP]/up.git
      next update: [TIME]
    ");

    // Not due: nothing happens, even though the upstream moved.
    let two = env.commit(&s.work, "three");
    s.push_up(&["HEAD:refs/heads/main"]);
    let said = s.pull_expect(&[], 0);
    assert!(said.starts_with("pull: not due until [TIME]"), "{said}");
    assert_ne!(env.rev(&s.down, "refs/heads/main"), Some(two.clone()));

    // --now: a fast-forward.
    let said = s.pull_expect(&["--now"], 0);
    assert_eq!(said, "pull: updated 1 ref (1 fetched, 2 unchanged)");
    assert_eq!(env.rev(&s.down, "refs/heads/main"), Some(two));

    // Nothing changed upstream: nothing is fetched.
    let said = s.pull_expect(&["--now"], 0);
    assert_eq!(said, "pull: up to date (3 refs unchanged)");
    let log = std::fs::read_to_string(s.down.join("mirror/log")).unwrap();
    assert!(
        log.lines()
            .last()
            .unwrap()
            .contains("pull finished applied=0 unchanged=3 fetched=0"),
        "{log}"
    );
}

#[test]
fn a_diverged_branch_is_kept_and_reported_while_the_others_update() {
    let s = setup("interval = \"1m\"");
    let env = &s.env;
    let base = env.commit(&s.work, "base");
    s.push_up(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]);
    s.pull_expect(&[], 0);

    // Someone commits here directly (no [upstream], so the push is simply accepted)…
    let local_work = env.work("local");
    env.git_ok(
        &local_work,
        &["pull", "-q", s.down.to_str().unwrap(), "main"],
    );
    let ours = env.commit(&local_work, "ours");
    assert!(
        env.push(&local_work, &s.down, &["HEAD:refs/heads/main"])
            .success
    );
    // …while the upstream moves both branches.
    let theirs = env.commit(&s.work, "theirs");
    s.push_up(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]);

    let said = s.pull_expect(&["--now"], 1);
    insta::assert_snapshot!(said, @"pull: updated 1 ref (2 fetched, 0 unchanged); failed: refs/heads/main diverged from the upstream (commits it never had) and was left alone: keep one side with `git mirror resolve refs/heads/main --take upstream` (this repository follows the upstream) or `--take here` (the upstream gets this repository's value), or set overwrite_diverged = true in [pull]");
    assert_eq!(env.rev(&s.down, "refs/heads/main"), Some(ours.clone()));
    assert_eq!(env.rev(&s.down, "refs/heads/topic"), Some(theirs.clone()));
    let record = s.record();
    assert_eq!(record["update_status"], "failed");
    assert_eq!(
        record["divergent_refs"],
        serde_json::json!(["refs/heads/main"])
    );
    assert_eq!(
        record["consecutive_failures"], 0,
        "a divergence is not an outage"
    );
    insta::assert_snapshot!(record["last_error"].as_str().unwrap(), @"refs/heads/main diverged from the upstream (commits it never had) and was left alone: keep one side with `git mirror resolve refs/heads/main --take upstream` (this repository follows the upstream) or `--take here` (the upstream gets this repository's value), or set overwrite_diverged = true in [pull]");

    // Still diverged next time (the fetch finds every object here and transfers none).
    let said = s.pull_expect(&["--now"], 1);
    assert!(
        said.starts_with("pull: no ref updated (1 unchanged); failed: refs/heads/main diverged"),
        "{said}"
    );

    // The administrator lets the upstream win.
    s.write_toml("interval = \"1m\"\noverwrite_diverged = true");
    let said = s.pull_expect(&["--now"], 0);
    assert_eq!(said, "pull: updated 1 ref (1 fetched, 1 unchanged)");
    assert_eq!(env.rev(&s.down, "refs/heads/main"), Some(theirs));
    assert_eq!(s.record()["divergent_refs"], serde_json::json!([]));
    assert_ne!(base, ours);
}

#[test]
fn prune_decides_whether_refs_deleted_upstream_go_and_tags_follow_the_upstream() {
    let s = setup("");
    let env = &s.env;
    let one = env.commit(&s.work, "one");
    env.git_ok(&s.work, &["tag", "v1"]);
    let two = env.commit(&s.work, "two");
    s.push_up(&[
        "HEAD:refs/heads/main",
        "HEAD~1:refs/heads/old",
        "refs/tags/v1",
    ]);
    s.pull_expect(&[], 0);

    // Upstream: the branch goes, v1 is moved, v2 is new.
    s.push_up(&[":refs/heads/old"]);
    env.git_ok(&s.work, &["tag", "-f", "v1", &two]);
    env.git_ok(&s.work, &["tag", "-a", "-m", "two", "v2"]);
    s.push_up(&["+refs/tags/v1", "refs/tags/v2"]);

    s.pull_expect(&["--now"], 0);
    assert_eq!(
        env.rev(&s.down, "refs/heads/old"),
        Some(one),
        "prune is off"
    );
    assert_eq!(
        env.rev(&s.down, "refs/tags/v1"),
        Some(two.clone()),
        "moved tag"
    );
    assert_eq!(
        env.rev(&s.down, "refs/tags/v2"),
        env.rev(&s.up, "refs/tags/v2")
    );

    s.write_toml("prune = true");
    s.pull_expect(&["--now"], 0);
    assert_eq!(env.rev(&s.down, "refs/heads/old"), None, "prune is on");
    assert_eq!(env.heads_and_tags(&s.down), env.heads_and_tags(&s.up));
}

#[test]
fn failures_back_off_then_hard_fail_until_now_or_an_edit() {
    let s = setup("");
    let env = &s.env;
    env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main"]);
    // Nothing listens there: a failure that retrying might fix.
    let unreachable = format!("git://127.0.0.1:{}/up.git", closed_port());
    let toml = format!("[pull]\nurl = {unreachable:?}\nmax_failures = 2\n");
    std::fs::write(s.down.join("mirror.toml"), &toml).unwrap();

    let said = s.pull_expect(&[], 1);
    assert!(
        said.starts_with("pull: failed: cannot list the upstream's refs:"),
        "{said}"
    );
    assert!(said.contains("; next try at [TIME]"), "{said}");
    let record = s.record();
    assert_eq!(record["update_status"], "failed");
    assert_eq!(record["consecutive_failures"], 1);
    // The first retry waits 30 minutes less up to a fifth of jitter.
    let wait = time(&record["next_update_at"])
        .duration_since(time(&record["last_update_at"]))
        .unwrap();
    assert!(
        wait > Duration::from_secs(23 * 60) && wait <= Duration::from_secs(30 * 60),
        "{wait:?}"
    );
    // Backing off: not due.
    let said = s.pull_expect(&[], 0);
    assert!(said.starts_with("pull: not due until"), "{said}");

    let said = s.pull_expect(&["--now"], 1);
    assert!(said.starts_with("pull: hard failed: cannot list"), "{said}");
    assert!(said.contains("(failed 2 times in a row, so no longer retried; fix it, then run `git mirror pull --now`)"), "{said}");
    let record = s.record();
    assert_eq!(record["update_status"], "hard_failed");
    assert_eq!(record["next_update_at"], serde_json::Value::Null);

    // Skipped, loudly, until someone acts.
    let said = s.pull_expect(&[], 1);
    assert!(
        said.starts_with("pull: hard failed, not retried until `git mirror pull --now [TMP]/down.git` or an edit of mirror.toml"),
        "{said}"
    );
    // --now tries again (and fails again: the upstream is still away).
    let said = s.pull_expect(&["--now"], 1);
    assert!(said.starts_with("pull: hard failed: cannot list"), "{said}");

    // Fixing mirror.toml resumes the schedule by itself.
    s.write_toml("max_failures = 2");
    assert_ne!(s.record()["next_update_at"], serde_json::Value::Null);
    let said = s.pull_expect(&[], 0);
    assert_eq!(said, "pull: updated 1 ref (1 fetched, 0 unchanged)");
    let record = s.record();
    assert_eq!(record["update_status"], "finished");
    assert_eq!(record["consecutive_failures"], 0);
}

#[test]
fn a_missing_upstream_hard_fails_at_once_with_the_reason() {
    let s = setup("");
    std::fs::write(
        s.down.join("mirror.toml"),
        format!(
            "[pull]\nurl = {:?}\n",
            s.env.path("nowhere.git").to_str().unwrap()
        ),
    )
    .unwrap();
    let said = s.pull_expect(&[], 1);
    assert!(
        said.starts_with("pull: hard failed: cannot list the upstream's refs"),
        "{said}"
    );
    assert!(
        said.contains("(retrying cannot fix this: repository not found; fix it, then run `git mirror pull --now`)"),
        "{said}"
    );
    assert_eq!(s.record()["update_status"], "hard_failed");
    assert_eq!(s.record()["consecutive_failures"], 1);
}

#[test]
fn a_pull_already_running_is_reported_not_doubled() {
    let s = setup("");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open({
            std::fs::create_dir_all(s.down.join("mirror")).unwrap();
            s.down.join("mirror/pull.lock")
        })
        .unwrap();
    lock.try_lock().unwrap();
    let said = s.pull_expect(&["--now"], 0);
    assert_eq!(said, "pull: already being updated by another run");
    drop(lock);
    s.env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main"]);
    assert_eq!(
        s.pull_expect(&["--now"], 0),
        "pull: updated 1 ref (1 fetched, 0 unchanged)"
    );
}

#[test]
fn pulled_updates_reach_chained_hooks_and_push_mirrors() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let mirror = env.bare("mirror.git");
    let toml = format!(
        "[pull]\nurl = {:?}\n\n[[push]]\nname = \"backup\"\nurl = {:?}\n",
        up.to_str().unwrap(),
        mirror.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let seen = env.path("seen");
    env.script(
        &down.join("hooks/post-receive.d/ci"),
        &format!(
            "cat > {0}; echo \"GIT_DIR=$GIT_DIR\" >> {0}",
            seen.display()
        ),
    );
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let out = env.git_mirror(&["pull", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let zero = "0".repeat(40);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("{zero} {one} refs/heads/main\nGIT_DIR={}\n", down.display())
    );
    let arrived = eventually(PATIENCE, || {
        env.rev(&mirror, "refs/heads/main") == Some(one.clone())
    });
    assert!(arrived, "the push mirror never got the pulled commit");
}

#[test]
fn a_push_here_racing_pulls_is_never_undone() {
    let s = setup("");
    let env = &s.env;
    let down = s.down.to_str().unwrap();
    let local_work = env.work("local");
    let (mut acknowledged, mut refused) = (0, 0);
    for round in 0..16u64 {
        // Both sides equal, and the person here is up to date…
        env.commit(&s.work, &format!("base {round}"));
        s.push_up(&["HEAD:refs/heads/main"]);
        assert!(
            env.push(&s.work, &s.down, &["+HEAD:refs/heads/main"])
                .success
        );
        env.git_ok(&local_work, &["fetch", "-q", down, "main"]);
        env.git_ok(&local_work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        // …then the upstream moves main, and at the same moment a push moves it here.
        env.commit(&s.work, &format!("upstream {round}"));
        s.push_up(&["HEAD:refs/heads/main"]);
        let mine = env.commit(&local_work, &format!("local {round}"));
        let (pushed, _) = std::thread::scope(|scope| {
            let pusher = scope.spawn(|| {
                // Land at a different moment of the pull each round (not for correctness:
                // to meet it before, during and after its transaction).
                std::thread::sleep(Duration::from_millis(2 * round));
                env.push(&local_work, &s.down, &["HEAD:refs/heads/main"])
            });
            let puller = scope.spawn(|| s.pull(&["--now"]));
            (pusher.join().unwrap(), puller.join().unwrap())
        });
        let main = env.rev(&s.down, "refs/heads/main").unwrap();
        if pushed.success {
            acknowledged += 1;
            // The pull must not have moved main past (or away from) what was pushed.
            assert_eq!(
                main, mine,
                "round {round}: the acknowledged push was undone"
            );
        } else {
            refused += 1;
            assert_eq!(
                Some(main),
                env.rev(&s.up, "refs/heads/main"),
                "round {round}"
            );
        }
    }
    eprintln!("racing pushes: {acknowledged} acknowledged and kept, {refused} refused");
    env.git_ok(&s.down, &["fsck", "--no-progress"]);
}

#[test]
fn a_refused_pusher_can_rebase_and_push_at_once_the_pull_ran_before_the_answer() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let toml = format!("[upstream]\nurl = {:?}\n\n[pull]\n", up.to_str().unwrap());
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    env.commit(&work, "base");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);

    // A commit lands on the upstream directly.
    let other = env.work("other");
    env.git_ok(&other, &["pull", "-q", up.to_str().unwrap(), "main"]);
    let theirs = env.commit(&other, "theirs");
    assert!(env.push(&other, &up, &["HEAD:refs/heads/main"]).success);

    env.commit(&work, "mine");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(!pushed.success);
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
    // No waiting: the refusal came after this repository had the upstream's commit.
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(theirs));

    env.git_ok(
        &work,
        &["pull", "-q", "--rebase", down.to_str().unwrap(), "main"],
    );
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    let mine = env.rev(&work, "HEAD");
    assert_eq!(env.rev(&up, "refs/heads/main"), mine);
    assert_eq!(env.rev(&down, "refs/heads/main"), mine);
}

#[test]
fn pull_all_runs_every_repository_and_reports_the_broken_ones() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let work = env.work("work");
    let one = env.commit(&work, "one");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);

    let root = env.path("srv");
    let mut good = Vec::new();
    let mut broken = Vec::new();
    for i in 0..50 {
        let rel = format!("srv/team{}/repo{i:02}.git", i % 5);
        std::fs::create_dir_all(env.path(&rel).parent().unwrap()).unwrap();
        let toml = if i % 10 == 3 {
            broken.push(rel.clone());
            format!(
                "[pull]\nurl = {:?}\ninterval = \"often\"\n",
                up.to_str().unwrap()
            )
        } else {
            good.push(rel.clone());
            format!("[pull]\nurl = {:?}\n", up.to_str().unwrap())
        };
        env.downstream(&rel, &toml);
    }
    // Neither of these is ours to pull.
    env.bare("srv/team0/plain.git");
    std::fs::create_dir_all(env.path("srv/notes")).unwrap();

    let out = env.git_mirror(&["pull", "--all", root.to_str().unwrap(), "-j", "4"]);
    assert_eq!(out.status.code(), Some(1));
    let text = env.normalize(&String::from_utf8_lossy(&out.stdout));
    let mut lines: Vec<&str> = text.lines().collect();
    let total = lines.pop().unwrap();
    assert_eq!(total, "50 repositories with mirror.toml under [TMP]/srv: 45 pulled (45 updated), 0 not due, 0 push mirrors run, 5 failed");
    assert_eq!(lines.len(), 50);
    for rel in &good {
        assert!(
            lines.contains(
                &format!("[TMP]/{rel}: pull: updated 1 ref (1 fetched, 0 unchanged)").as_str()
            ),
            "{rel}: {text}"
        );
        assert_eq!(
            env.rev(&env.path(rel), "refs/heads/main"),
            Some(one.clone())
        );
    }
    for rel in &broken {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("[TMP]/{rel}: ")))
            .unwrap();
        assert_eq!(
            *line,
            format!("[TMP]/{rel}: mirror.toml is invalid, nothing done: [TMP]/{rel}/mirror.toml:3:12: pull.interval: \"often\" is not a duration; write it like \"90s\", \"5m\" or \"2h\", or \"auto\"")
        );
    }

    // Next time nothing is due; --quiet leaves only the broken ones and the total.
    let out = env.git_mirror(&["pull", "--all", root.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let text = env.normalize(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.ends_with("45 not due, 0 push mirrors run, 5 failed"),
        "{text}"
    );
}

#[test]
fn pull_all_drains_push_queues_whose_retry_time_came() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path("srv")).unwrap();
    let mirror = env.path("mirror.git");
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n",
        mirror.to_str().unwrap()
    );
    let down = env.downstream("srv/down.git", &toml);
    let work = env.work("work");
    let one = env.commit(&work, "one");
    // The mirror does not exist yet: the worker fails and backs off.
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    let record = down.join("mirror/state/backup.json");
    let worker_lock = down.join("mirror/queue/backup/lock");
    let failed = eventually(PATIENCE, || {
        let done = std::fs::read_to_string(&record)
            .is_ok_and(|r| r.contains("\"update_status\": \"failed\""));
        // …and the worker has let go of its lock.
        done && std::fs::File::open(&worker_lock).is_ok_and(|f| f.try_lock_shared().is_ok())
    });
    assert!(failed);
    env.bare("mirror.git");

    let sweep = || {
        let out = env.git_mirror(&["pull", "--all", env.path("srv").to_str().unwrap()]);
        (
            out.status.code(),
            env.normalize(&String::from_utf8_lossy(&out.stdout)),
        )
    };
    let (code, text) = sweep();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(
            "[TMP]/srv/down.git: push backup: queued jobs wait for the retry at [TIME]"
        ),
        "{text}"
    );
    assert_eq!(env.rev(&mirror, "refs/heads/main"), None);

    // The retry time comes (as if 30 seconds passed).
    let text = std::fs::read_to_string(&record).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["next_update_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&record, state.to_string()).unwrap();
    let (code, text) = sweep();
    assert_eq!(code, Some(0), "{text}");
    insta::assert_snapshot!(text, @"
    [TMP]/srv/down.git: push backup: up to date (pushed 1, deleted 0, unchanged 0)
    1 repositories with mirror.toml under [TMP]/srv: 0 pulled (0 updated), 0 not due, 1 push mirrors run, 0 failed
    ");
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(one));
}

#[test]
fn a_damaged_status_record_is_reported_and_rewritten() {
    let s = setup("");
    s.env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main"]);
    let record = s.down.join("mirror/state/pull.json");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, "{\"update_status\": \"fini").unwrap();
    let error = s.record()["last_error"].as_str().unwrap().to_owned();
    assert_eq!(
        s.env.normalize(&error),
        "the status record [TMP]/down.git/mirror/state/pull.json is damaged; delete it to start afresh: EOF while parsing a string at line 1 column 23"
    );
    assert_eq!(
        s.pull_expect(&[], 0),
        "pull: updated 1 ref (1 fetched, 0 unchanged)"
    );
    assert_eq!(s.record()["update_status"], "finished");
}

#[test]
fn a_ref_that_cannot_be_created_here_holds_back_no_other() {
    let s = setup("");
    let env = &s.env;
    let one = env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main", "HEAD:refs/heads/foo"]);
    s.pull_expect(&[], 0);
    // Upstream, foo becomes foo/bar, which cannot exist beside foo here (prune is off).
    s.push_up(&[":refs/heads/foo"]);
    s.push_up(&["HEAD:refs/heads/foo/bar"]);
    let two = env.commit(&s.work, "two");
    s.push_up(&["HEAD:refs/heads/main"]);

    let said = s.pull_expect(&["--now"], 1);
    assert_eq!(
        said.trim_end(),
        "pull: updated 1 ref (2 fetched, 0 unchanged); 1 upstream ref cannot be applied here and was left alone: refs/heads/foo/bar (refs/heads/foo exists here, so refs/heads/foo/bar cannot; delete or rename refs/heads/foo here to let it in (or set prune = true if the upstream deleted it))"
    );
    assert_eq!(
        env.rev(&s.down, "refs/heads/main"),
        Some(two),
        "main still arrived"
    );
    assert_eq!(env.rev(&s.down, "refs/heads/foo"), Some(one));
    // With prune, foo gives way and foo/bar arrives.
    s.write_toml("prune = true");
    s.pull_expect(&["--now"], 0);
    assert_eq!(env.heads_and_tags(&s.down), env.heads_and_tags(&s.up));
}

#[test]
fn prune_never_empties_the_repository_because_the_upstream_lists_nothing() {
    let s = setup("prune = true");
    let env = &s.env;
    env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]);
    s.pull_expect(&[], 0);
    // The upstream is re-created empty (or the url now points at an empty repository).
    std::fs::remove_dir_all(&s.up).unwrap();
    env.bare("up.git");
    let said = s.pull_expect(&["--now"], 1);
    assert_eq!(said.lines().next().unwrap().split("; next try").next().unwrap(), "pull: failed: the upstream lists none of the refs [pull] refs matches, so prune would delete 1 of them here (the branch HEAD names is never pruned); nothing was changed. Check the url; to empty this repository, delete the refs by hand");
    assert_eq!(env.heads_and_tags(&s.down).len(), 2);
}

#[test]
fn a_ref_that_cannot_be_applied_here_is_reported_and_never_an_outage() {
    let s = setup("max_failures = 2");
    let env = &s.env;
    env.commit(&s.work, "one");
    s.push_up(&["HEAD:refs/heads/main", "HEAD:refs/heads/foo"]);
    s.pull_expect(&[], 0);
    s.push_up(&[":refs/heads/foo"]);
    s.push_up(&["HEAD:refs/heads/foo/bar"]);
    for round in 0..3 {
        let two = env.commit(&s.work, &format!("round {round}"));
        s.push_up(&["HEAD:refs/heads/main"]);
        let said = s.pull_expect(&["--now"], 1);
        assert!(
            said.contains("1 upstream ref cannot be applied here and was left alone: refs/heads/foo/bar (refs/heads/foo exists here"),
            "{said}"
        );
        assert_eq!(env.rev(&s.down, "refs/heads/main"), Some(two));
        let r = s.record();
        assert_eq!(r["consecutive_failures"], 0, "not an outage: {r}");
        assert_eq!(r["update_status"], "failed", "{r}");
        assert!(
            r["last_error"]
                .as_str()
                .unwrap()
                .contains("refs/heads/foo/bar (refs/heads/foo exists here"),
            "{r}"
        );
    }
    // The schedule stays that of a success: not due again at once.
    let said = s.pull_expect(&[], 0);
    assert!(said.starts_with("pull: not due until"), "{said}");
    let log = std::fs::read_to_string(s.down.join("mirror/log")).unwrap();
    assert!(
        log.lines().last().unwrap().contains("refs/heads/foo/bar"),
        "{log}"
    );
}
