//! Copies guest-physical memory into the output file: big chunks, positioned writes, holes for
//! zeros.
//!
//! Each chunk (at most [`CHUNK`] bytes, never crossing a RAM range) comes from
//! [`PhysMemory::slice`] when the source can lend it (a mapped file: no copy at all), else
//! through [`PhysMemory::read_at`] into one reusable buffer. Zero runs of at least [`MIN_HOLE`]
//! bytes are not written: the file is fresh, so they read back as zeros and stay sparse. Shorter
//! zero gaps are written with their neighbours, so a chunk costs a handful of writes at most,
//! never one per page. The holes of a sparse source file are skipped unread
//! ([`crate::phys::holes`]). When the source is a plain file ([`PhysMemory::file_extent`]), the
//! non-zero extents are copied by the kernel, file to file (`copy_file_range`), rather than
//! written from the mapping; where the kernel cannot do that for these two files the copy falls
//! back to `pwrite` for the rest of the dump. Each chunk's writeback to disk is started right away
//! (`sync_file_range`), so the disk writes while the next chunks are copied and the final
//! `fsync` has little left to wait for. After each chunk the source is told it may drop those pages from the
//! process ([`PhysMemory::release`]), so a mapped 16 GiB input does not leave 16 GiB resident.

use super::elf_layout::DataRun;
use super::writeback::start_writeback;
use crate::phys::{is_zero, PhysMemory};
use crate::progress::Progress;
use crate::sys;
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
    /// Of `written`, the bytes the kernel copied file to file (`copy_file_range`).
    pub kernel_copied: u64,
    /// Set once `copy_file_range` failed as unsupported: `pwrite` from then on.
    pub no_kernel_copy: bool,
}

/// Copies up to `len` bytes from `src` at `src_off` to `dst` at `dst_off` with
/// `copy_file_range`, retrying short copies. Returns how many bytes were copied: fewer than
/// `len` when the kernel cannot copy between these files (`EINVAL`, `EXDEV`, `ENOSYS`,
/// `EOPNOTSUPP`, …) or the source ends early; the caller writes the rest itself.
fn kernel_copy(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: usize,
) -> std::io::Result<usize> {
    let mut done = 0usize;
    while done < len {
        let (Ok(mut off_in), Ok(mut off_out)) = (
            libc::loff_t::try_from(src_off + done as u64),
            libc::loff_t::try_from(dst_off + done as u64),
        ) else {
            return Ok(done);
        };
        let e = match sys::copy_file_range(src, &mut off_in, dst, &mut off_out, len - done) {
            Ok(0) => {
                // The source ended (truncated underneath us): let the caller decide.
                return Ok(done);
            }
            Ok(n) => {
                done += n;
                continue;
            }
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(
                libc::EINVAL
                | libc::EXDEV
                | libc::ENOSYS
                | libc::EOPNOTSUPP
                | libc::EBADF
                | libc::EPERM
                | libc::ETXTBSY,
            ) => return Ok(done),
            _ => return Err(e),
        }
    }
    Ok(done)
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
        // Only the data runs of the source can be non-zero: the holes of a sparse source's
        // file, the pages a migration stream never sent, are not read at all (reading them
        // would materialise zero pages, or fill them one by one).
        let mut runs: Vec<Range<usize>> = Vec::new();
        crate::phys::holes::for_each_data_run(mem, addr, addr + n as u64, |s, e| {
            runs.push((s - addr) as usize..(e - addr) as usize);
            true
        });
        if runs.is_empty() {
            // Nothing to read up to the next data run: go there at once (a declared but
            // unfilled terabyte costs one question, not one per chunk).
            let limit = run.phys.end.min(range.end);
            let mut next = limit;
            crate::phys::holes::for_each_data_run(mem, addr + n as u64, limit, |s, _| {
                next = s;
                false
            });
            stats.skipped_zero += next - addr;
            progress.advance(next - addr);
            addr = next;
            continue;
        }
        let data: &[u8] = match mem.slice(addr, n as u64) {
            Some(s) => s,
            None => {
                // Bytes outside the runs are stale: nothing below looks at them.
                buf.resize(n, 0);
                for r in &runs {
                    mem.read_at(addr + r.start as u64, &mut buf[r.clone()])?;
                }
                &buf[..n]
            }
        };
        let offset = run.offset + (addr - run.phys.start);
        let mut written = 0;
        // A write from a mapped input cut under it fails with EFAULT (a system call is not
        // sent SIGBUS): that is the cut, named, not an error of the output.
        let io_err = |e| {
            mem.intact()
                .err()
                .unwrap_or_else(|| Error::io(format!("writing {file_name}"), e))
        };
        let extents: Vec<Range<usize>> = runs
            .iter()
            .flat_map(|r| {
                nonzero_extents(&data[r.clone()])
                    .into_iter()
                    .map(|x| x.start + r.start..x.end + r.start)
            })
            .collect();
        for r in extents {
            written += r.len() as u64;
            let mut done = 0;
            if !stats.no_kernel_copy {
                if let Some((src, src_off)) = mem.file_extent(addr + r.start as u64, r.len() as u64)
                {
                    done = kernel_copy(src, src_off, file, offset + r.start as u64, r.len())
                        .map_err(io_err)?;
                    stats.kernel_copied += done as u64;
                    stats.no_kernel_copy = done < r.len();
                }
            }
            file.write_all_at(
                &data[r.start + done..r.end],
                offset + (r.start + done) as u64,
            )
            .map_err(io_err)?;
        }
        stats.written += written;
        start_writeback(file, offset, n as u64);
        stats.skipped_zero += n as u64 - written;
        // Done with these pages: a mapped source drops them from our RSS (peak memory stays
        // O(chunk), not O(guest RAM)).
        mem.release(addr, n as u64);
        // A file cut while this chunk was read gave zeros that are not the guest's.
        mem.intact()?;
        progress.advance(n as u64);
        addr += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_copy_copies_and_reports_unsupported() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
        std::io::Write::write_all(&mut src, &data).unwrap();
        let dst = tempfile::tempfile().unwrap();
        assert_eq!(kernel_copy(&src, 1000, &dst, 5, 200_000).unwrap(), 200_000);
        let mut back = vec![0u8; 200_000];
        dst.read_exact_at(&mut back, 5).unwrap();
        assert!(back == data[1000..201_000]);
        // Past the end of the source: a short count, not an error.
        assert_eq!(kernel_copy(&src, 299_000, &dst, 0, 5000).unwrap(), 1000);
        // Overlapping ranges of one file: EINVAL, reported as nothing copied.
        assert_eq!(kernel_copy(&src, 0, &src, 100, 4096).unwrap(), 0);
    }

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
