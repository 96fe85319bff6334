//! Two-phase forwarding (`proc-receive`): the local ref locks are taken before the
//! upstream is asked, so what this repository cannot apply never reaches the upstream,
//! and a hook killed at any point is healed by the journal recovery. A few tests run the
//! classic pre-receive install too, to record the window two-phase closes.

use crate::util::{
    descendants_with, eventually, lock_files, running, signal, Family, Pushed, TestEnv,
    PROC_RECEIVE,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const ZERO: &str = "0000000000000000000000000000000000000000";
/// How long a test waits for a state a loaded machine reaches eventually.
const PATIENCE: Duration = Duration::from_secs(60);

/// How the downstream's hooks are installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// pre-receive forwards, git updates the refs afterwards (the classic install).
    PreReceive,
    /// proc-receive updates the refs itself, around the upstream push.
    TwoPhase,
}

/// An upstream, a downstream proxying to it, and a work tree whose `base` commit is on
/// `main` on both sides.
struct Setup {
    env: TestEnv,
    up: PathBuf,
    down: PathBuf,
    work: PathBuf,
    base: String,
}

/// `extra` follows the `[upstream]` table's url line in mirror.toml.
fn setup(mode: Mode, extra: &str) -> Setup {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    let toml = format!("[upstream]\nurl = {:?}\n{extra}\n", up.to_str().unwrap());
    let down = match mode {
        Mode::PreReceive => env.downstream_pre_receive("down.git", &toml),
        Mode::TwoPhase => env.downstream("down.git", &toml),
    };
    let work = env.work("work");
    let base = env.commit(&work, "base");
    let s = Setup {
        env,
        up,
        down,
        work,
        base,
    };
    s.seed(&["main"]);
    s
}

impl Setup {
    /// Puts the work tree's HEAD on `branches` of both sides, without our hooks (so
    /// that the setup works whatever the hooks do): pushed to the upstream, fetched here.
    fn seed(&self, branches: &[&str]) {
        let work = self.work.to_str().unwrap();
        for branch in branches {
            let spec = format!("HEAD:refs/heads/{branch}");
            let pushed = self.env.push(&self.work, &self.up, &[&spec]);
            assert!(pushed.success, "{}", pushed.stderr);
            let spec = format!("+HEAD:refs/heads/{branch}");
            self.env.git_ok(&self.down, &["fetch", "-q", work, &spec]);
        }
    }

    fn push(&self, refspecs: &[&str]) -> Pushed {
        self.env.push(&self.work, &self.down, refspecs)
    }

    fn push_with(&self, options: &[&str], refspecs: &[&str]) -> Pushed {
        self.env
            .push_with(&self.work, &self.down, options, refspecs)
    }

    /// The value of `name` on the upstream and here.
    fn both(&self, name: &str) -> (Option<String>, Option<String>) {
        (self.env.rev(&self.up, name), self.env.rev(&self.down, name))
    }

    /// The branches and tags of the upstream and of the downstream.
    fn sides(&self) -> (String, String) {
        (
            format!("{:?}", self.env.heads_and_tags(&self.up)),
            format!("{:?}", self.env.heads_and_tags(&self.down)),
        )
    }

    fn fsck(&self) {
        self.env
            .git_ok(&self.down, &["fsck", "--no-progress", "--no-dangling"]);
    }
}

/// True when git told the pusher that `branch` was refused by the remote
/// (`! [remote rejected] HEAD -> main (why)`, or `… main (why)` for a deletion).
fn rejected(pushed: &Pushed, branch: &str) -> bool {
    pushed.stderr.lines().any(|l| {
        l.contains("! [remote rejected]")
            && (l.contains(&format!("-> {branch} (")) || l.contains(&format!("] {branch} (")))
    })
}

/// A push refused for `branch`, with mirror-hooks' explanation.
fn assert_refused(pushed: &Pushed, branch: &str) {
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(rejected(pushed, branch), "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("remote: mirror-hooks: "),
        "the pusher is not told why: {}",
        pushed.stderr
    );
}

/// The intent journals of pushes in flight (or of killed ones) in `repo`.
fn journals(repo: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(repo.join("mirror/journal")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

// 1. The local update cannot happen: refused, nothing forwarded, nothing changed here.

/// A stale `refs/heads/main.lock` (a crashed writer's) in the downstream, then a push
/// of a new commit to main. Returns the setup, what the pusher was told, the commit.
fn push_past_a_stale_lock(mode: Mode) -> (Setup, Pushed, String) {
    let s = setup(mode, "");
    std::fs::write(s.down.join("refs/heads/main.lock"), "").unwrap();
    let next = s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    (s, pushed, next)
}

#[test]
fn two_phase_a_stale_lock_refuses_the_push_before_the_upstream_is_asked() {
    let (s, pushed, next) = push_past_a_stale_lock(Mode::TwoPhase);
    assert_refused(&pushed, "main");
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(s.base.clone()), Some(s.base.clone())),
        "{}",
        pushed.stderr
    );
    // A lock mirror-hooks did not make is never removed.
    let lock = s.down.join("refs/heads/main.lock");
    assert!(lock.exists());
    assert!(journals(&s.down).is_empty());

    std::fs::remove_file(&lock).unwrap();
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
}

/// The window two-phase closes: in pre-receive mode the upstream accepts the push
/// before git takes the local lock, so the push the lock then refuses here is on the
/// upstream anyway.
#[test]
fn pre_receive_mode_a_stale_lock_leaves_the_upstream_ahead() {
    let (s, pushed, next) = push_past_a_stale_lock(Mode::PreReceive);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(rejected(&pushed, "main"), "{}", pushed.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(next), Some(s.base.clone())),
        "{}",
        pushed.stderr
    );
}

/// A `reference-transaction` hook in the downstream that vetoes in the prepared state
/// while the file `veto` exists, then a push of a new commit to main.
fn push_past_a_veto(mode: Mode) -> (Setup, Pushed, String) {
    let s = setup(mode, "");
    let veto = s.env.path("veto");
    std::fs::write(&veto, "").unwrap();
    s.env.script(
        &s.down.join("hooks/reference-transaction"),
        &format!(
            "cat >/dev/null\nif [ \"$1\" = prepared ] && [ -e {} ]; then\n  echo 'veto: refs are frozen' >&2\n  exit 1\nfi\nexit 0",
            veto.display()
        ),
    );
    let next = s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    (s, pushed, next)
}

#[test]
fn two_phase_a_reference_transaction_veto_refuses_the_push_before_the_upstream_is_asked() {
    let (s, pushed, next) = push_past_a_veto(Mode::TwoPhase);
    assert_refused(&pushed, "main");
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(s.base.clone()), Some(s.base.clone())),
        "{}",
        pushed.stderr
    );
    assert!(lock_files(&s.down).is_empty());
    assert!(journals(&s.down).is_empty());

    std::fs::remove_file(s.env.path("veto")).unwrap();
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
}

/// The same window as with a stale lock: the veto comes after the upstream accepted.
/// (git 2.47's receive-pack dies on the veto, so the pusher is not even told which ref
/// failed: the connection drops.)
#[test]
fn pre_receive_mode_a_reference_transaction_veto_leaves_the_upstream_ahead() {
    let (s, pushed, next) = push_past_a_veto(Mode::PreReceive);
    assert!(!pushed.success, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("ref updates aborted by hook"),
        "{}",
        pushed.stderr
    );
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(next), Some(s.base.clone())),
        "{}",
        pushed.stderr
    );
}

#[test]
fn two_phase_the_update_hook_runs_once_per_ref_and_what_it_refuses_is_not_forwarded() {
    // receive-pack does not run the update hook for refs routed to proc-receive: ours
    // must, exactly once per ref (pre-receive mode runs it twice: ours, then git's).
    let s = setup(Mode::TwoPhase, "");
    let log = s.env.path("update.log");
    s.env.script(
        &s.down.join("hooks/update"),
        &format!(
            "echo \"$1 $2 $3\" >> {}\nif [ \"$1\" = refs/heads/release ]; then\n  echo \"policy: $1 may not be changed by you\" >&2\n  exit 1\nfi\nexit 0",
            log.display()
        ),
    );
    let before = s.sides();
    let next = s.env.commit(&s.work, "release candidate");

    let pushed = s.push(&["HEAD:refs/heads/release"]);
    assert_refused(&pushed, "release");
    assert!(
        pushed
            .stderr
            .contains("remote: policy: refs/heads/release may not be changed by you"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.sides(), before, "{}", pushed.stderr);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("refs/heads/release {ZERO} {next}\n")
    );

    std::fs::remove_file(&log).unwrap();
    s.env.git_ok(&s.work, &["tag", "v1"]);
    let pushed = s.push(&["HEAD:refs/heads/main", "refs/tags/v1"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(next.clone()), Some(next.clone()))
    );
    assert_eq!(
        s.both("refs/tags/v1"),
        (Some(next.clone()), Some(next.clone()))
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort_unstable();
    assert_eq!(
        calls,
        [
            format!("refs/heads/main {} {next}", s.base),
            format!("refs/tags/v1 {ZERO} {next}"),
        ]
    );
}

#[test]
fn two_phase_deny_deletes_refuses_a_deletion_before_the_upstream_is_asked() {
    // receive-pack does not apply receive.denyDeletes to refs routed to proc-receive.
    let s = setup(Mode::TwoPhase, "");
    s.seed(&["keep"]);
    s.env
        .git_ok(&s.down, &["config", "receive.denyDeletes", "true"]);
    let before = s.sides();

    let pushed = s.push(&[":refs/heads/keep"]);
    assert_refused(&pushed, "keep");
    assert!(
        pushed
            .stderr
            .contains("deleting refs/heads/keep is not allowed"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.sides(), before, "{}", pushed.stderr);

    s.env
        .git_ok(&s.down, &["config", "receive.denyDeletes", "false"]);
    let pushed = s.push(&[":refs/heads/keep"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/keep"), (None, None));
}

#[test]
fn two_phase_deny_non_fast_forwards_and_deny_delete_current_refuse_before_the_upstream_is_asked() {
    // Nor does it apply denyNonFastForwards or denyDeleteCurrent to routed refs.
    let s = setup(Mode::TwoPhase, "");
    s.env
        .git_ok(&s.down, &["config", "receive.denyNonFastForwards", "true"]);
    // Only our check may refuse the deletion, not the upstream's.
    s.env
        .git_ok(&s.up, &["config", "receive.denyDeleteCurrent", "ignore"]);
    let before = s.sides();
    s.env
        .git_ok(&s.work, &["commit", "-q", "--amend", "-m", "rewritten"]);

    let pushed = s.push(&["+HEAD:refs/heads/main"]);
    assert_refused(&pushed, "main");
    assert!(
        pushed.stderr.contains("is not a fast-forward"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.sides(), before, "{}", pushed.stderr);

    let pushed = s.push(&[":refs/heads/main"]);
    assert_refused(&pushed, "main");
    assert!(
        pushed
            .stderr
            .contains("refs/heads/main is this repository's default branch (HEAD)"),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.sides(), before, "{}", pushed.stderr);

    s.env
        .git_ok(&s.down, &["config", "receive.denyNonFastForwards", "false"]);
    let rewritten = s.env.rev(&s.work, "HEAD");
    let pushed = s.push(&["+HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (rewritten.clone(), rewritten));
}

// The upstream's answer decides the local commit or abort.

#[test]
fn two_phase_an_upstream_refusal_aborts_the_local_update_and_leaves_no_lock() {
    let s = setup(Mode::TwoPhase, "");
    let refuse = s.env.path("refuse");
    std::fs::write(&refuse, "").unwrap();
    s.env.script(
        &s.up.join("hooks/pre-receive"),
        &format!(
            "if [ -e {} ]; then\n  echo 'GL-HOOK-ERR: main is frozen.' >&2\n  exit 1\nfi\nexit 0",
            refuse.display()
        ),
    );
    let before = s.sides();
    let next = s.env.commit(&s.work, "next");

    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert_refused(&pushed, "main");
    assert!(
        pushed
            .stderr
            .contains("remote: upstream: GL-HOOK-ERR: main is frozen."),
        "{}",
        pushed.stderr
    );
    assert_eq!(s.sides(), before, "{}", pushed.stderr);
    assert_eq!(lock_files(&s.down), Vec::<PathBuf>::new());
    assert!(journals(&s.down).is_empty());

    std::fs::remove_file(&refuse).unwrap();
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
}

#[test]
fn two_phase_refs_outside_the_allowlist_are_updated_here_without_forwarding() {
    let s = setup(Mode::TwoPhase, r#"refs = ["refs/heads/main"]"#);
    let next = s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/local"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(next.clone()), Some(next.clone()))
    );
    assert_eq!(s.both("refs/heads/local"), (None, Some(next)));
    assert!(journals(&s.down).is_empty());
}

#[test]
fn two_phase_tells_the_pusher_what_pre_receive_mode_does() {
    let told = [Mode::PreReceive, Mode::TwoPhase].map(|mode| {
        let s = setup(mode, "");
        s.env.commit(&s.work, "next");
        let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/topic"]);
        assert!(pushed.success, "{mode:?}: {}", pushed.stderr);
        s.env.normalize(&pushed.stderr)
    });
    assert_eq!(told[1], told[0]);
}

// 2 and 3. One of two refs cannot be prepared.

#[test]
fn two_phase_an_atomic_push_with_a_ref_that_cannot_be_locked_changes_neither_side() {
    let s = setup(Mode::TwoPhase, "");
    s.seed(&["dev"]);
    let lock = s.down.join("refs/heads/dev.lock");
    std::fs::write(&lock, "").unwrap();
    let before = s.sides();
    let next = s.env.commit(&s.work, "next");

    let refspecs = ["HEAD:refs/heads/main", "HEAD:refs/heads/dev"];
    let pushed = s.push_with(&["--atomic"], &refspecs);
    assert_refused(&pushed, "dev");
    assert!(rejected(&pushed, "main"), "{}", pushed.stderr);
    assert_eq!(s.sides(), before, "{}", pushed.stderr);
    assert!(journals(&s.down).is_empty());

    std::fs::remove_file(&lock).unwrap();
    let pushed = s.push_with(&["--atomic"], &refspecs);
    assert!(pushed.success, "{}", pushed.stderr);
    for name in ["refs/heads/main", "refs/heads/dev"] {
        assert_eq!(s.both(name), (Some(next.clone()), Some(next.clone())));
    }
}

#[test]
fn two_phase_a_plain_push_lands_the_ref_that_can_be_locked_and_only_that_one() {
    let s = setup(Mode::TwoPhase, "");
    s.seed(&["dev"]);
    let lock = s.down.join("refs/heads/dev.lock");
    std::fs::write(&lock, "").unwrap();
    let next = s.env.commit(&s.work, "next");

    let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/dev"]);
    assert_refused(&pushed, "dev");
    assert!(!rejected(&pushed, "main"), "{}", pushed.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(next.clone()), Some(next.clone())),
        "{}",
        pushed.stderr
    );
    assert_eq!(
        s.both("refs/heads/dev"),
        (Some(s.base.clone()), Some(s.base.clone())),
        "{}",
        pushed.stderr
    );
    assert!(journals(&s.down).is_empty());

    std::fs::remove_file(&lock).unwrap();
    let pushed = s.push(&["HEAD:refs/heads/dev"]);
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/dev"), (Some(next.clone()), Some(next)));
}

// 4. The hook killed with SIGKILL at three points of a push.

/// Where the push is when the hook is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    /// The local locks are being taken (the downstream's reference-transaction hook
    /// blocks in the prepared state); the upstream has not been asked.
    Locking,
    /// The upstream's pre-receive hook blocks: it has not decided.
    Forwarding,
    /// The upstream's post-receive hook blocks: its refs are updated, our push still
    /// waits for its end, so the local transaction is prepared but not committed.
    Accepted,
}

/// What finishes the killed push's journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recovery {
    /// `git mirror pull --now REPO` (mirror.toml has a `[pull]` table).
    PullNow,
    /// `git mirror pull --all ROOT` (the sweep; mirror.toml has a `[pull]` table).
    Sweep,
    /// The next push (to another branch), with no `[pull]` table.
    NextPush,
}

/// A hook at `path` that, the first time it runs with `commit` in its input while the
/// file `armed` exists (and `condition`, a shell test of its arguments, holds), touches
/// `reached` and waits until `release` exists (or a minute passed).
fn blocking_hook(env: &TestEnv, path: &Path, condition: &str, commit: &str) {
    let [armed, reached, release] = ["armed", "reached", "release"].map(|f| env.path(f));
    env.script(
        path,
        &format!(
            r#"input=$(cat)
{condition} || exit 0
[ -e {armed} ] || exit 0
case "$input" in *{commit}*) ;; *) exit 0 ;; esac
rm -f {armed}
touch {reached}
n=0
while [ ! -e {release} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
exit 0"#,
            armed = armed.display(),
            reached = reached.display(),
            release = release.display(),
        ),
    );
}

/// Our hook among the processes of the push `pusher`: the one descendant whose
/// command line names `hooks/NAME` and which runs our binary `exe` (the upstream's hooks,
/// also descendants of the push, are shell scripts).
fn our_hook(pusher: i32, name: &str, exe: &str) -> i32 {
    let exe = std::fs::canonicalize(exe).unwrap();
    let found: Vec<i32> = descendants_with(pusher, &[&format!("hooks/{name}")])
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
        .collect();
    assert_eq!(found.len(), 1, "our {name} among the push's processes");
    found[0]
}

/// A push to main killed at `point`, then `recovery`; afterwards the repository is
/// sound, both sides are equal, nothing acknowledged is lost, and main takes pushes.
fn killed(mode: Mode, point: Point, recovery: Recovery) {
    let pull = match recovery {
        Recovery::PullNow | Recovery::Sweep => "\n[pull]\n",
        Recovery::NextPush => "",
    };
    let s = setup(mode, pull);
    let env = &s.env;
    let base = s.base.clone();
    let pushed = env.commit(&s.work, "pushed while the hook dies");
    let (repo, hook, condition) = match point {
        Point::Locking => (&s.down, "reference-transaction", r#"[ "$1" = prepared ]"#),
        Point::Forwarding => (&s.up, "pre-receive", "true"),
        Point::Accepted => (&s.up, "post-receive", "true"),
    };
    blocking_hook(env, &repo.join("hooks").join(hook), condition, &pushed);
    std::fs::write(env.path("armed"), "").unwrap();

    let mut pusher = env
        .command("git")
        .arg("-C")
        .arg(&s.work)
        .args(["push", s.down.to_str().unwrap(), "HEAD:refs/heads/main"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = pusher.id() as i32;
    // Every process of the push, followed while they all exist (they are blocked),
    // so that the upstream's receive-pack is still known once its parents are killed.
    let mut family = Family::of(pid);
    let reached = eventually(PATIENCE, || {
        family.refresh();
        env.path("reached").exists() || pusher.try_wait().unwrap().is_some()
    });
    if !(reached && env.path("reached").exists()) {
        let out = pusher.wait_with_output().unwrap();
        panic!(
            "the blocking {hook} hook was never reached; the push: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    family.refresh();

    let victim = match mode {
        Mode::TwoPhase => our_hook(pid, "proc-receive", PROC_RECEIVE),
        Mode::PreReceive => our_hook(pid, "pre-receive", crate::util::PRE_RECEIVE),
    };
    let update_ref = descendants_with(victim, &["update-ref"]);
    if mode == Mode::TwoPhase && point != Point::Forwarding {
        assert_eq!(update_ref.len(), 1, "the hook's git update-ref");
    }
    // Stopped first, so that it cannot see its update-ref die before it dies itself.
    signal(victim, libc::SIGSTOP);
    if point != Point::Forwarding {
        for &p in &update_ref {
            signal(p, libc::SIGKILL);
        }
    }
    signal(victim, libc::SIGKILL);
    assert!(eventually(PATIENCE, || !running(victim)
        && update_ref.iter().all(|&p| !running(p))));
    std::fs::write(env.path("release"), "").unwrap();
    let out = pusher.wait_with_output().unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a push whose hook was killed was acknowledged: {told}"
    );
    // What the killed hook left running (the upstream's receive-pack, the released
    // hook) ends before anyone looks at the upstream.
    let ended = eventually(PATIENCE, || {
        family.refresh();
        family.living.is_empty()
    });
    assert!(
        ended,
        "processes of the push still run: {:?}",
        family.living
    );
    s.fsck();

    // What the kill left, before the recovery.
    match (mode, point) {
        (Mode::TwoPhase, Point::Locking) => {
            assert_eq!(env.rev(&s.up, "refs/heads/main"), Some(base.clone()));
            assert!(
                s.down.join("refs/heads/main.lock").exists(),
                "the killed update-ref left no lock: {told}"
            );
        }
        (Mode::TwoPhase, Point::Forwarding) => {
            assert_eq!(journals(&s.down).len(), 1, "{told}");
        }
        (Mode::TwoPhase, Point::Accepted) => {
            assert_eq!(
                s.both("refs/heads/main"),
                (Some(pushed.clone()), Some(base.clone())),
                "{told}"
            );
            assert!(
                s.down.join("refs/heads/main.lock").exists(),
                "the killed update-ref left no lock: {told}"
            );
            assert_eq!(journals(&s.down).len(), 1, "{told}");
        }
        (Mode::PreReceive, Point::Accepted) => {
            assert_eq!(
                s.both("refs/heads/main"),
                (Some(pushed.clone()), Some(base.clone())),
                "{told}"
            );
        }
        (Mode::PreReceive, _) => {}
    }

    let down = s.down.to_str().unwrap();
    match recovery {
        Recovery::PullNow | Recovery::Sweep => {
            let out = match recovery {
                Recovery::PullNow => env.git_mirror(&["pull", "--now", down]),
                _ => env.git_mirror(&["pull", "--all", env.root().to_str().unwrap()]),
            };
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Recovery::NextPush => {
            let next = s.push(&["HEAD:refs/heads/after"]);
            assert!(next.success, "{}", next.stderr);
            assert_eq!(
                s.both("refs/heads/after"),
                (Some(pushed.clone()), Some(pushed.clone()))
            );
        }
    }

    let log = std::fs::read_to_string(s.down.join("mirror/log")).unwrap_or_default();
    assert_eq!(journals(&s.down), Vec::<PathBuf>::new(), "log:\n{log}");
    assert_eq!(lock_files(&s.down), Vec::<PathBuf>::new(), "log:\n{log}");
    s.fsck();
    let (upstream, here) = s.both("refs/heads/main");
    assert_eq!(upstream, here, "log:\n{log}");
    match point {
        // Acknowledged by the upstream: kept, and brought here.
        Point::Accepted => assert_eq!(here, Some(pushed.clone()), "log:\n{log}"),
        // Never forwarded.
        Point::Locking => assert_eq!(here, Some(base.clone()), "log:\n{log}"),
        // Whatever the upstream decided once released.
        Point::Forwarding => assert!(
            here == Some(base.clone()) || here == Some(pushed.clone()),
            "{here:?}"
        ),
    }
    if mode == Mode::TwoPhase && point != Point::Locking {
        assert!(
            log.contains("journal"),
            "the recovery is not logged:\n{log}"
        );
    }

    // main takes the next push, on both sides.
    let last = env.commit(&s.work, "after the recovery");
    let next = s.push(&["HEAD:refs/heads/main"]);
    assert!(next.success, "{}", next.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(last.clone()), Some(last)));
}

#[test]
fn two_phase_killed_before_the_upstream_push_pull_now_recovers() {
    killed(Mode::TwoPhase, Point::Locking, Recovery::PullNow);
}

#[test]
fn two_phase_killed_before_the_upstream_push_the_next_push_recovers() {
    killed(Mode::TwoPhase, Point::Locking, Recovery::NextPush);
}

#[test]
fn two_phase_killed_during_the_upstream_push_pull_now_recovers() {
    killed(Mode::TwoPhase, Point::Forwarding, Recovery::PullNow);
}

#[test]
fn two_phase_killed_during_the_upstream_push_the_next_push_recovers() {
    killed(Mode::TwoPhase, Point::Forwarding, Recovery::NextPush);
}

#[test]
fn two_phase_killed_after_the_upstream_accepted_pull_now_recovers() {
    killed(Mode::TwoPhase, Point::Accepted, Recovery::PullNow);
}

#[test]
fn two_phase_killed_after_the_upstream_accepted_the_next_push_recovers() {
    killed(Mode::TwoPhase, Point::Accepted, Recovery::NextPush);
}

#[test]
fn two_phase_killed_after_the_upstream_accepted_the_sweep_recovers() {
    killed(Mode::TwoPhase, Point::Accepted, Recovery::Sweep);
}

/// The same death in pre-receive mode: the upstream is ahead, and a pull closes the
/// window (there is no journal and no lock of ours).
#[test]
fn pre_receive_mode_killed_after_the_upstream_accepted_pull_now_recovers() {
    killed(Mode::PreReceive, Point::Accepted, Recovery::PullNow);
}

// 5. Push options.

#[test]
fn two_phase_forwards_only_allowlisted_push_options() {
    let s = setup(Mode::TwoPhase, "push_options = [\"ci.skip\"]");
    for repo in [&s.down, &s.up] {
        s.env
            .git_ok(repo, &["config", "receive.advertisePushOptions", "true"]);
    }
    s.env.script(
        &s.up.join("hooks/pre-receive"),
        "i=0; while [ $i -lt ${GIT_PUSH_OPTION_COUNT:-0} ]; do eval echo \\$GIT_PUSH_OPTION_$i >> options.txt; i=$((i+1)); done",
    );
    let next = s.env.commit(&s.work, "next");
    let pushed = s.push_with(
        &["-o", "ci.skip", "-o", "secret=1"],
        &["HEAD:refs/heads/main"],
    );
    assert!(pushed.success, "{}", pushed.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(next.clone()), Some(next)));
    assert_eq!(
        std::fs::read_to_string(s.up.join("options.txt")).unwrap(),
        "ci.skip\n"
    );
    assert!(
        pushed
            .stderr
            .contains("push option \"secret\" is not forwarded"),
        "{}",
        pushed.stderr
    );
}

// 6. Status.

#[test]
fn status_says_which_mode_the_repository_runs_in() {
    for (mode, says) in [
        (Mode::TwoPhase, "two-phase"),
        (Mode::PreReceive, "pre-receive"),
    ] {
        let s = setup(mode, "");
        let out = s
            .env
            .git_mirror(&["status", "--json", s.down.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["mode"], says, "{mode:?}: {json}");
    }
}

// Review (issue 12): failing tests for findings of the adversarial review.

/// Writes the intent journal a proc-receive killed after the upstream took `refs`
/// (name, old, new) would have left: its process is gone, it held no lock.
fn review_orphan_journal(repo: &Path, refs: &[(&str, &str, &str)]) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let refs: Vec<serde_json::Value> = refs
        .iter()
        .map(|(name, old, new)| serde_json::json!({"name": name, "old": old, "new": new}))
        .collect();
    let journal = serde_json::json!({
        "format": "mirror-hooks-intent-1",
        "pid": pid,
        "started": null,
        "written_ms": now,
        "refs": refs,
        "writers": [],
    });
    let dir = repo.join("mirror/journal");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{pid}-{now}.json")), journal.to_string()).unwrap();
}

/// twophase.rs `run`: a non-atomic push commits the refs outside the allowlist first,
/// then builds the upstream's credentials; when that fails, every ref is reported
/// refused, the committed ones too. The pusher is told `local` was rejected while it
/// moved here (and post-receive, so the push mirrors, never hear of it).
#[test]
fn review_a_ref_updated_here_is_never_reported_refused() {
    let s = setup(
        Mode::TwoPhase,
        "refs = [\"refs/heads/main\"]\nauth = \"up\"\n\n[auth.up]\nssh_key = \"no-such-key\"\n",
    );
    s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main", "HEAD:refs/heads/local"]);
    let here = s.env.rev(&s.down, "refs/heads/local");
    assert_eq!(
        here.is_some(),
        !rejected(&pushed, "local"),
        "refs/heads/local here: {here:?}; the pusher was told:\n{}",
        pushed.stderr
    );
}

/// unfinished.rs `finish_one` records a recovered ref with `ledger.saw`, not
/// `ledger.forwarded`: a ref accepted while the upstream was away
/// (on_unreachable = "accept") keeps its unforwarded entry, whose lease (the upstream's
/// value of back then) is stale once the recovery applied what the upstream took. The
/// next push to that branch is refused until an administrator runs `git mirror resolve`.
#[test]
fn review_recovery_of_a_ref_accepted_offline_lets_the_next_push_through() {
    let s = setup(Mode::TwoPhase, "on_unreachable = \"accept\"");
    let toml = std::fs::read_to_string(s.down.join("mirror.toml")).unwrap();
    let away = format!(
        "[upstream]\nurl = \"git://127.0.0.1:{}/up.git\"\non_unreachable = \"accept\"\n",
        crate::util::closed_port()
    );
    std::fs::write(s.down.join("mirror.toml"), away).unwrap();
    let offline = s.env.commit(&s.work, "accepted while the upstream is away");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    assert!(pushed.success, "{}", pushed.stderr);
    std::fs::write(s.down.join("mirror.toml"), toml).unwrap();

    // A push offline -> taken whose proc-receive died after the upstream took it.
    let taken = s
        .env
        .commit(&s.work, "taken by the upstream, then the hook died");
    let direct = s.env.push(&s.work, &s.up, &["HEAD:refs/heads/main"]);
    assert!(direct.success, "{}", direct.stderr);
    review_orphan_journal(&s.down, &[("refs/heads/main", &offline, &taken)]);

    let other = s.push(&["HEAD:refs/heads/other"]);
    assert!(other.success, "{}", other.stderr);
    assert!(journals(&s.down).is_empty(), "{}", other.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(taken.clone()), Some(taken.clone()))
    );

    let last = s.env.commit(&s.work, "after the recovery");
    let next = s.push(&["HEAD:refs/heads/main"]);
    assert!(next.success, "{}", next.stderr);
    assert_eq!(s.both("refs/heads/main"), (Some(last.clone()), Some(last)));
}

/// A push to a symbolic ref (`refs/heads/alias` -> `refs/heads/main`): the allowlist is
/// checked on the name pushed, `git update-ref` follows the symref. With main
/// allowlisted and alias not, main moves here and never reaches the upstream, and the
/// pusher is told ok. (Pre-receive mode has the same hole, checked: receive-pack
/// follows the symref too; two-phase runs the update itself and can close it.)
#[test]
fn review_a_push_to_a_symbolic_ref_never_moves_a_forwarded_branch_here_alone() {
    let s = setup(Mode::TwoPhase, r#"refs = ["refs/heads/main"]"#);
    s.env.git_ok(
        &s.down,
        &["symbolic-ref", "refs/heads/alias", "refs/heads/main"],
    );
    s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/alias"]);
    let (up, here) = s.both("refs/heads/main");
    assert_eq!(
        up, here,
        "main differs; push success {}:\n{}",
        pushed.success, pushed.stderr
    );
}

/// receive-pack refuses a "funny refname" (`refs/foo`: one level below refs/) in its
/// own update, which it skips for refs routed to proc-receive; pre-receive mode
/// refuses it, two-phase creates it.
#[test]
fn review_two_phase_refuses_the_ref_names_receive_pack_refuses() {
    for mode in [Mode::PreReceive, Mode::TwoPhase] {
        let s = setup(mode, "");
        let pushed = s.push(&["HEAD:refs/foo"]);
        assert_eq!(
            s.env.rev(&s.down, "refs/foo"),
            None,
            "{mode:?}: {}",
            pushed.stderr
        );
    }
}

/// On reftable, `prepare` locks the whole ref store (`reftable/tables.list.lock`), and
/// a killed `git update-ref` leaves that lock. The journal records only files-backend
/// lock names (`refs/heads/main.lock`), so the recovery never removes it (nor does
/// doctor's list of stale locks name it): every later push is refused, for good.
#[test]
fn review_a_killed_push_to_a_reftable_repository_leaves_no_lock_that_blocks_every_push() {
    let env = TestEnv::new();
    let up = env.bare("up.git");
    env.git_ok(
        env.root(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            "--ref-format=reftable",
            "down.git",
        ],
    );
    let down = env.path("down.git");
    env.install_hooks(&down);
    std::fs::write(
        down.join("mirror.toml"),
        format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
    )
    .unwrap();
    let work = env.work("work");
    let base = env.commit(&work, "base");
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    env.git_ok(
        &down,
        &[
            "fetch",
            "-q",
            work.to_str().unwrap(),
            "+HEAD:refs/heads/main",
        ],
    );
    let pushed = env.commit(&work, "pushed while the hook dies");
    blocking_hook(&env, &up.join("hooks/post-receive"), "true", &pushed);
    std::fs::write(env.path("armed"), "").unwrap();

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
    let mut family = Family::of(pid);
    assert!(eventually(PATIENCE, || {
        family.refresh();
        env.path("reached").exists()
    }));
    family.refresh();
    let victim = our_hook(pid, "proc-receive", PROC_RECEIVE);
    let update_ref = descendants_with(victim, &["update-ref"]);
    assert_eq!(update_ref.len(), 1);
    assert!(down.join("reftable/tables.list.lock").exists());
    signal(victim, libc::SIGSTOP);
    signal(update_ref[0], libc::SIGKILL);
    signal(victim, libc::SIGKILL);
    assert!(eventually(PATIENCE, || !running(victim) && !running(update_ref[0])));
    std::fs::write(env.path("release"), "").unwrap();
    let out = pusher.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(eventually(PATIENCE, || {
        family.refresh();
        family.living.is_empty()
    }));
    assert_eq!(env.rev(&down, "refs/heads/main"), Some(base));

    // The next push (another branch) runs the recovery, then its own update.
    let next = env.push(&work, &down, &["HEAD:refs/heads/after"]);
    let log = std::fs::read_to_string(down.join("mirror/log")).unwrap_or_default();
    assert!(next.success, "{}\nlog:\n{log}", next.stderr);
    assert_eq!(
        (
            env.rev(&up, "refs/heads/main"),
            env.rev(&down, "refs/heads/main")
        ),
        (Some(pushed.clone()), Some(pushed))
    );
}

/// mode.rs `detect`: routing set (`receive.procReceiveRefs = refs`) but no
/// proc-receive hook (the binary moved by an upgrade, the link removed by hand) is
/// pre-receive mode, so pre-receive forwards; git then refuses every routed ref
/// ("fail to run proc-receive hook"): the upstream has a push this side refused.
#[test]
fn review_routing_without_the_hook_never_leaves_the_upstream_ahead() {
    let s = setup(Mode::TwoPhase, "");
    std::fs::remove_file(s.down.join("hooks/proc-receive")).unwrap();
    s.env.commit(&s.work, "next");
    let pushed = s.push(&["HEAD:refs/heads/main"]);
    let (up, here) = s.both("refs/heads/main");
    assert_eq!(
        up, here,
        "push success {}:\n{}",
        pushed.success, pushed.stderr
    );
}

/// twophase.rs `Push::prepare`: when a non-atomic push cannot be prepared whole (one
/// ref locked), every ref gets its own `git update-ref`, all held open at once until
/// the upstream answers: three file descriptors and three threads each. With the
/// usual limit of 1024 open files, a push of 1000 refs with one stale lock refuses
/// hundreds of refs that could be updated.
#[test]
fn review_a_big_plain_push_with_one_locked_ref_lands_every_other_ref() {
    let s = setup(Mode::TwoPhase, "");
    let head = s.env.rev(&s.work, "HEAD").unwrap();
    let mut input = String::new();
    for i in 0..1000 {
        input.push_str(&format!("create refs/heads/b{i:04} {head}\n"));
    }
    s.env.update_refs(&s.work, &input);
    std::fs::create_dir_all(s.down.join("refs/heads")).unwrap();
    std::fs::write(s.down.join("refs/heads/b0000.lock"), "").unwrap();

    let out = s
        .env
        .command("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && git -C {} push {} 'refs/heads/b*:refs/heads/b*'",
            s.work.display(),
            s.down.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let here = s.env.refs(&s.down);
    let landed = (1..1000)
        .filter(|i| here.contains_key(&format!("refs/heads/b{i:04}")))
        .count();
    let mut said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mirror-hooks:"))
        .map(|l| {
            l.split_once("cannot be updated here: ")
                .map_or(l, |(_, why)| why)
        })
        .collect();
    said.dedup();
    said.truncate(12);
    assert_eq!(landed, 999, "the push said: {said:#?}");
}

/// unfinished.rs: the recovery judges a journal as soon as the hook is dead, but the
/// hook's own `git push` to the upstream (its own process group) outlives it. Asked
/// while that push still waits in the upstream's pre-receive, the upstream holds the
/// old value: "the same on both sides", the journal is removed. The upstream then
/// takes the push, and nothing here remembers it: the upstream stays ahead.
#[test]
fn review_the_recovery_waits_for_the_killed_hooks_upstream_push() {
    let s = setup(Mode::TwoPhase, "");
    let env = &s.env;
    let pushed = env.commit(&s.work, "pushed while the hook dies");
    blocking_hook(env, &s.up.join("hooks/pre-receive"), "true", &pushed);
    std::fs::write(env.path("armed"), "").unwrap();
    let pusher = env
        .command("git")
        .arg("-C")
        .arg(&s.work)
        .args(["push", s.down.to_str().unwrap(), "HEAD:refs/heads/main"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = pusher.id() as i32;
    let mut family = Family::of(pid);
    assert!(eventually(PATIENCE, || {
        family.refresh();
        env.path("reached").exists()
    }));
    family.refresh();
    let victim = our_hook(pid, "proc-receive", PROC_RECEIVE);
    signal(victim, libc::SIGKILL);
    assert!(eventually(PATIENCE, || !running(victim)));
    let out = pusher.wait_with_output().unwrap();
    assert!(!out.status.success());

    // The next push runs the recovery while the killed hook's upstream push waits.
    let next = s.push(&["HEAD:refs/heads/after"]);
    assert!(next.success, "{}", next.stderr);
    // Then the upstream takes the killed hook's push.
    std::fs::write(env.path("release"), "").unwrap();
    assert!(eventually(PATIENCE, || {
        family.refresh();
        family.living.is_empty()
    }));
    assert_eq!(env.rev(&s.up, "refs/heads/main"), Some(pushed.clone()));

    // Any later recovery may finish it; none has anything left to finish.
    let later = s.push(&["HEAD:refs/heads/later"]);
    assert!(later.success, "{}", later.stderr);
    let log = std::fs::read_to_string(s.down.join("mirror/log")).unwrap_or_default();
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(pushed.clone()), Some(pushed)),
        "log:\n{log}"
    );
}

/// A prepared deletion holds `packed-refs.lock` for the whole upstream push, and git
/// waits for that lock only `core.packedRefsTimeout` (1 s by default; install.sh sets
/// only the ref lock timeouts): while one push deleting a branch waits for the
/// upstream, a push deleting another branch is refused (so is a pull's prune).
#[test]
fn review_two_deletions_of_different_branches_do_not_refuse_each_other() {
    let s = setup(Mode::TwoPhase, "");
    s.seed(&["x", "y"]);
    // As install.sh sets them.
    for key in ["core.filesRefLockTimeout", "core.packedRefsTimeout"] {
        s.env.git_ok(&s.down, &["config", key, "10000"]);
    }
    let env = &s.env;
    // The upstream's pre-receive holds the deletion of x for a few seconds.
    blocking_hook(
        env,
        &s.up.join("hooks/pre-receive"),
        r#"case "$input" in *refs/heads/x*) true ;; *) false ;; esac"#,
        &s.base,
    );
    std::fs::write(env.path("armed"), "").unwrap();
    let first = env
        .command("git")
        .arg("-C")
        .arg(&s.work)
        .args(["push", s.down.to_str().unwrap(), ":refs/heads/x"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(PATIENCE, || env.path("reached").exists()));
    let second = env
        .command("git")
        .arg("-C")
        .arg(&s.work)
        .args(["push", s.down.to_str().unwrap(), ":refs/heads/y"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The second deletion waits for the first's packed-refs.lock (its update-ref runs)
    // rather than failing at once; the first then finishes, and the second goes on.
    let pid = i32::try_from(second.id()).unwrap();
    assert!(eventually(PATIENCE, || !descendants_with(
        pid,
        &["update-ref"]
    )
    .is_empty()));
    std::fs::write(env.path("release"), "").unwrap();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(s.both("refs/heads/x"), (None, None));
    assert_eq!(s.both("refs/heads/y"), (None, None));
}

/// rules.rs `check_settings` applies denyDeletes, denyDeleteCurrent and
/// denyNonFastForwards, but not `receive.denyCurrentBranch` (issue 12 names it), which
/// receive-pack skips for routed refs: a push to the checked-out branch of a non-bare
/// repository is taken (and forwarded) in two-phase mode. In pre-receive mode git
/// refuses it, but only after pre-receive forwarded it: the upstream is ahead (the
/// rules of issue 7 miss this setting in both modes).
#[test]
fn review_two_phase_applies_deny_current_branch() {
    let mut wrong: Vec<String> = Vec::new();
    for mode in [Mode::PreReceive, Mode::TwoPhase] {
        let env = TestEnv::new();
        let up = env.bare("up.git");
        env.git_ok(env.root(), &["init", "-q", "-b", "main", "down"]);
        let down = env.path("down");
        let git_dir = down.join(".git");
        match mode {
            Mode::PreReceive => env.install_hooks_pre_receive(&git_dir),
            Mode::TwoPhase => env.install_hooks(&git_dir),
        }
        std::fs::write(
            git_dir.join("mirror.toml"),
            format!("[upstream]\nurl = {:?}\n", up.to_str().unwrap()),
        )
        .unwrap();
        let work = env.work("work");
        env.commit(&work, "base");
        let pushed = env.push(&work, &down, &["HEAD:refs/heads/main"]);
        let sides = (
            env.rev(&up, "refs/heads/main"),
            env.rev(&git_dir, "refs/heads/main"),
        );
        if pushed.success || sides != (None, None) {
            wrong.push(format!(
                "{mode:?}: push success {}, (upstream, here) = {sides:?}",
                pushed.success
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// unfinished.rs `finish_one` applies what the upstream took, but tells nobody: the
/// push mirrors are not queued and the chained post-receive hooks do not run, as the
/// pull does for what it applies (pull/announce.rs). Finished by the next push, main's
/// update is never announced (with a [pull] table, the pull happens to announce it).
#[test]
fn review_what_the_recovery_applies_is_announced_like_a_pull() {
    let s = setup(Mode::TwoPhase, "");
    let log = s.env.path("post-receive.log");
    s.env.script(
        &s.down.join("hooks/post-receive.d/log"),
        &format!("cat >> {}", log.display()),
    );
    let taken = s
        .env
        .commit(&s.work, "taken by the upstream, then the hook died");
    let direct = s.env.push(&s.work, &s.up, &["HEAD:refs/heads/main"]);
    assert!(direct.success, "{}", direct.stderr);
    review_orphan_journal(&s.down, &[("refs/heads/main", &s.base, &taken)]);

    // The next push (another branch) finishes the journal.
    let next = s.push(&["HEAD:refs/heads/after"]);
    assert!(next.success, "{}", next.stderr);
    assert_eq!(
        s.both("refs/heads/main"),
        (Some(taken.clone()), Some(taken.clone()))
    );
    let announced = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        announced.contains(&format!("{} {taken} refs/heads/main", s.base)),
        "the chained post-receive hooks saw: {announced:?}"
    );
}
