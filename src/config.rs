//! `mirror.toml`: the whole schema (upstream, pull, push mirrors, auth), loading, and
//! validation whose errors name the file, line, column and key and say what to do.
//! This is the only module that reads the file.

use crate::refs::RefPatterns;
use crate::url::RemoteUrl;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The configuration file's name inside the bare repository.
pub const FILE_NAME: &str = "mirror.toml";

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
/// Names the status records of the upstream and the pull use; push mirrors may not.
const RESERVED_NAMES: [&str; 2] = ["upstream", "pull"];

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
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path, repo).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError {
                path,
                line: 0,
                column: 0,
                key: "file".to_owned(),
                message: format!("cannot be read: {e}; check its permissions"),
            }),
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

/// Checks one `mirror.toml`, table by table; every error names the file, the line and
/// column of the offending value, and its key.
struct Checker<'a> {
    text: &'a str,
    path: &'a Path,
    repo: &'a Path,
    /// The `[auth.NAME]` tables defined, which `auth = "NAME"` keys may name.
    auth_names: Vec<String>,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError {
            path: self.path.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    fn auth_name(
        &self,
        name: &Option<Spanned<String>>,
        key: String,
    ) -> Result<Option<String>, ConfigError> {
        match name {
            Some(name) if !self.auth_names.contains(name.get_ref()) => Err(self.at(
                name.span(),
                key,
                format!(
                    "names [auth.{}], which is not defined; add that table or use one of: {}",
                    name.get_ref(),
                    if self.auth_names.is_empty() {
                        "(none defined)".to_owned()
                    } else {
                        self.auth_names.join(", ")
                    }
                ),
            )),
            Some(name) => Ok(Some(name.get_ref().clone())),
            None => Ok(None),
        }
    }

    fn url(&self, value: &Spanned<String>, key: String) -> Result<RemoteUrl, ConfigError> {
        RemoteUrl::parse(value.get_ref(), self.repo).map_err(|m| self.at(value.span(), key, m))
    }

    fn refs(
        &self,
        value: &Option<Spanned<Vec<String>>>,
        key: String,
    ) -> Result<RefPatterns, ConfigError> {
        match value {
            None => Ok(RefPatterns::heads_and_tags()),
            Some(list) => {
                RefPatterns::new(list.get_ref()).map_err(|m| self.at(list.span(), key, m))
            }
        }
    }

    fn duration(
        &self,
        value: &Option<Spanned<String>>,
        key: String,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        value.as_ref().map_or(Ok(default), |v| {
            parse_duration(v.get_ref()).map_err(|m| self.at(v.span(), key, m))
        })
    }

    fn upstream(&self, u: &RawUpstream) -> Result<Upstream, ConfigError> {
        Ok(Upstream {
            url: self.url(&u.url, "upstream.url".into())?,
            refs: self.refs(&u.refs, "upstream.refs".into())?,
            auth: self.auth_name(&u.auth, "upstream.auth".into())?,
            timeout: self.duration(
                &u.timeout,
                "upstream.timeout".into(),
                DEFAULT_UPSTREAM_TIMEOUT,
            )?,
            on_unreachable: u.on_unreachable.unwrap_or(OnUnreachable::Reject),
            push_options: u.push_options.clone(),
        })
    }

    fn pull(
        &self,
        spanned: &Spanned<RawPull>,
        upstream: Option<&Upstream>,
    ) -> Result<Pull, ConfigError> {
        let p = spanned.get_ref();
        let (url, inherited_auth) = match (&p.url, upstream) {
            (Some(u), _) => (self.url(u, "pull.url".into())?, None),
            (None, Some(up)) => (up.url.clone(), up.auth.clone()),
            (None, None) => {
                return Err(self.at(
                    spanned.span(),
                    "pull".into(),
                    "has no url and there is no [upstream] url to default to; add url = \"…\""
                        .into(),
                ))
            }
        };
        let interval = match &p.interval {
            None => Interval::Every(DEFAULT_INTERVAL),
            Some(v) if v.get_ref() == "auto" => Interval::Auto,
            Some(v) => Interval::Every(parse_duration(v.get_ref()).map_err(|m| {
                self.at(
                    v.span(),
                    "pull.interval".into(),
                    format!("{m}, or \"auto\""),
                )
            })?),
        };
        let max_failures = match &p.max_failures {
            None => DEFAULT_MAX_FAILURES,
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    self.at(
                        n.span(),
                        "pull.max_failures".into(),
                        "must be a whole number of at least 1".into(),
                    )
                })?,
        };
        Ok(Pull {
            url,
            refs: self.refs(&p.refs, "pull.refs".into())?,
            interval,
            overwrite_diverged: p.overwrite_diverged,
            prune: p.prune.unwrap_or(Prune::Off),
            max_failures,
            auth: self
                .auth_name(&p.auth, "pull.auth".into())?
                .or(inherited_auth),
            timeout: self.duration(&p.timeout, "pull.timeout".into(), DEFAULT_TRANSFER_TIMEOUT)?,
        })
    }

    fn push_mirrors(&self, tables: &[Spanned<RawPush>]) -> Result<Vec<PushMirror>, ConfigError> {
        let mut push: Vec<PushMirror> = Vec::new();
        for spanned in tables {
            let m = spanned.get_ref();
            let name = m.name.get_ref();
            let key = |k: &str| format!("push.{name}.{k}");
            check_mirror_name(name)
                .map_err(|msg| self.at(m.name.span(), "push.name".into(), msg))?;
            if push.iter().any(|other| &other.name == name) {
                return Err(self.at(
                    m.name.span(),
                    "push.name".into(),
                    format!("{name:?} is used by another [[push]] mirror; give each mirror its own name"),
                ));
            }
            push.push(PushMirror {
                name: name.clone(),
                url: self.url(&m.url, key("url"))?,
                refs: self.refs(&m.refs, key("refs"))?,
                keep_divergent_refs: m.keep_divergent_refs,
                prune: m.prune.unwrap_or(Prune::Deleted),
                auth: self.auth_name(&m.auth, key("auth"))?,
                timeout: self.duration(&m.timeout, key("timeout"), DEFAULT_TRANSFER_TIMEOUT)?,
            });
        }
        Ok(push)
    }

    fn auth(&self, name: &str, spanned: &Spanned<RawAuth>) -> Result<Auth, ConfigError> {
        let a = spanned.get_ref();
        let key = format!("auth.{name}");
        let password = match (&a.password_env, &a.password_file) {
            (Some(_), Some(_)) => {
                return Err(self.at(
                    spanned.span(),
                    key,
                    "sets both password_env and password_file; keep one".into(),
                ))
            }
            (Some(var), None) => Some(Secret::Env(var.clone())),
            (None, Some(file)) => Some(Secret::File(self.repo.join(file))),
            (None, None) => None,
        };
        if password.is_some() && a.username.is_none() {
            return Err(self.at(
                spanned.span(),
                key,
                "has a password but no username; add username = \"…\" (for a token, hosts accept e.g. \"oauth2\")".into(),
            ));
        }
        if password.is_none()
            && a.ssh_key.is_none()
            && a.known_hosts.is_none()
            && a.ssh_config.is_none()
        {
            return Err(self.at(
                spanned.span(),
                key,
                "sets no credential; give username with password_env or password_file, or ssh_key"
                    .into(),
            ));
        }
        Ok(Auth {
            username: a.username.clone(),
            password,
            ssh_key: a.ssh_key.as_ref().map(|p| self.repo.join(p)),
            known_hosts: a.known_hosts.as_ref().map(|p| self.repo.join(p)),
            ssh_config: a.ssh_config.as_ref().map(|p| self.repo.join(p)),
        })
    }
}

fn check_mirror_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid {
        return Err(format!(
            "{name:?} is not a usable mirror name; use letters, digits, '.', '_' and '-' (it names files under mirror/)"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved for the [{name}] section's status; choose another name"
        ));
    }
    Ok(())
}

/// The longest duration any setting takes: 30 days.
const LONGEST: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// `90s`, `5m`, `2h`, `1h 30m`; zero is refused because it would time out at once, and
/// more than 30 days because it is surely a typo.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("{text:?} is zero; give a positive duration")),
        Ok(d) if d > LONGEST => Err(format!(
            "{text:?} is longer than 30 days; give a shorter duration"
        )),
        Ok(d) => Ok(d),
        Err(_) => Err(format!(
            "{text:?} is not a duration; write it like \"90s\", \"5m\" or \"2h\""
        )),
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The key a parse error at `offset` is about: the table header in force there, plus
/// the key of the line when the line is `key = value`.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = |line: &str| {
        line.trim_matches(|c| c == '[' || c == ']' || c == ' ')
            .split(']')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let line = text[line_start..line_end].trim();
    if line.starts_with('[') {
        return header(line);
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(header);
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    });
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k.to_owned(),
        (None, None) => "(top level)".to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    upstream: Option<RawUpstream>,
    pull: Option<Spanned<RawPull>>,
    #[serde(default)]
    push: Vec<Spanned<RawPush>>,
    #[serde(default)]
    auth: BTreeMap<String, Spanned<RawAuth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Spanned<String>,
    refs: Option<Spanned<Vec<String>>>,
    auth: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    on_unreachable: Option<OnUnreachable>,
    #[serde(default)]
    push_options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPull {
    url: Option<Spanned<String>>,
    refs: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    overwrite_diverged: bool,
    prune: Option<Prune>,
    max_failures: Option<Spanned<i64>>,
    auth: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    name: Spanned<String>,
    url: Spanned<String>,
    refs: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    keep_divergent_refs: bool,
    prune: Option<Prune>,
    auth: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    ssh_config: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for Prune {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Prune;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"all\"")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Prune, E> {
                Ok(if v { Prune::Deleted } else { Prune::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Prune, E> {
                match v {
                    "all" => Ok(Prune::All),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}
