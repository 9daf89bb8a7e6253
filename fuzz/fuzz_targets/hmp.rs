#![no_main]
//! HMP `info registers -a` text.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cpus) = guestcore::cpu::hmp::parse_info_registers(text) {
            for c in &cpus {
                let _ = guestcore::paging::PagingMode::from_cpu(c);
            }
        }
    }
});
