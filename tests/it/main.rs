//! Integration tests: real git, real bare repositories, the built hooks.

// Test code states its expectations with unwrap; the library may not.
#![allow(clippy::unwrap_used)]

mod cli;
mod config;
mod crashes;
mod doctor;
mod edit;
mod faults;
mod gitolite;
mod hostile;
mod inputs;
mod install;
mod kills;
mod many;
mod pause;
mod pipes;
mod proxy;
mod pull;
mod pull_fast;
mod push;
mod review14;
mod root;
mod rules;
mod serve;
mod servers;
mod sha256;
mod torture;
mod transports;
mod twophase;
mod upstream;
mod util;
