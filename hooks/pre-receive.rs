//! The `pre-receive` hook: see `mirror_hooks::proxy`.
fn main() {
    std::process::exit(mirror_hooks::hook::pre_receive_main());
}
