//! `git-mirror pull`: one repository, or every one under a root (`--all`, N at a time),
//! and the `--sweep-one` child through which root sweeps another user's repository.

use super::progress::{Outcome, Progress, PullOutcome};
use super::push::describe;
use super::{load, repository, Failure};
use crate::fleet::Swept;
use crate::offline::Forwarding;
use crate::pull::{PullOptions, PullReport, PullSummary};
use crate::push::WorkerReport;
use crate::state;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

pub(super) fn pull(repo: Option<&Path>, options: PullOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    if config.pull.is_none() && (config.upstream.is_none() || !options.now) {
        println!(
            "{}: mirror.toml has no [pull] table; add one to pull from the upstream on a schedule (an empty [pull] uses the [upstream] url){}",
            repo.display(),
            if config.upstream.is_some() {
                "; `--now` brings the upstream's refs (upstream.refs) here once"
            } else {
                ""
            }
        );
        return Ok(0);
    }
    let report = crate::pull::run(&repo, &config, options)?;
    let (line, bad) = describe_pull(&report, &repo);
    println!("pull: {}", crate::text::printable(&line));
    if options.catch_up {
        // The proxy asks whether this repository now has the upstream's commits; a
        // divergence elsewhere does not change that.
        let failed = matches!(&report, PullReport::Ran(s) if s.error.is_some());
        return Ok(i32::from(failed));
    }
    Ok(i32::from(bad))
}

/// What one repository of a `pull --all` sweep came to.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Tally {
    repositories: usize,
    pulled: usize,
    updated: usize,
    not_due: usize,
    pushed: usize,
    failed: usize,
    hard_failed: usize,
    /// How the pull ended, when there was one.
    #[serde(default)]
    pull: Option<PullOutcome>,
}

impl Tally {
    /// Adds one repository's counts to the sweep's.
    fn add(&mut self, one: &Tally) {
        self.pulled += one.pulled;
        self.updated += one.updated;
        self.not_due += one.not_due;
        self.pushed += one.pushed;
        self.failed += one.failed;
        self.hard_failed += one.hard_failed;
    }
}

/// How `pull --all` reports.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    /// Only the repositories that failed, and the total.
    pub(super) quiet: bool,
    /// One JSON array instead of lines.
    pub(super) json: bool,
}

pub(super) fn pull_all(
    root: &Path,
    options: PullOptions,
    jobs: usize,
    output: Output,
) -> Result<i32, Failure> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let repos = crate::fleet::repositories(root)?;
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally {
        repositories: repos.len(),
        ..Tally::default()
    });
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(repos.iter().map(|_| None).collect());
    let progress = Progress::new(repos.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(repos.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(repo) = repos.get(i) else {
                    return;
                };
                let mut mine = Tally::default();
                let parts = if crate::owner::foreign_owner(repo).is_some() {
                    sweep_as_owner(repo, options, &mut mine)
                } else {
                    sweep(repo, options, &mut mine)
                };
                let mut total = tally.lock().unwrap_or_else(|e| e.into_inner());
                if !output.json && (!output.quiet || mine.failed > 0) {
                    // One println per line, under the tally's lock: lines never mix.
                    let line = parts.join("; ");
                    let line = crate::text::printable(&line);
                    progress.println(&format!("{}: {line}", repo.display()));
                }
                progress.done(repo);
                total.add(&mine);
                let outcome = Outcome {
                    repository: repo.display().to_string(),
                    ok: mine.failed == 0,
                    pull: Some(mine.pull),
                    push_mirrors_run: mine.pushed,
                    messages: parts,
                };
                let mut outcomes = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(outcome);
                }
            });
        }
    });
    progress.finish();
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    if output.json {
        let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
        super::progress::print_json(&outcomes.into_iter().flatten().collect::<Vec<_>>())?;
        return Ok(i32::from(t.failed > 0));
    }
    println!(
        "{} repositories with mirror.toml under {}: {} pulled ({} updated), {} not due, {} push mirrors run, {} failed{}",
        t.repositories,
        root.display(),
        t.pulled,
        t.updated,
        t.not_due,
        t.pushed,
        t.failed,
        if t.hard_failed > 0 {
            format!(", {} hard-failed pulls skipped (see git mirror status)", t.hard_failed)
        } else {
            String::new()
        }
    );
    Ok(i32::from(t.failed > 0))
}

/// What a child `git-mirror … --sweep-one` reports of one repository of a sweep.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub(super) struct SweptOne<T> {
    pub(super) lines: Vec<String>,
    pub(super) tally: T,
}

/// Runs `git-mirror ARGS… --sweep-one REPO` (which becomes the repository's owner, as
/// root may not act in another user's repository) and reads back its report.
pub(super) fn sweep_one_as_owner<T: serde::de::DeserializeOwned>(
    repo: &Path,
    args: &[&str],
) -> Result<SweptOne<T>> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let out = std::process::Command::new(&exe)
        .args(args)
        .arg("--sweep-one")
        .arg(repo)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    serde_json::from_slice(&out.stdout).map_err(|_| {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().trim_start_matches("git-mirror: error: ");
        anyhow::anyhow!("failed as the repository's owner ({}): {said}", out.status)
    })
}

/// [`sweep`] of a repository that belongs to another user, done as that user.
fn sweep_as_owner(repo: &Path, options: PullOptions, tally: &mut Tally) -> Vec<String> {
    let args: &[&str] = if options.now {
        &["pull", "--now"]
    } else {
        &["pull"]
    };
    match sweep_one_as_owner::<Tally>(repo, args) {
        Ok(one) => {
            *tally = one.tally;
            one.lines
        }
        Err(e) => {
            tally.failed += 1;
            vec![format!("{e:#}")]
        }
    }
}

/// `pull --sweep-one REPO`: [`sweep`] of one repository, reported as JSON.
pub(super) fn pull_sweep_one(repo: Option<&Path>, options: PullOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let mut tally = Tally::default();
    let lines = sweep(&repo, options, &mut tally);
    let one = SweptOne { lines, tally };
    println!(
        "{}",
        serde_json::to_string(&one).map_err(anyhow::Error::from)?
    );
    Ok(0)
}

/// Pulls one repository of a sweep if due and drains its overdue push-mirror queues
/// ([`crate::fleet::sweep_pull`]); returns the parts of its one-line summary.
fn sweep(repo: &Path, options: PullOptions, tally: &mut Tally) -> Vec<String> {
    let swept = match crate::fleet::sweep_pull(repo, options) {
        Swept::Gone => return vec!["mirror.toml is gone".to_owned()],
        Swept::Invalid(e) => {
            tally.failed += 1;
            return vec![format!("mirror.toml is invalid, nothing done: {e}")];
        }
        Swept::Ran(swept) => swept,
    };
    let mut parts = Vec::new();
    let mut failed = false;
    if let Some(forwarding) = &swept.forwarding {
        failed |= describe_forwarding(forwarding, &mut parts);
    }
    if let Some(pull) = &swept.pull {
        failed |= describe_swept_pull(pull, repo, tally, &mut parts);
    }
    if let Some(push) = &swept.push {
        failed |= describe_swept_push(push, tally, &mut parts);
    }
    tally.failed += usize::from(failed);
    if parts.is_empty() {
        parts.push("nothing to do".to_owned());
    }
    parts
}

/// The sweep's part about forwarding refs accepted while the upstream was away (without
/// a [pull] table); whether it failed.
fn describe_forwarding(forwarding: &Result<Forwarding>, parts: &mut Vec<String>) -> bool {
    match forwarding {
        Ok(f) if f.forwarded.is_empty() && f.diverged.is_empty() => false,
        Ok(f) => {
            let mut line = format!(
                "forwarded {} ref(s) accepted while the upstream was away",
                f.forwarded.len()
            );
            if !f.diverged.is_empty() {
                line.push_str(&format!(
                    "; failed: {}",
                    crate::offline::diverged_message(&f.diverged)
                ));
            }
            parts.push(line);
            !f.diverged.is_empty()
        }
        Err(e) => {
            parts.push(format!(
                "forwarding refs accepted while the upstream was away failed: {e:#}"
            ));
            true
        }
    }
}

/// The sweep's part about the pull, counted in `tally`; whether it failed.
fn describe_swept_pull(
    pull: &Result<PullReport>,
    repo: &Path,
    tally: &mut Tally,
    parts: &mut Vec<String>,
) -> bool {
    let report = match pull {
        Ok(report) => report,
        Err(e) => {
            tally.pull = Some(PullOutcome::Failed);
            parts.push(format!("pull: failed: {e:#}"));
            return true;
        }
    };
    tally.pull = Some(pull_outcome(report));
    match report {
        PullReport::NotDue(_) => tally.not_due += 1,
        PullReport::Ran(s) => {
            tally.pulled += 1;
            tally.updated += usize::from(!s.applied.is_empty());
        }
        _ => {}
    }
    let (line, bad) = describe_pull(report, repo);
    parts.push(format!("pull: {line}"));
    if let PullReport::HardFailed(_) = report {
        // Said once, by the run that hard-failed; saying it (and failing the sweep)
        // every minute after would bury everything else.
        tally.hard_failed += 1;
        return false;
    }
    bad
}

/// The sweep's part about the push-mirror workers that ran, counted in `tally`; whether
/// one failed.
fn describe_swept_push(
    push: &Result<Vec<(String, WorkerReport)>>,
    tally: &mut Tally,
    parts: &mut Vec<String>,
) -> bool {
    let reports = match push {
        Ok(reports) => reports,
        Err(e) => {
            parts.push(format!("push: failed: {e:#}"));
            return true;
        }
    };
    let mut failed = false;
    for (name, report) in reports {
        if matches!(report, WorkerReport::Idle(None)) {
            continue;
        }
        let (line, bad) = describe(report);
        tally.pushed += usize::from(matches!(report, WorkerReport::Ran(_)));
        failed |= bad;
        parts.push(format!("push {name}: {line}"));
    }
    failed
}

/// How a pull of a sweep ended, for its JSON.
fn pull_outcome(report: &PullReport) -> PullOutcome {
    match report {
        PullReport::Busy => PullOutcome::Busy,
        PullReport::Paused => PullOutcome::Paused,
        PullReport::NotDue(_) => PullOutcome::NotDue,
        PullReport::HardFailed(_) => PullOutcome::HardFailed,
        PullReport::Ran(s) if s.error.is_some() && s.hard_failed => PullOutcome::HardFailed,
        PullReport::Ran(s) if s.error.is_some() => PullOutcome::Failed,
        PullReport::Ran(s) if !s.applied.is_empty() => PullOutcome::Updated,
        PullReport::Ran(_) => PullOutcome::UpToDate,
    }
}

/// One line about a pull's outcome, and whether it is a failure.
fn describe_pull(report: &PullReport, repo: &Path) -> (String, bool) {
    match report {
        PullReport::Busy => ("already being updated by another run".to_owned(), false),
        PullReport::Paused => (
            format!(
                "not pulled: {}; nothing was done (`git mirror resume {}` ends the pause)",
                crate::pause::REASON,
                repo.display()
            ),
            false,
        ),
        PullReport::NotDue(at) => (
            format!(
                "not due until {} (use --now to pull at once)",
                state::timestamp(*at)
            ),
            false,
        ),
        PullReport::HardFailed(error) => (
            format!(
                "hard failed, not retried until `git mirror pull --now {}` or an edit of mirror.toml; last error: {error}",
                repo.display()
            ),
            true,
        ),
        PullReport::Ran(s) => {
            let line = std::iter::once(ran_headline(s))
                .chain(ran_notes(s))
                .collect::<Vec<_>>()
                .join("; ");
            (line, !s.ok())
        }
    }
}

/// How a pull that ran ended: its error, or what it did to the refs.
fn ran_headline(s: &PullSummary) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if let Some(error) = &s.error {
        if s.hard_failed {
            format!("hard failed: {error}")
        } else {
            let retry = s
                .next_update_at
                .map(|at| format!("; next try at {}", state::timestamp(at)))
                .unwrap_or_default();
            format!("failed: {error}{retry}")
        }
    } else if s.applied.is_empty() && s.divergent.is_empty() {
        format!(
            "up to date ({} ref{} unchanged)",
            s.unchanged,
            plural(s.unchanged)
        )
    } else if s.applied.is_empty() {
        format!("no ref updated ({} unchanged)", s.unchanged)
    } else {
        format!(
            "updated {} ref{} ({} fetched, {} unchanged)",
            s.applied.len(),
            plural(s.applied.len()),
            s.fetched,
            s.unchanged
        )
    }
}

/// What else a pull that ran has to say, in this order: refs forwarded to the upstream,
/// what failed beside the headline, refs skipped or not appliable, chained hooks that failed.
fn ran_notes(s: &PullSummary) -> Vec<String> {
    let mut notes = Vec::new();
    if !s.forwarded.is_empty() {
        notes.push(format!(
            "forwarded to the upstream (accepted here while it was away): {}",
            s.forwarded.join(", ")
        ));
    }
    if s.error.is_none() && !s.divergent.is_empty() {
        notes.push(format!(
            "failed: {}",
            crate::pull::divergence_message(&s.divergent)
        ));
    }
    if !s.unforwarded.is_empty() {
        notes.push(format!(
            "failed: {}",
            crate::offline::diverged_message(&s.unforwarded)
        ));
    }
    if let Some(error) = &s.forward_error {
        notes.push(format!("failed: {error}"));
    }
    if !s.skipped.is_empty() {
        notes.push(format!(
            "skipped (ref name not UTF-8, rename it upstream): {}",
            s.skipped.join(", ")
        ));
    }
    if !s.unappliable.is_empty() {
        notes.push(crate::pull::unappliable_note(&s.unappliable));
    }
    if !s.hook_failures.is_empty() {
        notes.push(format!(
            "chained post-receive hooks failed: {}",
            s.hook_failures.join(", ")
        ));
    }
    notes
}
