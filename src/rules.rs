//! Local rules: what receive-pack checks only after pre-receive — its `receive.deny*`
//! settings and the repository's own `update` hook, where access-control layers (gitolite,
//! site policy hooks) enforce per-branch rules — checked before anything is forwarded, so
//! the upstream never takes what this side would then refuse. Every forwarding mode uses it.

use crate::git::Git;
use crate::hookenv::Quarantine;
use crate::refs::{self, RefUpdate, UpdateKind};
use crate::repo::Repo;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Why a push was refused before anything was forwarded.
#[derive(Debug)]
pub enum Refusal {
    /// A `receive.*` setting of this repository refuses a ref (`why` names it).
    Setting { why: String },
    /// The `update` hook refused these refs (in push order).
    UpdateHook(Vec<HookRefusal>),
    /// The rules could not be checked, so the push is refused (fail closed).
    Unchecked(String),
}

/// One ref the `update` hook refused, and how the hook ended.
#[derive(Debug)]
pub struct HookRefusal {
    pub name: String,
    pub ended: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Setting { why } => f.write_str(why),
            Refusal::UpdateHook(refused) => {
                let each: Vec<String> = refused
                    .iter()
                    .map(|r| format!("{} ({})", r.name, r.ended))
                    .collect();
                write!(f, "the update hook refused {}", enumerate(&each))
            }
            Refusal::Unchecked(why) => f.write_str(why),
        }
    }
}

/// Checks `updates` (a whole push, in git's order) against this repository's local rules,
/// as receive-pack will after pre-receive: its `receive.deny*` settings, then its `update`
/// hook once per ref. On a refusal the pusher is told which ref and why through `out`; the
/// hook's own output reaches our stderr (the pusher) directly, as receive-pack relays it.
/// `quarantine` (the hook's) lets it see the pushed commits.
pub fn check(
    repo: &Path,
    quarantine: Option<&Quarantine>,
    updates: &[RefUpdate],
    out: &mut dyn FnMut(&str),
) -> Result<(), Refusal> {
    let checked = check_symbolic(repo, updates)
        .and_then(|()| check_current_branch(repo, updates))
        .and_then(|()| check_settings(repo, quarantine, updates))
        .and_then(|()| run_update_hook(repo, updates));
    match &checked {
        Ok(()) => {}
        Err(refusal @ Refusal::UpdateHook(refused)) => {
            out(&format!(
                "mirror-hooks: push refused: {refusal}; nothing was forwarded to the upstream or changed here."
            ));
            let refused: std::collections::HashSet<&str> =
                refused.iter().map(|r| r.name.as_str()).collect();
            let others: Vec<&str> = updates
                .iter()
                .map(|u| u.name.as_str())
                .filter(|name| !refused.contains(name))
                .collect();
            if !others.is_empty() {
                out(&format!(
                    "mirror-hooks: a push is taken whole or not at all, so {} {} not applied either.",
                    enumerate(&others),
                    if others.len() == 1 { "was" } else { "were" }
                ));
            }
        }
        Err(refusal) => {
            out(&format!("mirror-hooks: push refused: {refusal}"));
            out("mirror-hooks: nothing was forwarded to the upstream or changed here.");
        }
    }
    checked
}

/// A push to a symbolic ref here (`refs/heads/alias` → `refs/heads/main`) would move
/// its target, which the allowlist and the upstream know under another name: refused,
/// naming the ref to push instead. Symbolic refs are always loose files (`ref: …`).
fn check_symbolic(repo: &Path, updates: &[RefUpdate]) -> Result<(), Refusal> {
    for update in updates {
        let Ok(text) = std::fs::read(repo.join(&update.name)) else {
            continue;
        };
        if let Some(target) = text.strip_prefix(b"ref: ") {
            let target = String::from_utf8_lossy(target).trim_end().to_owned();
            return Err(Refusal::Setting {
                why: format!(
                    "{} is a symbolic ref here (to {target}); push to {target} itself.",
                    update.name
                ),
            });
        }
    }
    Ok(())
}

/// In a repository with a work tree, git refuses to update the branch checked out there
/// (`receive.denyCurrentBranch`, unless `ignore` or `warn`): it would leave the work tree
/// behind. Checked only for a push to the branch `HEAD` names.
fn check_current_branch(repo: &Path, updates: &[RefUpdate]) -> Result<(), Refusal> {
    let head = std::fs::read_to_string(repo.join("HEAD")).unwrap_or_default();
    let Some(branch) = head.strip_prefix("ref: ").map(str::trim_end) else {
        return Ok(());
    };
    if !updates.iter().any(|u| u.name == branch) {
        return Ok(());
    }
    let view = Repo::open(repo).map_err(|e| Refusal::Unchecked(format!("{e:#}")))?;
    if view.is_bare() {
        return Ok(());
    }
    let setting = view
        .config_string("receive.denyCurrentBranch")
        .map(|v| v.to_ascii_lowercase());
    if matches!(
        setting.as_deref(),
        Some("ignore" | "warn" | "false" | "no" | "off" | "0")
    ) {
        return Ok(());
    }
    Err(Refusal::Setting {
        why: format!(
            "{branch} is checked out in this repository's work tree, and git refuses to update it (receive.denyCurrentBranch); push to another branch."
        ),
    })
}

/// Git checks `receive.denyDeletes` and `receive.denyNonFastForwards` only after
/// pre-receive; checking them first keeps the upstream from taking what this side
/// would then refuse.
fn check_settings(
    repo: &Path,
    quarantine: Option<&Quarantine>,
    updates: &[RefUpdate],
) -> Result<(), Refusal> {
    let branches = || updates.iter().filter(|u| u.name.starts_with("refs/heads/"));
    if !branches().any(|u| u.kind() != UpdateKind::Create) {
        return Ok(());
    }
    let repo =
        Repo::open_with(repo, quarantine).map_err(|e| Refusal::Unchecked(format!("{e:#}")))?;
    let deny_deletes = repo.config_bool("receive.denyDeletes").unwrap_or(false);
    // Git refuses deleting the branch HEAD points to unless told to ignore or warn.
    let deny_delete_current = !matches!(
        repo.config_string("receive.denyDeleteCurrent")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("ignore" | "warn" | "false" | "no" | "off" | "0")
    );
    let head = repo.head_ref();
    let deny_non_ff = repo
        .config_bool("receive.denyNonFastForwards")
        .unwrap_or(false);
    let refuse = |why: String| Refusal::Setting { why };
    for update in branches() {
        match update.kind() {
            UpdateKind::Delete if deny_deletes => {
                return Err(refuse(format!(
                    "deleting {} is not allowed in this repository (receive.denyDeletes).",
                    update.name
                )));
            }
            UpdateKind::Delete
                if deny_delete_current && head.as_deref() == Some(update.name.as_str()) =>
            {
                return Err(refuse(format!(
                    "{} is this repository's default branch (HEAD), and git refuses to delete it (receive.denyDeleteCurrent). Ask a server administrator to change HEAD first.",
                    update.name
                )));
            }
            UpdateKind::Update if deny_non_ff => {
                let fast_forward = repo
                    .is_ancestor(&update.old, &update.new)
                    .map_err(|e| Refusal::Unchecked(format!("{}: {e:#}", update.name)))?;
                if !fast_forward {
                    return Err(refuse(format!(
                        "{} would lose commits: {}..{} is not a fast-forward, and this repository refuses those (receive.denyNonFastForwards). Fetch, rebase or merge, and push again.",
                        update.name,
                        refs::short(&update.old),
                        refs::short(&update.new)
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs the repository's `update` hook for every ref of the push, as receive-pack does:
/// arguments `REF OLD NEW`, no standard input, in the repository, with the environment we
/// were given (quarantine, push options, an access-control layer's `GL_USER` …), its
/// standard output sent to standard error. Every ref is run, so the pusher learns each
/// ref refused, not only the first.
fn run_update_hook(repo: &Path, updates: &[RefUpdate]) -> Result<(), Refusal> {
    let Some(hook) = find_hook(repo, "update")? else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for update in updates {
        let status = run_hook(repo, &hook, update).map_err(|e| {
            Refusal::Unchecked(format!(
                "cannot run the update hook {} for {}: {e}.",
                hook.display(),
                update.name
            ))
        })?;
        if !status.success() {
            refused.push(HookRefusal {
                name: update.name.clone(),
                ended: describe_status(status),
            });
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Refusal::UpdateHook(refused))
    }
}

/// The hook `name` as git finds it: `git rev-parse --git-path hooks/NAME` applies
/// `core.hooksPath` from every configuration scope (`git -c` included); a relative path is
/// relative to the repository, where hooks run. Like git, a hook that does not exist or
/// may not be executed is no hook.
fn find_hook(repo: &Path, name: &str) -> Result<Option<PathBuf>, Refusal> {
    let unchecked = |why: String| {
        Refusal::Unchecked(format!(
            "cannot find this repository's {name} hook ({why}), so its rules cannot be checked."
        ))
    };
    let path = Git::new(repo)
        .and_then(|git| git.hook_path(name))
        .map_err(|e| unchecked(format!("{e:#}")))?;
    Ok(executable(&path).then_some(path))
}

/// access(2) with X_OK, the test git makes before running a hook.
fn executable(path: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated string, which outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

fn run_hook(repo: &Path, hook: &Path, update: &RefUpdate) -> std::io::Result<ExitStatus> {
    let command = |program: &OsStr| -> std::io::Result<Command> {
        use std::os::fd::AsFd;
        // receive-pack sends the hook's standard output to standard error (the pusher);
        // our own standard output may be a protocol (proc-receive), never the hook's.
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        let mut cmd = Command::new(program);
        // Git hands push options to pre-receive and post-receive only.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIT_PUSH_OPTION") {
                cmd.env_remove(name);
            }
        }
        cmd.current_dir(repo)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr));
        Ok(cmd)
    };
    let args = [&update.name, &update.old, &update.new];
    match command(hook.as_os_str())?.args(args).status() {
        // Git runs a hook that is not a binary and has no `#!` line with the shell.
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => command(OsStr::new("/bin/sh"))?
            .arg(hook)
            .args(args)
            .status(),
        other => other,
    }
}

/// How a process ended, for messages: `exit status 1`, `killed by signal 9`.
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "failed".to_owned(),
    }
}

/// How many refs a message names before it only counts the rest: a push of thousands of
/// tags must not become a line of thousands of names.
const NAMED: usize = 5;

/// `a`, `a and b`, `a, b and c`; past [`NAMED`] items, `a, b, c, d, e and 7 more`.
fn enumerate<S: AsRef<str>>(items: &[S]) -> String {
    let names: Vec<&str> = items.iter().take(NAMED).map(AsRef::as_ref).collect();
    match (names.as_slice(), items.len().saturating_sub(NAMED)) {
        ([], _) => String::new(),
        ([one], 0) => (*one).to_owned(),
        ([rest @ .., last], 0) => format!("{} and {last}", rest.join(", ")),
        (all, more) => format!("{} and {more} more", all.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(enumerate::<&str>(&[]), "");
        assert_eq!(enumerate(&["a"]), "a");
        assert_eq!(enumerate(&["a", "b"]), "a and b");
        assert_eq!(enumerate(&["a", "b", "c"]), "a, b and c");
        let many: Vec<String> = (1..=12).map(|n| format!("refs/tags/v{n}")).collect();
        assert_eq!(
            enumerate(&many),
            "refs/tags/v1, refs/tags/v2, refs/tags/v3, refs/tags/v4, refs/tags/v5 and 7 more"
        );
    }

    #[test]
    fn a_hook_refusal_names_each_ref() {
        let refusal = Refusal::UpdateHook(vec![
            HookRefusal {
                name: "refs/heads/main".into(),
                ended: "exit status 1".into(),
            },
            HookRefusal {
                name: "refs/tags/v1".into(),
                ended: "killed by signal 9".into(),
            },
        ]);
        assert_eq!(
            refusal.to_string(),
            "the update hook refused refs/heads/main (exit status 1) and refs/tags/v1 (killed by signal 9)"
        );
    }
}
