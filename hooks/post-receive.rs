//! The `post-receive` hook: see `mirror_hooks::hook`.
fn main() {
    std::process::exit(mirror_hooks::hook::post_receive_main());
}
