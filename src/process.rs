//! Other git-mirror processes the hooks and flows start: detached (in their own session,
//! no standard streams, so a pusher's connection is never held open), and without the
//! variables that describe the push being received.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Variables of the push being received that must not leak into a background
/// `git-mirror`, which finds its repository from its argument.
const HOOK_VARIABLES: [&str; 5] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_REFLOG_ACTION",
];

/// Niceness of background workers: below interactive git, above idle work.
const BACKGROUND_NICENESS: libc::c_int = 10;

/// Starts `git-mirror ARGS… REPO` (the binary beside this one) in its own session with
/// no standard streams, so the pusher's connection is not held open; it is not waited
/// for.
pub fn spawn_detached(repo: &Path, args: &[&str]) -> Result<()> {
    companion(repo, args, BACKGROUND_NICENESS)?;
    Ok(())
}

/// Runs `git-mirror ARGS… REPO` as [`spawn_detached`] does, and waits for it up to
/// `timeout`: `Some(success)` when it ended, `None` when it is still running (it goes on
/// by itself).
pub fn run_companion(repo: &Path, args: &[&str], timeout: Duration) -> Result<Option<bool>> {
    // Someone waits for this one: no lower priority.
    let mut child = companion(repo, args, 0)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for git-mirror")? {
            return Ok(Some(status.success()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `git-mirror ARGS… REPO` as [`spawn_detached`] does (its own session, which
/// leads its own process group) and returns it, for a caller that waits for it and may
/// stop it (`serve`).
pub fn start_companion(repo: &Path, args: &[&str]) -> Result<std::process::Child> {
    companion(repo, args, BACKGROUND_NICENESS)
}

fn companion(repo: &Path, args: &[&str], niceness: libc::c_int) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let program = exe.with_file_name("git-mirror");
    let mut cmd = std::process::Command::new(&program);
    cmd.args(args)
        .arg(repo)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // What git itself must not get, and what locates the push being received.
    crate::git::remove_push_variables(&mut cmd, &crate::git::DROPPED_VARIABLES);
    crate::git::remove_push_variables(&mut cmd, &HOOK_VARIABLES);
    // SAFETY: setsid(2) and setpriority(2) are async-signal-safe and touch no memory of
    // the parent. The new session keeps signals to the hook's process group away from
    // the worker; the lower priority lets the pushes people wait for go first.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if niceness != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, niceness);
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", program.display()))
}
