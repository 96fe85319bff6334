//! Pull mirroring (`git-mirror pull`): bring the repository up to date with its upstream,
//! on a schedule and beside people pushing to it. List the upstream's refs; when they
//! differ, fetch only what is missing into a private namespace and apply one ref
//! transaction whose old values are the ones read, so a concurrent push is never undone.

use crate::auth::Access;
use crate::config::{Config, Prune, Pull};
use crate::git::{Git, GitError, Lasting};
use crate::lock::{self, Lock};
use crate::refs::{self, RefUpdate};
use crate::repo::{Repo, PRIVATE_REFS};
use crate::schedule;
use crate::state::{self, MirrorState, UpdateStatus};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Name of the pull's status record.
pub const RECORD: &str = state::PULL_RECORD;
/// Where fetched values wait until the transaction applies them.
const FETCHED: &str = "refs/mirror-hooks/pull/";
/// How often one run reads the local refs again and retries the transaction when a
/// concurrent push moved one of them.
const APPLY_ATTEMPTS: u32 = 3;
/// Local ref transactions are quick; this only guards against a wedged filesystem.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// What `git-mirror pull` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// Run now, even when not due or hard-failed.
    pub now: bool,
    /// Wait for a pull already running instead of leaving the work to it (its listing
    /// may predate what the caller needs), then run.
    pub catch_up: bool,
}

/// What one `pull` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullReport {
    /// Another pull of this repository is running.
    Busy,
    /// Not due yet: the time it is due.
    NotDue(SystemTime),
    /// Hard-failed: skipped until `--now` or an edit of mirror.toml; the last error.
    HardFailed(String),
    Ran(Box<PullSummary>),
}

/// The outcome of one pull.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullSummary {
    /// The updates applied here, as `old new ref` (what post-receive hooks get).
    pub applied: Vec<RefUpdate>,
    /// Matching refs already equal on both sides.
    pub unchanged: usize,
    /// Refs fetched because their objects were missing here.
    pub fetched: usize,
    /// Branches that diverged from the upstream and were left alone.
    pub divergent: Vec<String>,
    /// Refs accepted here while the upstream was away, forwarded by this run.
    pub forwarded: Vec<String>,
    /// Refs accepted here while the upstream was away that could not be forwarded: the
    /// upstream moved meanwhile (settled with `git mirror resolve`).
    pub unforwarded: Vec<String>,
    /// Why forwarding the refs accepted offline failed (they stay recorded).
    pub forward_error: Option<String>,
    /// Upstream refs left out because their names are not UTF-8 (shown escaped).
    pub skipped: Vec<String>,
    /// Upstream refs that cannot exist here (a name that clashes with a ref here), with
    /// why: reported, not an outage.
    pub unappliable: Vec<(String, String)>,
    /// Why the pull failed.
    pub error: Option<String>,
    /// The failure is one that retrying cannot fix.
    pub lasting: Option<Lasting>,
    /// The pull failed often enough in a row to stop retrying.
    pub hard_failed: bool,
    /// Chained post-receive hooks that failed (the pull itself still succeeded).
    pub hook_failures: Vec<String>,
    pub next_update_at: Option<SystemTime>,
}

impl PullSummary {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.divergent.is_empty()
            && self.unforwarded.is_empty()
            && self.forward_error.is_none()
            && self.unappliable.is_empty()
    }

    fn fail(&mut self, error: String, lasting: Option<Lasting>) {
        self.error = Some(error);
        self.lasting = lasting;
    }
}

/// When the pull of `repo` is next due according to its record and `pull`; `UNIX_EPOCH`
/// when due now (never run), `None` when hard-failed.
pub fn next_due(
    repo: &Path,
    config: &Config,
    pull: &Pull,
    state: &MirrorState,
) -> Option<SystemTime> {
    schedule::next_pull(
        state,
        pull,
        &setup_fingerprint(repo, config, pull),
        &repo.display().to_string(),
    )
}

/// What a person changes to fix a pull: mirror.toml, and the files its credentials
/// live in (a rotated token, a re-trusted host key). A hard-failed pull resumes by
/// itself when this changes.
fn setup_fingerprint(repo: &Path, config: &Config, pull: &Pull) -> String {
    let mut files = vec![crate::auth::default_known_hosts(repo)];
    if let Some(auth) = pull.auth.as_ref().and_then(|name| config.auth.get(name)) {
        if let Some(crate::config::Secret::File(path)) = &auth.password {
            files.push(path.clone());
        }
        files.extend(
            [&auth.ssh_key, &auth.known_hosts, &auth.ssh_config]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    let mut text = config.fingerprint.clone();
    for file in files {
        let changed = std::fs::metadata(repo.join(&file))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        text.push_str(&format!(" {changed}"));
    }
    state::fingerprint(text.as_bytes())
}

/// Runs the pull of `repo` if it is due (or at once with `--now`).
pub fn run(repo: &Path, config: &Config, options: PullOptions) -> Result<PullReport> {
    // Without a [pull] table, only an explicit `--now` (a person, or the proxy catching
    // up after a refusal) pulls, from the [upstream].
    let settings = config
        .pull_or_catch_up()
        .filter(|_| config.pull.is_some() || options.now);
    let Some(pull) = settings.as_deref() else {
        anyhow::bail!(
            "{} has no [pull] table; add one (an empty [pull] pulls from the [upstream] url)",
            config.path.display()
        );
    };
    let waiting = || -> Option<PullReport> {
        if options.now {
            return None;
        }
        let state = state::load(repo, RECORD).unwrap_or_default();
        let next = next_due(repo, config, pull, &state);
        if schedule::pull_is_due(next, pull, SystemTime::now()) {
            return None;
        }
        Some(match next {
            Some(at) => PullReport::NotDue(at),
            None => PullReport::HardFailed(state.last_error.unwrap_or_default()),
        })
    };
    // Looking costs no write, so a sweep over many repositories that are not due is
    // read-only.
    if let Some(report) = waiting() {
        return Ok(report);
    }
    let lock = match Lock::try_acquire(&lock::pull_lock(repo))? {
        Some(lock) => lock,
        None if options.catch_up => Lock::acquire(&lock::pull_lock(repo))?,
        None => return Ok(PullReport::Busy),
    };
    lock.record_owner();
    // A run killed while git wrote refs may have left lock files that would fail us,
    // and every push to those refs.
    let recovery = crate::reflock::recover(repo);
    for line in &recovery.said {
        state::log(repo, SystemTime::now(), &format!("pull: {line}"));
    }
    if recovery.pending {
        anyhow::bail!(
            "a killed run's git may have left lock files that cannot be told from a live writer's yet ({}); this run changes nothing, and a run in a minute or more removes them",
            recovery.said.join("; ")
        );
    }
    // Another run may have finished between the look and the lock.
    if let Some(report) = waiting() {
        return Ok(report);
    }

    let started = SystemTime::now();
    let clock = Instant::now();
    let _ = state::update(repo, RECORD, |s| s.started(started));
    let mut git = Git::new(repo)?;
    // First, so that the listing below already shows what it forwarded. An upstream
    // that takes no push (read-only for maintenance, a read-only key) must not stop the
    // pull: the refs stay recorded and protected, and the failure is reported.
    let forwarding = crate::offline::forward(repo, config);
    let mut summary = match Access::new(repo, config, &pull.url, pull.auth.as_deref()) {
        Ok(access) => {
            // Only the commands that talk to the upstream get the secret (see git.rs);
            // `gc` below runs through this git too, and must not see it.
            git = git.with_access(access);
            update(repo, &git, pull)
        }
        Err(e) => PullSummary {
            error: Some(format!("{e:#}")),
            ..PullSummary::default()
        },
    };
    match forwarding {
        Ok(forwarding) => {
            summary.forwarded = forwarding.forwarded;
            summary.unforwarded = forwarding.diverged;
        }
        Err(e) => summary.forward_error = Some(format!("{e:#}")),
    }
    let finished = SystemTime::now();
    let mut record = state::load(repo, RECORD).unwrap_or_default();
    settle(repo, &mut record, &mut summary, config, pull, finished);
    if summary.error.is_none() {
        record.skipped_refs = summary.skipped.clone();
    }
    summary.next_update_at = next_due(repo, config, pull, &record);
    record.next_update_at = summary
        .next_update_at
        .map(|at| state::timestamp(at.max(finished)));
    let _ = state::save(repo, RECORD, &record);

    if !summary.applied.is_empty() {
        summary.hook_failures = announce(repo, &summary.applied);
    }
    if summary.fetched > 0 {
        // What `git fetch` would have run itself (it detaches when there is work).
        let _ = git.output(&["gc", "--auto", "--quiet"], LOCAL_TIMEOUT);
    }
    state::log(
        repo,
        finished,
        &format!(
            "pull {} applied={} unchanged={} fetched={} divergent={} {:.3}s{}",
            match record.update_status {
                UpdateStatus::Finished => "finished",
                UpdateStatus::HardFailed => "hard_failed",
                _ => "failed",
            },
            summary.applied.len(),
            summary.unchanged,
            summary.fetched,
            summary.divergent.len(),
            clock.elapsed().as_secs_f64(),
            record
                .last_error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        ),
    );
    drop(lock);
    Ok(PullReport::Ran(Box::new(summary)))
}

/// Records the outcome of a pull in its status record.
fn settle(
    repo: &Path,
    s: &mut MirrorState,
    summary: &mut PullSummary,
    config: &Config,
    pull: &Pull,
    at: SystemTime,
) {
    if let Some(error) = summary.error.clone() {
        let failures = s.consecutive_failures.saturating_add(1);
        let why = match summary.lasting {
            Some(why) => format!("retrying cannot fix this: {why}"),
            None if failures >= pull.max_failures => {
                format!("failed {failures} times in a row, so no longer retried")
            }
            None => {
                s.failed(at, error);
                return;
            }
        };
        let error = format!("{error} ({why}; fix it, then run `git mirror pull --now`)");
        s.hard_failed(at, error.clone(), &setup_fingerprint(repo, config, pull));
        summary.hard_failed = true;
        summary.error = Some(error);
        return;
    }
    if summary.fetched > 0 || !summary.applied.is_empty() || s.last_changed_at.is_none() {
        s.last_changed_at = Some(state::timestamp(at));
    }
    let mut problems = Vec::new();
    if !summary.divergent.is_empty() {
        problems.push(divergence_message(&summary.divergent));
    }
    if !summary.unforwarded.is_empty() {
        problems.push(crate::offline::diverged_message(&summary.unforwarded));
    }
    if let Some(error) = &summary.forward_error {
        problems.push(error.clone());
    }
    if !summary.unappliable.is_empty() {
        // Like a divergence: the others arrived, a person must act, retrying sooner
        // would not help, so it never counts towards max_failures.
        problems.push(unappliable_note(&summary.unappliable));
    }
    if problems.is_empty() {
        s.finished(at);
    } else {
        // The other refs were updated; these wait for a person, and retrying sooner
        // would not help, so the schedule stays as after a success.
        s.failed_uncounted(at, problems.join("; "));
        s.consecutive_failures = 0;
    }
    s.divergent_refs = summary
        .divergent
        .iter()
        .chain(&summary.unforwarded)
        .cloned()
        .collect();
}

/// What a person reads about branches that diverged from the upstream.
pub fn divergence_message(names: &[String]) -> String {
    let first = names.first().map(String::as_str).unwrap_or("REF");
    format!(
        "{} diverged from the upstream (commits it never had) and {} left alone: keep one side with `git mirror resolve {first} --take upstream` (this repository follows the upstream) or `--take here` (the upstream gets this repository's value), or set overwrite_diverged = true in [pull]",
        names.join(", "),
        if names.len() == 1 { "was" } else { "were" }
    )
}

/// What the pull knows besides the two listings, as the repository and the record of
/// what the upstream last held say now.
fn guards(repo: &Path, ledger: crate::ledger::Ledger) -> Guards {
    let head = Repo::open(repo).ok().and_then(|view| view.head_ref());
    Guards {
        unforwarded: ledger.unforwarded.into_keys().collect(),
        seen: ledger.seen,
        head,
    }
}

/// What status and the log say about upstream refs that cannot exist here.
pub fn unappliable_note(refs: &[(String, String)]) -> String {
    let list: Vec<String> = refs.iter().map(|(n, why)| format!("{n} ({why})")).collect();
    format!(
        "{} upstream ref{} cannot be applied here and {} left alone: {}",
        refs.len(),
        if refs.len() == 1 { "" } else { "s" },
        if refs.len() == 1 { "was" } else { "were" },
        list.join("; ")
    )
}

/// Lists, compares, fetches what is missing, and applies the difference.
fn update(repo: &Path, git: &Git, pull: &Pull) -> PullSummary {
    let mut summary = PullSummary::default();
    // Read before the listing, so that what it says the upstream held is never newer
    // than the listing: a push forwarded meanwhile then looks diverged for one run
    // (reported, left alone), never like a ref that follows an older upstream value.
    // An unreadable record protects refs nobody knows about any more: change nothing
    // until a person repairs it (fail closed).
    let ledger = match crate::ledger::load(repo) {
        Ok(ledger) => ledger,
        Err(damaged) => {
            summary.fail(damaged.to_string(), None);
            return summary;
        }
    };
    let remote = match git.ls_remote(&pull.url, &[], pull.timeout) {
        Ok(listing) => {
            summary.skipped = skipped(repo, pull, listing.skipped);
            listing
                .refs
                .into_iter()
                .filter(|(name, id)| {
                    pull.refs.matches(name)
                        && refs::check_ref_name(name).is_ok()
                        && refs::is_object_id(id)
                })
                .collect::<BTreeMap<_, _>>()
        }
        Err(e @ GitError::Spawn { .. }) => {
            summary.fail(format!("{:#}", anyhow::Error::from(e)), None);
            return summary;
        }
        Err(e) => {
            summary.fail(
                format!("cannot list the upstream's refs: {e}"),
                e.cause().lasting(),
            );
            return summary;
        }
    };
    let view = match Repo::open(repo) {
        Ok(view) => view,
        Err(e) => {
            summary.fail(format!("{e:#}"), None);
            return summary;
        }
    };
    let local = match matching_refs(&view, pull) {
        Ok(local) => local,
        Err(e) => {
            summary.fail(format!("{e:#}"), None);
            return summary;
        }
    };
    // A run killed between its fetch and its transaction left fetched refs behind.
    if view.refs_under(PRIVATE_REFS).is_ok_and(|r| !r.is_empty()) {
        if let Err(e) = forget_fetched(repo, git) {
            summary.fail(format!("{e:#}"), None);
            return summary;
        }
    }

    let guards = &guards(repo, ledger);

    // The cheap path, and the common one: nothing changed upstream.
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
        summary.fail(
            format!(
                "the upstream lists none of the refs [pull] refs matches, so prune would delete {} of them here (the branch HEAD names is never pruned); nothing was changed. Check the url; to empty this repository, delete the refs by hand",
                gone.len()
            ),
            None,
        );
        return summary;
    }
    if differs.is_empty() && gone.is_empty() {
        summary.unchanged = remote
            .keys()
            .filter(|name| !guards.unforwarded.contains(name.as_str()))
            .count();
        remember(repo, pull, &guards.seen, &remote, &local);
        return summary;
    }
    // Fetch every ref that differs. When its objects are already here (a diverged
    // branch, a commit that arrived by a push) git sees that the history is complete
    // and transfers nothing; the mere presence of the tip would not prove that (a
    // killed fetch can leave a commit without its trees).
    let missing: Vec<(String, String)> = differs
        .iter()
        .map(|name| ((*name).clone(), format!("{FETCHED}{name}")))
        .collect();
    drop(view);
    let mut upstream = remote;
    if !missing.is_empty() {
        let fetched = fetch(repo, git, pull, &missing);
        match fetched {
            Ok(values) => {
                summary.fetched = missing.len();
                // The upstream may have moved since it was listed; what was fetched is
                // newer, and it is what we have the objects for.
                upstream.extend(values);
            }
            Err(failed) => {
                let _ = forget_fetched(repo, git);
                summary.fail(failed.error, failed.lasting);
                return summary;
            }
        }
    }
    apply(repo, git, pull, &upstream, guards, &mut summary);
    if summary.error.is_none() {
        match Repo::open(repo).and_then(|view| matching_refs(&view, pull)) {
            Ok(local) => remember(repo, pull, &guards.seen, &upstream, &local),
            Err(e) => state::log(
                repo,
                SystemTime::now(),
                &format!("pull: cannot read the refs to record the upstream's: {e:#}"),
            ),
        }
    }
    if !missing.is_empty() {
        if let Err(e) = forget_fetched(repo, git) {
            state::log(
                repo,
                SystemTime::now(),
                &format!("pull: could not remove the fetched refs under {FETCHED}: {e:#}"),
            );
        }
    }
    summary
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

fn matching_refs(view: &Repo, pull: &Pull) -> Result<BTreeMap<String, String>> {
    let mut refs = view.refs()?;
    refs.retain(|name, _| pull.refs.matches(name));
    Ok(refs)
}

/// Why a fetch failed, and whether retrying can fix it.
struct FetchFailed {
    error: String,
    lasting: Option<Lasting>,
}

impl From<anyhow::Error> for FetchFailed {
    fn from(e: anyhow::Error) -> FetchFailed {
        FetchFailed {
            error: format!("{e:#}"),
            lasting: None,
        }
    }
}

/// Fetches `refspecs` into the private namespace; returns the values fetched, by the
/// upstream's ref names.
fn fetch(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    refspecs: &[(String, String)],
) -> std::result::Result<BTreeMap<String, String>, FetchFailed> {
    // The fetch locks only refs of our private namespace, which the next run cleans
    // anyway; the record tells it which git to wait for first.
    let mut writing = crate::reflock::before(repo, crate::reflock::Locks::default())?;
    let out = git.fetch_noting(&pull.url, refspecs, pull.timeout, &mut |pid| {
        writing.started(pid)
    });
    writer_ended(repo, writing, &out);
    let out = out?;
    if !out.success() {
        let failed = GitError::from_output(out, pull.timeout);
        let why = match &failed {
            GitError::TimedOut { after, .. } => format!(
                "the fetch did not finish within {} ([pull] timeout)",
                humantime::format_duration(*after)
            ),
            failed => failed.to_string(),
        };
        return Err(FetchFailed {
            error: format!("cannot fetch from the upstream: {why}"),
            lasting: failed.cause().lasting(),
        });
    }
    let fetched = Repo::open(repo).and_then(|view| view.refs_under(FETCHED))?;
    // Only the refs asked for: anything else under the namespace was not fetched by us
    // (a push here can write there) and must never become a real ref.
    Ok(refspecs
        .iter()
        .filter_map(|(name, private)| Some((name.clone(), fetched.get(private)?.clone())))
        .collect())
}

/// Deletes every ref under the private namespace.
fn forget_fetched(repo: &Path, git: &Git) -> Result<()> {
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
    let recorded = crate::ledger::change(repo, |ledger| {
        let untouched =
            |ledger: &crate::ledger::Ledger, name: &str| ledger.seen.get(name) == before.get(name);
        for (name, id) in upstream {
            if untouched(ledger, name) {
                ledger.saw(name, Some(id));
            }
        }
        let forgotten: Vec<String> = ledger
            .seen
            .keys()
            .filter(|name| {
                pull.refs.matches(name)
                    && !upstream.contains_key(*name)
                    && !local.contains_key(*name)
                    && untouched(ledger, name)
            })
            .cloned()
            .collect();
        for name in forgotten {
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

/// What one transaction would change.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    updates: Vec<RefUpdate>,
    divergent: Vec<String>,
    unchanged: usize,
}

/// What the pull knows besides the two listings.
#[derive(Debug, Clone, Default)]
struct Guards {
    /// Refs accepted here while the upstream could not be reached: the upstream has never
    /// seen them, so its values must not replace or delete them.
    unforwarded: BTreeSet<String>,
    /// The value the upstream was last seen to hold, per ref: a ref here that equals it
    /// holds nothing of its own and follows the upstream, forced updates included.
    seen: BTreeMap<String, String>,
    /// The branch HEAD points to: never pruned (git refuses to delete it, too).
    head: Option<String>,
}

impl Guards {
    /// Whether `name`, here and not on the upstream, is one `prune` may delete: with
    /// `true`, only a ref the upstream had at an earlier run (and so deleted); with
    /// `"all"`, any.
    fn may_prune(&self, name: &str, prune: Prune) -> bool {
        let candidate = match prune {
            Prune::Off => false,
            Prune::Deleted => self.seen.contains_key(name),
            Prune::All => true,
        };
        candidate && !self.unforwarded.contains(name) && self.head.as_deref() != Some(name)
    }
}

/// Decides, ref by ref, what the upstream's values mean here: new refs are created, a ref
/// that holds what the upstream last had follows it (forced updates too), fast-forwards
/// apply, tags follow the upstream, diverged branches wait (unless
/// `overwrite_diverged`), refs the upstream deleted are deleted only with `prune`.
fn plan(
    local: &BTreeMap<String, String>,
    upstream: &BTreeMap<String, String>,
    pull: &Pull,
    guards: &Guards,
    is_ancestor: &dyn Fn(&str, &str) -> bool,
) -> Plan {
    let mut plan = Plan::default();
    for (name, theirs) in upstream {
        if guards.unforwarded.contains(name) {
            continue;
        }
        let ours = match local.get(name) {
            Some(ours) if ours == theirs => {
                plan.unchanged += 1;
                continue;
            }
            Some(ours) => ours,
            None => {
                plan.updates.push(RefUpdate {
                    old: zero_like(theirs),
                    new: theirs.clone(),
                    name: name.clone(),
                });
                continue;
            }
        };
        let follow = name.starts_with("refs/tags/")
            || pull.overwrite_diverged
            || guards.seen.get(name) == Some(ours)
            || is_ancestor(ours, theirs);
        if follow {
            plan.updates.push(RefUpdate {
                old: ours.clone(),
                new: theirs.clone(),
                name: name.clone(),
            });
        } else {
            plan.divergent.push(name.clone());
        }
    }
    let gone = local
        .iter()
        .filter(|(name, _)| !upstream.contains_key(*name) && guards.may_prune(name, pull.prune));
    for (name, ours) in gone {
        // Deleted upstream, but here it has commits the upstream never had: that is a
        // divergence too, unless this repository is an exact copy.
        let own_commits = pull.prune == Prune::Deleted
            && !pull.overwrite_diverged
            && guards
                .seen
                .get(name)
                .is_some_and(|was| was != ours && !is_ancestor(ours, was));
        if own_commits {
            plan.divergent.push(name.clone());
            continue;
        }
        plan.updates.push(RefUpdate {
            old: ours.clone(),
            new: zero_like(ours),
            name: name.clone(),
        });
    }
    plan
}

fn zero_like(id: &str) -> String {
    "0".repeat(id.len())
}

/// The `update-ref --stdin` line of one update, with the old value as the condition.
fn command(u: &RefUpdate) -> String {
    match u.kind() {
        refs::UpdateKind::Create => format!("create {} {}", u.name, u.new),
        refs::UpdateKind::Delete => format!("delete {} {}", u.name, u.old),
        refs::UpdateKind::Update => format!("update {} {} {}", u.name, u.new, u.old),
    }
}

/// Applies the plan in one transaction. When a concurrent push moved a ref after we
/// read it, the transaction fails as a whole; read again and plan again, so the push
/// wins and its ref is judged anew (usually: now diverged, or already equal). When
/// nothing moved and it still fails, some ref cannot take its update (a name that
/// clashes with an existing ref, say): then each ref goes alone, so the others arrive.
fn apply(
    repo: &Path,
    git: &Git,
    pull: &Pull,
    upstream: &BTreeMap<String, String>,
    guards: &Guards,
    summary: &mut PullSummary,
) {
    let mut previous: Option<Vec<RefUpdate>> = None;
    for _ in 0..APPLY_ATTEMPTS {
        let planned = Repo::open(repo).and_then(|view| {
            let local = matching_refs(&view, pull)?;
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
                view.refs()?,
            ))
        });
        let (mut plan, here) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                summary.fail(format!("{e:#}"), None);
                return;
            }
        };
        summary.divergent = std::mem::take(&mut plan.divergent);
        summary.unchanged = plan.unchanged;
        // A ref whose name clashes with one here cannot arrive whatever we try: it is
        // reported, and must not fail the transaction of the others.
        summary.unappliable = set_aside_clashes(&mut plan.updates, &here);
        if plan.updates.is_empty() {
            return;
        }
        if previous.as_ref() == Some(&plan.updates) {
            apply_one_by_one(repo, git, plan.updates, summary);
            return;
        }
        let commands: Vec<String> = plan.updates.iter().map(command).collect();
        let out = match update_refs(repo, git, &commands, REFLOG_MESSAGE) {
            Ok(out) => out,
            Err(e) => {
                summary.fail(format!("{e:#}"), None);
                return;
            }
        };
        if out.success() {
            summary.applied = plan.updates;
            return;
        }
        previous = Some(plan.updates);
    }
    summary.fail(
        format!("cannot update the local refs: they kept changing under concurrent pushes ({APPLY_ATTEMPTS} tries); the next run tries again"),
        None,
    );
}

const REFLOG_MESSAGE: &str = "mirror-hooks: pull from upstream";

/// One local ref transaction, with a durable record of the lock files it may create
/// written first, so that the next run can remove them if this one is killed.
fn update_refs(
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
fn writer_ended(
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

/// Tells the rest of the server about pulled updates, as if they had been pushed: queue
/// the push mirrors and run the chained post-receive hooks. Returns the hooks that failed.
fn announce(repo: &Path, applied: &[RefUpdate]) -> Vec<String> {
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

/// The due time shown for a pull that is due now.
pub fn shown_due_time(next: SystemTime, now: SystemTime) -> SystemTime {
    if next == UNIX_EPOCH {
        now
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Interval;
    use crate::refs::RefPatterns;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    fn pull(overwrite_diverged: bool, prune: Prune) -> Pull {
        Pull {
            url: crate::url::RemoteUrl::parse("/srv/git/up.git", Path::new("/")).unwrap(),
            refs: RefPatterns::heads_and_tags(),
            interval: Interval::Auto,
            overwrite_diverged,
            prune,
            max_failures: 14,
            auth: None,
            timeout: Duration::from_secs(60),
        }
    }

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
            .collect()
    }

    fn lines(plan: &Plan) -> Vec<String> {
        plan.updates.iter().map(command).collect()
    }

    #[test]
    fn fast_forwards_creates_and_keeps_diverged_branches() {
        let local = refs(&[
            ("refs/heads/main", A),
            ("refs/heads/topic", A),
            ("refs/heads/local-only", A),
        ]);
        let upstream = refs(&[
            ("refs/heads/main", B),
            ("refs/heads/topic", C),
            ("refs/heads/new", C),
        ]);
        // A is an ancestor of B, not of C.
        let ancestor = |a: &str, d: &str| a == A && d == B;
        let plan = plan(
            &local,
            &upstream,
            &pull(false, Prune::Off),
            &Guards::default(),
            &ancestor,
        );
        assert_eq!(
            lines(&plan),
            [
                format!("update refs/heads/main {B} {A}"),
                format!("create refs/heads/new {C}"),
            ]
        );
        assert_eq!(plan.divergent, ["refs/heads/topic"]);
    }

    #[test]
    fn overwrite_prune_and_tags() {
        let local = refs(&[
            ("refs/heads/topic", A),
            ("refs/heads/gone", A),
            ("refs/tags/v1", A),
        ]);
        let upstream = refs(&[("refs/heads/topic", C), ("refs/tags/v1", B)]);
        let never = |_: &str, _: &str| false;
        let none = Guards::default();
        let kept = plan(&local, &upstream, &pull(false, Prune::Off), &none, &never);
        assert_eq!(lines(&kept), [format!("update refs/tags/v1 {B} {A}")]);
        assert_eq!(kept.divergent, ["refs/heads/topic"]);

        let forced = plan(&local, &upstream, &pull(true, Prune::All), &none, &never);
        assert_eq!(
            lines(&forced),
            [
                format!("update refs/heads/topic {C} {A}"),
                format!("update refs/tags/v1 {B} {A}"),
                format!("delete refs/heads/gone {A}"),
            ]
        );
        assert!(forced.divergent.is_empty());

        // Refs accepted here without forwarding, and HEAD's branch, stay; the former
        // are the forwarding's to report, not the plan's.
        let guarded = Guards {
            unforwarded: ["refs/heads/topic".to_owned()].into(),
            head: Some("refs/heads/gone".to_owned()),
            ..Guards::default()
        };
        let careful = plan(&local, &upstream, &pull(true, Prune::All), &guarded, &never);
        assert_eq!(lines(&careful), [format!("update refs/tags/v1 {B} {A}")]);
        assert!(careful.divergent.is_empty());
    }

    #[test]
    fn a_ref_holding_what_the_upstream_last_had_follows_a_forced_update() {
        let local = refs(&[("refs/heads/main", A), ("refs/heads/mine", A)]);
        let upstream = refs(&[("refs/heads/main", C), ("refs/heads/mine", C)]);
        let never = |_: &str, _: &str| false;
        let guards = Guards {
            seen: refs(&[("refs/heads/main", A), ("refs/heads/mine", B)]),
            ..Guards::default()
        };
        let plan = plan(&local, &upstream, &pull(false, Prune::Off), &guards, &never);
        // main held exactly what the upstream had: it follows the rewrite. mine holds
        // something the upstream never had: diverged.
        assert_eq!(lines(&plan), [format!("update refs/heads/main {C} {A}")]);
        assert_eq!(plan.divergent, ["refs/heads/mine"]);
    }

    #[test]
    fn prune_deletes_only_what_the_upstream_deleted() {
        let local = refs(&[
            ("refs/heads/deleted-upstream", A),
            ("refs/heads/only-here", A),
            ("refs/heads/deleted-but-moved-here", B),
            ("refs/tags/v1", A),
        ]);
        let upstream = refs(&[("refs/tags/v1", A)]);
        let never = |_: &str, _: &str| false;
        let guards = Guards {
            seen: refs(&[
                ("refs/heads/deleted-upstream", A),
                ("refs/heads/deleted-but-moved-here", A),
                ("refs/tags/v1", A),
            ]),
            ..Guards::default()
        };
        let deleted = plan(
            &local,
            &upstream,
            &pull(false, Prune::Deleted),
            &guards,
            &never,
        );
        assert_eq!(
            lines(&deleted),
            [format!("delete refs/heads/deleted-upstream {A}")]
        );
        assert_eq!(deleted.divergent, ["refs/heads/deleted-but-moved-here"]);

        let off = plan(&local, &upstream, &pull(false, Prune::Off), &guards, &never);
        assert!(off.updates.is_empty() && off.divergent.is_empty());

        let all = plan(&local, &upstream, &pull(false, Prune::All), &guards, &never);
        assert_eq!(
            lines(&all),
            [
                format!("delete refs/heads/deleted-but-moved-here {B}"),
                format!("delete refs/heads/deleted-upstream {A}"),
                format!("delete refs/heads/only-here {A}"),
            ]
        );
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
