//! What the pusher is told about the outcome: every refusal is one [`Refusal`] value and
//! every acceptance one [`Accepted`], each rendered here, in one place.

use super::{CatchUp, Pusher, Verdict};
use crate::git::Lasting;
use crate::porcelain::Reason;
use crate::refs::{self, RefUpdate, UpdateKind};
use std::collections::{BTreeMap, BTreeSet};

/// How a push was accepted.
#[derive(Debug)]
pub(super) enum Accepted {
    /// Nothing to forward (no `mirror.toml`, no `[upstream]`, no allowlisted ref).
    Quietly,
    /// The upstream `url` took the refs `names`.
    Forwarded { url: String, names: String },
    /// Accepted without forwarding (`on_unreachable = "accept"`) after `error`.
    Offline { error: String, names: Vec<String> },
}

/// Why a push was refused; nothing was changed here.
#[derive(Debug)]
pub(super) enum Refusal {
    /// A failure of ours (bad hook input, git not runnable), in `{e:#}` form.
    Failed(String),
    /// A chained pre-receive hook (`pre-receive.d/{name}`) ended so.
    ChainedHook {
        name: String,
        status: std::process::ExitStatus,
    },
    /// The chained hooks could not be run.
    Chain(String),
    /// `mirror.toml` is broken (fail closed).
    Config(String),
    /// A pushed ref lies under the refs kept for mirror-hooks' own use.
    Reserved(String),
    /// The local rules refused it; [`crate::rules::check`] has told the pusher why.
    Rules,
    /// Mirroring is paused for maintenance (`git mirror pause`): these allowlisted refs
    /// cannot be forwarded, and accepting them here would diverge.
    Paused(Vec<String>),
    /// The upstream's credentials are not usable.
    Credentials(String),
    /// More refs than one atomic push can carry.
    TooMany(usize),
    /// The upstream refused refs (`reasons`, by name) of `updates`. `offline`: those
    /// accepted here while it was away; `maybe_late`: it may still apply the push.
    Upstream {
        updates: Vec<RefUpdate>,
        reasons: BTreeMap<String, Reason>,
        offline: BTreeSet<String>,
        maybe_late: bool,
        caught_up: Option<CatchUp>,
    },
    /// The upstream cannot be used, and retrying will not help.
    Lasting { error: String, lasting: Lasting },
    /// The upstream could not be reached (`on_unreachable = "reject"`).
    Unreachable { error: String },
    /// It could not be reached, and accepting it without it could not be recorded.
    Unrecorded { error: String, why: String },
    /// Whether the upstream took the push is unknown.
    Unknown { error: String, caught_up: CatchUp },
}

/// Tells the pusher how the push went; what the hook tells git.
pub(super) fn report(outcome: Result<Accepted, Refusal>, out: &mut dyn Pusher) -> Verdict {
    match outcome {
        Ok(accepted) => {
            accepted.say(out);
            Verdict::Accept
        }
        Err(refusal) => {
            refusal.say(out);
            match refusal {
                Refusal::Config(_) => Verdict::ConfigError,
                _ => Verdict::Refuse,
            }
        }
    }
}

impl Accepted {
    fn say(&self, out: &mut dyn Pusher) {
        match self {
            Accepted::Quietly => {}
            Accepted::Forwarded { url, names } => out.say(&format!(
                "mirror-hooks: the upstream {url} accepted {names}."
            )),
            Accepted::Offline { error, names } => {
                out.say(&format!("mirror-hooks: warning: {error}."));
                out.say(&format!(
                    "mirror-hooks: warning: accepted here WITHOUT forwarding {} (on_unreachable = \"accept\"); the upstream does not have it yet. The next pull, or the next push to it, forwards it.",
                    crate::text::name_list(names)
                ));
            }
        }
    }
}

impl Refusal {
    fn say(&self, out: &mut dyn Pusher) {
        match self {
            Refusal::Failed(e) => out.say(&format!("mirror-hooks: push refused: {e}.")),
            Refusal::ChainedHook { name, status } => out.say(&format!(
                "mirror-hooks: push refused by the chained hook pre-receive.d/{name} ({}); nothing was forwarded to the upstream.",
                crate::rules::describe_status(*status)
            )),
            Refusal::Chain(e) => out.say(&format!(
                "mirror-hooks: push refused: {e}; nothing was forwarded."
            )),
            Refusal::Config(e) => {
                out.say("mirror-hooks: push refused: mirror.toml is invalid, so this push cannot be forwarded safely.");
                out.say(&format!("mirror-hooks: {e}"));
                out.say("mirror-hooks: nothing was changed. A server administrator must fix mirror.toml (`git mirror doctor` explains).");
            }
            Refusal::Reserved(name) => out.say(&format!(
                "mirror-hooks: push refused: {name} is under {}, which mirror-hooks keeps for its own use; push it under another name.",
                crate::repo::PRIVATE_REFS
            )),
            // Already said, as the check went.
            Refusal::Rules => {}
            Refusal::Paused(names) => {
                out.say(&format!(
                    "mirror-hooks: push refused: {}: {} cannot be forwarded to the upstream now, and accepting {} here alone would diverge from it.",
                    crate::pause::REASON,
                    crate::text::name_list(names),
                    if names.len() == 1 { "it" } else { "them" }
                ));
                out.say("mirror-hooks: nothing was forwarded. Push again when the maintenance is over (a server administrator ends it with `git mirror resume`); refs the upstream does not mirror can be pushed meanwhile.");
            }
            Refusal::Credentials(e) => {
                out.say(&format!(
                    "mirror-hooks: push refused: the upstream's credentials are not usable: {e}."
                ));
                out.say("mirror-hooks: nothing was forwarded or changed. A server administrator must fix it (`git mirror doctor` explains).");
            }
            Refusal::TooMany(count) => {
                out.say(&format!(
                    "mirror-hooks: push refused: it updates {count} refs at once, more than one atomic push to the upstream can carry on this server's command line."
                ));
                out.say("mirror-hooks: nothing was forwarded or changed. Push them in smaller groups (for example a few thousand tags at a time).");
            }
            Refusal::Upstream {
                updates,
                reasons,
                offline,
                maybe_late,
                caught_up,
            } => explain_refusal(updates, reasons, offline, *maybe_late, *caught_up, out),
            Refusal::Lasting { error, lasting } => {
                out.say(&format!("mirror-hooks: push refused: {error}."));
                out.say(&format!(
                    "mirror-hooks: retrying will not help ({lasting}): a server administrator must fix this (`git mirror doctor` explains). Nothing was changed, here or on the upstream."
                ));
            }
            Refusal::Unreachable { error } => {
                out.say(&format!("mirror-hooks: push refused: {error}."));
                out.say("mirror-hooks: nothing was changed here. Try again later; if it persists, ask a server administrator (`git mirror doctor`).");
            }
            Refusal::Unrecorded { error, why } => {
                out.say(&format!("mirror-hooks: push refused: {error}."));
                out.say(&format!(
                    "mirror-hooks: it cannot be accepted without the upstream either: {why}."
                ));
            }
            Refusal::Unknown { error, caught_up } => {
                out.say(&format!("mirror-hooks: push refused: {error}."));
                match caught_up {
                    CatchUp::Done => out.say("mirror-hooks: the upstream may have taken part of it; this repository has just been updated from the upstream. Fetch and push again."),
                    CatchUp::Running => out.say("mirror-hooks: the upstream may have taken part of it; this repository is being updated from the upstream now. In a few seconds, fetch and push again."),
                    CatchUp::Failed => out.say("mirror-hooks: the upstream may have taken part of it, and this repository could not be updated from it just now; ask a server administrator to run `git mirror pull --now` here, then fetch and push again."),
                }
            }
        }
    }
}

/// The upstream's refusal, ref by ref, and what to do next.
fn explain_refusal(
    updates: &[RefUpdate],
    reasons: &BTreeMap<String, Reason>,
    offline: &BTreeSet<String>,
    maybe_late: bool,
    caught_up: Option<CatchUp>,
    out: &mut dyn Pusher,
) {
    out.say("mirror-hooks: push refused: the upstream did not accept it.");
    for u in updates {
        let Some(reason) = reasons.get(&u.name) else {
            continue;
        };
        let line = match reason {
            Reason::StaleInfo if offline.contains(&u.name) => format!(
                "{name} was accepted here while the upstream was away, and the upstream's {name} has moved since, so it cannot be forwarded as it is: a server administrator keeps one side with `git mirror resolve {name} --take here` (forwards this repository's) or `--take upstream`.",
                name = u.name
            ),
            Reason::StaleInfo if u.kind() == UpdateKind::Create => {
                format!("{} already exists on the upstream; fetch it first.", u.name)
            }
            Reason::StaleInfo => format!(
                "upstream {} moved: it is no longer at {}.",
                u.name,
                refs::short(&u.old)
            ),
            Reason::AtomicPushFailed => format!(
                "{} was not forwarded because another ref was refused (all or nothing).",
                u.name
            ),
            Reason::Other(other) => format!("the upstream refused {}: {other}.", u.name),
        };
        out.say(&format!("mirror-hooks:   {line}"));
    }
    if maybe_late {
        out.say("mirror-hooks: nothing was changed here.");
    } else {
        out.say("mirror-hooks: nothing was changed, here or on the upstream.");
    }
    match caught_up {
        None => {}
        Some(CatchUp::Done) => {
            out.say("mirror-hooks: this repository has just fetched the upstream's new commits.");
            out.say("mirror-hooks: next: fetch, rebase (or merge), push again.");
        }
        Some(CatchUp::Running) => {
            out.say("mirror-hooks: this repository is still fetching the upstream's new commits.");
            out.say("mirror-hooks: next: in a few seconds, fetch, rebase (or merge), push again.");
        }
        Some(CatchUp::Failed) => out.say("mirror-hooks: next: fetch, rebase (or merge), push again. This repository could not fetch the upstream's new commits just now: if your fetch brings nothing new, ask a server administrator to run `git mirror pull --now` here (`git mirror status` shows why)."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(outcome: Result<Accepted, Refusal>) -> (Verdict, Vec<String>) {
        let mut lines = Vec::new();
        let verdict = report(outcome, &mut |line: &str| lines.push(line.to_owned()));
        (verdict, lines)
    }

    #[test]
    fn a_broken_config_fails_closed_and_every_other_refusal_refuses() {
        let (verdict, lines) = told(Err(Refusal::Config("mirror.toml:1:1: bad".to_owned())));
        assert_eq!(verdict, Verdict::ConfigError);
        assert_eq!(lines[1], "mirror-hooks: mirror.toml:1:1: bad");
        let (verdict, lines) = told(Err(Refusal::TooMany(70000)));
        assert_eq!(verdict, Verdict::Refuse);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn what_was_said_already_or_nothing_to_say_is_not_repeated() {
        assert_eq!(told(Err(Refusal::Rules)), (Verdict::Refuse, Vec::new()));
        assert_eq!(told(Ok(Accepted::Quietly)), (Verdict::Accept, Vec::new()));
    }
}
