//! Two-phase pushes a dead process left unfinished (an intent journal in `mirror/journal/`):
//! the lock files of its killed `git update-ref` removed, the upstream asked, and what it
//! holds for their refs applied here with a lease. Run by the next push, pull and sweep.

use crate::auth::Access;
use crate::config::Config;
use crate::git::Git;
use crate::journal::{self, IntentRef, Orphan};
use crate::lock::Lock;
use crate::refs::{self, UpdateKind};
use crate::state;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Past `upstream.timeout` after the upstream was asked, how long to go on expecting
/// that it may still apply a push whose asking process died.
const LATE_MARGIN: Duration = Duration::from_secs(10);

/// What [`finish`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Journals finished and removed.
    pub finished: usize,
    /// Journals left for a later run (it said why).
    pub left: usize,
}

/// Finishes every journal whose process is dead. Costs one directory read when there is
/// none. Each step is logged, and each line handed to `say` too.
pub fn finish(repo: &Path, config: &Config, say: &mut dyn FnMut(&str)) -> Finished {
    let mut done = Finished::default();
    let left = journal::left(repo);
    let mut tell = |line: String| {
        state::log(repo, SystemTime::now(), &line);
        say(&line);
    };
    for unreadable in &left.unreadable {
        tell(format!(
            "an intent journal cannot be read, and is left alone: {unreadable}"
        ));
    }
    if left.orphans.is_empty() {
        return done;
    }
    for mut orphan in left.orphans {
        // Another recovery (a push and the sweep at once) may be at it.
        let Ok(Some(_guard)) = Lock::try_acquire(&orphan.path.with_extension("lock")) else {
            done.left += 1;
            continue;
        };
        if !orphan.path.exists() {
            continue;
        }
        match finish_one(repo, config, &mut orphan, &mut tell) {
            Ok(()) => {
                let lock = orphan.path.with_extension("lock");
                // The journal goes first: a recovery that takes the lock file after it
                // went finds no journal, and does nothing.
                match orphan.finished() {
                    Ok(()) => {
                        done.finished += 1;
                        let _ = std::fs::remove_file(lock);
                    }
                    Err(e) => {
                        tell(format!("{e:#}"));
                        done.left += 1;
                    }
                }
            }
            Err(why) => {
                tell(format!(
                    "two-phase recovery: the intent journal of the push of process {} begun {} is not finished yet: {why}",
                    orphan.pid(),
                    state::timestamp(orphan.written()),
                ));
                done.left += 1;
            }
        }
    }
    done
}

fn finish_one(
    repo: &Path,
    config: &Config,
    orphan: &mut Orphan,
    tell: &mut dyn FnMut(String),
) -> Result<(), String> {
    let released = orphan.release_locks(repo);
    for line in released.said {
        tell(format!("two-phase recovery: {line}"));
    }
    if released.pending {
        return Err("a lock file it may have left cannot be judged yet".to_owned());
    }
    orphan.forget_locks();
    let refs = &orphan.intent.refs;
    let Some(upstream) = &config.upstream else {
        tell(format!(
            "two-phase recovery: the push of process {} to {} is dropped: mirror.toml has no [upstream] any more",
            orphan.pid(),
            names(refs)
        ));
        return Ok(());
    };
    let access = Access::new(repo, config, &upstream.url, upstream.auth.as_deref())
        .map_err(|e| format!("{e:#}"))?;
    let git = Git::new(repo)
        .map_err(|e| format!("{e:#}"))?
        .with_access(access);
    let wanted: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    let there = git
        .ls_remote(&upstream.url, &wanted, upstream.timeout)
        .map_err(|e| format!("the upstream cannot be asked: {e}"))?
        .refs;
    let here = git.local_refs(&wanted).map_err(|e| format!("{e:#}"))?;
    let plan = plan(refs, &here, &there);
    // The upstream was asked and still holds the old values: it may yet apply the push
    // (atomic: all of it or none), as a dead hook's upstream push goes on at the other
    // end until it gives up.
    if let Some(asked) = orphan.asked().filter(|_| plan.never_landed) {
        let settles_at = asked + upstream.timeout + LATE_MARGIN;
        if SystemTime::now() < settles_at {
            return Err(format!(
                "the upstream may still apply it until {}",
                state::timestamp(settles_at)
            ));
        }
    }
    apply(repo, &git, &plan)?;
    let seen: Vec<(&String, Option<&String>)> = plan
        .settled
        .iter()
        .map(|name| (*name, there.get(*name)))
        .collect();
    // Equal on both sides: nothing of it waits to be forwarded any more.
    crate::ledger::change(repo, |ledger| {
        for (name, id) in &seen {
            ledger.forwarded(name, id.map(String::as_str));
        }
    })
    .map_err(|e| format!("{e:#}"))?;
    tell(format!(
        "two-phase recovery: finished the intent journal of the push of process {} begun {}: {}",
        orphan.pid(),
        state::timestamp(orphan.written()),
        plan.said.join("; ")
    ));
    Ok(())
}

/// Applies here what the upstream took (one transaction, each ref leased on its value
/// here) and tells the push mirrors and chained hooks about it.
fn apply(repo: &Path, git: &Git, plan: &Plan<'_>) -> Result<(), String> {
    if !plan.applied.is_empty() {
        let output = git
            .update_refs(
                &plan.commands(),
                "mirror-hooks: finish a two-phase push",
                LOCAL_TIMEOUT,
            )
            .map_err(|e| format!("{e:#}"))?;
        if !output.success() {
            return Err(format!(
                "applying the upstream's values here failed: {}",
                output.complaint()
            ));
        }
        // Applied here other than by a push: the push mirrors and the chained
        // post-receive hooks hear of it as of a push.
        crate::announce::announce(repo, &plan.applied, "two-phase recovery");
    }
    Ok(())
}

/// What to do for the journal's refs, given their values here and on the upstream.
#[derive(Debug, Default)]
struct Plan<'a> {
    /// The upstream's values to apply here, each from the value here (its lease).
    applied: Vec<crate::refs::RefUpdate>,
    /// Refs equal on both sides once the commands ran.
    settled: Vec<&'a String>,
    /// Some ref still holds, on both sides, the value from before the push.
    never_landed: bool,
    said: Vec<String>,
}

/// The upstream took the push (it holds the pushed value, and this side still the old
/// one): apply it here. It holds the old value: the push never landed, nothing to do.
/// Anything else (it moved on, or this side did) is the pull's to judge, as always.
fn plan<'a>(
    refs: &'a [IntentRef],
    here: &BTreeMap<String, String>,
    there: &BTreeMap<String, String>,
) -> Plan<'a> {
    let mut plan = Plan::default();
    let value = |id: &String| (!refs::is_zero(id)).then(|| id.clone());
    for r in refs {
        let (old, new) = (value(&r.old), value(&r.new));
        let (ours, theirs) = (here.get(&r.name).cloned(), there.get(&r.name).cloned());
        if ours == theirs {
            plan.never_landed |= ours == old && old != new;
            plan.settled.push(&r.name);
            plan.said
                .push(format!("{} is the same on both sides", r.name));
        } else if theirs == new && ours == old {
            let zero = || "0".repeat(r.old.len().max(r.new.len()));
            plan.applied.push(crate::refs::RefUpdate {
                old: ours.clone().unwrap_or_else(zero),
                new: theirs.clone().unwrap_or_else(zero),
                name: r.name.clone(),
            });
            plan.settled.push(&r.name);
            plan.said
                .push(format!("the upstream took {}, now applied here", r.name));
        } else {
            plan.said.push(format!(
                "{} moved since (here {}, upstream {}); the pull settles it",
                r.name,
                ours.as_deref().map_or("none", refs::short),
                theirs.as_deref().map_or("none", refs::short)
            ));
        }
    }
    plan
}

impl Plan<'_> {
    /// The `update-ref --stdin` lines of [`Plan::applied`].
    fn commands(&self) -> Vec<String> {
        self.applied
            .iter()
            .map(|u| match u.kind() {
                UpdateKind::Create => format!("create {} {}", u.name, u.new),
                UpdateKind::Delete => format!("delete {} {}", u.name, u.old),
                UpdateKind::Update => format!("update {} {} {}", u.name, u.new, u.old),
            })
            .collect()
    }
}

fn names(refs: &[IntentRef]) -> String {
    let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(name: &str, old: &str, new: &str) -> IntentRef {
        IntentRef {
            name: name.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn what_the_upstream_took_is_applied_and_what_it_never_got_is_left() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let zero = "0".repeat(40);
        let refs = vec![
            intent("refs/heads/took", &a, &b),
            intent("refs/heads/never", &a, &b),
            intent("refs/heads/moved", &a, &b),
            intent("refs/heads/created", &zero, &b),
        ];
        let here = map(&[
            ("refs/heads/took", &a),
            ("refs/heads/never", &a),
            ("refs/heads/moved", &a),
        ]);
        let there = map(&[
            ("refs/heads/took", &b),
            ("refs/heads/never", &a),
            ("refs/heads/moved", &c),
            ("refs/heads/created", &b),
        ]);
        let plan = plan(&refs, &here, &there);
        assert_eq!(
            plan.commands(),
            vec![
                format!("update refs/heads/took {b} {a}"),
                format!("create refs/heads/created {b}"),
            ]
        );
        let settled: Vec<&str> = plan.settled.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            settled,
            ["refs/heads/took", "refs/heads/never", "refs/heads/created"]
        );
    }
}
