//! The pure core of a pull: given the refs here, the upstream's, and what the pull knows
//! besides, decide ref by ref what one transaction would change. No I/O.

use crate::config::{Prune, Pull};
use crate::refs::RefUpdate;
use std::collections::{BTreeMap, BTreeSet};

/// What one transaction would change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) updates: Vec<RefUpdate>,
    pub(super) divergent: Vec<String>,
    pub(super) unchanged: usize,
}

/// What the pull knows besides the two listings.
#[derive(Debug, Clone, Default)]
pub(super) struct Guards {
    /// Refs accepted here while the upstream could not be reached: the upstream has never
    /// seen them, so its values must not replace or delete them.
    pub(super) unforwarded: BTreeSet<String>,
    /// The value the upstream was last seen to hold, per ref: a ref here that equals it
    /// holds nothing of its own and follows the upstream, forced updates included.
    pub(super) seen: BTreeMap<String, String>,
    /// The branch HEAD points to: never pruned (git refuses to delete it, too).
    pub(super) head: Option<String>,
}

impl Guards {
    /// Whether `name`, here and not on the upstream, is one `prune` may delete: with
    /// `true`, only a ref the upstream had at an earlier run (and so deleted); with
    /// `"all"`, any.
    pub(super) fn may_prune(&self, name: &str, prune: Prune) -> bool {
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
pub(super) fn plan(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Interval;
    use crate::pull::apply::command;
    use crate::refs::RefPatterns;
    use std::path::Path;
    use std::time::Duration;

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
            webhook_secret_file: None,
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
}
