//! Root working on another user's repository: `git-mirror` first becomes the repository's
//! owner (supplementary groups, gid, uid, HOME), so git's `safe.directory` check passes
//! and nothing it writes there (locks, state, log, queue, keys) ends up owned by root.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A user from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Why root could not become the owner; each says the command to run instead.
#[derive(Debug)]
pub enum OwnerError {
    /// The owner's uid has no entry in the password database.
    UnknownUser {
        path: String,
        uid: u32,
        instead: String,
    },
    /// initgroups, setgid or setuid failed.
    Switch {
        path: String,
        user: String,
        why: std::io::Error,
        instead: String,
    },
}

impl std::fmt::Display for OwnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerError::UnknownUser { path, uid, instead } => write!(
                f,
                "{path} belongs to uid {uid}, which has no entry in the password database, so git-mirror cannot act as its owner; run it as that user instead: {instead}"
            ),
            OwnerError::Switch { path, user, why, instead } => write!(
                f,
                "{path} belongs to {user}, and git-mirror could not become that user ({why}); run it as {user} instead: {instead}"
            ),
        }
    }
}

impl std::error::Error for OwnerError {}

/// The owner of `repo` when this process runs as root and `repo` belongs to another
/// user (whom it should become before touching the repository); `None` otherwise,
/// also when `repo` does not exist (the caller's own lookup then says so).
pub fn foreign_owner(repo: &Path) -> Option<u32> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let uid = std::fs::metadata(repo).ok()?.uid();
    (uid != 0).then_some(uid)
}

/// Becomes the owner of `repo` if this process runs as root and `repo` belongs to
/// another user: initgroups, setgid, setuid, then HOME, USER and LOGNAME of that user.
/// Returns the user it became. `args` (this command line) make the command a refusal
/// tells to run instead. Call it before any thread is started: credentials and the
/// environment are per process.
pub fn become_owner_of(repo: &Path, args: &[OsString]) -> Result<Option<User>, OwnerError> {
    let Some(uid) = foreign_owner(repo) else {
        return Ok(None);
    };
    let path = repo.display().to_string();
    let Some(user) = lookup(uid) else {
        let gid = std::fs::metadata(repo).map(|m| m.gid()).unwrap_or(uid);
        return Err(OwnerError::UnknownUser {
            path,
            uid,
            instead: format!(
                "setpriv --reuid={uid} --regid={gid} --clear-groups {}",
                shell_words(args)
            ),
        });
    };
    if let Err(why) = switch_to(&user) {
        return Err(OwnerError::Switch {
            instead: format!("sudo -u {} -H {}", user.name, shell_words(args)),
            path,
            user: user.name,
            why,
        });
    }
    // Git and ssh read the user's configuration from HOME; root's is not theirs to read.
    std::env::set_var("HOME", &user.home);
    std::env::set_var("USER", &user.name);
    std::env::set_var("LOGNAME", &user.name);
    std::env::remove_var("XDG_CONFIG_HOME");
    Ok(Some(user))
}

/// What of root's environment the owner's run keeps: enough to find programs and speak
/// the locale, and the variables its own mirror.toml names (`password_env`). Everything
/// else (tokens in a cron or systemd environment, `SSH_AUTH_SOCK`, root's `GIT_CONFIG_*`)
/// would reach code the owner controls, such as the repository's hooks.
pub fn scrub_environment(keep: &[String]) {
    const KEPT: [&str; 6] = ["PATH", "LANG", "LANGUAGE", "TZ", "TERM", "GIT_DIR"];
    const SET_BY_US: [&str; 3] = ["HOME", "USER", "LOGNAME"];
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        let kept = KEPT.contains(&text.as_ref())
            || SET_BY_US.contains(&text.as_ref())
            || text.starts_with("LC_")
            || keep.iter().any(|k| *k == text);
        if !kept {
            std::env::remove_var(&name);
        }
    }
}

/// Groups first, uid last: once the uid is dropped, nothing else may be changed.
fn switch_to(user: &User) -> std::io::Result<()> {
    let name = CString::new(user.name.as_bytes())
        .map_err(|_| std::io::Error::other("the user name holds a NUL byte"))?;
    // SAFETY: plain system calls on values we own; `name` outlives the call.
    unsafe {
        if libc::initgroups(name.as_ptr(), user.gid) != 0
            || libc::setgid(user.gid) != 0
            || libc::setuid(user.uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::geteuid() != user.uid || libc::getegid() != user.gid {
            return Err(std::io::Error::other("the credentials did not change"));
        }
    }
    Ok(())
}

/// The password database's entry for `uid` (getpwuid_r, so no static buffer is shared).
pub fn lookup(uid: u32) -> Option<User> {
    let mut size = 1024;
    loop {
        let mut buffer = vec![0u8; size];
        // SAFETY: a zeroed passwd is a valid value of this plain C struct.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to memory we own, sized as passed; the strings
        // getpwuid_r fills `entry` with point into `buffer`, which outlives their use.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: on success the name and home fields are NUL-terminated strings in
        // `buffer` (or static), valid until `buffer` is dropped at the end of this scope.
        let (name, home) = unsafe {
            (
                CStr::from_ptr(entry.pw_name).to_str().ok()?.to_owned(),
                PathBuf::from(std::ffi::OsStr::from_bytes(
                    CStr::from_ptr(entry.pw_dir).to_bytes(),
                )),
            )
        };
        return Some(User {
            name,
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home,
        });
    }
}

/// `args` as one line a shell reads back as the same words: plain words as they are, others single-quoted.
pub fn shell_words(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
            if plain {
                a.into_owned()
            } else {
                crate::text::shell_quote(&a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_password_database() {
        let root = lookup(0).expect("uid 0 has an entry");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(!root.name.is_empty());
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args: Vec<OsString> = ["git-mirror", "pull", "--now", "/srv/git/it's here.git"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            shell_words(&args),
            r"git-mirror pull --now '/srv/git/it'\''s here.git'"
        );
    }
}
