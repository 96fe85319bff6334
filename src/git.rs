//! The one place that runs the `git` binary: finds it once, gives it an explicit
//! `--git-dir`, a null stdin, a sanitised environment (no terminal prompts, batch-mode
//! ssh, only safe transports), its own process group and a deadline; and passes a
//! SIGTERM of ours on to it as SIGTERM, so that it removes its lock files.

use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Transports git may use for any remote we talk to (`ext::` and friends are never
/// allowed, whatever a URL says).
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";
/// Variables a hook inherits from receive-pack that must not reach the git we run: the
/// quarantine path makes a push from inside the quarantine fail ("ref updates forbidden
/// inside quarantine environment"), and the others describe the incoming push, not ours.
const DROPPED_VARIABLES: [&str; 4] = [
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

/// What a finished (or killed) git process left behind.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// `None` when the process did not report an exit status (it was killed at the
    /// deadline and could not be reaped).
    pub status: Option<ExitStatus>,
    /// True when the deadline passed and the process group was killed.
    pub timed_out: bool,
    /// Standard output as git wrote it, bytes (a ref name need not be UTF-8), each line
    /// kept ending in `\n`.
    pub stdout: Vec<u8>,
    /// Some of stdout was left out: a line longer than git's protocol can carry, or more
    /// than [`STDOUT_LIMIT`] in all. What stdout lists is then not the whole list.
    pub stdout_incomplete: bool,
    /// Standard error for people: printable ([`crate::text`]) and bounded (see
    /// [`STDERR_LINE_LIMIT`] and [`STDERR_LIMIT`]), with where it was cut said.
    pub stderr: String,
}

/// A failure people meet often when mirroring (GitLab's troubleshooting page lists
/// them), recognised by what git or ssh print.
struct Diagnosis {
    signs: &'static [&'static str],
    /// Retrying cannot fix it (a person must act): why, in a few words.
    lasting: Option<&'static str>,
    /// What it means and what to do.
    advice: &'static str,
}

/// In order: the first that matches wins (a changed host key also prints "Host key
/// verification failed"; a refused ssh key also "does not appear to be a git repository").
const DIAGNOSES: &[Diagnosis] = &[
    Diagnosis {
        signs: &["REMOTE HOST IDENTIFICATION HAS CHANGED"],
        lasting: Some("SSH host key changed"),
        advice: "the server's SSH host key is not the one trusted in known_hosts (the server was reinstalled, or someone is in between); compare its fingerprints (`git mirror host-keys URL`) with what its administrator publishes, and if they match, re-trust it with `git mirror host-keys --trust URL`",
    },
    Diagnosis {
        signs: &["Host key verification failed"],
        lasting: Some("SSH host key not trusted"),
        advice: "the server's SSH host key is not trusted yet; check its fingerprints with `git mirror host-keys URL`, then trust it with `git mirror host-keys --trust URL`",
    },
    Diagnosis {
        signs: &["Permission denied ("],
        lasting: Some("authentication refused"),
        advice: "the SSH server refused the key; add the public key (`git mirror keygen` prints it) to the remote repository as a deploy key, with write access where this server pushes",
    },
    Diagnosis {
        signs: &["terminal prompts disabled", "could not read Username", "could not read Password"],
        lasting: Some("authentication required"),
        advice: "the remote asks for a user name and password and none is configured; add an [auth] table with username and password_file or password_env",
    },
    Diagnosis {
        signs: &["Authentication failed", "HTTP Basic: Access denied", "returned error: 401"],
        lasting: Some("authentication refused"),
        advice: "the remote refused the user name and password; check them in the [auth] table (a token may have expired or lack the scope)",
    },
    Diagnosis {
        signs: &["returned error: 403"],
        lasting: Some("access denied"),
        advice: "the remote denied access (HTTP 403): these credentials may not read, or push to, this repository",
    },
    Diagnosis {
        signs: &["did you run git update-server-info"],
        lasting: Some("dumb HTTP server"),
        advice: "the server speaks only git's old \"dumb\" HTTP protocol, which cannot take pushes; serve the repository with git http-backend (smart HTTP)",
    },
    Diagnosis {
        signs: &["returned error: 301", "returned error: 302", "returned error: 308"],
        lasting: Some("redirected"),
        advice: "the server redirects this URL; use the address it redirects to (often the same URL ending in .git)",
    },
    Diagnosis {
        signs: &["Repository not found", "returned error: 404", "does not appear to be a git repository", "' not found", "No such repository"],
        lasting: Some("repository not found"),
        advice: "there is no repository at this URL (or these credentials may not see it); check the URL",
    },
    Diagnosis {
        signs: &["mismatched algorithms", "does not support this repository's hash algorithm"],
        lasting: Some("object formats differ"),
        advice: "this repository and the remote use different object formats (SHA-1 and SHA-256), which git cannot transfer between; mirror only between repositories made with the same `git init --object-format`",
    },
    Diagnosis {
        signs: &["SSL certificate problem", "server certificate verification failed"],
        lasting: Some("TLS certificate problem"),
        advice: "the server's TLS certificate is not trusted here; install its CA certificate in the system's store (or set http.sslCAInfo)",
    },
    Diagnosis {
        signs: &["Connection refused"],
        lasting: None,
        advice: "nothing answers at that host and port (connection refused): is the server up, and the port right?",
    },
    Diagnosis {
        signs: &["Could not resolve host", "Name or service not known", "Temporary failure in name resolution"],
        lasting: None,
        advice: "the host name does not resolve (DNS); check the URL, or the server's DNS",
    },
    Diagnosis {
        signs: &["Connection timed out", "Operation timed out", "No route to host", "Network is unreachable"],
        lasting: None,
        advice: "the server cannot be reached over the network (timed out or no route): a firewall, or the server is down",
    },
];

/// Why running git did not give what was asked: it could not start, it ran out of
/// time, or it failed, with the cause classified once (see [`Cause`]). Shown as
/// [`RunOutput::complaint`] says it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The git program could not be started.
    #[error("cannot start {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The deadline passed and git (with its transport) was stopped.
    #[error("{}", output.complaint())]
    TimedOut { after: Duration, output: RunOutput },
    /// git ended without doing what was asked (or its answer could not be used whole).
    #[error("{}", output.complaint())]
    Failed { cause: Cause, output: RunOutput },
}

impl GitError {
    /// The error of a git run that did not succeed: a timeout, or a failure classified
    /// by what git printed. `after` is the deadline it had.
    pub fn from_output(output: RunOutput, after: Duration) -> GitError {
        if output.timed_out {
            GitError::TimedOut { after, output }
        } else {
            GitError::Failed {
                cause: output.cause(),
                output,
            }
        }
    }

    /// Whether retrying can help: a timeout or a failure to start may pass.
    pub fn cause(&self) -> Cause {
        match self {
            GitError::Failed { cause, .. } => *cause,
            GitError::Spawn { .. } | GitError::TimedOut { .. } => Cause::Transient { advice: None },
        }
    }
}

/// What a failure of git is taken for, decided once from what git and ssh printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Retrying cannot fix it: a person must act.
    Lasting(Lasting),
    /// Trying again may succeed (the network, a server that is down), or the failure is
    /// not one we know; `advice` when we know it.
    Transient { advice: Option<&'static str> },
}

impl Cause {
    /// The lasting failure this is, if it is one.
    pub fn lasting(self) -> Option<Lasting> {
        match self {
            Cause::Lasting(lasting) => Some(lasting),
            Cause::Transient { .. } => None,
        }
    }
}

/// A failure that retrying cannot fix: the remote refused our credentials, the
/// repository does not exist there, its TLS certificate or SSH host key does not check
/// out. Shown as `why`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lasting {
    /// Why, in a few words ("authentication refused").
    pub why: &'static str,
    /// What it means and what to do.
    pub advice: &'static str,
}

impl std::fmt::Display for Lasting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.why)
    }
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// What went wrong, on one line with credentials masked: for a failure people meet
    /// often, what it means and what to do, with the line of git's that shows it;
    /// otherwise what git said (its hints left out); how it ended when it said nothing.
    pub fn complaint(&self) -> String {
        // The remote's words may be in it: shown printable whatever they hold.
        crate::text::printable(&self.unescaped_complaint()).into_owned()
    }

    fn unescaped_complaint(&self) -> String {
        if self.success() && self.stdout_incomplete {
            return format!(
                "the remote's answer was larger than this server accepts (a line over {} KiB, or over {} MiB in all), so it was not used",
                STDOUT_LINE_LIMIT / 1024,
                STDOUT_LIMIT / (1024 * 1024)
            );
        }
        if let Some((diagnosis, line)) = self.diagnosis() {
            return crate::url::mask_text(&format!("{} (git: {line})", diagnosis.advice));
        }
        let said: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
            .collect();
        if said.is_empty() {
            format!("git {}", self.describe_end())
        } else {
            crate::url::mask_text(&said.join(" "))
        }
    }

    /// What git's failure is taken for, from the diagnosis table: lasting (retrying
    /// cannot fix it) or transient, with its advice when known. A timeout is transient.
    pub fn cause(&self) -> Cause {
        match self.diagnosis() {
            Some((d, _)) => match d.lasting {
                Some(why) => Cause::Lasting(Lasting {
                    why,
                    advice: d.advice,
                }),
                None => Cause::Transient {
                    advice: Some(d.advice),
                },
            },
            None => Cause::Transient { advice: None },
        }
    }

    /// The known failure git's stderr shows, and the line that shows it.
    fn diagnosis(&self) -> Option<(&'static Diagnosis, &str)> {
        if self.timed_out {
            return None;
        }
        // Lines the remote sends (`remote: …`) are its own words, which anyone running
        // that server chooses; only git's and ssh's own say what went wrong here.
        DIAGNOSES.iter().find_map(|d| {
            d.signs.iter().find_map(|sign| {
                self.stderr
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("remote:"))
                    .find(|l| l.contains(sign))
                    .map(|l| (d, l.trim().trim_matches('@').trim()))
            })
        })
    }

    /// git's client refused to send push options to a server that does not advertise
    /// them (`receive.advertisePushOptions`), before sending anything.
    pub fn refused_push_options(&self) -> bool {
        !crate::porcelain::PushReport::parse(&self.stdout).reached
            && self
                .stderr
                .lines()
                .any(|l| l.contains("receiving end does not support push options"))
    }

    /// A one-line description of how the process ended, for messages.
    pub fn describe_end(&self) -> String {
        match self.status {
            _ if self.timed_out => "timed out and was stopped".to_owned(),
            Some(s) if s.code().is_some() => {
                format!("exited with status {}", s.code().unwrap_or(-1))
            }
            Some(s) => format!("was killed by signal {}", s.signal().unwrap_or(0)),
            None => "ended without an exit status".to_owned(),
        }
    }
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

    /// Runs `cmd` until it ends or `timeout` passes, telling `on_start` the pid of git
    /// once it runs (a caller that must know later whether that process is gone records
    /// it).
    fn spawn(
        &self,
        mut cmd: Command,
        input: Option<Vec<u8>>,
        timeout: Duration,
        on_start: &mut dyn FnMut(u32),
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput, GitError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
            // SAFETY: prctl(2) and getppid(2) are async-signal-safe and touch no memory
            // of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    // If we are killed, git (and the transfer it runs) stops with us rather
                    // than finishing a push nobody is waiting for; SIGTERM, not SIGKILL, so
                    // that it removes its lock files first.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() != parent {
                        // We died before the line above took effect.
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let mut child = {
            let mut running = running();
            if running.stopping {
                drop(running);
                stopped();
            }
            let child = cmd.spawn().map_err(|source| GitError::Spawn {
                program: self.program.clone(),
                source,
            })?;
            running.groups.push(child.id());
            child
        };
        on_start(child.id());
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A thread of its own: git may write a lot of output before it reads all of
            // its input, and neither side may wait for the other.
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&input);
            });
        }
        let output = supervise(child, timeout, on_stderr);
        if running().stopping {
            // Whatever would come next (another git, a record saying "failed") is not
            // wanted from a process told to stop.
            stopped();
        }
        Ok(output)
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

/// One ref of a push, guarded by a lease on the value the remote is expected to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedUpdate {
    pub name: String,
    /// What the remote must hold for the update to apply; `None`: the ref must not exist.
    pub expect: Option<String>,
    /// What it gets; `None` deletes it.
    pub new: Option<String>,
}

/// How a push runs.
#[derive(Debug, Clone, Default)]
pub struct PushSettings {
    /// All refs or none (`--atomic`).
    pub atomic: bool,
    /// Push options (`--push-option`).
    pub options: Vec<String>,
}

impl Git {
    /// Pushes `updates` to `url` in one `git push --porcelain`, each ref with a lease
    /// (`--force-with-lease=REF:EXPECT`), never with `+`: a `+` would override the lease
    /// and silently clobber the remote, while a lease also permits a forced update.
    ///
    /// A non-atomic push too large for one command line goes in several, one after the
    /// other, and their outputs are joined; an atomic one that does not fit is an error
    /// (check [`push_fits`] first).
    pub fn push(
        &self,
        url: &crate::url::RemoteUrl,
        updates: &[LeasedUpdate],
        settings: &PushSettings,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        if push_fits(updates) {
            return self.push_once(url, updates, settings, timeout, on_stderr);
        }
        if settings.atomic {
            anyhow::bail!(
                "{} ref updates are more than one atomic push can carry on this system's command line",
                updates.len()
            );
        }
        let budget = argument_budget();
        let mut joined: Option<RunOutput> = None;
        let mut start = 0;
        while start < updates.len() {
            let mut bytes = 0;
            let mut end = start;
            while end < updates.len()
                && (end == start || bytes + update_bytes(&updates[end]) < budget)
            {
                bytes += update_bytes(&updates[end]);
                end += 1;
            }
            let out = self.push_once(url, &updates[start..end], settings, timeout, on_stderr)?;
            // Unreachable or timed out: the rest would fare no better.
            let hopeless =
                out.timed_out || !out.stdout.split(|b| *b == b'\n').any(|l| l == b"Done");
            joined = Some(match joined {
                None => out,
                Some(mut all) => {
                    all.stdout.extend_from_slice(&out.stdout);
                    all.stdout_incomplete |= out.stdout_incomplete;
                    all.stderr.push_str(&out.stderr);
                    all.timed_out |= out.timed_out;
                    if all.success() {
                        all.status = out.status;
                    }
                    all
                }
            });
            if hopeless {
                break;
            }
            start = end;
        }
        joined.ok_or_else(|| anyhow::anyhow!("nothing to push"))
    }

    fn push_once(
        &self,
        url: &crate::url::RemoteUrl,
        updates: &[LeasedUpdate],
        settings: &PushSettings,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        let mut args: Vec<String> = [
            // Configuration that would make git push more (or other) than we ask.
            "-c",
            "push.followTags=false",
            "-c",
            "push.recurseSubmodules=no",
            "-c",
            "push.gpgSign=false",
            "-c",
            "push.useForceIfIncludes=false",
            "-c",
            "push.pushOption=",
            "push",
            "--no-verify",
            "--porcelain",
        ]
        .map(str::to_owned)
        .into();
        if settings.atomic {
            args.push("--atomic".to_owned());
        }
        args.extend(
            settings
                .options
                .iter()
                .map(|o| format!("--push-option={o}")),
        );
        for u in updates {
            let expect = u.expect.as_deref().unwrap_or_default();
            args.push(format!("--force-with-lease={}:{expect}", u.name));
        }
        args.push(url.for_git());
        for u in updates {
            args.push(match &u.new {
                None => format!(":{}", u.name),
                Some(new) => format!("{new}:{}", u.name),
            });
        }
        self.run_remote(&args, None, timeout, on_stderr)
    }

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
    fn parse(stdout: &[u8]) -> RemoteRefs {
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

impl Git {
    /// Lists every ref of `url` and which of them are symbolic (`git ls-remote --symref`).
    pub fn ls_remote_symrefs(
        &self,
        url: &crate::url::RemoteUrl,
        timeout: Duration,
    ) -> Result<RemoteListing, GitError> {
        let args = ["ls-remote".to_owned(), "--symref".to_owned(), url.for_git()];
        let out = self.listing(&args, timeout)?;
        Ok(parse_symref_listing(&out.stdout))
    }
}

/// Reads `git ls-remote --symref` output: `ref: TARGET<TAB>NAME` for a symbolic ref,
/// `ID<TAB>NAME` for every ref; peeled tags (`NAME^{}`) are left out.
fn parse_symref_listing(stdout: &[u8]) -> RemoteListing {
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
        let input: String = refspecs
            .iter()
            .map(|(src, dst)| format!("+{src}:{dst}\n"))
            .collect();
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

/// How many bytes of arguments one command may have here: half the system's limit,
/// leaving the other half to the environment and git's own arguments.
fn argument_budget() -> usize {
    // SAFETY: sysconf(3) only reads a system limit.
    let limit = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    usize::try_from(limit).map_or(128 * 1024, |l| (l / 2).max(128 * 1024))
}

/// The bytes one ref adds to a push's command line: its lease, its refspec, and the
/// pointers to both.
fn update_bytes(u: &LeasedUpdate) -> usize {
    let lease =
        "--force-with-lease=:".len() + u.name.len() + u.expect.as_ref().map_or(0, String::len);
    let refspec = 1 + u.name.len() + u.new.as_ref().map_or(0, String::len);
    lease + refspec + 2 * (std::mem::size_of::<usize>() + 1)
}

/// True when `updates` fit in one push's command line.
pub fn push_fits(updates: &[LeasedUpdate]) -> bool {
    updates.iter().map(update_bytes).sum::<usize>() < argument_budget()
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

enum Event {
    /// One line of stdout, without its `\n`.
    Stdout(Vec<u8>),
    /// Some of stdout was left out (see [`forward_stdout`]).
    StdoutIncomplete,
    /// One line of stderr, made printable and bounded (see [`forward_stderr`]).
    Stderr(String),
    StreamEnd,
    Exited(std::io::Result<ExitStatus>),
}

/// How long to keep reading output after the process ended or was killed; a grandchild
/// that escaped the process group may hold the pipes open, and we must not hang on it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn supervise(mut child: Child, timeout: Duration, on_stderr: &mut dyn FnMut(&str)) -> RunOutput {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    let mut streams = 0;
    if let Some(out) = child.stdout.take() {
        streams += 1;
        forward_stdout(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        streams += 1;
        forward_stderr(err, tx.clone());
    }
    let exit_tx = tx;
    std::thread::spawn(move || {
        let status = child.wait();
        running().groups.retain(|g| *g != pid);
        let _ = exit_tx.send(Event::Exited(status));
    });

    let mut output = RunOutput {
        status: None,
        timed_out: false,
        stdout: Vec::new(),
        stdout_incomplete: false,
        stderr: String::new(),
    };
    let start = Instant::now();
    // A deadline past the end of time is no deadline at all.
    let mut deadline = start
        .checked_add(timeout)
        .unwrap_or(start + Duration::from_secs(u32::MAX.into()));
    let mut exited = false;
    let mut killed = false;
    while !exited || streams > 0 {
        let now = Instant::now();
        let event = match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) if !exited && !killed => {
                // First SIGTERM, so git removes its lock files; SIGKILL if it lingers.
                killed = output.timed_out;
                output.timed_out = true;
                signal_group(pid, if killed { libc::SIGKILL } else { libc::SIGTERM });
                deadline = Instant::now() + DRAIN_GRACE;
                continue;
            }
            Err(_) => break,
        };
        match event {
            Event::Stdout(line) => {
                output.stdout.extend_from_slice(&line);
                output.stdout.push(b'\n');
            }
            Event::StdoutIncomplete => output.stdout_incomplete = true,
            Event::Stderr(line) => {
                on_stderr(&line);
                output.stderr.push_str(&line);
                output.stderr.push('\n');
            }
            Event::StreamEnd => streams -= 1,
            Event::Exited(status) => {
                exited = true;
                output.status = status.ok();
                if !output.timed_out {
                    deadline = Instant::now() + DRAIN_GRACE;
                }
            }
        }
    }
    output
}

/// Longest stdout line kept. What git prints there (`ls-remote`, `push --porcelain`)
/// comes from protocol packets of at most 65 516 bytes, so a longer line is none of it;
/// it is left out whole, never cut (a ref name cut short names another ref), and the
/// output marked incomplete.
pub const STDOUT_LINE_LIMIT: usize = 128 * 1024;
/// Most stdout kept: a listing of some five million refs. Not less, since a real
/// repository's listing must arrive whole; more would let a remote fill our memory.
/// Beyond it, the output is marked incomplete.
pub const STDOUT_LIMIT: usize = 512 * 1024 * 1024;
/// Most of one stderr line kept and relayed; the rest is read and dropped, its size said.
pub const STDERR_LINE_LIMIT: usize = 4 * 1024;
/// Most stderr kept and relayed in all; beyond it, lines are read and dropped, and what
/// was dropped is said, followed by the last [`STDERR_TAIL`] lines (git's own verdict
/// comes last, after whatever the remote said).
pub const STDERR_LIMIT: usize = 64 * 1024;
/// Lines of stderr kept from past [`STDERR_LIMIT`].
pub const STDERR_TAIL: usize = 8;

/// Reads `stream` line by line in bounded chunks, so memory stays bounded whatever the
/// line length: hands `each` the first `max_line` bytes of each line (without its
/// `\n`) and how many bytes of it were dropped; stops when `each` returns false.
fn read_lines<R: Read>(stream: R, max_line: usize, each: &mut dyn FnMut(&[u8], u64) -> bool) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    let mut dropped: u64 = 0;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => &[][..],
        };
        if chunk.is_empty() {
            if !line.is_empty() || dropped > 0 {
                each(&line, dropped);
            }
            return;
        }
        let end = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..end.unwrap_or(chunk.len())];
        let keep = part.len().min(max_line.saturating_sub(line.len()));
        line.extend_from_slice(&part[..keep]);
        dropped += (part.len() - keep) as u64;
        let used = end.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if end.is_some() {
            if !each(&line, dropped) {
                return;
            }
            line.clear();
            dropped = 0;
        }
    }
}

/// Forwards stdout's lines, whole, within [`STDOUT_LINE_LIMIT`] and [`STDOUT_LIMIT`].
fn forward_stdout<R: Read + Send + 'static>(stream: R, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut kept = 0usize;
        let mut incomplete = false;
        read_lines(stream, STDOUT_LINE_LIMIT, &mut |line, dropped| {
            if dropped > 0 || kept + line.len() + 1 > STDOUT_LIMIT {
                // Read on to the end all the same: git must not block on a full pipe.
                incomplete = true;
                return true;
            }
            kept += line.len() + 1;
            tx.send(Event::Stdout(line.to_vec())).is_ok()
        });
        if incomplete {
            let _ = tx.send(Event::StdoutIncomplete);
        }
        let _ = tx.send(Event::StreamEnd);
    });
}

/// Forwards stderr's lines as printable text, within [`STDERR_LINE_LIMIT`] and
/// [`STDERR_LIMIT`], saying where and how much was cut.
fn forward_stderr<R: Read + Send + 'static>(stream: R, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut budget = StderrBudget::default();
        read_lines(stream, STDERR_LINE_LIMIT, &mut |line, dropped| match budget
            .take(stderr_line(line, dropped), line.len() as u64 + dropped + 1)
        {
            Some(text) => tx.send(Event::Stderr(text)).is_ok(),
            None => true,
        });
        for text in budget.finish() {
            let _ = tx.send(Event::Stderr(text));
        }
        let _ = tx.send(Event::StreamEnd);
    });
}

/// One stderr line for people: printable, with its cut said.
fn stderr_line(line: &[u8], dropped: u64) -> String {
    // Progress meters rewrite their line with '\r'; keep the last state.
    let end = line
        .iter()
        .rposition(|b| *b != b'\r')
        .map_or(0, |at| at + 1);
    let line = &line[..end];
    let line = line.rsplit(|b| *b == b'\r').next().unwrap_or(line);
    let mut text = crate::text::printable_bytes(line);
    if dropped > 0 {
        text.push_str(&format!(" … ({dropped} bytes cut)"));
    }
    text
}

/// What is left of [`STDERR_LIMIT`], and what went past it.
#[derive(Default)]
struct StderrBudget {
    kept: usize,
    /// The last lines past the limit, with the bytes each took in git's output.
    tail: std::collections::VecDeque<(String, u64)>,
    /// Lines past the limit that are not in the tail, and their bytes as git wrote them.
    dropped_lines: u64,
    dropped_bytes: u64,
    /// `remote:` when the first line dropped came from the remote.
    label: &'static str,
}

impl StderrBudget {
    /// `text`, when it may be kept and relayed now; otherwise it waits in the tail.
    /// `size` is what the line took in git's output.
    fn take(&mut self, text: String, size: u64) -> Option<String> {
        if self.tail.is_empty() && self.kept + text.len() < STDERR_LIMIT {
            self.kept += text.len() + 1;
            return Some(text);
        }
        if self.tail.len() == STDERR_TAIL {
            if let Some((first, size)) = self.tail.pop_front() {
                if self.dropped_lines == 0 && first.starts_with("remote:") {
                    self.label = "remote: ";
                }
                self.dropped_lines += 1;
                self.dropped_bytes += size;
            }
        }
        self.tail.push_back((text, size));
        None
    }

    /// The lines still to say at the end: how much was not shown, then the tail. The
    /// note keeps the `remote:` label of the lines it stands for, so it reaches whoever
    /// relays the remote's words.
    fn finish(self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.tail.len() + 1);
        if self.dropped_lines > 0 {
            lines.push(format!(
                "{}… (further output not shown: {} lines, {} bytes)",
                self.label, self.dropped_lines, self.dropped_bytes
            ));
        }
        lines.extend(self.tail.into_iter().map(|(text, _)| text));
        lines
    }
}

fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for
        // this child (process_group(0) made it the leader); no memory is involved.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// The git processes running now (each leads its own process group), and whether this
/// process is stopping: then no new git starts.
struct Running {
    groups: Vec<u32>,
    stopping: bool,
}

static RUNNING: std::sync::Mutex<Running> = std::sync::Mutex::new(Running {
    groups: Vec::new(),
    stopping: false,
});

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pipe's write end the signal handler wakes the stopping thread with.
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// How long git gets to finish after our SIGTERM (it removes its lock files and
/// exits) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

extern "C" fn on_termination(signal: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let byte = u8::try_from(signal).unwrap_or(0);
    // SAFETY: write(2) is async-signal-safe; `byte` outlives the call.
    unsafe {
        libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP stop this process the way that leaves no git lock
/// behind: no new git starts, the running ones get SIGTERM (git then removes its lock
/// files), and once they have ended (or after [`STOP_GRACE`]) the process exits with
/// 128 + the signal. Without this, the signal would kill us at once and git would get
/// only its death signal. A signal that was ignored (`nohup`) stays ignored.
pub fn stop_git_on_termination() -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two file descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // The write end does not block: the handler must never wait on a full pipe (a flood
    // of signals after the first, which the reader no longer reads).
    // SAFETY: fcntl(2) on a descriptor we just created.
    unsafe {
        libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK);
    }
    SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction(2) with zero-initialised structs it fills or reads; the
        // handler only calls write(2).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_termination as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot install a signal handler");
            }
        }
    }
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        loop {
            // SAFETY: read(2) into a one-byte buffer we own.
            let n = unsafe { libc::read(read_end, std::ptr::addr_of_mut!(byte).cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        stop_and_exit(libc::c_int::from(byte));
    });
    Ok(())
}

/// Parks the calling thread for good: the process is stopping, and the thread that stops
/// it exits once every git has ended.
fn stopped() -> ! {
    loop {
        std::thread::park();
    }
}

fn stop_and_exit(signal: libc::c_int) -> ! {
    let groups = {
        let mut running = running();
        running.stopping = true;
        running.groups.clone()
    };
    for group in groups {
        signal_group(group, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while !running().groups.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for group in running().groups.clone() {
        signal_group(group, libc::SIGKILL);
    }
    std::process::exit(128 + signal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What `forward` makes of `stream`: its events, stream end excluded.
    fn events(
        forward: fn(Box<dyn Read + Send>, mpsc::Sender<Event>),
        stream: impl Read + Send + 'static,
    ) -> Vec<Event> {
        let (tx, rx) = mpsc::channel();
        forward(Box::new(stream), tx);
        rx.iter()
            .take_while(|e| !matches!(e, Event::StreamEnd))
            .collect()
    }

    fn stderr_lines(stream: impl Read + Send + 'static) -> Vec<String> {
        events(forward_stderr, stream)
            .into_iter()
            .map(|e| match e {
                Event::Stderr(line) => line,
                _ => panic!("stderr gives lines only"),
            })
            .collect()
    }

    #[test]
    fn a_huge_line_is_read_in_bounded_chunks_and_cut() {
        let huge = std::io::repeat(b'x').take(50_000_000);
        let stream = b"first\n"
            .chain(huge)
            .chain(&b"\nshort\nno newline at the end"[..]);
        let mut seen = Vec::new();
        read_lines(stream, 4096, &mut |line, dropped| {
            seen.push((line.len(), dropped, line.first().copied()));
            true
        });
        assert_eq!(
            seen,
            [
                (5, 0, Some(b'f')),
                (4096, 50_000_000 - 4096, Some(b'x')),
                (5, 0, Some(b's')),
                (21, 0, Some(b'n')),
            ]
        );
    }

    #[test]
    fn stderr_is_printable_and_says_where_it_was_cut() {
        let stream = b"remote: \x1b[2K\rmirror-hooks: fake\x1b]0;title\x07\n"
            .chain(&b"remote: progress 10%\rremote: progress 100%\r\r\n"[..])
            .chain(&b"remote: "[..])
            .chain(std::io::repeat(b'y').take(10_000_000))
            .chain(&b"\nremote: caf\xe9\n"[..]);
        let lines = stderr_lines(stream);
        assert_eq!(lines[0], r"mirror-hooks: fake\x1b]0;title\x07");
        assert_eq!(lines[1], "remote: progress 100%");
        assert!(lines[2].starts_with("remote: yyy"), "{}", &lines[2][..20]);
        assert!(
            lines[2].ends_with(&format!(
                " … ({} bytes cut)",
                10_000_008 - STDERR_LINE_LIMIT
            )),
            "{}",
            &lines[2][lines[2].len() - 40..]
        );
        assert_eq!(lines[3], r"remote: caf\xe9");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn stderr_past_its_limit_is_summed_up_and_its_last_lines_kept() {
        let flood: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("remote: line {i}\n").into_bytes())
            .collect();
        let stream = std::io::Cursor::new(flood).chain(&b"error: failed to push some refs\n"[..]);
        let lines = stderr_lines(stream);
        let kept: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(kept < STDERR_LIMIT + STDERR_TAIL * 100, "{kept}");
        let note = &lines[lines.len() - STDERR_TAIL - 1];
        assert!(
            note.starts_with("remote: … (further output not shown: ") && note.ends_with(" bytes)"),
            "{note}"
        );
        assert_eq!(lines[lines.len() - 2], "remote: line 99999");
        assert_eq!(lines[lines.len() - 1], "error: failed to push some refs");
        // What was shown, said not shown, and kept at the end accounts for every line.
        let shown = lines.len() - STDERR_TAIL - 1;
        let not_shown: usize = note
            .trim_start_matches("remote: … (further output not shown: ")
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(shown + not_shown + STDERR_TAIL, 100_001);
    }

    #[test]
    fn stdout_keeps_bytes_and_leaves_out_overlong_lines_whole() {
        let long = vec![b'r'; STDOUT_LINE_LIMIT + 1];
        let stream = std::io::Cursor::new(
            [
                &b"1111\trefs/heads/caf\xe9\n"[..],
                &long,
                b"\n2222\trefs/heads/main\n",
            ]
            .concat(),
        );
        let seen = events(forward_stdout, stream);
        let lines: Vec<&[u8]> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Stdout(line) => Some(line.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [&b"1111\trefs/heads/caf\xe9"[..], b"2222\trefs/heads/main"]
        );
        assert!(matches!(seen.last(), Some(Event::StdoutIncomplete)));
    }

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
    fn a_complaint_is_printable() {
        let out = RunOutput {
            status: None,
            timed_out: false,
            stdout: Vec::new(),
            stdout_incomplete: false,
            stderr: "fatal: \u{1b}]0;owned\u{7} refused\n".to_owned(),
        };
        assert_eq!(out.complaint(), r"fatal: \x1b]0;owned\x07 refused");
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;

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

#[cfg(test)]
mod diagnosis_tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn failed(stderr: &str) -> RunOutput {
        RunOutput {
            status: Some(ExitStatus::from_raw(128 << 8)),
            timed_out: false,
            stdout: Vec::new(),
            stdout_incomplete: false,
            stderr: stderr.to_owned(),
        }
    }

    /// Samples of what git and ssh print for the failures people meet, and what each
    /// must be taken for: retrying cannot help (`Some(why)`), or it may (`None`).
    const SAMPLES: &[(&str, Option<&str>)] = &[
        (
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\nfatal: Could not read from remote repository.",
            Some("SSH host key changed"),
        ),
        (
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\nfatal: Could not read from remote repository.",
            Some("SSH host key not trusted"),
        ),
        (
            "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.",
            Some("authentication refused"),
        ),
        (
            "fatal: could not read Username for 'https://git.example.com': terminal prompts disabled",
            Some("authentication required"),
        ),
        (
            "remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://git.example.com/team/project.git/'",
            Some("authentication refused"),
        ),
        (
            "fatal: unable to access 'https://git.example.com/p.git/': The requested URL returned error: 403",
            Some("access denied"),
        ),
        (
            "fatal: repository 'http://127.0.0.1:8080/dumb.git/' not found\nfatal: https://127.0.0.1/dumb.git/info/refs not valid: is this a git repository? did you run git update-server-info on the server?",
            Some("dumb HTTP server"),
        ),
        (
            "fatal: unable to access 'https://git.example.com/p/': The requested URL returned error: 301",
            Some("redirected"),
        ),
        (
            "fatal: '/srv/git/missing.git' does not appear to be a git repository\nfatal: Could not read from remote repository.",
            Some("repository not found"),
        ),
        // Two entries match: the first one wins (a refused key also says "does not
        // appear to be a git repository", which would be "not found").
        (
            "git@host: Permission denied (publickey).\nfatal: 'team/p.git' does not appear to be a git repository\nfatal: Could not read from remote repository.",
            Some("authentication refused"),
        ),
        (
            "fatal: unable to access 'https://git.example.com/p.git/': SSL certificate problem: self-signed certificate",
            Some("TLS certificate problem"),
        ),
        (
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
            None,
        ),
        (
            "fatal: unable to access 'https://nowhere.invalid/p.git/': Could not resolve host: nowhere.invalid",
            None,
        ),
        (
            "ssh: connect to host 10.0.0.1 port 22: Connection timed out\nfatal: Could not read from remote repository.",
            None,
        ),
    ];

    #[test]
    fn each_known_failure_is_recognised_with_its_advice() {
        for (stderr, lasting) in SAMPLES {
            let out = failed(stderr);
            let cause = out.cause();
            assert_eq!(cause.lasting().map(|l| l.why), *lasting, "{stderr}");
            // Every sample is a known failure: its advice comes with it.
            let advice = match cause {
                Cause::Lasting(l) => Some(l.advice),
                Cause::Transient { advice } => advice,
            };
            assert!(advice.is_some(), "{stderr}");
            let complaint = out.complaint();
            assert!(complaint.contains("(git: "), "{complaint}");
            assert!(!complaint.contains('\n'), "{complaint}");
        }
    }

    #[test]
    fn the_remotes_own_words_are_no_diagnosis() {
        // Anyone running the server chooses what follows `remote:`.
        let out =
            failed("remote: Repository not found (just kidding)\nerror: failed to push some refs");
        assert_eq!(out.cause(), Cause::Transient { advice: None });
        assert!(!out.complaint().contains("(git: "));
    }

    #[test]
    fn a_timeout_is_never_a_lasting_failure() {
        let mut out = failed("fatal: Authentication failed");
        out.timed_out = true;
        assert_eq!(out.cause(), Cause::Transient { advice: None });
        assert_eq!(out.describe_end(), "timed out and was stopped");
        let complaint = out.complaint();
        let error = GitError::from_output(out, Duration::from_secs(5));
        assert!(matches!(
            error,
            GitError::TimedOut { after, .. } if after == Duration::from_secs(5)
        ));
        assert_eq!(error.cause(), Cause::Transient { advice: None });
        assert_eq!(error.to_string(), complaint);
    }

    #[test]
    fn a_failure_is_classified_once_and_shown_as_its_complaint() {
        let out = failed("git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.");
        let complaint = out.complaint();
        let error = GitError::from_output(out, Duration::from_secs(5));
        let GitError::Failed {
            cause: Cause::Lasting(lasting),
            ..
        } = &error
        else {
            panic!("not a lasting failure: {error:?}");
        };
        assert_eq!(lasting.to_string(), "authentication refused");
        assert_eq!(error.to_string(), complaint);
    }
}
