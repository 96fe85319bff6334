//! mirror-hooks: Git server-side hooks that keep a bare repository mirrored with other
//! Git servers in both directions without races. The binaries (`pre-receive`,
//! `post-receive`, `git-mirror`) are thin; everything real lives in these modules.

pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod git;
pub mod hook;
pub mod keys;
pub mod ledger;
pub mod lock;
pub mod offline;
pub mod owner;
pub mod porcelain;
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
pub mod text;
pub mod url;
