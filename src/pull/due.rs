//! When a pull is due, and how a run's outcome settles into its status record, with the
//! messages a person reads there (divergence, unappliable refs).

use super::PullSummary;
use crate::config::{Config, Pull};
use crate::schedule;
use crate::state::{self, MirrorState};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// When the pull of `repo` is next due according to its record and `pull`; `UNIX_EPOCH`
/// when due now (never run), `None` when hard-failed.
pub fn next_due(
    repo: &Path,
    config: &Config,
    pull: &Pull,
    state: &MirrorState,
) -> Option<SystemTime> {
    schedule::next_pull(
        state,
        pull,
        &setup_fingerprint(repo, config, pull),
        &repo.display().to_string(),
    )
}

/// The due time shown for a pull that is due now.
pub fn shown_due_time(next: SystemTime, now: SystemTime) -> SystemTime {
    if next == UNIX_EPOCH {
        now
    } else {
        next
    }
}

/// What a person changes to fix a pull: mirror.toml, and the files its credentials
/// live in (a rotated token, a re-trusted host key). A hard-failed pull resumes by
/// itself when this changes.
fn setup_fingerprint(repo: &Path, config: &Config, pull: &Pull) -> String {
    let mut files = vec![crate::auth::default_known_hosts(repo)];
    if let Some(auth) = pull.auth.as_ref().and_then(|name| config.auth.get(name)) {
        if let Some(crate::config::Secret::File(path)) = &auth.password {
            files.push(path.clone());
        }
        files.extend(
            [&auth.ssh_key, &auth.known_hosts, &auth.ssh_config]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    let mut text = config.fingerprint.clone();
    for file in files {
        let changed = std::fs::metadata(repo.join(&file))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        text.push_str(&format!(" {changed}"));
    }
    state::fingerprint(text.as_bytes())
}

/// Records the outcome of a pull in its status record.
pub(super) fn settle(
    repo: &Path,
    s: &mut MirrorState,
    summary: &mut PullSummary,
    config: &Config,
    pull: &Pull,
    at: SystemTime,
) {
    if let Some(error) = summary.error.clone() {
        let failures = s.consecutive_failures.saturating_add(1);
        let why = match summary.lasting {
            Some(why) => format!("retrying cannot fix this: {why}"),
            None if failures >= pull.max_failures => {
                format!("failed {failures} times in a row, so no longer retried")
            }
            None => {
                s.failed(at, error);
                return;
            }
        };
        let error = format!("{error} ({why}; fix it, then run `git mirror pull --now`)");
        s.hard_failed(at, error.clone(), &setup_fingerprint(repo, config, pull));
        summary.hard_failed = true;
        summary.error = Some(error);
        return;
    }
    if summary.fetched > 0 || !summary.applied.is_empty() || s.last_changed_at.is_none() {
        s.last_changed_at = Some(state::timestamp(at));
    }
    let mut problems = Vec::new();
    if !summary.divergent.is_empty() {
        problems.push(divergence_message(&summary.divergent));
    }
    if !summary.unforwarded.is_empty() {
        problems.push(crate::offline::diverged_message(&summary.unforwarded));
    }
    if let Some(error) = &summary.forward_error {
        problems.push(error.clone());
    }
    if !summary.unappliable.is_empty() {
        // Like a divergence: the others arrived, a person must act, retrying sooner
        // would not help, so it never counts towards max_failures.
        problems.push(unappliable_note(&summary.unappliable));
    }
    if problems.is_empty() {
        s.finished(at);
    } else {
        // The other refs were updated; these wait for a person, and retrying sooner
        // would not help, so the schedule stays as after a success.
        s.failed_uncounted(at, problems.join("; "));
        s.consecutive_failures = 0;
    }
    s.divergent_refs = summary
        .divergent
        .iter()
        .chain(&summary.unforwarded)
        .cloned()
        .collect();
}

/// What a person reads about branches that diverged from the upstream.
pub fn divergence_message(names: &[String]) -> String {
    let first = names.first().map(String::as_str).unwrap_or("REF");
    format!(
        "{} diverged from the upstream (commits it never had) and {} left alone: keep one side with `git mirror resolve {first} --take upstream` (this repository follows the upstream) or `--take here` (the upstream gets this repository's value), or set overwrite_diverged = true in [pull]",
        names.join(", "),
        if names.len() == 1 { "was" } else { "were" }
    )
}

/// What status and the log say about upstream refs that cannot exist here.
pub fn unappliable_note(refs: &[(String, String)]) -> String {
    let list: Vec<String> = refs.iter().map(|(n, why)| format!("{n} ({why})")).collect();
    format!(
        "{} upstream ref{} cannot be applied here and {} left alone: {}",
        refs.len(),
        if refs.len() == 1 { "" } else { "s" },
        if refs.len() == 1 { "was" } else { "were" },
        list.join("; ")
    )
}
