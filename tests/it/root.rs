//! Root on repositories that belong to the git user (here `nobody`, and `daemon`):
//! install.sh and every `git-mirror` command work, act as the repository's owner, and
//! leave no file owned by root behind, so the owner's own next run still works. Skipped
//! when the tests do not run as root.

use crate::util::{eventually, TestEnv, GIT_MIRROR};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const NOBODY: u32 = 65534;
const DAEMON: u32 = 1;

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: this test needs root");
    }
    root
}

/// A test directory others may enter (tempdir makes it 0700).
fn open_env() -> TestEnv {
    let env = TestEnv::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

fn chown(env: &TestEnv, path: &Path, uid: u32) {
    let out = env
        .command("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Runs `cmd` as `uid` (with that gid, no supplementary groups).
fn as_user(cmd: &mut Command, uid: u32) -> &mut Command {
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; nothing else is touched.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// git run by root to inspect another user's repository (git refuses that by default).
fn inspect(env: &TestEnv, repo: &Path, args: &[&str]) -> String {
    let out = env
        .command("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `git-mirror ARGS` as root, from a directory only root may enter (as root's home).
fn git_mirror_as_root(env: &TestEnv, args: &[&str]) -> Output {
    let private = env.path("root-only");
    if !private.exists() {
        std::fs::create_dir(&private).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    env.command(GIT_MIRROR)
        .args(args)
        .current_dir(private)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file and directory under `dir` (itself included) whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile (a lock, a job)
        };
        if meta.uid() != uid {
            found.push(path.clone());
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        }
    }
    found
}

/// An upstream with one commit, a push mirror and a downstream pulling from the one and
/// pushing to the other, all belonging to `uid`, under `dir`.
fn repositories(env: &TestEnv, dir: &str, uid: u32) -> (PathBuf, PathBuf, PathBuf, String) {
    let work = env.work(&format!("{dir}/work"));
    let one = env.commit(&work, "one");
    let up = env.bare(&format!("{dir}/up.git"));
    assert!(env.push(&work, &up, &["HEAD:refs/heads/main"]).success);
    let mirror = env.bare(&format!("{dir}/mirror.git"));
    let down = env.bare(&format!("{dir}/srv/down.git"));
    std::fs::write(
        down.join("mirror.toml"),
        format!(
            "[upstream]\nurl = {:?}\n\n[pull]\n\n[[push]]\nname = \"backup\"\nurl = {:?}\n",
            up.display(),
            mirror.display()
        ),
    )
    .unwrap();
    chown(env, &env.path(dir), uid);
    (up, mirror, down, one)
}

#[test]
fn root_installs_and_runs_every_command_as_the_owner_and_leaves_nothing_of_its_own() {
    if !is_root() {
        return;
    }
    let env = open_env();
    let (up, mirror, down, one) = repositories(&env, "git", NOBODY);
    let repo = down.to_str().unwrap();

    let installed = crate::install::install(&env, &[repo]);
    assert!(installed.status.success(), "{}", said(&installed));

    let pulled = git_mirror_as_root(&env, &["pull", "--now", repo]);
    assert!(pulled.status.success(), "{}", said(&pulled));
    assert_eq!(inspect(&env, &down, &["rev-parse", "refs/heads/main"]), one);
    let pushed = git_mirror_as_root(&env, &["push", "--now", repo]);
    assert!(pushed.status.success(), "{}", said(&pushed));
    assert!(eventually(Duration::from_secs(30), || {
        inspect(&env, &mirror, &["for-each-ref", "--format=%(objectname)"]) == one
    }));
    let status = git_mirror_as_root(&env, &["status", repo]);
    assert!(status.status.success(), "{}", said(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("backup"),
        "{}",
        said(&status)
    );
    let doctor = git_mirror_as_root(&env, &["doctor", repo]);
    assert!(doctor.status.success(), "{}", said(&doctor));
    let keygen = git_mirror_as_root(&env, &["keygen", repo]);
    assert!(keygen.status.success(), "{}", said(&keygen));
    assert!(down.join("mirror/keys/id_ed25519").is_file());

    for repo in [&up, &mirror, &down] {
        assert_eq!(not_owned_by(repo, NOBODY), Vec::<PathBuf>::new());
    }

    // The owner's own next run works: a push through the hooks, then a pull.
    let work = env.path("git/work");
    let commit = as_user(&mut env.command("git"), NOBODY)
        .arg("-C")
        .arg(&work)
        .args(["commit", "-q", "--allow-empty", "-m", "two"])
        .output()
        .unwrap();
    assert!(commit.status.success(), "{}", said(&commit));
    let push = as_user(&mut env.command("git"), NOBODY)
        .arg("-C")
        .arg(&work)
        .args(["push", "-q", repo, "HEAD:refs/heads/main"])
        .output()
        .unwrap();
    assert!(push.status.success(), "{}", said(&push));
    let two = inspect(&env, &work, &["rev-parse", "HEAD"]);
    assert_eq!(inspect(&env, &up, &["rev-parse", "refs/heads/main"]), two);
    let pull = as_user(&mut env.command(GIT_MIRROR), NOBODY)
        .args(["pull", "--now", repo])
        .output()
        .unwrap();
    assert!(pull.status.success(), "{}", said(&pull));
    assert!(
        !String::from_utf8_lossy(&pull.stdout).contains("failed"),
        "{}",
        said(&pull)
    );
    assert_eq!(not_owned_by(&down, NOBODY), Vec::<PathBuf>::new());
}

#[test]
fn a_sweep_by_root_does_each_repository_as_its_owner() {
    if !is_root() {
        return;
    }
    let env = open_env();
    let mut all = Vec::new();
    for (dir, uid) in [("nobody", NOBODY), ("daemon", DAEMON), ("root", 0)] {
        let (up, mirror, down, _) = repositories(&env, dir, uid);
        // The upstream moves on after the downstream was made: the sweep brings it.
        let work = env.path(&format!("{dir}/work"));
        let two = as_user(&mut env.command("git"), uid)
            .arg("-C")
            .arg(&work)
            .args(["commit", "-q", "--allow-empty", "-m", "two"])
            .output()
            .unwrap();
        assert!(two.status.success(), "{}", said(&two));
        let pushed = as_user(&mut env.command("git"), uid)
            .arg("-C")
            .arg(&work)
            .args(["push", "-q", up.to_str().unwrap(), "HEAD:refs/heads/main"])
            .output()
            .unwrap();
        assert!(pushed.status.success(), "{}", said(&pushed));
        all.push((uid, up, mirror, down));
    }
    // One root holding the three downstreams, as /srv/git would.
    let srv = env.path("srv");
    std::fs::create_dir(&srv).unwrap();
    for (uid, _, _, down) in &mut all {
        let moved = srv.join(format!("{uid}.git"));
        std::fs::rename(&*down, &moved).unwrap();
        *down = moved;
    }

    let swept = git_mirror_as_root(&env, &["pull", "--all", srv.to_str().unwrap(), "--now"]);
    assert!(swept.status.success(), "{}", said(&swept));
    let text = String::from_utf8_lossy(&swept.stdout).into_owned();
    assert!(text.contains("3 pulled"), "{}", said(&swept));
    let pushed = git_mirror_as_root(&env, &["push", "--all", srv.to_str().unwrap(), "--now"]);
    assert!(pushed.status.success(), "{}", said(&pushed));
    for (uid, up, mirror, down) in &all {
        let upstream = inspect(&env, up, &["rev-parse", "refs/heads/main"]);
        assert_eq!(
            inspect(&env, down, &["rev-parse", "refs/heads/main"]),
            upstream,
            "{}",
            said(&swept)
        );
        assert!(eventually(Duration::from_secs(30), || {
            inspect(&env, mirror, &["for-each-ref", "--format=%(objectname)"]) == upstream
        }));
        assert_eq!(not_owned_by(down, *uid), Vec::<PathBuf>::new());
    }
}

#[test]
fn root_refuses_a_repository_whose_owner_is_unknown_and_says_what_to_run() {
    if !is_root() {
        return;
    }
    let env = open_env();
    let (_, _, down, _) = repositories(&env, "git", 54321);
    let out = git_mirror_as_root(&env, &["pull", "--now", down.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text =
        env.normalize(&String::from_utf8_lossy(&out.stderr).replace(GIT_MIRROR, "git-mirror"));
    insta::assert_snapshot!(text, @"git-mirror: error: [TMP]/git/srv/down.git belongs to uid 54321, which has no entry in the password database, so git-mirror cannot act as its owner; run it as that user instead: setpriv --reuid=54321 --regid=54321 --clear-groups git-mirror pull --now [TMP]/git/srv/down.git");
    assert_eq!(not_owned_by(&down, 54321), Vec::<PathBuf>::new());
}

#[test]
fn root_through_git_dir_works_as_the_owner_and_hands_them_none_of_its_environment() {
    if !is_root() {
        return;
    }
    let env = open_env();
    let (_up, _mirror, down, one) = repositories(&env, "git", NOBODY);
    // The repository's own hook writes down who runs it and what it sees.
    let seen = env.path("git/seen");
    env.script(
        &down.join("hooks/reference-transaction"),
        &format!("{{ id -u; env; }} > {} 2>&1", seen.display()),
    );
    chown(&env, &env.path("git"), NOBODY);
    // `git --git-dir=REPO mirror …` (GIT_DIR), from a directory root owns, with something
    // of root's in the environment.
    let cwd = env.path("root-cwd");
    std::fs::create_dir(&cwd).unwrap();
    let bin = Path::new(GIT_MIRROR).parent().unwrap();
    let out = env
        .command("git")
        .arg(format!("--git-dir={}", down.display()))
        .args(["mirror", "pull", "--now"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("ROOTS_SECRET", "s3cr3t-of-root")
        .env("SSH_AUTH_SOCK", "/tmp/roots-agent")
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(inspect(&env, &down, &["rev-parse", "refs/heads/main"]), one);
    let hook_saw = std::fs::read_to_string(&seen).unwrap();
    assert!(hook_saw.starts_with(&format!("{NOBODY}\n")), "{hook_saw}");
    assert!(!hook_saw.contains("s3cr3t-of-root"), "{hook_saw}");
    assert!(!hook_saw.contains("roots-agent"), "{hook_saw}");
    assert_eq!(not_owned_by(&down, NOBODY), Vec::<PathBuf>::new());
}

#[test]
fn root_installs_nothing_through_a_link_the_owner_made() {
    if !is_root() {
        return;
    }
    let env = open_env();
    let repo = env.bare("git/evil.git");
    let target = env.path("root-owned");
    std::fs::create_dir(&target).unwrap();
    env.script(&repo.join("hooks/pre-receive"), "echo mine");
    std::os::unix::fs::symlink(&target, repo.join("hooks/pre-receive.d")).unwrap();
    chown(&env, &env.path("git"), NOBODY);
    let out = crate::install::install(&env, &[repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hooks/pre-receive.d is a symbolic link"),
        "{}",
        said(&out)
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}
