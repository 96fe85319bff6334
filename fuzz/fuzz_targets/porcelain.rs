//! Fuzzes the reader of `git push --porcelain` output: never a panic, never an empty
//! ref name in its report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_hooks::porcelain::PushReport;

fuzz_target!(|data: &[u8]| {
    let report = PushReport::parse(&String::from_utf8_lossy(data));
    assert!(report.refs.keys().all(|name| !name.is_empty()));
});
