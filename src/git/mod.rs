//! The one place that builds git command lines: [`Git`] bound to one repository, its
//! sanitised environment (no prompts, batch-mode ssh, safe transports) and its commands.

mod listing;
mod local;
mod output;
mod push;
mod run;
mod scratch;
mod stop;
mod streams;
mod transaction;

pub use listing::{RemoteListing, RemoteRefs};
pub use output::{Cause, GitError, Lasting, RunOutput};
pub use push::{can_push, LeasedUpdate, PushSettings, TooLong};
pub use stop::stop_git_on_termination;
pub use transaction::Prepared;

use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Transports git may use for any remote we talk to (`ext::` and friends are never
/// allowed, whatever a URL says).
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";
/// Variables a hook inherits from receive-pack that must not reach the git we run: the
/// quarantine path makes a push from inside the quarantine fail ("ref updates forbidden
/// inside quarantine environment"), and the others describe the incoming push, not ours.
pub(crate) const DROPPED_VARIABLES: [&str; 4] = [
    "GIT_QUARANTINE_PATH",
    "GIT_PROTOCOL",
    "GIT_PUSH_OPTION_COUNT",
    "GIT_PUSH_CERT",
];

/// What ssh always gets: never a prompt, strict host key checking, and a limit on how
/// long establishing the TCP connection may take.
pub const SSH_SAFE_OPTIONS: &str =
    "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=15";

/// The environment a git process needs to reach one remote (built by [`crate::auth`]
/// from mirror.toml; here so that running git needs nothing above it).
#[derive(Clone, Default)]
pub struct Access {
    pub(crate) env: Vec<(String, String)>,
    /// Variables of our own environment that hold a secret (`password_env`): no git we
    /// start inherits them; the one that needs the secret gets it through `env`.
    pub(crate) hidden: Vec<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: show names only.
        let names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Access({names:?})")
    }
}

impl Access {
    /// The variables to set on the git process, values included.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The variables of our own environment no git may inherit (they hold a secret).
    pub fn hidden(&self) -> impl Iterator<Item = &str> {
        self.hidden.iter().map(String::as_str)
    }
}

/// A git binary bound to one repository.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
    git_dir: PathBuf,
    /// What reaching the remote takes (credentials, ssh options); empty for local work.
    access: Access,
}

impl Git {
    /// Finds `git` on `PATH` (inside a hook, git has put its own exec path first, so
    /// this is the same git that runs receive-pack).
    pub fn new(git_dir: &Path) -> Result<Git> {
        let program = program()?;
        Ok(Git {
            program,
            git_dir: git_dir.to_owned(),
            access: Access::default(),
        })
    }

    /// The repository `start` is in (or is), as git finds it: `git rev-parse
    /// --absolute-git-dir` run there.
    pub fn discover(start: &Path) -> Result<PathBuf> {
        let program = program()?;
        let out = Command::new(program)
            .arg("-C")
            .arg(start)
            .args(["rev-parse", "--absolute-git-dir"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run git in {}", start.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "{} is not a git repository; give the path of a bare repository (e.g. /srv/git/project.git)",
                start.display()
            );
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        Ok(PathBuf::from(dir))
    }

    /// This git, set up to reach one remote with `access`.
    pub fn with_access(&self, access: Access) -> Git {
        Git {
            access,
            ..self.clone()
        }
    }

    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Where git looks for `hooks/NAME` in this repository, as git itself works it out
    /// (`git rev-parse --git-path`): `core.hooksPath` from every configuration scope,
    /// `git -c` and `~` included, a relative one taken from the repository.
    pub fn hook_path(&self, name: &str) -> Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let output = self
            .command(["rev-parse", "--git-path", &format!("hooks/{name}")])
            // A relative answer is relative to where git runs: the repository, where
            // hooks run too.
            .current_dir(&self.git_dir)
            .output()
            .context("cannot run git")?;
        if !output.status.success() {
            anyhow::bail!(
                "git rev-parse: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let path = output.stdout.strip_suffix(b"\n").unwrap_or(&output.stdout);
        Ok(self.git_dir.join(std::ffi::OsStr::from_bytes(path)))
    }

    /// A command for `git --git-dir=REPO ARGS…` with the sanitised environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(&self.program);
        let mut git_dir = OsString::from("--git-dir=");
        git_dir.push(&self.git_dir);
        cmd.arg(git_dir);
        cmd.args(args.into_iter().map(Into::into));
        remove_push_variables(&mut cmd, &DROPPED_VARIABLES);
        cmd.env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
            .env("GIT_SSH_COMMAND", format!("ssh {SSH_SAFE_OPTIONS}"))
            .env_remove("GIT_SSH")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_ASKPASS")
            .stdin(Stdio::null());
        for name in self.access.hidden() {
            cmd.env_remove(name);
        }
        cmd
    }

    /// [`Git::command`] for a git that talks to the remote (push, fetch, ls-remote): it
    /// alone gets what reaching the remote takes, the secret included, and runs with the
    /// repository's hooks off (a `reference-transaction` hook would inherit the secret;
    /// the only refs such a git writes are the pull's private ones). Local work
    /// (update-ref, gc) never sees a secret.
    fn remote_command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let hooks_off = ["-c", "core.hooksPath=/dev/null"];
        let mut cmd = self.command(hooks_off.into_iter().chain(args.iter().map(|a| a.as_ref())));
        cmd.envs(self.access.env());
        cmd
    }

    /// Runs git with `args` until it ends or `timeout` passes, handing each line of its
    /// stderr to `on_stderr` as it arrives. At the deadline the whole process group
    /// (git and the transports it started) is killed.
    pub fn run<S: AsRef<str>>(
        &self,
        args: &[S],
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        self.run_with_input(args, None, timeout, on_stderr)
    }

    /// [`Git::run`] with `input` written to git's standard input (then closed).
    pub fn run_with_input<S: AsRef<str>>(
        &self,
        args: &[S],
        input: Option<Vec<u8>>,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        let cmd = self.command(args.iter().map(|a| a.as_ref()));
        Ok(self.spawn(cmd, input, timeout, &mut |_| {}, on_stderr)?)
    }

    /// [`Git::run_with_input`] for a git that talks to the remote ([`Git::remote_command`]).
    fn run_remote<S: AsRef<str>>(
        &self,
        args: &[S],
        input: Option<Vec<u8>>,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        let cmd = self.remote_command(args);
        Ok(self.spawn(cmd, input, timeout, &mut |_| {}, on_stderr)?)
    }

    /// Runs git to completion within `timeout` and returns its output, stderr not relayed.
    pub fn output<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Result<RunOutput> {
        self.run(args, timeout, &mut |_| {})
    }
}

/// The `git` on PATH.
fn program() -> Result<PathBuf> {
    which::which("git").context("cannot find the `git` program on PATH; install git or fix PATH")
}

impl Git {
    /// Lists the refs of `url` (`git ls-remote`), limited to `names` when given (and
    /// few enough for a command line). A listing git could not hand over whole (see
    /// [`RunOutput::stdout_incomplete`]) is a failure: a partial list would make refs
    /// look deleted.
    pub fn ls_remote(
        &self,
        url: &crate::url::RemoteUrl,
        names: &[&str],
        timeout: Duration,
    ) -> Result<RemoteRefs, GitError> {
        let mut args = vec!["ls-remote".to_owned(), url.for_git()];
        if !names.is_empty() && names.len() <= 50 {
            args.extend(names.iter().map(|n| (*n).to_owned()));
        }
        let out = self.listing(&args, timeout)?;
        Ok(RemoteRefs::parse(&out.stdout))
    }

    /// Runs a git that lists a remote's refs; a listing git could not hand over whole
    /// is a failure.
    fn listing(&self, args: &[String], timeout: Duration) -> Result<RunOutput, GitError> {
        let cmd = self.remote_command(args);
        let out = self.spawn(cmd, None, timeout, &mut |_| {}, &mut |_| {})?;
        if !out.success() || out.stdout_incomplete {
            return Err(GitError::from_output(out, timeout));
        }
        Ok(out)
    }
}

impl Git {
    /// Asks `url`'s receiving side whether this client may push, pushing nothing: a
    /// dry-run deletion of a ref nobody has makes git connect to receive-pack and read
    /// its advertisement, the step where servers check write access (smart HTTP's
    /// `info/refs?service=git-receive-pack`, ssh's `git-receive-pack` command, git
    /// daemon's receive-pack service), then stop before sending anything.
    pub fn push_probe(
        &self,
        url: &crate::url::RemoteUrl,
        timeout: Duration,
    ) -> Result<(), GitError> {
        let args = [
            "push".to_owned(),
            "--dry-run".to_owned(),
            "--no-verify".to_owned(),
            "--porcelain".to_owned(),
            url.for_git(),
            ":refs/mirror-hooks/doctor-probe".to_owned(),
        ];
        let cmd = self.remote_command(&args);
        let out = self.spawn(cmd, None, timeout, &mut |_| {}, &mut |_| {})?;
        if out.success() && crate::porcelain::PushReport::parse(&out.stdout).reached {
            return Ok(());
        }
        Err(GitError::from_output(out, timeout))
    }
}

impl Git {
    /// Lists every ref of `url` and which of them are symbolic (`git ls-remote --symref`).
    pub fn ls_remote_symrefs(
        &self,
        url: &crate::url::RemoteUrl,
        timeout: Duration,
    ) -> Result<RemoteListing, GitError> {
        let args = ["ls-remote".to_owned(), "--symref".to_owned(), url.for_git()];
        let out = self.listing(&args, timeout)?;
        Ok(listing::parse_symref_listing(&out.stdout))
    }
}

impl Git {
    /// Fetches `refspecs` (`(remote ref, local ref)` pairs, forced) from `url` into this
    /// repository: no tags followed, no FETCH_HEAD, no submodules, no pruning, only the
    /// refs asked for. The refspecs go on standard input, so any number fits.
    pub fn fetch(
        &self,
        url: &crate::url::RemoteUrl,
        refspecs: &[(String, String)],
        timeout: Duration,
    ) -> Result<RunOutput> {
        self.fetch_noting(url, refspecs, timeout, &mut |_| {})
    }

    /// [`Git::fetch`], telling `on_start` the pid of git once it runs.
    pub fn fetch_noting(
        &self,
        url: &crate::url::RemoteUrl,
        refspecs: &[(String, String)],
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
    ) -> Result<RunOutput> {
        let input: String = refspecs
            .iter()
            .map(|(src, dst)| format!("+{src}:{dst}\n"))
            .collect();
        self.fetch_stdin(url, input, timeout, on_start)
    }

    /// Fetches the objects `ids` (and all they reach) from `url` into this repository,
    /// writing no ref at all (and no FETCH_HEAD), with [`Git::fetch`]'s safety flags.
    /// The ids go on standard input, so any number fits. Objects already here with
    /// their whole history are not transferred again.
    pub fn fetch_objects(
        &self,
        url: &crate::url::RemoteUrl,
        ids: &[&str],
        timeout: Duration,
    ) -> Result<IdFetch> {
        let input: String = ids.iter().map(|id| format!("{id}\n")).collect();
        let out = self.fetch_stdin(url, input, timeout, &mut |_| {})?;
        Ok(if !out.success() && refused_by_id(&out, ids) {
            IdFetch::Refused(out)
        } else {
            IdFetch::Ran(out)
        })
    }

    /// `git fetch --stdin URL` with `input` (refspecs, one a line) and every setting
    /// that would make git fetch more than asked (tags, submodules, pruning) or write
    /// more than the refs asked for (FETCH_HEAD, commit-graph, maintenance) turned off.
    fn fetch_stdin(
        &self,
        url: &crate::url::RemoteUrl,
        input: String,
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
    ) -> Result<RunOutput> {
        let url = url.for_git();
        let args = [
            "-c",
            "fetch.prune=false",
            "-c",
            "fetch.pruneTags=false",
            "-c",
            "fetch.recurseSubmodules=no",
            "-c",
            "fetch.writeCommitGraph=false",
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-show-forced-updates",
            // Housekeeping must not inherit the remote's credentials: the pull runs it
            // afterwards, as local work, which gets none.
            "--no-auto-maintenance",
            "--quiet",
            "--stdin",
            &url,
        ];
        let cmd = self.remote_command(&args);
        Ok(self.spawn(
            cmd,
            Some(input.into_bytes()),
            timeout,
            on_start,
            &mut |_| {},
        )?)
    }

    /// Applies `commands` (`update-ref --stdin` lines: `update REF NEW OLD`, `create REF
    /// NEW`, `delete REF OLD`) as one transaction: all of them or none, each checked
    /// against the old value given.
    pub fn update_refs(
        &self,
        commands: &[String],
        message: &str,
        timeout: Duration,
    ) -> Result<RunOutput> {
        self.update_refs_noting(commands, message, timeout, &mut |_| {})
    }

    /// [`Git::update_refs`], telling `on_start` the pid of git once it runs.
    pub fn update_refs_noting(
        &self,
        commands: &[String],
        message: &str,
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
    ) -> Result<RunOutput> {
        let mut input = String::from("start\n");
        for c in commands {
            input.push_str(c);
            input.push('\n');
        }
        input.push_str("prepare\ncommit\n");
        let args = ["update-ref", "-m", message, "--stdin"];
        let cmd = self.command(args);
        Ok(self.spawn(
            cmd,
            Some(input.into_bytes()),
            timeout,
            on_start,
            &mut |_| {},
        )?)
    }
}

/// What a fetch by object id ([`Git::fetch_objects`]) came to.
#[derive(Debug)]
pub enum IdFetch {
    /// git ran: it fetched the objects, or failed as its output says.
    Ran(RunOutput),
    /// The server does not hand out objects by id that it does not advertise as a ref
    /// tip (protocol v0 without `uploadpack.allowTipSHA1InWant`,
    /// `allowReachableSHA1InWant` or `allowAnySHA1InWant`, asked for a tip that moved
    /// since it was listed), or no longer has one: a fetch by ref name still works.
    /// Nothing was written.
    Refused(RunOutput),
}

/// True when git's fetch by id failed because the server would not serve an id asked
/// for: git's own refusal under protocol v0, or upload-pack's under v2 (an id it does
/// not have any more); or because git did not take one of `ids` for an object id at
/// all (an id of the other object format, looked for as a ref name): a fetch by name
/// then says what is wrong.
fn refused_by_id(out: &RunOutput, ids: &[&str]) -> bool {
    const SIGNS: [&str; 2] = [
        "Server does not allow request for unadvertised object",
        "upload-pack: not our ref",
    ];
    out.stderr.lines().any(|line| {
        SIGNS.iter().any(|sign| line.contains(sign))
            || line
                .strip_prefix("fatal: couldn't find remote ref ")
                .is_some_and(|name| ids.contains(&name.trim_end()))
    })
}

/// Removes from `cmd`'s environment the inherited variables in `names` and every
/// `GIT_PUSH_OPTION_<n>`: they describe the push being received, not the child's work.
pub fn remove_push_variables(cmd: &mut Command, names: &[&str]) {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if names.contains(&text.as_ref()) || text.starts_with("GIT_PUSH_OPTION_") {
            cmd.env_remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn failed(stderr: &str) -> RunOutput {
        RunOutput {
            status: Some(std::process::ExitStatus::from_raw(128 << 8)),
            timed_out: false,
            stdout: Vec::new(),
            stdout_incomplete: false,
            stderr: stderr.to_owned(),
        }
    }

    #[test]
    fn a_server_refusing_an_id_is_told_from_other_fetch_failures() {
        // git 2.47: protocol v0 (git's own refusal), then v2 (upload-pack's).
        let v0 = "error: Server does not allow request for unadvertised object ee7f026fed4317041869b099528a640db197c2aa";
        let v2 = "fatal: remote error: upload-pack: not our ref 1234567890123456789012345678901234567890";
        let ids = ["5fbda948404212f56fd2aa09911d74d6f478aa682694b262d01f91753d188ad8"];
        assert!(refused_by_id(&failed(v0), &ids));
        assert!(refused_by_id(&failed(v2), &ids));
        // A SHA-256 id asked of a SHA-1 repository's git: taken for a ref name.
        let other_format = format!("fatal: couldn't find remote ref {}", ids[0]);
        assert!(refused_by_id(&failed(&other_format), &ids));
        assert!(!refused_by_id(
            &failed("fatal: couldn't find remote ref refs/heads/x"),
            &ids
        ));
        assert!(!refused_by_id(
            &failed("fatal: unable to access 'https://h/p.git/': Could not resolve host: h"),
            &ids
        ));
    }
}
