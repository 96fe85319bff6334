//! `git-mirror resolve`: settles a diverged ref by keeping one side (`crate::resolve`).

use super::{load, repository, Failure};
use std::path::Path;

pub(super) fn resolve(
    repo: Option<&Path>,
    name: &str,
    take: crate::resolve::Take,
) -> Result<i32, Failure> {
    let repo = repository(repo)?;
    let config = load(&repo)?;
    let said = crate::resolve::resolve(&repo, &config, name, take)?;
    println!("resolve: {said}");
    Ok(0)
}
