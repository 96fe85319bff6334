//! The pushes' jobs on their way in: one durable file per push naming every mirror it
//! concerns (`_incoming/`), and the fan-out that moves each into the queues of the
//! mirrors it names.

use super::{
    create_dir, ensure_dir, job_name, list, queue_dir, read_push, sync_dir, PushJob, Queue,
    INCOMING, PUSH_FORMAT, PUSH_VERSION, STALE_TEMP,
};
use crate::config::Config;
use crate::refs::RefUpdate;
use crate::state;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes one push's job durably, naming each mirror with its refs: once this returns, a
/// crash or power cut cannot lose it. One file fsync and one directory fsync, whatever
/// the number of mirrors; the worker fans it out ([`fan_out`]).
pub fn enqueue_push(
    repo: &Path,
    mirrors: BTreeMap<String, Vec<String>>,
    now: SystemTime,
) -> Result<PathBuf> {
    let dir = queue_dir(repo).join(INCOMING);
    let job = PushJob {
        format: PUSH_FORMAT.to_owned(),
        version: PUSH_VERSION,
        mirrors,
        queued_at: crate::state::timestamp(now),
    };
    let mut bytes = serde_json::to_vec(&job)?;
    bytes.push(b'\n');
    let name = job_name(now);
    // The temp file lives beside the job, so one directory fsync makes both the new
    // file and its rename durable.
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()
    };
    let written = create_dir(&dir).and_then(|parents| {
        write().map(|()| parents).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            anyhow::Error::from(e)
        })
    });
    let parents = written.with_context(|| format!("cannot write a job in {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    fs::rename(&tmp, &path).with_context(|| format!("cannot move a job into {}", dir.display()))?;
    sync_dir(&dir)?;
    // New directories (the first push): synced after the job, whose own syncs have
    // usually committed them already, so these cost little.
    for parent in parents {
        sync_dir(&parent)?;
    }
    Ok(path)
}

/// [`fan_out_to`] the push mirrors mirror.toml names now: read afresh, since a worker
/// started before a mirror was added must not drop that mirror's share of a new job.
/// Unreadable, the jobs stay in `_incoming/` for a later worker.
pub fn fan_out(repo: &Path) -> Result<usize> {
    let config = match Config::load(repo) {
        Ok(config) => config,
        Err(_) => return Ok(0),
    };
    let configured: Vec<&str> = config
        .iter()
        .flat_map(|c| c.push.iter().map(|m| m.name.as_str()))
        .collect();
    fan_out_to(repo, &configured)
}

/// Moves the pushes' jobs from `_incoming/` into the queues of the mirrors they name
/// (`configured`, the mirrors of mirror.toml): a hard link into each `<mirror>/waiting/`,
/// those directories synced, then the incoming file removed. A crash in between only
/// links again (a job run twice pushes nothing new). A job for a mirror no longer
/// configured is dropped and logged; a damaged one goes to every mirror, whose worker
/// sets it aside and says why. Returns how many jobs were fanned out.
pub(super) fn fan_out_to(repo: &Path, configured: &[&str]) -> Result<usize> {
    let root = queue_dir(repo);
    let incoming = root.join(INCOMING);
    if list(&incoming)?.is_empty() {
        return Ok(0);
    }
    // Workers of several mirrors may get here at once; one fans out, the others wait a
    // moment and find nothing left.
    let _lock = crate::lock::Lock::acquire(&incoming.join("lock"))?;
    let jobs = list(&incoming)?;
    let mut touched = BTreeSet::new();
    for path in &jobs {
        let targets: Vec<&str> = match read_push(path) {
            Ok(push) => {
                let (known, gone): (Vec<&str>, Vec<&str>) = push
                    .mirrors
                    .keys()
                    .map(String::as_str)
                    .partition(|m| configured.contains(m));
                if !gone.is_empty() {
                    crate::state::log(
                        repo,
                        SystemTime::now(),
                        &format!(
                            "push job {} dropped for mirrors no longer in mirror.toml: {}",
                            path.display(),
                            gone.join(", ")
                        ),
                    );
                }
                // Names only from mirror.toml: they are safe as directory names.
                configured
                    .iter()
                    .copied()
                    .filter(|m| known.contains(m))
                    .collect()
            }
            Err(_) => configured.to_vec(),
        };
        for mirror in targets {
            let waiting = Queue::new(repo, mirror).waiting();
            link_into(path, &waiting)?;
            touched.insert(waiting);
        }
    }
    for dir in &touched {
        sync_dir(dir)?;
    }
    for path in &jobs {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
    }
    remove_stale_temp_files(&incoming);
    sync_dir(&incoming)?;
    Ok(jobs.len())
}

/// Puts the job at `path` into `dir` under the same name: a hard link, or a durable copy
/// where the file system has none. Already there (a fan-out that died) is fine.
pub(super) fn link_into(path: &Path, dir: &Path) -> Result<()> {
    ensure_dir(dir)?;
    let name = path.file_name().unwrap_or_default();
    let target = dir.join(name);
    match fs::hard_link(path, &target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            let tmp = target.with_extension("tmp");
            let copy = || -> std::io::Result<()> {
                let bytes = fs::read(path)?;
                let mut file = File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                fs::rename(&tmp, &target)
            };
            copy().with_context(|| format!("cannot put {} into {}", path.display(), dir.display()))
        }
    }
}

/// Removes the temp files of hooks that died while writing a job (their push was not
/// queued, and they said so, or did not live to).
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if old && path.extension().is_some_and(|e| e == "tmp") {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Queues a job for every push mirror whose refs `updates` touch and starts a detached
/// worker for each; problems are reported and logged, never fatal.
pub fn enqueue_push_mirrors(repo: &Path, updates: &[RefUpdate], say: &mut dyn FnMut(&str)) {
    enqueue_push_mirrors_after(repo, updates, None, say);
}

/// [`enqueue_push_mirrors`] for post-receive: the worker it starts waits for the
/// process `after` (git receive-pack, the hook's parent) to end before it works, so
/// that it does not slow the end of the push the pusher waits for.
pub fn enqueue_push_mirrors_after(
    repo: &Path,
    updates: &[RefUpdate],
    after: Option<u32>,
    say: &mut dyn FnMut(&str),
) {
    let now = SystemTime::now();
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => {
            say("mirror-hooks: warning: mirror.toml is invalid, so no push mirror was queued:");
            say(&format!("mirror-hooks: {e}"));
            say("mirror-hooks: the push itself was accepted. Fix mirror.toml, then run `git mirror push --now` on the server.");
            state::log(
                repo,
                now,
                &format!("post-receive: push mirrors not queued: {e}"),
            );
            return;
        }
    };
    let mut jobs = BTreeMap::new();
    let mut queued = Vec::new();
    for mirror in &config.push {
        let refs: Vec<String> = updates
            .iter()
            .filter(|u| mirror.refs.matches(&u.name))
            .map(|u| u.name.clone())
            .collect();
        if !refs.is_empty() {
            queued.push((mirror.name.as_str(), refs.len()));
            jobs.insert(mirror.name.clone(), refs);
        }
    }
    if queued.is_empty() {
        return;
    }
    if let Err(e) = enqueue_push(repo, jobs, now) {
        let names: Vec<&str> = queued.iter().map(|(name, _)| *name).collect();
        let (s, names) = (if names.len() == 1 { "" } else { "s" }, names.join(", "));
        say(&format!(
            "mirror-hooks: warning: could not queue the update of push mirror{s} {names}: {e:#}."
        ));
        say("mirror-hooks: the push itself was accepted; once the problem is fixed, run `git mirror push --now` on the server.");
        state::log(repo, now, &format!("push {names} not queued: {e:#}"));
        return;
    }
    start_worker(repo, &queued, after, now, say);
}

/// Starts the worker for the mirrors just `queued` (name, number of refs) unless the
/// repository is paused or their workers already run, and tells the pusher.
fn start_worker(
    repo: &Path,
    queued: &[(&str, usize)],
    after: Option<u32>,
    now: SystemTime,
    say: &mut dyn FnMut(&str),
) {
    // One worker process serves every mirror with queued jobs, each in its own thread.
    // While paused no worker would push: `git mirror resume` starts one.
    let paused = crate::pause::is_paused(repo);
    // Workers already running every queued mirror run this push's job too before they
    // exit: starting another would only cost the pusher a process start.
    let running = || {
        queued
            .iter()
            .all(|(name, _)| Queue::new(repo, name).worker_running())
    };
    let started = match (paused || running(), after) {
        (true, _) => Ok(()),
        (false, Some(pid)) => {
            crate::process::spawn_detached(repo, &["push", "--after-pid", &pid.to_string()])
        }
        (false, None) => crate::process::spawn_detached(repo, &["push"]),
    };
    let note = match started {
        Ok(()) if paused => format!(
            " ({}: it goes out after `git mirror resume`)",
            crate::pause::REASON
        ),
        Ok(()) => String::new(),
        Err(e) => {
            state::log(repo, now, &format!("push worker not started: {e:#}"));
            format!(" (the worker could not be started: {e:#}; the job stays queued)")
        }
    };
    for &(name, count) in queued {
        say(&format!(
            "mirror-hooks: queued for push mirror {name} ({count} ref{}){note}.",
            if count == 1 { "" } else { "s" }
        ));
    }
}
