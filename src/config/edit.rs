//! Edits of `mirror.toml` by `git mirror add` / `remove`: the file's comments and layout
//! are kept (`toml_edit`), the result is checked as the hooks check it before anything
//! is written, and it replaces the old file atomically, with the old file's mode and owner.

use super::{Config, ConfigError, FILE_NAME};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

/// A mirror to add to `mirror.toml`. Unset fields are left out (their defaults apply).
#[derive(Debug, Clone)]
pub enum Addition {
    /// `[upstream]`.
    Upstream {
        url: String,
        refs: Vec<String>,
        auth: Option<String>,
        timeout: Option<String>,
        on_unreachable: Option<String>,
    },
    /// `[pull]` (without a url it pulls from the upstream's).
    Pull {
        url: Option<String>,
        interval: Option<String>,
        prune: Option<PruneSetting>,
    },
    /// One more `[[push]]`.
    Push {
        name: String,
        url: String,
        refs: Vec<String>,
        prune: Option<PruneSetting>,
        auth: Option<String>,
    },
}

/// `prune = true | false | "all"`, as given on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneSetting {
    True,
    False,
    All,
}

impl Addition {
    /// The name of the mirror it adds (`upstream`, `pull`, or the push mirror's).
    pub fn name(&self) -> &str {
        match self {
            Addition::Upstream { .. } => crate::state::UPSTREAM_RECORD,
            Addition::Pull { .. } => crate::state::PULL_RECORD,
            Addition::Push { name, .. } => name,
        }
    }
}

impl Addition {
    /// The URL it names, if any.
    fn url(&self) -> Option<&str> {
        match self {
            Addition::Upstream { url, .. } | Addition::Push { url, .. } => Some(url),
            Addition::Pull { url, .. } => url.as_deref(),
        }
    }
}

/// Held from reading mirror.toml to replacing it: two edits at once would each write
/// the file without the other's change.
fn lock(repo: &Path, path: &Path) -> Result<crate::lock::Lock, EditError> {
    crate::lock::Lock::acquire(&crate::state::mirror_dir(repo).join("mirror-toml.lock")).map_err(
        |e| EditError::Io {
            path: path.to_owned(),
            error: std::io::Error::other(format!("{e:#}")),
        },
    )
}

/// Why an edit was refused; the file was left as it was.
#[derive(Debug)]
pub enum EditError {
    /// The mirror to add is there already.
    Exists { path: PathBuf, name: String },
    /// The mirror to remove is not there; `names` are the ones that are.
    Missing {
        path: PathBuf,
        name: String,
        names: Vec<String>,
    },
    /// The file is invalid now (`before`), or would be after the edit.
    Invalid { error: ConfigError, before: bool },
    /// The file could not be read or written.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The URL carries a password: it would stand in mirror.toml, and it already stood
    /// on a command line.
    Password { url: String },
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Exists { path, name } => write!(
                f,
                "{}: the mirror {name:?} is there already; `git mirror remove {name}` first to replace it",
                path.display()
            ),
            EditError::Missing { path, name, names } => write!(
                f,
                "{}: there is no mirror named {name:?}; the mirrors are: {}",
                path.display(),
                if names.is_empty() {
                    "(none)".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            EditError::Invalid {
                error,
                before: true,
            } => write!(
                f,
                "{error}\n{} is invalid as it is: fix it first (`git mirror doctor` explains); nothing was changed",
                error.path.display()
            ),
            EditError::Invalid {
                error,
                before: false,
            } => write!(
                f,
                "the edit would make {} invalid, so nothing was changed: {}:{}: {}: {}",
                error.path.display(),
                error.line,
                error.column,
                error.key,
                error.message
            ),
            EditError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            EditError::Password { url } => write!(
                f,
                "{url} carries a password, which must stand neither in mirror.toml nor on a command line (other users see command lines); give the URL without it and name an [auth] table with --auth (username, and password_file or password_env); nothing was changed"
            ),
        }
    }
}

impl std::error::Error for EditError {}

/// Adds `addition` to `repo`'s mirror.toml (making the file when there is none); the
/// configuration it now holds.
pub fn add(repo: &Path, addition: &Addition) -> Result<Config, EditError> {
    let path = repo.join(FILE_NAME);
    if let Some(url) = addition.url() {
        if crate::url::RemoteUrl::parse(url, repo).is_ok_and(|u| u.has_embedded_password()) {
            return Err(EditError::Password {
                url: crate::url::mask_text(url),
            });
        }
    }
    let _edit = lock(repo, &path)?;
    let (mut doc, old) = open(repo, &path)?;
    if old.as_ref().is_some_and(|c| has_mirror(c, addition.name())) {
        return Err(EditError::Exists {
            path,
            name: addition.name().to_owned(),
        });
    }
    insert(&mut doc, addition);
    save(repo, &path, &doc)
}

/// Removes the mirror `name` (`upstream`, `pull`, or a push mirror's name) from `repo`'s
/// mirror.toml; the configuration it held before.
pub fn remove(repo: &Path, name: &str) -> Result<Config, EditError> {
    let path = repo.join(FILE_NAME);
    let _edit = lock(repo, &path)?;
    let (mut doc, old) = open(repo, &path)?;
    let names = old.as_ref().map(mirror_names).unwrap_or_default();
    let Some(old) = old.filter(|c| has_mirror(c, name)) else {
        return Err(EditError::Missing {
            path,
            name: name.to_owned(),
            names,
        });
    };
    let header = opening_comment(&mut doc);
    let root = doc.as_table_mut();
    if name == crate::state::UPSTREAM_RECORD || name == crate::state::PULL_RECORD {
        root.remove(name);
    } else if let Some(pushes) = root.get_mut("push").and_then(Item::as_array_of_tables_mut) {
        pushes.retain(|t| t.get("name").and_then(Item::as_str) != Some(name));
        if pushes.is_empty() {
            root.remove("push");
        }
    }
    if let Some(header) = header {
        keep_opening_comment(&mut doc, &header);
    }
    save(repo, &path, &doc)?;
    Ok(old)
}

/// Calls `f` on every section written in the file (`[table]`, `[[array]]` entry).
fn sections(table: &mut Table, f: &mut dyn FnMut(&mut Table)) {
    for (_, item) in table.iter_mut() {
        let tables: Vec<&mut Table> = match item {
            Item::Table(t) => vec![t],
            Item::ArrayOfTables(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for t in tables {
            if !t.is_implicit() {
                f(t);
            }
            sections(t, f);
        }
    }
}

fn first_position(doc: &mut DocumentMut) -> Option<isize> {
    let mut first: Option<isize> = None;
    sections(doc.as_table_mut(), &mut |t| {
        if let Some(p) = t.position() {
            first = Some(first.map_or(p, |f| f.min(p)));
        }
    });
    first
}

/// The file's opening comment: what comes before the first section up to its last blank
/// line (what follows is that section's own comment). It belongs to the file, not to
/// the section, and must outlive its removal.
fn opening_comment(doc: &mut DocumentMut) -> Option<String> {
    let first = first_position(doc)?;
    let mut header = None;
    sections(doc.as_table_mut(), &mut |t| {
        if t.position() == Some(first) {
            let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
            header = prefix.rfind("\n\n").map(|end| prefix[..end + 2].to_owned());
        }
    });
    header
}

/// Puts the opening comment back above whatever section comes first now.
fn keep_opening_comment(doc: &mut DocumentMut, header: &str) {
    let Some(first) = first_position(doc) else {
        // Its blank line separated it from a section that is gone.
        let header = header.strip_suffix('\n').unwrap_or(header);
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{header}{trailing}"));
        return;
    };
    sections(doc.as_table_mut(), &mut |t| {
        if t.position() == Some(first) {
            let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
            if !prefix.starts_with(header) {
                let prefix = format!("{header}{}", prefix.trim_start_matches('\n'));
                t.decor_mut().set_prefix(prefix);
            }
        }
    });
}

/// The names of a configuration's mirrors, in the order `list` shows them.
pub fn mirror_names(config: &Config) -> Vec<String> {
    config.remotes().iter().map(|r| r.name.to_owned()).collect()
}

fn has_mirror(config: &Config, name: &str) -> bool {
    config.remotes().iter().any(|r| r.name == name)
}

/// The file as a document, and as the hooks read it (`None`: there is no file yet).
fn open(repo: &Path, path: &Path) -> Result<(DocumentMut, Option<Config>), EditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((DocumentMut::new(), None));
        }
        Err(error) => {
            return Err(EditError::Io {
                path: path.to_owned(),
                error,
            })
        }
    };
    let invalid = |error| EditError::Invalid {
        error,
        before: true,
    };
    let config = Config::parse(&text, path, repo).map_err(invalid)?;
    // What the hooks accept, toml_edit parses: both follow the TOML spec.
    let doc = text.parse::<DocumentMut>().map_err(|e| {
        invalid(ConfigError {
            path: path.to_owned(),
            line: 0,
            column: 0,
            key: "file".to_owned(),
            message: e.message().to_owned(),
        })
    })?;
    Ok((doc, Some(config)))
}

/// Where a new section goes: before the `[auth.…]` tables (credentials come last), or
/// at the end when there are none.
fn position_before_auth(doc: &DocumentMut) -> Option<isize> {
    let auth = doc.get("auth")?.as_table()?;
    let first = auth
        .iter()
        .filter_map(|(_, item)| item.as_table()?.position())
        .chain(auth.position().filter(|_| !auth.is_implicit()))
        .min()?;
    // The file's opening comment belongs to its first section: a new one never goes
    // above it.
    let before = doc
        .iter()
        .filter(|(key, _)| *key != "auth")
        .flat_map(|(_, item)| match item {
            Item::Table(t) => vec![t.position()],
            Item::ArrayOfTables(a) => a.iter().map(Table::position).collect(),
            _ => Vec::new(),
        })
        .any(|p| p.is_some_and(|p| p < first));
    // Sections sort by position, and those with the same one in file order: the new
    // one follows the section before the first auth table.
    before.then_some(first - 1)
}

fn insert(doc: &mut DocumentMut, addition: &Addition) {
    let mut table = Table::new();
    // A file of comments only (install.sh's starter file) keeps them on top.
    if first_position(doc).is_none() {
        let comments = doc.trailing().as_str().unwrap_or("").to_owned();
        if !comments.trim().is_empty() {
            let gap = if comments.ends_with("\n\n") { "" } else { "\n" };
            table.decor_mut().set_prefix(format!("{comments}{gap}"));
            doc.set_trailing("");
        }
    }
    let has_push = doc.contains_key("push");
    if let Some(position) = position_before_auth(doc) {
        if !matches!(addition, Addition::Push { .. }) || !has_push {
            table.set_position(position);
        }
    }
    match addition {
        Addition::Upstream {
            url,
            refs,
            auth,
            timeout,
            on_unreachable,
        } => {
            table.insert("url", value(url.as_str()));
            set_refs(&mut table, refs);
            set(&mut table, "auth", auth);
            set(&mut table, "timeout", timeout);
            set(&mut table, "on_unreachable", on_unreachable);
            doc.insert(crate::state::UPSTREAM_RECORD, Item::Table(table));
        }
        Addition::Pull {
            url,
            interval,
            prune,
        } => {
            set(&mut table, "url", url);
            set(&mut table, "interval", interval);
            set_prune(&mut table, *prune);
            doc.insert(crate::state::PULL_RECORD, Item::Table(table));
        }
        Addition::Push {
            name,
            url,
            refs,
            prune,
            auth,
        } => {
            table.insert("name", value(name.as_str()));
            table.insert("url", value(url.as_str()));
            set_refs(&mut table, refs);
            set_prune(&mut table, *prune);
            set(&mut table, "auth", auth);
            let pushes = doc
                .entry("push")
                .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
            if let Some(pushes) = pushes.as_array_of_tables_mut() {
                pushes.push(table);
            }
        }
    }
}

fn set(table: &mut Table, key: &str, text: &Option<String>) {
    if let Some(text) = text {
        table.insert(key, value(text.as_str()));
    }
}

fn set_refs(table: &mut Table, refs: &[String]) {
    if !refs.is_empty() {
        table.insert("refs", value(refs.iter().collect::<Array>()));
    }
}

fn set_prune(table: &mut Table, prune: Option<PruneSetting>) {
    match prune {
        Some(PruneSetting::True) => table.insert("prune", value(true)),
        Some(PruneSetting::False) => table.insert("prune", value(false)),
        Some(PruneSetting::All) => table.insert("prune", value("all")),
        None => None,
    };
}

/// Checks the edited text as the hooks will read it, then replaces the file with it.
fn save(repo: &Path, path: &Path, doc: &DocumentMut) -> Result<Config, EditError> {
    let text = doc.to_string();
    let config = Config::parse(&text, path, repo).map_err(|error| EditError::Invalid {
        error,
        before: false,
    })?;
    replace(path, text.as_bytes()).map_err(|error| EditError::Io {
        path: path.to_owned(),
        error,
    })?;
    Ok(config)
}

/// Replaces `path` with `bytes` at once (a temporary file in the same directory, then a
/// rename): a hook reading it meanwhile sees the old file or the new one, never half.
/// The new file keeps the old one's mode and owner; a new file is 0644.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".mirror.toml.")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    let (mode, owner) = match std::fs::metadata(path) {
        Ok(old) => (old.mode() & 0o7777, Some((old.uid(), old.gid()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0o644, None),
        Err(e) => return Err(e),
    };
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        let mine = file.as_file().metadata()?;
        if (mine.uid(), mine.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(file.as_file(), Some(uid), Some(gid))?;
        }
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMENTED: &str = "# Mirrors of this repository.\n\n[upstream] # the authoritative copy\nurl = \"https://example.com/a.git\" # where pushes go\nrefs = [\"refs/heads/*\"]\n\n# GitHub copy\n[[push]]\nname = \"github\"\nurl = \"https://github.com/o/a.git\"\n\n# credentials\n[auth.gh]\nusername = \"x\"\npassword_env = \"GH\"\n";

    fn repo_with(text: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = text {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        }
        dir
    }

    fn read(dir: &tempfile::TempDir) -> String {
        std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap()
    }

    fn push(name: &str) -> Addition {
        Addition::Push {
            name: name.to_owned(),
            url: "https://gitlab.com/o/a.git".to_owned(),
            refs: vec!["refs/heads/*".to_owned()],
            prune: Some(PruneSetting::All),
            auth: Some("gh".to_owned()),
        }
    }

    #[test]
    fn a_push_mirror_goes_after_the_last_one_and_comes_out_again() {
        let dir = repo_with(Some(COMMENTED));
        let config = add(dir.path(), &push("gitlab")).unwrap();
        assert_eq!(mirror_names(&config), ["upstream", "github", "gitlab"]);
        let added = read(&dir);
        assert!(added.starts_with(&COMMENTED[..COMMENTED.find("# credentials").unwrap()]));
        assert!(added.contains("[[push]]\nname = \"gitlab\"\nurl = \"https://gitlab.com/o/a.git\"\nrefs = [\"refs/heads/*\"]\nprune = \"all\"\nauth = \"gh\"\n\n# credentials\n[auth.gh]"), "{added}");
        remove(dir.path(), "gitlab").unwrap();
        assert_eq!(read(&dir), COMMENTED);
    }

    #[test]
    fn the_opening_comment_outlives_the_first_section() {
        let dir = repo_with(Some(COMMENTED));
        remove(dir.path(), "upstream").unwrap();
        assert_eq!(
            read(&dir),
            COMMENTED.replace("[upstream] # the authoritative copy\nurl = \"https://example.com/a.git\" # where pushes go\nrefs = [\"refs/heads/*\"]\n\n", "")
        );
        remove(dir.path(), "github").unwrap();
        assert_eq!(
            read(&dir),
            "# Mirrors of this repository.\n\n# credentials\n[auth.gh]\nusername = \"x\"\npassword_env = \"GH\"\n"
        );
    }

    #[test]
    fn a_file_of_comments_only_keeps_them_on_top() {
        let starter = "# mirror.toml (starter)\n\n#[upstream]\n#url = \"…\"\n";
        let gitlab = "[[push]]\nname = \"gitlab\"\nurl = \"https://gitlab.com/o/a.git\"\nrefs = [\"refs/heads/*\"]\nprune = \"all\"\n";
        let mut plain = push("gitlab");
        if let Addition::Push { auth, .. } = &mut plain {
            *auth = None;
        }
        let dir = repo_with(Some(starter));
        add(dir.path(), &plain).unwrap();
        assert_eq!(read(&dir), format!("{starter}\n{gitlab}"));
        remove(dir.path(), "gitlab").unwrap();
        assert_eq!(read(&dir), starter);
    }

    #[test]
    fn what_exists_is_not_added_and_what_does_not_is_not_removed() {
        let dir = repo_with(Some(COMMENTED));
        let e = add(dir.path(), &push("github")).unwrap_err();
        assert!(matches!(e, EditError::Exists { .. }), "{e}");
        let e = remove(dir.path(), "gitlab").unwrap_err();
        assert!(
            e.to_string().ends_with("the mirrors are: upstream, github"),
            "{e}"
        );
        assert_eq!(read(&dir), COMMENTED);
    }

    #[test]
    fn an_edit_that_would_be_invalid_changes_nothing() {
        let dir = repo_with(Some(COMMENTED));
        let mut bad = push("gitlab");
        if let Addition::Push { auth, .. } = &mut bad {
            *auth = Some("nobody".to_owned());
        }
        let e = add(dir.path(), &bad).unwrap_err();
        assert!(matches!(e, EditError::Invalid { before: false, .. }), "{e}");
        assert!(e.to_string().contains("push"), "{e}");
        assert_eq!(read(&dir), COMMENTED);
    }

    #[test]
    fn a_new_section_goes_before_the_credentials_but_never_above_the_opening_comment() {
        let auth = "# creds\n[auth.gh]\nusername = \"x\"\npassword_env = \"T\"\n";
        let pull = "[pull]\nurl = \"https://example.com/a.git\"\n";
        let dir = repo_with(Some(&format!("# top\n\n{pull}\n{auth}")));
        add(dir.path(), &push("gitlab")).unwrap();
        let gitlab = "[[push]]\nname = \"gitlab\"\nurl = \"https://gitlab.com/o/a.git\"\nrefs = [\"refs/heads/*\"]\nprune = \"all\"\nauth = \"gh\"\n";
        assert_eq!(read(&dir), format!("# top\n\n{pull}\n{gitlab}\n{auth}"));
        let dir = repo_with(Some(&format!("# top\n\n{auth}")));
        add(dir.path(), &push("gitlab")).unwrap();
        assert_eq!(read(&dir), format!("# top\n\n{auth}\n{gitlab}"));
    }

    #[test]
    fn adding_to_no_file_makes_one() {
        let dir = repo_with(None);
        let pull = Addition::Pull {
            url: Some("https://example.com/a.git".to_owned()),
            interval: Some("5m".to_owned()),
            prune: Some(PruneSetting::True),
        };
        add(dir.path(), &pull).unwrap();
        assert_eq!(
            read(&dir),
            "[pull]\nurl = \"https://example.com/a.git\"\ninterval = \"5m\"\nprune = true\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
