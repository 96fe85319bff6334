//! Which forwarding mode a repository runs in, read from what git itself will do: two-phase
//! when git routes every ref to our `proc-receive` hook (which then updates the refs
//! around the upstream push), pre-receive mode otherwise.

use crate::git::Git;
use std::fmt;
use std::path::{Path, PathBuf};

/// Text embedded in every hook binary (their `--help` begins with it); install.sh and
/// `git-mirror doctor` look for it to tell our hooks from a site's own.
pub const MARKER: &str = "mirror-hooks hook binary";

/// The oldest git with the `proc-receive` hook.
const PROC_RECEIVE_SINCE: (u32, u32) = (2, 29);

/// How pushes to a repository are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `proc-receive` takes the local locks, asks the upstream, then commits or aborts.
    TwoPhase,
    /// `pre-receive` forwards; git updates the refs afterwards (the known window).
    PreReceive(Why),
}

/// Why a repository runs in pre-receive mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No `proc-receive` hook, no routing: installed in pre-receive mode.
    NotInstalled,
    /// The `proc-receive` hook git runs is the host's, not ours (Gitea's AGit flow, say).
    HostsHook(PathBuf),
    /// Our hook is there, but `receive.procReceiveRefs` does not route every ref to it.
    NotRouted { values: Vec<String> },
    /// Refs are routed to a `proc-receive` hook that does not exist: git refuses them.
    NoHook { values: Vec<String> },
    /// This git is older than the `proc-receive` hook.
    OldGit(String),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::TwoPhase => "two-phase",
            Mode::PreReceive(_) => "pre-receive",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotInstalled => f.write_str("installed without the proc-receive hook"),
            Why::HostsHook(path) => write!(
                f,
                "the proc-receive hook {} is not mirror-hooks' (the host uses proc-receive itself)",
                path.display()
            ),
            Why::NotRouted { values } if values.is_empty() => f.write_str(
                "mirror-hooks' proc-receive hook is installed, but receive.procReceiveRefs is not set, so git never runs it",
            ),
            Why::NotRouted { values } => write!(
                f,
                "mirror-hooks' proc-receive hook is installed, but receive.procReceiveRefs ({}) does not route every ref to it",
                values.join(", ")
            ),
            Why::NoHook { values } => write!(
                f,
                "receive.procReceiveRefs ({}) routes refs to a proc-receive hook that does not exist, so git refuses pushes to them",
                values.join(", ")
            ),
            Why::OldGit(version) => write!(
                f,
                "{version} has no proc-receive hook (git {}.{} or later has)",
                PROC_RECEIVE_SINCE.0, PROC_RECEIVE_SINCE.1
            ),
        }
    }
}

/// The mode git will run pushes to `repo` in. Errors (git not runnable) are for the
/// caller to treat as pre-receive mode: forwarding twice is harmless (the second push
/// finds the upstream already at the new values), not forwarding is not.
pub fn detect(repo: &Path) -> anyhow::Result<Mode> {
    let git = Git::new(repo)?;
    // Three independent questions to git, asked at once: pre-receive asks them before
    // every forwarded push, so the pusher waits for one git start instead of three. The
    // version is needed only for our routed hook, the usual (two-phase) install.
    let (hook, values, version) = std::thread::scope(|scope| {
        let version = scope.spawn(|| git.version());
        let values = scope.spawn(|| git.config_all("receive.procReceiveRefs"));
        let hook = git.hook_path("proc-receive");
        (hook, joined(values), joined(version))
    });
    let hook = hook?;
    let present = hook.is_file();
    let values = values?;
    if !present {
        return Ok(Mode::PreReceive(if values.is_empty() {
            Why::NotInstalled
        } else {
            Why::NoHook { values }
        }));
    }
    if !is_ours(&hook) {
        return Ok(Mode::PreReceive(Why::HostsHook(hook)));
    }
    if !values.iter().any(|v| routes_every_ref(v)) {
        return Ok(Mode::PreReceive(Why::NotRouted { values }));
    }
    let version = version?;
    if parse_version(&version).is_none_or(|v| v < PROC_RECEIVE_SINCE) {
        return Ok(Mode::PreReceive(Why::OldGit(version)));
    }
    Ok(Mode::TwoPhase)
}

/// The answer of a thread asking git; a thread that panicked is an error like git not
/// running.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("cannot run git")))
}

/// True for a `receive.procReceiveRefs` value that routes every ref: `refs`, `refs/`
/// (no `a`/`d`/`m`/`!` modifiers, which once present narrow it).
fn routes_every_ref(value: &str) -> bool {
    value.trim_end_matches('/') == "refs"
}

/// Our hook: the `proc-receive` installed beside this program (the usual case, checked
/// without reading it), or any file that carries the marker of our hook binaries.
fn is_ours(hook: &Path) -> bool {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("proc-receive")));
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    if let (Some(beside), Some(hook)) = (beside.as_deref().and_then(canonical), canonical(hook)) {
        if beside == hook {
            return true;
        }
    }
    std::fs::read(hook).is_ok_and(|bytes| {
        let marker = MARKER.as_bytes();
        bytes.windows(marker.len()).any(|w| w == marker)
    })
}

/// `git version 2.47.3` → (2, 47).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let number = text.split_whitespace().nth(2)?;
    let mut parts = number.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_refs_routes_every_ref() {
        assert!(routes_every_ref("refs"));
        assert!(routes_every_ref("refs/"));
        for narrower in ["refs/for", "refs/head", "a:refs", "!:refs", "adm:refs/meta"] {
            assert!(!routes_every_ref(narrower), "{narrower}");
        }
    }

    #[test]
    fn versions_are_read_as_git_prints_them() {
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.28.0.windows.1"), Some((2, 28)));
        assert_eq!(parse_version("git version x"), None);
    }
}
