//! Ref updates as git hands them to hooks (`old new ref` lines on stdin) and the ref
//! patterns of `mirror.toml` that decide which of them a mirror cares about.

use anyhow::{bail, Result};
use std::fmt;

/// One `old new ref` line of a hook's standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Object id the ref had before the push (all zeros: the ref is being created).
    pub old: String,
    /// Object id the ref gets (all zeros: the ref is being deleted).
    pub new: String,
    /// Full ref name, e.g. `refs/heads/main`.
    pub name: String,
}

/// What a [`RefUpdate`] does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Create,
    Update,
    Delete,
}

impl RefUpdate {
    pub fn kind(&self) -> UpdateKind {
        if is_zero(&self.old) {
            UpdateKind::Create
        } else if is_zero(&self.new) {
            UpdateKind::Delete
        } else {
            UpdateKind::Update
        }
    }
}

impl fmt::Display for RefUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.old, self.new, self.name)
    }
}

/// True for the null object id git uses for "no object" (40 or 64 zeros).
pub fn is_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// The first seven hex digits of an id, as git abbreviates it for people.
pub fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

/// True for a full object id in hex (SHA-1 or SHA-256).
pub fn is_object_id(id: &str) -> bool {
    (id.len() == 40 || id.len() == 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses a hook's standard input. Every line must be `OLD NEW REF`, both ids of the same
/// length (SHA-1 or SHA-256) and the ref name a plausible full ref name; anything else is
/// refused rather than guessed at.
pub fn parse_updates(input: &[u8]) -> Result<Vec<RefUpdate>> {
    let Ok(text) = std::str::from_utf8(input) else {
        bail!("the ref updates on standard input are not valid UTF-8; mirror-hooks only forwards ref names that are UTF-8");
    };
    let mut updates = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let mut fields = line.split(' ');
        let (Some(old), Some(new), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("line {number} of the ref updates is not `OLD NEW REF`: {line:?}");
        };
        if !is_object_id(old) || !is_object_id(new) || old.len() != new.len() {
            bail!("line {number} of the ref updates has an invalid object id: {line:?}");
        }
        check_ref_name(name).map_err(|why| {
            anyhow::anyhow!("line {number} of the ref updates names an invalid ref {name:?}: {why}")
        })?;
        updates.push(RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(updates)
}

/// The subset of git's ref-name rules (`git check-ref-format`) that matters for passing a
/// name safely on a command line and in a refspec.
pub fn check_ref_name(name: &str) -> std::result::Result<(), &'static str> {
    if !name.starts_with("refs/") {
        return Err("it does not start with refs/");
    }
    if name.ends_with('/') || name.ends_with(".lock") || name.ends_with('.') {
        return Err("it ends with '/', '.' or '.lock'");
    }
    if name.contains("..") || name.contains("//") || name.contains("@{") || name.contains("/.") {
        return Err("it contains '..', '//', '/.' or '@{'");
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b))
    {
        return Err("it contains a space, a control character or one of ~^:?*[\\");
    }
    Ok(())
}

/// A list of ref patterns: full ref names where `*` matches any run of characters,
/// including `/`, and a pattern starting with `!` excludes what it matches.
///
/// A ref matches the list when some including pattern matches it and no excluding one
/// does, whatever their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPatterns {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl RefPatterns {
    /// Checks and compiles patterns; the error says which pattern is wrong and why.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> std::result::Result<Self, String> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let (negated, body) = match pattern.strip_prefix('!') {
                Some(body) => (true, body),
                None => (false, pattern),
            };
            check_pattern(body).map_err(|why| format!("ref pattern {pattern:?} {why}"))?;
            if negated {
                exclude.push(body.to_owned());
            } else {
                include.push(body.to_owned());
            }
        }
        if include.is_empty() {
            return Err(
                "the list has no pattern that includes refs (only `!` exclusions or nothing); \
                 list the refs to mirror, e.g. [\"refs/heads/*\", \"refs/tags/*\"]"
                    .to_owned(),
            );
        }
        Ok(RefPatterns { include, exclude })
    }

    /// Heads and tags: what every Git host accepts from a push.
    pub fn heads_and_tags() -> Self {
        RefPatterns {
            include: vec!["refs/heads/*".to_owned(), "refs/tags/*".to_owned()],
            exclude: Vec::new(),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.include.iter().any(|p| glob_match(p, name))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }
}

fn check_pattern(body: &str) -> std::result::Result<(), &'static str> {
    if !body.starts_with("refs/") {
        return Err("must be a full ref name starting with refs/ (e.g. refs/heads/main)");
    }
    // The name with each `*` made concrete must still be a valid ref name.
    check_ref_name(&body.replace('*', "x")).map_err(|_| {
        "is not a valid ref name pattern (no spaces, '..', '~^:?[\\' or control characters)"
    })
}

/// `*` matches any run of characters, `/` included; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn parses_updates_and_kinds() {
        let input =
            format!("{Z} {A} refs/heads/new\n{A} {Z} refs/heads/gone\n{A} {A} refs/tags/v1\n");
        let updates = parse_updates(input.as_bytes()).unwrap();
        let kinds: Vec<_> = updates.iter().map(RefUpdate::kind).collect();
        assert_eq!(
            kinds,
            [UpdateKind::Create, UpdateKind::Delete, UpdateKind::Update]
        );
        assert_eq!(updates[2].name, "refs/tags/v1");
    }

    #[test]
    fn sha256_ids_are_ids_and_their_zero_is_zero() {
        let a = "ab".repeat(32);
        let z = "0".repeat(64);
        let input = format!("{z} {a} refs/heads/new\n{a} {z} refs/heads/gone\n");
        let kinds: Vec<_> = parse_updates(input.as_bytes())
            .unwrap()
            .iter()
            .map(RefUpdate::kind)
            .collect();
        assert_eq!(kinds, [UpdateKind::Create, UpdateKind::Delete]);
        // One line, one hash: a SHA-1 id beside a SHA-256 one is not a real update.
        assert!(parse_updates(format!("{A} {a} refs/heads/x").as_bytes()).is_err());
        assert!(!is_object_id(&"a".repeat(63)));
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            format!("{A} {A}"),
            format!("{A} {A} refs/heads/x extra"),
            format!("{A} zz refs/heads/x"),
            format!("{A} {A} HEAD"),
            format!("{A} {A} refs/heads/--upload-pack=x y"),
            format!("{A} {A} refs/heads/a..b"),
            format!("{A} {}0000000000000000000000000 refs/heads/x", A),
        ] {
            assert!(parse_updates(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_updates(b"\xff\xfe").is_err());
    }

    #[test]
    fn star_crosses_slashes_and_bang_excludes() {
        let p = RefPatterns::new(&["refs/heads/*", "!refs/heads/wip/*", "refs/tags/v*"]).unwrap();
        assert!(p.matches("refs/heads/main"));
        assert!(p.matches("refs/heads/release/1.0"));
        assert!(!p.matches("refs/heads/wip/x"));
        assert!(p.matches("refs/tags/v1.2"));
        assert!(!p.matches("refs/tags/latest"));
        assert!(!p.matches("refs/notes/commits"));
        let exact = RefPatterns::new(&["refs/heads/main"]).unwrap();
        assert!(exact.matches("refs/heads/main"));
        assert!(!exact.matches("refs/heads/main2"));
        let middle = RefPatterns::new(&["refs/heads/*/done"]).unwrap();
        assert!(middle.matches("refs/heads/a/b/done"));
        assert!(!middle.matches("refs/heads/a/b/done/x"));
    }

    #[test]
    fn refuses_bad_patterns() {
        assert!(RefPatterns::new(&["main"]).is_err());
        assert!(RefPatterns::new(&["!refs/heads/x"]).is_err());
        assert!(RefPatterns::new::<&str>(&[]).is_err());
        assert!(RefPatterns::new(&["refs/heads/a b"]).is_err());
    }
}
