//! Refs accepted while the upstream was away (`on_unreachable = "accept"`): the next pull
//! forwards each with a lease on what it last held, or reports it diverged (to `resolve`).

use crate::config::{Config, Upstream};
use crate::git::{Git, GitError, LeasedUpdate, PushSettings};
use crate::ledger::{self, Unforwarded};
use crate::porcelain::{PushReport, Reason};
use crate::repo::Repo;
use crate::state;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// What forwarding the refs accepted offline came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Now on the upstream (forwarded, or found there already).
    pub forwarded: Vec<String>,
    /// Still only here: the upstream moved meanwhile (or what it held is unknown); a
    /// person settles each with `git mirror resolve`.
    pub diverged: Vec<String>,
}

/// Forwards every ref of the record of refs accepted offline. Nothing to do (no
/// `[upstream]`, no such ref) costs one file read.
pub fn forward(repo: &Path, config: &Config) -> Result<Forwarding> {
    let mut outcome = Forwarding::default();
    let Some(upstream) = &config.upstream else {
        return Ok(outcome);
    };
    let pending = ledger::load(repo)?.unforwarded;
    if pending.is_empty() {
        return Ok(outcome);
    }
    let here = Repo::open(repo)?.refs()?;
    let access = crate::auth::Access::new(repo, config, &upstream.url, upstream.auth.as_deref())?;
    let git = Git::new(repo)?.with_access(access);
    let there = list_upstream(&git, upstream, &pending)?;
    let pushes = sort_out(&pending, &here, &there, &mut outcome);
    if !pushes.is_empty() {
        push_leased(repo, &git, upstream, &pushes, &mut outcome)?;
    }
    remember(repo, &here, &outcome)?;
    log_outcome(repo, &outcome, pending.len());
    Ok(outcome)
}

/// The upstream's values of the pending refs.
fn list_upstream(
    git: &Git,
    upstream: &Upstream,
    pending: &BTreeMap<String, Unforwarded>,
) -> Result<BTreeMap<String, String>> {
    let names: Vec<&str> = pending.keys().map(String::as_str).collect();
    match git.ls_remote(&upstream.url, &names, upstream.timeout) {
        Ok(there) => Ok(there.refs),
        Err(e @ GitError::Spawn { .. }) => Err(e.into()),
        Err(e) => anyhow::bail!(
            "cannot forward the refs accepted while the upstream was away ({}): {e}",
            names.join(", "),
        ),
    }
}

/// Notes in `outcome` the refs the upstream already holds and those it moved meanwhile;
/// the pushes that forward the others.
fn sort_out(
    pending: &BTreeMap<String, Unforwarded>,
    here: &BTreeMap<String, String>,
    there: &BTreeMap<String, String>,
    outcome: &mut Forwarding,
) -> Vec<LeasedUpdate> {
    let mut pushes = Vec::new();
    for (name, entry) in pending {
        let ours = here.get(name);
        let theirs = there.get(name);
        if ours == theirs {
            outcome.forwarded.push(name.clone());
            continue;
        }
        match lease(entry, theirs) {
            Some(expect) => pushes.push(LeasedUpdate {
                name: name.clone(),
                expect,
                new: ours.cloned(),
            }),
            None => outcome.diverged.push(name.clone()),
        }
    }
    pushes
}

/// Pushes the leased updates and notes in `outcome` what each came to.
fn push_leased(
    repo: &Path,
    git: &Git,
    upstream: &Upstream,
    pushes: &[LeasedUpdate],
    outcome: &mut Forwarding,
) -> Result<()> {
    let settings = PushSettings::default();
    let out = git.push(
        &upstream.url,
        pushes,
        &settings,
        upstream.timeout,
        &mut |_| {},
    )?;
    let report = PushReport::parse(&out.stdout);
    if !report.reached {
        anyhow::bail!(
            "cannot forward the refs accepted while the upstream was away: {}",
            out.complaint()
        );
    }
    for push in pushes {
        match report.refs.get(&push.name) {
            Some(status) if status.flag.accepted() => outcome.forwarded.push(push.name.clone()),
            Some(status) if status.refusal() == Reason::StaleInfo => {
                outcome.diverged.push(push.name.clone())
            }
            // Refused for a reason of the upstream's own (a protected branch, a
            // hook), or not reported: it stays recorded and is tried again.
            Some(status) => state::log(
                repo,
                SystemTime::now(),
                &format!(
                    "pull: the upstream refused {} accepted here while it was away: {}",
                    push.name,
                    status.reason.as_deref().unwrap_or(&status.summary)
                ),
            ),
            None => {}
        }
    }
    Ok(())
}

/// Records the forwarded refs as the upstream's values: they leave the record.
fn remember(repo: &Path, here: &BTreeMap<String, String>, outcome: &Forwarding) -> Result<()> {
    let values: BTreeMap<&String, Option<&String>> = outcome
        .forwarded
        .iter()
        .map(|name| (name, here.get(name)))
        .collect();
    ledger::change(repo, |ledger| {
        for (name, id) in &values {
            ledger.forwarded(name, id.map(String::as_str));
        }
    })
    .context("forwarded, but cannot record it")
}

/// Logs what was forwarded and what diverged; the upstream's record is clean once all
/// `pending` refs went.
fn log_outcome(repo: &Path, outcome: &Forwarding, pending: usize) {
    let now = SystemTime::now();
    if !outcome.forwarded.is_empty() {
        state::log(
            repo,
            now,
            &format!(
                "forwarded to the upstream, accepted here while it was away: {}",
                outcome.forwarded.join(", ")
            ),
        );
        if outcome.forwarded.len() == pending {
            let _ = state::update(repo, crate::state::UPSTREAM_RECORD, |s| s.finished(now));
        }
    }
    if !outcome.diverged.is_empty() {
        state::log(repo, now, &diverged_message(&outcome.diverged));
    }
}

/// The lease the forwarding of `entry` carries, when the upstream still holds what it
/// held when the ref was accepted here (`Some(None)`: it must not exist); `None` when it
/// moved meanwhile, or nobody knows what it held.
fn lease(entry: &Unforwarded, theirs: Option<&String>) -> Option<Option<String>> {
    let basis = entry.upstream.as_ref()?;
    let basis = (!crate::refs::is_zero(basis)).then(|| basis.clone());
    (basis.as_ref() == theirs).then_some(basis)
}

/// What a person reads about refs accepted offline that cannot be forwarded as they are.
pub fn diverged_message(names: &[String]) -> String {
    let first = names.first().map(String::as_str).unwrap_or("REF");
    format!(
        "{} {} accepted here while the upstream was away, and the upstream moved meanwhile, so {} not forwarded: keep one side with `git mirror resolve {first} --take here` (forwards this repository's value) or `--take upstream` (drops it here)",
        names.join(", "),
        if names.len() == 1 { "was" } else { "were" },
        if names.len() == 1 { "it was" } else { "they were" },
    )
}
