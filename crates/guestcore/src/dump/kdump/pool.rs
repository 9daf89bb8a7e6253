//! The parallel half of the kdump writer: reading, zero-checking and compressing one window of
//! pages on the worker threads, each work item a [`Chunk`] of consecutive pages stored back to
//! back in its own reused buffer (no allocation or extra copy per page).

use super::plan::PAGE_U64;
use crate::codec::{Compression, PageCompressor, PAGE};
use crate::phys::{is_zero, PhysMemory};
use crate::{Error, Result};
use rayon::prelude::*;
use std::cell::RefCell;

/// Pages per parallel work item.
pub(super) const CHUNK_PAGES: usize = 128;

/// The stored form of up to [`CHUNK_PAGES`] consecutive pages of a window.
pub(super) struct Chunk {
    /// Per page: stored size (0: the shared zero page) and descriptor flags.
    pub entries: Vec<(u32, u32)>,
    /// The stored pages, back to back, in `data[..used]`; `data` stays `CHUNK_PAGES` page
    /// bounds long (allocated once, reused for later windows).
    data: Vec<u8>,
    used: usize,
}

impl Chunk {
    pub fn new(kind: Compression) -> Self {
        Chunk {
            entries: Vec::with_capacity(CHUNK_PAGES),
            data: vec![0; CHUNK_PAGES * kind.page_bound()],
            used: 0,
        }
    }

    /// The stored pages, back to back.
    pub fn stored(&self) -> &[u8] {
        &self.data[..self.used]
    }
}

/// The pages of one window, their stored forms, and how storing each chunk went.
pub(super) type Done = (Vec<u64>, Vec<Chunk>, Vec<Result<()>>);

/// Compresses windows of `memory`'s pages on `pool` (rayon's global pool when `None`).
#[derive(Clone, Copy)]
pub(super) struct PagePool<'a> {
    pub memory: &'a dyn PhysMemory,
    pub kind: Compression,
    pub pool: Option<&'a rayon::ThreadPool>,
}

impl PagePool<'_> {
    /// Stores the pages `pfns` into `chunks` (one per [`CHUNK_PAGES`] pfns), in parallel.
    pub fn store(&self, pfns: Vec<u64>, mut chunks: Vec<Chunk>) -> Done {
        let mut work = || -> Vec<Result<()>> {
            pfns.par_chunks(CHUNK_PAGES)
                .zip(chunks.par_iter_mut())
                .map(|(p, c)| store_chunk(self.memory, self.kind, p, c))
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
    buf: Box<[u8; PAGE]>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

fn read_page<'a>(mem: &'a dyn PhysMemory, pfn: u64, buf: &'a mut [u8; PAGE]) -> Result<&'a [u8]> {
    let addr = pfn * PAGE_U64;
    if let Some(s) = mem.slice(addr, PAGE_U64) {
        return Ok(s);
    }
    if mem.is_ram(addr, PAGE_U64) {
        mem.read_at(addr, &mut buf[..])?;
    } else {
        buf.fill(0);
        for part in mem.ram().ram_parts(addr, PAGE_U64) {
            let o = (part.start - addr) as usize;
            mem.read_at(part.start, &mut buf[o..o + part.len() as usize])?;
        }
    }
    Ok(&buf[..])
}

/// Tells the source it may drop the pages of `pfns` (sorted) from this process: a mapped input
/// then stays O(window) resident instead of growing to the whole guest.
pub(super) fn release_pfns(mem: &dyn PhysMemory, pfns: &[u64]) {
    let mut i = 0;
    while i < pfns.len() {
        let start = pfns[i];
        let mut end = start + 1;
        i += 1;
        while i < pfns.len() && pfns[i] == end {
            end += 1;
            i += 1;
        }
        mem.release(start * PAGE_U64, (end - start) * PAGE_U64);
    }
}

/// Reads, zero-checks and compresses the pages `pfns` into `chunk`.
fn store_chunk(
    mem: &dyn PhysMemory,
    kind: Compression,
    pfns: &[u64],
    chunk: &mut Chunk,
) -> Result<()> {
    chunk.entries.clear();
    chunk.used = 0;
    with_worker(kind, |w| {
        for &pfn in pfns {
            let page = read_page(mem, pfn, &mut w.buf).map_err(|e| match e {
                Error::NotInMemory { .. } => {
                    Error::Unsupported(format!("cannot read pfn {pfn:#x} of the source: {e}"))
                }
                e => e,
            })?;
            store_page(&mut w.comp, kind, page, chunk);
        }
        Ok(())
    })
}

/// Zero-checks and compresses `pages` (whole pages, back to back) into `chunk`, which must
/// have room for them (at most [`CHUNK_PAGES`]).
pub(super) fn store_pages(kind: Compression, pages: &[u8], chunk: &mut Chunk) {
    chunk.entries.clear();
    chunk.used = 0;
    with_worker(kind, |w| {
        for page in pages.chunks_exact(PAGE) {
            store_page(&mut w.comp, kind, page, chunk);
        }
    });
}

/// Runs `f` with this thread's compressor for `kind`, made on first use.
fn with_worker<R>(kind: Compression, f: impl FnOnce(&mut Worker) -> R) -> R {
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.comp.kind() == kind) {
            *slot = Some(Worker {
                comp: PageCompressor::new(kind),
                buf: Box::new([0u8; PAGE]),
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
    let dst = &mut chunk.data[chunk.used..chunk.used + kind.page_bound()];
    let entry = match comp.compress_into(page, dst) {
        Some(n) => (n as u32, kind.flag()),
        None => {
            dst[..PAGE].copy_from_slice(page);
            (PAGE as u32, 0)
        }
    };
    chunk.used += entry.0 as usize;
    chunk.entries.push(entry);
}
