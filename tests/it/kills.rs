//! A pull killed at random moments — SIGTERM, SIGKILL, or SIGKILL of it and of every
//! process it started — never wedges the repository: the next pull converges, `git
//! fsck` is clean, no lock file is left, and pushes to the pulled branches go through.

use crate::util::{command_line, descendants, lock_files, running, signal, TestEnv, GIT_MIRROR};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const BRANCHES: usize = 1000;
const ROUNDS: usize = 20;
/// Rounds after this many start only while the test has run less than [`BUDGET`]:
/// each round costs two pulls of 1 000 changed refs, slow on a loaded machine.
const MIN_ROUNDS: usize = 8;
const BUDGET: Duration = Duration::from_secs(50);

/// xorshift64*: the same moments and signals on every run.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Moves every branch of `up` to a new commit on top of `parent`; returns it.
fn move_all(env: &TestEnv, up: &Path, parent: Option<&str>, round: usize) -> String {
    let tree = env.git_ok(up, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let message = format!("round {round}");
    let mut args = vec!["commit-tree", tree.as_str(), "-m", message.as_str()];
    if let Some(parent) = parent {
        args.extend(["-p", parent]);
    }
    let commit = env.git_ok(up, &args);
    let mut input = String::new();
    for i in 0..BRANCHES {
        input.push_str(&format!("update refs/heads/b{i:04} {commit}\n"));
    }
    env.update_refs(up, &input);
    commit
}

/// After a killed run: the next pull converges and leaves a sound repository that
/// takes pushes to the branches it pulls.
/// Returns how long that pull took.
fn check(env: &TestEnv, up: &Path, down: &Path, work: &Path, round: usize, how: &str) -> Duration {
    let started = Instant::now();
    let mut out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    if String::from_utf8_lossy(&out.stderr).contains("cannot be told from a live writer's yet") {
        // An empty lock (a deletion's, packed-refs.lock) the killed git left: the next
        // run removes it once it is a minute old. Let that minute pass for the locks.
        for lock in lock_files(down) {
            let file = std::fs::File::options().write(true).open(&lock).unwrap();
            file.set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
                .unwrap();
        }
        out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    }
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "round {round} ({how}): the next pull failed: {said}{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(down.join("mirror/log")).unwrap_or_default()
    );
    assert!(
        env.heads_and_tags(down) == env.heads_and_tags(up),
        "round {round} ({how}): refs differ from the upstream after: {said}"
    );
    let fsck = env.git(down, &["fsck", "--no-dangling", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "round {round} ({how}): git fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let locks = lock_files(down);
    assert!(
        locks.is_empty(),
        "round {round} ({how}): lock files left: {locks:?}"
    );
    let private = env.git_ok(down, &["for-each-ref", "refs/mirror-hooks/"]);
    assert_eq!(private, "", "round {round} ({how}): fetched refs left");
    // A push to a branch the pull writes: forward, then back to the upstream's value
    // (so the next round is not a divergence).
    let branch = format!("refs/heads/b{:04}", round * 37 % BRANCHES);
    env.git_ok(work, &["fetch", "-q", down.to_str().unwrap(), &branch]);
    env.git_ok(work, &["checkout", "-q", "--detach", "FETCH_HEAD"]);
    let upstream_value = env.git_ok(work, &["rev-parse", "HEAD"]);
    env.commit(work, &format!("pushed in round {round}"));
    for spec in [
        format!("HEAD:{branch}"),
        format!("+{upstream_value}:{branch}"),
    ] {
        let pushed = env.push(work, down, &[&spec]);
        assert!(
            pushed.success,
            "round {round} ({how}): push {spec} failed: {}",
            pushed.stderr
        );
    }
    took
}

#[test]
fn a_pull_killed_at_random_moments_never_wedges_the_repository() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    let work = env.work("work");
    let clock = Instant::now();
    let mut tip = move_all(&env, &up, None, 0);
    // A whole pull, to learn how long one takes here: the kills land anywhere in one.
    let mut whole = check(&env, &up, &down, &work, 0, "not killed");

    let mut rng = Prng(0x6d69_7272_6f72_2d68);
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        if round > MIN_ROUNDS && clock.elapsed() > BUDGET {
            break;
        }
        tip = move_all(&env, &up, Some(&tip), round);
        let mut pull = env
            .command(GIT_MIRROR)
            .args(["pull", "--now", down.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = pull.id() as i32;
        let delay = Duration::from_millis(rng.below(whole.as_millis() as u64));
        let how = [
            "SIGTERM",
            "SIGKILL",
            "SIGKILL of it and every process it started",
        ][round % 3];
        // The sleep picks the moment; nothing waits for a state with it.
        std::thread::sleep(delay);
        match how {
            "SIGTERM" => signal(pid, libc::SIGTERM),
            "SIGKILL" => signal(pid, libc::SIGKILL),
            _ => {
                for child in descendants(pid) {
                    signal(child, libc::SIGKILL);
                }
                signal(pid, libc::SIGKILL);
            }
        }
        let status = pull.wait().unwrap();
        let how = format!("{how} after {delay:?}");
        let took = check(&env, &up, &down, &work, round, &how);
        whole = whole.max(took);
        rounds.push(format!("{how}: {status}"));
    }
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap();
    let cleaned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pull: removed"))
        .collect();
    eprintln!(
        "{} rounds in {:?} (a pull takes up to {whole:?}):\n{}\nlock cleanups:\n{}",
        rounds.len(),
        clock.elapsed(),
        rounds.join("\n"),
        cleaned.join("\n")
    );
}

#[test]
fn a_stale_lock_the_pull_did_not_make_is_left_alone_and_doctor_names_it() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
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
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    assert!(env
        .git_mirror(&["pull", "--now", down.to_str().unwrap()])
        .status
        .success());
    // Someone else's git was killed two minutes ago while it held topic's lock.
    let lock = down.join("refs/heads/topic.lock");
    std::fs::write(&lock, "").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    env.commit(&work, "two");
    assert!(
        env.push(
            &work,
            &up,
            &["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]
        )
        .success
    );

    let pulled = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    let said = env.normalize(&String::from_utf8_lossy(&pulled.stdout));
    assert!(lock.exists(), "a lock the pull did not make was removed");
    assert_eq!(
        env.rev(&down, "refs/heads/main"),
        env.rev(&up, "refs/heads/main")
    );
    assert!(said.contains("refs/heads/topic"), "{said}");

    let doctor = env.git_mirror(&["doctor", down.to_str().unwrap()]);
    let text = env.normalize(&String::from_utf8_lossy(&doctor.stdout));
    assert_eq!(doctor.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[TMP]/down.git/refs/heads/topic.lock: stale lock (2m")
            && text.contains("old): a git process was killed while it wrote refs"),
        "{text}"
    );
    assert!(
        text.contains("then remove it: rm -- [TMP]/down.git/refs/heads/topic.lock"),
        "{text}"
    );
}

#[test]
fn sigterm_reaches_the_running_git_which_is_waited_for() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    move_all(&env, &up, None, 0);
    let down = env.downstream(
        "down.git",
        &format!("[pull]\nurl = {:?}\n", up.to_str().unwrap()),
    );
    // The transaction of 1 000 refs holds its locks until its hook has answered, which
    // it never does: the git is caught with every lock taken.
    let hook = down.join("hooks/reference-transaction");
    env.script(
        &hook,
        "[ \"$1\" = prepared ] && exec sleep 600\ncat >/dev/null",
    );
    let mut pull = env
        .command(GIT_MIRROR)
        .args(["pull", "--now", down.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = pull.id() as i32;
    // Signal it while its ref transaction holds every lock: once the git among its
    // children whose command line says so runs the hook (signalled earlier, git may be
    // between creating a lock file and noting it for removal, a window of git's own).
    let named = |word: &str| {
        descendants(pid).into_iter().find(|&child| {
            command_line(child).is_some_and(|line| line.split(' ').any(|w| w == word))
        })
    };
    let mut git = None;
    assert!(crate::util::eventually(Duration::from_secs(30), || {
        git = named("update-ref");
        git.is_some() && named("sleep").is_some()
    }));
    let git = git.unwrap();
    signal(pid, libc::SIGTERM);
    let status = pull.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(
        !running(git),
        "git-mirror exited before its git {git} ended"
    );
    assert_eq!(lock_files(&down), Vec::<PathBuf>::new());
    std::fs::remove_file(&hook).unwrap();
    // The next run finds nothing in its way.
    let out = env.git_mirror(&["pull", "--now", down.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(env.heads_and_tags(&down), env.heads_and_tags(&up));
}
