//! `GET /metrics`: each mirror's status record under the root, read at scrape time (so
//! `serve` holds nothing per repository), in the Prometheus (OpenMetrics) text format.

use crate::config::Config;
use crate::queue::Queue;
use crate::state::{self, MirrorState, UpdateStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;
/// Times and durations.
type Seconds = Gauge<f64, AtomicU64>;
/// Counts and 0/1 flags.
type Count = Gauge;

/// What `serve` itself knows: its work now and its last scheduling pass.
pub struct ServeGauges {
    pub running: usize,
    pub waiting: usize,
    pub pass_seconds: f64,
}

struct Families {
    last_success: Family<Labels, Seconds>,
    failures: Family<Labels, Count>,
    queued: Family<Labels, Count>,
    status: Family<Labels, Count>,
    duration: Family<Labels, Seconds>,
    diverged: Family<Labels, Count>,
    invalid: Family<Labels, Count>,
    paused: Family<Labels, Count>,
}

/// The metrics text of every repository under `root` (canonical).
pub fn render(root: &Path, serve: &ServeGauges) -> anyhow::Result<String> {
    let repos = crate::fleet::repositories(root)?;
    let f = Families {
        last_success: Family::default(),
        failures: Family::default(),
        queued: Family::default(),
        status: Family::default(),
        duration: Family::default(),
        diverged: Family::default(),
        invalid: Family::default(),
        paused: Family::default(),
    };
    for repo in &repos {
        let rel = repo
            .strip_prefix(root)
            .unwrap_or(repo)
            .display()
            .to_string();
        repository(repo, &rel, &f);
    }
    let registry = registry(f, repos.len(), serve);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// The families filled in, and `serve`'s own gauges, registered under their names.
fn registry(f: Families, repos: usize, serve: &ServeGauges) -> Registry {
    let mut registry = Registry::default();
    let r = &mut registry;
    r.register(
        "git_mirror_last_success_timestamp_seconds",
        "When the mirror last updated successfully (Unix time)",
        f.last_success,
    );
    r.register(
        "git_mirror_consecutive_failures",
        "Failed runs in a row",
        f.failures,
    );
    r.register(
        "git_mirror_queued_jobs",
        "Push mirrors: jobs queued and not yet pushed",
        f.queued,
    );
    r.register(
        "git_mirror_status",
        "The mirror's update_status (label status), always 1",
        f.status,
    );
    r.register(
        "git_mirror_last_run_duration_seconds",
        "How long the last run took",
        f.duration,
    );
    r.register(
        "git_mirror_diverged_refs",
        "Refs that differ from the other side and were left alone",
        f.diverged,
    );
    r.register(
        "git_mirror_config_invalid",
        "1 when the repository's mirror.toml is invalid (nothing runs)",
        f.invalid,
    );
    r.register(
        "git_mirror_paused",
        "1 while the repository's mirroring is paused",
        f.paused,
    );
    let gauge = |n: usize| {
        let gauge = Count::default();
        gauge.set(count(n));
        gauge
    };
    r.register(
        "git_mirror_serve_repositories",
        "Repositories with a mirror.toml under the root",
        gauge(repos),
    );
    r.register(
        "git_mirror_serve_jobs_running",
        "Repositories being worked on now",
        gauge(serve.running),
    );
    r.register(
        "git_mirror_serve_jobs_waiting",
        "Repositories waiting for a free worker",
        gauge(serve.waiting),
    );
    let pass = Seconds::default();
    pass.set(serve.pass_seconds);
    r.register(
        "git_mirror_serve_pass_duration_seconds",
        "How long the last scheduling pass over the root took",
        pass,
    );
    registry
}

fn repository(repo: &Path, rel: &str, f: &Families) {
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(_) => {
            f.invalid
                .get_or_create(&vec![("repo", rel.to_owned())])
                .set(1);
            return;
        }
    };
    if crate::pause::is_paused(repo) {
        f.paused
            .get_or_create(&vec![("repo", rel.to_owned())])
            .set(1);
    }
    let mut names: Vec<&str> = Vec::new();
    if config.upstream.is_some() {
        names.push(state::UPSTREAM_RECORD);
    }
    if config.pull.is_some() {
        names.push(state::PULL_RECORD);
    }
    names.extend(config.push.iter().map(|m| m.name.as_str()));
    for name in names {
        // A damaged record reads as empty; status shows why.
        let record = state::load(repo, name).unwrap_or_default();
        let labels = vec![("repo", rel.to_owned()), ("mirror", name.to_owned())];
        mirror(repo, name, &record, &labels, f);
    }
}

fn mirror(repo: &Path, name: &str, s: &MirrorState, labels: &Labels, f: &Families) {
    if let Some(at) = seconds(s.last_successful_update_at.as_deref()) {
        f.last_success.get_or_create(labels).set(at);
    }
    f.failures
        .get_or_create(labels)
        .set(i64::from(s.consecutive_failures));
    f.diverged
        .get_or_create(labels)
        .set(count(s.divergent_refs.len()));
    if let (Some(start), Some(end)) = (
        seconds(s.last_update_started_at.as_deref()),
        seconds(s.last_update_at.as_deref()),
    ) {
        if end >= start {
            f.duration.get_or_create(labels).set(end - start);
        }
    }
    let mut status = s.update_status;
    if name != state::UPSTREAM_RECORD && name != state::PULL_RECORD {
        let queued = Queue::new(repo, name).pending();
        f.queued.get_or_create(labels).set(count(queued));
        if queued > 0 && matches!(status, UpdateStatus::None | UpdateStatus::Finished) {
            status = UpdateStatus::Scheduled;
        }
    }
    let mut labels = labels.clone();
    labels.push(("status", status_name(status).to_owned()));
    f.status.get_or_create(&labels).set(1);
}

fn status_name(status: UpdateStatus) -> &'static str {
    match status {
        UpdateStatus::None => "none",
        UpdateStatus::Scheduled => "scheduled",
        UpdateStatus::Started => "started",
        UpdateStatus::Finished => "finished",
        UpdateStatus::Failed => "failed",
        UpdateStatus::HardFailed => "hard_failed",
    }
}

fn seconds(at: Option<&str>) -> Option<f64> {
    state::parse_time(at)?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
