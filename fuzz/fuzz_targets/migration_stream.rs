#![no_main]
//! QEMU migration streams: the one-pass parser over a pipe-like reader (every event, small
//! caps), then the offline reader on the same bytes as a file (layout, CPU sections decoded
//! by the vmdesc as x86 and as aarch64, VMCOREINFO, reads).
use guestcore::phys::migration::stream::{Limits, Parser};
use guestcore::phys::migration::MigrationFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_sections: 10_000,
        min_page_records: 10_000,
        ..Limits::default()
    };
    let mut p = Parser::new(data, "fuzz").with_limits(limits);
    while let Ok(Some(_)) = p.next() {}
    guestcore_fuzz::with_file(data, |path| {
        if let Ok(m) = MigrationFile::open(path, None) {
            guestcore_fuzz::exercise(&m);
            for c in m.cpu_sections() {
                let _ = guestcore::cpu::vmstate::section_arch(&c.desc);
                let _ = guestcore::cpu::vmstate::decode_cpu(&c.desc, &c.data, path);
                let _ = guestcore::cpu::vmstate::decode_cpu_aarch64(&c.desc, &c.data, path);
            }
        }
    });
});
