//! The pre-receive proxy: before this repository accepts a push, the allowlisted ref
//! updates go to the authoritative upstream in ONE atomic compare-and-swap push, and the
//! push is accepted here only if the upstream took it. The two copies cannot diverge.

use crate::chain;
use crate::config::{Config, OnUnreachable, Upstream};
use crate::git::{Cause, Git, LeasedUpdate, PushSettings, RunOutput};
use crate::hookenv::HookEnv;
use crate::porcelain::{Flag, PushReport, Reason};
use crate::refs::{self, RefUpdate, UpdateKind};
use crate::state;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Name of the upstream's status record.
pub const RECORD: &str = state::UPSTREAM_RECORD;

/// What the hook tells git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Refuse,
    /// Refused because `mirror.toml` is broken (fail closed).
    ConfigError,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Accept => 0,
            Verdict::Refuse => 1,
            Verdict::ConfigError => 2,
        }
    }
}

/// Where the proxy's words to the pusher go (stderr in the hook; a buffer in tests).
pub trait Pusher {
    fn say(&mut self, line: &str);
}

impl<F: FnMut(&str)> Pusher for F {
    fn say(&mut self, line: &str) {
        self(line)
    }
}

/// Runs the whole pre-receive hook for the repository and push that `env` describes,
/// with git's standard input `input`.
pub fn pre_receive(env: &HookEnv, input: &[u8], out: &mut dyn Pusher) -> Verdict {
    let repo = env.git_dir.as_path();
    let updates = match refs::parse_updates(input) {
        Ok(updates) => updates,
        Err(e) => {
            out.say(&format!("mirror-hooks: push refused: {e:#}."));
            return Verdict::Refuse;
        }
    };

    let chained = chain::chain_dir(repo, env.hook_dir.as_deref(), "pre-receive");
    match chain::run(repo, &chained, input, true) {
        Ok(failures) => {
            if let Some(f) = failures.first() {
                let name = f.program.file_name().unwrap_or_default().to_string_lossy();
                out.say(&format!(
                    "mirror-hooks: push refused by the chained hook pre-receive.d/{name} ({}); nothing was forwarded to the upstream.",
                    describe_status(f.status)
                ));
                return Verdict::Refuse;
            }
        }
        Err(e) => {
            out.say(&format!(
                "mirror-hooks: push refused: {e:#}; nothing was forwarded."
            ));
            return Verdict::Refuse;
        }
    }

    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return Verdict::Accept,
        Err(e) => {
            out.say("mirror-hooks: push refused: mirror.toml is invalid, so this push cannot be forwarded safely.");
            out.say(&format!("mirror-hooks: {e}"));
            out.say("mirror-hooks: nothing was changed. A server administrator must fix mirror.toml (`git mirror doctor` explains).");
            return Verdict::ConfigError;
        }
    };
    if let Some(reserved) = updates
        .iter()
        .find(|u| u.name.starts_with(crate::repo::PRIVATE_REFS))
    {
        out.say(&format!(
            "mirror-hooks: push refused: {} is under {}, which mirror-hooks keeps for its own use; push it under another name.",
            reserved.name,
            crate::repo::PRIVATE_REFS
        ));
        return Verdict::Refuse;
    }
    let Some(upstream) = &config.upstream else {
        return Verdict::Accept;
    };

    let quarantine = env.quarantine.as_ref();
    if crate::rules::check(repo, quarantine, &updates, &mut |line: &str| out.say(line)).is_err() {
        return Verdict::Refuse;
    }

    let forwarded: Vec<&RefUpdate> = updates
        .iter()
        .filter(|u| upstream.refs.matches(&u.name))
        .collect();
    if forwarded.is_empty() {
        return Verdict::Accept;
    }
    let access = match crate::auth::Access::new(
        repo,
        &config,
        &upstream.url,
        upstream.auth.as_deref(),
    ) {
        Ok(access) => access,
        Err(e) => {
            out.say(&format!(
                "mirror-hooks: push refused: the upstream's credentials are not usable: {e:#}."
            ));
            out.say("mirror-hooks: nothing was forwarded or changed. A server administrator must fix it (`git mirror doctor` explains).");
            return Verdict::Refuse;
        }
    };
    forward(env, upstream, access, &forwarded, out)
}

/// How the upstream answered.
#[derive(Debug)]
enum Answer {
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

/// The pushed updates as the upstream sees them: a ref accepted here while the upstream
/// was away has, on the upstream, the value it held when that push began, and that is
/// what its lease must name. Also: which of them are such refs.
fn upstream_view(repo: &Path, updates: &[&RefUpdate]) -> (Vec<RefUpdate>, BTreeSet<String>) {
    let ledger = crate::ledger::load(repo).unwrap_or_else(|damaged| {
        state::log(repo, SystemTime::now(), &format!("pre-receive: {damaged}"));
        crate::ledger::Ledger::default()
    });
    let offline = updates
        .iter()
        .filter(|u| ledger.is_unforwarded(&u.name))
        .map(|u| u.name.clone())
        .collect();
    let view = updates
        .iter()
        .map(|u| {
            let old = match ledger.unforwarded.get(&u.name) {
                Some(crate::ledger::Unforwarded {
                    upstream: Some(basis),
                    ..
                }) => basis.clone(),
                _ => u.old.clone(),
            };
            RefUpdate {
                old,
                new: u.new.clone(),
                name: u.name.clone(),
            }
        })
        .collect();
    (view, offline)
}

fn forward(
    env: &HookEnv,
    upstream: &Upstream,
    access: crate::auth::Access,
    local: &[&RefUpdate],
    out: &mut dyn Pusher,
) -> Verdict {
    let repo = env.git_dir.as_path();
    let started = SystemTime::now();
    let git = match Git::new(repo) {
        Ok(git) => git.with_access(access),
        Err(e) => {
            out.say(&format!("mirror-hooks: push refused: {e:#}."));
            return Verdict::Refuse;
        }
    };
    let (view, offline) = upstream_view(repo, local);
    let updates: Vec<&RefUpdate> = view.iter().collect();
    let updates = &updates[..];
    let leased: Vec<LeasedUpdate> = updates.iter().map(|u| leased(u)).collect();
    if !crate::git::push_fits(&leased) {
        out.say(&format!(
            "mirror-hooks: push refused: it updates {} refs at once, more than one atomic push to the upstream can carry on this server's command line.",
            leased.len()
        ));
        out.say("mirror-hooks: nothing was forwarded or changed. Push them in smaller groups (for example a few thousand tags at a time).");
        return Verdict::Refuse;
    }
    let answer = match push_upstream(&git, upstream, &env.push_options, &leased, out) {
        Ok(output) => judge(&output, updates, upstream.timeout),
        Err(e) => Answer::Unreachable {
            why: format!("{e:#}"),
            cause: Cause::Transient { advice: None },
        },
    };
    let answer = settle(&git, upstream, updates, answer);
    let now = SystemTime::now();
    let names = || {
        updates
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match answer {
        Answer::Accepted => {
            record(repo, started, |s| s.finished(now));
            remember_forwarded(repo, updates);
            out.say(&format!(
                "mirror-hooks: the upstream {} accepted {}.",
                upstream.url,
                names()
            ));
            Verdict::Accept
        }
        Answer::Refused {
            reasons,
            maybe_late,
        } => {
            // The upstream has commits this repository lacks: bring them in before
            // answering, so the pusher's next fetch has them.
            // (Refs accepted while the upstream was away are not the pull's to bring.)
            let behind = reasons
                .iter()
                .any(|(name, r)| *r == Reason::StaleInfo && !offline.contains(name));
            let caught_up = behind.then(|| catch_up(repo, upstream.timeout));
            explain_refusal(updates, &reasons, &offline, maybe_late, caught_up, out);
            Verdict::Refuse
        }
        Answer::Unreachable {
            why,
            cause: Cause::Lasting(lasting),
        } => {
            let error = format!("the upstream {} cannot be used: {why}", upstream.url);
            record(repo, started, |s| s.failed(now, error.clone()));
            out.say(&format!("mirror-hooks: push refused: {error}."));
            out.say(&format!(
                "mirror-hooks: retrying will not help ({lasting}): a server administrator must fix this (`git mirror doctor` explains). Nothing was changed, here or on the upstream."
            ));
            Verdict::Refuse
        }
        Answer::Unreachable {
            why,
            cause: Cause::Transient { .. },
        } => {
            let error = format!("the upstream {} could not be reached: {why}", upstream.url);
            match upstream.on_unreachable {
                OnUnreachable::Reject => {
                    record(repo, started, |s| s.failed(now, error.clone()));
                    out.say(&format!("mirror-hooks: push refused: {error}."));
                    out.say("mirror-hooks: nothing was changed here. Try again later; if it persists, ask a server administrator (`git mirror doctor`).");
                    Verdict::Refuse
                }
                OnUnreachable::Accept => accept_offline(repo, local, started, &error, out),
            }
        }
        Answer::Unknown(why) => {
            let error = format!(
                "the outcome of forwarding to the upstream {} is unknown: {why}",
                upstream.url
            );
            record(repo, started, |s| s.failed(now, error.clone()));
            out.say(&format!("mirror-hooks: push refused: {error}."));
            match catch_up(repo, upstream.timeout) {
                CatchUp::Done => out.say("mirror-hooks: the upstream may have taken part of it; this repository has just been updated from the upstream. Fetch and push again."),
                CatchUp::Running => out.say("mirror-hooks: the upstream may have taken part of it; this repository is being updated from the upstream now. In a few seconds, fetch and push again."),
                CatchUp::Failed => out.say("mirror-hooks: the upstream may have taken part of it, and this repository could not be updated from it just now; ask a server administrator to run `git mirror pull --now` here, then fetch and push again."),
            }
            Verdict::Refuse
        }
    }
}

/// The lease and refspec of one update: never `+`, so the upstream is never clobbered.
fn leased(u: &RefUpdate) -> LeasedUpdate {
    LeasedUpdate {
        name: u.name.clone(),
        expect: (u.kind() != UpdateKind::Create).then(|| u.old.clone()),
        new: (u.kind() != UpdateKind::Delete).then(|| u.new.clone()),
    }
}

/// Pushes to the upstream, relaying what it says. An upstream that does not take push
/// options (git's default) fails the whole push before anything is sent; then the push
/// goes again without them, and the pusher is told.
fn push_upstream(
    git: &Git,
    upstream: &Upstream,
    pushed_options: &[String],
    leased: &[LeasedUpdate],
    out: &mut dyn Pusher,
) -> anyhow::Result<RunOutput> {
    let options = forwarded_push_options(upstream, pushed_options, out);
    let push = |options: Vec<String>, out: &mut dyn Pusher| {
        let settings = PushSettings {
            atomic: true,
            options,
        };
        // Only what the upstream itself says is relayed; our git client's own
        // complaints are summarised afterwards in words that fit the pusher's situation.
        let mut relay = |line: &str| {
            if let Some(text) = line.strip_prefix("remote:") {
                out.say(&format!(
                    "upstream:{}",
                    crate::url::mask_text(&crate::text::printable(text.trim_end()))
                ));
            }
        };
        git.push(
            &upstream.url,
            leased,
            &settings,
            upstream.timeout,
            &mut relay,
        )
    };
    if options.is_empty() {
        return push(options, out);
    }
    let output = push(options.clone(), out)?;
    if !output.refused_push_options() {
        return Ok(output);
    }
    out.say(&format!(
        "mirror-hooks: the upstream does not take push options, so {} {} not forwarded (the push itself is).",
        options.join(", "),
        if options.len() == 1 { "was" } else { "were" }
    ));
    push(Vec::new(), out)
}

/// Turns an answer that is not yet certain into a certain one where the upstream's refs
/// tell.
fn settle(git: &Git, upstream: &Upstream, updates: &[&RefUpdate], answer: Answer) -> Answer {
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

/// Accepts the push without forwarding it (`on_unreachable = "accept"`), recorded so that
/// it is forwarded later and never pruned or replaced meanwhile. When it cannot be
/// recorded, it is refused: an unrecorded ref would be lost to the next pull.
fn accept_offline(
    repo: &Path,
    local: &[&RefUpdate],
    started: SystemTime,
    error: &str,
    out: &mut dyn Pusher,
) -> Verdict {
    let now = SystemTime::now();
    let recorded = crate::ledger::change(repo, |ledger| {
        for u in local {
            ledger.accepted_offline(&u.name, &u.old, now);
        }
    });
    if let Err(e) = recorded {
        record(repo, started, |s| s.failed(now, error.to_owned()));
        out.say(&format!("mirror-hooks: push refused: {error}."));
        out.say(&format!(
            "mirror-hooks: it cannot be accepted without the upstream either: {e:#}."
        ));
        return Verdict::Refuse;
    }
    let names: Vec<&str> = local.iter().map(|u| u.name.as_str()).collect();
    record(repo, started, |s| {
        s.failed(
            now,
            format!("{error}; accepted here without forwarding (on_unreachable = \"accept\")"),
        )
    });
    out.say(&format!("mirror-hooks: warning: {error}."));
    out.say(&format!(
        "mirror-hooks: warning: accepted here WITHOUT forwarding {} (on_unreachable = \"accept\"); the upstream does not have it yet. The next pull, or the next push to it, forwards it.",
        names.join(", ")
    ));
    Verdict::Accept
}

fn record(repo: &Path, started: SystemTime, change: impl FnOnce(&mut state::MirrorState)) {
    // Status is for people; failing to write it must not change what the pusher gets.
    let _ = state::update(repo, RECORD, |s| {
        s.started(started);
        change(s);
    });
}

/// The upstream now holds these values: they are what the next judgement starts from.
fn remember_forwarded(repo: &Path, updates: &[&RefUpdate]) {
    let remembered = crate::ledger::change(repo, |ledger| {
        for u in updates {
            ledger.forwarded(&u.name, Some(&u.new));
        }
    });
    if let Err(e) = remembered {
        state::log(
            repo,
            SystemTime::now(),
            &format!("pre-receive: forwarded, but could not record it: {e:#}"),
        );
    }
}

/// The push options of this push (`pushed`) that `upstream.push_options` allows, by name.
fn forwarded_push_options(
    upstream: &Upstream,
    pushed: &[String],
    out: &mut dyn Pusher,
) -> Vec<String> {
    let mut forwarded = Vec::new();
    for option in pushed {
        let name = option.split('=').next().unwrap_or_default();
        if upstream.push_options.iter().any(|allowed| allowed == name) {
            forwarded.push(option.clone());
        } else {
            out.say(&format!(
                "mirror-hooks: push option {name:?} is not forwarded to the upstream (not in upstream.push_options)."
            ));
        }
    }
    forwarded
}

fn judge(output: &RunOutput, updates: &[&RefUpdate], timeout: Duration) -> Answer {
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

/// How bringing the upstream's commits here went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// The pull finished: the pusher's next fetch has the upstream's commits.
    Done,
    /// Still running after the deadline; it goes on in the background.
    Running,
    /// It could not be started, or it failed.
    Failed,
}

/// Pulls from the upstream now (`git-mirror pull --now`, which works with or without a
/// [pull] table) and waits for it up to `timeout`.
fn catch_up(repo: &Path, timeout: Duration) -> CatchUp {
    match crate::process::run_companion(repo, &["pull", "--catch-up"], timeout) {
        Ok(Some(true)) => CatchUp::Done,
        Ok(None) => CatchUp::Running,
        Ok(Some(false)) => CatchUp::Failed,
        Err(e) => {
            state::log(
                repo,
                SystemTime::now(),
                &format!("pre-receive: could not start a pull after a refusal: {e:#}"),
            );
            CatchUp::Failed
        }
    }
}

fn explain_refusal(
    updates: &[&RefUpdate],
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

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "failed".to_owned(),
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
