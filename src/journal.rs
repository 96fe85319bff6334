//! The intent journal of a two-phase push (`mirror/journal/`): written durably before the
//! local locks are taken and the upstream asked, removed once the local refs match the
//! upstream's answer. One left by a dead process names the refs to make equal to the
//! upstream, and the lock files its killed `git update-ref` may have left.

use crate::reflock::{self, Locks};
use crate::refs::RefUpdate;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const FORMAT: &str = "mirror-hooks-intent-1";
const DIR: &str = "journal";

/// What one push in flight is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    format: String,
    /// The proc-receive process, and when it started (clock ticks, boot id).
    pid: u32,
    started: Option<(u64, String)>,
    /// When it was written, in milliseconds since the epoch.
    written_ms: u64,
    /// The refs being forwarded, as pushed here.
    pub refs: Vec<IntentRef>,
    /// The `git update-ref` processes holding their locks.
    writers: Vec<Writer>,
    /// When the upstream was asked, in milliseconds since the epoch: from then on it may
    /// apply the push even after the asking process died.
    #[serde(default)]
    asking_ms: Option<u64>,
}

/// One ref being forwarded: its value here before the push, and the pushed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRef {
    pub name: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Writer {
    pid: Option<u32>,
    started: Option<(u64, String)>,
    locks: Locks,
}

/// The journal of the push this process is making; [`Journal::done`] removes it.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    intent: Intent,
}

fn dir(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join(DIR)
}

/// Writes, durably, the journal of a push forwarding `refs`, whose local transactions
/// may create `locks` (one entry per `git update-ref` to come).
pub fn begin(repo: &Path, refs: &[RefUpdate], locks: Vec<Locks>) -> Result<Journal> {
    let pid = std::process::id();
    let now = reflock::millis(SystemTime::now());
    let intent = Intent {
        format: FORMAT.to_owned(),
        pid,
        started: crate::process_id::started_at(pid),
        written_ms: now,
        refs: refs
            .iter()
            .map(|u| IntentRef {
                name: u.name.clone(),
                old: u.old.clone(),
                new: u.new.clone(),
            })
            .collect(),
        writers: locks
            .into_iter()
            .map(|locks| Writer {
                pid: None,
                started: None,
                locks,
            })
            .collect(),
        asking_ms: None,
    };
    let journal = Journal {
        path: dir(repo).join(format!("{pid}-{now}.json")),
        intent,
    };
    journal.write(true)?;
    Ok(journal)
}

impl Journal {
    /// Records the pid of the `git update-ref` for the `index`th entry of the locks. Not
    /// synced: after a power cut no process is alive, and the pid matters only while the
    /// machine is up.
    pub fn writer_started(&mut self, index: usize, pid: u32) {
        if let Some(writer) = self.intent.writers.get_mut(index) {
            writer.pid = Some(pid);
            writer.started = crate::process_id::started_at(pid);
            let _ = self.write(false);
        }
    }

    /// Records, before it starts, the locks one more `git update-ref` may take; returns
    /// its index for [`Journal::writer_started`]. Not synced, as that pid is not.
    pub fn add_writer(&mut self, locks: Locks) -> usize {
        self.intent.writers.push(Writer {
            pid: None,
            started: None,
            locks,
        });
        let _ = self.write(false);
        self.intent.writers.len() - 1
    }

    /// The `index`th `git update-ref` has prepared: its lock files are all its own now,
    /// and noted as they are (see [`Locks::note_held`]).
    pub fn writer_prepared(&mut self, repo: &Path, index: usize) {
        if let Some(writer) = self.intent.writers.get_mut(index) {
            writer.locks.note_held(repo);
            let _ = self.write(false);
        }
    }

    /// The upstream is being asked now. Not synced: what it guards against (the
    /// upstream applying the push after this process died) needs the machine up.
    pub fn asking(&mut self) {
        self.intent.asking_ms = Some(reflock::millis(SystemTime::now()));
        let _ = self.write(false);
    }

    /// The `index`th `git update-ref` has ended, releasing its locks: forget them, so
    /// that no recovery judges those lock names again (another writer may hold them).
    pub fn writer_ended(&mut self, index: usize) {
        if let Some(writer) = self.intent.writers.get_mut(index) {
            *writer = Writer {
                pid: None,
                started: None,
                locks: Locks::default(),
            };
            let _ = self.write(false);
        }
    }

    /// The local refs now match the upstream's answer: forget the journal.
    pub fn done(self) {
        let _ = fs::remove_file(&self.path);
    }

    fn write(&self, durable: bool) -> Result<()> {
        write_file(&self.path, &self.intent, durable)
    }
}

fn write_file(path: &Path, intent: &Intent, durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(&serde_json::to_vec(intent)?)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    if durable {
        file.as_file()
            .sync_all()
            .with_context(|| format!("cannot write in {}", dir.display()))?;
    }
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if durable {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

/// A journal whose process has ended without finishing it.
#[derive(Debug)]
pub struct Orphan {
    pub path: PathBuf,
    pub intent: Intent,
}

/// What is in `mirror/journal/`: the journals left by dead processes, and the files
/// that cannot be read as journals (named, never touched).
#[derive(Debug, Default)]
pub struct Left {
    pub orphans: Vec<Orphan>,
    pub unreadable: Vec<String>,
    /// Journals of pushes in flight now.
    pub live: usize,
}

/// Reads the journal directory; cheap when it is empty (the common case).
pub fn left(repo: &Path) -> Left {
    let mut left = Left::default();
    let Ok(entries) = fs::read_dir(dir(repo)) else {
        return left;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let intent = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Intent>(&bytes).map_err(|e| e.to_string()))
            .and_then(|intent| match intent.format.as_str() {
                FORMAT => Ok(intent),
                other => Err(format!("format {other:?} is not one this version reads")),
            });
        match intent {
            Ok(intent) if crate::process_id::is_running(intent.pid, intent.started.as_ref()) => {
                left.live += 1;
            }
            Ok(intent) => left.orphans.push(Orphan { path, intent }),
            Err(why) => left.unreadable.push(format!("{}: {why}", path.display())),
        }
    }
    left.orphans.sort_by_key(|o| o.intent.written_ms);
    left
}

impl Orphan {
    /// Removes the lock files its killed `git update-ref` processes left (only theirs);
    /// what was done, and whether a lock could not be judged yet (then the journal must
    /// stay).
    pub fn release_locks(&self, repo: &Path) -> reflock::Recovery {
        let mut all = reflock::Recovery::default();
        for writer in &self.intent.writers {
            let git = writer.pid.map(|pid| (pid, writer.started.clone()));
            let released = reflock::release(repo, &writer.locks, git, self.intent.written_ms);
            all.said.extend(released.said);
            all.pending |= released.pending;
        }
        all
    }

    /// Its lock files are settled: forget them, so that a later run (when this one
    /// cannot finish yet) never judges those names again, when another writer may hold
    /// them.
    pub fn forget_locks(&mut self) {
        self.intent.writers.clear();
        let _ = write_file(&self.path, &self.intent, false);
    }

    /// When the upstream was asked, if it was.
    pub fn asked(&self) -> Option<SystemTime> {
        self.intent
            .asking_ms
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    /// When the push began.
    pub fn written(&self) -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.intent.written_ms)
    }

    pub fn pid(&self) -> u32 {
        self.intent.pid
    }

    /// Its work is finished: remove it.
    pub fn finished(self) -> Result<()> {
        fs::remove_file(&self.path)
            .with_context(|| format!("cannot remove {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str) -> RefUpdate {
        RefUpdate {
            old: "1".repeat(40),
            new: "2".repeat(40),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_journal_is_live_while_its_process_runs_and_gone_when_done() {
        let repo = tempfile::tempdir().unwrap();
        let journal = begin(
            repo.path(),
            &[update("refs/heads/main")],
            vec![Locks::default()],
        )
        .unwrap();
        let left = left(repo.path());
        assert_eq!((left.live, left.orphans.len()), (1, 0));
        journal.done();
        let left = super::left(repo.path());
        assert_eq!((left.live, left.orphans.len()), (0, 0));
    }

    #[test]
    fn a_journal_of_a_dead_process_is_an_orphan_and_garbage_is_named() {
        let repo = tempfile::tempdir().unwrap();
        let journal = begin(repo.path(), &[update("refs/heads/main")], vec![]).unwrap();
        let mut intent = journal.intent.clone();
        // A pid that ran in another boot is not running now.
        intent.started = Some((1, "another-boot".to_owned()));
        write_file(&journal.path, &intent, false).unwrap();
        fs::write(dir(repo.path()).join("1-2.json"), b"{").unwrap();
        let left = left(repo.path());
        assert_eq!(left.orphans.len(), 1);
        assert_eq!(left.orphans[0].intent.refs[0].name, "refs/heads/main");
        assert_eq!(left.unreadable.len(), 1);
        left.orphans.into_iter().next().unwrap().finished().unwrap();
        assert!(!journal.path.exists());
    }
}
