#![no_main]
//! kdump reader, plain or flattened (detected from the signature): headers, bitmaps, notes,
//! page descriptors and every page codec on read.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestcore_fuzz::with_file(data, |p| {
        if let Ok(k) = guestcore::phys::kdump::KdumpFile::open(p) {
            guestcore_fuzz::exercise(&k);
            let _ = k.present_ranges().take(64).count();
            let _ = k.present_pages();
        }
    });
});
