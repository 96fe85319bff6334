//! Telling the rest of the server about pulled updates, as a push would: the push
//! mirrors are queued and the chained post-receive hooks run.

use crate::refs::RefUpdate;
use crate::repo::Repo;
use crate::state;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Tells the rest of the server about pulled updates, as if they had been pushed: queue
/// the push mirrors and run the chained post-receive hooks. Returns the hooks that failed.
pub(super) fn announce(repo: &Path, applied: &[RefUpdate]) -> Vec<String> {
    let now = SystemTime::now();
    let mut said = Vec::new();
    crate::queue::enqueue_push_mirrors(repo, applied, &mut |line: &str| said.push(line.to_owned()));
    for line in said.iter().filter(|l| l.contains("warning")) {
        state::log(repo, now, &format!("pull: {line}"));
    }
    let input: String = applied.iter().map(|u| format!("{u}\n")).collect();
    let dir = hooks_dir(repo).join("post-receive.d");
    match crate::chain::run(repo, &dir, input.as_bytes(), false) {
        Ok(failures) => failures
            .into_iter()
            .map(|f| {
                let line = format!("{} ({})", f.program.display(), f.status);
                state::log(repo, now, &format!("pull: chained hook failed: {line}"));
                line
            })
            .collect(),
        Err(e) => {
            state::log(repo, now, &format!("pull: chained hooks not run: {e:#}"));
            vec![format!("{e:#}")]
        }
    }
}

/// The repository's hooks directory: `core.hooksPath` when set, else `hooks/`.
fn hooks_dir(repo: &Path) -> PathBuf {
    let configured = Repo::open(repo)
        .ok()
        .and_then(|view| view.config_string("core.hooksPath"));
    match configured {
        Some(path) => repo.join(path),
        None => repo.join("hooks"),
    }
}
