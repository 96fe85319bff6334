//! Push mirrors against real repositories: the pusher never waits, every mirror ends
//! up with exactly its refs, and nothing queued is lost to failures or kills.

use crate::util::{closed_port, eventually, TestEnv};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

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

/// Waits until `repo`'s refs are exactly `expected`.
fn converges(env: &TestEnv, repo: &Path, expected: &std::collections::BTreeMap<String, String>) {
    let ok = eventually(PATIENCE, || &env.refs(repo) == expected);
    assert!(
        ok,
        "{} has {:#?}, expected {:#?}",
        repo.display(),
        env.refs(repo),
        expected
    );
}

fn mirror_toml(name: &str, url: &Path, extra: &str) -> String {
    format!(
        "[[push]]\nname = {name:?}\nurl = {:?}\n{extra}\n",
        url.to_str().unwrap()
    )
}

fn only(
    refs: &std::collections::BTreeMap<String, String>,
    names: &[&str],
) -> std::collections::BTreeMap<String, String> {
    refs.iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

#[test]
fn the_pusher_does_not_wait_for_a_slow_mirror() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    // The mirror accepts only once the test opens the gate.
    let gate = env.path("gate");
    env.script(
        &mirror.join("hooks/pre-receive"),
        &format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display()),
    );
    let down = env.downstream("down.git", &mirror_toml("slow", &mirror, ""));
    let work = env.work("work");
    let c = env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    // The mirror's own hook is still sleeping when the pusher already has its answer.
    assert_eq!(env.rev(&mirror, "refs/heads/main"), None);
    assert!(pushed
        .stderr
        .contains("remote: mirror-hooks: queued for push mirror slow (1 ref)."));
    std::fs::write(&gate, "").unwrap();
    assert!(eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main")
        == Some(c.clone())));
    assert!(eventually(PATIENCE, || record(&env, &down, "slow")
        ["update_status"]
        == "finished"));
}

#[test]
fn each_mirror_gets_exactly_its_refs() {
    let env = TestEnv::new();
    let a = env.bare("a.git");
    let b = env.bare("b.git");
    let toml = mirror_toml("heads", &a, r#"refs = ["refs/heads/*"]"#)
        + &mirror_toml(
            "releases",
            &b,
            r#"refs = ["refs/heads/release/*", "refs/tags/*"]"#,
        );
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    env.commit(&work, "one");
    env.git_ok(&work, &["tag", "-a", "-m", "release", "v1.0"]);
    let pushed = env.push(
        &work,
        &down,
        &[
            "HEAD:refs/heads/main",
            "HEAD:refs/heads/release/1.0",
            "refs/tags/v1.0",
        ],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    let local = env.refs(&down);
    converges(
        &env,
        &a,
        &only(&local, &["refs/heads/main", "refs/heads/release/1.0"]),
    );
    converges(
        &env,
        &b,
        &only(&local, &["refs/heads/release/1.0", "refs/tags/v1.0"]),
    );
    assert_eq!(env.git_ok(&b, &["cat-file", "-t", "refs/tags/v1.0"]), "tag");

    for name in ["heads", "releases"] {
        assert!(eventually(PATIENCE, || record(&env, &down, name)
            ["update_status"]
            == "finished"));
    }
    let report = env.normalize(&String::from_utf8_lossy(
        &env.git_mirror(&["status", "--json", down.to_str().unwrap()])
            .stdout,
    ));
    insta::assert_snapshot!(report);
}

#[test]
fn deletions_are_pruned_and_foreign_refs_kept_unless_prune_all() {
    let env = TestEnv::new();
    let keep = env.bare("keep.git");
    let exact = env.bare("exact.git");
    let toml = mirror_toml("keep", &keep, "") + &mirror_toml("exact", &exact, "prune = \"all\"");
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    let c = env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    converges(&env, &keep, &env.refs(&down));
    converges(&env, &exact, &env.refs(&down));
    // Someone else creates a branch on each mirror.
    assert!(env.push(&work, &keep, &["HEAD:refs/heads/theirs"]).success);
    assert!(env.push(&work, &exact, &["HEAD:refs/heads/theirs"]).success);

    assert!(env.push(&work, &down, &[":refs/heads/topic"]).success);
    let mut expected = env.refs(&down);
    converges(&env, &exact, &expected);
    expected.insert("refs/heads/theirs".to_owned(), c);
    converges(&env, &keep, &expected);
}

#[test]
fn diverged_refs_are_kept_and_reported_while_others_go() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream(
        "down.git",
        &mirror_toml("careful", &mirror, "keep_divergent_refs = true"),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/feature"]
        )
        .success
    );
    converges(&env, &mirror, &env.refs(&down));

    // Someone commits on the mirror's main directly: it diverges from ours.
    let other = env.work("other");
    let theirs = env.commit(&other, "theirs");
    assert!(
        env.push(&other, &mirror, &["+HEAD:refs/heads/main"])
            .success
    );

    let ours = env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/feature"]
        )
        .success
    );
    assert!(eventually(PATIENCE, || env
        .rev(&mirror, "refs/heads/feature")
        == Some(ours.clone())));
    assert!(eventually(PATIENCE, || record(&env, &down, "careful")
        ["update_status"]
        == "failed"));
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(theirs));
    let r = record(&env, &down, "careful");
    assert_eq!(r["divergent_refs"], serde_json::json!(["refs/heads/main"]));
    assert!(
        r["last_error"]
            .as_str()
            .unwrap()
            .contains("some refs have diverged: refs/heads/main"),
        "{r}"
    );
}

#[test]
fn a_mirror_that_is_down_gets_everything_once_back() {
    let env = TestEnv::new();
    let later = env.path("later.git");
    let down = env.downstream("down.git", &mirror_toml("later", &later, ""));
    let work = env.work("work");
    env.commit(&work, "one");
    env.git_ok(&work, &["tag", "v1"]);
    assert!(
        env.push(&work, &down, &["HEAD:refs/heads/main", "refs/tags/v1"])
            .success
    );
    assert!(eventually(PATIENCE, || record(&env, &down, "later")
        ["consecutive_failures"]
        == 1));
    let r = record(&env, &down, "later");
    assert_eq!(r["update_status"], "failed");
    assert_eq!(r["queued_jobs"], 1, "the job stays queued: {r}");
    assert!(r["next_update_at"].is_string(), "a retry is scheduled: {r}");

    // Another push while the mirror backs off: queued, not tried yet.
    env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/dev"]
        )
        .success
    );
    assert!(eventually(PATIENCE, || record(&env, &down, "later")
        ["queued_jobs"]
        == 2));

    env.git_ok(
        env.root(),
        &["init", "-q", "--bare", later.to_str().unwrap()],
    );
    let out = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "later: up to date (pushed 3, deleted 0, unchanged 0)\n"
    );
    assert_eq!(env.refs(&later), env.refs(&down));
    let r = record(&env, &down, "later");
    assert_eq!(
        (r["update_status"].as_str(), r["queued_jobs"].as_u64()),
        (Some("finished"), Some(0))
    );
    assert_eq!(r["consecutive_failures"], 0);
}

#[test]
fn many_quick_pushes_are_coalesced() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let counter = env.path("mirror-pushes");
    // The mirror takes nothing until the test opens the gate: every push here happens
    // while the worker is busy, whatever the machine's speed.
    let gate = env.path("gate");
    env.script(
        &mirror.join("hooks/pre-receive"),
        &format!(
            "echo push >> {}; while [ ! -e {} ]; do sleep 0.05; done",
            counter.display(),
            gate.display()
        ),
    );
    let down = env.downstream("down.git", &mirror_toml("busy", &mirror, ""));
    let work = env.work("work");
    for i in 0..50 {
        env.commit(&work, &format!("commit {i}"));
        assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    }
    std::fs::write(&gate, "").unwrap();
    converges(&env, &mirror, &env.refs(&down));
    assert!(eventually(PATIENCE, || record(&env, &down, "busy")
        ["queued_jobs"]
        == 0));
    let pushes = std::fs::read_to_string(&counter).unwrap().lines().count();
    eprintln!("50 pushes here, {pushes} pushes to the mirror");
    // The one that was waiting at the gate, then one for everything queued meanwhile
    // (and at most one more, for a job queued as that one started).
    assert!(pushes <= 3, "50 pushes caused {pushes} mirror pushes");
}

#[test]
fn a_worker_killed_mid_push_loses_nothing() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let started = env.path("mirror-push-started");
    env.script(
        &mirror.join("hooks/pre-receive"),
        // Long enough that the worker is surely still pushing when it is killed, even on
        // a loaded machine; the test does not wait for it.
        &format!("touch {}; sleep 10", started.display()),
    );
    let down = env.downstream("down.git", &mirror_toml("victim", &mirror, ""));
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    assert!(eventually(PATIENCE, || started.exists()));
    let lock = down.join("mirror/queue/victim/lock");
    let pid = std::fs::read_to_string(&lock).unwrap().trim().to_owned();
    // The pid comes from our own repository's lock; make sure it is still that worker
    // (started, through the push, by this test) and not a process that reused the pid.
    let line = crate::util::command_line(pid.parse().unwrap()).unwrap_or_default();
    assert!(
        line.contains(down.to_str().unwrap()),
        "{pid} is not the worker: {line}"
    );
    let killed = env.command("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success(), "could not kill the worker (pid {pid:?})");
    // Gone (or a zombie, which holds no lock any more) before the next worker starts.
    let stat = format!("/proc/{pid}/stat");
    assert!(eventually(PATIENCE, || std::fs::read_to_string(&stat)
        .map_or(true, |s| s.split(' ').nth(2) == Some("Z"))));
    let running = std::fs::read_dir(down.join("mirror/queue/victim/running"))
        .unwrap()
        .count();
    assert_eq!(running, 1, "the job being pushed is still in running/");

    std::fs::remove_file(mirror.join("hooks/pre-receive")).unwrap();
    let out = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    converges(&env, &mirror, &env.refs(&down));
    assert_eq!(record(&env, &down, "victim")["queued_jobs"], 0);
    env.git_ok(&down, &["fsck", "--no-progress"]);
}

#[test]
fn damaged_job_files_are_set_aside_and_block_nothing() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream("down.git", &mirror_toml("m", &mirror, ""));
    let waiting = down.join("mirror/queue/m/waiting");
    std::fs::create_dir_all(&waiting).unwrap();
    std::fs::write(waiting.join("0-garbage.json"), "{not json").unwrap();
    std::fs::write(
        waiting.join("1-truncated.json"),
        r#"{"format":"mirror-hooks-job","version":1,"mir"#,
    )
    .unwrap();
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    converges(&env, &mirror, &env.refs(&down));
    assert!(eventually(PATIENCE, || record(&env, &down, "m")
        ["queued_jobs"]
        == 0));
    let r = record(&env, &down, "m");
    assert_eq!(
        r["damaged_jobs"],
        serde_json::json!(["0-garbage.json", "1-truncated.json"])
    );
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap();
    assert_eq!(log.matches("damaged job set aside").count(), 2, "{log}");
}

#[test]
fn credentials_in_a_url_never_show() {
    let env = TestEnv::new();
    let secret = "s3cr3t-t0ken";
    let url = format!(
        "https://mirror-bot:{secret}@127.0.0.1:{}/org/project.git",
        closed_port()
    );
    let down = env.downstream(
        "down.git",
        &format!("[[push]]\nname = \"github\"\nurl = {url:?}\n"),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success);
    assert!(eventually(PATIENCE, || record(&env, &down, "github")
        ["update_status"]
        == "failed"));
    let now = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    assert_eq!(now.status.code(), Some(1));
    let table = env.git_mirror(&["status", down.to_str().unwrap()]);
    let json = env.git_mirror(&["status", "--json", down.to_str().unwrap()]);
    let mut seen = vec![pushed.stderr.clone()];
    for out in [&now, &table, &json] {
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    for file in files_under(&down.join("mirror")) {
        seen.push(String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned());
    }
    for text in &seen {
        assert!(!text.contains(secret), "the secret leaked:\n{text}");
    }
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("https://*****:*****@127.0.0.1:"), "{table}");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_sweep_retries_overdue_mirrors_across_repositories() {
    let env = TestEnv::new();
    std::fs::create_dir(env.path("srv")).unwrap();
    let later = env.path("later.git");
    let down = env.downstream("srv/team/down.git", &mirror_toml("later", &later, ""));
    let broken = env.downstream("srv/broken.git", "[[push]]\nname = \"x\"\n");
    let quiet = env.downstream("srv/quiet.git", &mirror_toml("q", &env.path("q.git"), ""));
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    assert!(eventually(PATIENCE, || record(&env, &down, "later")
        ["update_status"]
        == "failed"));

    // The mirror comes back; nothing is pushed until its retry time has come.
    env.git_ok(
        env.root(),
        &["init", "-q", "--bare", later.to_str().unwrap()],
    );
    let root = env.path("srv");
    let early = env.git_mirror(&["push", "--all", root.to_str().unwrap()]);
    assert_eq!(env.rev(&later, "refs/heads/main"), None);
    let text = env.normalize(&String::from_utf8_lossy(&early.stdout));
    assert!(
        text.contains("[TMP]/srv/broken.git: mirror.toml is invalid"),
        "{text}"
    );
    assert_eq!(
        early.status.code(),
        Some(1),
        "the broken repository is reported"
    );

    // Once the retry is due, the sweep pushes.
    let state_file = down.join("mirror/state/later.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    state["next_update_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&state_file, state.to_string()).unwrap();
    let swept = env.git_mirror(&["push", "--all", root.to_str().unwrap()]);
    let text = env.normalize(&String::from_utf8_lossy(&swept.stdout));
    assert!(
        text.contains(
            "[TMP]/srv/team/down.git later: up to date (pushed 1, deleted 0, unchanged 0)"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "3 repositories with mirror.toml under [TMP]/srv, 1 push mirrors run, 1 failed"
        ),
        "{text}"
    );
    assert_eq!(env.refs(&later), env.refs(&down));
    let _ = (broken, quiet);
}

/// A `--now` that finds the worker lock taken by a worker that is only looking (not
/// due, so it would let go without pushing) still pushes: the CLI waits for the lock,
/// or the holder runs the request before it lets go.
#[test]
fn push_now_is_not_dropped_while_another_worker_holds_the_lock() {
    let env = TestEnv::new();
    let later = env.path("later.git");
    let down = env.downstream("down.git", &mirror_toml("later", &later, ""));
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    // The mirror is missing: the worker fails and backs off, so it is not due.
    assert!(eventually(PATIENCE, || record(&env, &down, "later")
        ["consecutive_failures"]
        == 1));
    env.git_ok(
        env.root(),
        &["init", "-q", "--bare", later.to_str().unwrap()],
    );

    // The test holds the worker's lock, as a worker that is not due does while it looks.
    let lock_path = down.join("mirror/queue/later/lock");
    let lock = std::fs::File::options()
        .write(true)
        .open(&lock_path)
        .unwrap();
    assert!(eventually(PATIENCE, || lock.try_lock().is_ok()));
    let mut now = env
        .command(crate::util::GIT_MIRROR)
        .args(["push", "--now", down.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = down.join("mirror/queue/later/now");
    assert!(eventually(PATIENCE, || request.exists()
        || now.try_wait().unwrap().is_some()));
    drop(lock);
    let out = now.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        eventually(Duration::from_secs(10), || env.refs(&later)
            == env.refs(&down)),
        "the mirror never got the update; push --now said: {text}"
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text,
        "later: up to date (pushed 1, deleted 0, unchanged 0)\n"
    );
}

/// Waits until the worker of `name` has finished with every queued job.
fn settled(env: &TestEnv, repo: &Path, name: &str) -> serde_json::Value {
    let settled = eventually(PATIENCE, || {
        let r = record(env, repo, name);
        r["queued_jobs"] == 0 && r["update_status"] != "started"
    });
    let r = record(env, repo, name);
    assert!(settled, "the worker never finished its jobs: {r}");
    r
}

#[test]
fn a_ref_named_in_bytes_that_are_not_utf8_on_an_exact_copy_mirror_is_reported_not_an_outage() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream(
        "down.git",
        &mirror_toml("exact", &mirror, "prune = \"all\""),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    converges(&env, &mirror, &env.refs(&down));
    // Someone made a branch on the mirror whose name is Latin-1, not UTF-8.
    let status = env
        .command("git")
        .arg("-C")
        .arg(&mirror)
        .arg("update-ref")
        .arg(std::ffi::OsStr::from_bytes(b"refs/heads/caf\xe9"))
        .arg("refs/heads/main")
        .status()
        .unwrap();
    assert!(status.success());

    let two = env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    assert!(eventually(PATIENCE, || env
        .rev(&mirror, "refs/heads/topic")
        == Some(two.clone())));
    let r = settled(&env, &down, "exact");
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(two.clone()));
    assert_eq!(r["consecutive_failures"], 0, "not an outage: {r}");
    assert!(r["next_update_at"].is_null(), "no backoff: {r}");
    let error = r["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r"refs/heads/caf\xe9 (its name is not valid UTF-8"),
        "{r}"
    );
    // The ref is still there, untouched.
    let listed = env.git(&mirror, &["for-each-ref", "--format=%(refname)"]);
    assert!(listed.stdout.windows(4).any(|w| w == b"caf\xe9"));

    let now = env.git_mirror(&["push", "--now", down.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&now.stdout);
    assert!(
        text.contains("left alone (its name is not valid UTF-8"),
        "{text}"
    );
    assert_eq!(record(&env, &down, "exact")["consecutive_failures"], 0);
}

#[test]
fn an_exact_copy_mirror_never_deletes_a_symbolic_ref_nor_its_target() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream(
        "down.git",
        &mirror_toml("exact", &mirror, "prune = \"all\""),
    );
    let work = env.work("work");
    env.commit(&work, "one");
    assert!(
        env.push(
            &work,
            &down,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );
    converges(&env, &mirror, &env.refs(&down));
    // The mirror's administrator made an alias of main, and one of topic.
    env.git_ok(
        &mirror,
        &["symbolic-ref", "refs/heads/current", "refs/heads/main"],
    );
    env.git_ok(
        &mirror,
        &["symbolic-ref", "refs/heads/alias", "refs/heads/topic"],
    );

    let two = env.commit(&work, "two");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    assert!(eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main")
        == Some(two.clone())));
    let r = settled(&env, &down, "exact");
    assert_eq!(r["update_status"], "finished", "{r}");
    assert_eq!(
        env.git_ok(&mirror, &["symbolic-ref", "refs/heads/current"]),
        "refs/heads/main"
    );
    assert_eq!(
        env.git_ok(&mirror, &["symbolic-ref", "refs/heads/alias"]),
        "refs/heads/topic"
    );
    assert!(env.rev(&mirror, "refs/heads/topic").is_some());

    // Deleting topic here deletes it there, and leaves the alias alone.
    assert!(env.push(&work, &down, &[":refs/heads/topic"]).success);
    assert!(eventually(PATIENCE, || env
        .rev(&mirror, "refs/heads/topic")
        .is_none()));
    let r = settled(&env, &down, "exact");
    assert_eq!(r["consecutive_failures"], 0, "{r}");
    assert_eq!(
        env.git_ok(&mirror, &["symbolic-ref", "refs/heads/current"]),
        "refs/heads/main"
    );
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(two.clone()));

    // A branch here named like the alias is not pushed through it (that would move main
    // there): it is reported and left alone, and it is not an outage.
    assert!(
        env.push(&work, &down, &["HEAD~1:refs/heads/current"])
            .success
    );
    let r = settled(&env, &down, "exact");
    assert_eq!(env.rev(&mirror, "refs/heads/main"), Some(two));
    assert_eq!(r["consecutive_failures"], 0, "{r}");
    assert!(r["next_update_at"].is_null(), "{r}");
    assert!(
        r["last_error"].as_str().unwrap_or_default().contains(
            "left alone on the mirror: refs/heads/current (a symbolic ref to refs/heads/main there"
        ),
        "{r}"
    );
}

/// The job files under `repo`'s queue, wherever they are.
fn job_files(repo: &Path) -> Vec<PathBuf> {
    let queue = repo.join("mirror/queue");
    if !queue.exists() {
        return Vec::new();
    }
    files_under(&queue)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// The pusher's wait holds one durable write per push, however many mirrors it
/// concerns; each mirror still counts the job as its own, and each gets the push.
#[test]
fn one_job_file_per_push_whatever_the_number_of_mirrors() {
    let env = TestEnv::new();
    let mirrors: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|m| env.bare(&format!("{m}.git")))
        .collect();
    let toml: String = ["a", "b", "c"]
        .iter()
        .zip(&mirrors)
        .map(|(name, url)| mirror_toml(name, url, ""))
        .collect();
    let down = env.downstream("down.git", &toml);
    // Paused: the job stays where post-receive wrote it.
    let paused = env.git_mirror(&["pause", down.to_str().unwrap()]);
    assert!(paused.status.success());
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    for name in ["a", "b", "c"] {
        assert!(
            pushed.stderr.contains(&format!(
                "remote: mirror-hooks: queued for push mirror {name} (1 ref)"
            )),
            "{}",
            pushed.stderr
        );
        assert_eq!(record(&env, &down, name)["queued_jobs"], 1, "{name}");
    }
    assert_eq!(job_files(&down).len(), 1, "{:?}", job_files(&down));

    let resumed = env.git_mirror(&["resume", down.to_str().unwrap()]);
    assert!(resumed.status.success());
    for mirror in &mirrors {
        converges(&env, mirror, &env.refs(&down));
    }
    for name in ["a", "b", "c"] {
        assert!(eventually(PATIENCE, || record(&env, &down, name)
            ["queued_jobs"]
            == 0));
    }
    assert!(eventually(PATIENCE, || job_files(&down).is_empty()));
}

/// Jobs the previous version wrote (one file per mirror, in the mirror's own queue) are
/// still run after an upgrade: here the one that alone says a ref was deleted here.
#[test]
fn jobs_queued_by_the_previous_version_are_pushed_after_an_upgrade() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let down = env.downstream("down.git", &mirror_toml("m", &mirror, "prune = true"));
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(
        &work,
        &down,
        &["HEAD:refs/heads/main", "HEAD:refs/heads/feature"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    converges(&env, &mirror, &env.refs(&down));
    assert!(eventually(PATIENCE, || record(&env, &down, "m")
        ["queued_jobs"]
        == 0));
    // Deleted by the old version's post-receive, which queued the job and died before
    // its worker ran.
    env.git_ok(&down, &["update-ref", "-d", "refs/heads/feature"]);
    let waiting = down.join("mirror/queue/m/waiting");
    std::fs::create_dir_all(&waiting).unwrap();
    std::fs::write(
        waiting.join("000001700000000000000000-1-0.json"),
        r#"{"format":"mirror-hooks-job","version":1,"mirror":"m","refs":["refs/heads/feature"],"queued_at":"2026-11-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(record(&env, &down, "m")["queued_jobs"], 1);

    // The first push after the upgrade.
    env.commit(&work, "two");
    assert!(env.push(&work, &down, &["HEAD:refs/heads/main"]).success);
    converges(&env, &mirror, &env.refs(&down));
    assert_eq!(env.rev(&mirror, "refs/heads/feature"), None);
    assert!(eventually(PATIENCE, || record(&env, &down, "m")
        ["queued_jobs"]
        == 0));
}

/// The job is durable when post-receive returns: a worker that never ran (here it
/// cannot be started, as after a crash right after the hook returned) leaves the push
/// queued, counted, and mirrored by the next worker that runs.
#[test]
fn a_push_whose_worker_never_ran_is_mirrored_by_the_next_worker() {
    let env = TestEnv::new();
    let a = env.bare("a.git");
    let b = env.bare("b.git");
    let toml = mirror_toml("a", &a, "") + &mirror_toml("b", &b, "");
    let down = env.bare("down.git");
    std::fs::write(down.join("mirror.toml"), toml).unwrap();
    // The hook alone, without the git-mirror it starts beside it.
    let lonely = env.path("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(crate::util::POST_RECEIVE, lonely.join("post-receive")).unwrap();
    std::os::unix::fs::symlink(lonely.join("post-receive"), down.join("hooks/post-receive"))
        .unwrap();
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("the worker could not be started"),
        "{}",
        pushed.stderr
    );
    for name in ["a", "b"] {
        assert_eq!(record(&env, &down, name)["queued_jobs"], 1, "{name}");
        assert_eq!(record(&env, &down, name)["update_status"], "scheduled");
    }
    assert_eq!(env.rev(&a, "refs/heads/main"), None);

    // What the sweep (`serve`, a timer) runs.
    let out = env.git_mirror(&["push", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for mirror in [&a, &b] {
        converges(&env, mirror, &env.refs(&down));
    }
    for name in ["a", "b"] {
        assert_eq!(record(&env, &down, name)["queued_jobs"], 0, "{name}");
    }
}
