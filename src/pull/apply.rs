//! Applying a plan: one ref transaction guarded by the values read (retried when a
//! concurrent push moved a ref), else ref by ref; clashing names are set aside and noted.

use super::plan::{plan, Guards};
use super::update::matching;
use super::{PullSummary, LOCAL_TIMEOUT};
use crate::config::Pull;
use crate::git::Git;
use crate::refs::{self, RefUpdate};
use crate::repo::Repo;
use crate::state;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

/// How often one run reads the local refs again and retries the transaction when a
/// concurrent push moved one of them.
const APPLY_ATTEMPTS: u32 = 3;

/// The `update-ref --stdin` line of one update, with the old value as the condition.
pub(super) fn command(u: &RefUpdate) -> String {
    match u.kind() {
        refs::UpdateKind::Create => format!("create {} {}", u.name, u.new),
        refs::UpdateKind::Delete => format!("delete {} {}", u.name, u.old),
        refs::UpdateKind::Update => format!("update {} {} {}", u.name, u.new, u.old),
    }
}

/// Applies the plan in one transaction, planned first from `here` (the refs the run
/// read before its fetch). When a concurrent push moved a ref after we read it, the
/// transaction fails as a whole; read again and plan again, so the push wins and its
/// ref is judged anew (usually: now diverged, or already equal). When nothing moved and
/// it still fails, some ref cannot take its update (a name that clashes with an existing
/// ref, say): then each ref goes alone, so the others arrive.
///
/// Returns the refs `pull.refs` matches as the applied updates left them (what the
/// last plan read, with its updates), or `None` when it could not plan.
///
/// One transaction for all, however many: measured on ext4 with 10 000 refs, chunks of
/// 1 000 (or 100) cost as much or more, and would let a killed run leave a pull half
/// applied.
pub(super) fn apply(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    upstream: &BTreeMap<String, String>,
    guards: &Guards,
    here: BTreeMap<String, String>,
    summary: &mut PullSummary,
) -> Option<BTreeMap<String, String>> {
    let mut previous: Option<Vec<RefUpdate>> = None;
    // Planning from refs read earlier is safe: the transaction checks every old value.
    let mut first = Some(here);
    for _ in 0..APPLY_ATTEMPTS {
        let planned = Repo::open(repo).and_then(|view| {
            let here = match first.take() {
                Some(here) => here,
                None => view.refs()?,
            };
            let local = matching(&here, pull);
            // Read after the refs: the proxy records a ref it accepts offline before git
            // moves it, so a ref seen moved here is seen recorded too.
            let unforwarded = crate::ledger::load(repo)?.unforwarded.into_keys().collect();
            let guards = Guards {
                unforwarded,
                ..guards.clone()
            };
            let ancestor = |a: &str, d: &str| view.is_ancestor(a, d).unwrap_or(false);
            Ok((
                plan(&local, upstream, pull, &guards, &ancestor),
                here,
                local,
            ))
        });
        let (mut plan, here, local) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                summary.fail(format!("{e:#}"), None);
                return None;
            }
        };
        summary.divergent = std::mem::take(&mut plan.divergent);
        summary.unchanged = plan.unchanged;
        // A ref whose name clashes with one here cannot arrive whatever we try: it is
        // reported, and must not fail the transaction of the others.
        summary.unappliable = set_aside_clashes(&mut plan.updates, &here);
        if plan.updates.is_empty() {
            return Some(local);
        }
        if previous.as_ref() == Some(&plan.updates) {
            apply_one_by_one(repo, git, plan.updates, summary);
            return Some(applied_to(local, &summary.applied));
        }
        let commands: Vec<String> = plan.updates.iter().map(command).collect();
        let out = match update_refs(repo, git, &commands, REFLOG_MESSAGE) {
            Ok(out) => out,
            Err(e) => {
                summary.fail(format!("{e:#}"), None);
                return None;
            }
        };
        if out.success() {
            summary.applied = plan.updates;
            return Some(applied_to(local, &summary.applied));
        }
        previous = Some(plan.updates);
    }
    summary.fail(
        format!("cannot update the local refs: they kept changing under concurrent pushes ({APPLY_ATTEMPTS} tries); the next run tries again"),
        None,
    );
    None
}

/// `local` with `applied` made: what the refs are after a transaction, without reading
/// them all again.
fn applied_to(
    mut local: BTreeMap<String, String>,
    applied: &[RefUpdate],
) -> BTreeMap<String, String> {
    for u in applied {
        if u.kind() == refs::UpdateKind::Delete {
            local.remove(&u.name);
        } else {
            local.insert(u.name.clone(), u.new.clone());
        }
    }
    local
}

const REFLOG_MESSAGE: &str = "mirror-hooks: pull from upstream";

/// One local ref transaction, with a durable record of the lock files it may create
/// written first, so that the next run can remove them if this one is killed.
pub(super) fn update_refs(
    repo: &Path,
    git: &Git,
    commands: &[String],
    message: &str,
) -> Result<crate::git::RunOutput> {
    let mut writing = crate::reflock::before(repo, crate::reflock::locks_for(repo, commands))?;
    let out = git.update_refs_noting(commands, message, LOCAL_TIMEOUT, &mut |pid| {
        writing.started(pid)
    });
    writer_ended(repo, writing, &out);
    out
}

/// A git that exited (even with an error) removed its lock files; one that was killed
/// (by a signal, or at its deadline) may not have: then clean up after it now, as the
/// next run would.
pub(super) fn writer_ended(
    repo: &Path,
    writing: crate::reflock::Writing,
    out: &Result<crate::git::RunOutput>,
) {
    let exited = match out {
        Ok(out) => !out.timed_out && out.code().is_some(),
        Err(_) => true,
    };
    if exited {
        writing.done();
        return;
    }
    for line in crate::reflock::recover(repo).said {
        state::log(repo, SystemTime::now(), &format!("pull: {line}"));
    }
}

/// Applies each update in its own transaction, deletions first (so `a` can give way to
/// `a/b`); records what went through and what did not. A ref whose name clashes with
/// one here is reported, not a failure; refs that failed for the same reason are told
/// once, with their count and a few names.
fn apply_one_by_one(
    repo: &Path,
    git: &Git,
    mut updates: Vec<RefUpdate>,
    summary: &mut PullSummary,
) {
    updates.sort_by_key(|u| u.kind() != refs::UpdateKind::Delete);
    let mut failed = Vec::new();
    for u in updates {
        match update_refs(repo, git, &[command(&u)], REFLOG_MESSAGE) {
            Ok(out) if out.success() => summary.applied.push(u),
            // The ref's own name in git's words (and in a lock file's path) would make
            // each ref's complaint differ; without it, a shared cause groups.
            Ok(out) => {
                let why = out.complaint().replace(&u.name, "<ref>");
                failed.push((u, why));
            }
            Err(e) => failed.push((u, format!("{e:#}"))),
        }
    }
    if failed.is_empty() {
        return;
    }
    let here = Repo::open(repo)
        .and_then(|view| view.refs())
        .unwrap_or_default();
    let mut updates: Vec<RefUpdate> = failed.iter().map(|(u, _)| u.clone()).collect();
    let clashing = set_aside_clashes(&mut updates, &here);
    let clashed: BTreeSet<&str> = clashing.iter().map(|(n, _)| n.as_str()).collect();
    let mut by_cause: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (u, why) in failed
        .iter()
        .filter(|(u, _)| !clashed.contains(u.name.as_str()))
    {
        by_cause
            .entry(why.as_str())
            .or_default()
            .push(u.name.as_str());
    }
    summary.unappliable.extend(clashing);
    if by_cause.is_empty() {
        return;
    }
    let causes: Vec<String> = by_cause
        .iter()
        .map(|(why, names)| format!("{}: {why}", some_names(names)))
        .collect();
    summary.fail(
        format!("some refs could not be updated here: {}", causes.join("; ")),
        None,
    );
}

/// `refs/heads/a`, or `3 refs (refs/heads/a, refs/heads/b, refs/heads/c)`, or
/// `1000 refs (refs/heads/a, refs/heads/b, refs/heads/c and 997 more)`.
fn some_names(names: &[&str]) -> String {
    const SHOWN: usize = 3;
    match names {
        [one] => (*one).to_owned(),
        _ if names.len() <= SHOWN => format!("{} refs ({})", names.len(), names.join(", ")),
        _ => format!(
            "{} refs ({} and {} more)",
            names.len(),
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        ),
    }
}

/// Takes out of `updates` the creations that cannot happen here because their name
/// clashes with a ref here that no update of `updates` deletes (`a/b` while `a` exists,
/// or `a` while `a/b` exists: a ref cannot be both a file and a directory); returns
/// them with why. A clash with a ref that `updates` deletes stays: deleted first, the
/// creation follows.
fn set_aside_clashes(
    updates: &mut Vec<RefUpdate>,
    here: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let deleted: BTreeSet<String> = updates
        .iter()
        .filter(|u| u.kind() == refs::UpdateKind::Delete)
        .map(|u| u.name.clone())
        .collect();
    let staying = |name: &str| here.contains_key(name) && !deleted.contains(name);
    let mut set_aside = Vec::new();
    updates.retain(|u| {
        if u.kind() != refs::UpdateKind::Create {
            return true;
        }
        let parent = u
            .name
            .match_indices('/')
            .map(|(i, _)| &u.name[..i])
            .find(|prefix| staying(prefix));
        let below = format!("{}/", u.name);
        let child = here
            .range(below.clone()..)
            .take_while(|(n, _)| n.starts_with(&below))
            .map(|(n, _)| n.as_str())
            .find(|n| !deleted.contains(*n));
        let why = match (parent, child) {
            (Some(p), _) => format!("{p} exists here, so {} cannot; delete or rename {p} here to let it in (or set prune = true if the upstream deleted it)", u.name),
            (None, Some(c)) => format!("{c} exists here, so {} cannot; delete or rename {c} here to let it in (or set prune = true if the upstream deleted it)", u.name),
            (None, None) => return true,
        };
        set_aside.push((u.name.clone(), why));
        false
    });
    set_aside
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
            .collect()
    }

    #[test]
    fn creations_that_clash_with_a_ref_here_are_set_aside() {
        let here = refs(&[
            ("refs/heads/foo", A),
            ("refs/heads/x/y", A),
            ("refs/heads/gone", A),
        ]);
        let update = |name: &str, old: &str, new: &str| RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        };
        let zero = "0".repeat(40);
        let mut updates = vec![
            update("refs/heads/foo/bar", &zero, B),
            update("refs/heads/x", &zero, B),
            update("refs/heads/gone/new", &zero, B),
            update("refs/heads/gone", A, &zero),
            update("refs/heads/fine", &zero, B),
        ];
        let aside = set_aside_clashes(&mut updates, &here);
        assert_eq!(
            aside.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["refs/heads/foo/bar", "refs/heads/x"]
        );
        assert!(aside[1].1.starts_with("refs/heads/x/y exists here"));
        // A clash with a ref the same pull deletes stays: deleted first, created after.
        assert_eq!(
            updates.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["refs/heads/gone/new", "refs/heads/gone", "refs/heads/fine"]
        );
    }

    #[test]
    fn a_shared_failure_names_a_few_refs_and_the_count() {
        assert_eq!(some_names(&["a"]), "a");
        assert_eq!(some_names(&["a", "b"]), "2 refs (a, b)");
        let many: Vec<String> = (0..1000).map(|i| format!("refs/heads/b{i:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            some_names(&many),
            "1000 refs (refs/heads/b0000, refs/heads/b0001, refs/heads/b0002 and 997 more)"
        );
    }
}
