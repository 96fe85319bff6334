//! `git-mirror status`: the status view (`crate::status`) shown as a table or as JSON.

use super::{load, repository, Failure};
use crate::state::UpdateStatus;
use crate::status::{status_report, StatusRecord, StatusReport};
use std::io::Write;
use std::path::Path;

/// `text` with each line made printable: ref names and errors in it come from other
/// servers, and must not drive the reader's terminal.
fn printable_lines(text: &str) -> String {
    text.lines()
        .map(|line| format!("{}\n", crate::text::printable(line)))
        .collect()
}

pub(super) fn status(repo: Option<&Path>, json: bool) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let report = status_report(&repo, &config)?;
    let mut out = std::io::stdout().lock();
    if json {
        // A reader that went away (`| head`) is not a failure of status.
        let _ = serde_json::to_writer_pretty(&mut out, &report);
        let _ = writeln!(out);
    } else {
        let _ = write!(out, "{}", printable_lines(&status_table(&report)));
    }
    Ok(0)
}

/// The lines above the table: the repository, how it forwards, what is unfinished.
fn header(report: &StatusReport) -> String {
    let mut text = String::new();
    if report.paused {
        text.push_str(&format!(
            "PAUSED: {}: nothing is pulled or pushed, and pushes to the upstream's refs are refused; `git mirror resume` ends it\n",
            crate::pause::REASON
        ));
    }
    text.push_str(&format!("repository: {}\n", report.repository));
    let forwards = report
        .mirrors
        .iter()
        .any(|m| m.direction == crate::status::Direction::Proxy);
    if forwards {
        text.push_str(&format!("forwarding: {}", report.mode));
        if let Some(note) = &report.mode_note {
            text.push_str(&format!(" ({note})"));
        }
        text.push('\n');
    }
    if report.unfinished_pushes > 0 {
        text.push_str(&format!(
            "unfinished two-phase pushes: {} (their process died; the next push, pull or sweep finishes them)\n",
            report.unfinished_pushes
        ));
    }
    text
}

/// The lines under one mirror's row: its error, queue, next update and odd refs.
fn details(mirror: &crate::status::StatusRecord) -> String {
    let mut details = String::new();
    match (&mirror.state.last_error, stale_error(mirror)) {
        (Some(error), true) => details.push_str(&format!(
            "  last error (before the last success): {error}\n"
        )),
        (Some(error), false) => details.push_str(&format!("  last error: {error}\n")),
        (None, _) => {}
    }
    if let Some(queued) = mirror.queued_jobs.filter(|n| *n > 0) {
        details.push_str(&format!("  queued jobs: {queued} (not yet pushed)\n"));
    }
    if let Some(damaged) = mirror.damaged_jobs.as_ref().filter(|d| !d.is_empty()) {
        details.push_str(&format!(
            "  damaged jobs set aside: {} (under mirror/queue/{}/damaged/)\n",
            damaged.len(),
            mirror.name
        ));
    }
    if let Some(next) = &mirror.state.next_update_at {
        details.push_str(&format!("  next update: {next}\n"));
    }
    if !mirror.state.divergent_refs.is_empty() {
        details.push_str(&format!(
            "  divergent refs: {}\n",
            mirror.state.divergent_refs.join(", ")
        ));
    }
    if let Some(refs) = mirror.unforwarded_refs.as_ref().filter(|r| !r.is_empty()) {
        details.push_str(&format!(
            "  accepted here while the upstream was away, not yet forwarded: {}\n",
            refs.join(", ")
        ));
    }
    if !mirror.state.skipped_refs.is_empty() {
        details.push_str(&format!(
            "  skipped refs (name not UTF-8): {}\n",
            mirror.state.skipped_refs.join(", ")
        ));
    }
    details
}

/// The human-readable status table.
pub(crate) fn status_table(report: &StatusReport) -> String {
    let mut text = header(report);
    if report.mirrors.is_empty() {
        text.push_str("no mirrors are configured in mirror.toml\n");
        return text;
    }
    let header = ["MIRROR", "DIRECTION", "STATUS", "LAST SUCCESS", "URL"];
    let rows: Vec<[String; 5]> = report
        .mirrors
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.direction.as_str().to_owned(),
                shown_status(m),
                m.state
                    .last_successful_update_at
                    .clone()
                    .unwrap_or_else(|| "never".to_owned()),
                m.url.clone(),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..4).map(width).collect();
    let line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate().take(4) {
            l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        l.push_str(cells[4]);
        l.push('\n');
        l
    };
    text.push_str(&line(header));
    for (row, mirror) in rows.iter().zip(&report.mirrors) {
        text.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        text.push_str(&details(mirror));
    }
    text
}

/// Whether a success came after the mirror's last error, which is then history, not
/// the mirror's state: a failure is recorded with the time its run ended, so a run that
/// failed and wrote the record after another had succeeded later (concurrent pushes, a
/// worker and a `--now`) leaves its error with an older time than the success.
fn stale_error(mirror: &StatusRecord) -> bool {
    // The upstream's errors status adds itself (refs the upstream took that this
    // repository did not apply, a damaged ledger) are about now.
    if mirror.direction == crate::status::Direction::Proxy
        && mirror.unapplied_refs.as_ref().is_none_or(|r| !r.is_empty())
    {
        return false;
    }
    let state = &mirror.state;
    let time = |t: &Option<String>| crate::state::parse_time(t.as_deref());
    match (
        &state.last_error,
        time(&state.last_successful_update_at),
        time(&state.last_update_at),
    ) {
        (Some(_), Some(success), Some(failure)) => success > failure,
        _ => false,
    }
}

/// The STATUS column: the record's `update_status`, except that a success which made
/// the last error stale shows as what it is (finished, or scheduled with jobs queued).
fn shown_status(mirror: &StatusRecord) -> String {
    let status = if stale_error(mirror) && mirror.state.update_status == UpdateStatus::Failed {
        if mirror.queued_jobs.unwrap_or(0) > 0 {
            UpdateStatus::Scheduled
        } else {
            UpdateStatus::Finished
        }
    } else {
        mirror.state.update_status
    };
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MirrorState;
    use crate::status::Direction;

    fn record(direction: Direction, state: MirrorState) -> StatusRecord {
        StatusRecord {
            name: "m".to_owned(),
            direction,
            url: "/elsewhere.git".to_owned(),
            state,
            queued_jobs: (direction == Direction::Push).then_some(0),
            damaged_jobs: None,
            unforwarded_refs: None,
            unapplied_refs: (direction == Direction::Proxy).then(Vec::new),
        }
    }

    #[test]
    fn an_error_is_stale_only_when_a_success_came_after_it() {
        let t = |s: &str| Some(format!("2026-11-25T10:00:{s}Z"));
        let cases = [
            // (last_error, last_update_at, last_successful_update_at, stale)
            (Some("down"), t("00"), t("05"), true),
            (Some("down"), t("05"), t("00"), false),
            (Some("down"), t("05"), t("05"), false),
            (Some("down"), t("05"), None, false),
            (Some("down"), None, t("05"), false),
            (None, t("00"), t("05"), false),
        ];
        for (error, update, success, stale) in cases {
            let state = MirrorState {
                update_status: UpdateStatus::Failed,
                last_error: error.map(str::to_owned),
                last_update_at: update.clone(),
                last_successful_update_at: success.clone(),
                ..MirrorState::default()
            };
            for direction in [Direction::Proxy, Direction::Pull, Direction::Push] {
                let r = record(direction, state.clone());
                assert_eq!(
                    stale_error(&r),
                    stale,
                    "{direction:?} {error:?} {update:?} {success:?}"
                );
                let shown = if stale { "finished" } else { "failed" };
                assert_eq!(shown_status(&r), shown);
            }
        }
    }

    #[test]
    fn errors_status_adds_about_the_upstream_are_never_stale() {
        let state = MirrorState {
            update_status: UpdateStatus::Failed,
            last_error: Some("refs not applied".to_owned()),
            last_update_at: Some("2026-11-25T10:00:00Z".to_owned()),
            last_successful_update_at: Some("2026-11-25T10:00:05Z".to_owned()),
            ..MirrorState::default()
        };
        let mut r = record(Direction::Proxy, state);
        r.unapplied_refs = Some(vec!["refs/heads/main".to_owned()]);
        assert!(!stale_error(&r));
        // A damaged ledger: nothing is known of the refs.
        r.unapplied_refs = None;
        assert!(!stale_error(&r));
    }
}
