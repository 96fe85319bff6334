//! Integration tests: real git, real bare repositories, the built hooks.

mod config;
mod install;
mod proxy;
mod push;
mod util;
