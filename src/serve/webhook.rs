//! Webhooks: which repository a `/webhook/…` path names (never one outside the root),
//! its secret (`[pull] webhook_secret_file`), and the signature each host sends,
//! checked in constant time.

use super::http::Head;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Component, Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// The largest body a webhook may have (GitHub caps its payloads at 25 MB).
pub const MAX_BODY: u64 = 25 * 1024 * 1024;

/// The repository `rel` (percent-encoded, relative to `root`, which is canonical) names:
/// a directory under `root`, once symlinks are resolved, with a `mirror.toml`. `None`
/// for anything else (`..`, an absolute path, a symlink leading out).
pub fn repository(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = percent_decode(rel)?;
    let rel = Path::new(&rel);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let repo = std::fs::canonicalize(root.join(rel)).ok()?;
    (repo.starts_with(root) && repo.join(crate::config::FILE_NAME).is_file()).then_some(repo)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

/// The longest webhook secret read (hosts' secrets are tens of bytes).
const MAX_SECRET: u64 = 4096;

/// The secret of `repo`'s webhooks: `None` when it has none (no `[pull]
/// webhook_secret_file`, an empty file); an error when the file cannot be used (unsafe
/// mode, unreadable), which the caller logs.
pub fn secret(repo: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(config) = crate::config::Config::load(repo)? else {
        return Ok(None);
    };
    let Some(path) = config.pull.and_then(|p| p.webhook_secret_file) else {
        return Ok(None);
    };
    // Read once, from the open file: a FIFO would block, a huge file would be read whole,
    // and a file someone else owns may be another user's secret.
    let file = crate::files::read_limited(&path, MAX_SECRET).map_err(|e| {
        anyhow::anyhow!(
            "cannot use {} ([pull] webhook_secret_file): {e}",
            path.display()
        )
    })?;
    if file.mode & 0o077 != 0 {
        anyhow::bail!(
            "{} ([pull] webhook_secret_file) can be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            file.mode & 0o777,
            path.display()
        );
    }
    let owner = std::fs::metadata(repo).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if file.uid != 0 && owner.is_ok_and(|owner| owner != file.uid) {
        anyhow::bail!(
            "{} ([pull] webhook_secret_file) belongs to another user than the repository; give it to the repository's owner",
            path.display()
        );
    }
    let text = file.bytes;
    // Editors end files with a line break; it is not part of the secret.
    let len = text
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    Ok((len > 0).then(|| text[..len].to_vec()))
}

/// What a request claims to prove it knows the secret with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// HMAC-SHA256 of the body (GitHub `X-Hub-Signature-256: sha256=HEX`, Gitea
    /// `X-Gitea-Signature: HEX`, Forgejo `X-Forgejo-Signature: HEX`).
    Signature(Vec<u8>),
    /// The secret itself (GitLab `X-Gitlab-Token`).
    Token(Vec<u8>),
    /// A signature header that is not hex: never valid.
    Malformed,
}

/// Every claim the request's headers make.
pub fn claims(head: &Head) -> Vec<Claim> {
    let mut claims = Vec::new();
    for (name, value) in &head.headers {
        let hex = match name.as_str() {
            "x-hub-signature-256" => value.strip_prefix("sha256="),
            "x-gitea-signature" | "x-forgejo-signature" => Some(value.as_str()),
            "x-gitlab-token" => {
                claims.push(Claim::Token(value.as_bytes().to_vec()));
                continue;
            }
            _ => continue,
        };
        claims.push(
            hex.and_then(decode_hex)
                .map_or(Claim::Malformed, Claim::Signature),
        );
    }
    claims
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The HMAC-SHA256 of a body, fed as it streams in.
pub struct BodyMac(HmacSha256);

impl BodyMac {
    pub fn new(secret: &[u8]) -> BodyMac {
        // HMAC takes keys of any length: this cannot fail.
        BodyMac(HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// True when there is at least one claim and every claim holds: each signature is
    /// the body's, each token the secret (compared as HMACs, in constant time and
    /// without revealing the secret's length).
    pub fn verify(self, secret: &[u8], claims: &[Claim]) -> bool {
        !claims.is_empty()
            && claims.iter().all(|claim| match claim {
                Claim::Signature(digest) => self.0.clone().verify_slice(digest).is_ok(),
                Claim::Token(token) => {
                    let mut given = BodyMac::new(b"git-mirror webhook token");
                    given.update(token);
                    let mut expected = BodyMac::new(b"git-mirror webhook token");
                    expected.update(secret);
                    given
                        .0
                        .verify_slice(&expected.0.finalize().into_bytes())
                        .is_ok()
                }
                Claim::Malformed => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".into(),
            target: "/webhook/r.git".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            early_body: Vec::new(),
        }
    }

    fn verify(secret: &str, body: &str, headers: &[(&str, &str)]) -> bool {
        let mut mac = BodyMac::new(secret.as_bytes());
        mac.update(body.as_bytes());
        mac.verify(secret.as_bytes(), &claims(&head(headers)))
    }

    // GitHub's documented example ("Validating webhook deliveries").
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &str = "Hello, World!";
    const HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn each_host_style_verifies() {
        let github = format!("sha256={HEX}");
        assert!(verify(SECRET, BODY, &[("x-hub-signature-256", &github)]));
        assert!(verify(SECRET, BODY, &[("x-gitea-signature", HEX)]));
        assert!(verify(SECRET, BODY, &[("x-forgejo-signature", HEX)]));
        assert!(verify(SECRET, BODY, &[("x-gitlab-token", SECRET)]));
        // Gitea sends its own header and GitHub's: both must hold.
        assert!(verify(
            SECRET,
            BODY,
            &[("x-gitea-signature", HEX), ("x-hub-signature-256", &github)]
        ));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(!verify(SECRET, BODY, &[]), "no claim");
        assert!(!verify(
            SECRET,
            "Hello, World?",
            &[("x-gitea-signature", HEX)]
        ));
        assert!(
            !verify(SECRET, BODY, &[("x-hub-signature-256", HEX)]),
            "no sha256="
        );
        assert!(!verify(SECRET, BODY, &[("x-gitea-signature", "zz")]));
        assert!(!verify(
            SECRET,
            BODY,
            &[("x-gitlab-token", "It's a Secret")]
        ));
        assert!(!verify(
            SECRET,
            BODY,
            &[("x-gitea-signature", HEX), ("x-gitlab-token", "wrong")]
        ));
    }

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let inside = root.join("group/a b.git");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("mirror.toml"), "").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("mirror.toml"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out.git")).unwrap();
        assert_eq!(repository(&root, "group/a%20b.git"), Some(inside.clone()));
        for bad in [
            "",
            "group",
            "group/../group/a%20b.git",
            "%2e%2e/x",
            "out.git",
            "/etc",
            "%2Fetc",
            "group/a%00b.git",
            "group/a%2",
        ] {
            assert_eq!(repository(&root, bad), None, "{bad}");
        }
    }
}
