#![no_main]
//! An input cut while it is read: the first 4 bytes (little-endian) say where the file is cut,
//! the rest is the file. It is opened by its magic (raw, ELF, kdump, LiME/AVML, migration
//! stream), cut to that length (modulo its size plus one), then read: no signal may escape
//! (a SIGBUS from a mapped page past the new end is guestcore's to handle), and a mapped
//! input that is now shorter must report the cut (`PhysMemory::intact`) instead of passing
//! its zeros off as the guest's.
use guestcore::image::{GuestImage, ImageFormat, OpenOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cut, file)) = data.split_first_chunk::<4>() else {
        return;
    };
    let cut = u64::from(u32::from_le_bytes(*cut)) % (file.len() as u64 + 1);
    guestcore_fuzz::with_file(file, |path| {
        let Ok(img) = GuestImage::open(path, &OpenOptions::default()) else {
            return;
        };
        let mapped = matches!(
            img.format,
            ImageFormat::Raw
                | ImageFormat::Elf { .. }
                | ImageFormat::Lime { .. }
                | ImageFormat::Migration { .. }
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("reopen the input")
            .set_len(cut)
            .expect("cut the input");
        let mem = &*img.memory;
        guestcore_fuzz::exercise(mem);
        // Every page of the first 256 of RAM, so most cuts are crossed by a read.
        let mut page = [0u8; 4096];
        let pages = mem
            .ram()
            .ranges()
            .iter()
            .flat_map(|r| (r.start..r.end).step_by(4096))
            .take(256);
        for a in pages {
            let _ = mem.read_at(a, &mut page);
            let _ = mem.slice(a, 4096).map(|s| s.iter().fold(0u8, |x, b| x ^ b));
        }
        let intact = mem.intact();
        if mapped && cut < file.len() as u64 {
            assert!(
                intact.is_err(),
                "{:?} cut from {} to {cut} bytes reported intact",
                img.format,
                file.len()
            );
        }
    });
});
