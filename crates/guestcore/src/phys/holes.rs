//! The parts of a range of guest RAM that can hold anything but zeros, from the holes of the
//! file behind it.
//!
//! A sparse input (guestcore's own physical ELF, `cp --sparse` images, QEMU's files after
//! `fallocate --dig-holes`) keeps most of a big idle guest as file holes. Reading a hole
//! through the file's mapping makes the kernel materialise a zero page for every 4 KiB of it:
//! a page-start scan of a 16 GiB sparse file then costs seconds and, until released, 16 GiB
//! of resident pages. Asking the file system (`SEEK_DATA`/`SEEK_HOLE`) where its data lies
//! skips all of that for passes that only look for non-zero content.
//!
//! A source whose file is not a flat image of RAM answers the same question from its own index
//! ([`PhysMemory::data_runs`]): a QEMU migration file names the pages its records hold, so a
//! block it declares but never fills is skipped the same way as a hole of a raw file.

use super::PhysMemory;

/// Calls `f` with each `[start, end)` of `[start, end)` that may hold non-zero bytes, in
/// address order, as the source says ([`PhysMemory::data_runs`]). Bytes outside the runs are
/// zero. Stops early when `f` returns `false`; returns `false` then.
pub(crate) fn for_each_data_run(
    mem: &(impl PhysMemory + ?Sized),
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, u64) -> bool,
) -> bool {
    if start >= end {
        return true;
    }
    mem.data_runs(start, end, &mut f)
}

/// [`PhysMemory::data_runs`] by default: the data extents of the source's file where the range
/// lies in one ([`PhysMemory::file_extent`]), else the whole range.
pub(crate) fn file_data_runs(
    mem: &(impl PhysMemory + ?Sized),
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, u64) -> bool,
) -> bool {
    if start >= end {
        return true;
    }
    let Some((file, offset)) = mem.file_extent(start, end - start) else {
        return f(start, end);
    };
    let file_end = offset + (end - start);
    let mut at = offset;
    while at < file_end {
        let data = match crate::sys::seek_data(file, at) {
            Ok(Some(d)) => d,
            Ok(None) => return true,
            // A file system that cannot tell: all of the rest may be data.
            Err(_) => at,
        };
        if data >= file_end {
            return true;
        }
        let hole = match crate::sys::seek_hole(file, data) {
            Ok(Some(h)) if h > data => h.min(file_end),
            _ => file_end,
        };
        if !f(start + (data - offset), start + (hole - offset)) {
            return false;
        }
        at = hole;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::raw::RawImage;
    use std::os::unix::fs::FileExt;

    /// Data written at 1 MiB and at 3 MiB of a 4 MiB sparse file comes back as (at least)
    /// those extents, and nothing outside them; a memory without a file is one run.
    #[test]
    fn data_runs_of_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.raw");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_all_at(&[7u8; 8192], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 4096], 3 << 20).unwrap();
        drop(f);
        let raw = RawImage::open(&path, None).unwrap();
        let mut runs = Vec::new();
        for_each_data_run(&raw, 0, 4 << 20, |s, e| {
            runs.push((s, e));
            true
        });
        assert!(!runs.is_empty());
        let covered = |a: u64| runs.iter().any(|&(s, e)| s <= a && a < e);
        assert!(covered(1 << 20) && covered((1 << 20) + 8191) && covered(3 << 20));
        // Every byte outside the runs reads as zero.
        let data = std::fs::read(&path).unwrap();
        for (i, &b) in data.iter().enumerate() {
            assert!(b == 0 || covered(i as u64), "byte {i:#x} outside the runs");
        }
        // On a file system with holes (ext4, tmpfs, xfs, btrfs) most of the file is skipped.
        let total: u64 = runs.iter().map(|(s, e)| e - s).sum();
        assert!(total < 2 << 20, "runs {runs:x?}");
        // A sub-range, and stopping early.
        let mut first = None;
        assert!(!for_each_data_run(&raw, 2 << 20, 4 << 20, |s, e| {
            first = Some((s, e));
            false
        }));
        assert!(first.is_some_and(|(s, _)| (2 << 20..=3 << 20).contains(&s)));
        let mem = crate::phys::VecMemory::from_blocks(vec![(0, vec![0u8; 8192])]).unwrap();
        let mut all = Vec::new();
        for_each_data_run(&mem, 0, 8192, |s, e| {
            all.push((s, e));
            true
        });
        assert_eq!(all, vec![(0, 8192)]);
    }
}
