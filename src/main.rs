//! `git-mirror`: the companion command of mirror-hooks; see `mirror_hooks::cli`.
use clap::Parser;

fn main() {
    std::process::exit(mirror_hooks::cli::run(mirror_hooks::cli::Cli::parse()));
}
