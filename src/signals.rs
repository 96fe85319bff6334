//! Catching the signals that ask a process to stop (SIGTERM, SIGINT, SIGHUP), for the
//! long-running parts that must stop cleanly rather than die at once.

use anyhow::{Context, Result};

/// Installs `handler` for SIGTERM, SIGINT and SIGHUP. A signal that was ignored
/// (`nohup`) stays ignored. `handler` must do only what is async-signal-safe.
pub fn on_termination(handler: extern "C" fn(libc::c_int)) -> Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction(2) with zero-initialised structs it fills or reads; the
        // handler is async-signal-safe, as this function's contract requires.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot install a signal handler");
            }
        }
    }
    Ok(())
}
