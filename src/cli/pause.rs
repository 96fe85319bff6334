//! `git-mirror pause` / `resume`: a repository's maintenance pause (`crate::pause`), for
//! one repository or every one under a root, each done as the repository's owner.

use super::{repository, Failure};
use crate::queue::Queue;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::SystemTime;

/// `pause` (`on`) or `resume` of one repository, or of every one under `all`.
pub(super) fn pause(repo: Option<&Path>, all: Option<&Path>, on: bool) -> Result<i32, Failure> {
    let Some(root) = all else {
        let repo = repository(repo)?;
        println!("{}", switch(&repo, on)?);
        return Ok(0);
    };
    let repos = crate::fleet::repositories(root)?;
    let mut failed = 0;
    for repo in &repos {
        let done = if crate::owner::foreign_owner(repo).is_some() {
            switch_as_owner(repo, on)
        } else {
            switch(repo, on)
        };
        match done {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("git-mirror: error: {}: {e:#}", repo.display());
            }
        }
    }
    println!(
        "{} repositories with mirror.toml under {}, {} {}{}",
        repos.len(),
        root.display(),
        repos.len() - failed,
        if on { "paused" } else { "resumed" },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(i32::from(failed > 0))
}

/// Pauses or resumes `repo`; the line that says so.
fn switch(repo: &Path, on: bool) -> Result<String> {
    let now = SystemTime::now();
    if on {
        crate::pause::pause(repo)?;
        crate::state::log(repo, now, "mirroring paused (git mirror pause)");
        return Ok(format!(
            "{}: paused: nothing is pulled or pushed, and pushes to the upstream's refs are refused, until `git mirror resume`",
            repo.display()
        ));
    }
    crate::pause::resume(repo)?;
    crate::state::log(repo, now, "mirroring resumed (git mirror resume)");
    let queued = queued_jobs(repo);
    if queued > 0 {
        // What queued meanwhile goes now, not at the next sweep.
        crate::process::spawn_detached(repo, &["push"])?;
        return Ok(format!(
            "{}: resumed; the push-mirror worker was started for {queued} queued job{}",
            repo.display(),
            if queued == 1 { "" } else { "s" }
        ));
    }
    Ok(format!("{}: resumed", repo.display()))
}

/// Jobs queued for the push mirrors of `repo` (none when mirror.toml cannot be read).
fn queued_jobs(repo: &Path) -> usize {
    let Ok(Some(config)) = crate::config::Config::load(repo) else {
        return 0;
    };
    config
        .push
        .iter()
        .map(|m| Queue::new(repo, &m.name).pending())
        .sum()
}

/// [`switch`] of a repository that belongs to another user, done as that user by a
/// `git-mirror pause|resume REPO` of its own (which becomes the owner first).
fn switch_as_owner(repo: &Path, on: bool) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let out = std::process::Command::new(&exe)
        .arg(if on { "pause" } else { "resume" })
        .arg(repo)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "failed as the repository's owner ({}): {}",
            out.status,
            said.trim().trim_start_matches("git-mirror: error: ")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}
