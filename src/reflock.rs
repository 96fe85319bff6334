//! Git's ref lock files (`refs/…/NAME.lock`, `packed-refs.lock`, `HEAD.lock`) that a
//! killed pull may leave behind: the record a pull writes before each git that writes
//! refs, the cleanup the next run makes with it, and the stale locks `doctor` reports.

use crate::process_id::{started_at, wait_gone, GONE_WAIT};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The record, in `mirror/`: present only while a git that writes refs runs.
const RECORD: &str = "pull-writer.json";
const FORMAT: &str = "mirror-hooks-ref-writer";
/// Our own refs: a lock under them is never anyone else's (pushes there are refused).
const PRIVATE_DIR: &str = "refs/mirror-hooks";
/// A recorded lock whose content says it is ours is removed only once it has existed
/// this long unchanged.
const SETTLED: Duration = Duration::from_secs(1);
/// The one lock of a reftable ref store: a transaction holds it from `prepare` on.
const REFTABLE_LOCK: &str = "reftable/tables.list.lock";
/// `doctor` calls a lock stale from this age.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// What the git about to run (or running) may lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: String,
    /// The git-mirror process that started it.
    pid: u32,
    /// The git process, once started.
    git_pid: Option<u32>,
    /// When that process started, in clock ticks since boot (`/proc/PID/stat` field 22),
    /// and the boot it started in: a pid that names another process is not it.
    #[serde(default)]
    git_started: Option<(u64, String)>,
    /// When the record was written, in milliseconds since the epoch: a lock older than
    /// that was not made by this git.
    written_ms: u64,
    /// Lock files it may create, relative to the repository.
    locks: Vec<String>,
    /// What git writes into some of them (`NEW\n` for a ref it updates or creates): a
    /// lock with other content is another writer's. Locks not listed are empty (a ref
    /// being deleted, `packed-refs.lock`), and tell nothing about their writer.
    #[serde(default)]
    contents: BTreeMap<String, String>,
}

/// The lock files a git that writes refs may create, and what it writes into them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Locks {
    names: Vec<String>,
    contents: BTreeMap<String, String>,
    /// The lock files as they were while the git held them (inode, modification time
    /// in nanoseconds): a file that is still exactly that one is certainly its.
    #[serde(default)]
    held: BTreeMap<String, (u64, i128)>,
    /// The lock of the branch `HEAD` points to, when the git updates it (it then takes
    /// `HEAD.lock` too, right after).
    #[serde(default)]
    head_branch: Option<String>,
}

impl Locks {
    /// Notes the lock files as they are now, while their git holds them all (a
    /// transaction it has prepared): nobody else can have made them.
    pub fn note_held(&mut self, repo: &Path) {
        for name in &self.names {
            if let Some(id) = identity(&repo.join(name)) {
                self.held.insert(name.clone(), id);
            }
        }
    }
}

/// A file's inode and modification time: which file it is, as far as a lock goes.
fn identity(path: &Path) -> Option<(u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    Some((
        meta.ino(),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    ))
}

/// The record of one git that writes refs; remove it with [`Writing::done`] once that
/// git has ended.
#[derive(Debug)]
pub struct Writing {
    path: PathBuf,
    record: Record,
}

/// Writes, durably, the record of the lock files a git about to start may create. The
/// record of an earlier git whose locks could not be settled yet is never replaced:
/// then this fails, and the run with it.
pub fn before(repo: &Path, locks: Locks) -> Result<Writing> {
    let record = Record {
        format: FORMAT.to_owned(),
        pid: std::process::id(),
        git_pid: None,
        git_started: None,
        written_ms: millis(SystemTime::now()),
        locks: locks.names,
        contents: locks.contents,
    };
    let writing = Writing {
        path: crate::state::mirror_dir(repo).join(RECORD),
        record,
    };
    if writing.path.exists() {
        anyhow::bail!(
            "lock files a killed git may have left are not settled yet ({} is still there); the next run removes them once it can tell they are not a live writer's",
            writing.path.display()
        );
    }
    writing.write(true)?;
    Ok(writing)
}

impl Writing {
    /// Adds the pid of the git that now runs. Not synced: after a power cut no process
    /// is alive, and the pid is only needed while the machine is up.
    pub fn started(&mut self, pid: u32) {
        self.record.git_pid = Some(pid);
        self.record.git_started = started_at(pid);
        let _ = self.write(false);
    }

    /// The git has ended (and released its locks): forget the record.
    pub fn done(self) {
        let _ = fs::remove_file(&self.path);
    }

    fn write(&self, durable: bool) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        file.write_all(&serde_json::to_vec(&self.record)?)?;
        if durable {
            file.as_file().sync_all()?;
        }
        file.persist(&self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        if durable {
            fs::File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }
}

/// The lock files `git update-ref --stdin` may create for `commands` (`update REF …`,
/// `create REF …`, `delete REF …`): each ref's own; `packed-refs.lock` when it deletes
/// (the ref may be packed); `HEAD.lock` when it moves the branch HEAD points to (git
/// writes HEAD's reflog too). With the reftable ref store, its one lock.
pub fn locks_for(repo: &Path, commands: &[String]) -> Locks {
    if repo.join("reftable").is_dir() {
        // The whole store is locked at once; what git writes into it is not known.
        return Locks {
            names: vec![REFTABLE_LOCK.to_owned()],
            ..Locks::default()
        };
    }
    let head = fs::read_to_string(repo.join("HEAD")).ok();
    let head = head
        .as_deref()
        .and_then(|h| h.strip_prefix("ref: "))
        .map(str::trim_end);
    let mut locks = Vec::new();
    let mut contents = BTreeMap::new();
    let mut deletes = false;
    let mut head_branch = None;
    for command in commands {
        let mut words = command.split(' ');
        let (Some(verb), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        deletes |= verb == "delete";
        locks.push(format!("{name}.lock"));
        if let ("update" | "create", Some(new)) = (verb, words.next()) {
            contents.insert(format!("{name}.lock"), format!("{new}\n"));
        }
        if Some(name) == head {
            locks.push("HEAD.lock".to_owned());
            head_branch = Some(format!("{name}.lock"));
        }
    }
    if deletes {
        locks.push("packed-refs.lock".to_owned());
    }
    locks.sort();
    locks.dedup();
    Locks {
        names: locks,
        contents,
        held: BTreeMap::new(),
        head_branch,
    }
}

/// What [`recover`] did, and whether it had to leave a lock it could not yet judge (the
/// record then stays, and the run must stop: see [`before`]).
#[derive(Debug, Default)]
pub struct Recovery {
    pub said: Vec<String>,
    pub pending: bool,
}

/// After a run was killed, with the pull's lock held: removes the lock files the git
/// it recorded left (once that git is gone), and every lock file under our private
/// namespace, and never any other: a recorded ref lock only when it holds what that git
/// wrote, an empty one (a deletion's, `packed-refs.lock`) only once it is older than
/// [`STALE_AFTER`], which no live writer holds a lock for.
pub fn recover(repo: &Path) -> Recovery {
    let mut said = Vec::new();
    let mut pending = false;
    let record_path = crate::state::mirror_dir(repo).join(RECORD);
    let record = match fs::read(&record_path) {
        Ok(bytes) => Some(serde_json::from_slice::<Record>(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            said.push(format!(
                "cannot read {}: {e}; no lock removed",
                record_path.display()
            ));
            return Recovery {
                said,
                pending: true,
            };
        }
    };
    match record {
        Some(Ok(record)) if record.format == FORMAT => {
            let locks = Locks {
                names: record.locks,
                contents: record.contents,
                held: BTreeMap::new(),
                head_branch: None,
            };
            let git = record.git_pid.map(|pid| (pid, record.git_started));
            // A pull's git is killed while it creates its locks (SIGTERM removes the
            // others; the one being made may stay, empty): an empty lock it recorded
            // content for is taken as its, cut short.
            let released = release_with(repo, &locks, git, record.written_ms, true);
            said.extend(released.said);
            pending |= released.pending;
        }
        Some(_) => said.push(format!(
            "{} is not a record this version reads; the locks of public refs are left alone (`git mirror doctor` lists stale ones)",
            record_path.display()
        )),
        None => {}
    }
    let removed = remove_locks_under(&repo.join(PRIVATE_DIR));
    if removed > 0 {
        said.push(format!(
            "removed {removed} lock file{} under {PRIVATE_DIR}/ (git-mirror's own refs) a killed run left",
            if removed == 1 { "" } else { "s" }
        ));
    }
    if !pending {
        let _ = fs::remove_file(&record_path);
    }
    Recovery { said, pending }
}

/// Removes the lock files `locks` that the git `git` (pid and start, once known) started
/// after `written_ms` may have left, once that git is gone: a ref lock only when it holds
/// what that git wrote, an empty one only once it is older than [`STALE_AFTER`]; never
/// any other. Locks under our private namespace are left to the caller.
pub fn release(
    repo: &Path,
    locks: &Locks,
    git: Option<(u32, Option<(u64, String)>)>,
    written_ms: u64,
) -> Recovery {
    release_with(repo, locks, git, written_ms, false)
}

/// [`release`]; with `empty_is_cut`, an empty lock the git was to write a value into
/// counts as its, cut short, as soon as it has settled.
fn release_with(
    repo: &Path,
    locks: &Locks,
    git: Option<(u32, Option<(u64, String)>)>,
    written_ms: u64,
    empty_is_cut: bool,
) -> Recovery {
    if let Some((pid, started)) = git {
        if !wait_gone(pid, started.as_ref()) {
            return Recovery {
                said: vec![format!(
                    "the git process {pid} a killed run started is still running after {}s; its locks are left alone",
                    GONE_WAIT.as_secs()
                )],
                pending: true,
            };
        }
    }
    // Locks under our own namespace are removed by the pull's recovery, whoever made them.
    let mut public: Vec<&String> = locks
        .names
        .iter()
        .filter(|lock| !lock.starts_with(&format!("{PRIVATE_DIR}/")))
        .collect();
    // Empty locks last: whether they are the killed git's is judged from the others.
    public.sort_by_key(|lock| fs::symlink_metadata(repo.join(lock)).map_or(true, |m| m.len() == 0));
    let mut sweep = Sweep {
        repo,
        locks,
        written: UNIX_EPOCH + Duration::from_millis(written_ms),
        empty_is_cut,
        removed: Vec::new(),
        recovery: Recovery::default(),
        head_branch_made: None,
        newest_ours: None,
    };
    for lock in public {
        sweep.judge(lock);
    }
    let mut recovery = sweep.recovery;
    if !sweep.removed.is_empty() {
        let removed: Vec<&str> = sweep.removed.iter().map(String::as_str).collect();
        recovery.said.push(format!(
            "removed {} a killed git of an earlier run left",
            some_files(&removed)
        ));
    }
    recovery
}

/// One pass of [`release_with`] over a killed git's locks.
struct Sweep<'a> {
    repo: &'a Path,
    locks: &'a Locks,
    written: SystemTime,
    empty_is_cut: bool,
    removed: Vec<String>,
    recovery: Recovery,
    /// When the lock of HEAD's branch was made, once shown the killed git's.
    head_branch_made: Option<SystemTime>,
    /// When the newest lock shown the killed git's was made.
    newest_ours: Option<SystemTime>,
}

impl Sweep<'_> {
    fn judge(&mut self, lock: &str) {
        let path = self.repo.join(lock);
        let made = fs::symlink_metadata(&path).and_then(|m| m.modified()).ok();
        // Noted while the git held it: only that very file is its, whatever another
        // writer's lock of the same ref may hold.
        if let Some(held) = self.locks.held.get(lock) {
            match identity(&path) {
                Some(now) if now == *held && fs::remove_file(&path).is_ok() => {
                    self.ours(lock, made);
                }
                Some(now) if now == *held => {}
                Some(_) => self.recovery.said.push(format!(
                    "{lock} is not the file the killed git held: another writer's, left alone"
                )),
                None => {}
            }
            return;
        }
        let content = self.locks.contents.get(lock).map(String::as_str);
        match remove_if_ours(self.repo, lock, self.written, content, self.empty_is_cut) {
            Verdict::Removed => self.ours(lock, made),
            Verdict::NotOurs(line) => self.recovery.said.push(line),
            Verdict::TooYoung
                if self.taken_with_ours(lock, made) && fs::remove_file(&path).is_ok() =>
            {
                self.removed.push(lock.to_owned());
            }
            Verdict::TooYoung => {
                self.recovery.pending = true;
                self.recovery.said.push(format!(
                    "{lock} may be a killed git's or a live writer's; it is left until it is {}s old",
                    STALE_AFTER.as_secs()
                ));
            }
            Verdict::Nothing => {}
        }
    }

    fn ours(&mut self, lock: &str, made: Option<SystemTime>) {
        self.removed.push(lock.to_owned());
        if self.locks.head_branch.as_deref() == Some(lock) {
            self.head_branch_made = made;
        }
        self.newest_ours = self.newest_ours.max(made);
    }

    /// An empty lock made with the killed git's own: git takes HEAD.lock (empty: it
    /// only writes HEAD's reflog) right after the lock of the branch HEAD points to, and
    /// any other writer of that branch stops at the branch's lock before it gets there.
    /// And git creates the locks of a transaction one after the other, each then
    /// written: killed between the two, the last one stays empty, made within moments
    /// of the newest lock shown its. (A live writer's empty lock of a ref the killed git
    /// never reached, made in that same moment, is the risk left; see README's Known
    /// limitations.)
    fn taken_with_ours(&self, lock: &str, made: Option<SystemTime>) -> bool {
        if lock == "HEAD.lock" {
            taken_together(made, self.head_branch_made)
        } else {
            self.locks.contents.contains_key(lock) && taken_together(made, self.newest_ours)
        }
    }
}

/// True when a lock made at `made` was made within moments after `ours`.
fn taken_together(made: Option<SystemTime>, ours: Option<SystemTime>) -> bool {
    match (made, ours) {
        (Some(at), Some(ours)) => at.duration_since(ours).is_ok_and(|after| after <= SETTLED),
        _ => false,
    }
}

/// `a.lock`, or `3 lock files (a.lock, b.lock, c.lock)`, or `1000 lock files (a.lock,
/// b.lock, c.lock and 997 more)`.
fn some_files(names: &[&str]) -> String {
    const SHOWN: usize = 3;
    match names {
        [one] => (*one).to_owned(),
        _ if names.len() <= SHOWN => format!("{} lock files ({})", names.len(), names.join(", ")),
        _ => format!(
            "{} lock files ({} and {} more)",
            names.len(),
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        ),
    }
}

/// What became of one recorded lock.
enum Verdict {
    Removed,
    /// Not the killed git's: left, with why.
    NotOurs(String),
    /// Empty and young: a live writer's as likely as the killed git's.
    TooYoung,
    /// Not there (or nothing to judge).
    Nothing,
}

/// Removes the recorded lock `lock` if it is there, was made after the record was
/// written, and is the killed git's: it holds `content` (what that git wrote) and stays
/// unchanged for [`SETTLED`], or, empty, is older than [`STALE_AFTER`].
fn remove_if_ours(
    repo: &Path,
    lock: &str,
    written: SystemTime,
    content: Option<&str>,
    empty_is_cut: bool,
) -> Verdict {
    match judge(repo, lock, written, content, empty_is_cut) {
        Some(Ok(())) => Verdict::Removed,
        Some(Err(verdict)) => verdict,
        None => Verdict::Nothing,
    }
}

fn judge(
    repo: &Path,
    lock: &str,
    written: SystemTime,
    content: Option<&str>,
    empty_is_cut: bool,
) -> Option<std::result::Result<(), Verdict>> {
    let name = lock.strip_suffix(".lock")?;
    let valid = name == "HEAD"
        || name == "packed-refs"
        || lock == REFTABLE_LOCK
        || (name.starts_with("refs/") && crate::refs::check_ref_name(name).is_ok());
    if !valid {
        return None;
    }
    let path = repo.join(lock);
    let before = fs::symlink_metadata(&path).ok()?;
    let made = before.modified().ok()?;
    // Our git could not have made a lock that was there before it started.
    if made + Duration::from_secs(1) < written {
        return Some(Err(Verdict::NotOurs(format!(
            "{lock} is older than the killed run's update; not ours, left alone (`git mirror doctor` explains it)"
        ))));
    }
    let age = SystemTime::now().duration_since(made).unwrap_or_default();
    let held = fs::read(&path).ok()?;
    match content {
        // An empty lock tells nothing about its writer: a git killed between creating
        // it and writing its value, or a live one deleting the ref (a two-phase push
        // holds such a lock for its whole forwarding). Only its age can tell, unless
        // the caller takes it as the killed git's (`empty_is_cut`: a pull's record).
        Some(_) if held.is_empty() && empty_is_cut => {}
        _ if held.is_empty() && age < STALE_AFTER => return Some(Err(Verdict::TooYoung)),
        None if age < STALE_AFTER => return Some(Err(Verdict::TooYoung)),
        // Git writes the value right after creating the lock: cut short, it is still
        // the start of it. What another writer wrote differs.
        Some(expected) if !expected.as_bytes().starts_with(&held) => {
            return Some(Err(Verdict::NotOurs(format!(
                "{lock} holds another value than the killed git wrote: a live writer's, left alone"
            ))));
        }
        _ => {}
    }
    if age < SETTLED {
        std::thread::sleep(SETTLED - age);
    }
    let after = fs::symlink_metadata(&path).ok()?;
    use std::os::unix::fs::MetadataExt;
    if after.ino() != before.ino() || after.modified().ok()? != made {
        return None;
    }
    Some(
        fs::remove_file(&path)
            .map_err(|e| Verdict::NotOurs(format!("cannot remove {}: {e}", path.display()))),
    )
}

/// Removes every `*.lock` file under `dir`; returns how many.
fn remove_locks_under(dir: &Path) -> usize {
    lock_files_under(dir)
        .into_iter()
        .filter(|path| fs::remove_file(path).is_ok())
        .count()
}

fn lock_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "lock") => {
                    found.push(path);
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// Git lock files in `repo` at least [`STALE_AFTER`] old, with their age: a git that
/// was killed while writing refs left them, and writes to those refs fail until they
/// go.
pub fn stale(repo: &Path, now: SystemTime) -> Vec<(PathBuf, Duration)> {
    let mut candidates = lock_files_under(&repo.join("refs"));
    candidates.extend(
        ["packed-refs.lock", "HEAD.lock", REFTABLE_LOCK]
            .iter()
            .map(|name| repo.join(name))
            .filter(|p| p.is_file()),
    );
    candidates
        .into_iter()
        .filter_map(|path| {
            let made = fs::symlink_metadata(&path).ok()?.modified().ok()?;
            let age = now.duration_since(made).ok()?;
            (age >= STALE_AFTER).then_some((path, age))
        })
        .collect()
}

/// True when `path` (from [`stale`]) is under our private namespace, which the next
/// pull cleans by itself.
pub fn is_private(repo: &Path, path: &Path) -> bool {
    path.starts_with(repo.join(PRIVATE_DIR))
}

pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locks_an_update_may_take() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let a = "1".repeat(40);
        let commands = [
            format!("update refs/heads/main {a} {a}"),
            format!("create refs/heads/topic {a}"),
        ];
        let locks = locks_for(dir.path(), &commands);
        assert_eq!(
            locks.names,
            ["HEAD.lock", "refs/heads/main.lock", "refs/heads/topic.lock"]
        );
        assert_eq!(locks.contents["refs/heads/topic.lock"], format!("{a}\n"));
        assert!(!locks.contents.contains_key("HEAD.lock"));
        let deletes = [format!("delete refs/mirror-hooks/pull/refs/heads/x {a}")];
        let locks = locks_for(dir.path(), &deletes);
        assert_eq!(
            locks.names,
            [
                "packed-refs.lock",
                "refs/mirror-hooks/pull/refs/heads/x.lock"
            ]
        );
        assert!(locks.contents.is_empty());
    }

    /// Writes a record of `locks` (with what git wrote into some), dated `ago`, for a
    /// git that is gone.
    fn killed_writer(repo: &Path, locks: &[&str], contents: &[(&str, &str)], ago: Duration) {
        let mut writing = before(
            repo,
            Locks {
                names: locks.iter().map(|l| (*l).to_owned()).collect(),
                contents: contents
                    .iter()
                    .map(|(l, c)| ((*l).to_owned(), (*c).to_owned()))
                    .collect(),
                held: BTreeMap::new(),
                head_branch: None,
            },
        )
        .unwrap();
        // A process that is certainly gone: a child we reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        writing.started(pid);
        writing.record.written_ms = millis(SystemTime::now() - ago);
        writing.write(false).unwrap();
    }

    fn lock(repo: &Path, name: &str, content: &str, ago: Duration) {
        fs::write(repo.join(name), content).unwrap();
        fs::File::options()
            .write(true)
            .open(repo.join(name))
            .unwrap()
            .set_modified(SystemTime::now() - ago)
            .unwrap();
    }

    #[test]
    fn only_the_killed_gits_own_locks_go() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        fs::create_dir_all(repo.join("refs/heads")).unwrap();
        fs::create_dir_all(repo.join("refs/mirror-hooks/pull/refs/heads")).unwrap();
        let a = format!("{}\n", "1".repeat(40));
        let b = format!("{}\n", "2".repeat(40));
        // Someone else's lock, older than the record.
        lock(repo, "refs/heads/old.lock", "", Duration::from_secs(3600));
        killed_writer(
            repo,
            &[
                "refs/heads/main.lock",
                "refs/heads/cut.lock",
                "refs/heads/live.lock",
                "refs/heads/old.lock",
                "packed-refs.lock",
                "../../etc/passwd.lock",
            ],
            &[
                ("refs/heads/main.lock", &a),
                ("refs/heads/cut.lock", &a),
                ("refs/heads/live.lock", &a),
            ],
            Duration::from_secs(600),
        );
        lock(repo, "refs/heads/main.lock", &a, Duration::ZERO);
        // Killed between creating the lock and writing the value.
        lock(repo, "refs/heads/cut.lock", &a[..10], Duration::ZERO);
        // A live push took this one since, writing its own value.
        lock(repo, "refs/heads/live.lock", &b, Duration::ZERO);
        // Empty, and older than any live writer holds a lock.
        lock(repo, "packed-refs.lock", "", STALE_AFTER * 2);
        lock(repo, "refs/heads/unrecorded.lock", "", Duration::ZERO);
        lock(
            repo,
            "refs/mirror-hooks/pull/refs/heads/x.lock",
            "",
            Duration::ZERO,
        );
        let recovery = recover(repo);
        let said = &recovery.said;
        assert!(!recovery.pending, "{said:?}");
        assert!(!repo.join("refs/heads/main.lock").exists(), "{said:?}");
        assert!(!repo.join("refs/heads/cut.lock").exists(), "{said:?}");
        assert!(repo.join("refs/heads/live.lock").exists(), "{said:?}");
        assert!(!repo.join("packed-refs.lock").exists());
        assert!(!repo
            .join("refs/mirror-hooks/pull/refs/heads/x.lock")
            .exists());
        assert!(repo.join("refs/heads/old.lock").exists());
        assert!(repo.join("refs/heads/unrecorded.lock").exists());
        assert!(!repo.join("mirror").join(RECORD).exists());
        let stale_now = stale(repo, SystemTime::now() + STALE_AFTER);
        let names: Vec<_> = stale_now
            .iter()
            .map(|(p, _)| p.strip_prefix(repo).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("refs/heads/live.lock"),
                PathBuf::from("refs/heads/old.lock"),
                PathBuf::from("refs/heads/unrecorded.lock")
            ]
        );
    }

    #[test]
    fn a_young_empty_lock_is_left_and_the_record_kept_until_it_can_be_judged() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        killed_writer(repo, &["packed-refs.lock"], &[], Duration::from_secs(5));
        // A live `git pack-refs` (or a push deleting a branch) may hold it right now.
        lock(repo, "packed-refs.lock", "", Duration::ZERO);
        let recovery = recover(repo);
        assert!(recovery.pending, "{:?}", recovery.said);
        assert!(repo.join("packed-refs.lock").exists());
        assert!(repo.join("mirror").join(RECORD).exists());
        // Nothing may replace the record meanwhile.
        assert!(before(repo, Locks::default()).is_err());
    }

    // Review (issue 12): recovery must never remove a live writer's lock.

    /// A bare repository with three commits A, B and C on `refs/heads/main` (= A) and
    /// `refs/heads/topic` (= A), HEAD pointing to main.
    fn repo_with_two_commits() -> (tempfile::TempDir, String, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let git = |args: &[&str], input: Option<&str>| -> String {
            use std::io::Write as _;
            let mut child = std::process::Command::new("git")
                .args(args)
                .current_dir(repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.unwrap_or("").as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "git {args:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "-q", "--bare", "."], None);
        let tree = git(&["hash-object", "-t", "tree", "-w", "--stdin"], Some(""));
        let a = git(&["commit-tree", "-m", "a", &tree], None);
        let b = git(&["commit-tree", "-m", "b", &tree], None);
        let c = git(&["commit-tree", "-m", "c", &tree], None);
        git(&["update-ref", "refs/heads/main", &a], None);
        git(&["update-ref", "refs/heads/topic", &a], None);
        git(&["symbolic-ref", "HEAD", "refs/heads/main"], None);
        (dir, a, b, c)
    }

    /// A live `git update-ref --stdin` that has prepared `commands`: it holds their locks.
    fn live_writer(repo: &Path, commands: &[String]) -> std::process::Child {
        use std::io::{BufRead as _, Write as _};
        let mut child = std::process::Command::new("git")
            .args(["update-ref", "--stdin"])
            .current_dir(repo)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = String::from("start\n");
        for c in commands {
            input.push_str(c);
            input.push('\n');
        }
        input.push_str("prepare\n");
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "update-ref ended");
            if line.trim() == "prepare: ok" {
                break;
            }
        }
        child.stdout = Some(out.into_inner());
        child
    }

    /// Commits the live writer's transaction; true when git says it did.
    fn commit_live(mut child: std::process::Child) -> bool {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"commit\n");
        drop(stdin);
        child.wait().unwrap().success()
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// The killed update-ref's lock was noted while held (`note_held`), and an earlier
    /// recovery run already removed it (the journal stayed: the upstream could not be
    /// asked). A live writer now holds the same lock, writing the same value (a retried
    /// push of the same commit; a pull applying the value the upstream took). The
    /// identity rule does not match (another file), and the content rule then removes
    /// the live writer's lock.
    #[test]
    fn review_a_live_writers_lock_with_the_same_value_is_never_removed() {
        let (dir, a, b, _) = repo_with_two_commits();
        let repo = dir.path();
        let commands = [format!("update refs/heads/topic {b} {a}")];
        let mut locks = locks_for(repo, &commands);
        // The killed git's lock, as noted once prepared, then removed by a first recovery.
        fs::write(repo.join("refs/heads/topic.lock"), format!("{b}\n")).unwrap();
        locks.note_held(repo);
        fs::remove_file(repo.join("refs/heads/topic.lock")).unwrap();
        let written = millis(SystemTime::now() - Duration::from_secs(10));

        let live = live_writer(repo, &commands);
        let released = release(repo, &locks, Some((dead_pid(), None)), written);
        let still_there = repo.join("refs/heads/topic.lock").exists();
        let committed = commit_live(live);
        assert!(
            still_there,
            "a live writer's lock was removed: {:?}",
            released.said
        );
        assert!(
            committed,
            "the live writer's commit failed: {:?}",
            released.said
        );
    }

    /// The killed git had locked `topic` and was waiting for `main` (HEAD's branch),
    /// which a live writer holds, with HEAD.lock, for its whole transaction. The
    /// HEAD.lock rule (an empty HEAD.lock made within a second of a lock shown ours)
    /// takes any lock shown ours, not the lock of HEAD's branch, and removes the live
    /// writer's HEAD.lock.
    #[test]
    fn review_a_live_writers_head_lock_is_never_removed() {
        let (dir, a, b, c) = repo_with_two_commits();
        let repo = dir.path();
        let killed = [
            format!("update refs/heads/topic {b} {a}"),
            format!("update refs/heads/main {b} {a}"),
        ];
        let locks = locks_for(repo, &killed);
        assert!(locks.names.contains(&"HEAD.lock".to_owned()));
        let written = millis(SystemTime::now() - Duration::from_secs(5));
        // What the killed git left: its lock of topic, with its value.
        fs::write(repo.join("refs/heads/topic.lock"), format!("{b}\n")).unwrap();
        // A live writer of main (another value): main.lock and HEAD.lock are its.
        let live = live_writer(repo, &[format!("update refs/heads/main {c} {a}")]);
        assert!(repo.join("HEAD.lock").exists());
        let released = release(repo, &locks, Some((dead_pid(), None)), written);
        let head_lock = repo.join("HEAD.lock").exists();
        let committed = commit_live(live);
        assert!(
            head_lock,
            "the live writer's HEAD.lock was removed: {:?}",
            released.said
        );
        assert!(committed, "{:?}", released.said);
    }

    /// The killed git was updating topic (its lock holds the new value once written).
    /// A live writer now deletes topic (a two-phase push holds that empty lock for the
    /// whole upstream push). An empty lock "starts" every expected content, so it is
    /// taken for the killed git's, cut short, and removed.
    #[test]
    fn review_a_live_deletions_empty_lock_is_never_removed() {
        let (dir, a, b, _) = repo_with_two_commits();
        let repo = dir.path();
        let locks = locks_for(repo, &[format!("update refs/heads/topic {b} {a}")]);
        let written = millis(SystemTime::now() - Duration::from_secs(5));
        let live = live_writer(repo, &[format!("delete refs/heads/topic {a}")]);
        assert_eq!(fs::read(repo.join("refs/heads/topic.lock")).unwrap(), b"");
        let released = release(repo, &locks, Some((dead_pid(), None)), written);
        let still_there = repo.join("refs/heads/topic.lock").exists();
        let committed = commit_live(live);
        assert!(
            still_there,
            "a live deletion's lock was removed: {:?}",
            released.said
        );
        assert!(committed, "{:?}", released.said);
    }
}
