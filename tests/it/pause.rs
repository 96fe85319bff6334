//! `git mirror pause` / `resume` with real pushes and pulls: while paused, pushes to the
//! upstream's refs are refused in both forwarding modes and nothing is pulled or pushed;
//! after `resume`, what queued meanwhile goes out and pulls run again.

use crate::util::{eventually, TestEnv};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// Runs git-mirror, expecting exit code `code`; stdout and stderr, paths normalized.
fn mirror_cmd(env: &TestEnv, args: &[&str], code: i32) -> String {
    let out = env.git_mirror(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "git-mirror {args:?}: {text}");
    env.normalize(&text)
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

/// What the pusher saw from our hooks.
fn told(env: &TestEnv, stderr: &str) -> String {
    env.normalize(stderr)
        .lines()
        .filter(|l| l.contains("mirror-hooks") || l.contains("[remote rejected]"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a test makes its downstream: [`TestEnv::downstream`] (two-phase) or
/// [`TestEnv::downstream_pre_receive`].
type Make = fn(&TestEnv, &str, &str) -> PathBuf;

/// An upstream with `main`, and a downstream (made by `make`) forwarding `main` to it.
fn forwarding(env: &TestEnv, make: Make) -> (PathBuf, PathBuf, PathBuf) {
    let up = env.bare("up.git");
    let toml = format!(
        "[upstream]\nurl = {:?}\nrefs = [\"refs/heads/main\"]\n",
        up.to_str().unwrap()
    );
    let down = make(env, "down.git", &toml);
    let work = env.work("work");
    env.commit(&work, "one");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    (up, down, work)
}

#[test]
fn while_paused_pushes_to_the_upstreams_refs_are_refused_in_both_modes() {
    let modes: [(&str, Make); 2] = [
        ("two-phase", TestEnv::downstream),
        ("pre-receive", TestEnv::downstream_pre_receive),
    ];
    let mut said = Vec::new();
    for (mode, make) in modes {
        let env = TestEnv::new();
        let (up, down, work) = forwarding(&env, make);
        let before = env.rev(&up, "refs/heads/main");
        let paused = mirror_cmd(&env, &["pause", down.to_str().unwrap()], 0);
        assert!(paused.contains("paused"), "{paused}");
        let c2 = env.commit(&work, "two");
        let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
        assert!(!pushed.success, "{mode}: {}", pushed.stderr);
        assert_eq!(env.rev(&up, "refs/heads/main"), before, "{mode}");
        assert_eq!(env.rev(&down, "refs/heads/main"), before, "{mode}");
        let words = told(&env, &pushed.stderr);
        assert_eq!(
            words.matches("mirroring is paused for maintenance").count(),
            1,
            "{mode}: said once: {words}"
        );
        said.push(format!("{mode}:\n{words}"));
        // A ref the upstream does not mirror is pushed as usual.
        let pushed = env.push(&work, &down, &["HEAD:refs/heads/topic"]);
        assert!(pushed.success, "{mode}: {}", pushed.stderr);
        assert_eq!(env.rev(&down, "refs/heads/topic"), Some(c2.clone()));
        assert_eq!(env.rev(&up, "refs/heads/topic"), None);
        // After resume the same push goes through to both.
        mirror_cmd(&env, &["resume", down.to_str().unwrap()], 0);
        let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
        assert!(pushed.success, "{mode}: {}", pushed.stderr);
        assert_eq!(env.rev(&up, "refs/heads/main"), Some(c2.clone()));
        assert_eq!(env.rev(&down, "refs/heads/main"), Some(c2));
    }
    insta::assert_snapshot!(said.join("\n\n"));
}

/// A pause that begins after pre-receive let a push by (here: no pre-receive at all)
/// is caught by proc-receive before it takes a lock: the upstream's refs are refused,
/// the others updated.
#[test]
fn proc_receive_refuses_the_upstreams_refs_of_a_push_that_slipped_past_pre_receive() {
    let env = TestEnv::new();
    let (up, down, work) = forwarding(&env, TestEnv::downstream);
    std::fs::remove_file(down.join("hooks/pre-receive")).unwrap();
    let before = env.rev(&up, "refs/heads/main");
    mirror_cmd(&env, &["pause", down.to_str().unwrap()], 0);
    let c2 = env.commit(&work, "two");
    let pushed = env.push(
        &work,
        &down,
        &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"],
    );
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("main (mirroring is paused for maintenance)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(env.rev(&up, "refs/heads/main"), before);
    assert_eq!(env.rev(&down, "refs/heads/main"), before);
    assert_eq!(env.rev(&down, "refs/heads/topic"), Some(c2));
}

#[test]
fn while_paused_jobs_queue_and_pulls_do_nothing_then_resume_lets_everything_flow() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let mirror = env.bare("mirror.git");
    let toml = format!(
        "[pull]\nurl = {:?}\n\n[[push]]\nname = \"copy\"\nurl = {:?}\nrefs = [\"refs/heads/main\"]\n",
        up.to_str().unwrap(),
        mirror.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let d = down.to_str().unwrap();
    let work = env.work("work");
    mirror_cmd(&env, &["pause", d], 0);

    // A push here is accepted and queued for the push mirror, but not pushed.
    let c1 = env.commit(&work, "here");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("queued for push mirror copy (1 ref) (mirroring is paused for maintenance: it goes out after `git mirror resume`)."),
        "{}",
        pushed.stderr
    );
    let said = mirror_cmd(&env, &["push", "--now", d], 0);
    assert!(
        said.contains("copy: not pushed: mirroring is paused for maintenance"),
        "{said}"
    );
    let said = mirror_cmd(&env, &["push", "--all", env.root().to_str().unwrap()], 0);
    assert!(
        said.contains("mirroring is paused for maintenance"),
        "{said}"
    );
    assert_eq!(env.rev(&mirror, "refs/heads/main"), None);

    // The upstream moves; a pull, even --now, does nothing and says why.
    let c2 = env.commit(&work, "there");
    let pushed = env.push(&work, &up, &["HEAD:refs/heads/feature"]);
    assert!(pushed.success, "{}", pushed.stderr);
    let said = mirror_cmd(&env, &["pull", "--now", d], 0);
    assert!(
        said.contains("pull: not pulled: mirroring is paused for maintenance"),
        "{said}"
    );
    let said = mirror_cmd(
        &env,
        &["pull", "--all", env.root().to_str().unwrap(), "--now"],
        0,
    );
    assert!(
        said.contains("mirroring is paused for maintenance"),
        "{said}"
    );
    assert_eq!(env.rev(&down, "refs/heads/feature"), None);

    let shown = status(&env, &down);
    assert_eq!(shown["paused"], true, "{shown}");
    let copy = shown["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "copy")
        .unwrap();
    assert_eq!(copy["queued_jobs"], 1, "{shown}");
    let table = mirror_cmd(&env, &["status", d], 0);
    assert!(table.starts_with("PAUSED: "), "{table}");

    // Resumed: the queued job goes out, and the pull runs.
    let said = mirror_cmd(&env, &["resume", d], 0);
    assert!(said.contains("resumed"), "{said}");
    assert!(
        eventually(PATIENCE, || env.rev(&mirror, "refs/heads/main")
            == Some(c1.clone())),
        "the job queued while paused was not pushed"
    );
    let said = mirror_cmd(&env, &["pull", "--now", d], 0);
    assert!(!said.contains("paused"), "{said}");
    assert_eq!(env.rev(&down, "refs/heads/feature"), Some(c2));
    assert_eq!(status(&env, &down)["paused"], false);
    let table = mirror_cmd(&env, &["status", d], 0);
    assert!(!table.contains("PAUSED"), "{table}");
}

/// Root pausing, resuming and editing another user's repositories acts as their owner:
/// nothing it leaves there is root's, and mirror.toml keeps its owner and mode.
#[test]
fn as_root_pause_resume_and_add_act_as_the_repositorys_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: this test needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    let env = TestEnv::new();
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet = env.path("fleet");
    std::fs::create_dir(&fleet).unwrap();
    let repo = env.bare("fleet/one.git");
    std::fs::write(repo.join("mirror.toml"), "# kept\n").unwrap();
    std::fs::set_permissions(
        repo.join("mirror.toml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = env
        .command("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let owned_by_nobody = |path: &Path| {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (NOBODY, NOBODY),
            "{}",
            path.display()
        );
    };
    let f = fleet.to_str().unwrap();
    let said = mirror_cmd(&env, &["pause", "--all", f], 0);
    assert!(said.contains("1 paused"), "{said}");
    owned_by_nobody(&repo.join("mirror"));
    owned_by_nobody(&repo.join("mirror/paused"));
    owned_by_nobody(&repo.join("mirror/log"));
    assert_eq!(status(&env, &repo)["paused"], true);

    let r = repo.to_str().unwrap();
    mirror_cmd(
        &env,
        &["add", "push", "copy", "https://example.com/x.git", r],
        0,
    );
    owned_by_nobody(&repo.join("mirror.toml"));
    let mode = std::fs::metadata(repo.join("mirror.toml")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o640);

    let said = mirror_cmd(&env, &["resume", "--all", f], 0);
    assert!(said.contains("1 resumed"), "{said}");
    assert!(!repo.join("mirror/paused").exists());
    assert_eq!(status(&env, &repo)["paused"], false);
}

// Review (h-review2): the push-mirror worker looks at the pause once, when it starts
// (src/push.rs `run`); its loop (src/push.rs `work`: claim, run_once, again while jobs
// wait) never looks again. A worker that is pushing when `git mirror pause` runs goes on
// to push every job queued during the pause, while post-receive tells the pusher that
// the job "goes out after `git mirror resume`".
#[test]
fn review_a_worker_running_when_the_pause_begins_pushes_nothing_queued_during_it() {
    let env = TestEnv::new();
    let mirror = env.bare("mirror.git");
    let gate = env.path("gate");
    std::fs::create_dir_all(&gate).unwrap();
    // The mirror's first receive waits until the test opens the gate.
    env.script(
        &mirror.join("hooks/pre-receive"),
        &format!(
            "cat >/dev/null\nif [ ! -e {g}/seen ]; then touch {g}/seen; until [ -e {g}/go ]; do sleep 0.05; done; fi",
            g = gate.display()
        ),
    );
    let toml = format!(
        "[[push]]\nname = \"backup\"\nurl = {:?}\n",
        mirror.to_str().unwrap()
    );
    let down = env.downstream("down.git", &toml);
    let work = env.work("work");
    let before = env.commit(&work, "before the pause");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    // The worker post-receive started is in the middle of pushing it.
    assert!(eventually(PATIENCE, || gate.join("seen").exists()));
    mirror_cmd(&env, &["pause", down.to_str().unwrap()], 0);
    let during = env.commit(&work, "during the pause");
    let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("goes out after `git mirror resume`"),
        "{}",
        pushed.stderr
    );
    std::fs::write(gate.join("go"), "").unwrap();
    assert!(eventually(PATIENCE, || env
        .rev(&mirror, "refs/heads/main")
        .is_some()));
    // Wait for that worker to end (its pid is in the queue's lock file).
    let pid: i32 = std::fs::read_to_string(down.join("mirror/queue/backup/lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(eventually(PATIENCE, || !Path::new(&format!("/proc/{pid}")).exists()));
    assert_eq!(
        env.rev(&mirror, "refs/heads/main").as_deref(),
        Some(before.as_str()),
        "the push made while paused went out to the mirror (during = {during})"
    );
    assert_eq!(status(&env, &down)["paused"], true);
}
