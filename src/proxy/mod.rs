//! The pre-receive proxy: the allowlisted ref updates go to the authoritative upstream in
//! ONE atomic compare-and-swap push, and are accepted here only if the upstream took them.

mod answer;
mod report;
mod twophase;

pub use twophase::proc_receive;

use crate::auth::Access;
use crate::chain;
use crate::config::{Config, OnUnreachable, Upstream};
use crate::git::{Cause, Git, LeasedUpdate, PushSettings, RunOutput};
use crate::hookenv::HookEnv;
use crate::porcelain::Reason;
use crate::refs::{self, RefUpdate, UpdateKind};
use crate::state;
use answer::Answer;
use report::{Accepted, Refusal};
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
/// with git's standard input `input`: prepare → forward → report.
pub fn pre_receive(env: &HookEnv, input: &[u8], out: &mut dyn Pusher) -> Verdict {
    let outcome = prepare(env, input, out).and_then(|prepared| match prepared {
        Some(prepared) => forward(env, prepared, out),
        None => Ok(Accepted::Quietly),
    });
    report::report(outcome, out)
}

/// A push that passed the checks here and has refs to forward.
struct Prepared {
    upstream: Upstream,
    access: Access,
    /// The allowlisted updates, in push order.
    forwarded: Vec<RefUpdate>,
}

/// Reads the push and checks it here: the chained hooks, `mirror.toml`, the reserved
/// refs, the local rules. `None`: there is nothing to forward.
fn prepare(env: &HookEnv, input: &[u8], out: &mut dyn Pusher) -> Result<Option<Prepared>, Refusal> {
    let repo = env.git_dir.as_path();
    let updates = refs::parse_updates(input).map_err(|e| Refusal::Failed(format!("{e:#}")))?;
    run_chained(env, input)?;
    let Some(config) = Config::load(repo).map_err(|e| Refusal::Config(e.to_string()))? else {
        return Ok(None);
    };
    if let Some(reserved) = updates
        .iter()
        .find(|u| u.name.starts_with(crate::repo::PRIVATE_REFS))
    {
        return Err(Refusal::Reserved(reserved.name.clone()));
    }
    let Some(upstream) = &config.upstream else {
        return Ok(None);
    };
    // Before the mode check, so that in either mode this hook refuses, and says it once.
    if crate::pause::is_paused(repo) {
        let paused: Vec<String> = updates
            .iter()
            .filter(|u| upstream.refs.matches(&u.name))
            .map(|u| u.name.clone())
            .collect();
        if !paused.is_empty() {
            return Err(Refusal::Paused(paused));
        }
    }
    // In two-phase mode proc-receive checks the rules and forwards, with the local locks
    // held. When the mode cannot be told, forward here: a second forward by
    // proc-receive finds the upstream already there, a missing one would diverge.
    match crate::mode::detect(repo) {
        Ok(crate::mode::Mode::TwoPhase) => return Ok(None),
        // Git will refuse every routed ref: forwarding them would leave the upstream ahead.
        Ok(crate::mode::Mode::PreReceive(why @ crate::mode::Why::NoHook { .. })) => {
            return Err(Refusal::Failed(format!(
                "{why}; nothing was forwarded. A server administrator runs install.sh on this repository (`git mirror doctor` explains)"
            )));
        }
        _ => {}
    }
    let quarantine = env.quarantine.as_ref();
    crate::rules::check(repo, quarantine, &updates, &mut |line: &str| out.say(line))
        .map_err(|_| Refusal::Rules)?;
    let forwarded: Vec<RefUpdate> = updates
        .into_iter()
        .filter(|u| upstream.refs.matches(&u.name))
        .collect();
    if forwarded.is_empty() {
        return Ok(None);
    }
    let access = Access::new(repo, &config, &upstream.url, upstream.auth.as_deref())
        .map_err(|e| Refusal::Credentials(format!("{e:#}")))?;
    Ok(Some(Prepared {
        upstream: upstream.clone(),
        access,
        forwarded,
    }))
}

/// Runs the chained pre-receive hooks (`pre-receive.d/`), stopping at the first failure.
fn run_chained(env: &HookEnv, input: &[u8]) -> Result<(), Refusal> {
    let repo = env.git_dir.as_path();
    let chained = chain::chain_dir(repo, env.hook_dir.as_deref(), "pre-receive");
    let failures =
        chain::run(repo, &chained, input, true).map_err(|e| Refusal::Chain(format!("{e:#}")))?;
    match failures.first() {
        Some(f) => Err(Refusal::ChainedHook {
            name: f
                .program
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            status: f.status,
        }),
        None => Ok(()),
    }
}

/// Pushes the prepared updates to the upstream and settles what its answer means.
fn forward(env: &HookEnv, prepared: Prepared, out: &mut dyn Pusher) -> Result<Accepted, Refusal> {
    let (attempt, answer) = ask(&env.git_dir, prepared, &env.push_options, out)?;
    attempt.conclude(answer)
}

/// Pushes the prepared updates to the upstream (with the pushed options `upstream`
/// allows) and returns its certain answer, with what concluding it takes.
fn ask(
    repo: &Path,
    prepared: Prepared,
    push_options: &[String],
    out: &mut dyn Pusher,
) -> Result<(Attempt, Answer), Refusal> {
    let started = SystemTime::now();
    let upstream = prepared.upstream;
    let git = Git::new(repo)
        .map_err(|e| Refusal::Failed(format!("{e:#}")))?
        .with_access(prepared.access);
    let local = prepared.forwarded;
    let local_refs: Vec<&RefUpdate> = local.iter().collect();
    let (view, offline) = upstream_view(repo, &local_refs);
    let updates: Vec<&RefUpdate> = view.iter().collect();
    let leased: Vec<LeasedUpdate> = updates.iter().map(|u| leased(u)).collect();
    if !crate::git::can_push(&leased) {
        return Err(Refusal::TooMany(leased.len()));
    }
    let answer = match push_upstream(&git, &upstream, push_options, &leased, out) {
        Ok(output) => answer::judge(&output, &updates, upstream.timeout),
        // Nothing was sent: this side's limit, not the upstream's absence.
        Err(e) if e.is::<crate::git::TooLong>() => {
            state::log(repo, SystemTime::now(), &format!("pre-receive: {e:#}"));
            return Err(Refusal::TooMany(leased.len()));
        }
        Err(e) => Answer::Unreachable {
            why: format!("{e:#}"),
            cause: Cause::Transient { advice: None },
        },
    };
    let answer = answer::settle(&git, &upstream, &updates, answer);
    let attempt = Attempt {
        repo: repo.to_owned(),
        upstream,
        started,
        local,
        updates: view,
        offline,
    };
    Ok((attempt, answer))
}

/// One attempt to forward, as [`ask`] hands it to its conclusion.
struct Attempt {
    repo: std::path::PathBuf,
    upstream: Upstream,
    started: SystemTime,
    /// The updates as pushed here.
    local: Vec<RefUpdate>,
    /// The same as the upstream sees them (see [`upstream_view`]).
    updates: Vec<RefUpdate>,
    /// Which of them were accepted here while the upstream was away.
    offline: BTreeSet<String>,
}

impl Attempt {
    /// Records the upstream's certain answer and turns it into the pusher's outcome.
    fn conclude(self, answer: Answer) -> Result<Accepted, Refusal> {
        let (repo, upstream, started) = (self.repo.as_path(), &self.upstream, self.started);
        let now = SystemTime::now();
        match answer {
            Answer::Accepted => {
                record(repo, started, |s| s.finished(now));
                remember_forwarded(repo, &self.updates, &self.offline);
                let names: Vec<&str> = self.updates.iter().map(|u| u.name.as_str()).collect();
                Ok(Accepted::Forwarded {
                    url: upstream.url.to_string(),
                    names: crate::text::name_list(&names),
                })
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
                    .any(|(name, r)| *r == Reason::StaleInfo && !self.offline.contains(name));
                let caught_up = behind.then(|| catch_up(repo, upstream.timeout));
                Err(Refusal::Upstream {
                    updates: self.updates,
                    reasons,
                    offline: self.offline,
                    maybe_late,
                    caught_up,
                })
            }
            Answer::Unreachable {
                why,
                cause: Cause::Lasting(lasting),
            } => {
                let error = format!("the upstream {} cannot be used: {why}", upstream.url);
                record(repo, started, |s| s.failed(now, error.clone()));
                Err(Refusal::Lasting { error, lasting })
            }
            Answer::Unreachable {
                why,
                cause: Cause::Transient { .. },
            } => {
                let error = format!("the upstream {} could not be reached: {why}", upstream.url);
                match upstream.on_unreachable {
                    OnUnreachable::Reject => {
                        record(repo, started, |s| s.failed(now, error.clone()));
                        Err(Refusal::Unreachable { error })
                    }
                    OnUnreachable::Accept => accept_offline(repo, &self.local, started, error),
                }
            }
            Answer::Unknown(why) => {
                let error = format!(
                    "the outcome of forwarding to the upstream {} is unknown: {why}",
                    upstream.url
                );
                record(repo, started, |s| s.failed(now, error.clone()));
                let caught_up = catch_up(repo, upstream.timeout);
                Err(Refusal::Unknown { error, caught_up })
            }
        }
    }
}

/// The pushed updates as the upstream sees them: a ref accepted here while the upstream
/// was away has, on the upstream, the value it held when that push began, and that is
/// what its lease must name. Also: which of them are such refs.
fn upstream_view(repo: &Path, updates: &[&RefUpdate]) -> (Vec<RefUpdate>, BTreeSet<String>) {
    let unforwarded = crate::ledger::unforwarded(repo).unwrap_or_else(|damaged| {
        state::log(repo, SystemTime::now(), &format!("pre-receive: {damaged}"));
        BTreeMap::new()
    });
    let offline = updates
        .iter()
        .filter(|u| unforwarded.contains_key(&u.name))
        .map(|u| u.name.clone())
        .collect();
    let view = updates
        .iter()
        .map(|u| {
            let old = match unforwarded.get(&u.name) {
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

/// Accepts the push without forwarding it (`on_unreachable = "accept"`), recorded so that
/// it is forwarded later and never pruned or replaced meanwhile. When it cannot be
/// recorded, it is refused: an unrecorded ref would be lost to the next pull.
fn accept_offline(
    repo: &Path,
    local: &[RefUpdate],
    started: SystemTime,
    error: String,
) -> Result<Accepted, Refusal> {
    let now = SystemTime::now();
    let recorded = crate::ledger::change(repo, |ledger| {
        for u in local {
            ledger.accepted_offline(&u.name, &u.old, now);
        }
    });
    if let Err(e) = recorded {
        record(repo, started, |s| s.failed(now, error.clone()));
        return Err(Refusal::Unrecorded {
            error,
            why: format!("{e:#}"),
        });
    }
    record(repo, started, |s| {
        s.failed(
            now,
            format!("{error}; accepted here without forwarding (on_unreachable = \"accept\")"),
        )
    });
    Ok(Accepted::Offline {
        error,
        names: local.iter().map(|u| u.name.clone()).collect(),
    })
}

fn record(repo: &Path, started: SystemTime, change: impl FnOnce(&mut state::MirrorState)) {
    // Status is for people; failing to write it must not change what the pusher gets.
    let _ = state::update(repo, RECORD, |s| {
        s.started(started);
        change(s);
    });
}

/// The upstream now holds these values: they are what the next judgement starts from.
/// Refs accepted while the upstream was away (`offline`) leave that list, a durable
/// change of the record; otherwise the values are only noted, without rewriting a record
/// of every ref the upstream holds.
fn remember_forwarded(repo: &Path, updates: &[RefUpdate], offline: &BTreeSet<String>) {
    let remembered = if offline.is_empty() {
        let values: Vec<(&str, Option<&str>)> = updates
            .iter()
            .map(|u| (u.name.as_str(), Some(u.new.as_str())))
            .collect();
        crate::ledger::note_seen(repo, &values)
    } else {
        crate::ledger::change(repo, |ledger| {
            for u in updates {
                ledger.forwarded(&u.name, Some(&u.new));
            }
        })
    };
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
