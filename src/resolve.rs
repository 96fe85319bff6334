//! `git mirror resolve REF --take upstream|here`: settles one ref on which this repository
//! and the upstream disagree for real (commits on both sides that the other never had, or
//! a ref accepted here while the upstream was away that the upstream moved meanwhile).
//! Either side is kept, with a lease on the other, and the person is told what changed.

use crate::config::Config;
use crate::git::{Git, GitError, LeasedUpdate, PushSettings};
use crate::lock::{self, Lock};
use crate::porcelain::{PushReport, Reason};
use crate::refs;
use crate::repo::Repo;
use crate::state;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Which side's value the ref keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Take {
    /// This repository follows the upstream: its value here is replaced.
    Upstream,
    /// The upstream gets this repository's value (a forced update there).
    Here,
}

/// Where fetched values wait for the local transaction.
const FETCHED: &str = "refs/mirror-hooks/resolve/";
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Settles `name` by taking one side; returns what was done, for a person.
pub fn resolve(repo: &Path, config: &Config, name: &str, take: Take) -> Result<String> {
    refs::check_ref_name(name).map_err(|why| {
        anyhow::anyhow!(
            "{name:?} is not a ref name ({why}); give the full name, e.g. refs/heads/main"
        )
    })?;
    if name.starts_with(crate::repo::PRIVATE_REFS) {
        bail!("{name} is mirror-hooks' own ref, not one to resolve");
    }
    let (url, auth, timeout) = match (&config.upstream, &config.pull) {
        (Some(up), _) => (&up.url, up.auth.as_deref(), up.timeout),
        (None, Some(pull)) => (&pull.url, pull.auth.as_deref(), pull.timeout),
        (None, None) => bail!(
            "{} has neither an [upstream] nor a [pull] table: there is no upstream to resolve against",
            config.path.display()
        ),
    };
    // A pull deciding about the same ref meanwhile would undo half of this.
    let Some(_lock) = Lock::try_acquire(&lock::pull_lock(repo))? else {
        bail!("a pull of this repository is running; run this again when it has finished");
    };
    let access = crate::auth::Access::new(repo, config, url, auth)?;
    let git = Git::new(repo)?.with_access(access);
    let theirs = match git.ls_remote(url, &[name], timeout) {
        Ok(listed) => listed.refs.get(name).cloned(),
        Err(e @ GitError::Spawn { .. }) => return Err(e.into()),
        Err(e) => bail!("cannot list {name} on the upstream {url}: {e}"),
    };
    let ours = Repo::open(repo)?.refs()?.get(name).cloned();
    let show = |id: &Option<String>| match id {
        Some(id) => refs::short(id).to_owned(),
        None => "nothing (no such ref)".to_owned(),
    };

    let said = if theirs == ours {
        format!(
            "{name} already holds {} here and on the upstream; nothing to change",
            show(&ours)
        )
    } else {
        match take {
            Take::Upstream => {
                let taken =
                    take_upstream(&git, url, name, ours.as_deref(), theirs.is_some(), timeout)?;
                let mut said = format!(
                    "{name} now holds {} here, as on the upstream (it held {} here)",
                    show(&taken),
                    show(&ours)
                );
                if let Some(old) = &ours {
                    said.push_str(&format!(
                        "; to keep the old commit, run `git update-ref refs/heads/rescued {old}` in this repository before git's garbage collection removes it"
                    ));
                }
                record(repo, name, taken.as_deref())?;
                said
            }
            Take::Here => {
                take_here(&git, url, name, ours.as_deref(), theirs.as_deref(), timeout)?;
                record(repo, name, ours.as_deref())?;
                format!(
                    "the upstream's {name} now holds {}, as here (it held {} there)",
                    show(&ours),
                    show(&theirs)
                )
            }
        }
    };
    if theirs == ours {
        record(repo, name, ours.as_deref())?;
    }
    state::log(repo, SystemTime::now(), &format!("resolve: {said}"));
    Ok(said)
}

/// Makes `name` here what the upstream holds (fetching it), with a lease on `ours`.
fn take_upstream(
    git: &Git,
    url: &crate::url::RemoteUrl,
    name: &str,
    ours: Option<&str>,
    exists: bool,
    timeout: Duration,
) -> Result<Option<String>> {
    let fetched = if exists {
        let private = format!("{FETCHED}{name}");
        let out = git.fetch(url, &[(name.to_owned(), private.clone())], timeout)?;
        if !out.success() {
            bail!("cannot fetch {name} from the upstream: {}", out.complaint());
        }
        let value = Repo::open(git.git_dir())?
            .refs_under(&private)?
            .get(&private)
            .cloned()
            .with_context(|| format!("the fetch of {name} brought nothing"))?;
        Some((private, value))
    } else {
        None
    };
    let command = match (ours, &fetched) {
        (Some(ours), Some((_, new))) => format!("update {name} {new} {ours}"),
        (None, Some((_, new))) => format!("create {name} {new}"),
        (Some(ours), None) => format!("delete {name} {ours}"),
        (None, None) => return Ok(None),
    };
    let mut commands = vec![command];
    if let Some((private, value)) = &fetched {
        commands.push(format!("delete {private} {value}"));
    }
    let out = git.update_refs(
        &commands,
        "mirror-hooks: resolve, taking the upstream's",
        LOCAL_TIMEOUT,
    )?;
    if !out.success() {
        bail!(
            "cannot update {name} here (did a push move it meanwhile? run this again): {}",
            out.complaint()
        );
    }
    Ok(fetched.map(|(_, value)| value))
}

/// Makes the upstream's `name` what this repository holds, with a lease on `theirs`.
fn take_here(
    git: &Git,
    url: &crate::url::RemoteUrl,
    name: &str,
    ours: Option<&str>,
    theirs: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let update = LeasedUpdate {
        name: name.to_owned(),
        expect: theirs.map(str::to_owned),
        new: ours.map(str::to_owned),
    };
    let out = git.push(
        url,
        &[update],
        &PushSettings::default(),
        timeout,
        &mut |_| {},
    )?;
    let report = PushReport::parse(&out.stdout);
    if !report.reached {
        bail!(
            "cannot push {name} to the upstream {url}: {}",
            out.complaint()
        );
    }
    match report.refs.get(name) {
        Some(status) if status.flag.accepted() => Ok(()),
        Some(status) => match status.refusal() {
            Reason::StaleInfo => {
                bail!("the upstream's {name} moved while this ran; run it again")
            }
            other => bail!("the upstream refused {name}: {}", describe(&other)),
        },
        None => bail!(
            "the upstream did not report on {name}: git push {}",
            out.describe_end()
        ),
    }
}

fn describe(reason: &Reason) -> String {
    match reason {
        Reason::StaleInfo => "stale info".to_owned(),
        Reason::AtomicPushFailed => "atomic push failed".to_owned(),
        Reason::Other(text) => text.clone(),
    }
}

/// Both sides now agree on `name`: the record of what the upstream holds says so, the
/// ref is no longer waiting to be forwarded, and status stops listing it.
fn record(repo: &Path, name: &str, value: Option<&str>) -> Result<()> {
    crate::ledger::change(repo, |ledger| ledger.forwarded(name, value))?;
    for record in [crate::state::PULL_RECORD, crate::state::UPSTREAM_RECORD] {
        let _ = state::update(repo, record, |s| s.divergent_refs.retain(|n| n != name));
    }
    Ok(())
}
