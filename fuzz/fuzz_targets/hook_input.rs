//! Fuzzes the parser of a hook's standard input (`OLD NEW REF` lines): it must never
//! panic, and whatever it accepts must be a valid ref name with ids of equal length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_hooks::refs::{check_ref_name, parse_updates};

fuzz_target!(|data: &[u8]| {
    if let Ok(updates) = parse_updates(data) {
        for u in updates {
            assert!(check_ref_name(&u.name).is_ok());
            assert_eq!(u.old.len(), u.new.len());
        }
    }
});
