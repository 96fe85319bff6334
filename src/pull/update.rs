//! Bringing the refs up to date: list the upstream, compare with the refs here, fetch
//! the objects of what differs (by id, into no ref), apply, and remember what the
//! upstream held.

use super::apply::{apply, update_refs, writer_ended};
use super::plan::Guards;
use super::PullSummary;
use crate::config::Pull;
use crate::git::{Git, GitError, IdFetch, Lasting, RunOutput};
use crate::refs;
use crate::repo::{Repo, PRIVATE_REFS};
use crate::state;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Where fetched values wait until the transaction applies them, when the upstream
/// serves no object by id (see [`fetch_missing`]).
const FETCHED: &str = "refs/mirror-hooks/pull/";

/// What the pull knows besides the two listings: the record of what the upstream last
/// held, and the branch HEAD names here.
fn guards(ledger: crate::ledger::Ledger, head: Option<String>) -> Guards {
    Guards {
        unforwarded: ledger.unforwarded.into_keys().collect(),
        seen: ledger.seen,
        head,
    }
}

/// Lists, compares, fetches what is missing, and applies the difference.
pub(super) fn update(repo: &Path, git: &Git, pull: &Pull) -> PullSummary {
    let mut summary = PullSummary::default();
    if let Err(failed) = update_steps(repo, git, pull, &mut summary) {
        summary.fail(failed.error, failed.lasting);
    }
    summary
}

/// The steps of [`update`]; the first that fails ends the run with its error.
fn update_steps(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    summary: &mut PullSummary,
) -> std::result::Result<(), Failed> {
    // Read before the listing, so that what it says the upstream held is never newer
    // than the listing: a push forwarded meanwhile then looks diverged for one run
    // (reported, left alone), never like a ref that follows an older upstream value.
    // An unreadable record protects refs nobody knows about any more: change nothing
    // until a person repairs it (fail closed).
    let ledger = crate::ledger::load(repo).map_err(|damaged| Failed {
        error: damaged.to_string(),
        lasting: None,
    })?;
    let remote = list(repo, git, pull, summary)?;
    // The one read of the refs here this run makes, unless a concurrent push makes the
    // transaction retry.
    let (here, head) = local_refs(repo, git)?;
    let local = matching(&here, pull);
    let guards = &guards(ledger, head);
    let (differs, gone) = compare(&remote, &local, pull, guards)?;
    // The cheap path, and the common one: nothing changed upstream.
    if differs.is_empty() && gone.is_empty() {
        summary.unchanged = remote
            .keys()
            .filter(|name| !guards.unforwarded.contains(name.as_str()))
            .count();
        remember(repo, pull, &guards.seen, &remote, &local);
        return Ok(());
    }
    // Fetch every ref that differs. When its objects are already here (a diverged
    // branch, a commit that arrived by a push) git sees that the history is complete
    // and transfers nothing; the mere presence of the tip would not prove that (a
    // killed fetch can leave a commit without its trees).
    let names: Vec<String> = differs.iter().map(|name| (*name).clone()).collect();
    let mut upstream = remote;
    let by_name = fetch_missing(repo, git, pull, &names, &mut upstream, summary)?;
    let after = apply(repo, git, pull, &upstream, guards, here, summary);
    if let (None, Some(local)) = (&summary.error, after) {
        remember(repo, pull, &guards.seen, &upstream, &local);
    }
    if by_name {
        if let Err(e) = forget_fetched(repo, git) {
            state::log(
                repo,
                SystemTime::now(),
                &format!("pull: could not remove the fetched refs under {FETCHED}: {e:#}"),
            );
        }
    }
    Ok(())
}

/// The upstream's refs that `pull.refs` matches and that can exist here; the others it
/// lists are noted in `summary.skipped`.
fn list(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    summary: &mut PullSummary,
) -> std::result::Result<BTreeMap<String, String>, Failed> {
    match git.ls_remote(&pull.url, &[], pull.timeout) {
        Ok(listing) => {
            summary.skipped = skipped(repo, pull, listing.skipped);
            Ok(listing
                .refs
                .into_iter()
                .filter(|(name, id)| {
                    pull.refs.matches(name)
                        && refs::check_ref_name(name).is_ok()
                        && refs::is_object_id(id)
                })
                .collect())
        }
        Err(e @ GitError::Spawn { .. }) => Err(Failed {
            error: format!("{:#}", anyhow::Error::from(e)),
            lasting: None,
        }),
        Err(e) => Err(Failed {
            error: format!("cannot list the upstream's refs: {e}"),
            lasting: e.cause().lasting(),
        }),
    }
}

/// The refs here (all but our private ones) and the branch HEAD names, from one look
/// at the repository. A run killed between a fetch by name and its transaction (this
/// version's fallback, or any older version) left fetched refs in the private namespace:
/// they are removed first, which costs nothing when there are none.
fn local_refs(
    repo: &Path,
    git: &Git,
) -> std::result::Result<(BTreeMap<String, String>, Option<String>), Failed> {
    let view = Repo::open(repo)?;
    let (refs, leftovers) = view.refs_and_private()?;
    if leftovers {
        forget_fetched(repo, git)?;
    }
    Ok((refs, view.head_ref()))
}

/// The upstream refs that differ from the ones here, and the refs here the upstream no
/// longer has that prune may delete. Refuses an upstream that lists nothing while
/// prune would delete refs here.
fn compare<'a>(
    remote: &'a BTreeMap<String, String>,
    local: &'a BTreeMap<String, String>,
    pull: &Pull,
    guards: &Guards,
) -> std::result::Result<(Vec<&'a String>, Vec<&'a String>), Failed> {
    let differs: Vec<&String> = remote
        .iter()
        .filter(|(name, id)| {
            local.get(*name) != Some(id) && !guards.unforwarded.contains(name.as_str())
        })
        .map(|(name, _)| name)
        .collect();
    let gone: Vec<&String> = local
        .keys()
        .filter(|name| !remote.contains_key(*name) && guards.may_prune(name, pull.prune))
        .collect();
    if !gone.is_empty() && remote.is_empty() {
        // An upstream that lists nothing is more often a wrong URL or a re-created
        // repository than a wish to delete everything here.
        return Err(Failed {
            error: format!(
                "the upstream lists none of the refs [pull] refs matches, so prune would delete {} of them here (the branch HEAD names is never pruned); nothing was changed. Check the url; to empty this repository, delete the refs by hand",
                gone.len()
            ),
            lasting: None,
        });
    }
    Ok((differs, gone))
}

/// Fetches the objects of the upstream refs `names` (when any) by the ids the listing
/// gave, writing no ref: the transaction that follows is the only ref write. A server
/// that serves no object by id it does not advertise (protocol v0, a tip that moved
/// since the listing) gets a fetch by name into the private namespace instead (what
/// earlier versions always did), whose values are taken into `upstream`; then the
/// result is true, and the caller removes the fetched refs after its transaction. A failed fetch leaves nothing behind
/// in the private namespace.
///
/// Between the fetch and the transaction no ref holds the new objects: `git gc` keeps
/// such objects for `gc.pruneExpire` (two weeks) as loose objects or in a cruft pack,
/// exactly as it does for `git fetch`'s own objects before its ref updates.
fn fetch_missing(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    names: &[String],
    upstream: &mut BTreeMap<String, String>,
    summary: &mut PullSummary,
) -> std::result::Result<bool, Failed> {
    if names.is_empty() {
        return Ok(false);
    }
    let ids: BTreeSet<&str> = names
        .iter()
        .filter_map(|name| upstream.get(name))
        .map(String::as_str)
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let refused = match git.fetch_objects(&pull.url, &ids, pull.timeout)? {
        IdFetch::Ran(out) if out.success() => {
            summary.fetched = names.len();
            return Ok(false);
        }
        IdFetch::Ran(out) => return Err(fetch_failed(out, pull.timeout)),
        IdFetch::Refused(out) => out,
    };
    state::log(
        repo,
        SystemTime::now(),
        &format!(
            "pull: the upstream would not serve the listed objects by id ({}); fetching them by ref name",
            refused.complaint()
        ),
    );
    let missing: Vec<(String, String)> = names
        .iter()
        .map(|name| (name.clone(), format!("{FETCHED}{name}")))
        .collect();
    match fetch(repo, git, pull, &missing) {
        Ok(values) => {
            summary.fetched = missing.len();
            // The upstream may have moved since it was listed; what was fetched is
            // newer, and it is what we have the objects for.
            upstream.extend(values);
            Ok(true)
        }
        Err(failed) => {
            let _ = forget_fetched(repo, git);
            Err(failed)
        }
    }
}

/// The refs of `names` (upstream refs whose names are not UTF-8) that `pull.refs`
/// matches, said in the log: they cannot be mirrored, and the others still are.
fn skipped(repo: &Path, pull: &Pull, names: Vec<String>) -> Vec<String> {
    let names: Vec<String> = names.into_iter().filter(|n| pull.refs.matches(n)).collect();
    if !names.is_empty() {
        state::log(
            repo,
            SystemTime::now(),
            &format!(
                "pull: skipped {}: the upstream's ref name is not valid UTF-8, which mirror-hooks cannot mirror; rename it upstream",
                names.join(", ")
            ),
        );
    }
    names
}

/// The refs of `here` that `pull.refs` matches.
pub(super) fn matching(here: &BTreeMap<String, String>, pull: &Pull) -> BTreeMap<String, String> {
    here.iter()
        .filter(|(name, _)| pull.refs.matches(name))
        .map(|(name, id)| (name.clone(), id.clone()))
        .collect()
}

/// Why a step of the update failed, and whether retrying can fix it.
struct Failed {
    error: String,
    lasting: Option<Lasting>,
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Failed {
        Failed {
            error: format!("{e:#}"),
            lasting: None,
        }
    }
}

/// Fetches `refspecs` by name into the private namespace (the fallback of
/// [`fetch_missing`]); returns the values fetched, by the upstream's ref names.
fn fetch(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    refspecs: &[(String, String)],
) -> std::result::Result<BTreeMap<String, String>, Failed> {
    // The fetch locks only refs of our private namespace, which the next run cleans
    // anyway; the record tells it which git to wait for first.
    let mut writing = crate::reflock::before(repo, crate::reflock::Locks::default())?;
    let out = git.fetch_noting(&pull.url, refspecs, pull.timeout, &mut |pid| {
        writing.started(pid)
    });
    writer_ended(repo, writing, &out);
    let out = out?;
    if !out.success() {
        return Err(fetch_failed(out, pull.timeout));
    }
    let fetched = Repo::open(repo).and_then(|view| view.refs_under(FETCHED))?;
    // Only the refs asked for: anything else under the namespace was not fetched by us
    // (a push here can write there) and must never become a real ref.
    Ok(refspecs
        .iter()
        .filter_map(|(name, private)| Some((name.clone(), fetched.get(private)?.clone())))
        .collect())
}

/// Why a fetch that ended without success failed, for the status record.
fn fetch_failed(out: RunOutput, timeout: Duration) -> Failed {
    let failed = GitError::from_output(out, timeout);
    let why = match &failed {
        GitError::TimedOut { after, .. } => format!(
            "the fetch did not finish within {} ([pull] timeout)",
            humantime::format_duration(*after)
        ),
        failed => failed.to_string(),
    };
    Failed {
        error: format!("cannot fetch from the upstream: {why}"),
        lasting: failed.cause().lasting(),
    }
}

/// Deletes every ref under the private namespace.
pub(super) fn forget_fetched(repo: &Path, git: &Git) -> Result<()> {
    let leftovers = Repo::open(repo)?.refs_under(PRIVATE_REFS)?;
    if leftovers.is_empty() {
        return Ok(());
    }
    let commands: Vec<String> = leftovers
        .keys()
        .map(|name| format!("delete {name}"))
        .collect();
    let out = update_refs(repo, git, &commands, "mirror-hooks: pull cleanup")?;
    if !out.success() {
        anyhow::bail!(
            "cannot remove the fetched refs under {PRIVATE_REFS}: {}",
            out.complaint()
        );
    }
    Ok(())
}

/// Records what the upstream holds now (`upstream`, within `pull.refs`): the basis of
/// the next judgement. A ref the upstream no longer has is forgotten once it is gone here
/// too; while it is still here the old value stays, to tell a ref the upstream deleted
/// from one that only ever lived here. A value the proxy recorded since `before` was
/// read is newer than this run's listing, and stays.
fn remember(
    repo: &Path,
    pull: &Pull,
    before: &BTreeMap<String, String>,
    upstream: &BTreeMap<String, String>,
    local: &BTreeMap<String, String>,
) {
    // The common case: the record already says all of it (no lock, no write).
    let forgotten = |name: &String| {
        pull.refs.matches(name) && !upstream.contains_key(name) && !local.contains_key(name)
    };
    if upstream
        .iter()
        .all(|(name, id)| before.get(name) == Some(id))
        && !before.keys().any(forgotten)
        && !crate::ledger::has_notes(repo)
    {
        return;
    }
    let recorded = crate::ledger::change(repo, |ledger| {
        let untouched =
            |ledger: &crate::ledger::Ledger, name: &str| ledger.seen.get(name) == before.get(name);
        for (name, id) in upstream {
            if untouched(ledger, name) {
                ledger.saw(name, Some(id));
            }
        }
        let gone: Vec<String> = ledger
            .seen
            .keys()
            .filter(|name| forgotten(name) && untouched(ledger, name))
            .cloned()
            .collect();
        for name in gone {
            ledger.saw(&name, None);
        }
    });
    if let Err(e) = recorded {
        state::log(
            repo,
            SystemTime::now(),
            &format!("pull: cannot record what the upstream holds: {e:#}"),
        );
    }
}
