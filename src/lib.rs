//! mirror-hooks: Git server-side hooks that keep a bare repository mirrored with other
//! Git servers in both directions without races. The binaries (`pre-receive`,
//! `post-receive`, `git-mirror`) are thin; everything real lives in these modules.
//!
//! The modules form layers; each uses only those below it (`.ci/modules.py` checks
//! that no module uses one that uses it back):
//!
//! - leaves: `text`, `refs`, `url`, `signals` (catching the stop signals), `files` (reading files others may have planted), `process_id` (is a recorded process still running),
//!   `porcelain`, `pktline` (the proc-receive protocol's framing), `lock`, `owner`, `hookenv` (what git
//!   tells a hook, read once by `hook`), `repo` (gix reads),
//!   `chain`, `reflock`, `pause` (maintenance pause), `state` (status records, their names, the log, the hash),
//!   `ledger` (what the upstream last held), `journal` (two-phase pushes in flight)
//! - configuration: `config` (the only reader of mirror.toml)
//! - access: `git` (the only code that runs git), `process` (detached git-mirror
//!   processes), `auth` (what reaching a remote takes), `keys`, `rules`,
//!   `mode` (two-phase or pre-receive forwarding)
//! - work: `queue`, `schedule`, `announce` (updates made here other than by a push,
//!   told as a push would be)
//! - flows: `proxy` (with two-phase forwarding), `offline`, `unfinished` (two-phase
//!   pushes a dead process left), `pull`, `push`, `resolve`, `fleet` (`--all` sweeps),
//!   `status` (what status shows), `health` (what doctor checks)
//! - entries: `hook` (the hook binaries), `serve` (`git mirror serve`: the schedule,
//!   webhooks and metrics of a whole root, over HTTP), `cli` (git-mirror)

pub(crate) mod announce;
pub(crate) mod auth;
pub(crate) mod chain;
pub mod cli;
pub mod config;
pub(crate) mod files;
pub(crate) mod fleet;
pub(crate) mod git;
pub(crate) mod health;
pub mod hook;
pub(crate) mod hookenv;
pub(crate) mod journal;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod lock;
pub(crate) mod mode;
pub(crate) mod offline;
pub(crate) mod owner;
pub(crate) mod pause;
pub(crate) mod pktline;
pub mod porcelain;
pub(crate) mod process;
pub(crate) mod process_id;
pub(crate) mod proxy;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod queue;
pub(crate) mod reflock;
pub mod refs;
pub(crate) mod repo;
pub(crate) mod resolve;
pub(crate) mod rules;
pub(crate) mod schedule;
pub(crate) mod serve;
pub(crate) mod signals;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod text;
pub(crate) mod unfinished;
pub mod url;
