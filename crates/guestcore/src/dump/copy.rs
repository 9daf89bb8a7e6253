//! Copies guest-physical memory into the output file: big chunks, positioned writes, holes for
//! zeros.
//!
//! Each chunk (at most [`CHUNK`] bytes, never crossing a RAM range) comes from
//! [`PhysMemory::slice`] when the source can lend it (a mapped file: no copy at all), else
//! through [`PhysMemory::read_at`] into one reusable buffer. Zero runs of at least [`MIN_HOLE`]
//! bytes are not written: the file is fresh, so they read back as zeros and stay sparse. Shorter
//! zero gaps are written with their neighbours, so a chunk costs a handful of writes at most,
//! never one per page. After each chunk the source is told it may drop those pages from the
//! process ([`PhysMemory::release`]), so a mapped 16 GiB input does not leave 16 GiB resident.

use super::elf_layout::DataRun;
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::{Error, Result};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Bytes read and written per step.
pub(crate) const CHUNK: usize = 8 << 20;
/// Granularity of the zero test.
const BLOCK: usize = 4096;
/// Shortest zero run that is left as a hole rather than written.
pub(crate) const MIN_HOLE: usize = 64 << 10;

/// Counters of one copy.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CopyStats {
    /// Bytes handed to `write`.
    pub written: u64,
    /// Bytes left as holes because they are zero.
    pub skipped_zero: u64,
}

/// True when every byte is zero. ORs 32 words at a time without an early exit inside the
/// block, which the compiler turns into vector code; stops at the first non-zero block.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(256);
    for block in &mut blocks {
        let mut acc = 0u64;
        for w in block.chunks_exact(8) {
            acc |= u64::from_ne_bytes(w.try_into().expect("8-byte chunk"));
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// The ranges of `data` to write: non-zero [`BLOCK`]s, joined across zero gaps shorter than
/// [`MIN_HOLE`].
pub(crate) fn nonzero_extents(data: &[u8]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + BLOCK).min(data.len());
        if !is_zero(&data[pos..end]) {
            match out.last_mut() {
                Some(last) if pos - last.end < MIN_HOLE => last.end = end,
                _ => out.push(pos..end),
            }
        }
        pos = end;
    }
    out
}

/// Copies the physical memory of `run` to its place in `file`.
pub(crate) fn copy_run(
    mem: &dyn PhysMemory,
    file: &File,
    file_name: &str,
    run: &DataRun,
    buf: &mut Vec<u8>,
    progress: &dyn Progress,
    stats: &mut CopyStats,
) -> Result<()> {
    let mut addr = run.phys.start;
    while addr < run.phys.end {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let ram = mem.ram();
        let range = ram
            .index_of(addr)
            .map(|i| ram.ranges()[i])
            .ok_or(Error::NotInMemory {
                addr,
                len: run.phys.end - addr,
            })?;
        let n = (run.phys.end.min(range.end) - addr).min(CHUNK as u64) as usize;
        let data: &[u8] = match mem.slice(addr, n as u64) {
            Some(s) => s,
            None => {
                buf.resize(n, 0);
                mem.read_at(addr, &mut buf[..n])?;
                &buf[..n]
            }
        };
        let offset = run.offset + (addr - run.phys.start);
        let mut written = 0;
        for r in nonzero_extents(data) {
            written += r.len() as u64;
            file.write_all_at(&data[r.clone()], offset + r.start as u64)
                .map_err(|e| Error::io(format!("writing {file_name}"), e))?;
        }
        stats.written += written;
        stats.skipped_zero += n as u64 - written;
        // Done with these pages: a mapped source drops them from our RSS (peak memory stays
        // O(chunk), not O(guest RAM)).
        mem.release(addr, n as u64);
        progress.advance(n as u64);
        addr += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_test() {
        let mut v = vec![0u8; 10_000];
        assert!(is_zero(&v));
        assert!(is_zero(&[]));
        for i in [0, 255, 256, 9_727, 9_999] {
            v[i] = 1;
            assert!(!is_zero(&v), "byte {i}");
            v[i] = 0;
        }
    }

    #[test]
    fn extents_join_short_gaps_and_skip_long_ones() {
        let mut v = vec![0u8; 1 << 20];
        assert!(nonzero_extents(&v).is_empty());
        v[5] = 1; // page 0
        v[4 * BLOCK + 1] = 1; // page 4: gap of 3 pages, joined
        let far = 4 * BLOCK + MIN_HOLE + BLOCK;
        v[far] = 1; // a gap of MIN_HOLE: left as a hole
        v[(1 << 20) - 1] = 1;
        assert_eq!(
            nonzero_extents(&v),
            vec![0..5 * BLOCK, far..far + BLOCK, (1 << 20) - BLOCK..1 << 20]
        );
        let odd = vec![7u8; BLOCK + 3];
        assert_eq!(nonzero_extents(&odd), vec![0..BLOCK + 3]);
    }
}
