//! `git-mirror status`: the status view (`crate::status`) shown as a table or as JSON.

use super::{load, repository, Failure};
use crate::status::{status_report, StatusReport};
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
                serde_json::to_value(m.state.update_status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
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
        if let Some(error) = &mirror.state.last_error {
            text.push_str(&format!("  last error: {error}\n"));
        }
        if let Some(damaged) = mirror.damaged_jobs.as_ref().filter(|d| !d.is_empty()) {
            text.push_str(&format!(
                "  damaged jobs set aside: {} (under mirror/queue/{}/damaged/)\n",
                damaged.len(),
                mirror.name
            ));
        }
        if let Some(next) = &mirror.state.next_update_at {
            text.push_str(&format!("  next update: {next}\n"));
        }
        if !mirror.state.divergent_refs.is_empty() {
            text.push_str(&format!(
                "  divergent refs: {}\n",
                mirror.state.divergent_refs.join(", ")
            ));
        }
        if let Some(refs) = mirror.unforwarded_refs.as_ref().filter(|r| !r.is_empty()) {
            text.push_str(&format!(
                "  accepted here while the upstream was away, not yet forwarded: {}\n",
                refs.join(", ")
            ));
        }
        if !mirror.state.skipped_refs.is_empty() {
            text.push_str(&format!(
                "  skipped refs (name not UTF-8): {}\n",
                mirror.state.skipped_refs.join(", ")
            ));
        }
    }
    text
}
