//! The kdump writer: headers and bitmaps up front, then page descriptors and page data, one
//! window of pages at a time (compressed in parallel, written in pfn order).
//!
//! The bitmaps have one bit per pfn below the RAM top, however little RAM is present, so they
//! are bounded before anything is created ([`check_bitmaps`]: one page at 2^51 would need
//! 64 GiB of them) and written in fixed-size pieces, never allocated whole.

use super::compress::{Compression, PageCompressor, PAGE};
use super::flatten::{FlatSink, PositionedSink, SeekSink};
use super::{KdumpOptions, KdumpRequest, KdumpSummary};
use crate::dump::writeback::WritebackFile;
use crate::dump_level::FrameSet;
use crate::format::kdump::{
    DiskDumpHeader32, DiskDumpHeader64, KdumpSubHeader32, KdumpSubHeader64, NewUtsname, PageDesc,
    KDUMP_HEADER_VERSION, KDUMP_SIGNATURE,
};
use crate::format::note::VMCOREINFO_NAME;
use crate::format::vmcoreinfo::{vmcoreinfo_get, vmcoreinfo_phys_base};
use crate::format::ElfNote;
use crate::phys::is_zero;
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::{Error, Result};
use rayon::prelude::*;
use std::cell::RefCell;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use zerocopy::IntoBytes;

const PAGE_U64: u64 = PAGE as u64;
/// Highest physical address we accept (MAXPHYADDR is at most 52 bits on x86).
const MAX_PHYS: u64 = 1 << 52;
/// Bitmap bytes (each of the two) always allowed: covers a RAM top of 512 GiB.
const BITMAP_FREE: u64 = 16 << 20;
/// Bytes of bitmap built in memory at a time.
const BITMAP_PIECE: u64 = 1 << 20;

/// Fails when the RAM top needs bitmaps far larger than the RAM present: more than
/// [`BITMAP_FREE`] bytes each and more than the RAM itself. Such a guest (a stray page near the
/// top of the physical address space) is better written as an ELF core, whose size follows the
/// RAM present.
fn check_bitmaps(req: &KdumpRequest<'_>) -> Result<()> {
    let ram = req.memory.ram();
    let end = ram.end();
    let bitmap = end
        .div_ceil(PAGE_U64)
        .div_ceil(8)
        .next_multiple_of(PAGE_U64);
    if bitmap > BITMAP_FREE && bitmap > ram.total() {
        return Err(Error::Unsupported(format!(
            "RAM ends at {end:#x}: a kdump file needs two bitmaps of {bitmap} bytes each for \
             that, far more than the {} bytes of RAM present; write an ELF core instead",
            ram.total()
        )));
    }
    Ok(())
}

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
    check_bitmaps(req)?;
    if !req.force && out.exists() {
        return Err(Error::io(
            format!("{name}: exists (use force to replace it)"),
            io::ErrorKind::AlreadyExists.into(),
        ));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".guestcore-kdump-")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io(
                format!("{}: cannot create a temporary file", dir.display()),
                e,
            )
        })?;
    let summary = {
        let w = BufWriter::with_capacity(1 << 20, WritebackFile::new(tmp.as_file_mut()));
        if req.flatten {
            let mut sink = FlatSink::new(w).map_err(|e| Error::io(name.clone(), e))?;
            let s = generate(req, opts, progress, &mut sink, &name)?;
            sink.into_inner()
                .into_inner()
                .map_err(|e| Error::io(name.clone(), e.into_error()))?;
            s
        } else {
            let mut sink = SeekSink::new(w);
            let s = generate(req, opts, progress, &mut sink, &name)?;
            sink.into_inner()
                .into_inner()
                .map_err(|e| Error::io(name.clone(), e.into_error()))?;
            s
        }
    };
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(name.clone(), e))?;
    let persisted = if req.force {
        tmp.persist(out)
    } else {
        tmp.persist_noclobber(out)
    };
    persisted.map_err(|e| Error::io(name, e.error))?;
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
    check_bitmaps(req)?;
    let mut sink = FlatSink::new(out).map_err(|e| Error::io(name, e))?;
    generate(req, opts, progress, &mut sink, name)
}

/// Where everything goes in the plain file.
struct Layout {
    max_mapnr: u64,
    bitmap_bytes: u64,
    bitmap1_off: u64,
    bitmap2_off: u64,
    desc_off: u64,
    data_off: u64,
}

/// Sorted, disjoint pfn ranges `[start, end)`.
type PfnRanges = Vec<(u64, u64)>;

fn pfn_ranges(req: &KdumpRequest<'_>, filtered: bool) -> PfnRanges {
    let mut out: PfnRanges = Vec::new();
    for r in req.memory.ram().ranges() {
        let mut r = *r;
        if filtered {
            match req.filter.and_then(|f| f.intersect(&r)) {
                Some(x) => r = x,
                None if req.filter.is_some() => continue,
                None => {}
            }
        }
        let (s, e) = (r.start / PAGE_U64, r.end.div_ceil(PAGE_U64));
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Writes the bitmap of `ranges` less `excluded` (`bytes` long) at `at`, [`BITMAP_PIECE`]
/// bytes at a time.
fn write_bitmap(
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
        buf.fill(0);
        // Pfns of this piece, and the ranges that touch them, shifted to the piece.
        let (lo, hi) = (done * 8, (done + len) * 8);
        while first < ranges.len() && ranges[first].1 <= lo {
            first += 1;
        }
        let here: PfnRanges = ranges[first..]
            .iter()
            .take_while(|r| r.0 < hi)
            .map(|&(s, e)| (s.max(lo) - lo, e.min(hi) - lo))
            .collect();
        set_bits(buf, &here);
        if let Some(x) = excluded {
            for (s, e) in x.members_in(lo, hi) {
                for p in s - lo..e - lo {
                    buf[(p / 8) as usize] &= !(1 << (p % 8));
                }
            }
        }
        sink.write_at(at + done, buf).map_err(Some)?;
        done += len;
    }
    Ok(())
}

fn set_bits(bitmap: &mut [u8], ranges: &PfnRanges) {
    for &(s, e) in ranges {
        let mut p = s;
        while p < e {
            if p % 8 == 0 && e - p >= 8 {
                let n = ((e - p) / 8) as usize;
                let i = (p / 8) as usize;
                bitmap[i..i + n].fill(0xff);
                p += 8 * n as u64;
            } else {
                bitmap[(p / 8) as usize] |= 1 << (p % 8);
                p += 1;
            }
        }
    }
}

fn count(ranges: &PfnRanges) -> u64 {
    ranges.iter().map(|(s, e)| e - s).sum()
}

/// Pfns of `ranges` that are dumped: not in `excluded`.
fn count_kept(ranges: &PfnRanges, excluded: Option<&FrameSet>) -> u64 {
    let out = excluded.map_or(0, |x| ranges.iter().map(|&(s, e)| x.count_in(s, e)).sum());
    count(ranges) - out
}

/// The notes as written, with VMCOREINFO appended when given separately; plus the VMCOREINFO
/// text that applies (for release and phys_base) and where its descriptor is in the note bytes.
fn notes_block(req: &KdumpRequest<'_>) -> (Vec<u8>, Option<(usize, Vec<u8>)>) {
    let mut notes: Vec<ElfNote> = req.notes.to_vec();
    if let Some(v) = req.vmcoreinfo {
        if !notes.iter().any(|n| n.name == VMCOREINFO_NAME) {
            notes.push(ElfNote::new(VMCOREINFO_NAME, 0, v.to_vec()));
        }
    }
    let mut bytes = Vec::new();
    let mut vmci = None;
    for n in &notes {
        let start = bytes.len();
        n.encode_into(&mut bytes);
        if vmci.is_none() && n.name == VMCOREINFO_NAME {
            let desc_at = start + 12 + (n.name.len() + 1).div_ceil(4) * 4;
            vmci = Some((desc_at, n.desc.clone()));
        }
    }
    (bytes, vmci)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Block 0 and the sub-header blocks (sub header + notes), and the layout.
fn headers(req: &KdumpRequest<'_>, opts: &KdumpOptions) -> Result<(Vec<u8>, Layout)> {
    let end = req.memory.ram().end();
    if end == 0 {
        return Err(Error::Unsupported("the guest has no RAM to dump".into()));
    }
    if end > MAX_PHYS {
        return Err(Error::Unsupported(format!(
            "RAM ends at {end:#x}, above the 52-bit physical address space"
        )));
    }
    check_bitmaps(req)?;
    let max_mapnr = end.div_ceil(PAGE_U64);
    let bitmap_blocks_half = max_mapnr.div_ceil(8).div_ceil(PAGE_U64);
    let (notes, vmci) = notes_block(req);
    let vmci_text = vmci.as_ref().map(|v| v.1.as_slice());
    let sub_size = if req.machine.is_64bit() {
        size_of::<KdumpSubHeader64>()
    } else {
        size_of::<KdumpSubHeader32>()
    } as u64;
    let note_off = PAGE_U64 + sub_size;
    let sub_hdr_blocks = (sub_size + notes.len() as u64).div_ceil(PAGE_U64);
    let bitmap1_off = PAGE_U64 * (1 + sub_hdr_blocks);
    let bitmap_bytes = bitmap_blocks_half * PAGE_U64;
    let bitmap2_off = bitmap1_off + bitmap_bytes;
    let desc_off = bitmap2_off + bitmap_bytes;
    let dumped = count_kept(&pfn_ranges(req, true), req.excluded);
    let data_off = (desc_off + dumped * size_of::<PageDesc>() as u64).next_multiple_of(PAGE_U64);
    let layout = Layout {
        max_mapnr,
        bitmap_bytes,
        bitmap1_off,
        bitmap2_off,
        desc_off,
        data_off,
    };

    let release = vmci_text
        .and_then(|v| vmcoreinfo_get(v, "OSRELEASE"))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("unknown");
    // libkdumpfile ignores a utsname whose release, version or machine is empty (and some
    // versions also an empty nodename), and then cannot tell the architecture. VMCOREINFO has
    // only the release: the rest are the kernel's defaults ("(none)") or "unknown".
    let utsname = NewUtsname {
        sysname: NewUtsname::field("Linux"),
        nodename: NewUtsname::field("(none)"),
        release: NewUtsname::field(release),
        version: NewUtsname::field("unknown"),
        machine: NewUtsname::field(req.machine.as_str()),
        domainname: NewUtsname::field("(none)"),
    };
    let phys_base = vmci_text.and_then(vmcoreinfo_phys_base).unwrap_or(0);
    let (vmci_off, vmci_size) = vmci
        .as_ref()
        .map_or((0, 0), |(at, d)| (note_off + *at as u64, d.len() as u64));
    let ts = opts.timestamp.unwrap_or_else(now);
    let mapnr32 = max_mapnr.min(u32::MAX as u64) as u32;
    let bitmap_blocks = u32::try_from(2 * bitmap_blocks_half)
        .map_err(|_| Error::Unsupported("bitmap too large for the kdump header".into()))?;
    let nr_cpus = req.nr_cpus as i32;
    let sub_blocks_i32 = sub_hdr_blocks as i32;
    let status = req.compression.flag();

    let mut out = vec![0u8; (PAGE_U64 * (1 + sub_hdr_blocks)) as usize];
    if req.machine.is_64bit() {
        let h = DiskDumpHeader64 {
            signature: *KDUMP_SIGNATURE,
            header_version: KDUMP_HEADER_VERSION.into(),
            utsname,
            pad1: [0; 6],
            timestamp_sec: ts.into(),
            timestamp_usec: 0.into(),
            status: status.into(),
            block_size: (PAGE as i32).into(),
            sub_hdr_size: sub_blocks_i32.into(),
            bitmap_blocks: bitmap_blocks.into(),
            max_mapnr: mapnr32.into(),
            total_ram_blocks: 0.into(),
            device_blocks: 0.into(),
            written_blocks: 0.into(),
            current_cpu: 0.into(),
            nr_cpus: nr_cpus.into(),
        };
        out[..size_of::<DiskDumpHeader64>()].copy_from_slice(h.as_bytes());
        let s = KdumpSubHeader64 {
            phys_base: phys_base.into(),
            dump_level: i32::from(req.dump_level).into(),
            split: 0.into(),
            start_pfn: 0.into(),
            end_pfn: 0.into(),
            offset_vmcoreinfo: vmci_off.into(),
            size_vmcoreinfo: vmci_size.into(),
            offset_note: note_off.into(),
            size_note: (notes.len() as u64).into(),
            offset_eraseinfo: 0.into(),
            size_eraseinfo: 0.into(),
            start_pfn_64: 0.into(),
            end_pfn_64: 0.into(),
            max_mapnr_64: max_mapnr.into(),
        };
        out[PAGE..PAGE + size_of::<KdumpSubHeader64>()].copy_from_slice(s.as_bytes());
    } else {
        let h = DiskDumpHeader32 {
            signature: *KDUMP_SIGNATURE,
            header_version: KDUMP_HEADER_VERSION.into(),
            utsname,
            pad1: [0; 2],
            timestamp_sec: (ts as u32).into(),
            timestamp_usec: 0.into(),
            status: status.into(),
            block_size: (PAGE as i32).into(),
            sub_hdr_size: sub_blocks_i32.into(),
            bitmap_blocks: bitmap_blocks.into(),
            max_mapnr: mapnr32.into(),
            total_ram_blocks: 0.into(),
            device_blocks: 0.into(),
            written_blocks: 0.into(),
            current_cpu: 0.into(),
            nr_cpus: nr_cpus.into(),
        };
        out[..size_of::<DiskDumpHeader32>()].copy_from_slice(h.as_bytes());
        let s = KdumpSubHeader32 {
            phys_base: (phys_base as u32).into(),
            dump_level: i32::from(req.dump_level).into(),
            split: 0.into(),
            start_pfn: 0.into(),
            end_pfn: 0.into(),
            offset_vmcoreinfo: vmci_off.into(),
            size_vmcoreinfo: (vmci_size as u32).into(),
            offset_note: note_off.into(),
            size_note: (notes.len() as u32).into(),
            offset_eraseinfo: 0.into(),
            size_eraseinfo: 0.into(),
            start_pfn_64: 0.into(),
            end_pfn_64: 0.into(),
            max_mapnr_64: max_mapnr.into(),
        };
        out[PAGE..PAGE + size_of::<KdumpSubHeader32>()].copy_from_slice(s.as_bytes());
    }
    out[note_off as usize..note_off as usize + notes.len()].copy_from_slice(&notes);
    Ok((out, layout))
}

/// Pages per parallel work item: each item compresses its pages one after another straight
/// into its own (reused) output buffer, so no page gets an allocation or an extra copy.
const CHUNK_PAGES: usize = 128;

/// The stored form of up to [`CHUNK_PAGES`] consecutive pages of a window.
struct Chunk {
    /// Per page: stored size (0: the shared zero page) and descriptor flags.
    entries: Vec<(u32, u32)>,
    /// The stored pages, back to back, in `data[..used]`; `data` stays `CHUNK_PAGES` page
    /// bounds long (allocated once, reused for later windows).
    data: Vec<u8>,
    used: usize,
}

impl Chunk {
    fn new(kind: Compression) -> Self {
        Chunk {
            entries: Vec::with_capacity(CHUNK_PAGES),
            data: vec![0; CHUNK_PAGES * kind.page_bound()],
            used: 0,
        }
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
fn release_pfns(mem: &dyn PhysMemory, pfns: &[u64]) {
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
    let bound = kind.page_bound();
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.comp.kind() == kind) {
            *slot = Some(Worker {
                comp: PageCompressor::new(kind),
                buf: Box::new([0u8; PAGE]),
            });
        }
        let w = slot.as_mut().expect("set above");
        for &pfn in pfns {
            let page = read_page(mem, pfn, &mut w.buf).map_err(|e| match e {
                Error::NotInMemory { .. } => {
                    Error::Unsupported(format!("cannot read pfn {pfn:#x} of the source: {e}"))
                }
                e => e,
            })?;
            if is_zero(page) {
                chunk.entries.push((0, 0));
                continue;
            }
            let dst = &mut chunk.data[chunk.used..chunk.used + bound];
            let entry = match w.comp.compress_into(page, dst) {
                Some(n) => (n as u32, kind.flag()),
                None => {
                    dst[..PAGE].copy_from_slice(page);
                    (PAGE as u32, 0)
                }
            };
            chunk.used += entry.0 as usize;
            chunk.entries.push(entry);
        }
        Ok(())
    })
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
    generate_in_pool(req, opts, progress, sink, name, pool.as_ref())
}

fn generate_in_pool(
    req: &KdumpRequest<'_>,
    opts: &KdumpOptions,
    progress: &dyn Progress,
    sink: &mut dyn PositionedSink,
    name: &str,
    pool: Option<&rayon::ThreadPool>,
) -> Result<KdumpSummary> {
    let io = |e: io::Error| Error::io(name.to_string(), e);
    let ram = pfn_ranges(req, false);
    let dumped = pfn_ranges(req, true);
    let (head, layout) = headers(req, opts)?;
    let mut summary = KdumpSummary {
        max_mapnr: layout.max_mapnr,
        ram_pages: count(&ram),
        dumped_pages: count_kept(&dumped, req.excluded),
        ..Default::default()
    };
    sink.write_at(0, &head).map_err(io)?;
    let bitmap_err = |e: Option<io::Error>| e.map_or(Error::Cancelled, io);
    for (at, ranges, excluded) in [
        (layout.bitmap1_off, &ram, None),
        (layout.bitmap2_off, &dumped, req.excluded),
    ] {
        write_bitmap(sink, at, layout.bitmap_bytes, ranges, excluded, progress)
            .map_err(bitmap_err)?;
    }
    // Pad the descriptor area to the data start, then the shared zero page.
    let desc_end = layout.desc_off + summary.dumped_pages * size_of::<PageDesc>() as u64;
    if desc_end < layout.data_off {
        sink.write_at(desc_end, &vec![0u8; (layout.data_off - desc_end) as usize])
            .map_err(io)?;
    }
    let zero_off = layout.data_off;
    sink.write_at(zero_off, &[0u8; PAGE]).map_err(io)?;
    let mut data_pos = zero_off + PAGE_U64;
    let mut desc_pos = layout.desc_off;

    progress.start("writing kdump", summary.dumped_pages);
    // Compression of window N+1 (on the pool, from a scoped thread) overlaps writing window N
    // (here): the writes are kernel copies into the page cache, the compression is CPU work.
    type Done = (Vec<u64>, Vec<Chunk>, Vec<Result<()>>);
    let compress = |pfns: Vec<u64>, mut chunks: Vec<Chunk>| -> Done {
        let mut work = || -> Vec<Result<()>> {
            pfns.par_chunks(CHUNK_PAGES)
                .zip(chunks.par_iter_mut())
                .map(|(p, c)| store_chunk(req.memory, req.compression, p, c))
                .collect()
        };
        let results = match pool {
            Some(p) => p.install(work),
            None => work(),
        };
        (pfns, chunks, results)
    };
    let result = std::thread::scope(|scope| -> Result<()> {
        let window = opts.window_pages.max(1);
        let mut descs: Vec<u8> = Vec::with_capacity(window * size_of::<PageDesc>());
        let empty = FrameSet::default();
        let excluded = req.excluded.unwrap_or(&empty);
        let mut all = dumped
            .iter()
            .flat_map(|&(s, e)| excluded.gaps_in(s, e).flat_map(|(a, b)| a..b))
            .peekable();
        // Output buffers of windows already written, for the next ones.
        let mut spare: Vec<Chunk> = Vec::new();
        let next_window = |all: &mut std::iter::Peekable<_>, spare: &mut Vec<Chunk>| {
            let pfns: Vec<u64> = all.by_ref().take(window).collect();
            if pfns.is_empty() {
                return None;
            }
            let n = pfns.len().div_ceil(CHUNK_PAGES);
            let mut chunks: Vec<Chunk> = spare.drain(spare.len().saturating_sub(n)..).collect();
            chunks.resize_with(n, || Chunk::new(req.compression));
            Some(scope.spawn(move || compress(pfns, chunks)))
        };
        let mut pending = next_window(&mut all, &mut spare);
        while let Some(handle) = pending.take() {
            if progress.cancelled() {
                let _ = handle.join();
                return Err(Error::Cancelled);
            }
            let (pfns, chunks, results) = handle
                .join()
                .map_err(|_| Error::Unsupported("a compression thread panicked".into()))?;
            results.into_iter().collect::<Result<()>>()?;
            pending = next_window(&mut all, &mut spare);
            descs.clear();
            let mut off = data_pos;
            for c in &chunks {
                for &(size, flags) in &c.entries {
                    let d = if size == 0 {
                        summary.zero_pages += 1;
                        PageDesc {
                            offset: zero_off.into(),
                            size: (PAGE as u32).into(),
                            flags: 0.into(),
                            page_flags: 0.into(),
                        }
                    } else {
                        if flags == 0 {
                            summary.raw_pages += 1;
                        } else {
                            summary.compressed_pages += 1;
                        }
                        let d = PageDesc {
                            offset: off.into(),
                            size: size.into(),
                            flags: flags.into(),
                            page_flags: 0.into(),
                        };
                        off += size as u64;
                        d
                    };
                    descs.extend_from_slice(d.as_bytes());
                }
            }
            sink.write_at(desc_pos, &descs).map_err(io)?;
            desc_pos += descs.len() as u64;
            for c in &chunks {
                sink.write_at(data_pos, &c.data[..c.used]).map_err(io)?;
                data_pos += c.used as u64;
            }
            release_pfns(req.memory, &pfns);
            progress.advance(pfns.len() as u64);
            spare.extend(chunks);
        }
        sink.finish().map_err(io)?;
        Ok(())
    });
    progress.finish();
    result?;
    summary.bytes_written = sink.bytes_out();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitmap written in pieces equals the one built whole, across piece boundaries.
    #[test]
    fn bitmap_in_pieces() {
        let bytes = 3 * BITMAP_PIECE;
        let ranges: PfnRanges = vec![
            (3, 9),
            (BITMAP_PIECE * 8 - 5, BITMAP_PIECE * 8 + 7),
            (2 * BITMAP_PIECE * 8, 3 * BITMAP_PIECE * 8),
        ];
        let mut whole = vec![0u8; bytes as usize];
        set_bits(&mut whole, &ranges);
        let mut sink = SeekSink::new(std::io::Cursor::new(Vec::new()));
        write_bitmap(
            &mut sink,
            0,
            bytes,
            &ranges,
            None,
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert_eq!(sink.into_inner().into_inner(), whole);
    }

    /// Hostile class 5: one page at 2^51 would need two 64 GiB bitmaps for 4 KiB of RAM. The
    /// request is refused, naming the address and ELF, and no file (temporary or not) is made.
    #[test]
    fn stray_page_near_the_top_is_refused_without_a_file() {
        use super::super::{KdumpMachine, KdumpRequest};
        let mem = crate::phys::VecMemory::from_blocks(vec![
            (0, vec![1u8; PAGE]),
            (1 << 51, vec![2u8; PAGE]),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let req = KdumpRequest {
            memory: &mem,
            notes: &[],
            vmcoreinfo: None,
            machine: KdumpMachine::X86_64,
            nr_cpus: 1,
            compression: Compression::Zlib,
            filter: None,
            excluded: None,
            dump_level: 0,
            flatten: false,
            force: false,
        };
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
        assert!(check_bitmaps(&KdumpRequest {
            memory: &mem,
            ..req
        })
        .is_ok());
    }

    #[test]
    fn bit_ranges() {
        let mut b = vec![0u8; 4];
        set_bits(&mut b, &vec![(1, 3), (7, 25)]);
        assert_eq!(b, vec![0b1000_0110, 0xff, 0xff, 0x01]);
    }
}
