//! Questions about this repository that git itself answers: configuration from every
//! scope, git's version, refs from any ref store (reftable too).

use super::Git;
use anyhow::{Context, Result};

impl Git {
    /// Every value of the configuration variable `key`, from every scope, as git reads
    /// them; none when it is not set.
    pub fn config_all(&self, key: &str) -> Result<Vec<String>> {
        let output = self
            .command(["config", "--get-all", key])
            .output()
            .context("cannot run git")?;
        match output.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect()),
            // Not set.
            Some(1) => Ok(Vec::new()),
            _ => anyhow::bail!(
                "git config {key}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    /// The values of the refs `names` here (those that exist), read by git itself, so
    /// that any ref store works (reftable too).
    pub fn local_refs(&self, names: &[&str]) -> Result<std::collections::BTreeMap<String, String>> {
        let mut args = vec!["for-each-ref", "--format=%(objectname) %(refname)", "--"];
        args.extend(names);
        let output = self.command(args).output().context("cannot run git")?;
        if !output.status.success() {
            anyhow::bail!(
                "git for-each-ref: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(_, name)| names.contains(name))
            .map(|(id, name)| (name.to_owned(), id.to_owned()))
            .collect())
    }

    /// What `git version` says (`git version 2.47.3`).
    pub fn version(&self) -> Result<String> {
        let output = self
            .command(["version"])
            .output()
            .context("cannot run git")?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}
