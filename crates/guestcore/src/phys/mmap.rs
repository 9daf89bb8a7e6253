//! Every memory mapping guestcore makes of a file, and the one `madvise` it sends: the `unsafe`
//! of mapping lives here, so the readers above it are safe code.
//!
//! # The mmap contract
//!
//! A mapping shows the file's current bytes, not a copy taken at open. If another process
//! **changes** a mapped file, later reads see the new bytes (a `&[u8]` borrowed from the map
//! may observe them change, which Rust's aliasing rules do not allow for a `&[u8]`); if it
//! **truncates** the file, touching a page past the new end raises `SIGBUS` and the process
//! dies. `memmap2` marks mapping `unsafe` for exactly this reason.
//!
//! guestcore accepts it for its inputs because they are finished files: a dump, an image, a
//! saved migration stream, opened read-only and never written while a command runs. A file
//! being rewritten in place while guestcore reads it is not a supported input (the result is
//! undefined, as for `cp` or `crash`); the copy-based readers (`read_at`) of the same sources
//! would give torn data in that case too. Live guest RAM, which *does* change underneath, is
//! never mapped here as a slice: [`map_shared_ram`] returns a raw mapping that is only copied
//! out of through pointers ([`super::live`]).

use crate::addr::PAGE_SIZE;
use crate::{Error, Result};
use memmap2::{Mmap, MmapOptions, MmapRaw};
use std::fs::File;
use std::path::Path;

/// Opens `path` read-only and maps all of it (a private, read-only mapping), for readers that
/// borrow page tables and pages straight from the page cache. Returns the open file (for
/// `copy_file_range` and the like) and the mapping, `None` for an empty file (mapping zero
/// bytes is an error on most systems). See the module docs for what a file changed or
/// truncated while mapped does.
pub(crate) fn map_file(path: &Path) -> Result<(File, Option<Mmap>)> {
    let file = File::open(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("{}: stat", path.display()), e))?
        .len();
    if len == 0 {
        return Ok((file, None));
    }
    // SAFETY: a read-only private mapping of a file opened read-only. Its bytes may change
    // or vanish only if another process rewrites or truncates the file while it is mapped,
    // which guestcore's inputs are defined not to do (the module docs state that contract).
    let map = unsafe { Mmap::map(&file) }
        .map_err(|e| Error::io(format!("{}: mmap", path.display()), e))?;
    Ok((file, Some(map)))
}

/// Maps the memory-backend file of a running guest read-only as raw memory (no `&[u8]` over
/// it can be formed: the guest writes it concurrently; see [`super::live::copy`]).
/// `MAP_POPULATE`: the whole file is faulted in now, while the guest still runs, not during
/// the pause (a cold 1 GiB backend costs seconds of page faults on the first pass).
pub(crate) fn map_shared_ram(path: &Path) -> Result<MmapRaw> {
    let file = File::open(path).map_err(|e| {
        Error::io(
            format!("{}: open the guest's memory-backend file", path.display()),
            e,
        )
    })?;
    MmapOptions::new()
        .populate()
        .map_raw_read_only(&file)
        .map_err(|e| Error::io(format!("{}: mmap", path.display()), e))
}

/// How far around a faulting page the kernel maps pages already in the page cache
/// (`fault_around_bytes`, 64 KiB by default): a release covers that much more on each side,
/// or a reader that faulted in the last page of a range would leave up to 15 more mapped.
const FAULT_AROUND: u64 = 64 * 1024;

/// Drops the whole pages of `map[offset..offset + len]`, and the pages the kernel's
/// fault-around may have mapped with them ([`FAULT_AROUND`] on each side), from this process's
/// resident set (`MADV_DONTNEED`); they stay in the page cache and fault back in on the next
/// access. Errors are ignored: this is only a hint.
pub(crate) fn release_mapped(map: &Mmap, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    let start = offset
        .saturating_sub(FAULT_AROUND)
        .next_multiple_of(PAGE_SIZE);
    let end = offset
        .saturating_add(len)
        .saturating_add(FAULT_AROUND)
        .min(map.len() as u64)
        & !(PAGE_SIZE - 1);
    if start >= end {
        return;
    }
    // SAFETY: `map` is a read-only private file mapping (`Mmap`, never written, so it holds no
    // copy-on-write pages). MADV_DONTNEED on such a mapping only removes page-table entries:
    // every later access — through any `&[u8]` still borrowed from it too — faults the same
    // file bytes back in, so no reference ever observes different contents. (That the file is
    // not modified underneath is already assumed by the mapping itself: see the module docs.)
    // The range is inside the mapping and page-aligned, as madvise requires.
    let _ = unsafe {
        map.unchecked_advise_range(
            memmap2::UncheckedAdvice::DontNeed,
            start as usize,
            (end - start) as usize,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn empty_file_has_no_mapping() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let (_, map) = map_file(f.path()).unwrap();
        assert!(map.is_none());
        let mut f = f;
        f.write_all(b"abc").unwrap();
        let (file, map) = map_file(f.path()).unwrap();
        assert_eq!(&map.unwrap()[..], b"abc");
        assert_eq!(file.metadata().unwrap().len(), 3);
        assert!(map_file(Path::new("/nonexistent/guestcore")).is_err());
    }
}
