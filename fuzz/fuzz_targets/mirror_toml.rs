//! Fuzzes the mirror.toml loader: an error names a line, and whatever loads gives git
//! nothing that could pass for an option.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_hooks::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/srv/git/p.git/mirror.toml");
    match Config::parse(text, path, Path::new("/srv/git/p.git")) {
        Ok(config) => {
            for url in config
                .upstream
                .iter()
                .map(|u| &u.url)
                .chain(config.pull.iter().map(|p| &p.url))
                .chain(config.push.iter().map(|m| &m.url))
            {
                assert!(!url.for_git().starts_with('-'));
            }
        }
        Err(e) => assert!(e.line >= 1),
    }
});
