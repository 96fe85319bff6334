//! The pre-receive proxy: before this repository accepts a push, the allowlisted ref
//! updates go to the authoritative upstream in ONE atomic compare-and-swap push, and the
//! push is accepted here only if the upstream took it. The two copies cannot diverge.

use crate::chain;
use crate::config::{Config, OnUnreachable, Upstream};
use crate::git::{Git, LeasedUpdate, PushSettings, RunOutput};
use crate::porcelain::{Flag, PushReport};
use crate::refs::{self, RefUpdate, UpdateKind};
use crate::repo::Repo;
use crate::state;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Name of the upstream's status record.
pub const RECORD: &str = "upstream";

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

/// Runs the whole pre-receive hook for the repository at `repo` with git's standard
/// input `input`.
pub fn pre_receive(repo: &Path, input: &[u8], out: &mut dyn Pusher) -> Verdict {
    let updates = match refs::parse_updates(input) {
        Ok(updates) => updates,
        Err(e) => {
            out.say(&format!("mirror-hooks: push refused: {e:#}."));
            return Verdict::Refuse;
        }
    };

    let chained = chain::chain_dir(repo, "pre-receive");
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

    if let Err(refusal) = check_local_rules(repo, &updates) {
        out.say(&format!("mirror-hooks: push refused: {refusal}"));
        out.say("mirror-hooks: nothing was forwarded to the upstream or changed here.");
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
    forward(
        repo,
        upstream,
        access,
        config.pull.is_some(),
        &forwarded,
        out,
    )
}

/// Git checks `receive.denyDeletes` and `receive.denyNonFastForwards` only after
/// pre-receive; checking them first keeps the upstream from taking what this side
/// would then refuse.
fn check_local_rules(repo: &Path, updates: &[RefUpdate]) -> Result<(), String> {
    let branches = || updates.iter().filter(|u| u.name.starts_with("refs/heads/"));
    if !branches().any(|u| u.kind() != UpdateKind::Create) {
        return Ok(());
    }
    let repo = Repo::open(repo).map_err(|e| format!("{e:#}"))?;
    let deny_deletes = repo.config_bool("receive.denyDeletes").unwrap_or(false);
    // Git refuses deleting the branch HEAD points to unless told to ignore or warn.
    let deny_delete_current = !matches!(
        repo.config_string("receive.denyDeleteCurrent")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("ignore" | "warn" | "false" | "no" | "off" | "0")
    );
    let head = repo.head_ref();
    let deny_non_ff = repo
        .config_bool("receive.denyNonFastForwards")
        .unwrap_or(false);
    for update in branches() {
        match update.kind() {
            UpdateKind::Delete if deny_deletes => {
                return Err(format!(
                    "deleting {} is not allowed in this repository (receive.denyDeletes).",
                    update.name
                ));
            }
            UpdateKind::Delete
                if deny_delete_current && head.as_deref() == Some(update.name.as_str()) =>
            {
                return Err(format!(
                    "{} is this repository's default branch (HEAD), and git refuses to delete it (receive.denyDeleteCurrent). Ask a server administrator to change HEAD first.",
                    update.name
                ));
            }
            UpdateKind::Update if deny_non_ff => {
                let fast_forward = repo
                    .is_ancestor(&update.old, &update.new)
                    .map_err(|e| format!("{}: {e:#}", update.name))?;
                if !fast_forward {
                    return Err(format!(
                        "{} would lose commits: {}..{} is not a fast-forward, and this repository refuses those (receive.denyNonFastForwards). Fetch, rebase or merge, and push again.",
                        update.name,
                        refs::short(&update.old),
                        refs::short(&update.new)
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How the upstream answered.
#[derive(Debug)]
enum Answer {
    Accepted,
    /// Refused refs and why, in the upstream's words.
    Refused(BTreeMap<String, String>),
    /// No connection (or no permission): nothing was pushed.
    Unreachable(String),
    /// We cannot tell whether the push landed.
    Unknown(String),
}

fn forward(
    repo: &Path,
    upstream: &Upstream,
    access: crate::auth::Access,
    pulls: bool,
    updates: &[&RefUpdate],
    out: &mut dyn Pusher,
) -> Verdict {
    let started = SystemTime::now();
    let git = match Git::new(repo) {
        Ok(git) => git.with_access(access),
        Err(e) => {
            out.say(&format!("mirror-hooks: push refused: {e:#}."));
            return Verdict::Refuse;
        }
    };
    let settings = PushSettings {
        atomic: true,
        options: forwarded_push_options(upstream, out),
    };
    let leased: Vec<LeasedUpdate> = updates
        .iter()
        .map(|u| LeasedUpdate {
            name: u.name.clone(),
            expect: (u.kind() != UpdateKind::Create).then(|| u.old.clone()),
            new: (u.kind() != UpdateKind::Delete).then(|| u.new.clone()),
        })
        .collect();
    if !crate::git::push_fits(&leased) {
        out.say(&format!(
            "mirror-hooks: push refused: it updates {} refs at once, more than one atomic push to the upstream can carry on this server's command line.",
            leased.len()
        ));
        out.say("mirror-hooks: nothing was forwarded or changed. Push them in smaller groups (for example a few thousand tags at a time).");
        return Verdict::Refuse;
    }
    // Only what the upstream itself says is relayed; our git client's own complaints
    // are summarised below in words that fit the pusher's situation.
    let mut relay = |line: &str| {
        if let Some(text) = line.strip_prefix("remote:") {
            out.say(&format!(
                "upstream:{}",
                crate::url::mask_text(&crate::text::printable(text.trim_end()))
            ));
        }
    };
    let answer = match git.push(
        &upstream.url,
        &leased,
        &settings,
        upstream.timeout,
        &mut relay,
    ) {
        Ok(output) => judge(&output, updates, upstream.timeout),
        Err(e) => Answer::Unreachable(format!("{e:#}")),
    };
    let answer = match answer {
        Answer::Unknown(why) => resolve_unknown(&git, upstream, updates, why),
        // The connection may have died after the upstream applied the push: look
        // before saying that nothing changed.
        Answer::Unreachable(why) => match upstream_state(&git, upstream, updates) {
            UpstreamState::New => Answer::Accepted,
            UpstreamState::Mixed => mixed(&why),
            UpstreamState::Old | UpstreamState::Unlisted => Answer::Unreachable(why),
        },
        // A lease fails when the upstream already holds what we push (a retry after a
        // lost answer, a deletion done before): that is success, not a conflict.
        Answer::Refused(reasons)
            if reasons
                .values()
                .all(|r| r == "stale info" || r == "atomic push failed") =>
        {
            match upstream_state(&git, upstream, updates) {
                UpstreamState::New => Answer::Accepted,
                _ => Answer::Refused(reasons),
            }
        }
        other => other,
    };
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
            out.say(&format!(
                "mirror-hooks: the upstream {} accepted {}.",
                upstream.url,
                names()
            ));
            Verdict::Accept
        }
        Answer::Refused(reasons) => {
            // The upstream has commits this repository lacks: fetch them now, so the
            // pusher's next fetch brings them.
            let behind = reasons.values().any(|r| r == "stale info");
            let catching_up = behind && pulls && catch_up(repo);
            explain_refusal(updates, &reasons, catching_up, out);
            Verdict::Refuse
        }
        Answer::Unreachable(why) => {
            let error = format!("the upstream {} could not be reached: {why}", upstream.url);
            match upstream.on_unreachable {
                OnUnreachable::Reject => {
                    record(repo, started, |s| s.failed(now, error.clone()));
                    out.say(&format!("mirror-hooks: push refused: {error}."));
                    out.say("mirror-hooks: nothing was changed here. Try again later; if it persists, ask a server administrator (`git mirror doctor`).");
                    Verdict::Refuse
                }
                OnUnreachable::Accept => {
                    record(repo, started, |s| {
                        s.failed(
                            now,
                            format!("{error}; accepted here without forwarding (on_unreachable = \"accept\")"),
                        );
                        for u in updates {
                            if !s.divergent_refs.contains(&u.name) {
                                s.divergent_refs.push(u.name.clone());
                            }
                        }
                    });
                    out.say(&format!("mirror-hooks: warning: {error}."));
                    out.say(&format!(
                        "mirror-hooks: warning: accepted here WITHOUT forwarding {} (on_unreachable = \"accept\"); the upstream does not have it yet.",
                        names()
                    ));
                    Verdict::Accept
                }
            }
        }
        Answer::Unknown(why) => {
            let error = format!(
                "the outcome of forwarding to the upstream {} is unknown: {why}",
                upstream.url
            );
            record(repo, started, |s| s.failed(now, error.clone()));
            out.say(&format!("mirror-hooks: push refused: {error}."));
            if pulls && catch_up(repo) {
                out.say("mirror-hooks: the upstream may have taken part of it; this repository is being updated from the upstream now. In a few seconds, fetch and push again.");
            } else {
                out.say("mirror-hooks: the upstream may have taken part of it; the next pull from the upstream brings this repository up to date. Fetch and push again.");
            }
            Verdict::Refuse
        }
    }
}

fn record(repo: &Path, started: SystemTime, change: impl FnOnce(&mut state::MirrorState)) {
    // Status is for people; failing to write it must not change what the pusher gets.
    let _ = state::update(repo, RECORD, |s| {
        s.started(started);
        change(s);
    });
}

/// The push options of this push that `upstream.push_options` allows, by name.
fn forwarded_push_options(upstream: &Upstream, out: &mut dyn Pusher) -> Vec<String> {
    let count: usize = std::env::var("GIT_PUSH_OPTION_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut forwarded = Vec::new();
    for i in 0..count {
        let Ok(option) = std::env::var(format!("GIT_PUSH_OPTION_{i}")) else {
            continue;
        };
        let name = option.split('=').next().unwrap_or_default();
        if upstream.push_options.iter().any(|allowed| allowed == name) {
            forwarded.push(option);
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
        let why = output.complaint();
        return Answer::Unreachable(why);
    }
    let mut refused = BTreeMap::new();
    let mut missing = false;
    for u in updates {
        match report.refs.get(&u.name) {
            Some(status) if status.flag == Flag::Rejected => {
                let reason = status
                    .reason
                    .clone()
                    .unwrap_or_else(|| status.summary.clone());
                refused.insert(u.name.clone(), reason);
            }
            Some(_) => {}
            None => missing = true,
        }
    }
    if !refused.is_empty() {
        return Answer::Refused(refused);
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
    let Ok(Ok(listing)) = git.ls_remote(&upstream.url, &names, upstream.timeout) else {
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
        UpstreamState::Old => Answer::Refused(
            updates
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        format!("not taken so far: {why}; the upstream may still apply it late, and the next pull from it would bring it here"),
                    )
                })
                .collect(),
        ),
        UpstreamState::Mixed => mixed(&why),
        UpstreamState::Unlisted => Answer::Unknown(format!(
            "{why}, and listing its refs afterwards failed too"
        )),
    }
}

/// Starts a pull in the background; false when it could not be started.
fn catch_up(repo: &Path) -> bool {
    match crate::hook::spawn_detached(repo, &["pull", "--now"]) {
        Ok(()) => true,
        Err(e) => {
            state::log(
                repo,
                SystemTime::now(),
                &format!("pre-receive: could not start a pull after a refusal: {e:#}"),
            );
            false
        }
    }
}

fn explain_refusal(
    updates: &[&RefUpdate],
    reasons: &BTreeMap<String, String>,
    catching_up: bool,
    out: &mut dyn Pusher,
) {
    out.say("mirror-hooks: push refused: the upstream did not accept it.");
    let mut moved = false;
    for u in updates {
        let Some(reason) = reasons.get(&u.name) else {
            continue;
        };
        let line = match reason.as_str() {
            "stale info" if u.kind() == UpdateKind::Create => {
                format!("{} already exists on the upstream; fetch it first.", u.name)
            }
            "stale info" => {
                moved = true;
                format!(
                    "upstream {} moved: it is no longer at {}.",
                    u.name,
                    refs::short(&u.old)
                )
            }
            "atomic push failed" => format!(
                "{} was not forwarded because another ref was refused (all or nothing).",
                u.name
            ),
            other => format!("the upstream refused {}: {other}.", u.name),
        };
        out.say(&format!("mirror-hooks:   {line}"));
    }
    if reasons.values().any(|r| r.starts_with("not taken so far")) {
        out.say("mirror-hooks: nothing was changed here.");
    } else {
        out.say("mirror-hooks: nothing was changed, here or on the upstream.");
    }
    if moved && catching_up {
        out.say("mirror-hooks: this repository is fetching the upstream's new commits now.");
        out.say("mirror-hooks: next: in a few seconds, fetch, rebase (or merge), push again.");
    } else if moved {
        out.say("mirror-hooks: next: fetch, rebase (or merge), push again. If the fetch brings nothing new, this repository has not caught up with the upstream yet: ask a server administrator to run `git mirror pull --now` here (a [pull] table in mirror.toml makes that automatic).");
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
