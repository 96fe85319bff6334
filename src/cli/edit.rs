//! `git-mirror add` / `remove` / `list`: mirror.toml edited from the command line
//! (`crate::config::edit` does the editing), and what a removed mirror leaves behind
//! (its status record and queue; the log keeps its history) cleared away.

use super::{repository, Failure};
use crate::config::edit::{self, Addition, EditError, PruneSetting};
use crate::config::Config;
use crate::queue::Queue;
use crate::status::Direction;
use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What `git-mirror add` adds.
#[derive(Subcommand, Debug)]
pub enum Add {
    /// Forward pushes here to an authoritative upstream first ([upstream]).
    Upstream {
        /// The upstream's URL (https://, ssh://, git://, host:path, or a path).
        url: String,
        /// A ref pattern to forward (repeat for more; default: every branch and tag).
        #[arg(long = "refs", value_name = "PATTERN")]
        refs: Vec<String>,
        /// The [auth.NAME] table with the upstream's credentials.
        #[arg(long, value_name = "NAME")]
        auth: Option<String>,
        /// How long a forwarded push may take (e.g. 60s).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// When the upstream cannot be reached: refuse the push, or accept it here.
        #[arg(long, value_name = "WHAT", value_parser = ["reject", "accept"])]
        on_unreachable: Option<String>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Pull from the upstream (or URL) on a schedule ([pull]).
    #[command(
        long_about = "Pull from the upstream (or URL) on a schedule ([pull]). Without URL it pulls from the \
            [upstream] url. A single argument is the URL: to name the repository without a URL, run it in the \
            repository (or with `git --git-dir=REPO mirror add pull`)."
    )]
    Pull {
        /// Where to pull from (default: the [upstream] url).
        url: Option<String>,
        /// How long after a success the next pull is due (e.g. 30m), or "auto".
        #[arg(long, value_name = "DURATION")]
        interval: Option<String>,
        /// Delete refs here that the upstream deleted (true), or everything it lacks (all).
        #[arg(long, value_name = "WHAT", value_parser = prune_setting)]
        prune: Option<PruneSetting>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
    /// Push everything accepted here to one more mirror ([[push]]).
    Push {
        /// The mirror's name (its status record, queue and `--mirror NAME`).
        name: String,
        /// The mirror's URL.
        url: String,
        /// A ref pattern to push (repeat for more; default: every branch and tag).
        #[arg(long = "refs", value_name = "PATTERN")]
        refs: Vec<String>,
        /// Delete refs on the mirror deleted here (true), or all it has beyond ours (all).
        #[arg(long, value_name = "WHAT", value_parser = prune_setting)]
        prune: Option<PruneSetting>,
        /// The [auth.NAME] table with the mirror's credentials.
        #[arg(long, value_name = "NAME")]
        auth: Option<String>,
        /// The bare repository (default: the repository of the current directory).
        repo: Option<PathBuf>,
    },
}

fn prune_setting(text: &str) -> Result<PruneSetting, String> {
    match text {
        "true" => Ok(PruneSetting::True),
        "false" => Ok(PruneSetting::False),
        "all" => Ok(PruneSetting::All),
        _ => Err("expected true, false or all".to_owned()),
    }
}

impl Add {
    /// The repository it was given, if any.
    pub(super) fn repo(&self) -> &Option<PathBuf> {
        match self {
            Add::Upstream { repo, .. } | Add::Pull { repo, .. } | Add::Push { repo, .. } => repo,
        }
    }

    fn into_addition(self) -> Addition {
        match self {
            Add::Upstream {
                url,
                refs,
                auth,
                timeout,
                on_unreachable,
                ..
            } => Addition::Upstream {
                url,
                refs,
                auth,
                timeout,
                on_unreachable,
            },
            Add::Pull {
                url,
                interval,
                prune,
                ..
            } => Addition::Pull {
                url,
                interval,
                prune,
            },
            Add::Push {
                name,
                url,
                refs,
                prune,
                auth,
                ..
            } => Addition::Push {
                name,
                url,
                refs,
                prune,
                auth,
            },
        }
    }
}

/// A refused edit is a configuration error (exit 2); a failure to read or write, not.
fn refused(e: EditError) -> Failure {
    match e {
        EditError::Io { .. } => Failure::Failed(anyhow::Error::new(e)),
        _ => Failure::Usage(e.to_string()),
    }
}

pub(super) fn add(add: Add) -> Result<i32, Failure> {
    let one_argument = matches!(
        &add,
        Add::Pull {
            url: Some(_),
            repo: None,
            ..
        }
    );
    let repo = repository(add.repo().as_deref()).map_err(|e| match one_argument {
        true => Failure::Usage(format!(
            "{e:#}; `git mirror add pull` takes a single argument as the URL: give URL and REPO, or run it in the repository"
        )),
        false => Failure::Failed(e),
    })?;
    let addition = add.into_addition();
    if let Addition::Pull { url: Some(url), .. } = &addition {
        refuse_itself(&repo, url)?;
    }
    let config = edit::add(&repo, &addition).map_err(refused)?;
    let name = addition.name();
    let shown = entry(&config, name).map(|e| e.url).unwrap_or_default();
    crate::state::log(
        &repo,
        SystemTime::now(),
        &format!("added mirror {name} ({shown}) to mirror.toml (git mirror add)"),
    );
    println!("added {name} ({shown}) to {}", config.path.display());
    Ok(0)
}

/// `git mirror add pull REPO` meant as the repository would pull from itself.
fn refuse_itself(repo: &Path, url: &str) -> Result<(), Failure> {
    let same = std::fs::canonicalize(url)
        .ok()
        .zip(std::fs::canonicalize(repo).ok())
        .is_some_and(|(a, b)| a == b);
    if same {
        return Err(Failure::Usage(format!(
            "{url} is this repository itself, which cannot pull from itself; to name the repository, run `git mirror add pull [URL]` in it (or with `git --git-dir={url} mirror add pull`)"
        )));
    }
    Ok(())
}

pub(super) fn remove(repo: Option<&Path>, name: &str) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let old = edit::remove(&repo, name).map_err(refused)?;
    let shown = entry(&old, name).map(|e| e.url).unwrap_or_default();
    let mut cleared = vec![forget_state(&repo, name)?];
    if old.push.iter().any(|m| m.name == name) {
        cleared.push(forget_queue(&repo, name)?);
    }
    let cleared: Vec<String> = cleared.into_iter().flatten().collect();
    let line = format!(
        "removed mirror {name} ({shown}) from mirror.toml{}",
        if cleared.is_empty() {
            String::new()
        } else {
            format!(", and its {}", cleared.join(" and "))
        }
    );
    crate::state::log(
        &repo,
        SystemTime::now(),
        &format!("{line} (git mirror remove)"),
    );
    println!("{line}");
    Ok(0)
}

/// Deletes the status record of `name`; what was deleted, if anything.
fn forget_state(repo: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let path = crate::state::state_dir(repo).join(format!("{name}.json"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some("status record".to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// Deletes the queue of push mirror `name` once no worker runs it; what was deleted.
fn forget_queue(repo: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let queue = Queue::new(repo, name);
    let pending = queue.pending();
    let dir = crate::state::mirror_dir(repo).join("queue").join(name);
    if !dir.exists() {
        return Ok(None);
    }
    let Some(lock) = lock_queue(&queue)? else {
        eprintln!(
            "git-mirror: warning: a worker of {name} is running; delete {} once it has finished",
            dir.display()
        );
        return Ok(None);
    };
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    drop(lock);
    Ok(Some(format!(
        "queue ({pending} job{})",
        if pending == 1 { "" } else { "s" }
    )))
}

/// The queue's worker lock, waited for a little: a worker that only looks (nothing due)
/// lets go at once; `None` when one is still pushing.
fn lock_queue(queue: &Queue) -> anyhow::Result<Option<crate::queue::WorkerLock>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(lock) = queue.try_lock()? {
            return Ok(Some(lock));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One mirror in `git-mirror list --json`.
#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    direction: Direction,
    /// Credentials masked.
    url: String,
}

fn entries(config: &Config) -> Vec<Entry> {
    let direction = |name: &str| match name {
        crate::state::UPSTREAM_RECORD if config.upstream.is_some() => Direction::Proxy,
        crate::state::PULL_RECORD if config.pull.is_some() => Direction::Pull,
        _ => Direction::Push,
    };
    config
        .remotes()
        .iter()
        .map(|r| Entry {
            name: r.name.to_owned(),
            direction: direction(r.name),
            url: r.url.to_string(),
        })
        .collect()
}

fn entry(config: &Config, name: &str) -> Option<Entry> {
    entries(config).into_iter().find(|e| e.name == name)
}

pub(super) fn list(repo: Option<&Path>, json: bool) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = match Config::load(&repo) {
        Ok(config) => config,
        Err(e) => return Err(Failure::Config(e)),
    };
    let entries = config.as_ref().map(entries).unwrap_or_default();
    if json {
        let text = serde_json::to_string_pretty(&entries).map_err(anyhow::Error::from)?;
        println!("{text}");
        return Ok(0);
    }
    if entries.is_empty() {
        println!(
            "no mirrors are configured in {}",
            repo.join(crate::config::FILE_NAME).display()
        );
    }
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &entries {
        println!(
            "{:<width$}  {:<9}  {}",
            e.name,
            e.direction.as_str(),
            crate::text::printable(&e.url)
        );
    }
    Ok(0)
}
