//! `git-mirror push`: the push-mirror workers of one repository, or of every one under
//! a root (`--all`), and one line per worker's outcome.

use super::progress::{Outcome, Progress};
use super::pull::{sweep_one_as_owner, SweptOne};
use super::{load, repository, Failure};
use crate::fleet::Swept;
use crate::push::{WorkerOptions, WorkerReport};
use serde::Serialize;
use std::path::Path;

pub(super) fn push(repo: Option<&Path>, options: &WorkerOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    if config.push.is_empty() {
        println!("{}: mirror.toml has no [[push]] mirror", repo.display());
        return Ok(0);
    }
    let reports = crate::push::run(&repo, &config, options)?;
    let mut failed = false;
    for (name, report) in &reports {
        let (line, bad) = describe(report);
        failed |= bad;
        println!("{name}: {line}");
    }
    Ok(i32::from(failed))
}

pub(super) fn push_all(root: &Path, options: &WorkerOptions, json: bool) -> Result<i32, Failure> {
    let repos = crate::fleet::repositories(root)?;
    let (mut ran, mut failed) = (0, 0);
    let progress = Progress::new(repos.len());
    let mut outcomes = Vec::new();
    for repo in &repos {
        let one = if crate::owner::foreign_owner(repo).is_some() {
            push_one_as_owner(repo, options)
        } else {
            push_one(repo, options)
        };
        if !json {
            for line in &one.lines {
                progress.println(line);
            }
        }
        progress.done(repo);
        ran += one.tally.ran;
        failed += one.tally.failed;
        outcomes.push(Outcome {
            repository: repo.display().to_string(),
            ok: one.tally.failed == 0,
            pull: None,
            push_mirrors_run: one.tally.ran,
            messages: one.tally.messages,
        });
    }
    progress.finish();
    if json {
        super::progress::print_json(&outcomes)?;
        return Ok(i32::from(failed > 0));
    }
    println!(
        "{} repositories with mirror.toml under {}, {ran} push mirrors run, {failed} failed",
        repos.len(),
        root.display()
    );
    Ok(i32::from(failed > 0))
}

/// What the push workers of one repository of a `push --all` sweep came to.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct PushTally {
    ran: usize,
    failed: usize,
    /// What the lines say, without the repository's path in front.
    #[serde(default)]
    messages: Vec<String>,
}

/// Runs the push workers of one repository of a `push --all` sweep; the lines to print.
fn push_one(repo: &Path, options: &WorkerOptions) -> SweptOne<PushTally> {
    let mut one = SweptOne::<PushTally>::default();
    match crate::fleet::sweep_push(repo, options) {
        Swept::Gone => {}
        Swept::Invalid(e) => {
            one.tally.failed += 1;
            let message = format!("mirror.toml is invalid: {e}");
            one.lines.push(format!("{}: {message}", repo.display()));
            one.tally.messages.push(message);
        }
        Swept::Ran(Ok(reports)) => {
            for (name, report) in &reports {
                if matches!(report, WorkerReport::Idle(None)) {
                    continue;
                }
                let (line, bad) = describe(report);
                one.tally.ran += 1;
                one.tally.failed += usize::from(bad);
                let message = format!("{name}: {line}");
                one.lines.push(format!("{} {message}", repo.display()));
                one.tally.messages.push(message);
            }
        }
        Swept::Ran(Err(e)) => {
            one.tally.failed += 1;
            one.lines.push(format!("{}: {e:#}", repo.display()));
            one.tally.messages.push(format!("{e:#}"));
        }
    }
    one
}

/// [`push_one`] of a repository that belongs to another user, done as that user.
fn push_one_as_owner(repo: &Path, options: &WorkerOptions) -> SweptOne<PushTally> {
    let mut args = vec!["push"];
    if options.now {
        args.push("--now");
    }
    if let Some(mirror) = &options.mirror {
        args.extend(["--mirror", mirror]);
    }
    sweep_one_as_owner(repo, &args).unwrap_or_else(|e| SweptOne {
        lines: vec![format!("{}: {e:#}", repo.display())],
        tally: PushTally {
            ran: 0,
            failed: 1,
            messages: vec![format!("{e:#}")],
        },
    })
}

/// `push --sweep-one REPO`: [`push_one`] of one repository, reported as JSON.
pub(super) fn push_sweep_one(repo: Option<&Path>, options: &WorkerOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let one = push_one(&repo, options);
    println!(
        "{}",
        serde_json::to_string(&one).map_err(anyhow::Error::from)?
    );
    Ok(0)
}

/// One line about a worker's outcome, and whether it is a failure.
pub(super) fn describe(report: &WorkerReport) -> (String, bool) {
    match report {
        WorkerReport::Busy => (
            "another worker is running; it runs the queued jobs, and this --now, before it stops (see `git mirror status`)".to_owned(),
            false,
        ),
        WorkerReport::Idle(None) => ("nothing queued".to_owned(), false),
        WorkerReport::Paused => (
            format!(
                "not pushed: {}; its jobs stay queued until `git mirror resume`",
                crate::pause::REASON
            ),
            false,
        ),
        WorkerReport::Idle(Some(at)) => (
            format!("queued jobs wait for the retry at {at} (use --now to try at once)"),
            false,
        ),
        WorkerReport::Ran(s) if s.ok() => (
            format!(
                "up to date (pushed {}, deleted {}, unchanged {})",
                s.pushed, s.deleted, s.up_to_date
            ),
            false,
        ),
        WorkerReport::Ran(s) => {
            let mut parts = Vec::new();
            if let Some(error) = &s.error {
                parts.push(error.clone());
            }
            for (name, why) in &s.refused {
                parts.push(format!("{name} refused ({why})"));
            }
            if !s.divergent.is_empty() {
                parts.push(format!("diverged, skipped: {}", s.divergent.join(", ")));
            }
            for (name, why) in &s.skipped {
                parts.push(format!("{name} left alone ({why})"));
            }
            (format!("failed: {}", parts.join("; ")), true)
        }
    }
}
