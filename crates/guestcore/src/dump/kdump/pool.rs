//! The parallel half of the kdump writer: reading, zero-checking and compressing one window of
//! pages on the worker threads, each work item a [`Chunk`] of consecutive pages stored back to
//! back in its own reused buffer (no allocation per page).
//!
//! A source backed by a file ([`PhysMemory::file_extent`]: raw images, ELF cores, LiME,
//! QEMU migration files) is read one data extent of a run of consecutive pages at a time, and
//! the pages in the file's holes are zero pages without a read (`SEEK_DATA`/`SEEK_HOLE`):
//! guestcore's own physical ELF leaves zero pages as holes, and a filtered dump of a 4 GiB
//! guest keeps ~28k of them. A data extent is compressed straight from the file's mapping
//! when the source has one, else read with `pread`. The mapping costs a page fault per 16
//! pages (the kernel's fault-around) and a release per window; `pread` costs a kernel copy of
//! every page, which for the 32k pages a `-d 31` dump of the 4 GiB guest compresses was
//! 8–15 % more wall time and ~9 % more CPU (medians of 15–21 alternating runs). Other sources
//! lend slices or copy pages one at a time.
//!
//! A "page" here is one block of the file ([`BlockSize`]: the dumped kernel's page); a block
//! partly outside RAM is read part by part, its non-RAM bytes zeros.

use super::blocks::{BlockSize, FRAME};
use crate::codec::{Compression, PageCompressor};
use crate::phys::{is_zero, PhysMemory};
use crate::{Error, Result};
use rayon::prelude::*;
use std::cell::RefCell;

/// Bytes per parallel work item: 128 pages of 4 KiB, 32 of 16 KiB, 8 of 64 KiB.
const CHUNK_BYTES: u64 = 128 * FRAME;

/// Blocks per parallel work item.
pub(super) fn chunk_blocks(block: BlockSize) -> usize {
    (CHUNK_BYTES / block.bytes()).max(1) as usize
}

/// The stored form of up to [`chunk_blocks`] consecutive blocks of a window.
pub(super) struct Chunk {
    /// Per page: stored size (0: the shared zero page) and descriptor flags.
    pub entries: Vec<(u32, u32)>,
    /// The stored pages, back to back. Its capacity is the worst case, but memory is only
    /// touched as output is made, and it is reused for later windows (filling the worst case
    /// up front cost a page fault per 4 KiB of never-used buffer).
    data: Vec<u8>,
}

impl Chunk {
    pub(super) fn new(block: BlockSize) -> Self {
        Chunk {
            entries: Vec::with_capacity(chunk_blocks(block)),
            data: Vec::with_capacity(chunk_blocks(block) * block.size()),
        }
    }

    /// The stored pages, back to back.
    pub(super) fn stored(&self) -> &[u8] {
        &self.data
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.data.clear();
    }
}

/// The pages of one window, their stored forms, and how storing each chunk went.
pub(super) type Done = (Vec<u64>, Vec<Chunk>, Vec<Result<()>>);

/// Compresses windows of `memory`'s pages on `pool` (rayon's global pool when `None`).
#[derive(Clone, Copy)]
pub(super) struct PagePool<'a> {
    pub memory: &'a dyn PhysMemory,
    pub kind: Compression,
    pub block: BlockSize,
    pub pool: Option<&'a rayon::ThreadPool>,
}

impl PagePool<'_> {
    /// Stores the blocks `pfns` into `chunks` (one per [`chunk_blocks`] pfns), in parallel.
    pub(super) fn store(&self, pfns: Vec<u64>, mut chunks: Vec<Chunk>) -> Done {
        let mut work = || -> Vec<Result<()>> {
            pfns.par_chunks(chunk_blocks(self.block))
                .zip(chunks.par_iter_mut())
                .map(|(p, c)| store_chunk(self.memory, (self.kind, self.block), p, c))
                .collect()
        };
        let results = match self.pool {
            Some(p) => p.install(work),
            None => work(),
        };
        (pfns, chunks, results)
    }
}

struct Worker {
    comp: PageCompressor,
    block: BlockSize,
    /// One block.
    buf: Vec<u8>,
    /// Pages read from the source's file, up to a chunk's.
    run: Vec<u8>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Block `pfn` (`buf.len()` bytes), its bytes outside RAM zeros.
fn read_page<'a>(mem: &'a dyn PhysMemory, pfn: u64, buf: &'a mut [u8]) -> Result<&'a [u8]> {
    let len = buf.len() as u64;
    let addr = pfn * len;
    if let Some(s) = mem.slice(addr, len) {
        return Ok(s);
    }
    if mem.is_ram(addr, len) {
        mem.read_at(addr, &mut buf[..])?;
    } else {
        buf.fill(0);
        for part in mem.ram().ram_parts(addr, len) {
            let o = (part.start - addr) as usize;
            mem.read_at(part.start, &mut buf[o..o + part.len() as usize])?;
        }
    }
    Ok(&buf[..])
}

/// Tells the source it may drop the pages of `pfns` (sorted) from this process: a mapped input
/// then stays O(window) resident instead of growing to the whole guest.
///
/// One call covers all of a window's pfns in one RAM range, the frames left out between them
/// included: those were never mapped, so the span costs the kernel nothing more, while a call
/// per run of kept frames (a filtered dump has hundreds per window) cost a system call and a
/// TLB shootdown each. A call never crosses from one RAM range into the next, as sources
/// release within the range that holds the address.
pub(super) fn release_pfns(mem: &dyn PhysMemory, block: BlockSize, pfns: &[u64]) {
    let ram = mem.ram();
    let bs = block.bytes();
    let mut i = 0;
    while i < pfns.len() {
        let start = pfns[i];
        let range = ram.index_of(start * bs);
        let mut end = start + 1;
        i += 1;
        while i < pfns.len()
            && (pfns[i] == end || (range.is_some() && ram.index_of(pfns[i] * bs) == range))
        {
            end = pfns[i] + 1;
            i += 1;
        }
        mem.release(start * bs, (end - start) * bs);
    }
}

/// Reads, zero-checks and compresses the blocks `pfns` into `chunk`. Runs of consecutive
/// pfns that lie in the source's file are read with `pread`, their holes not at all
/// ([`store_file_run`]); other blocks (those partly outside RAM among them) one at a time
/// through the source.
fn store_chunk(
    mem: &dyn PhysMemory,
    (kind, block): (Compression, BlockSize),
    pfns: &[u64],
    chunk: &mut Chunk,
) -> Result<()> {
    chunk.clear();
    let bs = block.bytes();
    with_worker(kind, block, |w| {
        let mut i = 0;
        while i < pfns.len() {
            let mut j = i + 1;
            while j < pfns.len() && pfns[j] == pfns[j - 1] + 1 {
                j += 1;
            }
            if bs > FRAME {
                // A larger block may be partly RAM at either end of the run (RAM not aligned
                // to it): those go one at a time below, the rest from the file.
                if i + 1 < j && !mem.ram().contains(pfns[i] * bs, bs) {
                    j = i + 1;
                } else if i + 1 < j && !mem.ram().contains(pfns[j - 1] * bs, bs) {
                    j -= 1;
                }
            }
            let (addr, len) = (pfns[i] * bs, (j - i) as u64 * bs);
            if let Some((file, offset)) = mem.file_extent(addr, len) {
                store_file_run(mem, (addr, len), (file, offset), w, kind, chunk)?;
                i = j;
                continue;
            }
            for &pfn in &pfns[i..j] {
                let page = read_page(mem, pfn, &mut w.buf).map_err(|e| match e {
                    Error::NotInMemory { .. } => {
                        Error::Unsupported(format!("cannot read pfn {pfn:#x} of the source: {e}"))
                    }
                    e => e,
                })?;
                store_page(&mut w.comp, kind, page, chunk);
            }
            i = j;
        }
        Ok(())
    })
}

/// Stores the whole blocks of `[addr, addr + len)`, which lie in the source's file: the blocks
/// inside a hole of the file are zero pages with nothing read
/// ([`crate::phys::holes::for_each_data_run`]), the others are compressed from the source's
/// mapping ([`PhysMemory::slice`]) or, without one, read with one `pread` per data extent.
///
/// `(file, offset)` is where `addr` lies ([`PhysMemory::file_extent`] of the whole run).
fn store_file_run(
    mem: &dyn PhysMemory,
    (addr, len): (u64, u64),
    (file, offset): (&std::fs::File, u64),
    w: &mut Worker,
    kind: Compression,
    chunk: &mut Chunk,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let end = addr + len;
    let bs = w.block.bytes();
    // The next page to store.
    let mut next = addr;
    let mut failed = None;
    crate::phys::holes::for_each_data_run(mem, addr, end, |s, e| {
        // Pages that end before the extent are zero; those it touches are read.
        let first = addr + (s - addr) / bs * bs;
        let last = addr + (e - addr).div_ceil(bs) * bs;
        while next < first {
            chunk.entries.push((0, 0));
            next += bs;
        }
        if next < last {
            let n = (last - next) as usize;
            if let Some(pages) = mem.slice(next, n as u64) {
                for page in pages.chunks_exact(bs as usize) {
                    store_page(&mut w.comp, kind, page, chunk);
                }
                next = last;
                return true;
            }
            w.run.resize(n, 0);
            if let Err(e) = file.read_exact_at(&mut w.run[..n], offset + (next - addr)) {
                // A file cut under us reads short: say so, naming it.
                failed =
                    Some(mem.intact().err().unwrap_or_else(|| {
                        Error::io(format!("reading {next:#x} of the source"), e)
                    }));
                return false;
            }
            for page in w.run[..n].chunks_exact(bs as usize) {
                store_page(&mut w.comp, kind, page, chunk);
            }
            next = last;
        }
        true
    });
    if let Some(e) = failed {
        return Err(e);
    }
    while next < end {
        chunk.entries.push((0, 0));
        next += bs;
    }
    Ok(())
}

/// Zero-checks and compresses `pages` (whole blocks, back to back) into `chunk`, which must
/// have room for them (at most [`chunk_blocks`]).
pub(super) fn store_pages(kind: Compression, block: BlockSize, pages: &[u8], chunk: &mut Chunk) {
    chunk.clear();
    with_worker(kind, block, |w| {
        for page in pages.chunks_exact(block.size()) {
            store_page(&mut w.comp, kind, page, chunk);
        }
    });
}

/// Runs `f` with this thread's compressor for `kind` and `block`, made on first use.
fn with_worker<R>(kind: Compression, block: BlockSize, f: impl FnOnce(&mut Worker) -> R) -> R {
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot
            .as_ref()
            .is_some_and(|w| w.comp.kind() == kind && w.block == block)
        {
            *slot = Some(Worker {
                comp: PageCompressor::for_block(kind, block.size()),
                block,
                buf: vec![0u8; block.size()],
                run: Vec::new(),
            });
        }
        f(slot.as_mut().expect("set above"))
    })
}

/// Appends one page's stored form to `chunk`: nothing for a zero page (entry size 0), the
/// compressed bytes, or the page raw when compression does not shrink it.
fn store_page(comp: &mut PageCompressor, kind: Compression, page: &[u8], chunk: &mut Chunk) {
    if is_zero(page) {
        chunk.entries.push((0, 0));
        return;
    }
    let entry = match comp.compress(page) {
        Some(z) => {
            chunk.data.extend_from_slice(z);
            (z.len() as u32, kind.flag())
        }
        None => {
            chunk.data.extend_from_slice(page);
            (page.len() as u32, 0)
        }
    };
    chunk.entries.push(entry);
}
