#![no_main]
//! LiME and AVML reader: range headers, the snappy chunk index of compressed ranges, RAM map,
//! reads (each decompressing and CRC-checking a chunk).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestcore_fuzz::with_file(data, |p| {
        if let Ok(img) = guestcore::phys::lime::LimeImage::open(p) {
            guestcore_fuzz::exercise(&img);
        }
    });
});
