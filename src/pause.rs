//! Maintenance pause of one repository's mirroring (`git mirror pause` / `resume`): a
//! marker file in `mirror/`. While it is there, push-mirror jobs queue but are not
//! pushed, pulls do nothing, and pushes to allowlisted refs are refused.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const MARKER: &str = "paused";

/// The few words said wherever the pause stops something (beside a refused ref, in a
/// worker's or a pull's report).
pub const REASON: &str = "mirroring is paused for maintenance";

fn marker(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join(MARKER)
}

/// True while the repository's mirroring is paused.
pub fn is_paused(repo: &Path) -> bool {
    // Fail closed: only a marker known to be absent means "not paused" (a directory this
    // process may not search is not proof).
    match std::fs::symlink_metadata(marker(repo)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Pauses the repository's mirroring; pausing a paused repository changes nothing.
pub fn pause(repo: &Path) -> Result<()> {
    let path = marker(repo);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
}

/// Resumes the repository's mirroring; resuming one not paused changes nothing.
pub fn resume(repo: &Path) -> Result<()> {
    let path = marker(repo);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
