//! A local ref transaction held open across other work: `git update-ref --stdin` told
//! `start`, the updates with their old values, and `prepare`, which takes every ref lock
//! (and runs the `reference-transaction` hook's veto); then `commit` or `abort`.

use super::stop::{running, signal_group};
use super::streams::{forward_stderr, forward_stdout, Event};
use super::Git;
use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A transaction whose locks are held. Dropping it aborts it (git aborts a prepared
/// transaction when its input ends).
#[derive(Debug)]
pub struct Prepared {
    pid: u32,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Event>,
}

/// Why a transaction could not be prepared or committed: git's own words, printable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransactionFailed(pub String);

impl Git {
    /// Starts `git update-ref --stdin` for `commands` (`update REF NEW OLD`, `create REF
    /// NEW`, `delete REF OLD`) and prepares them: on success every ref is locked and
    /// checked against its old value. `on_start` learns git's pid before anything is
    /// locked. Waiting for a lock another writer holds is bounded by git's own lock
    /// timeout; the whole by `timeout`.
    pub fn prepare_refs(
        &self,
        commands: &[String],
        message: &str,
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
    ) -> Result<Prepared, TransactionFailed> {
        let mut cmd = self.command(["update-ref", "-m", message, "--stdin"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .launch(cmd)
            .map_err(|e| TransactionFailed(e.to_string()))?;
        let pid = child.id();
        on_start(pid);
        let (tx, events) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward_stdout(out, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_stderr(err, tx.clone());
        }
        let stdin = child.stdin.take();
        std::thread::spawn(move || {
            let status = child.wait();
            running().groups.retain(|g| *g != pid);
            let _ = tx.send(Event::Exited(status));
        });
        let mut prepared = Prepared { pid, stdin, events };
        let mut input = String::from("start\n");
        for c in commands {
            input.push_str(c);
            input.push('\n');
        }
        input.push_str("prepare\n");
        prepared.send(&input)?;
        prepared.wait_for("prepare: ok", timeout)?;
        Ok(prepared)
    }
}

impl Prepared {
    /// Makes the updates; the locks are released.
    pub fn commit(mut self, timeout: Duration) -> Result<(), TransactionFailed> {
        self.send("commit\n")?;
        self.stdin = None;
        self.wait_for("commit: ok", timeout)?;
        self.wait_exit(timeout);
        Ok(())
    }

    /// Drops the updates; the locks are released.
    pub fn abort(mut self, timeout: Duration) {
        let _ = self.send("abort\n");
        self.stdin = None;
        self.wait_exit(timeout);
    }

    fn send(&mut self, text: &str) -> Result<(), TransactionFailed> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(TransactionFailed("git update-ref has no input".to_owned()));
        };
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| TransactionFailed(format!("cannot talk to git update-ref: {e}")))
    }

    /// Waits for the line `expected` on git's stdout; git's complaint when it ends (or
    /// stops answering within `timeout`) instead.
    fn wait_for(&mut self, expected: &str, timeout: Duration) -> Result<(), TransactionFailed> {
        let deadline = Instant::now() + timeout;
        let mut complaint = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Stdout(line)) if line == expected.as_bytes() => return Ok(()),
                Ok(Event::Stderr(line)) => complaint.push(line),
                Ok(Event::Exited(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its last words (its answer too: the threads that read them race
                    // the one that saw it end) may still be on their way.
                    while let Ok(event) = self.events.recv_timeout(Duration::from_millis(500)) {
                        match event {
                            Event::Stdout(line) if line == expected.as_bytes() => return Ok(()),
                            Event::Stderr(line) => complaint.push(line),
                            _ => {}
                        }
                    }
                    return Err(TransactionFailed(describe(&complaint)));
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    signal_group(self.pid, libc::SIGTERM);
                    self.stdin = None;
                    self.wait_exit(Duration::from_secs(2));
                    return Err(TransactionFailed(format!(
                        "git update-ref did not answer within {}s",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// Waits for git to end; SIGKILL for its group if it does not within `timeout`.
    fn wait_exit(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Exited(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    signal_group(self.pid, libc::SIGKILL);
                    return;
                }
            }
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Closing git's input aborts a transaction that was neither committed nor
        // aborted; git then removes its locks and ends.
        self.stdin = None;
    }
}

/// Git's verdict (its `fatal:`/`error:` lines, without the advice after them), or all it
/// said when it gave none.
fn describe(complaint: &[String]) -> String {
    let verdicts: Vec<&str> = complaint
        .iter()
        .filter_map(|l| {
            l.strip_prefix("fatal: ")
                .or_else(|| l.strip_prefix("error: "))
        })
        .map(str::trim)
        .collect();
    let lines: Vec<&str> = if verdicts.is_empty() {
        complaint
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        verdicts
    };
    if lines.is_empty() {
        "git update-ref failed".to_owned()
    } else {
        lines.join("; ")
    }
}
