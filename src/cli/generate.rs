//! `git-mirror generate`: the man pages and shell completions, made from the clap
//! definition so that they never disagree with `--help`. install.sh installs them, so
//! that `git mirror --help` (which git turns into `man git-mirror`) finds the page.

use super::{Cli, Failure};
use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum Generate {
    /// The man page git-mirror(1) in roff; with --dir, it and one page per subcommand
    /// (git-mirror-pull(1), …) written into DIR.
    Man {
        /// Write the pages into this directory (e.g. PREFIX/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The completion script of a shell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

pub(super) fn generate(what: Generate) -> Result<i32, Failure> {
    // Not among the commands a page lists or a shell completes: `help` (the pages are
    // the help).
    let command = Cli::command().disable_help_subcommand(true);
    match what {
        Generate::Man { dir: Some(dir) } => write_pages(command, &dir)
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?,
        Generate::Man { dir: None } => {
            let page = main_page(command).context("cannot render the man page")?;
            // A reader that went away (`| head`) is not a failure.
            let _ = std::io::stdout().write_all(&page);
        }
        Generate::Completions { shell } => {
            let script = completions(shell, command);
            let _ = std::io::stdout().write_all(script.as_bytes());
        }
    }
    Ok(0)
}

/// The completion script of `shell`.
fn completions(shell: clap_complete::Shell, mut command: clap::Command) -> String {
    if shell != clap_complete::Shell::Bash {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "git-mirror", &mut script);
        return String::from_utf8_lossy(&script).into_owned();
    }
    // clap_complete's bash script never completes past a subcommand of a program whose
    // name has a hyphen (clap-rs/clap#6421): it is made for a name without one, and
    // then registered for git-mirror (its function tells commands apart by position,
    // not by name).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, BASH_NAME, &mut script);
    let script = String::from_utf8_lossy(&script).replace(
        &format!(" -o default {BASH_NAME}\n"),
        " -o default git-mirror\n",
    );
    script + GIT_MIRROR_IN_BASH
}

/// The name bash completions are made for (see [`completions`]).
const BASH_NAME: &str = "gitmirror";

/// `git mirror …` in bash: git's completion loads this file (as `git-mirror`'s) and
/// calls `_git_mirror`, which completes the words after `mirror` as `git-mirror`'s
/// (git's completion keeps the words in `words`, the index of `mirror` in
/// `__git_cmd_idx`, that of the word being completed in `cword`).
const GIT_MIRROR_IN_BASH: &str = r#"
_git_mirror() {
    local at=${__git_cmd_idx:-1}
    local COMP_WORDS=(git-mirror "${words[@]:at+1}")
    local COMP_CWORD=$((cword - at))
    _gitmirror git-mirror "$cur" "$prev"
}
"#;

/// git-mirror.1 and git-mirror-SUBCOMMAND.1 for each subcommand a person sees.
fn write_pages(mut command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Gives each subcommand its display name, git-mirror-SUBCOMMAND.
    command.build();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::Man::new(sub.clone())
            .source(format!("git-mirror {}", env!("CARGO_PKG_VERSION")))
            .generate_to(dir)?;
    }
    std::fs::write(dir.join("git-mirror.1"), main_page(command)?)
}

/// git-mirror(1): what clap_mangen makes of the command line, and what it has no
/// place for (exit status, files, see also).
fn main_page(command: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    page.extend_from_slice(more_sections().as_bytes());
    Ok(page)
}

/// The files of a repository that mirror-hooks reads and writes.
const FILES: &[(&str, &str)] = &[
    ("REPO/mirror.toml", "The configuration: [upstream], [pull], [[push]] mirrors, [auth.NAME] (README.md of mirror-hooks describes every key)."),
    ("REPO/mirror/state/", "One status record per mirror (JSON), which git mirror status shows."),
    ("REPO/mirror/queue/", "The push mirrors' queued jobs."),
    ("REPO/mirror/keys/", "SSH deploy keys (git mirror keygen) and known_hosts (git mirror host-keys --trust)."),
    ("REPO/mirror/log", "The operations log (no secrets)."),
    ("REPO/hooks/pre-receive.d/, REPO/hooks/post-receive.d/", "Other hooks of the repository, chained: each runs with the same input."),
];

fn more_sections() -> String {
    use roff::{bold, roman, Roff};
    let mut page = Roff::new();
    page.control("SH", ["EXIT STATUS"]).text([roman(
        "0 success; 1 refused or failed; 2 usage or configuration error.",
    )]);
    page.control("SH", ["FILES"]);
    for (path, what) in FILES {
        page.control("TP", [])
            .text([bold(*path)])
            .text([roman(*what)]);
    }
    page.control("SH", ["SEE ALSO"]).text([roman(
        "git-mirror-status(1), git-mirror-pull(1), git-mirror-push(1), git-mirror-doctor(1), \
         githooks(5), git-receive-pack(1); README.md of mirror-hooks, and install.sh --help.",
    )]);
    page.to_roff()
}
