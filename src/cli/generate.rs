//! `git-mirror generate`: the man pages and shell completions, made from the clap
//! definition so that they never disagree with `--help`. install.sh installs them, so
//! that `git mirror --help` (which git turns into `man git-mirror`) finds the page.

use super::{Cli, Failure};
use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;
use std::path::PathBuf;

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
    // the help) and this one (hidden).
    let command = Cli::command().disable_help_subcommand(true);
    match what {
        Generate::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        }
        Generate::Man { dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            // A reader that went away (`| head`) is not a failure.
            let _ = std::io::stdout().write_all(&page);
        }
        Generate::Completions { shell } => {
            let mut script = Vec::new();
            let mut command = command;
            clap_complete::generate(shell, &mut command, "git-mirror", &mut script);
            let _ = std::io::stdout().write_all(&script);
        }
    }
    Ok(0)
}
