//! Fuzzes URL checking and masking: no panic, no accepted URL that starts with '-' or
//! names a command-running transport, and masking is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_hooks::url::{mask_text, RemoteUrl};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(url) = RemoteUrl::parse(&text, Path::new("/srv/git/p.git")) {
        let given = url.for_git();
        assert!(!given.starts_with('-'));
        assert!(!given.starts_with("ext::"));
        let _ = url.ssh_host();
        let _ = url.origin();
        let _ = url.embedded_credentials();
    }
    let masked = mask_text(&text);
    assert_eq!(mask_text(&masked), masked);
});
