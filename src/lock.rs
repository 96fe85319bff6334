//! Run locks: an OS file lock per job kind (a push mirror's worker, the pull), so exactly
//! one process runs it at a time. The kernel drops the lock when its holder dies, so a
//! killed run never leaves a stuck "being updated" slot behind.

use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Held while a run is in progress; released on drop or when the process dies.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// Takes the lock at `path` (creating the file and its directory), or `None` when
    /// another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Takes the lock at `path`, waiting while another process holds it.
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Lock { file })
    }

    /// Writes our pid into the lock file, so a person can see who holds it.
    pub fn record_owner(&self) {
        let mut file = &self.file;
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
    }
}

/// Opens (creating it and its directory) the file a lock is taken on.
fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Where the lock of the pull of `repo` lives.
pub fn pull_lock(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join("pull.lock")
}
