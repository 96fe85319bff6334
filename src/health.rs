//! What `git mirror doctor` finds beyond mirror.toml's own checks: the hooks git will
//! really run, the files `[auth]` tables name, push-mirror queues, and whether anything
//! runs the schedule. Each check returns facts; the doctor words them.

use crate::config::{Config, Interval, Pull};
use crate::git::Git;
use crate::state::{self, MirrorState};
use anyhow::Result;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Due work older than this (and than [`OVERDUE_INTERVALS`] intervals) means nothing
/// runs the sweep: the pull and the retries of push mirrors are no hook's business.
pub const OVERDUE_MIN: Duration = Duration::from_secs(60 * 60);
/// A pull is overdue when late by this many of its intervals (and [`OVERDUE_MIN`]).
pub const OVERDUE_INTERVALS: u32 = 3;

/// What git finds where it looks for one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookState {
    /// mirror-hooks' hook, executable.
    Ours,
    /// Nothing there.
    Missing,
    /// A symbolic link whose target does not exist.
    BrokenLink(PathBuf),
    /// A file without the marker of our hook binaries (a site's own hook).
    Foreign,
    /// Ours, but git would not run it: no execute permission.
    NotExecutable,
}

/// One hook, where git looks for it, and what is there.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: &'static str,
    pub path: PathBuf,
    pub state: HookState,
}

/// The hooks git runs in this repository: `pre-receive` and `post-receive`, and
/// `proc-receive` when ours is there (refs routed to a missing one are
/// [`crate::mode::Why::NoHook`]'s business, a host's own is the host's). Paths are where git looks
/// (`core.hooksPath` honoured).
pub fn hooks(git: &Git) -> Result<Vec<Hook>> {
    let mut found = Vec::new();
    for name in ["pre-receive", "post-receive", "proc-receive"] {
        let path = git.hook_path(name)?;
        let state = hook_state(&path);
        if name == "proc-receive" && matches!(state, HookState::Missing | HookState::Foreign) {
            continue;
        }
        found.push(Hook { name, path, state });
    }
    Ok(found)
}

fn hook_state(path: &Path) -> HookState {
    let Ok(meta) = std::fs::metadata(path) else {
        return match std::fs::read_link(path) {
            Ok(target) => HookState::BrokenLink(target),
            Err(_) => HookState::Missing,
        };
    };
    let marker = crate::mode::MARKER.as_bytes();
    let ours = std::fs::read(path).is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker));
    if !ours {
        HookState::Foreign
    } else if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        HookState::NotExecutable
    } else {
        HookState::Ours
    }
}

/// `core.hooksPath` as git reads it (the last value of every scope), if set.
pub fn hooks_path(git: &Git) -> Result<Option<String>> {
    Ok(git.config_all("core.hooksPath")?.pop())
}

/// What is wrong with a file a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Missing,
    Unreadable(String),
    /// A secret that users other than its owner may read or write (the mode).
    OpenToOthers(u32),
}

/// A file whose content is secret (a key, a password): it must exist and be readable
/// by its owner only.
pub fn secret_file(path: &Path) -> Option<FileProblem> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(FileProblem::Missing),
        Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Some(FileProblem::OpenToOthers(mode & 0o777));
    }
    readable(path)
}

/// A file that must exist and be readable (known_hosts, an ssh_config).
pub fn plain_file(path: &Path) -> Option<FileProblem> {
    match std::fs::metadata(path) {
        Ok(_) => readable(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(FileProblem::Missing),
        Err(e) => Some(FileProblem::Unreadable(e.to_string())),
    }
}

/// Readable, and a regular file (opened without blocking, never read).
fn readable(path: &Path) -> Option<FileProblem> {
    crate::files::open_regular(path)
        .err()
        .map(|e| FileProblem::Unreadable(e.to_string()))
}

/// For a remote that is a path on this machine: the directory of the repository there
/// that this user may not write to (a push would fail where the dry run does not look:
/// git's local transport checks nothing before it receives objects).
pub fn local_unwritable(url: &crate::url::RemoteUrl) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if url.kind() != crate::url::UrlKind::Local {
        return None;
    }
    let given = url.for_git();
    let path = PathBuf::from(given.strip_prefix("file://").unwrap_or(&given));
    ["", "objects", "refs"]
        .iter()
        .map(|sub| path.join(sub))
        .filter(|dir| dir.is_dir())
        .find(|dir| {
            let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
                return false;
            };
            // SAFETY: access(2) reads a NUL-terminated path we own.
            unsafe { libc::access(c.as_ptr(), libc::W_OK) != 0 }
        })
}

/// A queue's jobs that cannot be read: those the worker set aside in `damaged/`, and
/// waiting ones it will set aside, each with why.
pub fn damaged_jobs(repo: &Path, mirror: &str) -> Vec<(PathBuf, String)> {
    let queue = crate::queue::Queue::new(repo, mirror);
    let aside = queue.damaged_dir();
    let mut found: Vec<(PathBuf, String)> = queue
        .damaged()
        .into_iter()
        .map(|name| (aside.join(name), "set aside by the worker".to_owned()))
        .collect();
    found.extend(
        queue
            .waiting_jobs()
            .into_iter()
            .filter_map(|c| c.job.err().map(|why| (c.path, why))),
    );
    found
}

/// Work that should have run long ago: when it fell due, and how late it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub due: SystemTime,
    pub late: Duration,
}

/// The pull, when it is overdue by more than [`OVERDUE_INTERVALS`] intervals and
/// [`OVERDUE_MIN`]: no sweep ran it. A hard-failed pull waits for a person, not the
/// sweep; a pull that started since it fell due was run by something.
pub fn overdue_pull(repo: &Path, config: &Config, pull: &Pull, now: SystemTime) -> Option<Overdue> {
    let record = state::load(repo, state::PULL_RECORD).unwrap_or_default();
    let next = crate::pull::next_due(repo, config, pull, &record)?;
    let last = state::parse_time(record.last_update_at.as_deref());
    let interval = match (pull.interval, last) {
        (_, Some(last)) if next > last => next.duration_since(last).unwrap_or_default(),
        (Interval::Every(every), _) => every,
        (Interval::Auto, _) => crate::schedule::AUTO_MIN,
    };
    // Never run (or edited after a hard failure): due since mirror.toml was written.
    let due = if next == UNIX_EPOCH {
        modified(&config.path)?
    } else {
        next
    };
    let limit = interval.saturating_mul(OVERDUE_INTERVALS).max(OVERDUE_MIN);
    late_since(&record, due, now).filter(|o| o.late > limit)
}

/// A push mirror's queue, when jobs have waited past their retry time for more than
/// [`OVERDUE_MIN`]: post-receive starts a worker at once, so only retries wait, and
/// nothing ran them.
pub fn overdue_push(repo: &Path, mirror: &str, now: SystemTime) -> Option<Overdue> {
    let queue = crate::queue::Queue::new(repo, mirror);
    let oldest = queue
        .waiting_jobs()
        .into_iter()
        .filter_map(|c| {
            let queued = c.job.ok().map(|j| j.queued_at);
            state::parse_time(queued.as_deref()).or_else(|| modified(&c.path))
        })
        .min()?;
    let record = state::load(repo, mirror).unwrap_or_default();
    let retry = state::parse_time(record.next_update_at.as_deref()).unwrap_or(oldest);
    late_since(&record, oldest.max(retry), now).filter(|o| o.late > OVERDUE_MIN)
}

/// How late work due at `due` is at `now`, unless a run started since.
fn late_since(record: &MirrorState, due: SystemTime, now: SystemTime) -> Option<Overdue> {
    let started = state::parse_time(record.last_update_started_at.as_deref());
    if started.is_some_and(|s| s >= due) {
        return None;
    }
    let late = now.duration_since(due).ok()?;
    Some(Overdue { due, late })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A repository directory with `toml` as its mirror.toml, written `age` ago.
    fn repo(toml: &str, age: Duration) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::config::FILE_NAME);
        std::fs::write(&path, toml).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        let config = Config::load(dir.path()).unwrap().unwrap();
        (dir, config)
    }

    fn pull_late(interval: &str, record: MirrorState, toml_age: Duration) -> bool {
        let toml = format!("[pull]\nurl = \"/srv/git/up.git\"\ninterval = \"{interval}\"\n");
        let (dir, config) = repo(&toml, toml_age);
        state::save(dir.path(), state::PULL_RECORD, &record).unwrap();
        let pull = config.pull.as_ref().unwrap();
        overdue_pull(dir.path(), &config, pull, SystemTime::now()).is_some()
    }

    fn ran(ago: Duration) -> MirrorState {
        let at = state::timestamp(SystemTime::now() - ago);
        MirrorState {
            update_status: state::UpdateStatus::Finished,
            last_update_at: Some(at.clone()),
            last_update_started_at: Some(at),
            ..MirrorState::default()
        }
    }

    #[test]
    fn a_pull_is_overdue_after_three_intervals_and_an_hour() {
        // Every 30 minutes: due 4h30m ago.
        assert!(pull_late("30m", ran(5 * HOUR), HOUR));
        // Due 30 minutes ago: a sweep may simply not have come round.
        assert!(!pull_late("30m", ran(HOUR), HOUR));
        // Every 2 hours, due 3 hours ago: under three intervals.
        assert!(!pull_late("2h", ran(5 * HOUR), HOUR));
        // Every minute, due 50 minutes ago: under the hour.
        assert!(!pull_late("1m", ran(HOUR - HOUR / 6), HOUR));
    }

    #[test]
    fn a_pull_that_started_since_it_fell_due_is_not_overdue() {
        let mut started = ran(5 * HOUR);
        started.last_update_started_at = Some(state::timestamp(SystemTime::now() - HOUR / 6));
        started.update_status = state::UpdateStatus::Started;
        assert!(!pull_late("30m", started, HOUR));
    }

    #[test]
    fn a_pull_never_run_is_due_since_mirror_toml_was_written() {
        assert!(pull_late("30m", MirrorState::default(), 3 * HOUR));
        assert!(!pull_late("30m", MirrorState::default(), HOUR / 2));
    }

    fn push_late(job_age: Duration, record: Option<MirrorState>) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let queue = crate::queue::Queue::new(dir.path(), "backup");
        queue
            .enqueue(&["refs/heads/main".to_owned()], SystemTime::now() - job_age)
            .unwrap();
        if let Some(record) = record {
            state::save(dir.path(), "backup", &record).unwrap();
        }
        overdue_push(dir.path(), "backup", SystemTime::now()).is_some()
    }

    #[test]
    fn push_jobs_are_overdue_an_hour_past_their_retry_time() {
        assert!(push_late(3 * HOUR, None));
        assert!(!push_late(HOUR / 2, None));
        // A run started since: something runs the worker.
        assert!(!push_late(3 * HOUR, Some(ran(HOUR / 6))));
        // Retrying 30 minutes from now, after a failure.
        let mut failed = ran(HOUR / 6);
        failed.last_update_started_at = Some(state::timestamp(SystemTime::now() - 4 * HOUR));
        failed.next_update_at = Some(state::timestamp(SystemTime::now() + HOUR / 2));
        assert!(!push_late(3 * HOUR, Some(failed)));
    }
}
