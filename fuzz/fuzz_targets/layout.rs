#![no_main]
//! `--layout` text of raw images, and the numbers with K/M/G/T suffixes inside it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = guestcore::phys::layout::Layout::parse(text);
        let _ = guestcore::parse_u64(text);
    }
});
