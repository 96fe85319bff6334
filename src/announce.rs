//! Telling the rest of the server about updates made here other than by a push (a
//! pull, a two-phase recovery), as a push would: the push mirrors are queued and the
//! chained post-receive hooks run.

use crate::refs::RefUpdate;
use crate::state;
use std::path::Path;
use std::time::SystemTime;

/// Tells the rest of the server about `applied`, as if it had been pushed: queue the
/// push mirrors and run the chained post-receive hooks. `who` starts each log line.
/// Returns the hooks that failed.
pub fn announce(repo: &Path, applied: &[RefUpdate], who: &str) -> Vec<String> {
    let now = SystemTime::now();
    let mut said = Vec::new();
    crate::queue::enqueue_push_mirrors(repo, applied, &mut |line: &str| said.push(line.to_owned()));
    for line in said.iter().filter(|l| l.contains("warning")) {
        state::log(repo, now, &format!("{who}: {line}"));
    }
    let input: String = applied.iter().map(|u| format!("{u}\n")).collect();
    // Where git looks for hooks, as for the `update` hook the proxy runs.
    let dir = crate::git::Git::new(repo)
        .and_then(|git| git.hook_path("post-receive.d"))
        .unwrap_or_else(|_| repo.join("hooks").join("post-receive.d"));
    match crate::chain::run(repo, &dir, input.as_bytes(), false) {
        Ok(failures) => failures
            .into_iter()
            .map(|f| {
                let line = format!("{} ({})", f.program.display(), f.status);
                state::log(repo, now, &format!("{who}: chained hook failed: {line}"));
                line
            })
            .collect(),
        Err(e) => {
            state::log(repo, now, &format!("{who}: chained hooks not run: {e:#}"));
            vec![format!("{e:#}")]
        }
    }
}
