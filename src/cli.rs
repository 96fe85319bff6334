//! `git-mirror`, the companion command: its clap definition and the code behind each
//! subcommand. Errors map to exit codes: 1 failed, 2 usage or configuration error.

use crate::config::{Config, ConfigError};
use crate::git::Git;
use crate::pull::{PullOptions, PullReport};
use crate::push::{WorkerOptions, WorkerReport};
use crate::queue::Queue;
use crate::state::{self, MirrorState, UpdateStatus};
use crate::url::RemoteUrl;
use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

// Output nobody reads is not an error: `git mirror doctor | head -1` must neither panic
// (std's println! does on a closed pipe) nor stop a sweep that is still pulling. These
// shadow std's macros for the whole module.
macro_rules! println {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "git-mirror",
    version,
    about = "mirror-hooks companion: pull and push mirroring, status and diagnosis of a repository's mirrors",
    long_about = "mirror-hooks companion: pull and push mirroring, status and diagnosis of a repository's mirrors.\n\n\
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
    /// Update this repository from its upstream ([pull] in mirror.toml) when due.
    #[command(
        long_about = "Update this repository from its upstream ([pull] in mirror.toml) when it is due: `interval` \
            after the last run, or the backoff after a failure. Cheap when nothing changed: the upstream's refs \
            are listed and compared, and nothing is fetched.\n\n\
            With --all ROOT, every bare repository under ROOT with a mirror.toml is pulled (the due ones, N at a \
            time) and its overdue push-mirror queues are drained, so one cron line or systemd timer runs \
            everything. A pull already running is reported, never doubled."
    )]
    Pull {
        /// Run at once, even when not due or hard-failed.
        #[arg(long)]
        now: bool,
        /// Every bare repository with a mirror.toml under ROOT (instead of REPO).
        #[arg(long, value_name = "ROOT", conflicts_with = "repo")]
        all: Option<PathBuf>,
        /// With --all: how many repositories to update at once.
        #[arg(short = 'j', long, value_name = "N", default_value_t = 4, requires = "all",
              value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// With --all: print only repositories that failed, and the total.
        #[arg(short, long, requires = "all")]
        quiet: bool,
        /// Internal: one repository of a sweep run by root, done as its owner; prints JSON.
        #[arg(long, hide = true, conflicts_with = "all")]
        sweep_one: bool,
        /// Internal: the proxy catching up after a refusal (--now, waiting for a pull
        /// already running; exit 1 only when the pull itself failed).
        #[arg(long, hide = true, conflicts_with = "all")]
        catch_up: bool,
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
        /// Internal: one repository of a sweep run by root, done as its owner; prints JSON.
        #[arg(long, hide = true, conflicts_with = "all")]
        sweep_one: bool,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Make the repository's SSH deploy key (ed25519) and print its public key.
    #[command(
        long_about = "Make the repository's SSH deploy key: an ed25519 key pair in mirror/keys/ (the private key \
            readable only by its owner). Prints the public key line: add it to the remote repository as a deploy key \
            (with write access where this server pushes), and name the key in mirror.toml:\n\n\
            [auth.NAME]\nssh_key = \"mirror/keys/id_ed25519\""
    )]
    Keygen {
        /// Replace an existing key (the old one stops working wherever it was added).
        #[arg(long)]
        force: bool,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Show an SSH server's host keys and their fingerprints; with --trust, trust them.
    #[command(
        name = "host-keys",
        long_about = "Show an SSH server's host keys with their SHA256 and MD5 fingerprints (as `ssh-keygen -l` \
            prints them), so they can be compared with what the server's administrator publishes. With --trust, \
            record them in the known_hosts file of the remote's [auth] table, or in mirror/keys/known_hosts, which \
            every SSH remote of the repository uses. SSH always runs with strict host key checking: an unknown or \
            changed host key is refused."
    )]
    HostKeys {
        /// Record the keys as trusted (replacing what was trusted for that host before).
        #[arg(long)]
        trust: bool,
        /// The SSH URL (ssh://host:port/path or host:path), as in mirror.toml.
        url: String,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Settle a ref that diverged from the upstream by keeping one side.
    #[command(
        long_about = "Settle a ref on which this repository and the upstream disagree for real: commits on \
            both sides that the other never had (the pull reports it as diverged), or a ref accepted here while \
            the upstream was away that the upstream moved meanwhile. `--take upstream` makes the ref here what \
            the upstream holds; `--take here` pushes this repository's value to the upstream (a forced update \
            there). Either way with a lease: if the other side moves meanwhile, nothing changes."
    )]
    Resolve {
        /// The full ref name, e.g. refs/heads/main.
        #[arg(value_name = "REF")]
        name: String,
        /// Which side's value to keep.
        #[arg(long, value_enum)]
        take: crate::resolve::Take,
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

impl Command {
    /// Where the command works: its repository, or the current directory. `None` for
    /// `--all` runs, which act as each repository's owner in turn.
    fn works_in(&self) -> Option<PathBuf> {
        let repo = match self {
            Command::Pull { all: Some(_), .. } | Command::Push { all: Some(_), .. } => return None,
            Command::Status { repo, .. }
            | Command::Pull { repo, .. }
            | Command::Push { repo, .. }
            | Command::Keygen { repo, .. }
            | Command::HostKeys { repo, .. }
            | Command::Resolve { repo, .. }
            | Command::Doctor { repo } => repo,
        };
        // Without REPO the repository is where git finds it: GIT_DIR first (as in
        // `git --git-dir=REPO mirror …`), then the current directory.
        Some(match repo {
            Some(repo) => repo.clone(),
            None => std::env::var_os("GIT_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from),
        })
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    // Root on another user's repository becomes its owner before touching anything (and
    // before git's safe.directory check, which `repository` would fail).
    if let Some(dir) = cli.command.works_in() {
        // What to run instead, if it comes to that: what was run, as a person types it.
        let args: Vec<std::ffi::OsString> =
            std::env::args_os().filter(|a| a != "--sweep-one").collect();
        match crate::owner::become_owner_of(&dir, &args) {
            Ok(Some(_)) => crate::owner::scrub_environment(&password_variables(&dir)),
            Ok(None) => {}
            Err(e) => {
                eprintln!("git-mirror: error: {e}");
                return 1;
            }
        }
    }
    // A stop request (systemd, Ctrl-C, a timeout) must let git remove its lock files.
    if let Err(e) = crate::git::stop_git_on_termination() {
        eprintln!("git-mirror: warning: {e:#}");
    }
    let result = match cli.command {
        Command::Status { json, repo } => status(repo.as_deref(), json),
        Command::Doctor { repo } => doctor(repo.as_deref()),
        Command::Resolve { name, take, repo } => resolve(repo.as_deref(), &name, take),
        Command::Keygen { force, repo } => keygen(repo.as_deref(), force),
        Command::HostKeys { trust, url, repo } => host_keys(&url, repo.as_deref(), trust),
        Command::Pull {
            now,
            all,
            jobs,
            quiet,
            sweep_one,
            catch_up,
            repo,
        } => {
            let options = PullOptions {
                now: now || catch_up,
                catch_up,
            };
            match all {
                Some(root) => pull_all(&root, options, usize::from(jobs), quiet),
                None if sweep_one => pull_sweep_one(repo.as_deref(), options),
                None => pull(repo.as_deref(), options),
            }
        }
        Command::Push {
            now,
            mirror,
            all,
            sweep_one,
            repo,
        } => {
            let options = WorkerOptions { now, mirror };
            match all {
                Some(root) => push_all(&root, &options),
                None if sweep_one => push_sweep_one(repo.as_deref(), &options),
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
    let dir = Git::discover(repo.unwrap_or(Path::new(".")))?;
    // `run` became the owner of what it was pointed at; a repository found elsewhere
    // (a symlink, a GIT_DIR set in between) must not be worked on as root: its hooks
    // would run as root, and root-owned files would break its owner's pushes.
    if let Some(uid) = crate::owner::foreign_owner(&dir) {
        anyhow::bail!(
            "{} belongs to uid {uid}, and this runs as root; run the command as its owner (sudo -u OWNER -H git-mirror …)",
            dir.display()
        );
    }
    Ok(dir)
}

/// `text` with each line made printable: ref names and errors in it come from other
/// servers, and must not drive the reader's terminal.
fn printable_lines(text: &str) -> String {
    text.lines()
        .map(|line| format!("{}\n", crate::text::printable(line)))
        .collect()
}

/// The variables mirror.toml names as `password_env`: the owner's run needs them, and
/// nothing else of root's environment.
fn password_variables(dir: &Path) -> Vec<String> {
    let Ok(Some(config)) = Config::load(dir) else {
        return Vec::new();
    };
    config
        .auth
        .values()
        .filter_map(|auth| match &auth.password {
            Some(crate::config::Secret::Env(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
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
    /// The upstream only: refs accepted here while it could not be reached, not yet
    /// forwarded (`on_unreachable = "accept"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unforwarded_refs: Option<Vec<String>>,
    /// The upstream only: refs whose value the upstream took through this repository
    /// but this repository does not hold (a local update failed afterwards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unapplied_refs: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub repository: String,
    pub mirrors: Vec<StatusRecord>,
}

/// Gathers the status records of every mirror `config` describes.
pub fn status_report(repo: &Path, config: &Config) -> Result<StatusReport> {
    let mut mirrors = Vec::new();
    if let Some(up) = &config.upstream {
        let mut record = record(repo, crate::state::UPSTREAM_RECORD, "proxy", &up.url)?;
        match crate::ledger::load(repo) {
            Ok(ledger) => {
                let diverged = state::load(repo, crate::state::PULL_RECORD)
                    .map(|s| s.divergent_refs)
                    .unwrap_or_default();
                let local = crate::repo::Repo::open(repo).and_then(|view| view.refs())?;
                let unapplied = ledger.unapplied(&local, &up.refs, &diverged);
                if !unapplied.is_empty() {
                    // The known window: the upstream took a push this repository then
                    // failed to apply. Status must not read "finished" over it.
                    record.state.update_status = UpdateStatus::Failed;
                    record.state.last_error = Some(format!(
                        "the upstream holds pushes this repository did not apply (a local ref update failed after the upstream had accepted): {}; `git mirror pull --now` brings them here{}",
                        unapplied.join(", "),
                        if config.pull.is_some() {
                            " (the next scheduled pull does too)"
                        } else {
                            ""
                        }
                    ));
                }
                record.unapplied_refs = Some(unapplied);
                record.unforwarded_refs = Some(ledger.unforwarded.into_keys().collect());
            }
            Err(damaged) => record.state.last_error = Some(damaged.to_string()),
        }
        mirrors.push(record);
    }
    if let Some(pull) = &config.pull {
        let mut record = record(repo, crate::state::PULL_RECORD, "pull", &pull.url)?;
        // Computed from the configuration as it is now, so an edited interval or a
        // resumed hard failure shows at once.
        let next = crate::pull::next_due(repo, config, pull, &record.state);
        record.state.next_update_at = next.map(|at| {
            state::timestamp(crate::pull::shown_due_time(
                at,
                std::time::SystemTime::now(),
            ))
        });
        mirrors.push(record);
    }
    for m in &config.push {
        mirrors.push(record(repo, &m.name, "push", &m.url)?);
    }
    for m in &mut mirrors {
        // Bookkeeping, not status.
        m.state.hard_failed_config = None;
    }
    Ok(StatusReport {
        repository: repo.display().to_string(),
        mirrors,
    })
}

fn record(
    repo: &Path,
    name: &str,
    direction: &'static str,
    url: &RemoteUrl,
) -> Result<StatusRecord> {
    // A damaged record must not hide the others; the next run of that mirror rewrites it.
    let mut state = state::load(repo, name).unwrap_or_else(|e| MirrorState {
        last_error: Some(format!("{e:#}")),
        ..MirrorState::default()
    });
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
    Ok(StatusRecord {
        name: name.to_owned(),
        direction,
        url: url.to_string(),
        state,
        queued_jobs,
        damaged_jobs,
        unforwarded_refs: None,
        unapplied_refs: None,
    })
}

fn status(repo: Option<&Path>, json: bool) -> Result<i32, Failure> {
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

fn pull(repo: Option<&Path>, options: PullOptions) -> Result<i32, Failure> {
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
}

fn pull_all(root: &Path, options: PullOptions, jobs: usize, quiet: bool) -> Result<i32, Failure> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let repos = crate::fleet::repositories(root)?;
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally {
        repositories: repos.len(),
        ..Tally::default()
    });
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(repos.len()) {
            scope.spawn(|| loop {
                let Some(repo) = repos.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let mut mine = Tally::default();
                let line = if crate::owner::foreign_owner(repo).is_some() {
                    sweep_as_owner(repo, options, &mut mine)
                } else {
                    sweep(repo, options, &mut mine)
                };
                let mut total = tally.lock().unwrap_or_else(|e| e.into_inner());
                if !quiet || mine.failed > 0 {
                    // One println per line, under the tally's lock: lines never mix.
                    println!("{}: {}", repo.display(), crate::text::printable(&line));
                }
                total.pulled += mine.pulled;
                total.updated += mine.updated;
                total.not_due += mine.not_due;
                total.pushed += mine.pushed;
                total.failed += mine.failed;
                total.hard_failed += mine.hard_failed;
            });
        }
    });
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
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
struct SweptOne<T> {
    lines: Vec<String>,
    tally: T,
}

/// Runs `git-mirror ARGS… --sweep-one REPO` (which becomes the repository's owner, as
/// root may not act in another user's repository) and reads back its report.
fn sweep_one_as_owner<T: serde::de::DeserializeOwned>(
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
fn sweep_as_owner(repo: &Path, options: PullOptions, tally: &mut Tally) -> String {
    let args: &[&str] = if options.now {
        &["pull", "--now"]
    } else {
        &["pull"]
    };
    match sweep_one_as_owner::<Tally>(repo, args) {
        Ok(one) => {
            *tally = one.tally;
            one.lines.join("; ")
        }
        Err(e) => {
            tally.failed += 1;
            format!("{e:#}")
        }
    }
}

/// `pull --sweep-one REPO`: [`sweep`] of one repository, reported as JSON.
fn pull_sweep_one(repo: Option<&Path>, options: PullOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let mut tally = Tally::default();
    let line = sweep(&repo, options, &mut tally);
    let one = SweptOne {
        lines: vec![line],
        tally,
    };
    println!(
        "{}",
        serde_json::to_string(&one).map_err(anyhow::Error::from)?
    );
    Ok(0)
}

/// Pulls one repository of a sweep if due and drains its overdue push-mirror queues;
/// returns its one-line summary.
fn sweep(repo: &Path, options: PullOptions, tally: &mut Tally) -> String {
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return "mirror.toml is gone".to_owned(),
        Err(e) => {
            tally.failed += 1;
            return format!("mirror.toml is invalid, nothing done: {e}");
        }
    };
    let mut parts = Vec::new();
    let mut failed = false;
    if config.pull.is_none() {
        // Without a [pull] table, refs accepted while the upstream was away are still
        // forwarded once it is back.
        match crate::offline::forward(repo, &config) {
            Ok(f) if f.forwarded.is_empty() && f.diverged.is_empty() => {}
            Ok(f) => {
                failed |= !f.diverged.is_empty();
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
            }
            Err(e) => {
                failed = true;
                parts.push(format!(
                    "forwarding refs accepted while the upstream was away failed: {e:#}"
                ));
            }
        }
    }
    if config.pull.is_some() {
        match crate::pull::run(repo, &config, options) {
            Ok(report) => {
                match &report {
                    PullReport::NotDue(_) => tally.not_due += 1,
                    PullReport::Ran(s) => {
                        tally.pulled += 1;
                        tally.updated += usize::from(!s.applied.is_empty());
                    }
                    _ => {}
                }
                let (line, bad) = describe_pull(&report, repo);
                if let PullReport::HardFailed(_) = report {
                    // Said once, by the run that hard-failed; saying it (and failing the
                    // sweep) every minute after would bury everything else.
                    tally.hard_failed += 1;
                } else {
                    failed |= bad;
                }
                parts.push(format!("pull: {line}"));
            }
            Err(e) => {
                failed = true;
                parts.push(format!("pull: failed: {e:#}"));
            }
        }
    }
    if !config.push.is_empty() {
        match crate::push::run(repo, &config, &WorkerOptions::default()) {
            Ok(reports) => {
                for (name, report) in &reports {
                    if matches!(report, WorkerReport::Idle(None)) {
                        continue;
                    }
                    let (line, bad) = describe(report);
                    tally.pushed += usize::from(matches!(report, WorkerReport::Ran(_)));
                    failed |= bad;
                    parts.push(format!("push {name}: {line}"));
                }
            }
            Err(e) => {
                failed = true;
                parts.push(format!("push: failed: {e:#}"));
            }
        }
    }
    tally.failed += usize::from(failed);
    if parts.is_empty() {
        "nothing to do".to_owned()
    } else {
        parts.join("; ")
    }
}

/// One line about a pull's outcome, and whether it is a failure.
fn describe_pull(report: &PullReport, repo: &Path) -> (String, bool) {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    match report {
        PullReport::Busy => ("already being updated by another run".to_owned(), false),
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
            let mut line = if let Some(error) = &s.error {
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
            };
            if !s.forwarded.is_empty() {
                line.push_str(&format!(
                    "; forwarded to the upstream (accepted here while it was away): {}",
                    s.forwarded.join(", ")
                ));
            }
            if s.error.is_none() && !s.divergent.is_empty() {
                line.push_str(&format!(
                    "; failed: {}",
                    crate::pull::divergence_message(&s.divergent)
                ));
            }
            if !s.unforwarded.is_empty() {
                line.push_str(&format!(
                    "; failed: {}",
                    crate::offline::diverged_message(&s.unforwarded)
                ));
            }
            if let Some(error) = &s.forward_error {
                line.push_str(&format!("; failed: {error}"));
            }
            if !s.skipped.is_empty() {
                line.push_str(&format!(
                    "; skipped (ref name not UTF-8, rename it upstream): {}",
                    s.skipped.join(", ")
                ));
            }
            if !s.unappliable.is_empty() {
                line.push_str(&format!(
                    "; {}",
                    crate::pull::unappliable_note(&s.unappliable)
                ));
            }
            if !s.hook_failures.is_empty() {
                line.push_str(&format!(
                    "; chained post-receive hooks failed: {}",
                    s.hook_failures.join(", ")
                ));
            }
            (line, !s.ok())
        }
    }
}

fn resolve(repo: Option<&Path>, name: &str, take: crate::resolve::Take) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let said = crate::resolve::resolve(&repo, &config, name, take)?;
    println!("resolve: {said}");
    Ok(0)
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
        let one = if crate::owner::foreign_owner(repo).is_some() {
            push_one_as_owner(repo, options)
        } else {
            push_one(repo, options)
        };
        for line in &one.lines {
            println!("{line}");
        }
        ran += one.tally.ran;
        failed += one.tally.failed;
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
}

/// Runs the push workers of one repository of a `push --all` sweep; the lines to print.
fn push_one(repo: &Path, options: &WorkerOptions) -> SweptOne<PushTally> {
    let mut one = SweptOne::<PushTally>::default();
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return one,
        Err(e) => {
            one.tally.failed += 1;
            one.lines
                .push(format!("{}: mirror.toml is invalid: {e}", repo.display()));
            return one;
        }
    };
    if options
        .mirror
        .as_ref()
        .is_some_and(|m| !config.push.iter().any(|p| &p.name == m))
    {
        return one;
    }
    match crate::push::run(repo, &config, options) {
        Ok(reports) => {
            for (name, report) in &reports {
                if matches!(report, WorkerReport::Idle(None)) {
                    continue;
                }
                let (line, bad) = describe(report);
                one.tally.ran += 1;
                one.tally.failed += usize::from(bad);
                one.lines.push(format!("{} {name}: {line}", repo.display()));
            }
        }
        Err(e) => {
            one.tally.failed += 1;
            one.lines.push(format!("{}: {e:#}", repo.display()));
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
        tally: PushTally { ran: 0, failed: 1 },
    })
}

/// `push --sweep-one REPO`: [`push_one`] of one repository, reported as JSON.
fn push_sweep_one(repo: Option<&Path>, options: &WorkerOptions) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let one = push_one(&repo, options);
    println!(
        "{}",
        serde_json::to_string(&one).map_err(anyhow::Error::from)?
    );
    Ok(0)
}

/// One line about a worker's outcome, and whether it is a failure.
fn describe(report: &WorkerReport) -> (String, bool) {
    match report {
        WorkerReport::Busy => (
            "another worker is running; it runs the queued jobs, and this --now, before it stops (see `git mirror status`)".to_owned(),
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
            for (name, why) in &s.skipped {
                parts.push(format!("{name} left alone ({why})"));
            }
            (format!("failed: {}", parts.join("; ")), true)
        }
    }
}

fn keygen(repo: Option<&Path>, force: bool) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let (path, public) = crate::keys::keygen(&repo, force)?;
    println!("{public}");
    eprintln!(
        "git-mirror: wrote {} (private) and {}.pub.",
        path.display(),
        path.display()
    );
    eprintln!("git-mirror: add the line above to the remote repository as a deploy key (with write access where this server pushes), then name it in mirror.toml:");
    eprintln!(
        "git-mirror:   [auth.NAME]\ngit-mirror:   ssh_key = \"mirror/keys/{}\"",
        crate::keys::DEPLOY_KEY
    );
    Ok(0)
}

fn host_keys(url: &str, repo: Option<&Path>, trust: bool) -> Result<i32, Failure> {
    // Showing fingerprints needs no repository; trusting them does.
    let repo = match (repository(repo), trust) {
        (Ok(repo), _) => Some(repo),
        (Err(e), true) => return Err(e.into()),
        (Err(_), false) => None,
    };
    let base = repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let url = RemoteUrl::parse(url, &base)
        .map_err(|why| anyhow::anyhow!("the URL {}: {why}", crate::url::mask(url)))?;
    // The remote's [auth] table, when mirror.toml has this URL, says which ssh_config
    // and known_hosts it uses.
    let config = repo.as_deref().and_then(|r| Config::load(r).ok().flatten());
    let auth = config.as_ref().and_then(|c| {
        let name = c
            .remotes()
            .into_iter()
            .find(|r| *r.url == url && r.auth.is_some())?
            .auth?;
        c.auth.get(name).cloned()
    });
    let ssh_config = auth.as_ref().and_then(|a| a.ssh_config.clone());
    let target = crate::keys::resolve(&url, ssh_config.as_deref())?;
    let keys = crate::keys::scan(&target)?;
    for key in &keys {
        for line in crate::keys::fingerprint_lines(key, &target.known_as) {
            println!("{line}");
        }
    }
    let Some(repo) = repo.filter(|_| trust) else {
        println!("not trusted yet: compare these with the fingerprints the server's administrator publishes, then run `git mirror host-keys --trust {url}` in the repository");
        return Ok(0);
    };
    let known_hosts = auth
        .and_then(|a| a.known_hosts)
        .unwrap_or_else(|| crate::auth::default_known_hosts(&repo));
    let count = crate::keys::trust(&repo, &known_hosts, &target, &keys)?;
    println!(
        "trusted: {count} host key{} of {} written to {}",
        if count == 1 { "" } else { "s" },
        target.known_as,
        known_hosts.display()
    );
    Ok(0)
}

/// How long `doctor` waits for each remote.
const DOCTOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn doctor(repo: Option<&Path>) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let mut problems = 0;
    println!("mirror.toml: {}: valid", config.path.display());
    let git = Git::new(&repo)?;
    for remote in config.remotes() {
        let (name, url, auth) = (remote.name, remote.url, remote.auth);
        println!("{name}: {url}");
        if url.has_embedded_secret() {
            println!("  note: the URL embeds a password or token; move it to an [auth] table (password_file or password_env) so it is not stored in the URL");
        }
        // End to end: list the remote's refs the way the mirroring will.
        let access = match crate::auth::Access::new(&repo, &config, url, auth) {
            Ok(access) => access,
            Err(e) => {
                problems += 1;
                println!("  problem: {e:#}");
                continue;
            }
        };
        match git.with_access(access).ls_remote(url, &[], DOCTOR_TIMEOUT) {
            Ok(listing) => println!("  reachable: {} refs", listing.refs.len()),
            Err(e @ crate::git::GitError::Spawn { .. }) => {
                problems += 1;
                println!("  problem: {:#}", anyhow::Error::from(e));
            }
            Err(e) => {
                problems += 1;
                println!("  problem: cannot list its refs: {e}");
            }
        }
    }
    if let Some(up) = &config.upstream {
        problems += doctor_upstream(&repo, up)?;
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
    for (path, age) in crate::reflock::stale(&repo, std::time::SystemTime::now()) {
        problems += 1;
        let age = humantime::format_duration(std::time::Duration::from_secs(age.as_secs()));
        if crate::reflock::is_private(&repo, &path) {
            println!(
                "{}: stale lock ({age} old) of git-mirror's own refs; the next `git mirror pull` removes it",
                path.display()
            );
        } else {
            println!(
                "{}: stale lock ({age} old): a git process was killed while it wrote refs, and every write to this ref fails until the file goes; check that no git process works on this repository (a push, gc or pull holds such a lock for moments), then remove it: rm -- {}",
                path.display(),
                crate::owner::shell_words(&[path.clone().into_os_string()])
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

/// What doctor finds about the upstream beyond reaching it; returns the problems found.
fn doctor_upstream(repo: &Path, up: &crate::config::Upstream) -> Result<usize> {
    let mut problems = 0;
    let view = crate::repo::Repo::open(repo)?;
    if !up.push_options.is_empty() && view.config_bool("receive.advertisePushOptions") != Some(true)
    {
        problems += 1;
        println!(
            "upstream.push_options: pushers cannot send push options here, because this repository does not advertise them; run `git -C {} config receive.advertisePushOptions true` (install.sh does)",
            repo.display()
        );
    }
    match crate::ledger::load(repo) {
        Err(damaged) => {
            problems += 1;
            println!("problem: {damaged}");
        }
        Ok(ledger) => {
            if !ledger.unforwarded.is_empty() {
                let names: Vec<&str> = ledger.unforwarded.keys().map(String::as_str).collect();
                println!(
                    "note: accepted here while the upstream was away, not yet forwarded: {}; the next pull run (`git mirror pull --now`) or the next push to each forwards it",
                    names.join(", ")
                );
            }
            let diverged = state::load(repo, crate::state::PULL_RECORD)
                .map(|s| s.divergent_refs)
                .unwrap_or_default();
            let unapplied = ledger.unapplied(&view.refs()?, &up.refs, &diverged);
            if !unapplied.is_empty() {
                problems += 1;
                println!(
                    "problem: the upstream holds pushes this repository did not apply: {}; run `git mirror pull --now {}`",
                    unapplied.join(", "),
                    repo.display()
                );
            }
        }
    }
    Ok(problems)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
