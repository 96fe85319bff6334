//! Whether a process recorded earlier still runs: by its pid and its start time (and
//! the boot it started in), so that a pid reused by another process is not taken for it.

use std::fs;
use std::time::Duration;

/// How long a recovery waits for a git of a killed run to end (it got SIGTERM when its
/// parent died, and removes its own locks).
pub const GONE_WAIT: Duration = Duration::from_secs(10);

/// True while process `pid`, started at `started` (when known), runs.
pub fn is_running(pid: u32, started: Option<&(u64, String)>) -> bool {
    if started.is_some() && started_at(pid).as_ref() != started {
        return false;
    }
    libc::pid_t::try_from(pid).is_ok_and(alive)
}

/// When process `pid` started, and in which boot; `None` when that cannot be read.
pub fn started_at(pid: u32) -> Option<(u64, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) STATE …`: field 22 is the 20th after the closing parenthesis.
    let ticks = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some((ticks, boot.trim().to_owned()))
}

/// Waits up to [`GONE_WAIT`] for process `pid` (started at `started`, when known) to
/// end; true once it has. A pid now naming another process (reused, another boot, a
/// fresh pid namespace) is gone.
pub fn wait_gone(pid: u32, started: Option<&(u64, String)>) -> bool {
    if started.is_some() && started_at(pid).as_ref() != started {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    let deadline = std::time::Instant::now() + GONE_WAIT;
    loop {
        if !alive(pid) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while process `pid` runs; a zombie (dead, not yet reaped by whoever adopted
/// it) has ended.
fn alive(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) STATE …`; comm may hold spaces and parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // No /proc: ask the kernel whether the pid exists.
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        Err(_) => {
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}
