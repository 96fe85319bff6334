//! What a git run left behind ([`RunOutput`]) and what its failure is taken for: the
//! table of failures people meet, read once into a typed [`GitError`] and [`Cause`].

use super::streams::{STDOUT_LIMIT, STDOUT_LINE_LIMIT};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

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
    /// [`STDERR_LINE_LIMIT`](super::streams::STDERR_LINE_LIMIT) and
    /// [`STDERR_LIMIT`](super::streams::STDERR_LIMIT)), with where it was cut said.
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

#[cfg(test)]
mod tests {
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
