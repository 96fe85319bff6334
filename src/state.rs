//! Status records: one JSON file per mirror under `mirror/state/`, replaced atomically,
//! with the fields of GitLab's pull-mirror API plus our own. Never holds a secret.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory, in the repository, of everything mirror-hooks keeps: status records,
/// queues, keys, the log, the record of what the upstream last held, run locks.
pub fn mirror_dir(repo: &Path) -> PathBuf {
    repo.join("mirror")
}

/// Name of the upstream's (the proxy's) status record.
pub const UPSTREAM_RECORD: &str = "upstream";
/// Name of the pull's status record.
pub const PULL_RECORD: &str = "pull";

/// A short hash of `bytes` that stays the same across builds and platforms.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", hash(bytes))
}

/// FNV-1a: a small hash that stays the same across builds and platforms.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `update_status` values, as GitLab's API names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    #[default]
    None,
    Scheduled,
    Started,
    Finished,
    Failed,
    HardFailed,
}

/// What is remembered about one mirror between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MirrorState {
    pub update_status: UpdateStatus,
    pub last_error: Option<String>,
    pub last_update_at: Option<String>,
    pub last_update_started_at: Option<String>,
    pub last_successful_update_at: Option<String>,
    pub consecutive_failures: u32,
    pub next_update_at: Option<String>,
    /// Refs that differ from the other side and were left alone (for the upstream: refs
    /// accepted here while it was unreachable).
    pub divergent_refs: Vec<String>,
    /// Pull only: upstream refs the last pull left out because their names are not
    /// UTF-8 (shown escaped, e.g. `refs/heads/caf\xe9`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_refs: Vec<String>,
    /// Pull only: when a pull last found the upstream's refs different from ours (the
    /// `interval = "auto"` schedule polls an upstream that changed recently more often).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_at: Option<String>,
    /// Pull only, internal: the fingerprint of mirror.toml when the pull hard-failed; a
    /// different one (the file was edited) resumes the schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_failed_config: Option<String>,
}

impl MirrorState {
    /// Records the start of an update.
    pub fn started(&mut self, at: SystemTime) {
        self.update_status = UpdateStatus::Started;
        self.last_update_started_at = Some(timestamp(at));
    }

    /// Records a successful update.
    pub fn finished(&mut self, at: SystemTime) {
        self.update_status = UpdateStatus::Finished;
        self.last_error = None;
        self.last_update_at = Some(timestamp(at));
        self.last_successful_update_at = self.last_update_at.clone();
        self.consecutive_failures = 0;
        self.divergent_refs.clear();
        self.hard_failed_config = None;
    }

    /// Records a failed update with the error a person should read.
    pub fn failed(&mut self, at: SystemTime, error: String) {
        self.failed_uncounted(at, error);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    /// Records a failure that retrying cannot fix: no automatic retry until a person acts
    /// (`--now`) or edits the configuration whose fingerprint is `config`.
    pub fn hard_failed(&mut self, at: SystemTime, error: String, config: &str) {
        self.failed(at, error);
        self.update_status = UpdateStatus::HardFailed;
        self.hard_failed_config = Some(config.to_owned());
    }

    /// Records a failed update that does not count towards the backoff.
    pub fn failed_uncounted(&mut self, at: SystemTime, error: String) {
        self.update_status = UpdateStatus::Failed;
        self.last_error = Some(crate::url::mask_text(&error));
        self.last_update_at = Some(timestamp(at));
    }
}

/// Reads a time written by [`timestamp`].
pub fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    humantime::parse_rfc3339(text?).ok()
}

/// The latest time RFC 3339's four-digit years can write: 9999-12-31T23:59:59Z.
const LATEST: Duration = Duration::from_secs(253_402_300_799);

/// RFC 3339 in UTC, to the second: `2026-11-23T10:00:00Z`. A time it cannot write (before
/// 1970 or after 9999: a broken clock, a record edited by hand) becomes the nearest one it
/// can, so that no record, however odd, makes a command fail.
pub fn timestamp(at: SystemTime) -> String {
    let since_epoch = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .min(LATEST);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch).to_string()
}

/// The directory of status records of a repository.
pub fn state_dir(repo: &Path) -> PathBuf {
    mirror_dir(repo).join("state")
}

fn record_path(repo: &Path, name: &str) -> PathBuf {
    state_dir(repo).join(format!("{name}.json"))
}

/// Reads the record of mirror `name`; a missing record is an empty one.
pub fn load(repo: &Path, name: &str) -> Result<MirrorState> {
    let path = record_path(repo, name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the status record {} is damaged; delete it to start afresh",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MirrorState::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the record of mirror `name` atomically (write a temporary file, then rename).
pub fn save(repo: &Path, name: &str, state: &MirrorState) -> Result<()> {
    let dir = state_dir(repo);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    // Whole, in one write: serde writes token by token, a system call each unbuffered.
    let mut bytes = serde_json::to_vec_pretty(state)?;
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    let path = record_path(repo, name);
    file.persist(&path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Loads, changes and saves a record in one step.
pub fn update(repo: &Path, name: &str, change: impl FnOnce(&mut MirrorState)) -> Result<()> {
    let mut state = load(repo, name).unwrap_or_default();
    change(&mut state);
    save(repo, name, &state)
}

/// Appends one line to the repository's operations log, `mirror/log`. The line is
/// masked for credentials and kept on one line; a failure to log is not an error.
pub fn log(repo: &Path, at: SystemTime, line: &str) {
    let line = crate::url::mask_text(line).replace(['\n', '\r'], " ");
    // Ref names and remote words come from other servers: no control characters.
    let line = crate::text::printable(&line);
    let path = mirror_dir(repo).join("log");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(mirror_dir(repo))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // One write call per line, so concurrent writers never interleave within a line.
        file.write_all(format!("{} {line}\n", timestamp(at)).as_bytes())
    };
    let _ = write();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_can_be_written_and_read_back() {
        let far = parse_time(Some("9999-12-31T23:59:59Z")).unwrap();
        assert_eq!(timestamp(far), "9999-12-31T23:59:59Z");
        assert_eq!(
            timestamp(far + Duration::from_secs(86400 * 365)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(parse_time(Some("99999-01-01T00:00:00Z")), None);
    }
}
