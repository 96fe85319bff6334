//! `git-mirror`, the companion command: its clap definition, `run`, and what every
//! subcommand shares; each subcommand's code and rendering is in its own file.
//! Errors map to exit codes: 1 failed, 2 usage or configuration error.

use crate::config::{Config, ConfigError};
use crate::git::Git;
use crate::pull::PullOptions;
use crate::push::WorkerOptions;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

// Output nobody reads is not an error: `git mirror doctor | head -1` must neither panic
// (std's println! does on a closed pipe) nor stop a sweep that is still pulling. These
// shadow std's macros for this module and the subcommands' modules, which are declared
// after them so that the macros are in scope there.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod doctor;
mod edit;
mod generate;
mod keys;
mod pause;
mod progress;
mod pull;
mod push;
mod resolve;
mod serve;
mod status;

#[derive(Parser, Debug)]
#[command(
    name = "git-mirror",
    version,
    about = "mirror-hooks companion: pull and push mirroring, status and diagnosis of a repository's mirrors",
    long_about = "mirror-hooks companion: pull and push mirroring, status and diagnosis of a repository's mirrors.\n\n\
        The hooks (pre-receive, post-receive) start the mirroring; this command runs the background work \
        and shows what was done. \
        Installed as `git-mirror` on PATH, it also runs as `git mirror …`."
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
        /// With --all: print a JSON array, one object per repository, instead of lines.
        #[arg(long, requires = "all", conflicts_with = "quiet")]
        json: bool,
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
        /// With --all: print a JSON array, one object per repository, instead of lines.
        #[arg(long, requires = "all")]
        json: bool,
        /// Internal: one repository of a sweep run by root, done as its owner; prints JSON.
        #[arg(long, hide = true, conflicts_with = "all")]
        sweep_one: bool,
        /// Internal (post-receive): wait for this process, the push's git, to end first.
        #[arg(long, hide = true, value_name = "PID")]
        after_pid: Option<u32>,
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
    /// Print the man page or a shell's completions (install.sh installs them).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: generate::Generate,
    },
    /// Add a mirror to mirror.toml, keeping its comments and layout.
    #[command(
        subcommand,
        long_about = "Add a mirror to mirror.toml (made if there is none), keeping the file's comments and layout. \
            The result is checked as the hooks check it before it is written, and replaces the file at once; \
            an addition that would make it invalid, or a mirror that is there already, is refused (exit 2) and \
            nothing changes."
    )]
    Add(edit::Add),
    /// Remove a mirror from mirror.toml, with its status record and queue.
    #[command(
        long_about = "Remove a mirror from mirror.toml, keeping the file's other comments and layout, and delete \
            its status record (mirror/state/NAME.json) and, for a push mirror, its queue (mirror/queue/NAME/). \
            The log (mirror/log) keeps its history, and says what was removed."
    )]
    Remove {
        /// A push mirror's name, or `upstream` or `pull`.
        name: String,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// List the mirrors of mirror.toml: name, direction, URL (credentials masked).
    List {
        /// Print a JSON array of {name, direction, url}.
        #[arg(long)]
        json: bool,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Pause mirroring for maintenance: nothing is pulled or pushed, and pushes to the
    /// upstream's refs are refused, until `resume`.
    #[command(
        long_about = "Pause the repository's mirroring for maintenance, until `git mirror resume`: push-mirror jobs \
            keep queueing but are not pushed, pulls (even --now) do nothing and say why, and pushes to the refs \
            forwarded to the upstream are refused with a maintenance message (accepting them would diverge from \
            the upstream). Pushes to other refs work as usual. `git mirror status` says PAUSED."
    )]
    Pause {
        /// Every bare repository with a mirror.toml under ROOT (instead of REPO).
        #[arg(long, value_name = "ROOT", conflicts_with = "repo")]
        all: Option<PathBuf>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// End a maintenance pause; jobs queued meanwhile are pushed at once.
    Resume {
        /// Every bare repository with a mirror.toml under ROOT (instead of REPO).
        #[arg(long, value_name = "ROOT", conflicts_with = "repo")]
        all: Option<PathBuf>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Run the schedule of every repository under ROOT, with webhooks and metrics over HTTP.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve {
        /// The directory whose bare repositories with a mirror.toml are served.
        root: PathBuf,
        /// The address to listen on (port 0: one the system picks; the first line of
        /// standard output says which).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
        listen: String,
        /// How many repositories to work on at once.
        #[arg(short = 'j', long, value_name = "N", default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
    },
}

/// An error with the exit code it deserves.
pub(crate) enum Failure {
    Failed(anyhow::Error),
    Config(ConfigError),
    /// A request that cannot be done as asked (exit 2), said in full.
    Usage(String),
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
            Command::Generate { .. } => return None,
            Command::Pull { all: Some(_), .. }
            | Command::Push { all: Some(_), .. }
            | Command::Pause { all: Some(_), .. }
            | Command::Resume { all: Some(_), .. }
            | Command::Serve { .. } => return None,
            Command::Add(add) => add.repo(),
            Command::Status { repo, .. }
            | Command::Pull { repo, .. }
            | Command::Push { repo, .. }
            | Command::Keygen { repo, .. }
            | Command::HostKeys { repo, .. }
            | Command::Resolve { repo, .. }
            | Command::Doctor { repo }
            | Command::Remove { repo, .. }
            | Command::List { repo, .. }
            | Command::Pause { repo, .. }
            | Command::Resume { repo, .. } => repo,
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
    // (`serve` runs no git itself: it stops its runs, which stop their git.)
    let serving = matches!(cli.command, Command::Serve { .. });
    if let Err(e) = (!serving)
        .then(crate::git::stop_git_on_termination)
        .transpose()
    {
        eprintln!("git-mirror: warning: {e:#}");
    }
    exit_code(dispatch(cli.command))
}

/// Runs one command.
fn dispatch(command: Command) -> Result<i32, Failure> {
    match command {
        Command::Status { json, repo } => status::status(repo.as_deref(), json),
        Command::Doctor { repo } => doctor::doctor(repo.as_deref()),
        Command::Add(add) => edit::add(add),
        Command::Remove { name, repo } => edit::remove(repo.as_deref(), &name),
        Command::List { json, repo } => edit::list(repo.as_deref(), json),
        Command::Pause { all, repo } => pause::pause(repo.as_deref(), all.as_deref(), true),
        Command::Resume { all, repo } => pause::pause(repo.as_deref(), all.as_deref(), false),
        Command::Serve { root, listen, jobs } => serve::serve(&root, &listen, usize::from(jobs)),
        Command::Resolve { name, take, repo } => resolve::resolve(repo.as_deref(), &name, take),
        Command::Keygen { force, repo } => keys::keygen(repo.as_deref(), force),
        Command::HostKeys { trust, url, repo } => keys::host_keys(&url, repo.as_deref(), trust),
        Command::Generate { what } => generate::generate(what),
        Command::Pull {
            now,
            all,
            jobs,
            quiet,
            json,
            sweep_one,
            catch_up,
            repo,
        } => {
            let options = PullOptions {
                now: now || catch_up,
                catch_up,
            };
            match all {
                Some(root) => {
                    let output = pull::Output { quiet, json };
                    pull::pull_all(&root, options, usize::from(jobs), output)
                }
                None if sweep_one => pull::pull_sweep_one(repo.as_deref(), options),
                None => pull::pull(repo.as_deref(), options),
            }
        }
        Command::Push {
            now,
            mirror,
            all,
            json,
            sweep_one,
            after_pid,
            repo,
        } => {
            // Before anything, even finding the repository (a git process).
            if let Some(pid) = after_pid {
                crate::process::wait_for_exit(pid, crate::push::AFTER_PUSH_WAIT);
            }
            let options = WorkerOptions { now, mirror };
            match all {
                Some(root) => push::push_all(&root, &options, json),
                None if sweep_one => push::push_sweep_one(repo.as_deref(), &options),
                None => push::push(repo.as_deref(), &options),
            }
        }
    }
}

/// The exit code of a command's result, with its error said.
fn exit_code(result: Result<i32, Failure>) -> i32 {
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
        Err(Failure::Usage(e)) => {
            eprintln!("git-mirror: error: {e}");
            2
        }
    }
}

pub(super) fn repository(repo: Option<&Path>) -> Result<PathBuf> {
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

pub(super) fn load(repo: &Path) -> Result<Config, Failure> {
    match Config::load(repo) {
        Ok(Some(config)) => Ok(config),
        Ok(None) => Err(Failure::Failed(anyhow::anyhow!(
            "{} has no mirror.toml; run install.sh on it to get a commented starter file",
            repo.display()
        ))),
        Err(e) => Err(Failure::Config(e)),
    }
}
