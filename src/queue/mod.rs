//! The durable push-mirror queue under `mirror/queue/`: a push is written once, as one
//! job naming every mirror it concerns, to `_incoming/` (temp file, fsync, rename, fsync
//! the directory); the worker fans it out to each mirror's `<mirror>/waiting/` (hard
//! links), where jobs move `waiting/` → `running/` → deleted; and the per-mirror OS lock
//! that lets exactly one worker run.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

mod incoming;

#[cfg(test)]
use incoming::{enqueue_push, fan_out_to, link_into};
pub use incoming::{enqueue_push_mirrors, enqueue_push_mirrors_after, fan_out};

/// Identifies a job file of one mirror; anything else in the queue is not ours.
const FORMAT: &str = "mirror-hooks-job";
const VERSION: u32 = 1;

/// Identifies the job of one push, naming each mirror it concerns with its refs.
const PUSH_FORMAT: &str = "mirror-hooks-push";
const PUSH_VERSION: u32 = 1;

/// Where the hooks write each push's one job, beside the mirrors' queues: no mirror can
/// take this name (mirror names begin with a letter or a digit).
const INCOMING: &str = "_incoming";

/// How old a temp file in `_incoming/` must be to be the leftover of a hook that died
/// while writing it (a live hook renames its file within milliseconds).
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

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

/// One push's job: "these refs changed; bring each of these mirrors up to date", written
/// once for all mirrors so that the pusher waits for one durable write, not one per
/// mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushJob {
    pub format: String,
    pub version: u32,
    /// Mirror name → the refs of the push its patterns match.
    pub mirrors: BTreeMap<String, Vec<String>>,
    pub queued_at: String,
}

/// What every job file starts with, read first to tell the two kinds apart.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

/// The queue of one mirror of one repository.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    incoming: PathBuf,
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
        let root = queue_dir(repo);
        Queue {
            dir: root.join(mirror),
            incoming: root.join(INCOMING),
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

    /// Writes a job of this mirror alone into `waiting/`, as versions before the one
    /// job per push did (jobs an upgrade finds there are still run).
    #[cfg(test)]
    pub fn enqueue(&self, refs: &[String], now: SystemTime) -> Result<PathBuf> {
        let job = Job {
            format: FORMAT.to_owned(),
            version: VERSION,
            mirror: self.mirror.clone(),
            refs: refs.to_vec(),
            queued_at: crate::state::timestamp(now),
        };
        let tmp_dir = self.dir.join("tmp");
        ensure_dir(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{}.json", job_name(now)));
        fs::write(&tmp, serde_json::to_vec(&job)?)?;
        link_into(&tmp, &self.waiting())?;
        fs::remove_file(&tmp)?;
        Ok(self.waiting().join(tmp.file_name().unwrap_or_default()))
    }

    /// Takes the worker lock of this mirror, or `None` when another worker holds it.
    pub fn try_lock(&self) -> Result<Option<WorkerLock>> {
        crate::lock::Lock::try_acquire(&self.dir.join("lock"))
    }

    /// True when a worker holds this mirror's lock now. Every holder looks at the queue
    /// again after letting go (see `push::work`), so a job queued while this is true is
    /// run without starting another worker. Taking the lock for the look, when it is
    /// free, can make a worker starting at that instant step back as busy: then this
    /// says false and the caller starts one.
    pub fn worker_running(&self) -> bool {
        let Ok(file) = File::open(self.dir.join("lock")) else {
            return false;
        };
        matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
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

    /// True when jobs are waiting (here, or in `_incoming/` for this mirror).
    pub fn has_waiting(&self) -> bool {
        // `_incoming/` first: a fan-out moves jobs from there to `waiting/`, so a job
        // moving meanwhile is seen in one place or the other, never missed.
        !self.incoming().is_empty() || list(&self.waiting()).is_ok_and(|jobs| !jobs.is_empty())
    }

    /// Number of jobs waiting or running (here, or in `_incoming/` for this mirror).
    pub fn pending(&self) -> usize {
        // In the order jobs move (see `has_waiting`); one moving meanwhile may count twice.
        self.incoming().len()
            + list(&self.waiting()).map_or(0, |j| j.len())
            + list(&self.running()).map_or(0, |j| j.len())
    }

    /// The jobs in `_incoming/` not yet fanned out that concern this mirror, each read as
    /// this mirror's job (or why it cannot be: a damaged one concerns every mirror).
    fn incoming(&self) -> Vec<Claimed> {
        list(&self.incoming)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|path| {
                let job = match read_push(&path) {
                    Ok(push) => push.mirrors.get(&self.mirror).map(|refs| {
                        Ok(Job {
                            format: FORMAT.to_owned(),
                            version: VERSION,
                            mirror: self.mirror.clone(),
                            refs: refs.clone(),
                            queued_at: push.queued_at,
                        })
                    })?,
                    Err(why) => Err(why),
                };
                Some(Claimed { path, job })
            })
            .collect()
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
        let mut jobs: Vec<Claimed> = list(&self.waiting())
            .unwrap_or_default()
            .into_iter()
            .map(|path| Claimed {
                job: read_job(&path, &self.mirror),
                path,
            })
            .collect();
        jobs.extend(self.incoming());
        jobs.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
        jobs
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

/// Reads a job of `mirror`'s queue: one this version writes for a push (the fan-out
/// links it into each mirror's queue), or one of a single mirror (older versions wrote
/// those; they are still read after an upgrade).
fn read_job(path: &Path, mirror: &str) -> Result<Job, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not a valid job: {e}"))?;
    let job = match (header.format.as_str(), header.version) {
        (PUSH_FORMAT, PUSH_VERSION) => {
            let push = parse_push(&bytes)?;
            let refs = push.mirrors.get(mirror).cloned().ok_or_else(|| {
                format!(
                    "it is for mirrors {:?}, not {mirror:?}",
                    push.mirrors.keys()
                )
            })?;
            Job {
                format: FORMAT.to_owned(),
                version: VERSION,
                mirror: mirror.to_owned(),
                refs,
                queued_at: push.queued_at,
            }
        }
        (FORMAT, VERSION) => {
            let job: Job = serde_json::from_slice(&bytes)
                .map_err(|e| format!("it is not a valid job: {e}"))?;
            if job.mirror != mirror {
                return Err(format!("it is for mirror {:?}, not {mirror:?}", job.mirror));
            }
            check_refs(&job.refs)?;
            job
        }
        (format, version) => return Err(unknown_format(format, version)),
    };
    Ok(job)
}

fn unknown_format(format: &str, version: u32) -> String {
    format!(
        "it has format {format:?} version {version}, this version reads {PUSH_FORMAT:?} version {PUSH_VERSION} and {FORMAT:?} version {VERSION}"
    )
}

/// Reads a push's job from `_incoming/`.
fn read_push(path: &Path) -> Result<PushJob, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not a valid job: {e}"))?;
    if (header.format.as_str(), header.version) != (PUSH_FORMAT, PUSH_VERSION) {
        return Err(unknown_format(&header.format, header.version));
    }
    parse_push(&bytes)
}

fn parse_push(bytes: &[u8]) -> Result<PushJob, String> {
    let push: PushJob =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not a valid job: {e}"))?;
    for refs in push.mirrors.values() {
        check_refs(refs)?;
    }
    Ok(push)
}

fn check_refs(refs: &[String]) -> Result<(), String> {
    match refs
        .iter()
        .find(|r| crate::refs::check_ref_name(r).is_err())
    {
        Some(bad) => Err(format!("it names the invalid ref {bad:?}")),
        None => Ok(()),
    }
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

/// Where the queues of `repo`'s push mirrors live.
fn queue_dir(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join("queue")
}

/// A unique, time-ordered job file name (`list` sorts by it, oldest first).
fn job_name(now: SystemTime) -> String {
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{nanos:024}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `dir` and whatever of its parents is missing, and makes each new directory
/// durable (an fsync of its parent); nothing to sync when it already existed, the usual
/// case, so a push pays for its directories only once.
fn ensure_dir(dir: &Path) -> Result<()> {
    for parent in create_dir(dir)? {
        sync_dir(&parent)?;
    }
    Ok(())
}

/// Creates `dir` and whatever of its parents is missing; the directories to sync for
/// the new ones to survive a power cut (their parents), deepest first.
fn create_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut parents = Vec::new();
    let mut missing = Some(dir);
    while let Some(d) = missing.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        parents.extend(d.parent().map(Path::to_owned));
        missing = d.parent();
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(parents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn claim_refs(repo: &Path, mirror: &str) -> Vec<Result<Vec<String>, String>> {
        let queue = Queue::new(repo, mirror);
        let lock = queue.try_lock().unwrap().unwrap();
        queue
            .claim(&lock)
            .unwrap()
            .into_iter()
            .map(|c| c.job.map(|j| j.refs))
            .collect()
    }

    fn files(dir: &Path) -> usize {
        list(dir).unwrap().len()
    }

    #[test]
    fn one_push_is_one_file_that_each_mirror_counts_and_reads_as_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let jobs = BTreeMap::from([
            ("a".to_owned(), refs(&["refs/heads/main", "refs/tags/v1"])),
            ("b".to_owned(), refs(&["refs/heads/main"])),
        ]);
        enqueue_push(repo, jobs, SystemTime::now()).unwrap();
        assert_eq!(files(&queue_dir(repo).join(INCOMING)), 1);
        for (mirror, pending) in [("a", 1), ("b", 1), ("c", 0)] {
            let queue = Queue::new(repo, mirror);
            assert_eq!(queue.pending(), pending, "{mirror}");
            assert_eq!(queue.has_waiting(), pending == 1, "{mirror}");
        }
        let seen = Queue::new(repo, "a").waiting_jobs();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].job.as_ref().unwrap().refs,
            refs(&["refs/heads/main", "refs/tags/v1"])
        );

        assert_eq!(fan_out_to(repo, &["a", "b", "c"]).unwrap(), 1);
        assert_eq!(files(&queue_dir(repo).join(INCOMING)), 0);
        assert_eq!(
            claim_refs(repo, "a"),
            [Ok(refs(&["refs/heads/main", "refs/tags/v1"]))]
        );
        assert_eq!(claim_refs(repo, "b"), [Ok(refs(&["refs/heads/main"]))]);
        assert!(claim_refs(repo, "c").is_empty());
        // Claimed jobs are still pending until completed.
        assert_eq!(Queue::new(repo, "a").pending(), 1);
    }

    #[test]
    fn a_fan_out_that_died_halfway_only_links_again() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let jobs = BTreeMap::from([("a".to_owned(), refs(&["refs/heads/main"]))]);
        let path = enqueue_push(repo, jobs, SystemTime::now()).unwrap();
        // Linked into a's queue, then killed before the incoming file was removed.
        link_into(&path, &Queue::new(repo, "a").waiting()).unwrap();
        fan_out_to(repo, &["a"]).unwrap();
        assert_eq!(claim_refs(repo, "a"), [Ok(refs(&["refs/heads/main"]))]);
        assert_eq!(Queue::new(repo, "a").pending(), 1);
    }

    #[test]
    fn jobs_of_the_previous_version_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        Queue::new(repo, "a")
            .enqueue(&refs(&["refs/heads/old"]), SystemTime::now())
            .unwrap();
        let jobs = BTreeMap::from([("a".to_owned(), refs(&["refs/heads/new"]))]);
        enqueue_push(repo, jobs, SystemTime::now()).unwrap();
        assert_eq!(Queue::new(repo, "a").pending(), 2);
        fan_out_to(repo, &["a"]).unwrap();
        assert_eq!(
            claim_refs(repo, "a"),
            [Ok(refs(&["refs/heads/old"])), Ok(refs(&["refs/heads/new"]))]
        );
    }

    #[test]
    fn unknown_mirrors_are_dropped_and_damaged_jobs_go_to_every_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let jobs = BTreeMap::from([
            ("gone".to_owned(), refs(&["refs/heads/main"])),
            ("a".to_owned(), refs(&["refs/heads/main"])),
        ]);
        enqueue_push(repo, jobs, SystemTime::now()).unwrap();
        let incoming = queue_dir(repo).join(INCOMING);
        fs::write(
            incoming.join("0-torn.json"),
            "{\"format\":\"mirror-hooks-push\"",
        )
        .unwrap();
        fs::write(incoming.join("1-evil.json"), r#"{"format":"mirror-hooks-push","version":1,"mirrors":{"../../x":["refs/heads/main"]},"queued_at":"x"}"#).unwrap();
        // A damaged incoming job concerns every mirror until it is fanned out.
        assert_eq!(Queue::new(repo, "b").pending(), 1);
        fan_out_to(repo, &["a", "b"]).unwrap();
        assert_eq!(files(&incoming), 0);
        let a = claim_refs(repo, "a");
        assert!(
            a[0].as_ref().is_err_and(|e| e.contains("not a valid job")),
            "{a:?}"
        );
        assert_eq!(a[1..], [Ok(refs(&["refs/heads/main"]))]);
        let b = claim_refs(repo, "b");
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].is_err());
        assert!(!queue_dir(repo).join("gone").exists());
        assert!(!dir.path().join("x").exists());
        let log = fs::read_to_string(crate::state::mirror_dir(repo).join("log")).unwrap();
        assert!(
            log.contains("dropped for mirrors no longer in mirror.toml: gone"),
            "{log}"
        );
    }

    #[test]
    fn a_worker_holding_the_lock_is_seen_and_a_free_lock_is_left_free() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path(), "a");
        assert!(!queue.worker_running());
        let lock = queue.try_lock().unwrap().unwrap();
        assert!(queue.worker_running());
        drop(lock);
        assert!(!queue.worker_running());
        assert!(queue.try_lock().unwrap().is_some());
    }
}
