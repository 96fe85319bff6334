//! Remote URLs as `mirror.toml` gives them: which forms are allowed (https, ssh, git,
//! scp-style, local paths — never `ext::` or other command-running transports), and how
//! they are shown to people: always with credentials masked.

use std::fmt;
use std::path::Path;

/// A checked remote URL. `Display` masks credentials, so printing one never leaks a
/// secret; [`RemoteUrl::for_git`] gives what git gets (no password: see [`crate::auth`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    raw: String,
    kind: UrlKind,
}

/// The transport a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    Http,
    Ssh,
    Git,
    Local,
}

impl RemoteUrl {
    /// Checks `text`; relative local paths are made absolute against `base` (the
    /// repository), since hooks and the companion run from different directories.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        check_text(text)?;
        if let Some((scheme, rest)) = text.split_once("://") {
            return Ok(RemoteUrl {
                raw: text.to_owned(),
                kind: with_scheme(text, scheme, rest)?,
            });
        }
        if let Some((host, path)) = scp_parts(text) {
            check_scp(text, host, path)?;
            return Ok(RemoteUrl {
                raw: text.to_owned(),
                kind: UrlKind::Ssh,
            });
        }
        let joined = base.join(text);
        let path = std::fs::canonicalize(&joined).unwrap_or(joined);
        let Some(raw) = path.to_str() else {
            return Err("is a path that is not valid UTF-8".to_owned());
        };
        Ok(RemoteUrl {
            raw: raw.to_owned(),
            kind: UrlKind::Local,
        })
    }

    /// The URL exactly as configured, secrets included: for git's environment or argv
    /// only, never for a message.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    pub fn kind(&self) -> UrlKind {
        self.kind
    }

    /// The URL to hand to git: as configured, minus any password or token in it, which
    /// reaches git through the environment instead (see [`crate::auth`]), so it never
    /// stands on a command line. An http(s) URL loses its whole user part (a lone user
    /// name there is usually a token); an ssh URL keeps its user name.
    pub fn for_git(&self) -> String {
        let Some((scheme, rest)) = self.raw.split_once("://") else {
            return self.raw.clone();
        };
        let Some(at) = userinfo_end(rest) else {
            return self.raw.clone();
        };
        let info = &rest[..at];
        let host_and_path = &rest[at + 1..];
        match self.kind {
            UrlKind::Http => format!("{scheme}://{host_and_path}"),
            _ => match info.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}@{host_and_path}"),
                None => self.raw.clone(),
            },
        }
    }

    /// `scheme://host[:port]` of a URL with a scheme (without any user name): what git's
    /// `credential.<url>.*` settings are matched against.
    pub fn origin(&self) -> Option<String> {
        let given = self.for_git();
        let (scheme, rest) = given.split_once("://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        Some(format!("{scheme}://{host}"))
    }

    /// The user name and password an http(s) URL carries (percent-decoded); a lone user
    /// name comes with an empty password (GitHub-style token URLs).
    pub fn embedded_credentials(&self) -> Option<(String, String)> {
        if self.kind != UrlKind::Http {
            return None;
        }
        let info = userinfo(&self.raw)?;
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        Some((percent_decode(user), percent_decode(password)))
    }

    /// For an SSH URL, the host (as written: it may be an ssh_config alias) and the port
    /// it names, if any.
    pub fn ssh_host(&self) -> Option<(String, Option<u16>)> {
        if self.kind != UrlKind::Ssh {
            return None;
        }
        let authority = match self.raw.split_once("://") {
            Some((_, rest)) => {
                let after_user = userinfo_end(rest).map_or(rest, |at| &rest[at + 1..]);
                after_user.split('/').next().unwrap_or_default()
            }
            None => scp_parts(&self.raw)?.0,
        };
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        if let Some(rest) = host_port.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return Some((host.to_owned(), port));
        }
        if self.raw.contains("://") {
            if let Some((host, port)) = host_port.rsplit_once(':') {
                return Some((host.to_owned(), port.parse().ok()));
            }
        }
        Some((host_port.to_owned(), None))
    }

    /// True when the URL itself carries a password (`user:password@`).
    pub fn has_embedded_password(&self) -> bool {
        userinfo(&self.raw).is_some_and(|u| u.contains(':'))
    }

    /// True when the URL itself carries a password or token.
    pub fn has_embedded_secret(&self) -> bool {
        userinfo(&self.raw).is_some_and(|u| u.contains(':') || self.kind == UrlKind::Http)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.raw))
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", mask(&self.raw))
    }
}

/// `[user@]host:path` with no `/` before the `:` (git's rule for scp-style syntax).
fn scp_parts(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    if text[..colon].contains('/') {
        return None;
    }
    Some((&text[..colon], &text[colon + 1..]))
}

/// Decodes `%XX` escapes (as in the user part of a URL); anything malformed is kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    Some(&rest[..userinfo_end(rest)?])
}

/// What no URL may be, whatever its kind: empty, an option, multi-line, or a remote
/// helper (`ext::` runs commands).
fn check_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty; give the remote repository's URL".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!(
            "{text:?} starts with '-', which git would read as an option"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("contains a control character (a line break?)".to_owned());
    }
    if let Some((helper, _)) = text.split_once("::") {
        if !helper.is_empty()
            && helper
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            let why = if helper == "ext" {
                "the ext:: transport runs arbitrary commands"
            } else {
                "remote-helper URLs (`transport::address`) are not supported"
            };
            return Err(format!(
                "uses `{helper}::`: {why}; use an https://, ssh://, git:// URL, an scp-style host:path or a local path"
            ));
        }
    }
    Ok(())
}

/// The kind of a `scheme://rest` URL, which must name a host (but `file://`).
fn with_scheme(text: &str, scheme: &str, rest: &str) -> Result<UrlKind, String> {
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => UrlKind::Http,
        "ssh" | "git+ssh" | "ssh+git" => UrlKind::Ssh,
        "git" => UrlKind::Git,
        "file" => UrlKind::Local,
        _ => {
            return Err(format!(
                "has the unsupported scheme `{scheme}://`; use https://, http://, ssh://, git:// or file://"
            ))
        }
    };
    if kind != UrlKind::Local {
        let after_user = userinfo_end(rest).map_or(rest, |at| &rest[at + 1..]);
        let host = after_user.split('/').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("{} has no host name", mask(text)));
        }
        if host.starts_with('-') {
            return Err(format!(
                "{}: the host name starts with '-', which ssh would read as an option",
                mask(text)
            ));
        }
    }
    Ok(kind)
}

/// An scp-style `host:path` needs both, and a host that is not an option.
fn check_scp(text: &str, host: &str, path: &str) -> Result<(), String> {
    let bare_host = host.rsplit('@').next().unwrap_or_default();
    if bare_host.is_empty() || bare_host.starts_with('-') {
        return Err(format!(
            "{text:?} looks like an scp-style host:path but its host name is empty or starts with '-'"
        ));
    }
    if path.is_empty() {
        return Err(format!("{text:?} has no repository path after the ':'"));
    }
    Ok(())
}

/// Where the user part of `rest` (a URL after `scheme://`) ends: the index of the `@`
/// before the host, if there is a user part. Normally the last `@` before the first `/`.
/// A password may hold an unencoded `/` (AWS CodeCommit's often do): when the text
/// before the first `/` has no `@` and is `user:…` rather than `host:port` or `[v6]…`,
/// the user part runs to the last `@` before the path, which starts at the first `/`
/// after the first `@`. So `https://u:ab/cd@host/p` has the password `ab/cd` while
/// `https://host:8080/a@b` and `https://host/a@b` have no user part.
fn userinfo_end(rest: &str) -> Option<usize> {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@') {
        return Some(at);
    }
    if authority.starts_with('[') {
        return None;
    }
    let (_, after_colon) = authority.split_once(':')?;
    if after_colon.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let first_at = rest.find('@')?;
    let path = rest[first_at..]
        .find('/')
        .map_or(rest.len(), |p| first_at + p);
    rest[..path].rfind('@')
}

/// Masks the credentials in any URL-like text: `https://*****:*****@host/…` when a
/// password is present, and for http(s) also a lone user name (often a token).
pub fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = userinfo_end(rest) else {
        return url.to_owned();
    };
    let info = &rest[..at];
    let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let masked = if info.contains(':') {
        "*****:*****"
    } else if http {
        "*****"
    } else {
        return url.to_owned();
    };
    format!("{scheme}://{masked}{}", &rest[at..])
}

/// Masks every URL with credentials inside a line of free text (git's own messages).
pub fn mask_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme starts after the last character that cannot be part of one (which
        // may be several bytes long).
        let start = rest[..pos]
            .char_indices()
            .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(*c)))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = pos
            + 3
            + rest[pos + 3..]
                .find(|c: char| c.is_whitespace() || "'\"<>`".contains(c))
                .unwrap_or(rest.len() - pos - 3);
        out.push_str(&rest[..start]);
        out.push_str(&mask(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RemoteUrl, String> {
        RemoteUrl::parse(text, Path::new("/srv/git/p.git"))
    }

    #[test]
    fn masking_text_with_multibyte_characters_before_a_url() {
        assert_eq!(
            mask_text("Òhttps://u:p@host/x and ésh://x"),
            "Òhttps://*****:*****@host/x and ésh://x"
        );
    }

    #[test]
    fn ssh_hosts_and_ports() {
        let host = |t: &str| parse(t).unwrap().ssh_host();
        assert_eq!(
            host("ssh://git@host:2222/p.git"),
            Some(("host".into(), Some(2222)))
        );
        assert_eq!(host("ssh://host/p.git"), Some(("host".into(), None)));
        assert_eq!(
            host("git@gitlab.example.com:group/p.git"),
            Some(("gitlab.example.com".into(), None))
        );
        assert_eq!(host("ssh://[::1]:22/p.git"), Some(("::1".into(), Some(22))));
        assert_eq!(host("https://host/p.git"), None);
    }

    #[test]
    fn secrets_leave_the_url_that_git_gets() {
        let url = parse("https://oauth2:tok%40en@git.example.com/p.git").unwrap();
        assert_eq!(url.for_git(), "https://git.example.com/p.git");
        assert_eq!(
            url.embedded_credentials(),
            Some(("oauth2".to_owned(), "tok@en".to_owned()))
        );
        let token_only = parse("https://ghp_secret@github.com/o/p.git").unwrap();
        assert_eq!(token_only.for_git(), "https://github.com/o/p.git");
        assert_eq!(
            token_only.embedded_credentials(),
            Some(("ghp_secret".to_owned(), String::new()))
        );
        assert_eq!(url.origin().as_deref(), Some("https://git.example.com"));
        let ssh = parse("ssh://git:pw@host:2222/p.git").unwrap();
        assert_eq!(ssh.for_git(), "ssh://git@host:2222/p.git");
        assert_eq!(ssh.embedded_credentials(), None);
        let plain = parse("git@host:group/p.git").unwrap();
        assert_eq!(plain.for_git(), "git@host:group/p.git");
        assert_eq!(
            parse("https://host/p.git").unwrap().embedded_credentials(),
            None
        );
    }

    #[test]
    fn a_password_with_a_slash_is_a_password() {
        // AWS CodeCommit's generated passwords often hold an unencoded `/`.
        let url =
            parse("https://user-at-1:ab/cd+ef=@git-codecommit.example.com/v1/repos/r").unwrap();
        assert_eq!(
            url.for_git(),
            "https://git-codecommit.example.com/v1/repos/r"
        );
        assert_eq!(
            url.embedded_credentials(),
            Some(("user-at-1".to_owned(), "ab/cd+ef=".to_owned()))
        );
        assert!(url.has_embedded_secret());
        assert_eq!(
            url.origin().as_deref(),
            Some("https://git-codecommit.example.com")
        );
        assert_eq!(
            url.to_string(),
            "https://*****:*****@git-codecommit.example.com/v1/repos/r"
        );
        // Several slashes, and a port.
        let odd = parse("http://u:a/b/c@host:8080/p.git").unwrap();
        assert_eq!(odd.for_git(), "http://host:8080/p.git");
        assert_eq!(
            odd.embedded_credentials(),
            Some(("u".to_owned(), "a/b/c".to_owned()))
        );
        assert_eq!(
            mask_text(
                "fatal: unable to access 'https://u:ab/cd@h/r.git/': 403 (https://u:x/y@h/r)"
            ),
            "fatal: unable to access 'https://*****:*****@h/r.git/': 403 (https://*****:*****@h/r)"
        );
        // An `@` in the path of a URL without a user part stays in the path.
        for plain in [
            "https://host/a@b/p.git",
            "https://host:8443/a@b/p.git",
            "https://[::1]:8443/a@b/p.git",
            "https://u:p@host/a@b/p.git",
        ] {
            let url = parse(plain).unwrap();
            assert!(url.for_git().ends_with("/a@b/p.git"), "{plain}");
            assert!(mask(plain).ends_with("/a@b/p.git"), "{plain}");
        }
        assert_eq!(
            parse("https://host/a@b/p.git")
                .unwrap()
                .embedded_credentials(),
            None
        );
        // Whatever the scheme, such a password is masked and kept from git.
        let ssh = parse("ssh://git:pa/ss@host/p.git").unwrap();
        assert_eq!(ssh.for_git(), "ssh://git@host/p.git");
        assert_eq!(ssh.to_string(), "ssh://*****:*****@host/p.git");
        assert_eq!(ssh.ssh_host(), Some(("host".into(), None)));
    }

    #[test]
    fn accepts_the_usual_forms() {
        assert_eq!(parse("https://h/a.git").unwrap().kind(), UrlKind::Http);
        assert_eq!(
            parse("ssh://git@h:2222/a.git").unwrap().kind(),
            UrlKind::Ssh
        );
        assert_eq!(parse("git@h:group/a.git").unwrap().kind(), UrlKind::Ssh);
        assert_eq!(parse("git://h/a.git").unwrap().kind(), UrlKind::Git);
        assert_eq!(parse("file:///x/a.git").unwrap().kind(), UrlKind::Local);
        let relative = parse("../up.git").unwrap();
        assert_eq!(relative.expose(), "/srv/git/p.git/../up.git");
    }

    #[test]
    fn refuses_dangerous_forms() {
        for bad in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "fd::3",
            "-upload-pack=evil",
            "ssh://-oProxyCommand=evil/a.git",
            "-oProxyCommand=evil:a.git",
            "gopher://h/a",
            "https:///a.git",
            "host:",
            "https://h/a\n.git",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse("ext::sh").unwrap_err().contains("arbitrary commands"));
    }

    #[test]
    fn masks_credentials() {
        let url = parse("https://oauth2:s3cret@h/a.git").unwrap();
        assert_eq!(url.to_string(), "https://*****:*****@h/a.git");
        assert_eq!(format!("{url:?}"), "RemoteUrl(https://*****:*****@h/a.git)");
        assert!(url.has_embedded_secret());
        assert_eq!(mask("https://tok@h/a.git"), "https://*****@h/a.git");
        assert_eq!(mask("ssh://git@h/a.git"), "ssh://git@h/a.git");
        assert!(!parse("ssh://git@h/a.git").unwrap().has_embedded_secret());
        assert_eq!(
            mask_text("fatal: unable to access 'https://u:p@h/a.git/': 403"),
            "fatal: unable to access 'https://*****:*****@h/a.git/': 403"
        );
        assert_eq!(mask_text("no url here"), "no url here");
    }
}
