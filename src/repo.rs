//! Reading the local repository through gix: configuration values, refs and ancestry.
//! Inside a hook it also sees the objects of the push being received, which still sit
//! in git's quarantine directory; it never writes anything.

use crate::hookenv::Quarantine;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where mirror-hooks keeps refs of its own for the moment it needs them (a pull from a
/// server that serves no object by id, `resolve`); never mirrored, never compared.
pub const PRIVATE_REFS: &str = "refs/mirror-hooks/";

/// A read-only view of a bare repository.
pub struct Repo {
    inner: gix::Repository,
    /// Holds the `info/alternates` that makes the quarantine visible; removed on drop.
    _quarantine_view: Option<tempfile::TempDir>,
}

impl Repo {
    /// Opens the repository at `git_dir` with no quarantine (outside a hook, or where the
    /// objects of the push being received do not matter).
    pub fn open(git_dir: &Path) -> Result<Repo> {
        Repo::open_with(git_dir, None)
    }

    /// Opens the repository at `git_dir`. With the receive `quarantine` of a hook the
    /// object database is the quarantine plus every alternate, because gix does not read
    /// git's variables for it.
    pub fn open_with(git_dir: &Path, quarantine: Option<&Quarantine>) -> Result<Repo> {
        let mut inner = gix::open(git_dir)
            .with_context(|| format!("cannot open the repository {}", git_dir.display()))?;
        let mut quarantine_view = None;
        if let Some(quarantine) = quarantine {
            let mut dirs = vec![absolute(&quarantine.objects)];
            dirs.extend(quarantine.alternates.iter().map(|p| absolute(p)));
            dirs.push(inner.objects.store_ref().path().to_owned());
            let view = tempfile::Builder::new()
                .prefix("mirror-hooks-objects-")
                .tempdir()
                .context("cannot create a temporary directory to read the pushed objects")?;
            std::fs::create_dir(view.path().join("info"))?;
            let mut file = std::fs::File::create(view.path().join("info/alternates"))?;
            for dir in &dirs {
                writeln!(file, "{}", dir.display())?;
            }
            drop(file);
            let hash = inner.object_hash();
            inner.objects = gix::OdbHandle::new(
                gix::odb::at(view.path(), hash).context("cannot open the pushed objects")?,
                hash,
            );
            quarantine_view = Some(view);
        }
        inner.object_cache_size_if_unset(4 * 1024 * 1024);
        Ok(Repo {
            inner,
            _quarantine_view: quarantine_view,
        })
    }

    /// A boolean from git's configuration as git reads it (system, global, repository).
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        self.inner.config_snapshot().boolean(key)
    }

    /// A configuration value as text, as git reads it.
    pub fn config_string(&self, key: &str) -> Option<String> {
        self.inner
            .config_snapshot()
            .string(key)
            .map(|v| v.to_string())
    }

    /// True for a repository without a work tree.
    pub fn is_bare(&self) -> bool {
        self.inner.is_bare()
    }

    /// The ref `HEAD` points to (`refs/heads/main`), if it is symbolic.
    pub fn head_ref(&self) -> Option<String> {
        let head = self.inner.find_reference("HEAD").ok()?;
        match head.target() {
            gix::refs::TargetRef::Symbolic(name) => Some(name.as_bstr().to_string()),
            gix::refs::TargetRef::Object(_) => None,
        }
    }

    /// Every ref under `refs/` that points directly at an object, with its id
    /// (symbolic refs are left out: a mirror gets what they point to under its own name),
    /// except our own private refs under [`PRIVATE_REFS`].
    pub fn refs(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.refs_and_private()?.0)
    }

    /// [`Repo::refs`], and whether any ref exists under [`PRIVATE_REFS`] (left there by
    /// an older version's killed pull), from one read of the refs.
    pub fn refs_and_private(&self) -> Result<(BTreeMap<String, String>, bool)> {
        let mut refs = self.refs_under("refs/")?;
        let before = refs.len();
        refs.retain(|name, _| !name.starts_with(PRIVATE_REFS));
        let private = refs.len() != before;
        Ok((refs, private))
    }

    /// The refs whose names start with `prefix`, with their ids.
    pub fn refs_under(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        let mut refs = BTreeMap::new();
        let platform = self.inner.references().context("cannot read the refs")?;
        for reference in platform.prefixed(prefix).context("cannot read the refs")? {
            let reference = reference.map_err(|e| anyhow::anyhow!("cannot read a ref: {e}"))?;
            if let gix::refs::TargetRef::Object(id) = reference.target() {
                refs.insert(reference.name().as_bstr().to_string(), id.to_string());
            }
        }
        Ok(refs)
    }

    /// True when `ancestor` is reachable from `descendant` (a fast-forward from the one to
    /// the other). Both must be commit ids present in the object database.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        let a = parse_id(ancestor)?;
        let d = parse_id(descendant)?;
        if a == d {
            return Ok(true);
        }
        let base = self.inner.merge_base(a, d).with_context(|| {
            format!("cannot compare the histories of {ancestor} and {descendant}")
        })?;
        Ok(base.is_some_and(|b| b.detach() == a))
    }
}

fn parse_id(hex: &str) -> Result<gix::ObjectId> {
    gix::ObjectId::from_hex(hex.as_bytes()).with_context(|| format!("{hex:?} is not an object id"))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
