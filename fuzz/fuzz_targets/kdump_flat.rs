#![no_main]
//! The flattened-stream index: the input is wrapped in a valid 4096-byte makedumpfile header,
//! so every run exercises record parsing and the overlapping-record index, then the plain
//! reader over the reassembled view.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = vec![0u8; 4096];
    file[..12].copy_from_slice(b"makedumpfile");
    file[16..24].copy_from_slice(&1u64.to_be_bytes()); // type
    file[24..32].copy_from_slice(&1u64.to_be_bytes()); // version
    file.extend_from_slice(data);
    guestcore_fuzz::with_file(&file, |p| {
        if let Ok(k) = guestcore::phys::kdump::KdumpFile::open(p) {
            guestcore_fuzz::exercise(&k);
        }
    });
});
