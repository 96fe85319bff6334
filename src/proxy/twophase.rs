//! Two-phase forwarding, run by the `proc-receive` hook, which git hands every ref of a
//! push to update itself: the local rules are checked, the local ref locks taken
//! (`git update-ref --stdin` … `prepare`), an intent journal written, the upstream asked,
//! and each local transaction committed or aborted to match its answer.

use super::answer::Answer;
use super::report::{self, Refusal};
use super::{ask, Prepared, Pusher};
use crate::auth::Access;
use crate::config::{Config, OnUnreachable};
use crate::git::{Cause, Git};
use crate::hookenv::HookEnv;
use crate::journal::{self, Journal};
use crate::pktline;
use crate::refs::{self, RefUpdate, UpdateKind};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// How long one local transaction may take to prepare or commit: git's own lock timeout
/// (which install.sh sets to 10 s) and the `reference-transaction` hook fit well within.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);
/// The reflog message of the updates, as receive-pack writes it.
const REFLOG_MESSAGE: &str = "push";

/// What becomes of each ref: `None` is `ok`, `Some(reason)` is `ng` with that reason.
type Results = BTreeMap<String, Option<String>>;

/// Runs the whole `proc-receive` hook: speaks git's protocol on `input`/`output`, tells
/// the pusher through `out`. An error is a protocol failure: git then fails every ref.
pub fn proc_receive(
    env: &HookEnv,
    input: &mut dyn Read,
    output: &mut dyn Write,
    out: &mut dyn Pusher,
) -> anyhow::Result<()> {
    let request = Request::read(input, output)?;
    let results = run(env, &request, out);
    for update in &request.updates {
        let line = match results.get(&update.name) {
            Some(None) => format!("ok {}", update.name),
            Some(Some(reason)) => format!("ng {} {reason}", update.name),
            None => format!("ng {} not processed", update.name),
        };
        pktline::write(output, line.as_bytes())?;
    }
    pktline::flush(output)?;
    Ok(())
}

/// One push as git hands it to the hook.
struct Request {
    updates: Vec<RefUpdate>,
    /// The pusher asked for all or nothing (`git push --atomic`).
    atomic: bool,
    options: Vec<String>,
}

impl Request {
    /// Negotiates the protocol (version 1, with push options) and reads the push.
    fn read(input: &mut dyn Read, output: &mut dyn Write) -> anyhow::Result<Request> {
        let greeting = pktline::read_section(input)?;
        let capabilities: Vec<&[u8]> = greeting
            .iter()
            .filter_map(|line| line.strip_prefix(b"version=1"))
            .flat_map(|rest| {
                rest.strip_prefix(b"\0")
                    .unwrap_or_default()
                    .split(|b| *b == b' ')
            })
            .collect();
        anyhow::ensure!(
            greeting.iter().any(|l| l.starts_with(b"version=1")),
            "git offered no proc-receive protocol version this hook speaks (version=1)"
        );
        let atomic = capabilities.contains(&&b"atomic"[..]);
        pktline::write(output, b"version=1\0push-options")?;
        pktline::flush(output)?;
        let mut commands = Vec::new();
        for line in pktline::read_section(input)? {
            commands.extend_from_slice(&line);
            commands.push(b'\n');
        }
        let updates = refs::parse_updates(&commands)?;
        // We asked for them: git sends the section (perhaps empty) whether or not the
        // pusher gave any.
        let options = pktline::read_section(input)?
            .into_iter()
            .filter_map(|o| String::from_utf8(o).ok())
            .collect();
        Ok(Request {
            updates,
            atomic,
            options,
        })
    }
}

fn run(env: &HookEnv, request: &Request, out: &mut dyn Pusher) -> Results {
    let repo = env.git_dir.as_path();
    let all = |reason: &str| -> Results {
        request
            .updates
            .iter()
            .map(|u| (u.name.clone(), Some(reason.to_owned())))
            .collect()
    };
    let config = match checked(env, request, out) {
        Ok(config) => config,
        Err(reason) => return all(reason),
    };
    let upstream = config.as_ref().and_then(|c| c.upstream.as_ref());
    let git = match Git::new(repo) {
        Ok(git) => git,
        Err(e) => {
            out.say(&format!("mirror-hooks: push refused: {e:#}."));
            return all("git is not usable here");
        }
    };
    let updates = &request.updates;
    let forwarded = |u: &RefUpdate| upstream.is_some_and(|up| up.refs.matches(&u.name));
    let mut push = Push {
        repo,
        git: &git,
        results: Results::new(),
        journal: None,
        commit_failed: false,
        out,
    };
    let (Some(config), Some(upstream)) = (config.as_ref(), upstream) else {
        push.update_here(updates, request.atomic);
        return push.results;
    };
    if !updates.iter().any(forwarded) {
        push.update_here(updates, request.atomic);
        return push.results;
    }
    let (ours, theirs): (Vec<RefUpdate>, Vec<RefUpdate>) =
        updates.iter().cloned().partition(|u| forwarded(u));
    // Said before thousands of locks are taken for nothing.
    let leases: Vec<crate::git::LeasedUpdate> = ours.iter().map(super::leased).collect();
    if !crate::git::can_push(&leases) {
        let refusal = Refusal::TooMany(leases.len());
        let reason = refusal.reason();
        report::report(Err(refusal), push.out);
        return all(reason);
    }
    let access = match Access::new(repo, config, &upstream.url, upstream.auth.as_deref()) {
        Ok(access) => access,
        Err(e) => {
            report::report(Err(Refusal::Credentials(format!("{e:#}"))), push.out);
            return all("the upstream's credentials are not usable");
        }
    };
    // A non-atomic push updates each ref on its own: those the upstream does not get
    // are not held back by it.
    if !request.atomic {
        push.update_here(&theirs, false);
    }
    let local = if request.atomic {
        updates.clone()
    } else {
        ours.clone()
    };
    let prepared = Prepared {
        upstream: upstream.clone(),
        access,
        forwarded: ours,
    };
    push.forward(local, prepared, &request.options, request.atomic);
    push.results
}

/// Everything checked before any lock is taken: what this mode supports, `mirror.toml`,
/// the names, the local rules; two-phase pushes a dead process left are finished first.
/// The configuration (none: nothing is mirrored), or the reason every ref is refused.
fn checked(
    env: &HookEnv,
    request: &Request,
    out: &mut dyn Pusher,
) -> Result<Option<Config>, &'static str> {
    let repo = env.git_dir.as_path();
    if env.namespace.is_some() {
        out.say("mirror-hooks: push refused: this repository is served with GIT_NAMESPACE, which two-phase forwarding does not support; a server administrator reinstalls it with `install.sh --mode pre-receive`.");
        return Err("GIT_NAMESPACE is not supported in two-phase mode");
    }
    let config = Config::load(repo).map_err(|e| {
        report::report(Err(Refusal::Config(e.to_string())), out);
        "mirror.toml is invalid"
    })?;
    if let Some(config) = config.as_ref().filter(|c| c.upstream.is_some()) {
        crate::unfinished::finish(repo, config, &mut |line| {
            out.say(&format!("mirror-hooks: {line}"))
        });
    }
    let updates = &request.updates;
    // receive-pack checks names only for the refs it updates itself.
    if let Some(funny) = updates.iter().find(|u| !acceptable_name(u)) {
        out.say(&format!(
            "mirror-hooks: push refused: {} is not a ref name git accepts in a push (refs/<kind>/<name>); nothing was forwarded to the upstream or changed here.",
            funny.name
        ));
        return Err("funny refname");
    }
    if crate::rules::check(repo, None, updates, &mut |line: &str| out.say(line)).is_err() {
        return Err("refused by this server's rules");
    }
    Ok(config)
}

/// The local side of one push: its transactions, its journal, the refs' results.
struct Push<'a> {
    repo: &'a Path,
    git: &'a Git,
    results: Results,
    journal: Option<Journal>,
    /// A local commit failed after the locks were taken.
    commit_failed: bool,
    out: &'a mut dyn Pusher,
}

/// One local transaction and the refs it holds.
struct Held {
    transaction: crate::git::Prepared,
    names: Vec<String>,
    /// Its entry in the journal, if there is one.
    writer: Option<usize>,
}

impl Push<'_> {
    /// While mirroring is paused, before any lock is taken: the allowlisted refs
    /// (`ours`) are refused, since accepting them would diverge from the upstream, and
    /// so is the rest of `local` (all of an atomic push); other refs were updated as usual.
    fn paused(&mut self, local: &[RefUpdate], ours: &[RefUpdate]) {
        let names = ours.iter().map(|u| u.name.clone()).collect();
        report::report(Err(Refusal::Paused(names)), self.out);
        for u in local {
            self.results
                .insert(u.name.clone(), Some(crate::pause::REASON.to_owned()));
        }
    }

    /// Updates `updates` here, with nothing to forward: as one transaction when
    /// `atomic`, else each ref on its own (one transaction while none fails).
    fn update_here(&mut self, updates: &[RefUpdate], atomic: bool) {
        if updates.is_empty() {
            return;
        }
        for held in self.prepare(updates, atomic) {
            self.commit(held);
        }
    }

    /// Takes the locks of `updates`: one transaction if it can be prepared whole; if
    /// not, an `atomic` push fails whole, and any other is split until each ref that
    /// cannot be prepared is refused on its own.
    fn prepare(&mut self, updates: &[RefUpdate], atomic: bool) -> Vec<Held> {
        match self.prepare_one(updates) {
            Ok(held) => vec![held],
            Err(why) if atomic || updates.len() == 1 => {
                self.out.say(&format!(
                    "mirror-hooks: {} refused: {} cannot be updated here: {why}",
                    names_of(updates),
                    if updates.len() == 1 { "it" } else { "they" },
                ));
                self.out.say(&format!(
                    "mirror-hooks: {} neither forwarded to the upstream nor changed here.",
                    if updates.len() == 1 {
                        "it was"
                    } else {
                        "they were"
                    },
                ));
                for u in updates {
                    self.results
                        .insert(u.name.clone(), Some("failed to update ref".to_owned()));
                }
                Vec::new()
            }
            // Halves until the refs that cannot be prepared are found alone: a few
            // transactions for thousands of refs, not one process per ref.
            Err(_) => {
                let (first, second) = updates.split_at(updates.len() / 2);
                let mut held = self.prepare(first, false);
                held.extend(self.prepare(second, false));
                held
            }
        }
    }

    fn prepare_one(&mut self, updates: &[RefUpdate]) -> Result<Held, String> {
        let commands: Vec<String> = updates.iter().map(command).collect();
        let index = self
            .journal
            .as_mut()
            .map(|journal| journal.add_writer(crate::reflock::locks_for(self.repo, &commands)));
        let journal = &mut self.journal;
        let prepared =
            self.git
                .prepare_refs(&commands, REFLOG_MESSAGE, LOCAL_TIMEOUT, &mut |pid| {
                    if let (Some(journal), Some(index)) = (journal.as_mut(), index) {
                        journal.writer_started(index, pid);
                    }
                });
        let transaction = match prepared {
            Ok(transaction) => transaction,
            Err(e) => {
                self.writer_ended(index);
                return Err(crate::text::printable(&e.0).into_owned());
            }
        };
        if let (Some(journal), Some(index)) = (self.journal.as_mut(), index) {
            journal.writer_prepared(self.repo, index);
        }
        Ok(Held {
            transaction,
            names: updates.iter().map(|u| u.name.clone()).collect(),
            writer: index,
        })
    }

    /// The `git update-ref` of journal entry `index` has ended (and released its
    /// locks): a recovery must not judge its lock names any more.
    fn writer_ended(&mut self, index: Option<usize>) {
        if let (Some(journal), Some(index)) = (self.journal.as_mut(), index) {
            journal.writer_ended(index);
        }
    }

    fn commit(&mut self, held: Held) {
        let committed = held.transaction.commit(LOCAL_TIMEOUT);
        self.writer_ended(held.writer);
        let result = match committed {
            Ok(()) => None,
            Err(e) => {
                self.commit_failed = true;
                self.out.say(&format!(
                    "mirror-hooks: {} could not be updated here: {}.",
                    held.names.join(", "),
                    crate::text::printable(&e.0)
                ));
                Some("failed to update ref".to_owned())
            }
        };
        for name in held.names {
            self.results.insert(name, result.clone());
        }
    }

    fn abort(&mut self, held: Held, reason: &str) {
        held.transaction.abort(LOCAL_TIMEOUT);
        self.writer_ended(held.writer);
        for name in held.names {
            self.results.insert(name, Some(reason.to_owned()));
        }
    }

    /// Locks `local` here, forwards `prepared.forwarded` (those of them that could be
    /// locked), then commits or aborts to match the upstream's answer.
    fn forward(
        &mut self,
        local: Vec<RefUpdate>,
        mut prepared: Prepared,
        options: &[String],
        atomic: bool,
    ) {
        // Pre-receive refuses these first; this is for a pause begun in between.
        if crate::pause::is_paused(self.repo) {
            return self.paused(&local, &prepared.forwarded);
        }
        let journaled: Vec<RefUpdate> = prepared.forwarded.clone();
        match journal::begin(self.repo, &journaled, Vec::new()) {
            Ok(journal) => self.journal = Some(journal),
            Err(e) => {
                self.out.say(&format!(
                    "mirror-hooks: push refused: the intent journal cannot be written: {e:#}; nothing was forwarded to the upstream or changed here."
                ));
                for u in &local {
                    self.results.insert(
                        u.name.clone(),
                        Some("cannot write the intent journal".to_owned()),
                    );
                }
                return;
            }
        }
        let held = self.prepare(&local, atomic);
        let locked: std::collections::BTreeSet<&String> =
            held.iter().flat_map(|h| h.names.iter()).collect();
        prepared.forwarded.retain(|u| locked.contains(&u.name));
        if prepared.forwarded.is_empty() {
            // Nothing could be locked; nothing was asked of the upstream.
            self.finish_journal();
            return;
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.asking();
        }
        let (attempt, answer) = match ask(self.repo, prepared, options, self.out) {
            Ok(asked) => asked,
            Err(refusal) => {
                let reason = refusal.reason();
                for held in held {
                    self.abort(held, reason);
                }
                self.finish_journal();
                report::report(Err(refusal), self.out);
                return;
            }
        };
        let upstream = attempt.upstream.clone();
        let outcome = if lets_local_update(&answer, upstream.on_unreachable) {
            // Accepted (or accepted offline): conclude first (it records what the
            // upstream holds, or that it was away), then make it so here.
            let outcome = attempt.conclude(answer);
            match &outcome {
                Ok(_) => held.into_iter().for_each(|h| self.commit(h)),
                Err(refusal) => {
                    let reason = refusal.reason();
                    held.into_iter().for_each(|h| self.abort(h, reason));
                }
            }
            outcome
        } else {
            // Refused: release the locks first, since concluding may pull the
            // upstream's new commits into these very refs.
            let reason = reason_of(&answer);
            held.into_iter().for_each(|h| self.abort(h, reason));
            attempt.conclude(answer)
        };
        // A local commit that failed after the upstream took the push leaves the journal
        // for the recovery, which applies here what the upstream holds.
        if !self.commit_failed {
            self.finish_journal();
        }
        report::report(outcome, self.out);
    }

    fn finish_journal(&mut self) {
        if let Some(journal) = self.journal.take() {
            journal.done();
        }
    }
}

/// A name receive-pack itself would accept: under `refs/`, and at least two levels
/// below it unless it is being deleted (`refs/foo` is refused, `refs/heads/foo` is not).
fn acceptable_name(u: &RefUpdate) -> bool {
    match u.name.strip_prefix("refs/") {
        Some(rest) => u.kind() == UpdateKind::Delete || rest.contains('/'),
        None => false,
    }
}

/// The `update-ref --stdin` line of one update, checked against its old value.
fn command(u: &RefUpdate) -> String {
    match u.kind() {
        UpdateKind::Create => format!("create {} {}", u.name, u.new),
        UpdateKind::Delete => format!("delete {} {}", u.name, u.old),
        UpdateKind::Update => format!("update {} {} {}", u.name, u.new, u.old),
    }
}

fn names_of(updates: &[RefUpdate]) -> String {
    let names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).collect();
    crate::text::name_list(&names)
}

fn reason_of(answer: &Answer) -> &'static str {
    match answer {
        Answer::Accepted => "accepted",
        Answer::Refused { .. } => "refused by the upstream",
        Answer::Unreachable {
            cause: Cause::Lasting(_),
            ..
        } => "the upstream cannot be used",
        Answer::Unreachable { .. } => "the upstream could not be reached",
        Answer::Unknown(_) => "the upstream's answer is unknown",
    }
}

/// True when the answer lets the local update go ahead: the upstream took it, or could
/// not be reached and `on_unreachable = "accept"` says to accept it here.
fn lets_local_update(answer: &Answer, on_unreachable: OnUnreachable) -> bool {
    match answer {
        Answer::Accepted => true,
        Answer::Unreachable {
            cause: Cause::Transient { .. },
            ..
        } => on_unreachable == OnUnreachable::Accept,
        _ => false,
    }
}

impl Refusal {
    /// The few words git shows beside each refused ref (`! [remote rejected] REF
    /// (reason)`); the explanation goes to the pusher separately.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Refusal::Upstream { .. } => "refused by the upstream",
            Refusal::Lasting { .. } => "the upstream cannot be used",
            Refusal::Unreachable { .. } => "the upstream could not be reached",
            Refusal::Unrecorded { .. } => "the upstream could not be reached",
            Refusal::Unknown { .. } => "the upstream's answer is unknown",
            Refusal::TooMany(_) => "too many refs at once",
            Refusal::Config(_) => "mirror.toml is invalid",
            Refusal::Paused(_) => crate::pause::REASON,
            Refusal::Credentials(_) => "the upstream's credentials are not usable",
            _ => "refused",
        }
    }
}
