//! A throwaway git directory that pushes run from. `git push` reads every ref of the
//! repository it runs in and matches each lease against every ref the remote lists, so a
//! push from a repository of 100 000 refs pays for all of them; the scratch directory
//! borrows the repository's objects (alternates) and configuration (an include) and holds
//! only the refs one push needs.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::LeasedUpdate;

/// Where scratch directories live, inside the repository's own `mirror/`: same owner,
/// same file system, found again when a killed push left one behind.
const HOME: &str = "mirror/scratch";
/// The remote a staged push goes to (named so that its leases can come from "tracking"
/// refs; nothing else in the scratch directory's configuration uses this name).
pub(super) const REMOTE: &str = "mirror-hooks-forward";
/// The staged refs' namespaces: the new values, and the values each lease expects.
const NEW: &str = "refs/new/";
const LEASE: &str = "refs/lease/";

/// One scratch git directory, removed when dropped.
pub(super) struct Scratch {
    dir: PathBuf,
    /// Held while the directory is in use, so that no sweep removes it: a pid alone
    /// cannot tell, seen from another pid namespace sharing the repository.
    _in_use: crate::lock::Lock,
}

/// The lock file inside each scratch directory (see [`Scratch`]).
const IN_USE: &str = "in-use.lock";

impl Scratch {
    /// Makes an empty git directory beside `repo`'s data whose objects are `repo`'s
    /// and whose configuration includes `repo`'s (remotes' URLs rewritten, credential
    /// helpers, http settings all stay as they were). `sha256` when the repository's
    /// object ids are.
    pub(super) fn create(repo: &Path, sha256: bool) -> Result<Scratch> {
        let home = repo.join(HOME);
        fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
        sweep(&home);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = home.join(format!("{}-{nanos}.git", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let in_use = match crate::lock::Lock::acquire(&dir.join(IN_USE)) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let scratch = Scratch {
            dir,
            _in_use: in_use,
        };
        scratch
            .fill(repo, sha256)
            .with_context(|| format!("cannot set up {} to push from", scratch.dir.display()))?;
        Ok(scratch)
    }

    fn fill(&self, repo: &Path, sha256: bool) -> Result<()> {
        let objects = absolute(&repo.join("objects"))?;
        fs::create_dir_all(self.dir.join("objects/info"))?;
        fs::create_dir(self.dir.join("refs"))?;
        fs::write(self.dir.join("HEAD"), "ref: refs/heads/main\n")?;
        let mut alternates = objects.as_os_str().as_bytes().to_vec();
        alternates.push(b'\n');
        fs::write(self.dir.join("objects/info/alternates"), alternates)?;
        let mut config = Vec::new();
        if sha256 {
            config.extend_from_slice(
                b"[core]\n\trepositoryformatversion = 1\n\tbare = true\n[extensions]\n\tobjectformat = sha256\n",
            );
        } else {
            config.extend_from_slice(b"[core]\n\trepositoryformatversion = 0\n\tbare = true\n");
        }
        config.extend_from_slice(b"[include]\n\tpath = ");
        quoted(
            &mut config,
            absolute(&repo.join("config"))?.as_os_str().as_bytes(),
        );
        config.push(b'\n');
        fs::write(self.dir.join("config"), config)?;
        Ok(())
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    /// Stages `updates`: each new value under `refs/new/`, each lease's expected value
    /// under `refs/lease/`, written as the directory's `packed-refs` in one file. The
    /// directory is ours alone and lives for one push; one ref file per ref (what
    /// `git update-ref` writes) costs seconds for 20 000 refs, nearly all of it the
    /// file system making and removing files.
    ///
    /// Except the leases of deletions, one small file each: after the push git deletes
    /// the "tracking" ref of every ref it deleted, and deleting a packed ref rewrites the
    /// whole `packed-refs` file, once per ref (2 000 deletions cost 8 s that way).
    pub(super) fn stage(&self, updates: &[LeasedUpdate]) -> Result<()> {
        let mut packed = Vec::new();
        for u in updates {
            let short = u.name.strip_prefix("refs/").unwrap_or(&u.name);
            match (&u.new, &u.expect) {
                (None, Some(expect)) => {
                    let path = self.dir.join(LEASE).join(short);
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent).context("cannot stage the push")?;
                    }
                    fs::write(&path, format!("{expect}\n")).context("cannot stage the push")?;
                }
                (new, expect) => {
                    for line in Self::staged(short, new.as_deref(), expect.as_deref()) {
                        packed.extend_from_slice(line.as_bytes());
                        packed.push(b'\n');
                    }
                }
            }
        }
        fs::write(self.dir.join("packed-refs"), packed).context("cannot stage the push")
    }

    /// The `packed-refs` lines of one ref, `refs/SHORT` (unsorted, no header: git sorts
    /// them when it reads them).
    fn staged(short: &str, new: Option<&str>, expect: Option<&str>) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(new) = new {
            lines.push(format!("{new} {NEW}{short}"));
        }
        if let Some(expect) = expect {
            lines.push(format!("{expect} {LEASE}{short}"));
        }
        lines
    }

    /// Writes the remote a staged push goes to: `url`, the refspecs (every staged new
    /// value, each deletion by name) and, as "fetch" refspecs, where each lease's
    /// expected value is, so that a bare `--force-with-lease` checks every ref: against
    /// its staged value, or against absence where none is staged (a creation).
    pub(super) fn add_remote(&self, url: &str, updates: &[LeasedUpdate]) -> Result<()> {
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("config"))
            .context("cannot open the scratch configuration")?;
        let mut text = format!("[remote \"{REMOTE}\"]\n").into_bytes();
        let mut entry = |key: &str, value: &[u8]| {
            text.extend_from_slice(format!("\t{key} = ").as_bytes());
            quoted(&mut text, value);
            text.push(b'\n');
        };
        entry("url", url.as_bytes());
        // Only where a lease expects a value: git maps each ref the remote lists
        // through these and looks the result up, and a remote of 100 000 refs makes
        // every useless lookup count. A few leases: one exact refspec each (a string
        // comparison per listed ref); many: one pattern per directory.
        for source in lease_sources(updates) {
            let short = source.strip_prefix("refs/").unwrap_or(&source);
            entry("fetch", format!("+{source}:{LEASE}{short}").as_bytes());
        }
        entry("push", format!("{NEW}*:refs/*").as_bytes());
        for u in updates.iter().filter(|u| u.new.is_none()) {
            entry("push", format!(":{}", u.name).as_bytes());
        }
        config
            .write_all(&text)
            .context("cannot write the scratch configuration")
    }

    /// True when every update can be staged: its name is a full ref name git takes
    /// (under `refs/`, no `..`: it also names a file here).
    pub(super) fn can_stage(updates: &[LeasedUpdate]) -> bool {
        updates
            .iter()
            .all(|u| crate::refs::check_ref_name(&u.name).is_ok())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Up to how many leases get an exact "fetch" refspec each (see [`Scratch::add_remote`]).
const EXACT_LEASES: usize = 64;

/// The sources of the "fetch" refspecs that map each leased ref to its expected value:
/// the refs themselves when few, else their directories as patterns (`refs/heads/*`).
fn lease_sources(updates: &[LeasedUpdate]) -> Vec<String> {
    let leased: Vec<&str> = updates
        .iter()
        .filter(|u| u.expect.is_some())
        .map(|u| u.name.as_str())
        .collect();
    if leased.len() <= EXACT_LEASES {
        return leased.into_iter().map(str::to_owned).collect();
    }
    let mut dirs: Vec<String> = leased
        .iter()
        .map(|name| match name.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/*"),
            None => "refs/*".to_owned(),
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs
}

/// Removes the scratch directories of processes that have ended (killed before their
/// own clean-up): their pid runs no more here and nobody holds their lock.
fn sweep(home: &Path) {
    let Ok(entries) = fs::read_dir(home) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !crate::process_id::is_running(pid, None)) {
            let path = entry.path();
            if let Ok(Some(_free)) = crate::lock::Lock::try_acquire(&path.join(IN_USE)) {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// `value` as a double-quoted configuration value.
fn quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_byte() {
        let mut out = Vec::new();
        quoted(&mut out, b"a\"b\\c#d;e\xff");
        assert_eq!(out, b"\"a\\\"b\\\\c#d;e\xff\"");
    }

    #[test]
    fn staging_puts_new_values_and_leases_apart() {
        assert_eq!(
            Scratch::staged("heads/main", Some("b"), Some("a")),
            ["b refs/new/heads/main", "a refs/lease/heads/main"]
        );
        assert_eq!(
            Scratch::staged("tags/v1", Some("c"), None),
            ["c refs/new/tags/v1"]
        );
    }
}
