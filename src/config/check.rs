//! The checks of `mirror.toml`, one method per table: each turns a raw table into its
//! checked type, or into a `ConfigError` naming the file, line, column and key.

use super::raw::{RawAuth, RawPull, RawPush, RawUpstream};
use super::{
    Auth, ConfigError, Interval, OnUnreachable, Prune, Pull, PushMirror, Secret, Upstream,
    DEFAULT_INTERVAL, DEFAULT_MAX_FAILURES, DEFAULT_TRANSFER_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT,
};
use crate::refs::RefPatterns;
use crate::url::RemoteUrl;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Names the status records of the upstream and the pull use; push mirrors may not.
const RESERVED_NAMES: [&str; 2] = ["upstream", "pull"];

/// Checks one `mirror.toml`, table by table; every error names the file, the line and
/// column of the offending value, and its key.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
    pub(super) repo: &'a Path,
    /// The `[auth.NAME]` tables defined, which `auth = "NAME"` keys may name.
    pub(super) auth_names: Vec<String>,
}

impl Checker<'_> {
    pub(super) fn at(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
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

    pub(super) fn upstream(&self, u: &RawUpstream) -> Result<Upstream, ConfigError> {
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

    pub(super) fn pull(
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
            webhook_secret_file: p.webhook_secret_file.as_ref().map(|f| self.repo.join(f)),
        })
    }

    pub(super) fn push_mirrors(
        &self,
        tables: &[Spanned<RawPush>],
    ) -> Result<Vec<PushMirror>, ConfigError> {
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

    pub(super) fn auth(&self, name: &str, spanned: &Spanned<RawAuth>) -> Result<Auth, ConfigError> {
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
pub(super) fn key_at(text: &str, offset: usize) -> String {
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
