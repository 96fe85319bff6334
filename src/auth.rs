//! Credentials and transports: what a git process needs to reach one remote. An HTTPS
//! user and password (from `[auth.NAME]` or the URL) reach git through a credential
//! helper that reads them from its environment; an SSH key and known hosts through
//! `GIT_SSH_COMMAND`. No secret is ever put on a command line or in a message.

use crate::config::{Config, Secret};
use crate::url::{RemoteUrl, UrlKind};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Variables the credential helper reads; set only in the environment of the git that
/// talks to the remote (and the helper git starts), never exported further.
const USERNAME_VARIABLE: &str = "MIRROR_HOOKS_USERNAME";
const PASSWORD_VARIABLE: &str = "MIRROR_HOOKS_PASSWORD";

/// A credential helper (git runs `!…` helpers through the shell) that answers `get` with
/// the user name and password from its environment and ignores `store` and `erase`. Its
/// text holds no secret, so it may stand on any command line.
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' \"$MIRROR_HOOKS_USERNAME\" \"$MIRROR_HOOKS_PASSWORD\"; }; f";

pub use crate::git::Access;

impl Access {
    /// What reaching `url` takes, with the `[auth.NAME]` table `auth` names (if any) of
    /// the configuration in `repo`. Fails, naming the table and key, when a secret cannot
    /// be read or its file or key is open to other users.
    pub fn new(
        repo: &Path,
        config: &Config,
        url: &RemoteUrl,
        auth: Option<&str>,
    ) -> Result<Access> {
        let table = match auth {
            Some(name) => Some((
                name,
                config.auth.get(name).with_context(|| {
                    format!("{} has no [auth.{name}] table", config.path.display())
                })?,
            )),
            None => None,
        };
        let mut access = Access::default();
        let mut key = None;
        let mut known_hosts = None;
        let mut ssh_config = None;
        if let Some((name, table)) = table {
            if let Some(password) = &table.password {
                let secret = read_secret(repo, name, password)?;
                if let Secret::Env(variable) = password {
                    access.hidden.push(variable.clone());
                }
                let username = table.username.clone().unwrap_or_default();
                access.credentials(url, name, &username, &secret)?;
            }
            if let Some(path) = &table.ssh_key {
                let path = repo.join(path);
                check_private(&path, &format!("[auth.{name}] ssh_key"))?;
                key = Some(path);
            }
            known_hosts = table.known_hosts.as_ref().map(|p| repo.join(p));
            ssh_config = table.ssh_config.as_ref().map(|p| repo.join(p));
        }
        if access.env.is_empty() {
            if let Some((username, password)) = url.embedded_credentials() {
                access.credentials(url, "the URL", &username, &password)?;
            }
        }
        if url.kind() == UrlKind::Ssh {
            // A table's own known_hosts is the whole truth for its remote; the one that
            // `host-keys --trust` fills is added to the user's, never in place of it.
            let (known_hosts, and_users) = match known_hosts {
                Some(file) => (Some(file), false),
                None => {
                    let trusted = default_known_hosts(repo);
                    (trusted.is_file().then_some(trusted), true)
                }
            };
            access.env.push((
                "GIT_SSH_COMMAND".to_owned(),
                ssh_command(SshOptions {
                    key: key.as_deref(),
                    known_hosts: known_hosts.as_deref(),
                    and_users_known_hosts: and_users,
                    config: ssh_config.as_deref(),
                }),
            ));
        }
        Ok(access)
    }

    fn credentials(
        &mut self,
        url: &RemoteUrl,
        source: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        // Only for this server: if it redirects elsewhere, the other host gets nothing.
        let Some(origin) = url.origin() else {
            bail!("{source} gives a user name and password, but {url} is not an http(s) URL, which is the only kind they serve");
        };
        let helper_key = format!("credential.{origin}.helper");
        if username.contains(['\n', '\0']) || password.contains(['\n', '\0']) {
            bail!("the user name or password from {source} contains a line break, which git's credential protocol cannot carry");
        }
        // Configuration passed this way by whoever runs us (GIT_CONFIG_COUNT and its
        // pairs) is kept; ours goes after it, so it wins.
        let base: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let entries = [
            // An empty value first empties the list of helpers configured elsewhere.
            ("credential.helper", ""),
            (helper_key.as_str(), HELPER),
        ];
        for (i, (key, value)) in entries.iter().enumerate() {
            let n = base + i;
            self.env
                .push((format!("GIT_CONFIG_KEY_{n}"), (*key).to_owned()));
            self.env
                .push((format!("GIT_CONFIG_VALUE_{n}"), (*value).to_owned()));
        }
        self.env.push((
            "GIT_CONFIG_COUNT".to_owned(),
            (base + entries.len()).to_string(),
        ));
        self.env
            .push((USERNAME_VARIABLE.to_owned(), username.to_owned()));
        self.env
            .push((PASSWORD_VARIABLE.to_owned(), password.to_owned()));
        Ok(())
    }
}

/// Where `git-mirror keygen` and `host-keys --trust` keep their files.
pub fn keys_dir(repo: &Path) -> PathBuf {
    crate::state::mirror_dir(repo).join("keys")
}

/// The known_hosts file `host-keys --trust` writes, used for every ssh remote of the
/// repository that does not name its own.
pub fn default_known_hosts(repo: &Path) -> PathBuf {
    keys_dir(repo).join("known_hosts")
}

/// What ssh is told about one remote.
#[derive(Debug, Clone, Copy, Default)]
pub struct SshOptions<'a> {
    pub key: Option<&'a Path>,
    pub known_hosts: Option<&'a Path>,
    /// Consult the user's `~/.ssh/known_hosts` too.
    pub and_users_known_hosts: bool,
    pub config: Option<&'a Path>,
}

/// The `GIT_SSH_COMMAND` for one remote: batch mode (never a prompt), a connect timeout,
/// strict host key checking, and the key, known hosts and ssh_config given, each path
/// quoted for the shell git runs the command with.
pub fn ssh_command(options: SshOptions) -> String {
    let SshOptions {
        key,
        known_hosts,
        and_users_known_hosts,
        config,
    } = options;
    let mut command = String::from("ssh");
    if let Some(config) = config {
        command.push_str(&format!(" -F {}", shell_quote(config)));
    }
    if let Some(key) = key {
        let key = ssh_path(key);
        command.push_str(&format!(
            " -i {} -o IdentitiesOnly=yes",
            shell_quote(Path::new(&key))
        ));
    }
    if let Some(known_hosts) = known_hosts {
        // ssh splits this option's value at spaces unless it is in double quotes.
        let mut option = format!("UserKnownHostsFile=\"{}\"", ssh_path(known_hosts));
        if and_users_known_hosts {
            option.push_str(" ~/.ssh/known_hosts");
        }
        command.push_str(&format!(" -o {}", shell_quote(Path::new(&option))));
    }
    command.push(' ');
    command.push_str(crate::git::SSH_SAFE_OPTIONS);
    command
}

/// A path as ssh reads it in IdentityFile and UserKnownHostsFile, which expand `%`.
fn ssh_path(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

/// `'text'` with every `'` written as `'\''`: one word for a POSIX shell, whatever it holds.
fn shell_quote(path: &Path) -> String {
    crate::text::shell_quote(&path.display().to_string())
}

fn read_secret(repo: &Path, table: &str, secret: &Secret) -> Result<String> {
    match secret {
        Secret::Env(variable) => std::env::var(variable).with_context(|| {
            format!(
                "[auth.{table}] password_env names the environment variable {variable}, which is not set (or not UTF-8) for this process; set it where git-mirror and the hooks run, or use password_file"
            )
        }),
        Secret::File(path) => {
            let path = repo.join(path);
            check_private(&path, &format!("[auth.{table}] password_file"))?;
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {} ([auth.{table}] password_file)", path.display())
            })?;
            // Editors end files with a line break; it is not part of the token.
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
    }
}

/// Refuses a secret file that users other than its owner may read.
pub(crate) fn check_private(path: &Path, key: &str) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {} ({key})", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} ({key}) can be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_quotes_paths_and_never_prompts() {
        assert_eq!(
            ssh_command(SshOptions::default()),
            "ssh -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=15"
        );
        assert_eq!(
            ssh_command(SshOptions {
                key: Some(Path::new("/srv/git/my repo.git/mirror/keys/id_ed25519")),
                known_hosts: Some(Path::new("/srv/git/it's 100%.git/known_hosts")),
                and_users_known_hosts: true,
                config: None,
            }),
            concat!(
                "ssh -i '/srv/git/my repo.git/mirror/keys/id_ed25519' -o IdentitiesOnly=yes",
                r#" -o 'UserKnownHostsFile="/srv/git/it'\''s 100%%.git/known_hosts" ~/.ssh/known_hosts'"#,
                " -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=15"
            )
        );
    }
}
