//! `git-mirror keygen` and `git-mirror host-keys`: the repository's deploy key, and
//! showing and trusting an SSH server's host keys.

use super::{repository, Failure};
use crate::config::Config;
use crate::url::RemoteUrl;
use std::path::{Path, PathBuf};

pub(super) fn keygen(repo: Option<&Path>, force: bool) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let (path, public) = crate::keys::keygen(&repo, force)?;
    println!("{public}");
    eprintln!(
        "git-mirror: wrote {} (private) and {}.pub.",
        path.display(),
        path.display()
    );
    eprintln!("git-mirror: add the line above to the remote repository as a deploy key (with write access where this server pushes), then name it in mirror.toml:");
    eprintln!(
        "git-mirror:   [auth.NAME]\ngit-mirror:   ssh_key = \"mirror/keys/{}\"",
        crate::keys::DEPLOY_KEY
    );
    Ok(0)
}

pub(super) fn host_keys(url: &str, repo: Option<&Path>, trust: bool) -> Result<i32, Failure> {
    // Showing fingerprints needs no repository; trusting them does.
    let repo = match (repository(repo), trust) {
        (Ok(repo), _) => Some(repo),
        (Err(e), true) => return Err(e.into()),
        (Err(_), false) => None,
    };
    let base = repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let url = RemoteUrl::parse(url, &base)
        .map_err(|why| anyhow::anyhow!("the URL {}: {why}", crate::url::mask(url)))?;
    // The remote's [auth] table, when mirror.toml has this URL, says which ssh_config
    // and known_hosts it uses.
    let config = repo.as_deref().and_then(|r| Config::load(r).ok().flatten());
    let auth = config.as_ref().and_then(|c| {
        let name = c
            .remotes()
            .into_iter()
            .find(|r| *r.url == url && r.auth.is_some())?
            .auth?;
        c.auth.get(name).cloned()
    });
    let ssh_config = auth.as_ref().and_then(|a| a.ssh_config.clone());
    let target = crate::keys::resolve(&url, ssh_config.as_deref())?;
    let keys = crate::keys::scan(&target)?;
    for key in &keys {
        for line in crate::keys::fingerprint_lines(key, &target.known_as) {
            println!("{line}");
        }
    }
    let Some(repo) = repo.filter(|_| trust) else {
        println!("not trusted yet: compare these with the fingerprints the server's administrator publishes, then run `git mirror host-keys --trust {url}` in the repository");
        return Ok(0);
    };
    let known_hosts = auth
        .and_then(|a| a.known_hosts)
        .unwrap_or_else(|| crate::auth::default_known_hosts(&repo));
    let count = crate::keys::trust(&repo, &known_hosts, &target, &keys)?;
    println!(
        "trusted: {count} host key{} of {} written to {}",
        if count == 1 { "" } else { "s" },
        target.known_as,
        known_hosts.display()
    );
    Ok(0)
}
