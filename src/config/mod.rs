//! `mirror.toml`: the whole schema (upstream, pull, push mirrors, auth), loading, and
//! validation whose errors name the file, line, column and key and say what to do.
//! This is the only module that reads the file: `raw` is its TOML shape, `check` the
//! checks that turn it into the types here.

mod check;
pub mod edit;
mod raw;

use crate::refs::RefPatterns;
use crate::url::RemoteUrl;
use check::{key_at, Checker};
use raw::RawConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use check::parse_duration;

/// The configuration file's name inside the bare repository.
pub const FILE_NAME: &str = "mirror.toml";
/// The largest mirror.toml read: far more than any configuration needs, and small enough
/// that a planted file cannot make a process that reads many (a sweep, `serve`) grow.
const MAX_SIZE: u64 = 1024 * 1024;

/// A loaded, checked `mirror.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub upstream: Option<Upstream>,
    pub pull: Option<Pull>,
    pub push: Vec<PushMirror>,
    pub auth: BTreeMap<String, Auth>,
    /// A hash of the file's text: a hard-failed pull resumes when it changes.
    pub fingerprint: String,
}

/// `[upstream]`: the authoritative copy that pre-receive forwards pushes to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: RemoteUrl,
    pub refs: RefPatterns,
    pub auth: Option<String>,
    pub timeout: Duration,
    pub on_unreachable: OnUnreachable,
    /// Push options (`git push -o NAME[=VALUE]`) that may be forwarded, by name.
    pub push_options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnreachable {
    /// Fail closed: no upstream, no push.
    Reject,
    /// Fail open: accept here, record it, let the pull reconcile later.
    Accept,
}

/// `[pull]`: scheduled pull mirroring from the upstream (or another URL).
#[derive(Debug, Clone)]
pub struct Pull {
    pub url: RemoteUrl,
    pub refs: RefPatterns,
    pub interval: Interval,
    pub overwrite_diverged: bool,
    /// `true` ([`Prune::Deleted`]): delete refs the upstream had and deleted; `"all"`:
    /// also refs that were never upstream (an exact copy within `refs`).
    pub prune: Prune,
    pub max_failures: u32,
    pub auth: Option<String>,
    pub timeout: Duration,
    /// The file holding the secret that webhooks to `git mirror serve` are signed with
    /// (mode 0600, checked when read); without it, webhooks for this repository are refused.
    pub webhook_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Every(Duration),
    /// Poll an active upstream more often and a quiet one less.
    Auto,
}

/// One `[[push]]` table: a mirror that receives everything accepted here.
#[derive(Debug, Clone)]
pub struct PushMirror {
    pub name: String,
    pub url: RemoteUrl,
    pub refs: RefPatterns,
    pub keep_divergent_refs: bool,
    pub prune: Prune,
    pub auth: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Never delete refs on the mirror.
    Off,
    /// Delete mirror refs that were deleted here.
    Deleted,
    /// Make the mirror an exact copy: also delete matching refs only the mirror has.
    All,
}

impl Config {
    /// The pull settings: `[pull]`, or when there is none but an `[upstream]`, the
    /// settings of a one-off catch-up from the upstream (its url, refs and credentials;
    /// nothing pruned or overwritten; never scheduled).
    pub fn pull_or_catch_up(&self) -> Option<std::borrow::Cow<'_, Pull>> {
        if let Some(pull) = &self.pull {
            return Some(std::borrow::Cow::Borrowed(pull));
        }
        let upstream = self.upstream.as_ref()?;
        Some(std::borrow::Cow::Owned(Pull {
            url: upstream.url.clone(),
            refs: upstream.refs.clone(),
            interval: Interval::Every(DEFAULT_INTERVAL),
            overwrite_diverged: false,
            prune: Prune::Off,
            max_failures: DEFAULT_MAX_FAILURES,
            auth: upstream.auth.clone(),
            timeout: DEFAULT_TRANSFER_TIMEOUT,
            webhook_secret_file: None,
        }))
    }
}

/// One `[auth.NAME]` table.
#[derive(Debug, Clone)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config file for this remote (`ssh -F`): host aliases, ports for scp-style
    /// URLs, ProxyJump.
    pub ssh_config: Option<PathBuf>,
}

/// Where a password or token comes from; never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_MAX_FAILURES: u32 = 14;

/// What is wrong with a `mirror.toml`, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key (`upstream.url`, `push.github.refs`) or table the error is about.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// One remote of a configuration, whatever its direction: its record name, URL and the
/// `[auth]` table it names.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub name: &'a str,
    pub url: &'a RemoteUrl,
    pub auth: Option<&'a str>,
}

impl Config {
    /// Every remote: the upstream, the pull, then the push mirrors in file order.
    pub fn remotes(&self) -> Vec<Remote<'_>> {
        let upstream = self.upstream.iter().map(|u| Remote {
            name: crate::state::UPSTREAM_RECORD,
            url: &u.url,
            auth: u.auth.as_deref(),
        });
        let pull = self.pull.iter().map(|p| Remote {
            name: crate::state::PULL_RECORD,
            url: &p.url,
            auth: p.auth.as_deref(),
        });
        let push = self.push.iter().map(|m| Remote {
            name: &m.name,
            url: &m.url,
            auth: m.auth.as_deref(),
        });
        upstream.chain(pull).chain(push).collect()
    }

    /// Loads `REPO/mirror.toml`. `Ok(None)` when there is no such file: the repository
    /// has no mirrors.
    pub fn load(repo: &Path) -> Result<Option<Config>, ConfigError> {
        let path = repo.join(FILE_NAME);
        let unreadable = |path: std::path::PathBuf, message: String| ConfigError {
            path,
            line: 0,
            column: 0,
            key: "file".to_owned(),
            message,
        };
        match crate::files::read_limited(&path, MAX_SIZE) {
            Ok(file) => match String::from_utf8(file.bytes) {
                Ok(text) => Config::parse(&text, &path, repo).map(Some),
                Err(_) => Err(unreadable(path, "is not UTF-8 text".to_owned())),
            },
            Err(crate::files::FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(crate::files::FileError::Io(e)) => Err(unreadable(
                path,
                format!("cannot be read: {e}; check its permissions"),
            )),
            Err(e) => Err(unreadable(
                path,
                format!("cannot be used: {e}; mirror.toml is a small text file"),
            )),
        }
    }

    /// Parses and checks the text of a `mirror.toml` found at `path`; relative paths in
    /// it are taken relative to `repo`.
    pub fn parse(text: &str, path: &Path, repo: &Path) -> Result<Config, ConfigError> {
        let mut check = Checker {
            text,
            path,
            repo,
            auth_names: Vec::new(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = key_at(text, span.start);
            let message = e.message().trim_end().replace('\n', "; ");
            check.at(span, key, message)
        })?;
        check.auth_names = raw.auth.keys().cloned().collect();
        let upstream = raw
            .upstream
            .as_ref()
            .map(|u| check.upstream(u))
            .transpose()?;
        let pull = raw
            .pull
            .as_ref()
            .map(|p| check.pull(p, upstream.as_ref()))
            .transpose()?;
        let push = check.push_mirrors(&raw.push)?;
        let auth = raw
            .auth
            .iter()
            .map(|(name, table)| Ok((name.clone(), check.auth(name, table)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Config {
            path: path.to_owned(),
            upstream,
            pull,
            push,
            auth,
            fingerprint: crate::state::fingerprint(text.as_bytes()),
        })
    }
}
