//! The one copy out of live guest RAM. A running guest writes its RAM while we read it, so
//! no `&[u8]` may ever be formed over it (the compiler may assume a shared reference's bytes
//! do not change): bytes leave the mapping only through [`copy_from_live`], a raw-pointer
//! copy into the caller's buffer, as rust-vmm's vm-memory does. A page the guest writes
//! during the copy may come out torn; a paused guest (`--pause`) writes nothing.

use memmap2::MmapRaw;

/// Copies `buf.len()` bytes at `offset` of the live mapping `map` into `buf`. Returns false
/// (and copies nothing) when they do not all lie inside the mapping.
pub(super) fn copy_from_live(map: &MmapRaw, offset: u64, buf: &mut [u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    if !start
        .checked_add(buf.len())
        .is_some_and(|end| end <= map.len())
    {
        return false;
    }
    // SAFETY: `[start, start + buf.len())` lies inside the mapping (checked above), which is
    // alive for the borrow of `map`. The guest may write those bytes concurrently, so no
    // reference to them is formed: this is a plain byte copy from raw pointers into `buf`,
    // which is our own memory and does not overlap the read-only mapping. The file is QEMU's
    // RAM backend; QEMU never truncates it while the guest runs (a file truncated by someone
    // else would raise SIGBUS, as with any mapped file: see `phys::mmap`).
    unsafe {
        std::ptr::copy_nonoverlapping(map.as_ptr().add(start), buf.as_mut_ptr(), buf.len());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn copies_inside_the_mapping_only() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1, 2, 3, 4, 5]).unwrap();
        let map = crate::phys::map_shared_ram(f.path()).unwrap();
        let mut b = [0u8; 3];
        assert!(copy_from_live(&map, 2, &mut b));
        assert_eq!(b, [3, 4, 5]);
        assert!(!copy_from_live(&map, 3, &mut b));
        assert!(!copy_from_live(&map, u64::MAX, &mut b));
    }
}
