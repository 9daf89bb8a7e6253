//! The kdump writer's I/O: the headers and bitmaps up front, then page descriptors and page
//! data, one window of pages at a time, in pfn order, each compressed in parallel
//! ([`super::pool`]) while the windows before it are written ([`PIPELINE`] ahead). What goes
//! where is [`super::plan`]'s; the bytes are [`super::encode`]'s. A file is written through [`crate::dump::output`] (a temporary
//! file renamed into place when complete) with early writeback.
//!
//! The bitmaps are written in fixed-size pieces, never allocated whole.

use super::encode::{bitmap_piece, descriptors, head_blocks};
use super::flatten::{FlatSink, PositionedSink, SeekSink};
use super::plan::{check_bitmaps, count, plan, KdumpPlan, PfnRanges};
use super::pool::{release_pfns, Chunk, PagePool, CHUNK_PAGES};
use super::{KdumpOptions, KdumpRequest, KdumpSummary};
use crate::codec::PAGE;
use crate::dump::output::{AtomicOutput, OutputOptions};
use crate::dump::writeback::WritebackFile;
use crate::dump_level::FrameSet;
use crate::format::kdump::PageDesc;
use crate::progress::Progress;
use crate::{Error, Result};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Windows compressed ahead of the one being written.
const PIPELINE: usize = 2;

/// Bytes of bitmap built in memory at a time.
const BITMAP_PIECE: u64 = 1 << 20;

/// Writes `req` as a kdump file at `out`, atomically: the data goes to a temporary file in the
/// same directory, renamed over `out` only when complete. An existing `out` is an error unless
/// `req.force`. On error or cancellation nothing is left behind.
pub fn write_kdump(
    req: &KdumpRequest<'_>,
    out: &Path,
    opts: &KdumpOptions,
    progress: &dyn Progress,
) -> Result<KdumpSummary> {
    let name = out.display().to_string();
    check_bitmaps(&req.shape())?;
    let mut file = AtomicOutput::create(out, &OutputOptions { force: req.force })?;
    let summary = {
        // Small: headers and bitmap pieces are gathered, while a chunk's stored pages (larger)
        // go straight to the file rather than through one more copy.
        let w = BufWriter::with_capacity(64 << 10, WritebackFile::new(file.file_mut()));
        let flush = |w: BufWriter<WritebackFile<'_>>| {
            w.into_inner()
                .map(drop)
                .map_err(|e| Error::io(name.clone(), e.into_error()))
        };
        if req.flatten {
            let mut sink = FlatSink::new(w).map_err(|e| Error::io(name.clone(), e))?;
            let s = generate(req, opts, progress, &mut sink, &name)?;
            flush(sink.into_inner())?;
            s
        } else {
            let mut sink = SeekSink::new(w);
            let s = generate(req, opts, progress, &mut sink, &name)?;
            flush(sink.into_inner())?;
            s
        }
    };
    file.commit()?;
    Ok(summary)
}

/// Writes `req` to a stream (a pipe, stdout) in makedumpfile's flattened form — a stream cannot
/// seek, so `req.flatten` and `req.force` are ignored. Rebuild a plain file with
/// `makedumpfile -R out < stream`, or read it directly with [`crate::phys::kdump::KdumpFile`].
pub fn write_kdump_to(
    req: &KdumpRequest<'_>,
    out: &mut dyn Write,
    opts: &KdumpOptions,
    progress: &dyn Progress,
) -> Result<KdumpSummary> {
    let name = "kdump stream";
    check_bitmaps(&req.shape())?;
    let mut sink = FlatSink::new(out).map_err(|e| Error::io(name, e))?;
    generate(req, opts, progress, &mut sink, name)
}

/// Writes the bitmap of `ranges` less `excluded` (`bytes` long) at `at`, [`BITMAP_PIECE`]
/// bytes at a time.
pub(super) fn write_bitmap(
    sink: &mut dyn PositionedSink,
    at: u64,
    bytes: u64,
    ranges: &PfnRanges,
    excluded: Option<&FrameSet>,
    progress: &dyn Progress,
) -> Result<(), Option<io::Error>> {
    let mut piece = vec![0u8; bytes.min(BITMAP_PIECE) as usize];
    let mut first = 0;
    let mut done = 0;
    while done < bytes {
        if progress.cancelled() {
            return Err(None);
        }
        let len = (bytes - done).min(BITMAP_PIECE);
        let buf = &mut piece[..len as usize];
        bitmap_piece(buf, done * 8, ranges, &mut first, excluded);
        sink.write_at(at + done, buf).map_err(Some)?;
        done += len;
    }
    Ok(())
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn generate(
    req: &KdumpRequest<'_>,
    opts: &KdumpOptions,
    progress: &dyn Progress,
    sink: &mut dyn PositionedSink,
    name: &str,
) -> Result<KdumpSummary> {
    let pool = match opts.threads {
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| Error::Unsupported(format!("cannot start worker threads: {e}")))?,
        ),
        None => None,
    };
    let summary = generate_in_pool(req, opts, progress, sink, name, pool.as_ref())?;
    // Headers, notes and the page array were read from the input too: nothing read from a
    // file cut meanwhile is kept (a file output is then removed, a stream ends in an error).
    req.memory.intact()?;
    Ok(summary)
}

fn generate_in_pool(
    req: &KdumpRequest<'_>,
    opts: &KdumpOptions,
    progress: &dyn Progress,
    sink: &mut dyn PositionedSink,
    name: &str,
    pool: Option<&rayon::ThreadPool>,
) -> Result<KdumpSummary> {
    let plan = plan(&req.shape())?;
    let head = head_blocks(&req.shape(), &plan, opts.timestamp.unwrap_or_else(now))?;
    let mut summary = KdumpSummary {
        max_mapnr: plan.max_mapnr,
        ram_pages: count(&plan.ram),
        dumped_pages: plan.dumped_pages,
        ..Default::default()
    };
    write_front(sink, req, &plan, &head, progress, name)?;
    progress.start("writing kdump", summary.dumped_pages);
    let pages = PagePool {
        memory: req.memory,
        kind: req.compression,
        pool,
    };
    let window = opts.window_pages.max(1);
    let result = write_pages(
        sink,
        req,
        &plan,
        window,
        pages,
        progress,
        &mut summary,
        name,
    )
    .and_then(|()| sink.finish().map_err(|e| Error::io(name.to_string(), e)));
    progress.finish();
    result?;
    summary.bytes_written = sink.bytes_out();
    Ok(summary)
}

/// Everything before the page data's stored pages: headers and notes, both bitmaps, the
/// padding after the descriptors (written later), and the shared zero page.
fn write_front(
    sink: &mut dyn PositionedSink,
    req: &KdumpRequest<'_>,
    plan: &KdumpPlan,
    head: &[u8],
    progress: &dyn Progress,
    name: &str,
) -> Result<()> {
    let io = |e: io::Error| Error::io(name.to_string(), e);
    sink.write_at(0, head).map_err(io)?;
    for (at, ranges, excluded) in [
        (plan.bitmap1_off, &plan.ram, None),
        (plan.bitmap2_off, &plan.dumped, req.excluded),
    ] {
        write_bitmap(sink, at, plan.bitmap_bytes, ranges, excluded, progress)
            .map_err(|e| e.map_or(Error::Cancelled, io))?;
    }
    let desc_end = plan.desc_end();
    if desc_end < plan.data_off {
        sink.write_at(desc_end, &vec![0u8; (plan.data_off - desc_end) as usize])
            .map_err(io)?;
    }
    sink.write_at(plan.zero_off(), &[0u8; PAGE]).map_err(io)
}

/// The next `window` pfns of `all`, with output buffers for them (reused from `spare`).
fn next_window(
    all: &mut impl Iterator<Item = u64>,
    window: usize,
    spare: &mut Vec<Chunk>,
) -> Option<(Vec<u64>, Vec<Chunk>)> {
    let pfns: Vec<u64> = all.by_ref().take(window).collect();
    if pfns.is_empty() {
        return None;
    }
    let n = pfns.len().div_ceil(CHUNK_PAGES);
    let mut chunks: Vec<Chunk> = spare.drain(spare.len().saturating_sub(n)..).collect();
    chunks.resize_with(n, Chunk::new);
    Some((pfns, chunks))
}

/// The page descriptors and page data of every dumped page, a window at a time. Compression of
/// window N+1 (on the pool, from a scoped thread) overlaps writing window N (here): the writes
/// are kernel copies into the page cache, the compression is CPU work.
#[allow(clippy::too_many_arguments)]
fn write_pages(
    sink: &mut dyn PositionedSink,
    req: &KdumpRequest<'_>,
    plan: &KdumpPlan,
    window: usize,
    pages: PagePool<'_>,
    progress: &dyn Progress,
    summary: &mut KdumpSummary,
    name: &str,
) -> Result<()> {
    let empty = FrameSet::default();
    let excluded = req.excluded.unwrap_or(&empty);
    let mut all = plan
        .dumped
        .iter()
        .flat_map(|&(s, e)| excluded.gaps_in(s, e).flat_map(|(a, b)| a..b));
    let mut out = PageOutput {
        zero_off: plan.zero_off(),
        data_pos: plan.pages_off(),
        desc_pos: plan.desc_off,
        descs: Vec::with_capacity(window * size_of::<PageDesc>()),
    };
    std::thread::scope(|scope| -> Result<()> {
        // Output buffers of windows already written, for the next ones.
        let mut spare: Vec<Chunk> = Vec::new();
        let mut spawn = |spare: &mut Vec<Chunk>| {
            next_window(&mut all, window, spare)
                .map(|(pfns, chunks)| scope.spawn(move || pages.store(pfns, chunks)))
        };
        // Windows being compressed: the pool always has the next one queued while this
        // thread writes, so it never waits for a write to finish.
        let mut pending: std::collections::VecDeque<_> = std::collections::VecDeque::new();
        pending.extend((0..PIPELINE).map_while(|_| spawn(&mut spare)));
        while let Some(handle) = pending.pop_front() {
            if progress.cancelled() {
                let _ = handle.join();
                return Err(Error::Cancelled);
            }
            let (pfns, chunks, results) = handle
                .join()
                .map_err(|_| Error::Unsupported("a compression thread panicked".into()))?;
            results.into_iter().collect::<Result<()>>()?;
            pending.extend(spawn(&mut spare));
            out.write_window(sink, &chunks, summary)
                .map_err(|e| Error::io(name.to_string(), e))?;
            release_pfns(req.memory, &pfns);
            // A file cut while this window was read gave zeros that are not the guest's.
            req.memory.intact()?;
            progress.advance(pfns.len() as u64);
            spare.extend(chunks);
        }
        Ok(())
    })
}

/// Where the next window's descriptors and data go.
struct PageOutput {
    zero_off: u64,
    data_pos: u64,
    desc_pos: u64,
    /// The window's descriptors (buffer reused from window to window).
    descs: Vec<u8>,
}

impl PageOutput {
    /// Writes the descriptors of one window's stored pages, then their data.
    fn write_window(
        &mut self,
        sink: &mut dyn PositionedSink,
        chunks: &[Chunk],
        summary: &mut KdumpSummary,
    ) -> io::Result<()> {
        self.descs.clear();
        let mut off = self.data_pos;
        for c in chunks {
            descriptors(
                &c.entries,
                self.zero_off,
                &mut off,
                summary,
                &mut self.descs,
            );
        }
        sink.write_at(self.desc_pos, &self.descs)?;
        self.desc_pos += self.descs.len() as u64;
        for c in chunks {
            sink.write_at(self.data_pos, c.stored())?;
            self.data_pos += c.stored().len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile class 5: one page at 2^51 would need two 64 GiB bitmaps for 4 KiB of RAM. The
    /// request is refused, naming the address and ELF, and no file (temporary or not) is made.
    #[test]
    fn stray_page_near_the_top_is_refused_without_a_file() {
        use super::super::KdumpRequest;
        let mem = crate::phys::VecMemory::from_blocks(vec![
            (0, vec![1u8; PAGE]),
            (1 << 51, vec![2u8; PAGE]),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let req = super::super::plan::test_request(&mem);
        let e = write_kdump(
            &req,
            &out,
            &KdumpOptions::default(),
            &crate::progress::NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0x8000000001000") && e.contains("ELF"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut stream = Vec::new();
        let e = write_kdump_to(
            &req,
            &mut stream,
            &KdumpOptions::default(),
            &crate::progress::NoProgress,
        );
        assert!(e.is_err() && stream.is_empty());
        // A RAM top of 16 GiB is fine, even with little RAM.
        let mem = crate::phys::VecMemory::from_blocks(vec![(16 << 30, vec![2u8; PAGE])]).unwrap();
        assert!(check_bitmaps(
            &KdumpRequest {
                memory: &mem,
                ..req
            }
            .shape()
        )
        .is_ok());
    }
}
