//! `git-mirror`, the companion command: its clap definition and the code behind each
//! subcommand. Errors map to exit codes: 1 failed, 2 usage or configuration error.

use crate::config::{Config, ConfigError};
use crate::git::Git;
use crate::push::{WorkerOptions, WorkerReport};
use crate::queue::Queue;
use crate::state::{self, MirrorState, UpdateStatus};
use crate::url::RemoteUrl;
use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "git-mirror",
    version,
    about = "mirror-hooks companion: push mirroring, status and diagnosis of a repository's mirrors",
    long_about = "mirror-hooks companion: push mirroring, status and diagnosis of a repository's mirrors.\n\n\
        The hooks (pre-receive, post-receive) start the mirroring; this command runs the background work \
        and shows what was done. \
        Installed as `git-mirror` on PATH, it also runs as `git mirror …`.",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show one status record per mirror.
    Status {
        /// Print JSON (stable, documented in README.md) instead of a table.
        #[arg(long)]
        json: bool,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Run the push-mirror worker: bring push mirrors up to date with the queued jobs.
    #[command(
        long_about = "Run the push-mirror worker: fold every queued job of each push mirror into one push of the \
            current refs. post-receive starts it after each push; run it from cron with --all to retry mirrors \
            whose backoff has expired.\n\nWithout --now, a mirror runs only when jobs are queued and its retry \
            time (after a failure) has come."
    )]
    Push {
        /// Run at once, even with nothing queued or while backing off after a failure.
        #[arg(long)]
        now: bool,
        /// Only the push mirror with this name.
        #[arg(long, value_name = "NAME")]
        mirror: Option<String>,
        /// Every bare repository with a mirror.toml under ROOT (instead of REPO).
        #[arg(long, value_name = "ROOT", conflicts_with = "repo")]
        all: Option<PathBuf>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Check mirror.toml and the installed hooks, and explain each problem.
    Doctor {
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
}

/// An error with the exit code it deserves.
pub enum Failure {
    Failed(anyhow::Error),
    Config(ConfigError),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Status { json, repo } => status(repo.as_deref(), json),
        Command::Doctor { repo } => doctor(repo.as_deref()),
        Command::Push {
            now,
            mirror,
            all,
            repo,
        } => {
            let options = WorkerOptions { now, mirror };
            match all {
                Some(root) => push_all(&root, &options),
                None => push(repo.as_deref(), &options),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Failed(e)) => {
            eprintln!("git-mirror: error: {e:#}");
            1
        }
        Err(Failure::Config(e)) => {
            eprintln!("git-mirror: error: {e}");
            2
        }
    }
}

fn repository(repo: Option<&Path>) -> Result<PathBuf> {
    Git::discover(repo.unwrap_or(Path::new(".")))
}

fn load(repo: &Path) -> Result<Config, Failure> {
    match Config::load(repo) {
        Ok(Some(config)) => Ok(config),
        Ok(None) => Err(Failure::Failed(anyhow::anyhow!(
            "{} has no mirror.toml; run install.sh on it to get a commented starter file",
            repo.display()
        ))),
        Err(e) => Err(Failure::Config(e)),
    }
}

/// One mirror in `git-mirror status --json`.
#[derive(Debug, Serialize)]
pub struct StatusRecord {
    pub name: String,
    pub direction: &'static str,
    pub url: String,
    #[serde(flatten)]
    pub state: MirrorState,
    /// Push mirrors only: jobs queued and not yet pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_jobs: Option<usize>,
    /// Push mirrors only: job files that could not be read, set aside for inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged_jobs: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub repository: String,
    pub mirrors: Vec<StatusRecord>,
}

/// Gathers the status records of every mirror `config` describes.
pub fn status_report(repo: &Path, config: &Config) -> Result<StatusReport> {
    let mut mirrors = Vec::new();
    let mut add = |name: &str, direction: &'static str, url: &RemoteUrl| -> Result<()> {
        let mut state = state::load(repo, name)?;
        let (mut queued_jobs, mut damaged_jobs) = (None, None);
        if direction == "push" {
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
        mirrors.push(StatusRecord {
            name: name.to_owned(),
            direction,
            url: url.to_string(),
            state,
            queued_jobs,
            damaged_jobs,
        });
        Ok(())
    };
    if let Some(up) = &config.upstream {
        add(crate::proxy::RECORD, "proxy", &up.url)?;
    }
    if let Some(pull) = &config.pull {
        add("pull", "pull", &pull.url)?;
    }
    for m in &config.push {
        add(&m.name, "push", &m.url)?;
    }
    Ok(StatusReport {
        repository: repo.display().to_string(),
        mirrors,
    })
}

fn status(repo: Option<&Path>, json: bool) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let report = status_report(&repo, &config)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(anyhow::Error::from)?;
        let _ = writeln!(out);
    } else {
        let _ = write!(out, "{}", status_table(&report));
    }
    Ok(0)
}

/// The human-readable status table.
pub fn status_table(report: &StatusReport) -> String {
    let mut text = format!("repository: {}\n", report.repository);
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
                m.direction.to_owned(),
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
        if !mirror.state.divergent_refs.is_empty() {
            text.push_str(&format!(
                "  divergent refs: {}\n",
                mirror.state.divergent_refs.join(", ")
            ));
        }
    }
    text
}

fn push(repo: Option<&Path>, options: &WorkerOptions) -> Result<i32, Failure> {
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

fn push_all(root: &Path, options: &WorkerOptions) -> Result<i32, Failure> {
    let repos = crate::fleet::repositories(root)?;
    let (mut ran, mut failed) = (0, 0);
    for repo in &repos {
        let config = match Config::load(repo) {
            Ok(Some(config)) => config,
            Ok(None) => continue,
            Err(e) => {
                failed += 1;
                println!("{}: mirror.toml is invalid: {e}", repo.display());
                continue;
            }
        };
        if options
            .mirror
            .as_ref()
            .is_some_and(|m| !config.push.iter().any(|p| &p.name == m))
        {
            continue;
        }
        match crate::push::run(repo, &config, options) {
            Ok(reports) => {
                for (name, report) in &reports {
                    if matches!(report, WorkerReport::Idle(None)) {
                        continue;
                    }
                    let (line, bad) = describe(report);
                    ran += 1;
                    failed += usize::from(bad);
                    println!("{} {name}: {line}", repo.display());
                }
            }
            Err(e) => {
                failed += 1;
                println!("{}: {e:#}", repo.display());
            }
        }
    }
    println!(
        "{} repositories with mirror.toml under {}, {ran} push mirrors run, {failed} failed",
        repos.len(),
        root.display()
    );
    Ok(i32::from(failed > 0))
}

/// One line about a worker's outcome, and whether it is a failure.
fn describe(report: &WorkerReport) -> (String, bool) {
    match report {
        WorkerReport::Busy => (
            "another worker is running; it takes the queued jobs".to_owned(),
            false,
        ),
        WorkerReport::Idle(None) => ("nothing queued".to_owned(), false),
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
            (format!("failed: {}", parts.join("; ")), true)
        }
    }
}

fn doctor(repo: Option<&Path>) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let mut problems = 0;
    println!("mirror.toml: {}: valid", config.path.display());
    let urls = config
        .upstream
        .iter()
        .map(|u| ("upstream", &u.url))
        .chain(config.pull.iter().map(|p| ("pull", &p.url)))
        .chain(config.push.iter().map(|m| (m.name.as_str(), &m.url)));
    for (name, url) in urls {
        println!("{name}: {url}");
        if url.has_embedded_secret() {
            println!("  note: the URL embeds a password or token; move it to an [auth] table (password_file or password_env) so it is not stored in the URL");
        }
    }
    for hook in ["pre-receive", "post-receive"] {
        let path = repo.join("hooks").join(hook);
        let ours = std::fs::read(&path)
            .map(|bytes| contains(&bytes, crate::hook::MARKER.as_bytes()))
            .unwrap_or(false);
        if !ours {
            problems += 1;
            println!(
                "hooks/{hook}: not installed; run `install.sh {}`",
                repo.display()
            );
        }
    }
    if config.upstream.is_none() && config.pull.is_none() && config.push.is_empty() {
        println!(
            "note: mirror.toml configures no mirror yet; edit it (README.md has the reference)"
        );
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
