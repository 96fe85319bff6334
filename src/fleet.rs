//! Many repositories under one root, for `--all` runs from cron or a systemd timer:
//! finding the bare repositories that have a `mirror.toml`, and what sweeping one of
//! them does, returned as data (`cli` runs the sweep N at a time and renders it).

use crate::config::{Config, ConfigError};
use crate::offline::Forwarding;
use crate::pull::{PullOptions, PullReport};
use crate::push::{WorkerOptions, WorkerReport};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// What sweeping one repository came to.
#[derive(Debug)]
pub enum Swept<T> {
    /// Its `mirror.toml` went away after the repositories were listed: nothing to do.
    Gone,
    /// Its `mirror.toml` is invalid: nothing was done.
    Invalid(ConfigError),
    /// What ran.
    Ran(T),
}

/// What `pull --all` did in one repository, in the order it did it.
#[derive(Debug)]
pub struct PullSweep {
    /// Without a `[pull]` table: forwarding the refs accepted here while the upstream
    /// was away (a pull run does that itself).
    pub forwarding: Option<Result<Forwarding>>,
    /// With a `[pull]` table: the pull (when due, or at once with `--now`).
    pub pull: Option<Result<PullReport>>,
    /// With push mirrors: their workers, which push what is queued and due.
    pub push: Option<Result<Vec<(String, WorkerReport)>>>,
}

/// One repository of `pull --all`: pulls it if due, else forwards what was accepted
/// while the upstream was away, and drains its overdue push-mirror queues.
pub fn sweep_pull(repo: &Path, options: PullOptions) -> Swept<PullSweep> {
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return Swept::Gone,
        Err(e) => return Swept::Invalid(e),
    };
    // Pushes a dead proc-receive left half done come first: the pull judges their refs.
    crate::unfinished::finish(repo, &config, &mut |_| {});
    // Fields are evaluated in order: forward or pull first, then push.
    Swept::Ran(PullSweep {
        // Forwarding pushes to the upstream: not while paused (a pull run says so itself).
        forwarding: (config.pull.is_none() && !crate::pause::is_paused(repo))
            .then(|| crate::offline::forward(repo, &config)),
        pull: config
            .pull
            .is_some()
            .then(|| crate::pull::run(repo, &config, options)),
        push: (!config.push.is_empty())
            .then(|| crate::push::run(repo, &config, &WorkerOptions::default())),
    })
}

/// One repository of `push --all`: runs its push-mirror workers (or the one named in
/// `options`; a repository without a mirror of that name runs none).
pub fn sweep_push(
    repo: &Path,
    options: &WorkerOptions,
) -> Swept<Result<Vec<(String, WorkerReport)>>> {
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return Swept::Gone,
        Err(e) => return Swept::Invalid(e),
    };
    if options
        .mirror
        .as_ref()
        .is_some_and(|m| !config.push.iter().any(|p| &p.name == m))
    {
        return Swept::Ran(Ok(Vec::new()));
    }
    Swept::Ran(crate::push::run(repo, &config, options))
}

/// Every bare repository under `root` (or `root` itself) with a `mirror.toml`, sorted.
/// Repositories are not descended into, and symlinked directories are not followed.
pub fn repositories(root: &Path) -> Result<Vec<PathBuf>> {
    // Absolute paths: hooks and workers run with the repository as their directory.
    let root =
        &std::fs::canonicalize(root).with_context(|| format!("cannot find {}", root.display()))?;
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        if is_bare_repository(&dir) {
            if dir.join(crate::config::FILE_NAME).is_file() {
                found.push(dir);
            }
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if &dir == root => {
                return Err(e).with_context(|| format!("cannot list {}", root.display()))
            }
            // A directory we may not read is not ours to mirror.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_bare_repository(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare_repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["objects", "refs"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        dir
    }

    #[test]
    fn a_repository_whose_mirror_toml_went_away_is_left_alone() {
        let repo = bare_repository();
        let swept = sweep_pull(repo.path(), PullOptions::default());
        assert!(matches!(swept, Swept::Gone), "{swept:?}");
        let swept = sweep_push(repo.path(), &WorkerOptions::default());
        assert!(matches!(swept, Swept::Gone), "{swept:?}");
    }

    #[test]
    fn an_invalid_mirror_toml_runs_nothing_and_says_where() {
        let repo = bare_repository();
        std::fs::write(repo.path().join(crate::config::FILE_NAME), "[pull\n").unwrap();
        let Swept::Invalid(e) = sweep_pull(repo.path(), PullOptions::default()) else {
            panic!("an invalid mirror.toml was swept");
        };
        assert!(e.to_string().contains("mirror.toml"), "{e}");
        assert!(matches!(
            sweep_push(repo.path(), &WorkerOptions::default()),
            Swept::Invalid(_)
        ));
    }

    #[test]
    fn a_push_sweep_for_a_mirror_it_does_not_have_runs_none() {
        let repo = bare_repository();
        std::fs::write(repo.path().join(crate::config::FILE_NAME), "").unwrap();
        let options = WorkerOptions {
            mirror: Some("elsewhere".to_owned()),
            ..WorkerOptions::default()
        };
        match sweep_push(repo.path(), &options) {
            Swept::Ran(Ok(reports)) => assert!(reports.is_empty(), "{reports:?}"),
            other => panic!("{other:?}"),
        }
        assert!(repositories(repo.path()).unwrap().len() == 1);
    }
}
