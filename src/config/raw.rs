//! The TOML shape of `mirror.toml` as serde reads it, with the spans the checks report;
//! unknown keys are refused here.

use super::{OnUnreachable, Prune};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) upstream: Option<RawUpstream>,
    pub(super) pull: Option<Spanned<RawPull>>,
    #[serde(default)]
    pub(super) push: Vec<Spanned<RawPush>>,
    #[serde(default)]
    pub(super) auth: BTreeMap<String, Spanned<RawAuth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) url: Spanned<String>,
    pub(super) refs: Option<Spanned<Vec<String>>>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) on_unreachable: Option<OnUnreachable>,
    #[serde(default)]
    pub(super) push_options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPull {
    pub(super) url: Option<Spanned<String>>,
    pub(super) refs: Option<Spanned<Vec<String>>>,
    pub(super) interval: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) overwrite_diverged: bool,
    pub(super) prune: Option<Prune>,
    pub(super) max_failures: Option<Spanned<i64>>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) webhook_secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPush {
    pub(super) name: Spanned<String>,
    pub(super) url: Spanned<String>,
    pub(super) refs: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) keep_divergent_refs: bool,
    pub(super) prune: Option<Prune>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) username: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ssh_key: Option<PathBuf>,
    pub(super) known_hosts: Option<PathBuf>,
    pub(super) ssh_config: Option<PathBuf>,
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
