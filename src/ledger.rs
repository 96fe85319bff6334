//! What the upstream last held: per ref, the value the upstream was last seen to hold (by
//! a pull or a forwarded push), and the refs accepted here while it could not be reached.
//! Every judgement against the upstream (follow, diverged, prune, forward later) starts
//! from this record, `mirror/upstream-refs.json`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The record's file, under `mirror/`.
pub const FILE: &str = "upstream-refs.json";
/// Values seen since the file was last written, one `ID NAME` line each (all zeros: no
/// such ref), appended by forwarded pushes: rewriting a record of 100 000 refs for
/// every push of one would cost more than the push. Folded into the file (and removed)
/// by the next [`change`].
const SEEN_SINCE: &str = "upstream-refs.seen";
/// How large [`SEEN_SINCE`] may grow before a push folds it into the record itself.
const FOLD_AT: u64 = 256 * 1024;
const LOCK: &str = "upstream-refs.lock";
const VERSION: u32 = 1;

/// The record itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    #[serde(default)]
    version: u32,
    /// Ref name → the id the upstream was last seen to hold.
    #[serde(default)]
    pub seen: BTreeMap<String, String>,
    /// Refs accepted here while the upstream could not be reached
    /// (`on_unreachable = "accept"`), not yet forwarded.
    #[serde(default)]
    pub unforwarded: BTreeMap<String, Unforwarded>,
}

/// A ref accepted here without forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unforwarded {
    /// What the upstream held then, the lease its forwarding will carry (all zeros: it
    /// had no such ref); `None` when nobody knows (a record from before this one existed).
    pub upstream: Option<String>,
    /// When it was (first) accepted here, RFC 3339.
    pub accepted_at: String,
}

/// The record exists but cannot be read: whoever decides from it must stop (fail
/// closed), since the refs it protects are unknown.
#[derive(Debug)]
pub struct Damaged {
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the record of what the upstream last held, {}, is damaged ({}); nothing is pruned, overwritten or forwarded from it until it is repaired: restore it from a backup, or fix the JSON by hand (`git mirror doctor` shows it)",
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for Damaged {}

impl Ledger {
    /// Records what the upstream holds now: `id` (all zeros or `None`: nothing).
    pub fn saw(&mut self, name: &str, id: Option<&str>) {
        match id.filter(|id| !crate::refs::is_zero(id)) {
            Some(id) => {
                self.seen.insert(name.to_owned(), id.to_owned());
            }
            None => {
                self.seen.remove(name);
            }
        }
    }

    /// Records that `name` was forwarded (or found on the upstream) with the value `id`.
    pub fn forwarded(&mut self, name: &str, id: Option<&str>) {
        self.saw(name, id);
        self.unforwarded.remove(name);
    }

    /// Records that `name` was accepted here without forwarding; `old` is the value it
    /// had here before the push. The lease its forwarding will carry is `old`: in step
    /// with the upstream, that is what the upstream was last seen to hold; out of step (a
    /// ref already diverged, the known window) the upstream's value was never in what was
    /// pushed, and only a person may replace it (`git mirror resolve`).
    pub fn accepted_offline(&mut self, name: &str, old: &str, at: SystemTime) {
        let basis = old.to_owned();
        self.unforwarded
            .entry(name.to_owned())
            .or_insert_with(|| Unforwarded {
                upstream: Some(basis),
                accepted_at: crate::state::timestamp(at),
            });
    }

    /// Refs within `patterns` whose value here differs from what the upstream was last
    /// seen to hold, leaving out refs accepted offline and the `diverged` ones (both are
    /// reported on their own): what the known window leaves behind.
    pub fn unapplied(
        &self,
        local: &BTreeMap<String, String>,
        patterns: &crate::refs::RefPatterns,
        diverged: &[String],
    ) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(name, id)| {
                patterns.matches(name)
                    && local.get(*name) != Some(*id)
                    && !self.unforwarded.contains_key(*name)
                    && !diverged.contains(*name)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

fn path(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join(FILE)
}

/// Reads the record of `repo`. A missing record is an empty one, except that refs the
/// status record of an earlier version listed as accepted without forwarding are
/// carried over (with no known lease).
pub fn load(repo: &Path) -> Result<Ledger, Damaged> {
    let ledger = read(repo, |l: &Ledger| l.version)?.unwrap_or_else(|| carried_over(repo));
    Ok(seen_since(repo, ledger))
}

/// Only the refs accepted here while the upstream was away, without building the map
/// of every ref the upstream holds: what a forwarding push needs.
pub fn unforwarded(repo: &Path) -> Result<BTreeMap<String, Unforwarded>, Damaged> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OfflineOnly {
        #[serde(default)]
        version: u32,
        #[serde(default, rename = "seen")]
        _seen: serde::de::IgnoredAny,
        #[serde(default)]
        unforwarded: BTreeMap<String, Unforwarded>,
    }
    Ok(match read(repo, |r: &OfflineOnly| r.version)? {
        Some(record) => record.unforwarded,
        None => carried_over(repo).unforwarded,
    })
}

/// The record's file read as `T` and checked for its format `version`; `None` when
/// there is no such file.
fn read<T: serde::de::DeserializeOwned>(
    repo: &Path,
    version: impl Fn(&T) -> u32,
) -> Result<Option<T>, Damaged> {
    let path = path(repo);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Damaged {
                path,
                why: format!("cannot read it: {e}"),
            })
        }
    };
    let record: T = serde_json::from_slice(&bytes).map_err(|e| Damaged {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if version(&record) > VERSION {
        return Err(Damaged {
            path,
            why: format!(
                "it was written by a newer mirror-hooks (format {})",
                version(&record)
            ),
        });
    }
    Ok(Some(record))
}

/// Records that the upstream now holds `values` (name, id; `None`: no such ref) by
/// appending to [`SEEN_SINCE`]: the cheap form of [`Ledger::saw`] for a forwarded push.
/// Not made durable, as `seen` never is (see [`change`]).
pub fn note_seen(repo: &Path, values: &[(&str, Option<&str>)]) -> Result<()> {
    let dir = crate::state::mirror_dir(repo);
    let lock = crate::lock::Lock::acquire(&dir.join(LOCK))?;
    let mut lines = Vec::new();
    for (name, id) in values {
        // "0": no such ref (any id of zeros means that).
        let id = id.filter(|id| crate::refs::is_object_id(id)).unwrap_or("0");
        lines.extend_from_slice(format!("{id} {name}\n").as_bytes());
    }
    let path = dir.join(SEEN_SINCE);
    let mut append = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        // A line an earlier write left unfinished (a crash, a full disk) is ended
        // first, so that it stays the one line skipped.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                lines.insert(0, b'\n');
            }
        }
        file.write_all(&lines)
    };
    append().with_context(|| format!("cannot write {}", path.display()))?;
    drop(lock);
    // Where no pull runs to fold them in, the push that makes them many does.
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > FOLD_AT) {
        change(repo, |_| ())?;
    }
    Ok(())
}

/// True while values noted by forwarded pushes wait to be folded into the record: a
/// run that changes nothing else still calls [`change`], or they pile up.
pub fn has_notes(repo: &Path) -> bool {
    std::fs::metadata(crate::state::mirror_dir(repo).join(SEEN_SINCE)).is_ok_and(|m| m.len() > 0)
}

/// `ledger` with the values noted since it was written applied. A line that does not
/// read as `ID NAME` (a write cut short by a crash) is skipped.
fn seen_since(repo: &Path, mut ledger: Ledger) -> Ledger {
    let Ok(text) = std::fs::read(crate::state::mirror_dir(repo).join(SEEN_SINCE)) else {
        return ledger;
    };
    for line in text.split(|b| *b == b'\n') {
        let Some((id, name)) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split_once(' '))
        else {
            continue;
        };
        if (id == "0" || crate::refs::is_object_id(id)) && crate::refs::check_ref_name(name).is_ok()
        {
            ledger.saw(name, Some(id));
        }
    }
    ledger
}

fn carried_over(repo: &Path) -> Ledger {
    let mut ledger = Ledger::default();
    let old = crate::state::load(repo, crate::state::UPSTREAM_RECORD).unwrap_or_default();
    for name in old.divergent_refs {
        ledger.unforwarded.insert(
            name,
            Unforwarded {
                upstream: None,
                accepted_at: old.last_update_at.clone().unwrap_or_default(),
            },
        );
    }
    ledger
}

/// Loads the record, lets `change` edit it, and saves it, all under a lock so that
/// concurrent pushes and pulls do not lose each other's entries. A damaged record is
/// left exactly as it is.
pub fn change<T>(repo: &Path, change: impl FnOnce(&mut Ledger) -> T) -> Result<T> {
    let _lock = crate::lock::Lock::acquire(&crate::state::mirror_dir(repo).join(LOCK))?;
    let mut ledger = load(repo)?;
    let before = ledger.clone();
    let result = change(&mut ledger);
    let noted = crate::state::mirror_dir(repo).join(SEEN_SINCE);
    if ledger != before || noted.exists() {
        // Refs accepted offline exist nowhere else: they must survive a crash. A lost
        // update of `seen` only makes a later judgement start from an older value the
        // upstream did hold, which can call a ref diverged but never overwrites one; it
        // is not worth an fsync on every forwarded push.
        let durable = ledger.unforwarded != before.unforwarded;
        save(repo, &ledger, durable)?;
    }
    // What was noted since is in the file now.
    let _ = std::fs::remove_file(noted);
    Ok(result)
}

fn save(repo: &Path, ledger: &Ledger, durable: bool) -> Result<()> {
    let path = path(repo);
    let dir = crate::state::mirror_dir(repo);
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    // Readable as the repository itself is (a group-shared repository is served by
    // several users, and each one's pull must read it); a temporary file is 0600.
    if let Ok(config) = std::fs::metadata(repo.join("config")) {
        use std::os::unix::fs::PermissionsExt;
        let mode = config.permissions().mode() & 0o666;
        let _ = file
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut ledger = ledger.clone();
    ledger.version = VERSION;
    // Whole, in one write: serde writes token by token, a system call each unbuffered.
    let mut bytes = serde_json::to_vec_pretty(&ledger)?;
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    if durable {
        file.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.persist(&path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    if durable {
        // The rename itself must survive a crash too.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot write {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn offline_refs_lease_on_what_the_push_was_built_on() {
        let mut ledger = Ledger::default();
        // The upstream was last seen at B, but the push was built on A (this ref was
        // out of step): A is the lease, so B is never overwritten unseen.
        ledger.saw("refs/heads/main", Some(B));
        ledger.accepted_offline("refs/heads/main", A, SystemTime::UNIX_EPOCH);
        ledger.accepted_offline("refs/heads/new", ZERO, SystemTime::UNIX_EPOCH);
        assert_eq!(
            ledger.unforwarded["refs/heads/main"].upstream.as_deref(),
            Some(A)
        );
        assert_eq!(
            ledger.unforwarded["refs/heads/new"].upstream.as_deref(),
            Some(ZERO)
        );
        // A second push while still away keeps the first lease.
        ledger.saw("refs/heads/main", Some(B));
        ledger.accepted_offline("refs/heads/main", B, SystemTime::UNIX_EPOCH);
        assert_eq!(
            ledger.unforwarded["refs/heads/main"].upstream.as_deref(),
            Some(A)
        );
        ledger.forwarded("refs/heads/main", Some(B));
        assert!(!ledger.unforwarded.contains_key("refs/heads/main"));
        assert_eq!(
            ledger.seen.get("refs/heads/main").map(String::as_str),
            Some(B)
        );
        ledger.saw("refs/heads/main", Some(ZERO));
        assert_eq!(ledger.seen.get("refs/heads/main"), None);
    }

    #[test]
    fn noted_values_count_until_folded_into_the_record() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mirror")).unwrap();
        change(dir.path(), |l| {
            l.saw("refs/heads/main", Some(A));
            l.saw("refs/heads/gone", Some(A));
        })
        .unwrap();
        note_seen(
            dir.path(),
            &[
                ("refs/heads/main", Some(B)),
                ("refs/heads/gone", Some(ZERO)),
            ],
        )
        .unwrap();
        // A write cut short by a crash is skipped, not taken for a value.
        let noted = dir.path().join("mirror").join(SEEN_SINCE);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&noted)
            .unwrap();
        file.write_all(b"2222 refs/heads/cut").unwrap();
        let ledger = load(dir.path()).unwrap();
        assert_eq!(
            ledger.seen.get("refs/heads/main").map(String::as_str),
            Some(B)
        );
        assert!(!ledger.seen.contains_key("refs/heads/gone"));
        assert!(!ledger.seen.contains_key("refs/heads/cut"));
        // The next change folds them into the file and starts the notes afresh.
        change(dir.path(), |_| ()).unwrap();
        assert!(!noted.exists());
        assert_eq!(load(dir.path()).unwrap(), ledger);
    }

    #[test]
    fn a_damaged_record_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mirror")).unwrap();
        std::fs::write(dir.path().join("mirror").join(FILE), b"{not json").unwrap();
        assert!(load(dir.path()).is_err());
        assert!(change(dir.path(), |l| l.saw("refs/heads/x", Some(A))).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("mirror").join(FILE)).unwrap(),
            b"{not json"
        );
    }
}
