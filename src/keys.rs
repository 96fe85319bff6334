//! SSH keys of a repository: the deploy key `git-mirror keygen` makes (ed25519, in
//! `mirror/keys/`), and the server host keys `git-mirror host-keys` shows with their
//! fingerprints and, when told to, trusts in `mirror/keys/known_hosts`.

use crate::url::RemoteUrl;
use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The deploy key's file name in `mirror/keys/`.
pub const DEPLOY_KEY: &str = "id_ed25519";

/// Makes the repository's ed25519 deploy key (private 0600, public beside it) and
/// returns the public key line to paste where the remote accepts deploy keys.
pub fn keygen(repo: &Path, force: bool) -> Result<(PathBuf, String)> {
    let dir = crate::auth::keys_dir(repo);
    let path = dir.join(DEPLOY_KEY);
    if path.exists() && !force {
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap_or_default();
        bail!(
            "{} already exists (public key: {}); `git mirror keygen --force` replaces it, after which the old key stops working wherever it was added",
            path.display(),
            public.trim()
        );
    }
    create_private_dir(repo, &dir)?;
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .context("cannot generate an ed25519 key")?;
    key.set_comment(format!("mirror-hooks {}", repo.display()));
    // Replace, never edit in place: a reader sees the old key or the new one, whole.
    let tmp = dir.join(format!(".{DEPLOY_KEY}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    key.write_openssh_file(&tmp, LineEnding::LF)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the public key")?;
    let public_path = path.with_extension("pub");
    let public_tmp = dir.join(format!(".{DEPLOY_KEY}.pub.tmp"));
    std::fs::write(&public_tmp, format!("{public}\n"))
        .with_context(|| format!("cannot write {}", public_tmp.display()))?;
    give_to_owner(repo, &public_tmp)?;
    give_to_owner(repo, &tmp)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&public_tmp, &public_path)
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    Ok((path, public))
}

/// `dir` with mode 0700, owned like the repository.
fn create_private_dir(repo: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    give_to_owner(repo, dir)
}

/// When run as root (an administrator's shell), what we create in a repository belongs
/// to the repository's owner, so the hooks, running as the git user, can read it.
fn give_to_owner(repo: &Path, path: &Path) -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let meta =
        std::fs::metadata(repo).with_context(|| format!("cannot read {}", repo.display()))?;
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("cannot give {} to the repository's owner", path.display()))
}

/// Where an SSH URL leads, as ssh itself resolves it (aliases, ports, HostKeyAlias from
/// ssh_config): the address to scan and the name known_hosts files it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub hostname: String,
    pub port: u16,
    /// The name in known_hosts: `host`, `[host]:port`, or the HostKeyAlias.
    pub known_as: String,
}

/// Resolves `url` with `ssh -G` (which reads the ssh_config, `config` first, and connects
/// to nothing).
pub fn resolve(url: &RemoteUrl, config: Option<&Path>) -> Result<SshTarget> {
    let Some((host, port)) = url.ssh_host() else {
        bail!(
            "{url} is not an SSH URL (ssh://host/path or host:path); host keys are for SSH remotes"
        );
    };
    let mut cmd = Command::new(
        which::which("ssh").context("cannot find `ssh` on PATH; install openssh-client")?,
    );
    if let Some(config) = config {
        cmd.arg("-F").arg(config);
    }
    if let Some(port) = port {
        cmd.arg("-p").arg(port.to_string());
    }
    let out = cmd
        .arg("-G")
        .arg("--")
        .arg(&host)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh -G")?;
    if !out.status.success() {
        bail!(
            "ssh cannot resolve {host}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
    };
    let hostname = value("hostname").unwrap_or(host);
    let port: u16 = value("port").and_then(|p| p.parse().ok()).unwrap_or(22);
    let known_as = value("hostkeyalias").unwrap_or_else(|| {
        if port == 22 {
            hostname.clone()
        } else {
            format!("[{hostname}]:{port}")
        }
    });
    Ok(SshTarget {
        hostname,
        port,
        known_as,
    })
}

/// Asks the server for its host keys (`ssh-keyscan`), without logging in.
pub fn scan(target: &SshTarget) -> Result<Vec<PublicKey>> {
    let program = which::which("ssh-keyscan")
        .context("cannot find `ssh-keyscan` on PATH; install openssh-client")?;
    let out = Command::new(program)
        .args([
            "-T",
            "10",
            "-p",
            &target.port.to_string(),
            "--",
            &target.hostname,
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keyscan")?;
    let mut keys = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace().skip(1);
        let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        bail!(
            "{}:{} sent no SSH host key (is an SSH server listening there?): {}",
            target.hostname,
            target.port,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(keys)
}

/// The lines `ssh-keygen -l` prints for `key` under `name`: SHA256, then MD5.
pub fn fingerprint_lines(key: &PublicKey, name: &str) -> [String; 2] {
    let label = match key.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Dsa => "DSA",
        _ => "OTHER",
    };
    let bits = bits(key);
    let sha256 = key.fingerprint(HashAlg::Sha256);
    let md5 = key
        .to_bytes()
        .map(|bytes| {
            Md5::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default();
    [
        format!("{bits} {sha256} {name} ({label})"),
        format!("{bits} MD5:{md5} {name} ({label})"),
    ]
}

fn bits(key: &PublicKey) -> usize {
    match key.algorithm() {
        Algorithm::Ed25519 => 256,
        Algorithm::Ecdsa { curve } => match curve {
            EcdsaCurve::NistP256 => 256,
            EcdsaCurve::NistP384 => 384,
            EcdsaCurve::NistP521 => 521,
        },
        Algorithm::Rsa { .. } => key
            .key_data()
            .rsa()
            .and_then(|rsa| rsa.n.as_positive_bytes())
            .map_or(0, |n| {
                n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize)
            }),
        _ => 0,
    }
}

/// Records `keys` as the host keys of `target` in `known_hosts`, replacing what was
/// trusted for that name before; returns how many lines were written.
pub fn trust(
    repo: &Path,
    known_hosts: &Path,
    target: &SshTarget,
    keys: &[PublicKey],
) -> Result<usize> {
    if let Some(dir) = known_hosts.parent() {
        if dir == crate::auth::keys_dir(repo) {
            create_private_dir(repo, dir)?;
        }
    }
    let old = match std::fs::read_to_string(known_hosts) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", known_hosts.display())),
    };
    let mut text: String = old
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(target.known_as.as_str()))
        .map(|l| format!("{l}\n"))
        .collect();
    for key in keys {
        let mut key = key.clone();
        key.set_comment("");
        let encoded = key.to_openssh().context("cannot encode a host key")?;
        text.push_str(&format!("{} {}\n", target.known_as, encoded.trim()));
    }
    let tmp = known_hosts.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    give_to_owner(repo, &tmp)?;
    std::fs::rename(&tmp, known_hosts)
        .with_context(|| format!("cannot write {}", known_hosts.display()))?;
    Ok(keys.len())
}
