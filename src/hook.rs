//! Entry points of the two hook binaries: find the repository git is running us in,
//! read standard input, run the hook, and turn the outcome into an exit code.

use crate::config::Config;
use crate::queue::Queue;
use crate::refs::RefUpdate;
use crate::{chain, proxy, state};
use anyhow::{Context, Result};
use clap::Parser;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Text embedded in every hook binary; install.sh and `git-mirror doctor` look for it to
/// tell our hooks from a site's own.
pub const MARKER: &str = "mirror-hooks hook binary";

/// Command-line surface of a hook: git passes no arguments; people may ask for help.
#[derive(Parser, Debug)]
#[command(version, disable_help_subcommand = true)]
pub struct HookArgs {}

/// The repository a hook runs in: `GIT_DIR` as git set it, else the current directory
/// (git runs hooks from the top of a bare repository).
pub fn repository() -> Result<PathBuf> {
    let dir = std::env::var_os("GIT_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read the ref updates from standard input")?;
    Ok(input)
}

/// Lines for the pusher go to stderr, which git relays as `remote: …`.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

const PRE_RECEIVE_ABOUT: &str = "mirror-hooks hook binary: pre-receive forwards allowlisted ref updates to the upstream in mirror.toml \
in one atomic compare-and-swap push, and accepts the push only if the upstream did. \
Git runs it with `OLD NEW REF` lines on standard input; install it with install.sh.";

const POST_RECEIVE_ABOUT: &str = "mirror-hooks hook binary: post-receive queues the accepted updates for \
every push mirror in mirror.toml, starts a background worker for each and returns at once; then it runs the hooks \
in hooks/post-receive.d/ with the same standard input. Git runs it after a push was accepted; install it with \
install.sh.";

/// `pre-receive`: returns the process exit code.
pub fn pre_receive_main() -> i32 {
    let _ = HookArgs::command_with_about(PRE_RECEIVE_ABOUT, "pre-receive");
    let run = || -> Result<i32> {
        let repo = repository()?;
        let input = read_stdin()?;
        Ok(proxy::pre_receive(&repo, &input, &mut say).exit_code())
    };
    run().unwrap_or_else(|e| {
        say(&format!("mirror-hooks: push refused: {e:#}."));
        1
    })
}

/// `post-receive`: queues push-mirror jobs, starts their workers, runs the chained
/// hooks. It never fails the push, which git has already accepted.
pub fn post_receive_main() -> i32 {
    let _ = HookArgs::command_with_about(POST_RECEIVE_ABOUT, "post-receive");
    let run = || -> Result<()> {
        let repo = repository()?;
        let input = read_stdin()?;
        match crate::refs::parse_updates(&input) {
            Ok(updates) => enqueue_push_mirrors(&repo, &updates, &mut say),
            Err(e) => say(&format!(
                "mirror-hooks: warning: push mirrors not queued: {e:#}."
            )),
        }
        for failure in chain::run(
            &repo,
            &chain::chain_dir(&repo, "post-receive"),
            &input,
            false,
        )? {
            say(&format!(
                "mirror-hooks: warning: the chained hook {} failed ({}).",
                failure.program.display(),
                failure.status
            ));
        }
        Ok(())
    };
    if let Err(e) = run() {
        say(&format!("mirror-hooks: warning: {e:#}."));
    }
    0
}

/// Queues a job for every push mirror whose refs `updates` touch and starts a detached
/// worker for each; problems are reported and logged, never fatal.
pub fn enqueue_push_mirrors(repo: &Path, updates: &[RefUpdate], say: &mut dyn FnMut(&str)) {
    let now = SystemTime::now();
    let config = match Config::load(repo) {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => {
            say("mirror-hooks: warning: mirror.toml is invalid, so no push mirror was queued:");
            say(&format!("mirror-hooks: {e}"));
            say("mirror-hooks: the push itself was accepted. Fix mirror.toml, then run `git mirror push --now` on the server.");
            state::log(
                repo,
                now,
                &format!("post-receive: push mirrors not queued: {e}"),
            );
            return;
        }
    };
    let mut queued = Vec::new();
    for mirror in &config.push {
        let refs: Vec<String> = updates
            .iter()
            .filter(|u| mirror.refs.matches(&u.name))
            .map(|u| u.name.clone())
            .collect();
        if refs.is_empty() {
            continue;
        }
        match Queue::new(repo, &mirror.name).enqueue(&refs, now) {
            Ok(_) => queued.push((mirror.name.as_str(), refs.len())),
            Err(e) => {
                say(&format!(
                    "mirror-hooks: warning: could not queue the update of push mirror {}: {e:#}.",
                    mirror.name
                ));
                say("mirror-hooks: the push itself was accepted; once the problem is fixed, run `git mirror push --now` on the server.");
                state::log(
                    repo,
                    now,
                    &format!("push {} not queued: {e:#}", mirror.name),
                );
            }
        }
    }
    if queued.is_empty() {
        return;
    }
    // One worker process serves every mirror with queued jobs, each in its own thread.
    let note = match spawn_detached(repo, &["push"]) {
        Ok(()) => String::new(),
        Err(e) => {
            state::log(repo, now, &format!("push worker not started: {e:#}"));
            format!(" (the worker could not be started: {e:#}; the job stays queued)")
        }
    };
    for (name, count) in queued {
        say(&format!(
            "mirror-hooks: queued for push mirror {name} ({count} ref{}){note}.",
            if count == 1 { "" } else { "s" }
        ));
    }
}

/// Variables of the push being received that must not leak into a background
/// `git-mirror`, which finds its repository from its argument.
const HOOK_VARIABLES: [&str; 9] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_PROTOCOL",
    "GIT_PUSH_OPTION_COUNT",
    "GIT_PUSH_CERT",
    "GIT_REFLOG_ACTION",
];

/// Niceness of background workers: below interactive git, above idle work.
const BACKGROUND_NICENESS: libc::c_int = 10;

/// Starts `git-mirror ARGS… REPO` (the binary beside this one) in its own session with
/// no standard streams, so the pusher's connection is not held open; it is not waited
/// for.
pub fn spawn_detached(repo: &Path, args: &[&str]) -> Result<()> {
    companion(repo, args, BACKGROUND_NICENESS)?;
    Ok(())
}

/// Runs `git-mirror ARGS… REPO` as [`spawn_detached`] does, and waits for it up to
/// `timeout`: `Some(success)` when it ended, `None` when it is still running (it goes on
/// by itself).
pub fn run_companion(repo: &Path, args: &[&str], timeout: Duration) -> Result<Option<bool>> {
    // Someone waits for this one: no lower priority.
    let mut child = companion(repo, args, 0)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for git-mirror")? {
            return Ok(Some(status.success()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn companion(repo: &Path, args: &[&str], niceness: libc::c_int) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let program = exe.with_file_name("git-mirror");
    let mut cmd = std::process::Command::new(&program);
    cmd.args(args)
        .arg(repo)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::git::remove_push_variables(&mut cmd, &HOOK_VARIABLES);
    // SAFETY: setsid(2) and setpriority(2) are async-signal-safe and touch no memory of
    // the parent. The new session keeps signals to the hook's process group away from
    // the worker; the lower priority lets the pushes people wait for go first.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if niceness != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, niceness);
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", program.display()))
}

impl HookArgs {
    /// Parses the (absent) arguments, handling `--help` and `--version` the clap way.
    fn command_with_about(about: &'static str, name: &'static str) -> HookArgs {
        use clap::{CommandFactory, FromArgMatches};
        let matches = HookArgs::command().name(name).about(about).get_matches();
        HookArgs::from_arg_matches(&matches).unwrap_or(HookArgs {})
    }
}
