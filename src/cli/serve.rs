//! `git-mirror serve ROOT`: the long-running scheduler with webhooks and metrics; the
//! work is in `crate::serve`.

use super::Failure;
use std::path::Path;

pub(super) const LONG_ABOUT: &str = "Run the schedule of every bare repository with a mirror.toml under \
    ROOT, in place of the cron sweep: due pulls and push-mirror retries, N at a time; ROOT is looked \
    over every 10 seconds, so new and edited mirror.toml are picked up; paused repositories are left \
    alone. On SIGTERM it stops taking work, lets running pulls stop cleanly and exits within 10 seconds.\n\n\
    Over HTTP (the first line of standard output is the address it listens on):\n  \
    POST /webhook/REPO (REPO relative to ROOT) pulls REPO now; the webhook's secret is the file \
    `webhook_secret_file` of [pull] (mode 0600). GitHub (X-Hub-Signature-256), Gitea \
    (X-Gitea-Signature), Forgejo (X-Forgejo-Signature) and GitLab (X-Gitlab-Token) are understood.\n  \
    GET /metrics: each mirror's status in the Prometheus text format.\n  \
    GET /healthz: ok.";

pub(super) fn serve(root: &Path, listen: &str, jobs: usize) -> Result<i32, Failure> {
    crate::serve::serve(root, listen, jobs)?;
    Ok(0)
}
