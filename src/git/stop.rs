//! Stops git the way that leaves no lock behind: the registry of running git process
//! groups, and our SIGTERM, SIGINT and SIGHUP passed on to them as SIGTERM.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

pub(super) fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for
        // this child (process_group(0) made it the leader); no memory is involved.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// The git processes running now (each leads its own process group), and whether this
/// process is stopping: then no new git starts.
pub(super) struct Running {
    pub(super) groups: Vec<u32>,
    pub(super) stopping: bool,
}

static RUNNING: std::sync::Mutex<Running> = std::sync::Mutex::new(Running {
    groups: Vec::new(),
    stopping: false,
});

pub(super) fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pipe's write end the signal handler wakes the stopping thread with.
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// How long git gets to finish after our SIGTERM (it removes its lock files and
/// exits) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

extern "C" fn on_termination(signal: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let byte = u8::try_from(signal).unwrap_or(0);
    // SAFETY: write(2) is async-signal-safe; `byte` outlives the call.
    unsafe {
        libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP stop this process the way that leaves no git lock
/// behind: no new git starts, the running ones get SIGTERM (git then removes its lock
/// files), and once they have ended (or after [`STOP_GRACE`]) the process exits with
/// 128 + the signal. Without this, the signal would kill us at once and git would get
/// only its death signal. A signal that was ignored (`nohup`) stays ignored.
pub fn stop_git_on_termination() -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two file descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // The write end does not block: the handler must never wait on a full pipe (a flood
    // of signals after the first, which the reader no longer reads).
    // SAFETY: fcntl(2) on a descriptor we just created.
    unsafe {
        libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK);
    }
    SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    crate::signals::on_termination(on_termination)?;
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        loop {
            // SAFETY: read(2) into a one-byte buffer we own.
            let n = unsafe { libc::read(read_end, std::ptr::addr_of_mut!(byte).cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        stop_and_exit(libc::c_int::from(byte));
    });
    Ok(())
}

/// Parks the calling thread for good: the process is stopping, and the thread that stops
/// it exits once every git has ended.
pub(super) fn stopped() -> ! {
    loop {
        std::thread::park();
    }
}

fn stop_and_exit(signal: libc::c_int) -> ! {
    let groups = {
        let mut running = running();
        running.stopping = true;
        running.groups.clone()
    };
    for group in groups {
        signal_group(group, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while !running().groups.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for group in running().groups.clone() {
        signal_group(group, libc::SIGKILL);
    }
    std::process::exit(128 + signal)
}
