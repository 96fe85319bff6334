//! What a sweep over many repositories (`pull --all`, `push --all`) shows while it runs
//! and when it ends: a progress bar on a terminal (on stderr, only when stderr is one),
//! the plain lines on stdout, or with `--json` one JSON object per repository.

use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::Path;

/// The progress bar of a sweep; hidden when stderr is not a terminal (cron, a pipe, a
/// log file), where it would only add noise.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    pub(super) fn new(repositories: usize) -> Progress {
        let len = u64::try_from(repositories).unwrap_or(u64::MAX);
        let bar = if std::io::stderr().is_terminal() {
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} repositories, {elapsed} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = indicatif::ProgressBar::new(len).with_style(style);
            // The elapsed time moves on while one long pull runs.
            bar.enable_steady_tick(std::time::Duration::from_millis(500));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Prints one line on stdout, above the bar (which is drawn again below it).
    pub(super) fn println(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// One more repository is done.
    pub(super) fn done(&self, repo: &Path) {
        self.bar.set_message(repo.display().to_string());
        self.bar.inc(1);
    }

    /// The sweep is over: the bar goes away, leaving the lines.
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// How the pull of one repository of `pull --all` ended (`"pull"` in its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PullOutcome {
    /// Refs were updated.
    Updated,
    /// The pull ran and found nothing to change.
    UpToDate,
    /// Not due yet.
    NotDue,
    /// Another run is pulling it.
    Busy,
    /// Mirroring is paused for maintenance (`git mirror pause`).
    Paused,
    /// Hard failed: not retried until a person acts.
    HardFailed,
    /// The pull failed (it is retried after its backoff).
    Failed,
}

/// One repository in the JSON array `pull --all --json` and `push --all --json` print.
#[derive(Debug, Serialize)]
pub(super) struct Outcome {
    /// The repository's path.
    pub(super) repository: String,
    /// false when anything in it failed (the sweep then exits 1).
    pub(super) ok: bool,
    /// `pull --all` only: how its pull ended; null when it was not pulled (no `[pull]`
    /// table, or an invalid mirror.toml).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pull: Option<Option<PullOutcome>>,
    /// Push mirrors whose worker ran.
    pub(super) push_mirrors_run: usize,
    /// What the plain output says of it, one entry per part.
    pub(super) messages: Vec<String>,
}

/// Prints the sweep's outcomes as one JSON array (sorted as the repositories are).
pub(super) fn print_json(outcomes: &[Outcome]) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(outcomes)?;
    println!("{text}");
    Ok(())
}
