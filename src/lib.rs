//! mirror-hooks: Git server-side hooks that keep a bare repository mirrored with other
//! Git servers in both directions without races. The binaries (`pre-receive`,
//! `post-receive`, `git-mirror`) are thin; everything real lives in these modules.
//!
//! The modules form layers; each uses only those below it (`.ci/modules.py` checks
//! that no module uses one that uses it back):
//!
//! - leaves: `text`, `refs`, `url`, `porcelain`, `lock`, `owner`, `hookenv` (what git
//!   tells a hook, read once by `hook`), `repo` (gix reads),
//!   `chain`, `reflock`, `state` (status records, their names, the log, the hash),
//!   `ledger` (what the upstream last held)
//! - configuration: `config` (the only reader of mirror.toml)
//! - access: `git` (the only code that runs git), `process` (detached git-mirror
//!   processes), `auth` (what reaching a remote takes), `keys`, `rules`
//! - work: `queue`, `schedule`
//! - flows: `proxy`, `offline`, `pull`, `push`, `resolve`, `fleet` (`--all` sweeps),
//!   `status` (what status shows)
//! - entries: `hook` (the hook binaries), `cli` (git-mirror)

pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod git;
pub mod hook;
pub mod hookenv;
pub mod keys;
pub mod ledger;
pub mod lock;
pub mod offline;
pub mod owner;
pub mod porcelain;
pub mod process;
pub mod proxy;
pub mod pull;
pub mod push;
pub mod queue;
pub mod reflock;
pub mod refs;
pub mod repo;
pub mod resolve;
pub mod rules;
pub mod schedule;
pub mod state;
pub mod status;
pub mod text;
pub mod url;
