//! What git tells a hook through its environment and arguments: the repository, the
//! receive quarantine, the push options and where the hook itself lives. Read once at the
//! entry (`hook`) and passed down, so that nothing below it reads the process environment.

use anyhow::{Context, Result};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The objects of the push being received, which git keeps apart until the push is
/// accepted (`GIT_OBJECT_DIRECTORY` and friends, set for pre-receive only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// `GIT_OBJECT_DIRECTORY`: the quarantine's object directory, as git set it.
    pub objects: PathBuf,
    /// `GIT_ALTERNATE_OBJECT_DIRECTORIES`: further object directories, in order.
    pub alternates: Vec<PathBuf>,
    /// `GIT_QUARANTINE_PATH`: the directory git moves into the repository on acceptance.
    pub path: Option<PathBuf>,
}

/// A hook's inputs other than its standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnv {
    /// The repository: `GIT_DIR` as git set it, else the current directory (git runs
    /// hooks from the top of a bare repository); absolute.
    pub git_dir: PathBuf,
    /// Set while a push is being received (pre-receive).
    pub quarantine: Option<Quarantine>,
    /// `GIT_PUSH_OPTION_0` … `GIT_PUSH_OPTION_<COUNT-1>`, those that are text.
    pub push_options: Vec<String>,
    /// The directory of the hook git ran (its `argv[0]`), where `hooks/<hook>.d` is
    /// looked for first, so that `core.hooksPath` works; `None` when `argv[0]` names
    /// no directory.
    pub hook_dir: Option<PathBuf>,
    /// `GIT_NAMESPACE`, when the repository is served with one.
    pub namespace: Option<OsString>,
}

impl HookEnv {
    /// Builds the inputs from `var` (a lookup of environment variables) and `argv0`.
    pub fn read(var: impl Fn(&str) -> Option<OsString>, argv0: Option<&OsStr>) -> Result<HookEnv> {
        let dir = var("GIT_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
        let git_dir = std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let quarantine = var("GIT_OBJECT_DIRECTORY").map(|objects| Quarantine {
            objects: PathBuf::from(objects),
            alternates: var("GIT_ALTERNATE_OBJECT_DIRECTORIES")
                .map(|dirs| std::env::split_paths(&dirs).collect())
                .unwrap_or_default(),
            path: var("GIT_QUARANTINE_PATH").map(PathBuf::from),
        });
        let text = |name: &str| var(name).and_then(|value| value.into_string().ok());
        let count: usize = text("GIT_PUSH_OPTION_COUNT")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let push_options = (0..count)
            .filter_map(|i| text(&format!("GIT_PUSH_OPTION_{i}")))
            .collect();
        let hook_dir = argv0
            .map(Path::new)
            .and_then(Path::parent)
            .filter(|dir| dir.file_name().is_some())
            .map(Path::to_owned);
        let namespace = var("GIT_NAMESPACE").filter(|ns| !ns.is_empty());
        Ok(HookEnv {
            git_dir,
            quarantine,
            push_options,
            hook_dir,
            namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)], argv0: Option<&str>) -> HookEnv {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        HookEnv::read(|name| vars.get(name).cloned(), argv0.map(OsStr::new)).unwrap()
    }

    #[test]
    fn a_pre_receive_environment_is_read_whole() {
        let env = read(
            &[
                ("GIT_DIR", "/srv/git/a.git"),
                (
                    "GIT_OBJECT_DIRECTORY",
                    "/srv/git/a.git/objects/tmp_objdir-incoming-x",
                ),
                (
                    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                    "/srv/git/a.git/objects:/srv/shared",
                ),
                (
                    "GIT_QUARANTINE_PATH",
                    "/srv/git/a.git/objects/tmp_objdir-incoming-x",
                ),
                ("GIT_PUSH_OPTION_COUNT", "3"),
                ("GIT_PUSH_OPTION_0", "ci.skip"),
                ("GIT_PUSH_OPTION_2", "topic=x"),
            ],
            Some("/srv/hooks/pre-receive"),
        );
        assert_eq!(env.git_dir, Path::new("/srv/git/a.git"));
        let quarantine = env.quarantine.expect("a quarantine");
        assert_eq!(
            quarantine.objects,
            Path::new("/srv/git/a.git/objects/tmp_objdir-incoming-x")
        );
        assert_eq!(
            quarantine.alternates,
            [
                Path::new("/srv/git/a.git/objects"),
                Path::new("/srv/shared")
            ]
        );
        assert!(quarantine.path.is_some());
        // A missing option is passed over, as before.
        assert_eq!(env.push_options, ["ci.skip", "topic=x"]);
        assert_eq!(env.hook_dir.as_deref(), Some(Path::new("/srv/hooks")));
    }

    #[test]
    fn without_variables_the_hook_runs_in_the_current_directory() {
        let env = read(&[("GIT_PUSH_OPTION_COUNT", "many")], Some("pre-receive"));
        assert_eq!(env.git_dir, std::path::absolute(".").unwrap());
        assert_eq!(env.quarantine, None);
        assert!(env.push_options.is_empty());
        assert_eq!(env.hook_dir, None);
    }
}
