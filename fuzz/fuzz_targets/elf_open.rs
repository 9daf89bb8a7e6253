#![no_main]
//! ELF core reader: header, program headers (PN_XNUM), notes, RAM map, reads.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestcore_fuzz::with_file(data, |p| {
        if let Ok(core) = guestcore::phys::elf::ElfCore::open(p) {
            guestcore_fuzz::exercise(&core);
        }
    });
});
