//! A remote's refs as `git ls-remote` lists them ([`RemoteRefs`]) and as `git ls-remote
//! --symref` does ([`RemoteListing`]), read from git's bytes.

/// The refs a remote lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteRefs {
    /// Object id by ref name (peeled `^{}` entries left out).
    pub refs: std::collections::BTreeMap<String, String>,
    /// Refs whose names are not UTF-8, left out of `refs`: this program cannot name them
    /// to git exactly. Shown escaped for people, e.g. `refs/heads/caf\xe9`.
    pub skipped: Vec<String>,
}

impl RemoteRefs {
    /// Reads `git ls-remote` output: `ID<TAB>NAME` lines.
    pub(super) fn parse(stdout: &[u8]) -> RemoteRefs {
        let mut listing = RemoteRefs::default();
        for line in stdout.split(|b| *b == b'\n') {
            let Some(tab) = line.iter().position(|b| *b == b'\t') else {
                continue;
            };
            let (id, name) = (&line[..tab], &line[tab + 1..]);
            if name.ends_with(b"^{}") {
                continue;
            }
            match (std::str::from_utf8(id), std::str::from_utf8(name)) {
                (Ok(id), Ok(name)) => {
                    listing.refs.insert(name.to_owned(), id.to_owned());
                }
                (Ok(_), Err(_)) => listing.skipped.push(crate::text::printable_bytes(name)),
                // Not an id: not a ref line.
                (Err(_), _) => {}
            }
        }
        listing
    }
}

/// A remote's refs as `git ls-remote --symref` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteListing {
    /// Each ref's value (symbolic refs too, with their target's value), by name.
    pub refs: std::collections::BTreeMap<String, String>,
    /// The symbolic refs, name → target. Over protocol v0 git reports only HEAD's.
    pub symrefs: std::collections::BTreeMap<String, String>,
    /// Names that are not valid UTF-8, shown escaped: no command can name them.
    pub undecodable: Vec<String>,
}

/// Reads `git ls-remote --symref` output: `ref: TARGET<TAB>NAME` for a symbolic ref,
/// `ID<TAB>NAME` for every ref; peeled tags (`NAME^{}`) are left out.
pub(super) fn parse_symref_listing(stdout: &[u8]) -> RemoteListing {
    let mut listing = RemoteListing::default();
    for line in stdout.split(|b| *b == b'\n') {
        let Some(tab) = line.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let (left, name) = (&line[..tab], &line[tab + 1..]);
        if name.ends_with(b"^{}") {
            continue;
        }
        let (Ok(left), Ok(name)) = (std::str::from_utf8(left), std::str::from_utf8(name)) else {
            let shown = crate::text::printable_bytes(name);
            if !listing.undecodable.contains(&shown) {
                listing.undecodable.push(shown);
            }
            continue;
        };
        match left.strip_prefix("ref: ") {
            Some(target) => {
                listing.symrefs.insert(name.to_owned(), target.to_owned());
            }
            None => {
                listing.refs.insert(name.to_owned(), left.to_owned());
            }
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_keeps_names_that_are_not_utf8_apart() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let stdout = [
            format!("{a}\trefs/heads/main\n").as_bytes(),
            format!("{b}\trefs/heads/caf").as_bytes(),
            b"\xe9\n",
            format!("{a}\trefs/tags/v1\n{b}\trefs/tags/v1^{{}}\n").as_bytes(),
        ]
        .concat();
        let listing = RemoteRefs::parse(&stdout);
        assert_eq!(
            listing.refs.into_iter().collect::<Vec<_>>(),
            [
                ("refs/heads/main".to_owned(), a.clone()),
                ("refs/tags/v1".to_owned(), a)
            ]
        );
        assert_eq!(listing.skipped, [r"refs/heads/caf\xe9"]);
    }

    #[test]
    fn symrefs_and_undecodable_names_are_told_apart() {
        let a = "1".repeat(40);
        let text = format!(
            "ref: refs/heads/main\tHEAD\n{a}\tHEAD\nref: refs/heads/main\trefs/heads/current\n{a}\trefs/heads/current\n{a}\trefs/heads/main\n{a}\trefs/tags/v1\n{a}\trefs/tags/v1^{{}}\n"
        );
        let listing = parse_symref_listing(text.as_bytes());
        assert_eq!(
            listing.refs.keys().collect::<Vec<_>>(),
            [
                "HEAD",
                "refs/heads/current",
                "refs/heads/main",
                "refs/tags/v1"
            ]
        );
        assert_eq!(
            listing.symrefs.into_iter().collect::<Vec<_>>(),
            [
                ("HEAD".to_owned(), "refs/heads/main".to_owned()),
                (
                    "refs/heads/current".to_owned(),
                    "refs/heads/main".to_owned()
                )
            ]
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(format!("{a}\trefs/heads/caf").as_bytes());
        bytes.extend_from_slice(b"\xe9\n");
        assert_eq!(
            parse_symref_listing(&bytes).undecodable,
            ["refs/heads/caf\\xe9"]
        );
    }
}
