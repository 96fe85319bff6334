//! How the upstream answered a forwarded push: read from git's porcelain report
//! ([`judge`]), then made certain where the upstream's refs tell ([`settle`]).

use crate::config::Upstream;
use crate::git::{Cause, Git, RunOutput};
use crate::porcelain::{Flag, PushReport, Reason};
use crate::refs::{self, RefUpdate};
use std::collections::BTreeMap;
use std::time::Duration;

/// How the upstream answered.
#[derive(Debug)]
pub(super) enum Answer {
    Accepted,
    /// Refused refs and why. `maybe_late`: we gave up waiting and the upstream still
    /// held the old values, but it may yet apply the push.
    Refused {
        reasons: BTreeMap<String, Reason>,
        maybe_late: bool,
    },
    /// No connection (or no permission): nothing was pushed. `cause` says whether
    /// retrying can help (it cannot for a refused key, no such repository).
    Unreachable {
        why: String,
        cause: Cause,
    },
    /// We cannot tell whether the push landed.
    Unknown(String),
}

impl Answer {
    fn refused(reasons: BTreeMap<String, Reason>) -> Answer {
        Answer::Refused {
            reasons,
            maybe_late: false,
        }
    }
}

/// Turns an answer that is not yet certain into a certain one where the upstream's refs
/// tell.
pub(super) fn settle(
    git: &Git,
    upstream: &Upstream,
    updates: &[&RefUpdate],
    answer: Answer,
) -> Answer {
    match answer {
        Answer::Unknown(why) => resolve_unknown(git, upstream, updates, why),
        // The connection may have died after the upstream applied the push: look
        // before saying that nothing changed. A lasting failure (a refused key, no
        // such repository) would only fail again.
        Answer::Unreachable {
            why,
            cause: cause @ Cause::Transient { .. },
        } => match upstream_state(git, upstream, updates) {
            UpstreamState::New => Answer::Accepted,
            UpstreamState::Mixed => mixed(&why),
            UpstreamState::Old | UpstreamState::Unlisted => Answer::Unreachable { why, cause },
        },
        // A lease fails when the upstream already holds what we push (a retry after a
        // lost answer, a deletion done before): that is success, not a conflict.
        Answer::Refused {
            reasons,
            maybe_late: false,
        } if reasons
            .values()
            .all(|r| matches!(r, Reason::StaleInfo | Reason::AtomicPushFailed)) =>
        {
            match upstream_state(git, upstream, updates) {
                UpstreamState::New => Answer::Accepted,
                _ => Answer::refused(reasons),
            }
        }
        other => other,
    }
}

/// Reads what git said about the push of `updates`.
pub(super) fn judge(output: &RunOutput, updates: &[&RefUpdate], timeout: Duration) -> Answer {
    let report = PushReport::parse(&output.stdout);
    if output.timed_out {
        return Answer::Unknown(format!(
            "it did not answer within {} (upstream.timeout)",
            humantime::format_duration(timeout)
        ));
    }
    if !report.reached {
        return Answer::Unreachable {
            why: output.complaint(),
            cause: output.cause(),
        };
    }
    let mut refused = BTreeMap::new();
    let mut missing = false;
    for u in updates {
        match report.refs.get(&u.name) {
            Some(status) if status.flag == Flag::Rejected => {
                refused.insert(u.name.clone(), status.refusal());
            }
            Some(_) => {}
            None => missing = true,
        }
    }
    if !refused.is_empty() {
        return Answer::refused(refused);
    }
    if missing || !report.done || !output.success() {
        return Answer::Unknown(format!(
            "git push {} with an incomplete report",
            output.describe_end()
        ));
    }
    Answer::Accepted
}

/// Where the upstream's refs stand, as listed after the push.
enum UpstreamState {
    /// Every ref holds the new value: the push landed.
    New,
    /// Every ref holds the old value: nothing landed.
    Old,
    /// Anything else.
    Mixed,
    /// The refs could not be listed.
    Unlisted,
}

/// Lists the updated refs on the upstream and compares them with the push.
fn upstream_state(git: &Git, upstream: &Upstream, updates: &[&RefUpdate]) -> UpstreamState {
    let names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).collect();
    let Ok(listing) = git.ls_remote(&upstream.url, &names, upstream.timeout) else {
        return UpstreamState::Unlisted;
    };
    let values = listing.refs;
    // A ref that is not listed is at the zero id.
    let at = |u: &RefUpdate, id: &str| match values.get(&u.name) {
        Some(value) => value == id,
        None => refs::is_zero(id),
    };
    if updates.iter().all(|u| at(u, &u.new)) {
        UpstreamState::New
    } else if updates.iter().all(|u| at(u, &u.old)) {
        UpstreamState::Old
    } else {
        UpstreamState::Mixed
    }
}

fn mixed(why: &str) -> Answer {
    Answer::Unknown(format!(
        "{why}; afterwards its refs matched neither the old nor the new values"
    ))
}

/// A push we lost track of may still have landed: ask the upstream where the refs are.
fn resolve_unknown(git: &Git, upstream: &Upstream, updates: &[&RefUpdate], why: String) -> Answer {
    match upstream_state(git, upstream, updates) {
        UpstreamState::New => Answer::Accepted,
        // Over a network the upstream may still be working on it after we gave up.
        UpstreamState::Old => Answer::Refused {
            reasons: updates
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        Reason::Other(format!("not taken so far: {why}; the upstream may still apply it late, and the next pull from it would bring it here")),
                    )
                })
                .collect(),
            maybe_late: true,
        },
        UpstreamState::Mixed => mixed(&why),
        UpstreamState::Unlisted => Answer::Unknown(format!(
            "{why}, and listing its refs afterwards failed too"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";
    const TIMEOUT: Duration = Duration::from_secs(60);

    fn update(name: &str, old: &str, new: &str) -> RefUpdate {
        RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        }
    }

    fn ran(code: i32, stdout: &str, stderr: &str) -> RunOutput {
        RunOutput {
            status: Some(std::process::ExitStatus::from_raw(code << 8)),
            timed_out: false,
            stdout: stdout.as_bytes().to_vec(),
            stdout_incomplete: false,
            stderr: stderr.to_owned(),
        }
    }

    fn judged(out: &RunOutput) -> Answer {
        let main = update("refs/heads/main", A, B);
        let tag = update("refs/tags/v1", ZERO, B);
        judge(out, &[&main, &tag], TIMEOUT)
    }

    #[test]
    fn every_ref_taken_and_done_is_accepted() {
        let out = ran(
            0,
            "To up\n \tB:refs/heads/main\tA..B\n*\tB:refs/tags/v1\t[new tag]\nDone\n",
            "",
        );
        assert!(matches!(judged(&out), Answer::Accepted));
        // `=` (up to date) is accepted too: a retry of a push that landed.
        let out = ran(
            0,
            "To up\n=\tB:refs/heads/main\t[up to date]\n=\tB:refs/tags/v1\t[up to date]\nDone\n",
            "",
        );
        assert!(matches!(judged(&out), Answer::Accepted));
    }

    #[test]
    fn refusals_are_read_by_ref_in_any_order_as_reasons() {
        let out = ran(
            1,
            "To up\n!\tB:refs/tags/v1\t[rejected] (atomic push failed)\n!\tB:refs/heads/main\t[rejected] (stale info)\nDone\n",
            "",
        );
        let Answer::Refused {
            reasons,
            maybe_late,
        } = judged(&out)
        else {
            panic!("not refused");
        };
        assert!(!maybe_late);
        assert_eq!(reasons["refs/heads/main"], Reason::StaleInfo);
        assert_eq!(reasons["refs/tags/v1"], Reason::AtomicPushFailed);
        let out = ran(
            1,
            "To up\n!\tB:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n!\tB:refs/tags/v1\t[remote rejected] (atomic push failure)\nDone\n",
            "",
        );
        let Answer::Refused { reasons, .. } = judged(&out) else {
            panic!("not refused");
        };
        assert_eq!(
            reasons["refs/heads/main"],
            Reason::Other("pre-receive hook declined".to_owned())
        );
        assert_eq!(reasons["refs/tags/v1"], Reason::AtomicPushFailed);
    }

    #[test]
    fn no_to_line_is_unreachable_and_says_whether_retrying_helps() {
        let out = ran(
            128,
            "",
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n",
        );
        assert!(matches!(
            judged(&out),
            Answer::Unreachable {
                cause: Cause::Transient { .. },
                ..
            }
        ));
        let out = ran(
            128,
            "",
            "git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.\n",
        );
        assert!(matches!(
            judged(&out),
            Answer::Unreachable {
                cause: Cause::Lasting(crate::git::Lasting {
                    why: "authentication refused",
                    ..
                }),
                ..
            }
        ));
    }

    #[test]
    fn a_timeout_or_an_incomplete_report_is_an_unknown_outcome() {
        let mut out = ran(0, "To up\n \tB:refs/heads/main\tA..B\n", "");
        out.timed_out = true;
        assert!(matches!(judged(&out), Answer::Unknown(_)));
        // No `Done`, and a ref missing from the report.
        let out = ran(0, "To up\n \tB:refs/heads/main\tA..B\n", "");
        assert!(matches!(judged(&out), Answer::Unknown(_)));
    }

    #[test]
    fn push_options_refused_before_anything_was_sent_are_recognised() {
        let out = ran(
            128,
            "",
            "fatal: the receiving end does not support push options\nfatal: the remote end hung up unexpectedly\n",
        );
        assert!(out.refused_push_options());
        let out = ran(
            1,
            "To up\nDone\n",
            "fatal: the receiving end does not support push options\n",
        );
        assert!(!out.refused_push_options(), "it was reached: not that");
    }
}
