//! `git-mirror`, the companion command: its clap definition and the code behind each
//! subcommand. Errors map to exit codes: 1 failed, 2 usage or configuration error.

use crate::config::{Config, ConfigError};
use crate::git::Git;
use crate::state::{self, MirrorState};
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
    about = "mirror-hooks companion: status and diagnosis of a repository's mirrors",
    long_about = "mirror-hooks companion: status and diagnosis of a repository's mirrors.\n\n\
        The hooks (pre-receive, post-receive) do the mirroring; this command shows what they did. \
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
        mirrors.push(StatusRecord {
            name: name.to_owned(),
            direction,
            url: url.to_string(),
            state: state::load(repo, name)?,
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
        if !mirror.state.divergent_refs.is_empty() {
            text.push_str(&format!(
                "  divergent refs: {}\n",
                mirror.state.divergent_refs.join(", ")
            ));
        }
    }
    text
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
