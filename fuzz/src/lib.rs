//! Shared by the fuzz targets: file-based readers (ELF, kdump) take a path, so the input is
//! written to one reused temporary file; and every opened source is exercised the same way
//! (RAM map, a few reads) so a bad header that opens cleanly still has its reads checked.

use guestcore::phys::PhysMemory;
use std::io::{Seek, Write};

/// Writes `data` to this thread's reused temporary file (in /dev/shm when it exists) and
/// returns its path.
pub fn with_file<R>(data: &[u8], f: impl FnOnce(&std::path::Path) -> R) -> R {
    thread_local! {
        static FILE: std::cell::RefCell<Option<tempfile::NamedTempFile>> =
            const { std::cell::RefCell::new(None) };
    }
    FILE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let file = slot.get_or_insert_with(|| {
            let shm = std::path::Path::new("/dev/shm");
            if shm.is_dir() {
                tempfile::NamedTempFile::new_in(shm)
            } else {
                tempfile::NamedTempFile::new()
            }
            .expect("temporary file")
        });
        let h = file.as_file_mut();
        h.set_len(0).expect("truncate");
        h.rewind().expect("rewind");
        h.write_all(data).expect("write");
        f(file.path())
    })
}

/// Reads the first bytes of each of the first RAM ranges, and one page across each start.
pub fn exercise(mem: &dyn PhysMemory) {
    let ram = mem.ram();
    let _ = ram.total();
    let mut buf = [0u8; 4096 + 16];
    for r in ram.ranges().iter().take(16) {
        let _ = mem.read_at(r.start, &mut buf[..16]);
        let _ = mem.read_at(r.start.saturating_sub(8), &mut buf);
        let _ = mem.slice(r.start, r.len().min(4096));
        let _ = mem.is_ram(r.start, r.len());
        // The data runs passes over RAM skip holes by (bounded by what the source holds).
        let mut n = 0;
        mem.data_runs(r.start, r.end, &mut |s, e| {
            assert!(r.start <= s && s < e && e <= r.end, "run {s:#x}-{e:#x} outside {r:?}");
            n += 1;
            n < 1000
        });
    }
}
