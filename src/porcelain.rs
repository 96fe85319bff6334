//! `git push --porcelain` output: one line per ref, read by ref name (git does not keep
//! the order of the command line), plus whether the remote was reached and the report
//! was complete (`Done`).

use std::collections::BTreeMap;

/// The flag git prints for one ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    FastForward,
    Forced,
    Deleted,
    New,
    UpToDate,
    Rejected,
}

impl Flag {
    fn from_char(c: char) -> Option<Flag> {
        Some(match c {
            ' ' => Flag::FastForward,
            '+' => Flag::Forced,
            '-' => Flag::Deleted,
            '*' => Flag::New,
            '=' => Flag::UpToDate,
            '!' => Flag::Rejected,
            _ => return None,
        })
    }

    /// Everything but `!` means the remote holds what we sent.
    pub fn accepted(self) -> bool {
        self != Flag::Rejected
    }
}

/// The outcome git reported for one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefStatus {
    pub flag: Flag,
    /// `[rejected]`, `[new branch]`, `abc..def`, …
    pub summary: String,
    /// The text in parentheses, e.g. `stale info`, `atomic push failed`, or the remote's
    /// own reason such as `pre-receive hook declined`.
    pub reason: Option<String>,
}

/// A whole porcelain report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// A `To <url>` line was printed: the remote was reached.
    pub reached: bool,
    /// The report ended with `Done`: it is complete.
    pub done: bool,
    pub refs: BTreeMap<String, RefStatus>,
}

impl PushReport {
    /// Reads git's stdout. A line that is not UTF-8 is skipped: it cannot be about a ref
    /// we pushed, whose names all are.
    pub fn parse<S: AsRef<[u8]> + ?Sized>(stdout: &S) -> PushReport {
        let mut report = PushReport::default();
        let lines = stdout.as_ref().split(|b| *b == b'\n');
        for line in lines.filter_map(|l| std::str::from_utf8(l).ok()) {
            if line.starts_with("To ") {
                report.reached = true;
                continue;
            }
            if line == "Done" {
                report.done = true;
                continue;
            }
            let mut fields = line.splitn(3, '\t');
            let (Some(flag), Some(refspec), summary) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let mut chars = flag.chars();
            let (Some(flag), None) = (chars.next().and_then(Flag::from_char), chars.next()) else {
                continue;
            };
            let Some((_, name)) = refspec.rsplit_once(':').filter(|(_, n)| !n.is_empty()) else {
                continue;
            };
            // The summary and reason may hold the remote's words: shown printable.
            let summary = summary.unwrap_or_default();
            let (summary, reason) = match summary.split_once(" (") {
                Some((s, r)) => (
                    s,
                    Some(crate::text::printable(r.strip_suffix(')').unwrap_or(r)).into_owned()),
                ),
                None => (summary, None),
            };
            report.refs.insert(
                name.to_owned(),
                RefStatus {
                    flag,
                    summary: crate::text::printable(summary).into_owned(),
                    reason,
                },
            );
        }
        report
    }
}

/// Why git or the remote refused one ref, parsed once from the porcelain reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The lease failed: the remote does not hold the value we expected (`stale info`).
    StaleInfo,
    /// Not applied because another ref of the same atomic push was refused (git's
    /// client says `atomic push failed`, receive-pack `atomic push failure`).
    AtomicPushFailed,
    /// Anything else, in the remote's (or git's) own words.
    Other(String),
}

impl Reason {
    pub fn parse(text: &str) -> Reason {
        match text {
            "stale info" => Reason::StaleInfo,
            "atomic push failed" | "atomic push failure" => Reason::AtomicPushFailed,
            other => Reason::Other(other.to_owned()),
        }
    }
}

/// git's words, in a ref's reason or on its stderr, for a ref locked by a concurrent
/// writer: the one place that recognises them.
const LOCK_ERRORS: [&str; 3] = ["failed to lock", "cannot lock ref", "unable to lock"];

impl Reason {
    /// The ref was locked by a concurrent writer (the remote said so in its reason).
    pub fn is_lock_error(&self) -> bool {
        matches!(self, Reason::Other(text) if mentions_lock_error(text))
    }

    /// A refusal that a retry can fix: the remote moved since it was listed (the lease
    /// failed), or a ref was locked there by a concurrent writer (said in the reason or
    /// in the push's `stderr`).
    pub fn is_transient(&self, stderr: &str) -> bool {
        *self == Reason::StaleInfo || self.is_lock_error() || mentions_lock_error(stderr)
    }
}

/// Whether `text` (git's stderr, or a reason) says that a ref was locked.
fn mentions_lock_error(text: &str) -> bool {
    LOCK_ERRORS.iter().any(|p| text.contains(p))
}

impl RefStatus {
    /// Why the ref was refused, as a [`Reason`] (the summary when git gave no reason).
    pub fn refusal(&self) -> Reason {
        Reason::parse(self.reason.as_deref().unwrap_or(&self.summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_by_ref_name() {
        let out = "To /srv/up.git\n\
                   *\tabc:refs/heads/new\t[new branch]\n\
                   !\tdef:refs/heads/main\t[rejected] (stale info)\n\
                   -\t:refs/heads/old\t[deleted]\n\
                   =\trefs/tags/v1:refs/tags/v1\t[up to date]\n\
                   Done\n";
        let r = PushReport::parse(out);
        assert!(r.reached && r.done);
        assert_eq!(r.refs["refs/heads/new"].flag, Flag::New);
        assert_eq!(r.refs["refs/heads/main"].flag, Flag::Rejected);
        assert_eq!(
            r.refs["refs/heads/main"].reason.as_deref(),
            Some("stale info")
        );
        assert_eq!(r.refs["refs/heads/old"].flag, Flag::Deleted);
        assert!(r.refs["refs/tags/v1"].flag.accepted());
    }

    #[test]
    fn stale_info_and_lock_errors_are_transient() {
        assert!(Reason::parse("stale info").is_transient(""));
        let locked = Reason::parse("failed to update ref: cannot lock ref 'refs/heads/a'");
        assert!(locked.is_lock_error() && locked.is_transient(""));
        let declined = Reason::parse("pre-receive hook declined");
        assert!(!declined.is_transient(""));
        assert!(declined.is_transient("error: unable to lock refs/heads/a.lock"));
        assert!(!Reason::AtomicPushFailed.is_transient(""));
    }

    #[test]
    fn tolerates_garbage_and_truncation() {
        let r = PushReport::parse("To x\n?\tnot:refs/heads/a\tfoo\nnonsense\n\t\t\n");
        assert!(r.reached && !r.done && r.refs.is_empty());
        assert_eq!(PushReport::parse(""), PushReport::default());
    }
}
