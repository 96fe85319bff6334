//! The durable push-mirror queue under `mirror/queue/<mirror>/`: jobs written with
//! temp-file, fsync, rename, fsync-directory; moved `waiting/` → `running/` → deleted;
//! and the per-mirror OS lock that lets exactly one worker run.

use crate::config::Config;
use crate::refs::RefUpdate;
use crate::state;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Identifies a job file; anything else in the queue is not ours.
const FORMAT: &str = "mirror-hooks-job";
const VERSION: u32 = 1;

/// One queued request: "these refs changed; bring mirror M up to date". It holds ref
/// names, not values: the worker always pushes the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub format: String,
    pub version: u32,
    pub mirror: String,
    pub refs: Vec<String>,
    pub queued_at: String,
}

/// The queue of one mirror of one repository.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    mirror: String,
}

/// A claimed job file in `running/` (parsed, or why it could not be).
#[derive(Debug)]
pub struct Claimed {
    pub path: PathBuf,
    pub job: Result<Job, String>,
}

/// The lock a mirror's worker holds while it runs.
pub type WorkerLock = crate::lock::Lock;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Queue {
    pub fn new(repo: &Path, mirror: &str) -> Queue {
        Queue {
            dir: crate::state::mirror_dir(repo).join("queue").join(mirror),
            mirror: mirror.to_owned(),
        }
    }

    fn waiting(&self) -> PathBuf {
        self.dir.join("waiting")
    }

    fn running(&self) -> PathBuf {
        self.dir.join("running")
    }

    /// Where job files that cannot be read are set aside for a person to look at.
    pub fn damaged_dir(&self) -> PathBuf {
        self.dir.join("damaged")
    }

    /// The names of the job files set aside as damaged.
    pub fn damaged(&self) -> Vec<String> {
        list(&self.damaged_dir())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }

    /// Writes a job durably: once this returns, a crash or power cut cannot lose it.
    pub fn enqueue(&self, refs: &[String], now: SystemTime) -> Result<PathBuf> {
        let waiting = self.waiting();
        let tmp_dir = self.dir.join("tmp");
        if !waiting.is_dir() || !tmp_dir.is_dir() {
            for dir in [&waiting, &tmp_dir] {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            // New directories must survive a power cut too: sync each parent up to mirror/.
            let mut dir = self.dir.clone();
            for _ in 0..3 {
                sync_dir(&dir)?;
                if !dir.pop() {
                    break;
                }
            }
        }
        let job = Job {
            format: FORMAT.to_owned(),
            version: VERSION,
            mirror: self.mirror.clone(),
            refs: refs.to_vec(),
            queued_at: crate::state::timestamp(now),
        };
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "{nanos:024}-{}-{}.json",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = tmp_dir.join(&name);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&job)?)?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write a job in {}", tmp_dir.display()));
        }
        let path = waiting.join(&name);
        fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move a job into {}", waiting.display()))?;
        sync_dir(&waiting)?;
        Ok(path)
    }

    /// Takes the worker lock of this mirror, or `None` when another worker holds it.
    pub fn try_lock(&self) -> Result<Option<WorkerLock>> {
        crate::lock::Lock::try_acquire(&self.dir.join("lock"))
    }

    /// Where a `--now` request waits for the worker that holds the lock.
    fn now_request(&self) -> PathBuf {
        self.dir.join("now")
    }

    /// Leaves a durable request for a run now, for a worker that holds the lock: every
    /// lock holder takes it before it decides whether to run, and looks for it again
    /// after letting go of the lock, so a request is never dropped.
    pub fn request_now(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.now_request();
        let write = || -> std::io::Result<()> { File::create(&path)?.sync_all() };
        write().with_context(|| format!("cannot write {}", path.display()))?;
        sync_dir(&self.dir)
    }

    /// True when a `--now` request waits.
    pub fn now_requested(&self) -> bool {
        self.now_request().exists()
    }

    /// Takes the waiting `--now` request, if any. Call with the lock.
    pub fn take_now_request(&self, _lock: &WorkerLock) -> Result<bool> {
        let path = self.now_request();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    /// Jobs a dead worker left in `running/` go back to `waiting/`. Call with the lock.
    pub fn recover(&self, _lock: &WorkerLock) -> Result<usize> {
        let mut moved = 0;
        for path in list(&self.running())? {
            let target = self.waiting().join(path.file_name().unwrap_or_default());
            fs::create_dir_all(self.waiting())?;
            fs::rename(&path, &target)
                .with_context(|| format!("cannot move {} back to waiting/", path.display()))?;
            moved += 1;
        }
        if moved > 0 {
            sync_dir(&self.waiting())?;
        }
        Ok(moved)
    }

    /// True when jobs are waiting.
    pub fn has_waiting(&self) -> bool {
        list(&self.waiting()).is_ok_and(|jobs| !jobs.is_empty())
    }

    /// Number of jobs waiting or running.
    pub fn pending(&self) -> usize {
        list(&self.waiting()).map_or(0, |j| j.len()) + list(&self.running()).map_or(0, |j| j.len())
    }

    /// Moves every waiting job to `running/` and reads it. Call with the lock.
    pub fn claim(&self, _lock: &WorkerLock) -> Result<Vec<Claimed>> {
        let running = self.running();
        fs::create_dir_all(&running)
            .with_context(|| format!("cannot create {}", running.display()))?;
        let mut claimed = Vec::new();
        for path in list(&self.waiting())? {
            let target = running.join(path.file_name().unwrap_or_default());
            fs::rename(&path, &target)
                .with_context(|| format!("cannot move {} to running/", path.display()))?;
            let job = read_job(&target, &self.mirror);
            claimed.push(Claimed { path: target, job });
        }
        Ok(claimed)
    }

    /// Deletes claimed jobs whose work is done.
    pub fn complete(&self, jobs: &[PathBuf]) -> Result<()> {
        for job in jobs {
            match fs::remove_file(job) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot delete {}", job.display()))
                }
            }
        }
        sync_dir(&self.running())
    }

    /// Puts claimed jobs back in `waiting/` for a later run.
    pub fn release(&self, jobs: &[PathBuf]) -> Result<()> {
        for job in jobs {
            let target = self.waiting().join(job.file_name().unwrap_or_default());
            fs::rename(job, &target)
                .with_context(|| format!("cannot move {} back to waiting/", job.display()))?;
        }
        sync_dir(&self.waiting())
    }

    /// The waiting jobs, oldest first, each read (or why it cannot be), for a look
    /// that changes nothing (`git mirror doctor`).
    pub fn waiting_jobs(&self) -> Vec<Claimed> {
        list(&self.waiting())
            .unwrap_or_default()
            .into_iter()
            .map(|path| Claimed {
                job: read_job(&path, &self.mirror),
                path,
            })
            .collect()
    }

    /// Moves a job that cannot be read out of the way, keeping it for inspection.
    pub fn set_aside(&self, job: &Claimed) -> Result<PathBuf> {
        let dir = self.damaged_dir();
        fs::create_dir_all(&dir)?;
        let target = dir.join(job.path.file_name().unwrap_or_default());
        fs::rename(&job.path, &target)
            .with_context(|| format!("cannot move {} to {}", job.path.display(), dir.display()))?;
        Ok(target)
    }
}

fn read_job(path: &Path, mirror: &str) -> Result<Job, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let job: Job =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not a valid job: {e}"))?;
    if job.format != FORMAT || job.version != VERSION {
        return Err(format!(
            "it has format {:?} version {}, this version reads {FORMAT:?} version {VERSION}",
            job.format, job.version
        ));
    }
    if job.mirror != mirror {
        return Err(format!("it is for mirror {:?}, not {mirror:?}", job.mirror));
    }
    if let Some(bad) = job
        .refs
        .iter()
        .find(|r| crate::refs::check_ref_name(r).is_err())
    {
        return Err(format!("it names the invalid ref {bad:?}"));
    }
    Ok(job)
}

/// The job files of a directory, oldest first (names start with a timestamp).
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            bail!("cannot sync {}: {e}", dir.display())
        }
    }
}
/// Queues a job for every push mirror whose refs `updates` touch and starts a detached
/// worker for each; problems are reported and logged, never fatal.
pub fn enqueue_push_mirrors(repo: &Path, updates: &[RefUpdate], say: &mut dyn FnMut(&str)) {
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
    let mut queued = Vec::new();
    for mirror in &config.push {
        let refs: Vec<String> = updates
            .iter()
            .filter(|u| mirror.refs.matches(&u.name))
            .map(|u| u.name.clone())
            .collect();
        if refs.is_empty() {
            continue;
        }
        match Queue::new(repo, &mirror.name).enqueue(&refs, now) {
            Ok(_) => queued.push((mirror.name.as_str(), refs.len())),
            Err(e) => {
                say(&format!(
                    "mirror-hooks: warning: could not queue the update of push mirror {}: {e:#}.",
                    mirror.name
                ));
                say("mirror-hooks: the push itself was accepted; once the problem is fixed, run `git mirror push --now` on the server.");
                state::log(
                    repo,
                    now,
                    &format!("push {} not queued: {e:#}", mirror.name),
                );
            }
        }
    }
    if queued.is_empty() {
        return;
    }
    // One worker process serves every mirror with queued jobs, each in its own thread.
    // While paused no worker would push: `git mirror resume` starts one.
    let paused = crate::pause::is_paused(repo);
    let started = match paused {
        true => Ok(()),
        false => crate::process::spawn_detached(repo, &["push"]),
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
    for (name, count) in queued {
        say(&format!(
            "mirror-hooks: queued for push mirror {name} ({count} ref{}){note}.",
            if count == 1 { "" } else { "s" }
        ));
    }
}
