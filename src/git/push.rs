//! Pushing: one `git push` with a lease on every ref, from a scratch directory (see
//! [`super::scratch`]) so that its cost does not grow with the refs either side holds.

use super::{scratch, Git, RunOutput};
use anyhow::Result;
use std::time::Duration;

/// An atomic push [`Git::push`] cannot make: more refs than one command line carries,
/// and no scratch directory to stage them in. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{count} ref updates are more than one push can carry on this system's command line, and they cannot be staged ({why})")]
pub struct TooLong {
    pub count: usize,
    pub why: String,
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
    /// (the value it must hold, or that it must not exist), never with `+`: a `+` would
    /// override the lease and silently clobber the remote, while a lease also permits a
    /// forced update.
    ///
    /// The push runs from a scratch directory holding no refs of the repository's (see
    /// [`scratch`]), so its cost does not grow with the refs this side holds.
    pub fn push(
        &self,
        url: &crate::url::RemoteUrl,
        updates: &[LeasedUpdate],
        settings: &PushSettings,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        let sha256 = updates
            .iter()
            .find_map(|u| u.new.as_ref().or(u.expect.as_ref()))
            .is_some_and(|id| id.len() == 64);
        // From a scratch directory when one can be made; from the repository itself
        // (slower with many refs, same outcome) when not.
        let why = if !scratch::Scratch::can_stage(updates) {
            "a name is not a full ref name git takes".to_owned()
        } else {
            match scratch::Scratch::create(&self.git_dir, sha256) {
                Ok(scratch) => {
                    let from = Git {
                        git_dir: scratch.path().to_owned(),
                        ..self.clone()
                    };
                    return from.push_staged(&scratch, url, updates, settings, timeout, on_stderr);
                }
                Err(e) => format!("{e:#}"),
            }
        };
        if settings.atomic && !push_fits(updates) {
            return Err(TooLong {
                count: updates.len(),
                why,
            }
            .into());
        }
        self.push_from_here(url, updates, settings, timeout, on_stderr)
    }

    /// Pushes `updates` with leases from "tracking" refs staged in `scratch`: the refs
    /// go in one glob refspec and one bare `--force-with-lease`, so git matches them
    /// in one pass over what the remote lists (an explicit lease per ref is a pass per
    /// ref) and the command line stays short however many there are.
    fn push_staged(
        &self,
        scratch: &scratch::Scratch,
        url: &crate::url::RemoteUrl,
        updates: &[LeasedUpdate],
        settings: &PushSettings,
        timeout: Duration,
        on_stderr: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        scratch.stage(updates)?;
        scratch.add_remote(&url.for_git(), updates)?;
        let mut args = push_arguments(settings);
        args.splice(0..0, SCRATCH_CONFIG.map(str::to_owned));
        args.push("--force-with-lease".to_owned());
        args.push(scratch::REMOTE.to_owned());
        self.run_remote(&args, None, timeout, on_stderr)
    }

    /// [`Git::push`] from the repository itself, in several pushes when one command
    /// line cannot carry them all.
    fn push_from_here(
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
        // An atomic push that does not fit never gets here (see `push`).
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
        let mut args = push_arguments(settings);
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
}

/// Configuration for the push from a scratch directory, whatever the repository's own
/// says: no reflogs of the tracking refs it writes (nothing there outlives the push).
/// Hooks are off already, as for every git that talks to a remote.
const SCRATCH_CONFIG: [&str; 2] = ["-c", "core.logAllRefUpdates=false"];

/// `git push` and the options every push of ours takes.
fn push_arguments(settings: &PushSettings) -> Vec<String> {
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
    args
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
fn push_fits(updates: &[LeasedUpdate]) -> bool {
    updates.iter().map(update_bytes).sum::<usize>() < argument_budget()
}

/// True when [`Git::push`] can push `updates` atomically, in one push: they fit on a
/// command line, or they can be staged (every name under `refs/`, as receive-pack
/// requires of a pushed ref anyway).
pub fn can_push(updates: &[LeasedUpdate]) -> bool {
    scratch::Scratch::can_stage(updates) || push_fits(updates)
}
