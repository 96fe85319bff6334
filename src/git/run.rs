//! Runs one git process: in its own process group, with a parent-death signal, its input
//! written and its output read within bounds, until it ends or its deadline passes.

use super::stop::{running, signal_group, stopped};
use super::streams::{forward_stderr, forward_stdout, Event};
use super::{Git, GitError, RunOutput};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

impl Git {
    /// Runs `cmd` until it ends or `timeout` passes, telling `on_start` the pid of git
    /// once it runs (a caller that must know later whether that process is gone records
    /// it).
    pub(super) fn spawn(
        &self,
        mut cmd: Command,
        input: Option<Vec<u8>>,
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput, GitError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = self.launch(cmd)?;
        on_start(child.id());
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A thread of its own: git may write a lot of output before it reads all of
            // its input, and neither side may wait for the other.
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&input);
            });
        }
        let output = supervise(child, timeout, on_stderr);
        if running().stopping {
            // Whatever would come next (another git, a record saying "failed") is not
            // wanted from a process told to stop.
            stopped();
        }
        Ok(output)
    }

    /// Starts `cmd` (its stdio already chosen) as the leader of its own process group,
    /// with SIGTERM as its parent-death signal, registered so that our own termination
    /// stops it; refuses to start anything once this process is stopping.
    pub(super) fn launch(&self, mut cmd: Command) -> Result<Child, GitError> {
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
            // SAFETY: prctl(2) and getppid(2) are async-signal-safe and touch no memory
            // of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    // If we are killed, git (and the transfer it runs) stops with us rather
                    // than finishing a push nobody is waiting for; SIGTERM, not SIGKILL, so
                    // that it removes its lock files first.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() != parent {
                        // We died before the line above took effect.
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let mut running = running();
        if running.stopping {
            drop(running);
            stopped();
        }
        let child = cmd.spawn().map_err(|source| GitError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        running.groups.push(child.id());
        Ok(child)
    }
}

/// How long to keep reading output after the process ended or was killed; a grandchild
/// that escaped the process group may hold the pipes open, and we must not hang on it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn supervise(mut child: Child, timeout: Duration, on_stderr: &mut dyn FnMut(&str)) -> RunOutput {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    let mut streams = 0;
    if let Some(out) = child.stdout.take() {
        streams += 1;
        forward_stdout(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        streams += 1;
        forward_stderr(err, tx.clone());
    }
    let exit_tx = tx;
    std::thread::spawn(move || {
        let status = child.wait();
        running().groups.retain(|g| *g != pid);
        let _ = exit_tx.send(Event::Exited(status));
    });

    let mut output = RunOutput {
        status: None,
        timed_out: false,
        stdout: Vec::new(),
        stdout_incomplete: false,
        stderr: String::new(),
    };
    let start = Instant::now();
    // A deadline past the end of time is no deadline at all.
    let mut deadline = start
        .checked_add(timeout)
        .unwrap_or(start + Duration::from_secs(u32::MAX.into()));
    let mut exited = false;
    let mut killed = false;
    while !exited || streams > 0 {
        let now = Instant::now();
        let event = match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) if !exited && !killed => {
                // First SIGTERM, so git removes its lock files; SIGKILL if it lingers.
                killed = output.timed_out;
                output.timed_out = true;
                signal_group(pid, if killed { libc::SIGKILL } else { libc::SIGTERM });
                deadline = Instant::now() + DRAIN_GRACE;
                continue;
            }
            Err(_) => break,
        };
        match event {
            Event::Stdout(line) => {
                output.stdout.extend_from_slice(&line);
                output.stdout.push(b'\n');
            }
            Event::StdoutIncomplete => output.stdout_incomplete = true,
            Event::Stderr(line) => {
                on_stderr(&line);
                output.stderr.push_str(&line);
                output.stderr.push('\n');
            }
            Event::StreamEnd => streams -= 1,
            Event::Exited(status) => {
                exited = true;
                output.status = status.ok();
                if !output.timed_out {
                    deadline = Instant::now() + DRAIN_GRACE;
                }
            }
        }
    }
    output
}
