//! What `git-mirror status` shows of a repository: one record per mirror, gathered from
//! the state records, the upstream's ledger and the push queues (the view; `cli` renders it).

use crate::config::Config;
use crate::queue::Queue;
use crate::state::{self, MirrorState, UpdateStatus};
use crate::url::RemoteUrl;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// Which way a mirror carries refs; shown as `proxy`, `pull` or `push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The upstream, which pushes here are proxied to.
    Proxy,
    /// The remote this repository pulls from.
    Pull,
    /// A push mirror.
    Push,
}

impl Direction {
    /// The name status shows, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Proxy => "proxy",
            Direction::Pull => "pull",
            Direction::Push => "push",
        }
    }
}

/// One mirror in `git-mirror status --json`.
#[derive(Debug, Serialize)]
pub struct StatusRecord {
    pub name: String,
    pub direction: Direction,
    pub url: String,
    #[serde(flatten)]
    pub state: MirrorState,
    /// Push mirrors only: jobs queued and not yet pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_jobs: Option<usize>,
    /// Push mirrors only: job files that could not be read, set aside for inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged_jobs: Option<Vec<String>>,
    /// The upstream only: refs accepted here while it could not be reached, not yet
    /// forwarded (`on_unreachable = "accept"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unforwarded_refs: Option<Vec<String>>,
    /// The upstream only: refs whose value the upstream took through this repository
    /// but this repository does not hold (a local update failed afterwards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unapplied_refs: Option<Vec<String>>,
}

/// Refs the upstream took through this repository that this repository does not hold
/// (the known window), leaving out those the pull reports as diverged.
pub fn unapplied_refs(
    repo: &Path,
    ledger: &crate::ledger::Ledger,
    up: &crate::config::Upstream,
) -> Result<Vec<String>> {
    let diverged = state::load(repo, crate::state::PULL_RECORD)
        .map(|s| s.divergent_refs)
        .unwrap_or_default();
    let local = crate::repo::Repo::open(repo).and_then(|view| view.refs())?;
    Ok(ledger.unapplied(&local, &up.refs, &diverged))
}

/// `git-mirror status --json`: the repository and one record per mirror.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub repository: String,
    /// Mirroring is paused for maintenance (`git mirror pause`): nothing is pulled or
    /// pushed, and pushes to the upstream's refs are refused.
    pub paused: bool,
    /// How pushes are forwarded: `two-phase` or `pre-receive`.
    pub mode: &'static str,
    /// Why pre-receive mode, when it is not simply how it was installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_note: Option<String>,
    /// Two-phase pushes whose process died before finishing them (intent journals
    /// left); the next push, pull or sweep finishes them.
    pub unfinished_pushes: usize,
    pub mirrors: Vec<StatusRecord>,
}

/// Gathers the status records of every mirror `config` describes.
pub fn status_report(repo: &Path, config: &Config) -> Result<StatusReport> {
    let mut mirrors = Vec::new();
    if let Some(up) = &config.upstream {
        let mut record = record(
            repo,
            crate::state::UPSTREAM_RECORD,
            Direction::Proxy,
            &up.url,
        )?;
        match crate::ledger::load(repo) {
            Ok(ledger) => {
                let unapplied = unapplied_refs(repo, &ledger, up)?;
                if !unapplied.is_empty() {
                    // The known window: the upstream took a push this repository then
                    // failed to apply. Status must not read "finished" over it.
                    record.state.update_status = UpdateStatus::Failed;
                    record.state.last_error = Some(format!(
                        "the upstream holds pushes this repository did not apply (a local ref update failed after the upstream had accepted): {}; `git mirror pull --now` brings them here{}",
                        unapplied.join(", "),
                        if config.pull.is_some() {
                            " (the next scheduled pull does too)"
                        } else {
                            ""
                        }
                    ));
                }
                record.unapplied_refs = Some(unapplied);
                record.unforwarded_refs = Some(ledger.unforwarded.into_keys().collect());
            }
            Err(damaged) => record.state.last_error = Some(damaged.to_string()),
        }
        mirrors.push(record);
    }
    if let Some(pull) = &config.pull {
        let mut record = record(repo, crate::state::PULL_RECORD, Direction::Pull, &pull.url)?;
        // Computed from the configuration as it is now, so an edited interval or a
        // resumed hard failure shows at once.
        let next = crate::pull::next_due(repo, config, pull, &record.state);
        record.state.next_update_at = next.map(|at| {
            state::timestamp(crate::pull::shown_due_time(
                at,
                std::time::SystemTime::now(),
            ))
        });
        mirrors.push(record);
    }
    for m in &config.push {
        mirrors.push(record(repo, &m.name, Direction::Push, &m.url)?);
    }
    for m in &mut mirrors {
        // Bookkeeping, not status.
        m.state.hard_failed_config = None;
    }
    let (mode, mode_note) = match crate::mode::detect(repo) {
        Ok(mode @ crate::mode::Mode::TwoPhase) => (mode.name(), None),
        Ok(crate::mode::Mode::PreReceive(crate::mode::Why::NotInstalled)) => ("pre-receive", None),
        Ok(crate::mode::Mode::PreReceive(why)) => ("pre-receive", Some(why.to_string())),
        Err(e) => ("pre-receive", Some(format!("{e:#}"))),
    };
    Ok(StatusReport {
        repository: repo.display().to_string(),
        paused: crate::pause::is_paused(repo),
        mode,
        mode_note,
        unfinished_pushes: crate::journal::left(repo).orphans.len(),
        mirrors,
    })
}

fn record(repo: &Path, name: &str, direction: Direction, url: &RemoteUrl) -> Result<StatusRecord> {
    // A damaged record must not hide the others; the next run of that mirror rewrites it.
    let mut state = state::load(repo, name).unwrap_or_else(|e| MirrorState {
        last_error: Some(format!("{e:#}")),
        ..MirrorState::default()
    });
    let (mut queued_jobs, mut damaged_jobs) = (None, None);
    if direction == Direction::Push {
        let queue = Queue::new(repo, name);
        let queued = queue.pending();
        if queued > 0
            && matches!(
                state.update_status,
                UpdateStatus::None | UpdateStatus::Finished
            )
        {
            state.update_status = UpdateStatus::Scheduled;
        }
        queued_jobs = Some(queued);
        damaged_jobs = Some(queue.damaged());
    }
    Ok(StatusRecord {
        name: name.to_owned(),
        direction,
        url: url.to_string(),
        state,
        queued_jobs,
        damaged_jobs,
        unforwarded_refs: None,
        unapplied_refs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::Direction;

    #[test]
    fn directions_are_shown_as_in_the_json() {
        for d in [Direction::Proxy, Direction::Pull, Direction::Push] {
            let json = serde_json::to_value(d).unwrap();
            assert_eq!(json.as_str(), Some(d.as_str()));
        }
    }
}
