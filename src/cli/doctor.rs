//! `git-mirror doctor`: checks mirror.toml, each remote end to end, the upstream's
//! bookkeeping, the installed hooks and stale ref locks, and explains each problem.

use super::{load, repository, Failure};
use crate::git::Git;
use anyhow::Result;
use std::path::Path;

/// How long `doctor` waits for each remote.
const DOCTOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) fn doctor(repo: Option<&Path>) -> Result<i32, Failure> {
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
    problems += doctor_mode(&repo, config.upstream.is_some());
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
            let unapplied = crate::status::unapplied_refs(repo, &ledger, up)?;
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

/// The forwarding mode, and what keeps a repository from the mode it was meant for;
/// returns the problems found.
fn doctor_mode(repo: &Path, forwards: bool) -> usize {
    use crate::mode::{Mode, Why};
    let mut problems = 0;
    let shown = repo.display();
    match crate::mode::detect(repo) {
        Ok(Mode::TwoPhase) if forwards => {
            println!("forwarding: two-phase (proc-receive takes the local ref locks before the upstream is asked)");
            let view = crate::repo::Repo::open(repo).ok();
            if view.is_some_and(|v| v.config_string("core.filesRefLockTimeout").is_none()) {
                println!("  note: core.filesRefLockTimeout is not set, so a local writer meeting a forwarding push's lock fails at once instead of waiting; `git -C {shown} config core.filesRefLockTimeout 10000` (install.sh sets it)");
            }
        }
        // Nothing is forwarded: only a setting that makes git refuse pushes matters.
        Ok(Mode::TwoPhase) => {}
        Ok(Mode::PreReceive(why)) if !forwards && !matches!(why, Why::NoHook { .. }) => {}
        Ok(Mode::PreReceive(why)) => {
            let fix = match &why {
                Why::NotInstalled if forwards => Some(format!("note: a local update that fails after the upstream accepted is healed by the next pull; for two-phase forwarding, run `install.sh {shown}`")),
                Why::NotInstalled | Why::HostsHook(_) => None,
                Why::NotRouted { .. } => Some(format!("problem: pushes are forwarded in pre-receive mode although the proc-receive hook is installed; run `git -C {shown} config receive.procReceiveRefs refs` for two-phase (install.sh sets it), or `install.sh --mode pre-receive {shown}`")),
                Why::NoHook { .. } => Some(format!("problem: git refuses every push to those refs; run `install.sh {shown}` (links hooks/proc-receive), or remove the setting: `git -C {shown} config --unset-all receive.procReceiveRefs`")),
                Why::OldGit(_) => Some(format!("problem: the proc-receive hook is installed but this git never runs it; upgrade git, or run `install.sh --mode pre-receive {shown}`")),
            };
            println!("forwarding: pre-receive ({why})");
            if let Some(fix) = fix {
                problems += usize::from(fix.starts_with("problem"));
                println!("  {fix}");
            }
        }
        Err(e) => {
            problems += 1;
            println!("forwarding: cannot be told: {e:#}");
        }
    }
    let journals = crate::journal::left(repo);
    if !journals.orphans.is_empty() {
        problems += 1;
        println!(
            "problem: {} two-phase push{} whose process died before finishing (intent journals in mirror/journal/); the next push, `git mirror pull --now {shown}` or the sweep finishes them",
            journals.orphans.len(),
            if journals.orphans.len() == 1 { "" } else { "es" }
        );
    }
    for unreadable in &journals.unreadable {
        problems += 1;
        println!(
            "problem: an intent journal cannot be read: {unreadable}; look at it, then remove it"
        );
    }
    problems
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
