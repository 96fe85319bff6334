//! The `proc-receive` hook: see `mirror_hooks::twophase`.
fn main() {
    std::process::exit(mirror_hooks::hook::proc_receive_main());
}
