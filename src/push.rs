//! The push-mirror worker (`git-mirror push`): one worker per mirror folds the queued jobs
//! into one leased push of the mirror's refs, records the outcome, and backs off on failure.

use crate::auth::Access;
use crate::config::{Config, Prune, PushMirror};
use crate::git::{Git, GitError, LeasedUpdate, PushSettings, RemoteListing};
use crate::porcelain::{Flag, PushReport};
use crate::queue::{Claimed, Queue};
use crate::repo::Repo;
use crate::schedule;
use crate::state::{self, MirrorState};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// How often one run re-lists and pushes again when the mirror moved under it or a ref
/// was locked there, before giving up until the next try.
const ATTEMPTS: u32 = 3;

/// What `git-mirror push` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Run now, even with an empty queue or while backing off.
    pub now: bool,
    /// Only this mirror.
    pub mirror: Option<String>,
}

/// How long a worker started by post-receive (`--after-pid`) waits at most for the push
/// to finish before it starts (git usually ends within milliseconds of the hook), so
/// that the pusher's last milliseconds do not share the processors with it.
pub const AFTER_PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What one mirror's worker did, for the command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerReport {
    /// Another worker holds the lock; it runs the queued jobs (and a `--now` request)
    /// before it lets go.
    Busy,
    /// Nothing queued, or backing off until the given time.
    Idle(Option<String>),
    /// At least one run happened; the last one's summary.
    Ran(RunSummary),
    /// The repository's mirroring is paused (`git mirror pause`): the jobs stay queued.
    Paused,
}

/// The outcome of one run of one mirror.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSummary {
    pub pushed: usize,
    pub deleted: usize,
    pub up_to_date: usize,
    pub divergent: Vec<String>,
    /// Refs the mirror refused, with its reason.
    pub refused: Vec<(String, String)>,
    /// Refs of the mirror left alone on purpose, with why (a symbolic ref there, a name
    /// that is not UTF-8): reported, never retried as an outage.
    pub skipped: Vec<(String, String)>,
    /// The mirror could not be updated at all (unreachable, timed out, …).
    pub error: Option<String>,
    pub damaged_jobs: usize,
}

impl RunSummary {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.refused.is_empty()
            && self.divergent.is_empty()
            && self.skipped.is_empty()
    }

    fn problem(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(error.clone());
        }
        let mut parts = Vec::new();
        if !self.refused.is_empty() {
            let list: Vec<String> = self
                .refused
                .iter()
                .map(|(r, why)| format!("{r} ({why})"))
                .collect();
            parts.push(format!("the mirror refused some refs: {}", list.join(", ")));
        }
        if !self.divergent.is_empty() {
            parts.push(format!(
                "some refs have diverged: {}",
                self.divergent.join(", ")
            ));
        }
        if !self.skipped.is_empty() {
            let list: Vec<String> = self
                .skipped
                .iter()
                .map(|(r, why)| format!("{r} ({why})"))
                .collect();
            parts.push(format!("left alone on the mirror: {}", list.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Runs the worker for each push mirror of `config` (or the one asked for).
pub fn run(
    repo: &Path,
    config: &Config,
    options: &WorkerOptions,
) -> Result<Vec<(String, WorkerReport)>> {
    let mirrors: Vec<&PushMirror> = match &options.mirror {
        Some(name) => match config.push.iter().find(|m| &m.name == name) {
            Some(m) => vec![m],
            None => anyhow::bail!(
                "{} has no [[push]] mirror named {name:?}; the mirrors are: {}",
                config.path.display(),
                config
                    .push
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => config.push.iter().collect(),
    };
    if crate::pause::is_paused(repo) {
        return Ok(mirrors
            .iter()
            .map(|m| (m.name.clone(), WorkerReport::Paused))
            .collect());
    }
    let git = Git::new(repo)?;
    // Mirrors are independent: a slow one must not hold back the others.
    std::thread::scope(|scope| {
        let workers: Vec<_> = mirrors
            .iter()
            .map(|mirror| scope.spawn(|| work(repo, &git, config, mirror, options.now)))
            .collect();
        mirrors
            .iter()
            .zip(workers)
            .map(|(mirror, worker)| {
                let report = worker.join().map_err(|_| {
                    anyhow::anyhow!("the worker of push mirror {} crashed", mirror.name)
                })??;
                Ok((mirror.name.clone(), report))
            })
            .collect()
    })
}

/// One mirror: take the lock, run while jobs are queued and the mirror is due, and
/// look once more after letting go of the lock, so a job queued while we were finishing
/// is never left behind. A `--now` that finds the lock taken leaves a request the holder
/// honours before it lets go (or after, when it looks again), and waits a little for
/// the lock to run it itself.
fn work(
    repo: &Path,
    git: &Git,
    config: &Config,
    mirror: &PushMirror,
    now: bool,
) -> Result<WorkerReport> {
    let queue = Queue::new(repo, &mirror.name);
    if !now && queue.pending() == 0 {
        return Ok(WorkerReport::Idle(None));
    }
    let mut force = now;
    let mut last: Option<RunSummary> = None;
    let due = || {
        let state = state::load(repo, &mirror.name).unwrap_or_default();
        let due = schedule::is_due(&state, SystemTime::now(), schedule::PUSH_MAX_RETRY);
        (due, state.next_update_at)
    };
    loop {
        let lock = match queue.try_lock()? {
            Some(lock) => lock,
            None if force => {
                // Ours is not run yet: whoever holds the lock must know, or it may let
                // go without running (not due, nothing queued).
                queue.request_now()?;
                match wait_for_lock(&queue)? {
                    Some(lock) => lock,
                    None => return Ok(WorkerReport::Busy),
                }
            }
            None => return Ok(last.map_or(WorkerReport::Busy, WorkerReport::Ran)),
        };
        lock.record_owner();
        queue.recover(&lock)?;
        let mut failed = false;
        loop {
            // A pause that began while this worker ran holds what is queued from then on.
            if crate::pause::is_paused(repo) {
                return Ok(last.map_or(WorkerReport::Paused, WorkerReport::Ran));
            }
            force |= queue.take_now_request(&lock)?;
            if !(force || !failed && queue.has_waiting() && due().0) {
                break;
            }
            // The pushes' jobs reach this mirror's queue (and the others') here.
            crate::queue::fan_out(repo)?;
            let jobs = queue.claim(&lock)?;
            let summary = run_once(repo, git, config, mirror, &queue, &jobs);
            // Tried and failed: the next try is the backoff's business.
            failed = summary.error.is_some();
            force = false;
            last = Some(summary);
        }
        drop(lock);
        if queue.now_requested() {
            // Asked for after our last look, before we let go: run it (or leave it to
            // whoever took the lock meanwhile, who looks for it first).
            continue;
        }
        let (is_due, next_update_at) = due();
        if failed || !(queue.has_waiting() && is_due) {
            return Ok(match last {
                Some(summary) => WorkerReport::Ran(summary),
                None => WorkerReport::Idle(next_update_at.filter(|_| queue.has_waiting())),
            });
        }
    }
}

/// How long `--now` waits for a worker that holds the lock before leaving its request
/// to that worker: long enough for one that is only looking (not due, nothing to do).
const NOW_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits up to [`NOW_WAIT`] for the worker lock; `None` when it stayed taken, or when
/// the holder took our request meanwhile (it runs it).
fn wait_for_lock(queue: &Queue) -> Result<Option<crate::queue::WorkerLock>> {
    let deadline = Instant::now() + NOW_WAIT;
    while Instant::now() < deadline && queue.now_requested() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Some(lock) = queue.try_lock()? {
            return Ok(Some(lock));
        }
    }
    Ok(None)
}

/// One run: fold the claimed jobs into one push, record the outcome, and complete or
/// release the jobs.
fn run_once(
    repo: &Path,
    git: &Git,
    config: &Config,
    mirror: &PushMirror,
    queue: &Queue,
    jobs: &[Claimed],
) -> RunSummary {
    let started = SystemTime::now();
    let clock = Instant::now();
    let _ = state::update(repo, &mirror.name, |s| s.started(started));

    let mut damaged = Vec::new();
    let mut named = BTreeSet::new();
    let mut good = Vec::new();
    for job in jobs {
        match &job.job {
            Ok(j) => {
                named.extend(j.refs.iter().cloned());
                good.push(job.path.clone());
            }
            Err(why) => {
                let kept = queue.set_aside(job).unwrap_or_else(|_| job.path.clone());
                damaged.push(format!("{}: {why}", kept.display()));
            }
        }
    }
    for d in &damaged {
        state::log(
            repo,
            started,
            &format!("push {} damaged job set aside: {d}", mirror.name),
        );
    }

    let mut summary = match Access::new(repo, config, &mirror.url, mirror.auth.as_deref()) {
        Ok(access) => sync(repo, &git.with_access(access), mirror, &named),
        Err(e) => RunSummary {
            error: Some(format!("{e:#}")),
            ..RunSummary::default()
        },
    };
    summary.damaged_jobs = damaged.len();
    let finished = SystemTime::now();
    // Jobs go only once a push they were folded into reached the mirror; a refused or
    // diverged ref is recorded and retried with the next push, not held in the queue.
    let queue_result = if summary.error.is_none() {
        queue.complete(&good)
    } else {
        queue.release(&good)
    };
    if let Err(e) = queue_result {
        summary.error.get_or_insert(format!("{e:#}"));
    }

    let _ = state::update(repo, &mirror.name, |s| record(s, &summary, finished));
    state::log(
        repo,
        finished,
        &format!(
            "push {} {} pushed={} deleted={} up_to_date={} divergent={} refused={} jobs={} damaged={} {:.3}s{}",
            mirror.name,
            if summary.ok() { "finished" } else { "failed" },
            summary.pushed,
            summary.deleted,
            summary.up_to_date,
            summary.divergent.len(),
            summary.refused.len(),
            good.len(),
            damaged.len(),
            clock.elapsed().as_secs_f64(),
            summary.problem().map(|p| format!(" error: {p}")).unwrap_or_default()
        ),
    );
    summary
}

fn record(s: &mut MirrorState, summary: &RunSummary, at: SystemTime) {
    match summary.problem() {
        None => {
            s.finished(at);
            s.next_update_at = None;
        }
        Some(problem) => {
            if summary.error.is_some() {
                s.failed(at, problem);
            } else {
                // The mirror was reached and took what it would; refused and diverged
                // refs are retried with the next push, so they must not lengthen the
                // backoff of a later outage.
                s.failed_uncounted(at, problem);
            }
            s.divergent_refs = summary.divergent.clone();
            s.next_update_at = summary.error.as_ref().map(|_| {
                state::timestamp(schedule::later(
                    at,
                    schedule::push_backoff(s.consecutive_failures),
                ))
            });
        }
    }
}

/// Makes the mirror's refs equal to ours: list theirs, compute the difference, push it
/// with leases; again if the mirror moved meanwhile or a ref was locked there.
fn sync(repo: &Path, git: &Git, mirror: &PushMirror, named: &BTreeSet<String>) -> RunSummary {
    let mut summary = RunSummary::default();
    if let Err(error) = attempt_sync(repo, git, mirror, named, &mut summary) {
        summary.error = Some(error);
    }
    summary
}

/// The attempts of [`sync`], each adding to `summary`; `Err` is the run's error.
fn attempt_sync(
    repo: &Path,
    git: &Git,
    mirror: &PushMirror,
    named: &BTreeSet<String>,
    summary: &mut RunSummary,
) -> Result<(), String> {
    for attempt in 1..=ATTEMPTS {
        let plan = list_and_plan(repo, git, mirror, named)?;
        summary.divergent = plan.divergent;
        summary.skipped = plan.skipped;
        summary.up_to_date = plan.up_to_date;
        if plan.updates.is_empty() {
            return Ok(());
        }
        let (report, stderr) = push_updates(git, mirror, &plan.updates)?;
        let retry = tally(&plan.updates, &report, &stderr, summary);
        if !retry {
            return Ok(());
        }
        if attempt == ATTEMPTS {
            return Err(gave_up(summary));
        }
    }
    Ok(())
}

/// Lists the mirror's refs and ours, and plans the push between them.
fn list_and_plan(
    repo: &Path,
    git: &Git,
    mirror: &PushMirror,
    named: &BTreeSet<String>,
) -> Result<Plan, String> {
    let remote = match git.ls_remote_symrefs(&mirror.url, mirror.timeout) {
        Ok(listing) => listing,
        Err(e @ GitError::Spawn { .. }) => return Err(format!("{:#}", anyhow::Error::from(e))),
        Err(e) => return Err(format!("cannot list the mirror's refs: {e}")),
    };
    let (local, refs) = Repo::open(repo)
        .and_then(|r| r.refs().map(|refs| (r, refs)))
        .map_err(|e| format!("{e:#}"))?;
    let ancestor = |a: &str, d: &str| local.is_ancestor(a, d).unwrap_or(false);
    Ok(plan(&refs, &remote, mirror, named, &ancestor))
}

/// Pushes the planned updates; the report of a push that reached the mirror, with git's
/// stderr.
fn push_updates(
    git: &Git,
    mirror: &PushMirror,
    updates: &[LeasedUpdate],
) -> Result<(PushReport, String), String> {
    let output = git
        .push(
            &mirror.url,
            updates,
            &PushSettings::default(),
            mirror.timeout,
            &mut |_| {},
        )
        .map_err(|e| format!("{e:#}"))?;
    let report = PushReport::parse(&output.stdout);
    if output.timed_out {
        return Err(format!(
            "the push did not finish within {} (timeout)",
            humantime::format_duration(mirror.timeout)
        ));
    }
    if !report.reached {
        return Err(output.complaint());
    }
    Ok((report, output.stderr))
}

/// Counts what the mirror took into `summary` and lists what it refused (replacing the
/// previous attempt's list); whether a retry can fix a refusal.
fn tally(
    updates: &[LeasedUpdate],
    report: &PushReport,
    stderr: &str,
    summary: &mut RunSummary,
) -> bool {
    let mut retry = false;
    summary.refused.clear();
    for u in updates {
        match report.refs.get(&u.name) {
            Some(status) if status.flag == Flag::Deleted => summary.deleted += 1,
            Some(status) if status.flag == Flag::UpToDate => {}
            Some(status) if status.flag.accepted() => summary.pushed += 1,
            Some(status) => {
                retry |= status.refusal().is_transient(stderr);
                let reason = status.reason.as_ref().unwrap_or(&status.summary);
                summary.refused.push((u.name.clone(), reason.clone()));
            }
            None => {
                retry = true;
                summary
                    .refused
                    .push((u.name.clone(), "no report from git".to_owned()));
            }
        }
    }
    retry
}

/// The error of a run whose last attempt still met refusals a retry could fix.
fn gave_up(summary: &mut RunSummary) -> String {
    let list: Vec<String> = summary
        .refused
        .iter()
        .map(|(r, why)| format!("{r} ({why})"))
        .collect();
    summary.refused.clear();
    format!(
        "the mirror kept changing or had refs locked after {ATTEMPTS} attempts: {}",
        list.join(", ")
    )
}

/// The difference between our refs and the mirror's.
#[derive(Debug, Default)]
struct Plan {
    updates: Vec<LeasedUpdate>,
    divergent: Vec<String>,
    skipped: Vec<(String, String)>,
    up_to_date: usize,
}

/// Symbolic refs on the mirror are never pushed to nor deleted: receive-pack follows
/// them, so either would change (or delete) their target instead.
fn plan(
    local: &BTreeMap<String, String>,
    listing: &RemoteListing,
    mirror: &PushMirror,
    named: &BTreeSet<String>,
    is_ancestor: &dyn Fn(&str, &str) -> bool,
) -> Plan {
    let mut plan = Plan::default();
    let remote = &listing.refs;
    for (name, id) in local.iter().filter(|(n, _)| mirror.refs.matches(n)) {
        let theirs = remote.get(name);
        if let Some(target) = listing.symrefs.get(name) {
            if theirs != Some(id) {
                plan.skipped.push((
                    name.clone(),
                    format!("a symbolic ref to {target} there; pushing to it would move {target}"),
                ));
            } else {
                plan.up_to_date += 1;
            }
            continue;
        }
        if theirs == Some(id) {
            plan.up_to_date += 1;
            continue;
        }
        if let Some(theirs) = theirs {
            let fast_forward = is_ancestor(theirs, id);
            if mirror.keep_divergent_refs && !fast_forward {
                plan.divergent.push(name.clone());
                continue;
            }
        }
        plan.updates.push(LeasedUpdate {
            name: name.clone(),
            expect: theirs.cloned(),
            new: Some(id.clone()),
        });
    }
    for (name, theirs) in remote.iter().filter(|(n, _)| {
        mirror.refs.matches(n) && !local.contains_key(*n) && !listing.symrefs.contains_key(*n)
    }) {
        let deleted_here = named.contains(name);
        let delete = match mirror.prune {
            Prune::Off => false,
            Prune::Deleted => deleted_here,
            // Refs only the mirror has are someone else's under keep_divergent_refs.
            Prune::All => deleted_here || !mirror.keep_divergent_refs,
        };
        if delete {
            plan.updates.push(LeasedUpdate {
                name: name.clone(),
                expect: Some(theirs.clone()),
                new: None,
            });
        }
    }
    if mirror.prune == Prune::All && !mirror.keep_divergent_refs {
        // An exact copy would delete these, but no push can name them.
        for name in listing
            .undecodable
            .iter()
            .filter(|n| mirror.refs.matches(n))
        {
            plan.skipped.push((
                name.clone(),
                "its name is not valid UTF-8 (shown escaped), so no push can delete it; delete it on the mirror by hand".to_owned(),
            ));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refs::RefPatterns;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    fn mirror(prune: Prune, keep_divergent_refs: bool) -> PushMirror {
        PushMirror {
            name: "m".to_owned(),
            url: crate::url::RemoteUrl::parse("/srv/git/m.git", std::path::Path::new("/")).unwrap(),
            refs: RefPatterns::heads_and_tags(),
            keep_divergent_refs,
            prune,
            auth: None,
            timeout: std::time::Duration::from_secs(60),
        }
    }

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
            .collect()
    }

    fn listing(pairs: &[(&str, &str)], symrefs: &[(&str, &str)]) -> RemoteListing {
        RemoteListing {
            refs: refs(pairs),
            symrefs: refs(symrefs),
            undecodable: Vec::new(),
        }
    }

    /// `REF EXPECT -> NEW` per update (`-` for none).
    fn lines(plan: &Plan) -> Vec<String> {
        plan.updates
            .iter()
            .map(|u| {
                format!(
                    "{} {} -> {}",
                    u.name,
                    u.expect.as_deref().unwrap_or("-"),
                    u.new.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    #[test]
    fn mirror_refs_are_made_ours_with_a_lease_on_what_was_listed() {
        let local = refs(&[
            ("refs/heads/main", B),
            ("refs/heads/new", A),
            ("refs/heads/same", A),
            ("refs/notes/x", A),
        ]);
        let there = listing(&[("refs/heads/main", A), ("refs/heads/same", A)], &[]);
        let never = |_: &str, _: &str| false;
        let plan = plan(
            &local,
            &there,
            &mirror(Prune::Deleted, false),
            &BTreeSet::new(),
            &never,
        );
        assert_eq!(
            lines(&plan),
            [
                format!("refs/heads/main {A} -> {B}"),
                format!("refs/heads/new - -> {A}"),
            ]
        );
        assert_eq!(plan.up_to_date, 1);
    }

    #[test]
    fn prune_deletes_what_was_deleted_here_and_all_also_what_only_the_mirror_has() {
        let local = refs(&[("refs/heads/main", A)]);
        let there = listing(
            &[
                ("refs/heads/main", A),
                ("refs/heads/gone", B),
                ("refs/heads/theirs", C),
            ],
            &[],
        );
        let named: BTreeSet<String> = ["refs/heads/gone".to_owned()].into();
        let never = |_: &str, _: &str| false;
        let off = plan(&local, &there, &mirror(Prune::Off, false), &named, &never);
        assert!(off.updates.is_empty());
        let deleted = plan(
            &local,
            &there,
            &mirror(Prune::Deleted, false),
            &named,
            &never,
        );
        assert_eq!(lines(&deleted), [format!("refs/heads/gone {B} -> -")]);
        let all = plan(&local, &there, &mirror(Prune::All, false), &named, &never);
        assert_eq!(
            lines(&all),
            [
                format!("refs/heads/gone {B} -> -"),
                format!("refs/heads/theirs {C} -> -"),
            ]
        );
        // Under keep_divergent_refs, refs only the mirror has are someone else's.
        let kept = plan(&local, &there, &mirror(Prune::All, true), &named, &never);
        assert_eq!(lines(&kept), [format!("refs/heads/gone {B} -> -")]);
    }

    #[test]
    fn keep_divergent_refs_skips_what_is_not_a_fast_forward() {
        let local = refs(&[("refs/heads/ff", B), ("refs/heads/diverged", B)]);
        let there = listing(&[("refs/heads/ff", A), ("refs/heads/diverged", C)], &[]);
        let ancestor = |a: &str, d: &str| a == A && d == B;
        let kept = plan(
            &local,
            &there,
            &mirror(Prune::Deleted, true),
            &BTreeSet::new(),
            &ancestor,
        );
        assert_eq!(lines(&kept), [format!("refs/heads/ff {A} -> {B}")]);
        assert_eq!(kept.divergent, ["refs/heads/diverged"]);
        let forced = plan(
            &local,
            &there,
            &mirror(Prune::Deleted, false),
            &BTreeSet::new(),
            &ancestor,
        );
        assert_eq!(forced.updates.len(), 2);
    }

    #[test]
    fn symbolic_refs_on_the_mirror_are_never_pushed_to_nor_deleted() {
        let local = refs(&[("refs/heads/main", B), ("refs/heads/current", B)]);
        let there = listing(
            &[
                ("refs/heads/main", A),
                ("refs/heads/current", A),
                ("refs/heads/alias", A),
            ],
            &[
                ("refs/heads/current", "refs/heads/main"),
                ("refs/heads/alias", "refs/heads/main"),
            ],
        );
        let never = |_: &str, _: &str| false;
        let plan = plan(
            &local,
            &there,
            &mirror(Prune::All, false),
            &BTreeSet::new(),
            &never,
        );
        assert_eq!(lines(&plan), [format!("refs/heads/main {A} -> {B}")]);
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].0, "refs/heads/current");
    }
}
