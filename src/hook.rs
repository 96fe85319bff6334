//! Entry points of the two hook binaries: find the repository git is running us in,
//! read standard input, run the hook, and turn the outcome into an exit code.

use crate::hookenv::HookEnv;
use crate::queue::enqueue_push_mirrors_after;
use crate::{chain, proxy};
use anyhow::{Context, Result};
use clap::Parser;
use std::io::{Read, Write};

pub use crate::mode::MARKER;

/// Command-line surface of a hook: git passes no arguments; people may ask for help.
#[derive(Parser, Debug)]
#[command(version, disable_help_subcommand = true)]
pub struct HookArgs {}

/// What git tells the hook besides its standard input, read here once: nothing below
/// the entry reads the process environment for it.
pub fn hook_env() -> Result<HookEnv> {
    HookEnv::read(
        |name| std::env::var_os(name),
        std::env::args_os().next().as_deref(),
    )
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read the ref updates from standard input")?;
    Ok(input)
}

/// Lines for the pusher go to stderr, which git relays as `remote: …`. One write per
/// line (stderr is unbuffered: `writeln!` would make two, and git a packet of each).
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(format!("{line}\n").as_bytes());
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
        let env = hook_env()?;
        let input = read_stdin()?;
        Ok(proxy::pre_receive(&env, &input, &mut say).exit_code())
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
        let env = hook_env()?;
        let repo = env.git_dir.as_path();
        let input = read_stdin()?;
        match crate::refs::parse_updates(&input) {
            // Git runs hooks as its own children: the parent is the push's git.
            Ok(updates) => {
                let git = std::os::unix::process::parent_id();
                let after = (git > 1).then_some(git);
                enqueue_push_mirrors_after(repo, &updates, after, &mut say)
            }
            Err(e) => say(&format!(
                "mirror-hooks: warning: push mirrors not queued: {e:#}."
            )),
        }
        for failure in chain::run(
            repo,
            &chain::chain_dir(repo, env.hook_dir.as_deref(), "post-receive"),
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

impl HookArgs {
    /// Parses the (absent) arguments, handling `--help` and `--version` the clap way.
    fn command_with_about(about: &'static str, name: &'static str) -> HookArgs {
        use clap::{CommandFactory, FromArgMatches};
        // Git passes no arguments: no parser to build on every push.
        if std::env::args_os().len() <= 1 {
            return HookArgs {};
        }
        let matches = HookArgs::command().name(name).about(about).get_matches();
        HookArgs::from_arg_matches(&matches).unwrap_or(HookArgs {})
    }
}

/// `proc-receive`: performs the push's local ref updates around the upstream push, as a
/// two-phase commit; speaks git's proc-receive protocol on standard input and output.
pub fn proc_receive_main() -> i32 {
    let _ = HookArgs::command_with_about(PROC_RECEIVE_ABOUT, "proc-receive");
    let run = || -> Result<()> {
        let env = hook_env()?;
        let mut stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout().lock();
        proxy::proc_receive(&env, &mut stdin, &mut stdout, &mut say)
    };
    match run() {
        // Git reads each ref's outcome from the protocol; the exit status is not read.
        Ok(()) => 0,
        Err(e) => {
            say(&format!(
                "mirror-hooks: push refused: {e:#}; nothing was forwarded to the upstream or changed here."
            ));
            1
        }
    }
}

const PROC_RECEIVE_ABOUT: &str = "mirror-hooks hook binary: proc-receive updates this repository's refs for a push \
as a two-phase commit around forwarding it to the upstream in mirror.toml: the local ref locks are taken first, \
then the upstream is asked, then the local update is committed or aborted to match. Git runs it (with \
receive.procReceiveRefs = refs) and speaks its protocol on standard input and output; install it with install.sh.";
