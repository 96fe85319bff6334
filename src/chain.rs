//! Chained hooks: the other programs in `hooks/<hook>.d/` (a site's existing hooks, CI
//! triggers) run in name order with the same standard input and environment as ours.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The directory chained `hook`s live in: beside the hook git ran, in `hook_dir` (so
/// `core.hooksPath` works), falling back to `REPO/hooks`.
pub fn chain_dir(repo: &Path, hook_dir: Option<&Path>, hook: &str) -> PathBuf {
    let name = format!("{hook}.d");
    hook_dir
        .map(|dir| dir.join(&name))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| repo.join("hooks").join(name))
}

/// The executables in `dir`, in the order they run. Editor backups, hidden files and
/// `.sample` files are passed over, as git does for its own hooks.
pub fn programs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".sample") {
            continue;
        }
        // A hook that cannot be looked at (a dangling link, say) is an error, not
        // something to skip: a policy hook that silently stops running is worse.
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("cannot use the chained hook {}", path.display()))?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// A chained hook that did not exit 0.
#[derive(Debug)]
pub struct Failure {
    pub program: PathBuf,
    pub status: ExitStatus,
}

/// Runs every program of `dir` with `stdin`, in the repository `repo` (as its working
/// directory and `GIT_DIR`, as git runs hooks); standard output goes to our standard
/// error, as git does it (to the pusher). With `stop_at_failure` the first failure ends the chain.
pub fn run(repo: &Path, dir: &Path, stdin: &[u8], stop_at_failure: bool) -> Result<Vec<Failure>> {
    let mut failures = Vec::new();
    for program in programs(dir)? {
        use std::os::fd::AsFd;
        // As git runs hooks: their standard output goes to standard error (the pusher).
        // Ours may be a protocol (proc-receive), never theirs.
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot pass standard error on to a chained hook")?;
        let mut child = Command::new(&program)
            .current_dir(repo)
            .env("GIT_DIR", repo)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot run the chained hook {}", program.display()))?;
        if let Some(mut input) = child.stdin.take() {
            // A hook that does not read its input closes the pipe early; that is its right.
            let _ = input.write_all(stdin);
        }
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for the chained hook {}", program.display()))?;
        if !status.success() {
            failures.push(Failure { program, status });
            if stop_at_failure {
                break;
            }
        }
    }
    Ok(failures)
}
