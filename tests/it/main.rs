//! Integration tests: real git, real bare repositories, the built hooks.

mod cli;
mod config;
mod crashes;
mod faults;
mod inputs;
mod install;
mod kills;
mod proxy;
mod pull;
mod push;
mod servers;
mod torture;
mod transports;
mod util;
