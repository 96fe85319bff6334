//! Many repositories under one root: finding the bare repositories that have a
//! `mirror.toml`, for `--all` runs from cron or a systemd timer.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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
