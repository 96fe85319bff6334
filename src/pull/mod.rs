//! Pull mirroring (`git-mirror pull`): fetch what the upstream changed and apply it in one
//! ref transaction guarded by the values read, so a concurrent push here is never undone.

mod apply;
mod due;
mod plan;
mod update;

pub use due::{divergence_message, next_due, shown_due_time, unappliable_note};

use crate::auth::Access;
use crate::config::{Config, Pull};
use crate::git::{Git, Lasting};
use crate::lock::{self, Lock};
use crate::refs::RefUpdate;
use crate::schedule;
use crate::state::{self, MirrorState, UpdateStatus};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Name of the pull's status record.
pub const RECORD: &str = state::PULL_RECORD;

/// Local ref transactions are quick; this only guards against a wedged filesystem.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// What `git-mirror pull` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// Run now, even when not due or hard-failed.
    pub now: bool,
    /// Wait for a pull already running instead of leaving the work to it (its listing
    /// may predate what the caller needs), then run.
    pub catch_up: bool,
}

/// What one `pull` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullReport {
    /// Another pull of this repository is running.
    Busy,
    /// Not due yet: the time it is due.
    NotDue(SystemTime),
    /// Hard-failed: skipped until `--now` or an edit of mirror.toml; the last error.
    HardFailed(String),
    /// The repository's mirroring is paused (`git mirror pause`): nothing was done.
    Paused,
    Ran(Box<PullSummary>),
}

/// The outcome of one pull.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullSummary {
    /// The updates applied here, as `old new ref` (what post-receive hooks get).
    pub applied: Vec<RefUpdate>,
    /// Matching refs already equal on both sides.
    pub unchanged: usize,
    /// Refs fetched because their objects were missing here.
    pub fetched: usize,
    /// Branches that diverged from the upstream and were left alone.
    pub divergent: Vec<String>,
    /// Refs accepted here while the upstream was away, forwarded by this run.
    pub forwarded: Vec<String>,
    /// Refs accepted here while the upstream was away that could not be forwarded: the
    /// upstream moved meanwhile (settled with `git mirror resolve`).
    pub unforwarded: Vec<String>,
    /// Why forwarding the refs accepted offline failed (they stay recorded).
    pub forward_error: Option<String>,
    /// Upstream refs left out because their names are not UTF-8 (shown escaped).
    pub skipped: Vec<String>,
    /// Upstream refs that cannot exist here (a name that clashes with a ref here), with
    /// why: reported, not an outage.
    pub unappliable: Vec<(String, String)>,
    /// Why the pull failed.
    pub error: Option<String>,
    /// The failure is one that retrying cannot fix.
    pub lasting: Option<Lasting>,
    /// The pull failed often enough in a row to stop retrying.
    pub hard_failed: bool,
    /// Chained post-receive hooks that failed (the pull itself still succeeded).
    pub hook_failures: Vec<String>,
    pub next_update_at: Option<SystemTime>,
}

impl PullSummary {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.divergent.is_empty()
            && self.unforwarded.is_empty()
            && self.forward_error.is_none()
            && self.unappliable.is_empty()
    }

    fn fail(&mut self, error: String, lasting: Option<Lasting>) {
        self.error = Some(error);
        self.lasting = lasting;
    }
}

/// Runs the pull of `repo` if it is due (or at once with `--now`).
pub fn run(repo: &Path, config: &Config, options: PullOptions) -> Result<PullReport> {
    // Without a [pull] table, only an explicit `--now` (a person, or the proxy catching
    // up after a refusal) pulls, from the [upstream].
    let settings = config
        .pull_or_catch_up()
        .filter(|_| config.pull.is_some() || options.now);
    let Some(pull) = settings.as_deref() else {
        anyhow::bail!(
            "{} has no [pull] table; add one (an empty [pull] pulls from the [upstream] url)",
            config.path.display()
        );
    };
    // Even `--now`: a paused repository is being worked on by hand.
    if crate::pause::is_paused(repo) {
        return Ok(PullReport::Paused);
    }
    // Looking costs no write, so a sweep over many repositories that are not due is
    // read-only.
    if let Some(report) = waiting(repo, config, pull, options) {
        return Ok(report);
    }
    let Some(lock) = lock_or_wait(repo, options)? else {
        return Ok(PullReport::Busy);
    };
    recover_ref_locks(repo)?;
    crate::unfinished::finish(repo, config, &mut |_| {});
    // Another run may have finished between the look and the lock, or a pause begun.
    if crate::pause::is_paused(repo) {
        return Ok(PullReport::Paused);
    }
    if let Some(report) = waiting(repo, config, pull, options) {
        return Ok(report);
    }
    let clock = Instant::now();
    let (mut summary, git) = pull_and_forward(repo, config, pull)?;
    let finished = SystemTime::now();
    let record = record(repo, config, pull, &mut summary, finished);
    if !summary.applied.is_empty() {
        summary.hook_failures = crate::announce::announce(repo, &summary.applied, "pull");
    }
    if summary.fetched > 0 {
        // What `git fetch` would have run itself (it detaches when there is work).
        let _ = git.output(&["gc", "--auto", "--quiet"], LOCAL_TIMEOUT);
    }
    log_run(repo, finished, &record, &summary, clock);
    drop(lock);
    Ok(PullReport::Ran(Box::new(summary)))
}

/// Why the pull does not run now (not due, or hard-failed), unless `--now`.
fn waiting(repo: &Path, config: &Config, pull: &Pull, options: PullOptions) -> Option<PullReport> {
    if options.now {
        return None;
    }
    let state = state::load(repo, RECORD).unwrap_or_default();
    let next = next_due(repo, config, pull, &state);
    if schedule::pull_is_due(next, pull, SystemTime::now()) {
        return None;
    }
    Some(match next {
        Some(at) => PullReport::NotDue(at),
        None => PullReport::HardFailed(state.last_error.unwrap_or_default()),
    })
}

/// The pull lock of `repo`, waited for with `catch_up`; `None` when another pull holds
/// it.
fn lock_or_wait(repo: &Path, options: PullOptions) -> Result<Option<Lock>> {
    let lock = match Lock::try_acquire(&lock::pull_lock(repo))? {
        Some(lock) => lock,
        None if options.catch_up => Lock::acquire(&lock::pull_lock(repo))?,
        None => return Ok(None),
    };
    lock.record_owner();
    Ok(Some(lock))
}

/// A run killed while git wrote refs may have left lock files that would fail us,
/// and every push to those refs: they are removed, or this run changes nothing.
fn recover_ref_locks(repo: &Path) -> Result<()> {
    let recovery = crate::reflock::recover(repo);
    for line in &recovery.said {
        state::log(repo, SystemTime::now(), &format!("pull: {line}"));
    }
    if recovery.pending {
        anyhow::bail!(
            "a killed run's git may have left lock files that cannot be told from a live writer's yet ({}); this run changes nothing, and a run in a minute or more removes them",
            recovery.said.join("; ")
        );
    }
    Ok(())
}

/// Forwards the refs accepted here while the upstream was away, then updates from the
/// upstream; returns what happened and the git that ran (without the upstream's access).
fn pull_and_forward(repo: &Path, config: &Config, pull: &Pull) -> Result<(PullSummary, Git)> {
    let started = SystemTime::now();
    let _ = state::update(repo, RECORD, |s| s.started(started));
    let git = Git::new(repo)?;
    // First, so that the listing below already shows what it forwarded. An upstream
    // that takes no push (read-only for maintenance, a read-only key) must not stop the
    // pull: the refs stay recorded and protected, and the failure is reported.
    let forwarding = crate::offline::forward(repo, config);
    let (mut summary, git) = match Access::new(repo, config, &pull.url, pull.auth.as_deref()) {
        Ok(access) => {
            // Only the commands that talk to the upstream get the secret (see git.rs);
            // `gc` after the run runs through this git too, and must not see it.
            let git = git.with_access(access);
            (update::update(repo, &git, pull), git)
        }
        Err(e) => (
            PullSummary {
                error: Some(format!("{e:#}")),
                ..PullSummary::default()
            },
            git,
        ),
    };
    match forwarding {
        Ok(forwarding) => {
            summary.forwarded = forwarding.forwarded;
            summary.unforwarded = forwarding.diverged;
        }
        Err(e) => summary.forward_error = Some(format!("{e:#}")),
    }
    Ok((summary, git))
}

/// Settles the outcome into the status record and saves it; returns the record.
fn record(
    repo: &Path,
    config: &Config,
    pull: &Pull,
    summary: &mut PullSummary,
    finished: SystemTime,
) -> MirrorState {
    let mut record = state::load(repo, RECORD).unwrap_or_default();
    due::settle(repo, &mut record, summary, config, pull, finished);
    if summary.error.is_none() {
        record.skipped_refs = summary.skipped.clone();
    }
    summary.next_update_at = next_due(repo, config, pull, &record);
    record.next_update_at = summary
        .next_update_at
        .map(|at| state::timestamp(at.max(finished)));
    let _ = state::save(repo, RECORD, &record);
    record
}

/// The run's line in the log.
fn log_run(
    repo: &Path,
    finished: SystemTime,
    record: &MirrorState,
    summary: &PullSummary,
    clock: Instant,
) {
    state::log(
        repo,
        finished,
        &format!(
            "pull {} applied={} unchanged={} fetched={} divergent={} {:.3}s{}",
            match record.update_status {
                UpdateStatus::Finished => "finished",
                UpdateStatus::HardFailed => "hard_failed",
                _ => "failed",
            },
            summary.applied.len(),
            summary.unchanged,
            summary.fetched,
            summary.divergent.len(),
            clock.elapsed().as_secs_f64(),
            record
                .last_error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        ),
    );
}
