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

/// Waits until process `pid` has ended (exited, even if not yet reaped), at most
/// `limit`; returns at once when there is no such process.
pub fn wait_for_exit(pid: u32, limit: Duration) {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: pidfd_open(2) takes two integers and returns a new descriptor we own (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if let Ok(fd) = libc::c_int::try_from(fd) {
        if fd >= 0 {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: poll(2) on one pollfd we own, then close(2) of the descriptor we
            // opened; the pidfd becomes readable when the process ends.
            unsafe {
                libc::poll(&mut poll, 1, ms);
                libc::close(fd);
            }
            return;
        }
    }
    // No pidfd (an old kernel): look every few milliseconds.
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && crate::process_id::is_running(pid, None) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_process_to_end_and_no_longer() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let started = Instant::now();
        wait_for_exit(child.id(), Duration::from_secs(20));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(15), "{waited:?}");
        child.wait().unwrap();
        // Gone (and reaped): nothing to wait for.
        let started = Instant::now();
        wait_for_exit(child.id(), Duration::from_secs(20));
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    #[test]
    fn a_process_that_does_not_end_is_waited_for_up_to_the_limit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let started = Instant::now();
        wait_for_exit(child.id(), Duration::from_millis(200));
        let waited = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(20), "{waited:?}");
    }

    #[test]
    fn a_running_process_is_alive_and_a_missing_one_is_not() {
        use crate::process_id::is_running;
        assert!(is_running(std::process::id(), None));
        assert!(!is_running(u32::try_from(libc::pid_t::MAX).unwrap(), None));
    }
}
