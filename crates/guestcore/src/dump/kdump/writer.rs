//! The kdump writer's I/O: the headers and bitmaps up front, then page descriptors and page
//! data, one window of pages at a time, in pfn order, each compressed in parallel
//! ([`super::pool`]) while the windows before it are written ([`PIPELINE`] ahead). What goes
//! where is [`super::plan`]'s; the bytes are [`super::encode`]'s. A file is written through [`crate::dump::output`] (a temporary
//! file renamed into place when complete) with early writeback.
//!
//! The bitmaps are written in fixed-size pieces, never allocated whole.

use super::blocks::{BlockSize, ExcludedBlocks, FRAME};
use super::encode::{bitmap_piece, descriptors, head_blocks};
use super::flatten::{FlatSink, PositionedSink, SeekSink};
use super::plan::{check_bitmaps, count, plan, KdumpPlan, PfnRanges};
use super::pool::{chunk_blocks, release_pfns, Chunk, PagePool};
use super::{KdumpOptions, KdumpRequest, KdumpSummary};
use crate::dump::output::{AtomicOutput, OutputOptions};
use crate::dump::writeback::WritebackFile;
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

/// Writes the bitmap of `ranges` less the blocks `excluded` leaves out (`bytes` long) at
/// `at`, [`BITMAP_PIECE`] bytes at a time.
pub(super) fn write_bitmap(
    sink: &mut dyn PositionedSink,
    at: u64,
    bytes: u64,
    ranges: &PfnRanges,
    excluded: Option<ExcludedBlocks<'_>>,
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
    let shape = req.shape();
    let plan = plan(&shape)?;
    let head = head_blocks(&shape, &plan, opts.timestamp.unwrap_or_else(now))?;
    let mut summary = KdumpSummary {
        block_size: plan.block.bytes(),
        max_mapnr: plan.max_mapnr,
        ram_pages: count(&plan.ram),
        dumped_pages: plan.dumped_pages,
        ..Default::default()
    };
    let excluded = shape.excluded_blocks();
    write_front(sink, excluded, &plan, &head, progress, name)?;
    progress.start("writing kdump", summary.dumped_pages);
    let pages = PagePool {
        memory: req.memory,
        kind: req.compression,
        block: plan.block,
        pool,
    };
    let window = window_blocks(opts.window_pages, plan.block);
    let result = write_pages(
        sink,
        (req, excluded),
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

/// Blocks per window: `window_pages` 4 KiB pages' worth (at least one block).
fn window_blocks(window_pages: usize, block: BlockSize) -> usize {
    (window_pages as u64 * FRAME / block.bytes()).max(1) as usize
}

/// Everything before the page data's stored pages: headers and notes, both bitmaps, the
/// padding after the descriptors (written later), and the shared zero page.
fn write_front(
    sink: &mut dyn PositionedSink,
    excluded: Option<ExcludedBlocks<'_>>,
    plan: &KdumpPlan,
    head: &[u8],
    progress: &dyn Progress,
    name: &str,
) -> Result<()> {
    let io = |e: io::Error| Error::io(name.to_string(), e);
    sink.write_at(0, head).map_err(io)?;
    for (at, ranges, excluded) in [
        (plan.bitmap1_off, &plan.ram, None),
        (plan.bitmap2_off, &plan.dumped, excluded),
    ] {
        write_bitmap(sink, at, plan.bitmap_bytes, ranges, excluded, progress)
            .map_err(|e| e.map_or(Error::Cancelled, io))?;
    }
    let desc_end = plan.desc_end();
    if desc_end < plan.data_off {
        sink.write_at(desc_end, &vec![0u8; (plan.data_off - desc_end) as usize])
            .map_err(io)?;
    }
    sink.write_at(plan.zero_off(), &vec![0u8; plan.block.size()])
        .map_err(io)
}

/// The next `window` pfns of `all`, with output buffers for them (reused from `spare`).
fn next_window(
    all: &mut impl Iterator<Item = u64>,
    (window, block): (usize, BlockSize),
    spare: &mut Vec<Chunk>,
) -> Option<(Vec<u64>, Vec<Chunk>)> {
    let pfns: Vec<u64> = all.by_ref().take(window).collect();
    if pfns.is_empty() {
        return None;
    }
    let n = pfns.len().div_ceil(chunk_blocks(block));
    let mut chunks: Vec<Chunk> = spare.drain(spare.len().saturating_sub(n)..).collect();
    chunks.resize_with(n, || Chunk::new(block));
    Some((pfns, chunks))
}

/// The page descriptors and page data of every dumped page, a window at a time. Compression of
/// window N+1 (on the pool, from a scoped thread) overlaps writing window N (here): the writes
/// are kernel copies into the page cache, the compression is CPU work.
#[allow(clippy::too_many_arguments)]
fn write_pages(
    sink: &mut dyn PositionedSink,
    (req, excluded): (&KdumpRequest<'_>, Option<ExcludedBlocks<'_>>),
    plan: &KdumpPlan,
    window: usize,
    pages: PagePool<'_>,
    progress: &dyn Progress,
    summary: &mut KdumpSummary,
    name: &str,
) -> Result<()> {
    let block = plan.block;
    let mut all = plan.dumped.iter().flat_map(|&(s, e)| {
        let runs: Box<dyn Iterator<Item = (u64, u64)>> = match excluded {
            Some(x) => Box::new(x.gaps_in(s, e)),
            None => Box::new(std::iter::once((s, e))),
        };
        runs.flat_map(|(a, b)| a..b)
    });
    let mut out = PageOutput {
        zero_off: (plan.zero_off(), block.bytes() as u32),
        data_pos: plan.pages_off(),
        desc_pos: plan.desc_off,
        descs: Vec::with_capacity(window * size_of::<PageDesc>()),
    };
    std::thread::scope(|scope| -> Result<()> {
        // Output buffers of windows already written, for the next ones.
        let mut spare: Vec<Chunk> = Vec::new();
        let mut spawn = |spare: &mut Vec<Chunk>| {
            next_window(&mut all, (window, block), spare)
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
            release_pfns(req.memory, block, &pfns);
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
    /// The shared zero page: its offset and size (one block).
    zero_off: (u64, u32),
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
    use crate::codec::PAGE;

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

/// Files of 16 and 64 KiB blocks (arm64 kernels with larger pages), read back by guestcore's
/// own kdump reader.
#[cfg(test)]
mod block_tests {
    use super::super::{BlockSize, Compression, KdumpRequest};
    use super::*;
    use crate::phys::kdump::KdumpFile;
    use crate::phys::{PhysMemory, RamMap, VecMemory};
    use crate::progress::NoProgress;

    const F: u64 = 4096;

    /// Frame `pfn`'s bytes: zero, random, text or sparse (the testkit's `mixed_page`); frames
    /// 0x200..0x240 (whole 16 and 64 KiB blocks) are zero.
    fn frame(pfn: u64) -> Vec<u8> {
        if (0x200..0x240).contains(&pfn) {
            return vec![0; F as usize];
        }
        guestcore_testkit::pages::mixed_page(pfn, F as usize)
    }

    fn ram_of(start: u64, len: u64) -> (u64, Vec<u8>) {
        (
            start,
            (start / F..(start + len) / F).flat_map(frame).collect(),
        )
    }

    /// RAM not aligned to 16 or 64 KiB: it starts in the middle of a block, a hole starts
    /// inside one, and the last range starts and ends inside blocks.
    fn memory() -> VecMemory {
        VecMemory::from_blocks(vec![
            ram_of(0x1000, 0x9e000),
            ram_of(0x100000, 0x300000),
            ram_of(0x603000, 0x3d000),
        ])
        .unwrap()
    }

    /// The ranges of `ram` in whole blocks (the blocks holding any byte of it), joined.
    fn in_blocks(ram: &RamMap, bs: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for r in ram.ranges() {
            let (s, e) = (r.start / bs * bs, r.end.next_multiple_of(bs));
            match out.last_mut() {
                Some(l) if s <= l.1 => l.1 = e,
                _ => out.push((s, e)),
            }
        }
        out
    }

    /// Every byte of every block holding RAM reads back: the RAM's bytes, zeros elsewhere in
    /// the block; a block without RAM is not in the file.
    fn assert_same(mem: &VecMemory, k: &KdumpFile, bs: u64, what: &str) {
        let blocks = in_blocks(mem.ram(), bs);
        let got: Vec<_> = k.ram().ranges().iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, blocks, "{what}: RAM of the file");
        for &(s, e) in &blocks {
            let mut got = vec![0u8; (e - s) as usize];
            k.read_at(s, &mut got).unwrap();
            let mut want = vec![0u8; got.len()];
            for p in mem.ram().ram_parts(s, e - s) {
                let o = (p.start - s) as usize;
                mem.read_at(p.start, &mut want[o..o + p.len() as usize])
                    .unwrap();
            }
            if got != want {
                let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                panic!(
                    "{what}: byte {:#x}: {:#04x}, want {:#04x}",
                    s + i as u64,
                    got[i],
                    want[i]
                );
            }
        }
        let mut b = [0u8; 8];
        assert!(
            k.read_at(0x500000, &mut b).is_err(),
            "{what}: a block without RAM"
        );
    }

    fn opts() -> KdumpOptions {
        KdumpOptions {
            window_pages: 50, // windows of 12 and 3 blocks, the last partly filled
            timestamp: Some(1_700_000_000),
            ..Default::default()
        }
    }

    /// Blocks whose every byte is zero.
    fn zero_blocks(mem: &VecMemory, bs: u64) -> u64 {
        in_blocks(mem.ram(), bs)
            .iter()
            .flat_map(|&(s, e)| (s..e).step_by(bs as usize))
            .filter(|&a| {
                mem.ram().ram_parts(a, bs).all(|p| {
                    let mut b = vec![0u8; p.len() as usize];
                    mem.read_at(p.start, &mut b).unwrap();
                    b.iter().all(|&x| x == 0)
                })
            })
            .count() as u64
    }

    #[test]
    fn larger_blocks_round_trip_every_compression() {
        let mem = memory();
        let vmci = b"OSRELEASE=6.12.0-arm64-16k\nPAGESIZE=16384\n";
        let dir = tempfile::tempdir().unwrap();
        for bs in [16384u64, 65536] {
            let blocks: u64 = in_blocks(mem.ram(), bs)
                .iter()
                .map(|(s, e)| (e - s) / bs)
                .sum();
            for c in Compression::ALL {
                let what = format!("{} KiB {c}", bs / 1024);
                let req = KdumpRequest {
                    vmcoreinfo: Some(vmci),
                    machine: super::super::KdumpMachine::Aarch64,
                    block_size: BlockSize::new(bs).unwrap(),
                    ..KdumpRequest::new(&mem, c)
                };
                let out = dir.path().join(format!("{bs}.{c}"));
                let s = write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
                assert_eq!(s.block_size, bs, "{what}");
                assert_eq!(s.max_mapnr, 0x640000u64.div_ceil(bs), "{what}");
                assert_eq!((s.ram_pages, s.dumped_pages), (blocks, blocks), "{what}");
                assert_eq!(s.zero_pages, zero_blocks(&mem, bs), "{what}");
                assert!(s.zero_pages >= 1, "{what}");
                assert_eq!(
                    s.zero_pages + s.compressed_pages + s.raw_pages,
                    blocks,
                    "{what}"
                );
                if c != Compression::None {
                    assert!(s.compressed_pages > 0, "{what}: {s:?}");
                }
                assert_eq!(s.bytes_written, std::fs::metadata(&out).unwrap().len());
                let k = KdumpFile::open(&out).unwrap();
                assert_eq!(k.info().block_size, bs, "{what}");
                assert_eq!(k.info().status, c.flag(), "{what}");
                assert_eq!(k.info().machine, "aarch64", "{what}");
                assert_eq!(k.vmcoreinfo(), Some(&vmci[..]), "{what}");
                assert_same(&mem, &k, bs, &what);
                // The flattened form: the same file once rebuilt, file and stream alike.
                if c == Compression::Zlib || c == Compression::Lzo {
                    let flat = KdumpRequest {
                        flatten: true,
                        ..req
                    };
                    let fout = dir.path().join(format!("{bs}.{c}.flat"));
                    write_kdump(&flat, &fout, &opts(), &NoProgress).unwrap();
                    let k = KdumpFile::open(&fout).unwrap();
                    assert!(k.info().flattened);
                    assert_same(&mem, &k, bs, &format!("{what} flattened"));
                    let mut stream = Vec::new();
                    write_kdump_to(&flat, &mut stream, &opts(), &NoProgress).unwrap();
                    assert!(
                        stream == std::fs::read(&fout).unwrap(),
                        "{what}: stream and file"
                    );
                }
            }
        }
    }

    /// A raw image read from its file (holes skipped, data from the mapping), whose RAM ends
    /// inside a 64 KiB block, gives the same file as the same bytes held in memory.
    #[test]
    fn larger_blocks_from_a_sparse_file() {
        use std::os::unix::fs::FileExt;
        let frames = 700u64; // 175 blocks of 16 KiB, 43.75 of 64 KiB
        let hole = |f: u64| f < 40 || (300..650).contains(&f) || f == frames - 1;
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("sparse.raw");
        let file = std::fs::File::create(&img).unwrap();
        file.set_len(frames * F).unwrap();
        let mut bytes = Vec::new();
        for f in 0..frames {
            let p = if hole(f) {
                vec![0u8; F as usize]
            } else {
                frame(f * 4 + 1 + f % 3)
            };
            if !hole(f) {
                file.write_all_at(&p, f * F).unwrap();
            }
            bytes.extend_from_slice(&p);
        }
        drop(file);
        let raw = crate::phys::raw::RawImage::open(&img, None).unwrap();
        let mem = VecMemory::from_blocks(vec![(0, bytes)]).unwrap();
        for bs in [16384u64, 65536] {
            for c in [Compression::Zstd, Compression::Lzo] {
                let block_size = BlockSize::new(bs).unwrap();
                let a = dir.path().join(format!("file.{bs}.{c}"));
                let b = dir.path().join(format!("mem.{bs}.{c}"));
                let sa = write_kdump(
                    &KdumpRequest {
                        block_size,
                        ..KdumpRequest::new(&raw, c)
                    },
                    &a,
                    &opts(),
                    &NoProgress,
                )
                .unwrap();
                let sb = write_kdump(
                    &KdumpRequest {
                        block_size,
                        ..KdumpRequest::new(&mem, c)
                    },
                    &b,
                    &opts(),
                    &NoProgress,
                )
                .unwrap();
                assert_eq!(sa.zero_pages, sb.zero_pages, "{bs} {c}");
                assert!(sa.zero_pages >= 350 * F / bs - 1, "{bs} {c}: {sa:?}");
                assert!(
                    std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                    "{bs} {c}: the two files differ"
                );
                assert_same(
                    &mem,
                    &KdumpFile::open(&a).unwrap(),
                    bs,
                    &format!("{bs} {c}"),
                );
            }
        }
    }

    /// Frames a dump level leaves out leave out a block only when all its RAM frames are out:
    /// a block with all its frames out, a block starting before RAM with all its RAM frames
    /// out, and not a block with some frames kept.
    #[test]
    fn excluded_frames_leave_out_whole_blocks_only() {
        let mem = memory();
        let bs = 16384u64;
        let mut x = crate::dump_level::FrameSet::for_ram(mem.ram());
        // Block 0 (frame 0 is not RAM; 1..4 are), block 0x41 whole, frames 0x108..0x10a of
        // block 0x42 (kept), block 0x180 (frames 0x603..0x604: RAM starts at 0x603000).
        for (s, e) in [(1, 4), (0x104, 0x108), (0x108, 0x10a), (0x603, 0x604)] {
            x.insert(s, e);
        }
        let req = KdumpRequest {
            excluded: Some(&x),
            dump_level: 31,
            block_size: BlockSize::new(bs).unwrap(),
            ..KdumpRequest::new(&mem, Compression::Zstd)
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let s = write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
        let blocks: u64 = in_blocks(mem.ram(), bs)
            .iter()
            .map(|(s, e)| (e - s) / bs)
            .sum();
        assert_eq!(s.ram_pages, blocks);
        assert_eq!(s.dumped_pages, blocks - 3, "{s:?}");
        let k = KdumpFile::open(&out).unwrap();
        let dumped: Vec<_> = k.dumped_ranges().map(|r| (r.start, r.end)).collect();
        assert_eq!(
            dumped,
            vec![
                (0x4000, 0xa0000),
                (0x100000, 0x104000),
                (0x108000, 0x400000),
                (0x604000, 0x640000)
            ]
        );
        let mut b = vec![0u8; F as usize];
        k.read_at(0x10a000, &mut b).unwrap();
        assert!(b == frame(0x10a), "a kept frame of a block partly left out");
        assert!(k.read_at(0x105000, &mut b).is_err(), "a block left out");
    }
}
