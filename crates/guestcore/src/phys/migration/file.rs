//! A migration file on disk as [`PhysMemory`]: the stream parser run once over the mapped
//! file (seeking over page bytes, so opening costs one pass over the record headers), an
//! index from each page to where its bytes are, then reads straight from the mapping.
//!
//! * A plain stream stores each page as an 8-byte record header and the 4096 bytes, so pages
//!   sent one after the other lie at one stride (4104 bytes, 4096 + the header). The index
//!   keeps **runs** (first page, count, first file offset, stride; or a fill byte for zero
//!   pages): its size grows with the discontinuities of the stream, not with the RAM. A page
//!   sent twice (a precopy round after the guest wrote it) keeps its last copy. A page the
//!   stream never sent reads as zero, as the destination's fresh RAM would.
//!
//!   The index is bounded by the distinct pages the records name, not by how often they name
//!   them: a record that resends the page of the record before it replaces that run, and the
//!   runs are resolved (later sends win, zero pages dropped, as they read like unsent ones)
//!   whenever they have doubled since the last resolution ([`RunLog`]), so a stream that
//!   resends a few pages in any order, millions of times, keeps a few runs.
//! * **Bounded by the file, not by what it declares.** A block's length is a claim: the
//!   stream says `pc.ram` is 64 TiB in a 100-byte file. Only the pages its records hold are
//!   data ([`PhysMemory::data_runs`] names them, so every pass over RAM skips the rest as it
//!   skips the holes of a sparse raw file), and a plain stream's block is **clipped** at the
//!   end of the last page any record names: QEMU's precopy sends every page of a block at
//!   least once (a zero page as a 9-byte record), so a tail no record names is a claim the
//!   file cannot back. Clipping rather than refusing keeps what the stream does hold
//!   readable, and the clip is reported ([`BlockInfo::held`]; the facade warns) because the
//!   RAM map then differs from the declared one. What remains — the span from a block's
//!   start to its last record — is still a claim when the records are few and far apart (a
//!   page at 0 and one at 64 TiB): a plain stream whose placed RAM exceeds
//!   [`BACKED_PER_BYTE`] times its length is **refused** (there is no part of it worth
//!   keeping that a clip could choose). A `mapped-ram` block is neither clipped nor refused:
//!   its file must be as long as the block (checked at open), and its bitmap says which
//!   pages are present.
//! * A `mapped-ram` file stores page `i` of a block at `pages_offset + i * 4096`, with a bitmap
//!   of the pages written; pages whose bit is clear read as zero (QEMU does not rewrite a slot
//!   whose page became zero, so the file bytes there may be stale). Ranges of present pages
//!   are lent from the mapping ([`PhysMemory::slice`]) and copied file to file
//!   ([`PhysMemory::file_extent`]).
//!
//! `virsh save` files start with libvirt's `LibvirtQemudSave` header, then the domain XML,
//! then the QEMU stream; the stream's start is found from the header's XML length
//! ([`crate::format::libvirt_save`]).

use super::devices::{CpuSection, DeviceState};
use super::layout::machine_layout;
use super::ram::{MappedRam, RamBlock, PAGE_SIZE};
use super::stream::{Configuration, Event, PageContent, Parser};
use super::vmcoreinfo::{self, VmcoreinfoPointer};
use crate::addr::PhysRange;
use crate::format::libvirt_save::{SaveHeader, LIBVIRT_MAGIC};
use crate::format::migration::{mapped_ram_bitmap_len, MAGIC};
use crate::phys::{map_file, release_mapped, InputMap, PhysMemory, RamMap, RamPiece};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// Page `i` of the run lies at `file + i * stride`.
    Data {
        file: u64,
        stride: u64,
    },
    Fill(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    page: u64,
    count: u64,
    src: Src,
}

impl Run {
    fn end(&self) -> u64 {
        self.page + self.count
    }
    /// The part `[from, to)` of this run.
    fn sub(&self, from: u64, to: u64) -> Run {
        let src = match self.src {
            Src::Data { file, stride } => Src::Data {
                file: file + (from - self.page) * stride,
                stride,
            },
            s => s,
        };
        Run {
            page: from,
            count: to - from,
            src,
        }
    }
}

/// Where the pages of one block are.
#[derive(Debug)]
enum Pages {
    /// Sorted, non-overlapping runs.
    Runs(Vec<Run>),
    Mapped {
        pages_offset: u64,
        bitmap: Vec<u64>,
    },
}

/// Appends page `page` to `runs`, extending the last run when it continues it.
fn push_page(runs: &mut Vec<Run>, page: u64, src: Src) {
    if let Some(last) = runs.last_mut() {
        if last.end() == page {
            match (&mut last.src, src) {
                (Src::Fill(a), Src::Fill(b)) if *a == b => {
                    last.count += 1;
                    return;
                }
                (Src::Data { file, stride }, Src::Data { file: f, .. }) => {
                    if last.count == 1 && f > *file {
                        *stride = f - *file;
                        last.count += 1;
                        return;
                    }
                    if last.count > 1 && *file + last.count * *stride == f {
                        last.count += 1;
                        return;
                    }
                }
                _ => {}
            }
        }
    }
    runs.push(Run {
        page,
        count: 1,
        src,
    });
}

/// RAM bytes a plain stream's byte may stand for. QEMU's precopy sends each page of a
/// block at least once, a zero page as a 9-byte record (455 bytes of RAM per byte); the
/// bound leaves room for pages it legitimately skips (free-page hinting: up to ~8 in 9
/// unsent). Past it the records' span is a claim the file cannot back, refused at open:
/// every pass over RAM, and a kdump file's descriptors, then stay linear in the file.
const BACKED_PER_BYTE: u64 = 4096;

/// Bytes of the stream parsed between two releases of the mapping while opening.
const RELEASE_STEP: u64 = 16 << 20;

/// Runs resolved once the log has this many and twice as many as at the last resolution.
const COMPACT_AT: usize = 1 << 16;

/// One block's page runs while the stream is read: stream order since the last resolution,
/// sorted before it, and how far into the block any record reached.
#[derive(Debug, Default)]
struct RunLog {
    runs: Vec<Run>,
    /// Runs at the last resolution.
    resolved: usize,
    /// One past the highest page any record named.
    end: u64,
}

impl RunLog {
    /// Page `page` sent with `src`: a later send wins.
    fn push(&mut self, page: u64, src: Src) {
        self.end = self.end.max(page + 1);
        if let Some(last) = self.runs.last_mut() {
            // The same page again: this copy replaces the last (a run of one page covers
            // nothing else, so no other send is lost).
            if last.count == 1 && last.page == page {
                last.src = src;
                return;
            }
        }
        push_page(&mut self.runs, page, src);
        if self.runs.len() >= COMPACT_AT.max(2 * self.resolved) {
            self.compact();
        }
    }

    /// Resolves the runs so far; zero-fill runs are dropped (a page outside every run reads
    /// as zero, and later sends still win over the gap they leave).
    fn compact(&mut self) {
        let runs = std::mem::take(&mut self.runs);
        self.runs = resolve(runs);
        self.runs.retain(|r| r.src != Src::Fill(0));
        self.resolved = self.runs.len();
    }

    fn finish(mut self) -> Vec<Run> {
        self.compact();
        self.runs
    }
}

/// Runs in stream order → sorted, non-overlapping runs where a later send of a page wins.
/// O(n log n) in the number of runs.
fn resolve(runs: Vec<Run>) -> Vec<Run> {
    if runs.windows(2).all(|w| w[0].end() <= w[1].page) {
        return runs;
    }
    let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for r in runs.into_iter().rev() {
        let (s, e) = (r.page, r.end());
        let from = covered.range(..=s).next_back().map_or(s, |(&a, _)| a);
        let mut cur = s;
        let mut absorbed = Vec::new();
        for (&a, &b) in covered.range(from..) {
            if a > e {
                break;
            }
            if b >= s {
                absorbed.push(a);
            }
            if a > cur && cur < e {
                out.push(r.sub(cur, a.min(e)));
            }
            cur = cur.max(b);
        }
        if cur < e {
            out.push(r.sub(cur, e));
        }
        let (mut ns, mut ne) = (s, e);
        for a in absorbed {
            let b = covered.remove(&a).expect("present");
            ns = ns.min(a);
            ne = ne.max(b);
        }
        covered.insert(ns, ne);
    }
    out.sort_by_key(|r| r.page);
    out
}

/// One RAM block of the file and where it was placed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlockInfo {
    /// The block as the stream declared it (id and length).
    #[serde(flatten)]
    pub block: RamBlock,
    /// Its guest-physical ranges (empty when the layout does not place it), clipped at
    /// [`held`](Self::held).
    pub phys: Vec<PhysRange>,
    /// For a plain stream's block: bytes from its start to the end of the last page any
    /// record names. Less than the declared length when the stream never reached the rest;
    /// the block's ranges stop there (see the module doc). `None` for `mapped-ram`.
    pub held: Option<u64>,
}

/// Counts of what the stream held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Page records with data.
    pub data_pages: u64,
    /// Zero-page records.
    pub zero_pages: u64,
    /// Runs in the page index.
    pub runs: u64,
    /// `cpu` device sections in the stream (with or without a vmdesc entry).
    pub cpu_sections: u64,
}

/// An opened migration file.
pub struct MigrationFile {
    path: PathBuf,
    file: File,
    map: InputMap,
    config: Configuration,
    blocks: Vec<BlockInfo>,
    pages: Vec<Pages>,
    ram: RamMap,
    /// Per RAM range (in `ram.ranges()` order): block index and offset of its start.
    pieces: Vec<(usize, u64)>,
    cpus: Vec<CpuSection>,
    vmcoreinfo_ptr: Option<VmcoreinfoPointer>,
    vmcoreinfo: Option<Vec<u8>>,
    libvirt: bool,
    has_vmdesc: bool,
    stats: StreamStats,
}

impl std::fmt::Debug for MigrationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationFile")
            .field("path", &self.path)
            .field("machine", &self.config.machine)
            .field("blocks", &self.blocks.len())
            .field("ram", &self.ram)
            .finish()
    }
}

/// Where the QEMU stream starts in a file whose first bytes are `head` (0, or after a
/// libvirt header); `None` when it is neither.
pub fn stream_start(map: &[u8]) -> Option<u64> {
    let magic = MAGIC.to_be_bytes();
    if map.starts_with(&magic) {
        return Some(0);
    }
    let at = SaveHeader::decode(map)?.stream_offset();
    let s = usize::try_from(at).ok()?;
    (map.get(s..s + 4)? == magic).then_some(at)
}

impl MigrationFile {
    /// Opens `path`; `layout` places the RAM blocks (default: the machine type's known
    /// layout, see `layout`).
    pub fn open(path: impl AsRef<Path>, layout: Option<&[RamPiece]>) -> Result<Self> {
        let path = path.as_ref();
        let (file, map) = map_file(path)?;
        let Some(map) = map.filter(|m| m.len() >= 8) else {
            return Err(Error::format(path, "too short for a migration stream"));
        };
        if let Some(h) = SaveHeader::decode(&map).filter(|h| h.compressed != 0) {
            return Err(Error::format(
                path,
                format!(
                    "compressed libvirt save image (format {}, {}): not supported; save it \
                     with save_image_format = \"raw\"",
                    h.compressed,
                    h.compression_name()
                ),
            ));
        }
        let base = stream_start(&map).ok_or_else(|| {
            if map.starts_with(LIBVIRT_MAGIC) {
                Error::format(
                    path,
                    "libvirt save image whose QEMU stream does not follow its header and XML",
                )
            } else {
                Error::format(path, "not a QEMU migration stream (no QEVM magic)")
            }
        })?;
        let mut parser = Parser::seekable(Cursor::new(&map[base as usize..]), path, 512);
        parser.set_page_bytes(false);
        let mut runs: Vec<RunLog> = Vec::new();
        let mut devices = DeviceState::default();
        let mut stats = StreamStats::default();
        let mut eof = false;
        // Stream bytes already parsed and dropped from this process (see below).
        let mut released = 0u64;
        while let Some(ev) = parser.next()? {
            match ev {
                Event::RamBlocks(b) => runs = b.iter().map(|_| RunLog::default()).collect(),
                Event::Page {
                    block,
                    offset,
                    data_pos,
                    content,
                } => {
                    let src = match content {
                        PageContent::Fill(f) => {
                            stats.zero_pages += 1;
                            Src::Fill(f)
                        }
                        _ => {
                            stats.data_pages += 1;
                            Src::Data {
                                file: base + data_pos,
                                stride: 0,
                            }
                        }
                    };
                    runs[block].push(offset / PAGE_SIZE, src);
                }
                Event::Device { header, data, .. } => {
                    stats.cpu_sections += u64::from(header.name == "cpu");
                    devices.add(header, data)
                }
                Event::Eof => eof = true,
                Event::Vmdesc(j) => devices.set_vmdesc(j),
                Event::Configuration(_) | Event::Command { .. } => {}
            }
            // The parse reads every record header through the mapping: drop what it has
            // passed, so opening a stream of millions of records stays O(this step)
            // resident, not O(file).
            let pos = parser.position();
            if pos - released >= RELEASE_STEP {
                release_mapped(&map, base + released, pos - released);
                released = pos;
            }
        }
        release_mapped(&map, base + released, parser.position() - released);
        if !eof {
            return Err(Error::format(
                path,
                "the stream ends before its EOF section",
            ));
        }
        let config = parser.configuration().clone();
        let blocks: Vec<RamBlock> = parser.blocks().to_vec();
        drop(parser);

        let mut pages = Vec::with_capacity(blocks.len());
        let mut held = Vec::with_capacity(blocks.len());
        for (b, r) in blocks.iter().zip(runs) {
            held.push(match b.mapped {
                Some(_) => None,
                None => Some((r.end * PAGE_SIZE).min(b.length)),
            });
            pages.push(match b.mapped {
                Some(m) => Pages::Mapped {
                    pages_offset: base + m.pages_offset,
                    bitmap: read_bitmap(&map, base, b, m, path)?,
                },
                None => {
                    let r = r.finish();
                    stats.runs += r.len() as u64;
                    Pages::Runs(r)
                }
            });
        }

        let has_vmdesc = devices.has_vmdesc();
        let (cpus, vmcoreinfo_ptr) = devices.decode(path)?;

        let owned_layout;
        let layout = match layout {
            Some(l) => l,
            None => {
                owned_layout = machine_layout(&config.machine, &blocks, path)?;
                &owned_layout
            }
        };
        let mut placed: Vec<(PhysRange, usize, u64)> = Vec::new();
        for p in layout {
            let i = blocks
                .iter()
                .position(|b| b.name == p.block)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "the layout names block {:?}, which the stream does not have",
                            p.block
                        ),
                    )
                })?;
            let end = p.offset.checked_add(p.phys.len());
            if end.map_or(true, |e| e > blocks[i].length) {
                return Err(Error::format(
                    path,
                    format!("the layout places {:#x} bytes from offset {:#x} of block {:?}, which has {:#x}", p.phys.len(), p.offset, p.block, blocks[i].length),
                ));
            }
            // A plain stream's block ends where its records do (see the module doc).
            let phys = match held[i] {
                Some(h) => {
                    PhysRange::new(p.phys.start, h.saturating_sub(p.offset).min(p.phys.len()))
                }
                None => p.phys,
            };
            placed.push((phys, i, p.offset));
        }
        // RamMap drops empty ranges: drop them here too, so `pieces` stays in step.
        placed.retain(|p| !p.0.is_empty());
        placed.sort_by_key(|p| p.0.start);
        let plain: u64 = placed
            .iter()
            .filter(|p| held[p.1].is_some())
            .map(|p| p.0.len())
            .sum();
        let stream_len = map.len() as u64 - base;
        if plain > stream_len.saturating_mul(BACKED_PER_BYTE) {
            return Err(Error::Limit {
                bound: "migration stream RAM",
                detail: format!(
                    "{}: its records span {plain:#x} bytes of RAM, but the stream is only \
                     {stream_len} bytes: QEMU sends every page it migrates, a zero page as a \
                     9-byte record, so a stream backs at most {BACKED_PER_BYTE} bytes of RAM \
                     per byte",
                    path.display()
                ),
            });
        }
        let ram = RamMap::new(placed.iter().map(|p| p.0).collect())?;
        let pieces = placed.iter().map(|p| (p.1, p.2)).collect();
        let blocks = blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| BlockInfo {
                phys: placed.iter().filter(|p| p.1 == i).map(|p| p.0).collect(),
                held: held[i],
                block,
            })
            .collect();

        let mut me = MigrationFile {
            path: path.to_path_buf(),
            file,
            map,
            config,
            blocks,
            pages,
            ram,
            pieces,
            cpus,
            vmcoreinfo_ptr,
            vmcoreinfo: None,
            libvirt: base > 0,
            has_vmdesc,
            stats,
        };
        me.vmcoreinfo = vmcoreinfo_ptr.and_then(|p| vmcoreinfo::read_note(&me, p));
        // The stream's records were parsed through the mapping: a file cut meanwhile read as
        // zeros.
        me.map.intact()?;
        Ok(me)
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The configuration section: machine type, capabilities.
    pub fn configuration(&self) -> &Configuration {
        &self.config
    }
    /// The RAM blocks and where they were placed.
    pub fn blocks(&self) -> &[BlockInfo] {
        &self.blocks
    }
    /// The `cpu` sections with their vmdesc entries, by instance (empty without a vmdesc);
    /// decode them with [`crate::cpu::vmstate::decode_cpu`].
    pub fn cpu_sections(&self) -> &[CpuSection] {
        &self.cpus
    }
    /// Where the `vmcoreinfo` device says the guest's note is.
    pub fn vmcoreinfo_pointer(&self) -> Option<VmcoreinfoPointer> {
        self.vmcoreinfo_ptr
    }
    /// The guest's VMCOREINFO text, read from RAM where the `vmcoreinfo` device points.
    pub fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.vmcoreinfo.as_deref()
    }
    /// True when the file was written with `mapped-ram`.
    pub fn mapped_ram(&self) -> bool {
        self.config.mapped_ram()
    }
    /// True when the stream sits inside a libvirt save image.
    pub fn libvirt(&self) -> bool {
        self.libvirt
    }
    /// True when the stream ended with its vmdesc (needed for the CPU state).
    pub fn has_vmdesc(&self) -> bool {
        self.has_vmdesc
    }
    /// What the stream held: page-record counts and runs in the page index.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Where byte `off` of block `b` is: file bytes (with how many follow contiguously in
    /// the same page-run), a fill byte, or zero. Returns (source, bytes valid from `off`).
    /// Looks no further than `need` bytes ahead.
    fn locate(&self, b: usize, off: u64, need: u64) -> (Loc, u64) {
        let page = off / PAGE_SIZE;
        let in_page = off % PAGE_SIZE;
        let left_in_page = PAGE_SIZE - in_page;
        match &self.pages[b] {
            Pages::Mapped {
                pages_offset,
                bitmap,
            } => {
                let present = |p: u64| {
                    bitmap
                        .get((p / 64) as usize)
                        .is_some_and(|w| w & (1 << (p % 64)) != 0)
                };
                let last = self.blocks[b].block.pages();
                let mut q = page;
                let want = present(page);
                let stop = last.min(page + need.div_ceil(PAGE_SIZE) + 1);
                while q < stop && present(q) == want {
                    q += 1;
                }
                let n = (q - page) * PAGE_SIZE - in_page;
                if want {
                    (Loc::File(pages_offset + off), n)
                } else {
                    (Loc::Fill(0), n)
                }
            }
            Pages::Runs(runs) => {
                let i = runs.partition_point(|r| r.end() <= page);
                match runs.get(i) {
                    Some(r) if r.page <= page => match r.src {
                        Src::Data { file, stride } => {
                            let at = file + (page - r.page) * stride + in_page;
                            // Contiguous beyond this page only when the run is.
                            let n = if stride == PAGE_SIZE {
                                (r.end() - page) * PAGE_SIZE - in_page
                            } else {
                                left_in_page
                            };
                            (Loc::File(at), n)
                        }
                        Src::Fill(f) => (Loc::Fill(f), (r.end() - page) * PAGE_SIZE - in_page),
                    },
                    next => {
                        let until = next.map_or(self.blocks[b].block.pages(), |r| r.page);
                        (Loc::Fill(0), (until - page) * PAGE_SIZE - in_page)
                    }
                }
            }
        }
    }

    /// The block and block offset of guest-physical `addr`, and the bytes of its RAM range
    /// from there.
    fn block_of(&self, addr: u64) -> Option<(usize, u64, u64)> {
        let i = self.ram.index_of(addr)?;
        let r = self.ram.ranges()[i];
        let (b, off) = self.pieces[i];
        Some((b, off + (addr - r.start), r.end - addr))
    }

    /// File offset of `[addr, addr + len)` when those bytes lie contiguously in the file.
    fn contiguous(&self, addr: u64, len: u64) -> Option<u64> {
        let (b, off, room) = self.block_of(addr)?;
        if len > room {
            return None;
        }
        match self.locate(b, off, len) {
            (Loc::File(at), n) if n >= len && at.checked_add(len)? <= self.map.len() as u64 => {
                Some(at)
            }
            _ => None,
        }
    }
}

enum Loc {
    File(u64),
    Fill(u8),
}

/// Joins touching `[start, end)` runs before handing them on, so a pass gets one call per
/// extent, not one per page run of the index.
#[derive(Default)]
struct Coalesce {
    cur: Option<(u64, u64)>,
}

impl Coalesce {
    fn add(&mut self, s: u64, e: u64, f: &mut dyn FnMut(u64, u64) -> bool) -> bool {
        match &mut self.cur {
            Some((_, end)) if *end == s => {
                *end = e;
                true
            }
            _ => {
                let go_on = self.flush(f);
                self.cur = Some((s, e));
                go_on
            }
        }
    }

    fn flush(&mut self, f: &mut dyn FnMut(u64, u64) -> bool) -> bool {
        match self.cur.take() {
            Some((s, e)) => f(s, e),
            None => true,
        }
    }
}

/// Calls `f` with each run `[a, z)` of set bits of `bitmap` (bit `i` of word `i / 64`) within
/// pages `[first, last)`; whole zero words are skipped at once. Stops when `f` returns `false`.
fn set_bit_runs(
    bitmap: &[u64],
    first: u64,
    last: u64,
    mut f: impl FnMut(u64, u64) -> bool,
) -> bool {
    let bit = |p: u64| {
        bitmap
            .get((p / 64) as usize)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    };
    let mut p = first;
    while p < last {
        if p % 64 == 0 {
            // Jump over zero words to the next word with a bit set (or the end).
            let w = (p / 64) as usize;
            let to = (last.div_ceil(64) as usize).min(bitmap.len());
            let rest = bitmap.get(w..to).unwrap_or(&[]);
            let skip = rest.iter().position(|&x| x != 0).unwrap_or(rest.len()) as u64;
            if skip > 0 || rest.is_empty() {
                p = if rest.is_empty() { last } else { p + skip * 64 };
                continue;
            }
        }
        if !bit(p) {
            p += 1;
            continue;
        }
        let a = p;
        while p < last && bit(p) {
            p += 1;
        }
        if !f(a, p) {
            return false;
        }
    }
    true
}

fn read_bitmap(map: &[u8], base: u64, b: &RamBlock, m: MappedRam, path: &Path) -> Result<Vec<u64>> {
    let len = mapped_ram_bitmap_len(b.pages());
    let start = base + m.bitmap_offset;
    let pages_end = base + m.pages_offset + b.length;
    if pages_end > map.len() as u64 {
        return Err(Error::format(
            path,
            format!(
                "mapped-ram block {:?} ends at {pages_end:#x}, past the end of the file ({:#x}): truncated",
                b.name,
                map.len()
            ),
        ));
    }
    let bytes = &map[start as usize..(start + len) as usize];
    Ok(bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8")))
        .collect())
}

impl PhysMemory for MigrationFile {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let total = buf.len() as u64;
        let not_in = || Error::NotInMemory { addr, len: total };
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr.checked_add(done as u64).ok_or_else(not_in)?;
            let (b, off, room) = self.block_of(a).ok_or_else(not_in)?;
            let (loc, n) = self.locate(b, off, (buf.len() - done) as u64);
            let n = n.min(room).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + n];
            match loc {
                Loc::Fill(f) => out.fill(f),
                Loc::File(at) => {
                    let src = usize::try_from(at)
                        .ok()
                        .and_then(|s| self.map.get(s..s.checked_add(n)?))
                        .ok_or_else(|| {
                            Error::format(
                                &self.path,
                                format!("page data at {at:#x} is past the end of the file"),
                            )
                        })?;
                    out.copy_from_slice(src);
                }
            }
            done += n;
        }
        self.map.intact()
    }

    fn intact(&self) -> Result<()> {
        self.map.whole()
    }

    fn ram(&self) -> &RamMap {
        &self.ram
    }

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let at = usize::try_from(self.contiguous(addr, len)?).ok()?;
        self.map
            .get(at..at.checked_add(usize::try_from(len).ok()?)?)
    }

    fn file_extent(&self, addr: u64, len: u64) -> Option<(&File, u64)> {
        Some((&self.file, self.contiguous(addr, len)?))
    }

    /// The pages the records hold (data, or a non-zero fill) of a plain stream, the present
    /// pages of a `mapped-ram` one: never-sent pages, zero pages and clear bits are skipped.
    fn data_runs(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, u64) -> bool) -> bool {
        let mut out = Coalesce::default();
        let ranges = self.ram.ranges();
        let first = ranges.partition_point(|r| r.end <= start);
        for (i, r) in ranges.iter().enumerate().skip(first) {
            if r.start >= end {
                break;
            }
            let (s, e) = (start.max(r.start), end.min(r.end));
            let (b, base) = self.pieces[i];
            let off = base + (s - r.start);
            let (lo, hi) = (off, off + (e - s));
            // Block bytes [x, y) of a held page run → guest-physical, clipped to [s, e).
            let mut emit = |x: u64, y: u64| {
                let (x, y) = (x.max(lo), y.min(hi));
                x >= y || out.add(s + (x - lo), s + (y - lo), f)
            };
            let (p0, p1) = (lo / PAGE_SIZE, hi.div_ceil(PAGE_SIZE));
            let go_on = match &self.pages[b] {
                Pages::Runs(runs) => {
                    let k = runs.partition_point(|r| r.end() <= p0);
                    runs[k..]
                        .iter()
                        .take_while(|r| r.page < p1)
                        .filter(|r| r.src != Src::Fill(0))
                        .all(|r| emit(r.page * PAGE_SIZE, r.end() * PAGE_SIZE))
                }
                Pages::Mapped { bitmap, .. } => {
                    set_bit_runs(bitmap, p0, p1, |a, z| emit(a * PAGE_SIZE, z * PAGE_SIZE))
                }
            };
            if !go_on {
                return false;
            }
        }
        out.flush(f)
    }

    fn release(&self, addr: u64, len: u64) {
        let Some((b, off, room)) = self.block_of(addr) else {
            return;
        };
        let len = len.min(room);
        match &self.pages[b] {
            Pages::Mapped { pages_offset, .. } => {
                release_mapped(&self.map, pages_offset + off, len)
            }
            Pages::Runs(runs) => {
                let (first, last) = (off / PAGE_SIZE, (off + len).div_ceil(PAGE_SIZE));
                let i = runs.partition_point(|r| r.end() <= first);
                for r in runs[i..].iter().take_while(|r| r.page < last) {
                    if let Src::Data { file, stride } = r.src {
                        let (s, e) = (r.page.max(first), r.end().min(last));
                        let from = file + (s - r.page) * stride;
                        let to = file + (e - 1 - r.page) * stride + PAGE_SIZE;
                        release_mapped(&self.map, from, to - from);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::vmstate::decode_cpu;
    use crate::cpu::vmstate::tests::{cpu_section, sample_state};
    use crate::format::libvirt_save;
    use crate::format::migration::{StreamWriter, VmcoreinfoSection, CAP_MAPPED_RAM};
    use crate::format::note::{ElfNote, VMCOREINFO_NAME};
    use crate::phys::migration::stream::build::page_bytes;
    use std::io::Write;

    const RAM: u64 = 0x100000;

    fn temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    /// A page holding a vmcoreinfo ELF note with `text`.
    fn note(text: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        ElfNote::new(VMCOREINFO_NAME, 0, text.to_vec()).encode_into(&mut n);
        n.resize(PAGE_SIZE as usize, 0);
        n
    }

    fn vmcoreinfo_device(paddr: u64) -> Vec<u8> {
        VmcoreinfoSection::elf_note(paddr, 0x1000).encode()
    }

    /// Pages 0..4 (page 1 sent again later), page 5 a zero page with fill 0xaa, the
    /// VMCOREINFO note at page 0x10, the block's last page as a zero page (so the block is
    /// held to its end), the rest never sent; two vCPUs; vmdesc with `cpu_json`.
    fn stream(lie: bool) -> Vec<u8> {
        let mut b = StreamWriter::new("pc-i440fx-10.0", &[]);
        b.ram_start(&[("pc.ram", RAM), ("pc.bios", PAGE_SIZE)]);
        b.part();
        b.page(Some("pc.ram"), 0, &page_bytes(0));
        for p in 1..4 {
            b.page(None, p * PAGE_SIZE, &page_bytes(p));
        }
        b.zero(None, 5 * PAGE_SIZE, 0xaa);
        b.page(
            None,
            0x10 * PAGE_SIZE,
            &note(b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n"),
        );
        b.zero(None, RAM - PAGE_SIZE, 0);
        b.part_end();
        b.part();
        b.page(Some("pc.ram"), PAGE_SIZE, &page_bytes(100));
        b.page(Some("pc.bios"), 0, &page_bytes(7));
        b.part_end();
        let (j0, d0) = cpu_section(0, &sample_state(0));
        let (j1, d1) = cpu_section(1, &sample_state(1));
        b.device("cpu", 0, &d0);
        b.device("cpu", 1, &d1);
        b.device("vmcoreinfo", 0, &vmcoreinfo_device(0x10 * PAGE_SIZE));
        b.eof();
        let j1 = if lie {
            j1.replacen("\"size\": 20", "\"size\": 24", 1)
        } else {
            j1
        };
        b.vmdesc(&format!(
            r#"{{"page_size": 4096, "devices": [{j0}, {j1}]}}"#
        ));
        b.out
    }

    #[test]
    fn reads_pages_cpus_and_vmcoreinfo() {
        let f = temp(&stream(false));
        let m = MigrationFile::open(f.path(), None).unwrap();
        assert_eq!(m.configuration().machine, "pc-i440fx-10.0");
        // No VGA device (no *vram block): pc.ram shows through the legacy VGA window.
        assert_eq!(
            m.ram().ranges(),
            &[
                PhysRange::new(0, 0x100000),
                PhysRange::new(0xffff_f000, 0x1000)
            ]
        );
        let mut b = vec![0u8; 3 * PAGE_SIZE as usize];
        m.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..4096], &page_bytes(0)[..]);
        assert_eq!(&b[4096..8192], &page_bytes(100)[..], "the last copy wins");
        assert_eq!(&b[8192..], &page_bytes(2)[..]);
        let mut z = vec![1u8; 4096];
        m.read_at(5 * PAGE_SIZE, &mut z).unwrap();
        assert!(z.iter().all(|&x| x == 0xaa));
        m.read_at(0x30 * PAGE_SIZE, &mut z).unwrap();
        assert!(z.iter().all(|&x| x == 0), "never sent: zero");
        assert_eq!(m.slice(0x2010, 16).unwrap(), &page_bytes(2)[0x10..0x20]);
        assert!(
            m.slice(0x1ff0, 32).is_none(),
            "pages 1 and 2 are not adjacent in the file"
        );
        assert_eq!(
            m.read_u32(0xffff_f000).unwrap(),
            u32::from_le_bytes(page_bytes(7)[..4].try_into().unwrap())
        );
        assert!(m.read_at(0x100000, &mut z).is_err(), "past RAM");
        m.release(0, RAM);
        let cpus: Vec<_> = m
            .cpu_sections()
            .iter()
            .map(|c| decode_cpu(&c.desc, &c.data, f.path()).unwrap())
            .collect();
        assert_eq!(cpus, [sample_state(0), sample_state(1)]);
        assert_eq!(
            m.vmcoreinfo().unwrap(),
            b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n"
        );
        assert_eq!(m.stats().data_pages, 7);
        assert_eq!(m.stats().zero_pages, 2);
        assert_eq!(m.stats().cpu_sections, 2);
        assert_eq!(m.blocks()[0].held, Some(RAM));
        // The data runs are the pages the records hold: 0..4, 5 (a non-zero fill) and the
        // note; not the never-sent pages, not the zero page at the end.
        assert_eq!(
            runs_of(&m, 0, RAM),
            [
                (0, 4 * PAGE_SIZE),
                (5 * PAGE_SIZE, 6 * PAGE_SIZE),
                (0x10 * PAGE_SIZE, 0x11 * PAGE_SIZE)
            ]
        );
        assert_eq!(runs_of(&m, 0x2800, 0x3800), [(0x2800, 0x3800)]);
        assert_eq!(runs_of(&m, 0x7000, 0x10000), []);
        // Across two RAM ranges, and stopping early.
        assert_eq!(
            runs_of(&m, 0x10000, 1 << 32),
            [(0x10000, 0x11000), (0xffff_f000, 1 << 32)]
        );
        let mut calls = 0;
        assert!(!m.data_runs(0, 1 << 32, &mut |_, _| {
            calls += 1;
            false
        }));
        assert_eq!(calls, 1);
    }

    fn runs_of(m: &MigrationFile, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        crate::phys::holes::for_each_data_run(m, start, end, |s, e| {
            v.push((s, e));
            true
        });
        v
    }

    /// A block declared at the 64 TiB cap and filled with one page is clipped to that page,
    /// and says so; records spread over more RAM than the stream's bytes can back are
    /// refused.
    #[test]
    fn declared_ram_is_bounded_by_the_records() {
        let mut b = StreamWriter::new("pc-i440fx-10.0", &[]);
        b.ram_start(&[("pc.ram", 1 << 46)]);
        b.part();
        b.page(Some("pc.ram"), PAGE_SIZE, &page_bytes(1));
        b.part_end();
        b.eof();
        let m = MigrationFile::open(temp(&b.out).path(), None).unwrap();
        assert_eq!(m.ram().ranges(), &[PhysRange::new(0, 2 * PAGE_SIZE)]);
        assert_eq!(m.blocks()[0].held, Some(2 * PAGE_SIZE));
        assert_eq!(m.blocks()[0].block.length, 1 << 46);
        assert_eq!(runs_of(&m, 0, 1 << 46), [(PAGE_SIZE, 2 * PAGE_SIZE)]);

        // A page at 0 and a zero page at 64 TiB - 4 KiB: 4 KiB of stream for 64 TiB.
        let mut b = StreamWriter::new("pc-i440fx-10.0", &[]);
        b.ram_start(&[("pc.ram", 1 << 46)]);
        b.part();
        b.page(Some("pc.ram"), 0, &page_bytes(0));
        b.zero(None, (1 << 46) - PAGE_SIZE, 0);
        b.part_end();
        b.eof();
        let e = MigrationFile::open(temp(&b.out).path(), None).unwrap_err();
        assert!(
            matches!(&e, Error::Limit { bound, .. } if *bound == "migration stream RAM"),
            "{e}"
        );
        assert!(e.to_string().contains("span 0x400000000000 bytes"), "{e}");
    }

    /// One page resent millions of times, or two pages in turn, keeps the index at a few
    /// runs (it grew by one run per record before).
    #[test]
    fn repeated_records_keep_the_index_small() {
        let mut log = RunLog::default();
        for k in 0..1_000_000u64 {
            log.push(7, Src::Data { file: k, stride: 0 });
        }
        assert_eq!(log.runs.len(), 1);
        let mut max = 0;
        for k in 0..1_000_000u64 {
            log.push(3 + (k % 2) * 6, Src::Fill((k % 3) as u8));
            max = max.max(log.runs.len());
        }
        assert!(max <= COMPACT_AT, "{max} runs");
        let runs = log.finish();
        // Page 3 last sent with k = 999_998 (fill 2), page 9 with k = 999_999 (fill 0:
        // dropped, reads as zero), page 7 untouched.
        assert_eq!(
            runs,
            [
                Run {
                    page: 3,
                    count: 1,
                    src: Src::Fill(2)
                },
                Run {
                    page: 7,
                    count: 1,
                    src: Src::Data {
                        file: 999_999,
                        stride: 0
                    }
                },
            ]
        );
    }

    #[test]
    fn bad_files_are_errors() {
        let f = temp(&stream(true));
        let m = MigrationFile::open(f.path(), None).unwrap();
        let c = &m.cpu_sections()[1];
        let e = decode_cpu(&c.desc, &c.data, f.path()).unwrap_err();
        assert!(e.to_string().contains("vmdesc describes"), "{e}");
        let s = stream(false);
        // Cut inside the pages, inside the devices, before EOF.
        for cut in [200, s.len() / 2, s.len() - 2000] {
            let e = MigrationFile::open(temp(&s[..cut]).path(), None).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "{cut}: {e}");
        }
        let mut other = s.clone();
        other[16..22].copy_from_slice(b"xx-foo");
        let e = MigrationFile::open(temp(&other).path(), None).unwrap_err();
        assert!(e.to_string().contains("no known RAM layout"), "{e}");
        // A caller-supplied layout works for any machine.
        let l = [RamPiece {
            block: "pc.ram".into(),
            offset: 0,
            phys: PhysRange::new(1 << 32, RAM),
        }];
        let m = MigrationFile::open(temp(&other).path(), Some(&l)).unwrap();
        assert_eq!(m.read_u8_test(1 << 32), page_bytes(0)[0]);
    }

    #[test]
    fn libvirt_save_image() {
        let image = libvirt_save::encode_image("<domain type='kvm'/>", 0x1003, &stream(false));
        let f = temp(&image);
        let m = MigrationFile::open(f.path(), None).unwrap();
        assert!(m.libvirt());
        assert_eq!(m.read_u8_test(0x2000), page_bytes(2)[0]);
        assert_eq!(
            m.vmcoreinfo().unwrap(),
            b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n"
        );
        // Compressed images are refused by name; a header whose XML length misses the stream.
        let mut zstd = image.clone();
        zstd[..libvirt_save::HEADER_LEN as usize].copy_from_slice(
            &libvirt_save::SaveHeader {
                compressed: 5,
                ..libvirt_save::SaveHeader::decode(&image).unwrap()
            }
            .encode(),
        );
        let e = MigrationFile::open(temp(&zstd).path(), None).unwrap_err();
        assert!(e.to_string().contains("format 5, zstd"), "{e}");
        let short = libvirt_save::encode_image("<domain/>", 0x10, b"");
        let e = MigrationFile::open(temp(&short).path(), None).unwrap_err();
        assert!(e.to_string().contains("does not follow its header"), "{e}");
    }

    #[test]
    fn mapped_ram_file() {
        let mut b = StreamWriter::new("pc-q35-10.0", &[CAP_MAPPED_RAM]);
        // The block list with a mapped-ram header: the bitmap, then the pages region.
        let h = b.ram_start_mapped(&[("pc.ram", RAM)])[0];
        let (bitmap_offset, pages_offset) = (h.bitmap_offset, h.pages_offset);
        b.part();
        b.part_end();
        b.eof();
        let mut bytes = b.out;
        // Pages 0, 1 and 3 present; page 2's slot holds stale bytes but its bit is clear.
        bytes[bitmap_offset as usize] = 0b1011;
        for p in 0..4u64 {
            let at = (pages_offset + p * PAGE_SIZE) as usize;
            bytes[at..at + 4096].copy_from_slice(&page_bytes(p));
        }
        let m = MigrationFile::open(temp(&bytes).path(), None).unwrap();
        assert!(m.mapped_ram());
        assert_eq!(
            m.slice(0, 2 * PAGE_SIZE).unwrap(),
            [page_bytes(0), page_bytes(1)].concat()
        );
        assert!(m.slice(0, 3 * PAGE_SIZE).is_none());
        let mut z = vec![1u8; 4096];
        m.read_at(2 * PAGE_SIZE, &mut z).unwrap();
        assert!(
            z.iter().all(|&x| x == 0),
            "bit clear: zero, not the stale slot"
        );
        m.read_at(3 * PAGE_SIZE, &mut z).unwrap();
        assert_eq!(z, page_bytes(3));
        let (_, off) = m.file_extent(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(off, pages_offset + PAGE_SIZE);
        assert!(m.cpu_sections().is_empty() && !m.has_vmdesc());
        // Present pages are the data runs; a mapped-ram block is not clipped.
        assert_eq!(
            runs_of(&m, 0, RAM),
            [(0, 2 * PAGE_SIZE), (3 * PAGE_SIZE, 4 * PAGE_SIZE)]
        );
        assert_eq!(m.blocks()[0].held, None);
        assert_eq!(m.ram().total(), RAM);
        // Cut inside the pages region.
        let e = MigrationFile::open(
            temp(&bytes[..(pages_offset + 0x3000) as usize]).path(),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
    }

    impl MigrationFile {
        fn read_u8_test(&self, addr: u64) -> u8 {
            let mut b = [0u8];
            self.read_at(addr, &mut b).unwrap();
            b[0]
        }
    }

    fn data(page: u64, file: u64) -> Run {
        Run {
            page,
            count: 1,
            src: Src::Data { file, stride: 0 },
        }
    }

    #[test]
    fn runs_merge_at_one_stride() {
        let mut r = Vec::new();
        for p in 0..100 {
            push_page(
                &mut r,
                p,
                Src::Data {
                    file: 1000 + p * 4104,
                    stride: 0,
                },
            );
        }
        for p in 100..200 {
            push_page(&mut r, p, Src::Fill(0));
        }
        push_page(
            &mut r,
            200,
            Src::Data {
                file: 9_000_000,
                stride: 0,
            },
        );
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0].src,
            Src::Data {
                file: 1000,
                stride: 4104
            }
        );
        assert_eq!((r[1].page, r[1].count), (100, 100));
    }

    #[test]
    fn later_sends_win() {
        // Pages 0..10 sent, then 3..5 again, then 8..12, then 0 as a zero page.
        let mut r = vec![Run {
            page: 0,
            count: 10,
            src: Src::Data {
                file: 0,
                stride: 10,
            },
        }];
        r.push(Run {
            page: 3,
            count: 2,
            src: Src::Data {
                file: 500,
                stride: 10,
            },
        });
        r.push(Run {
            page: 8,
            count: 4,
            src: Src::Data {
                file: 900,
                stride: 10,
            },
        });
        r.push(Run {
            page: 0,
            count: 1,
            src: Src::Fill(0),
        });
        let got = resolve(r);
        let want = vec![
            Run {
                page: 0,
                count: 1,
                src: Src::Fill(0),
            },
            Run {
                page: 1,
                count: 2,
                src: Src::Data {
                    file: 10,
                    stride: 10,
                },
            },
            Run {
                page: 3,
                count: 2,
                src: Src::Data {
                    file: 500,
                    stride: 10,
                },
            },
            Run {
                page: 5,
                count: 3,
                src: Src::Data {
                    file: 50,
                    stride: 10,
                },
            },
            Run {
                page: 8,
                count: 4,
                src: Src::Data {
                    file: 900,
                    stride: 10,
                },
            },
        ];
        assert_eq!(got, want);
        // Sorted input is returned as is.
        let sorted = vec![data(0, 5), data(1, 99)];
        assert_eq!(resolve(sorted.clone()), sorted);
    }

    /// Random sends checked against a page-by-page model.
    #[test]
    fn resolve_matches_a_model() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..50 {
            let mut model = [None::<u64>; 64];
            let mut runs = Vec::new();
            for k in 0..20u64 {
                let page = next() % 60;
                let count = 1 + next() % 4;
                let run = Run {
                    page,
                    count,
                    src: Src::Data {
                        file: k * 1000,
                        stride: 1,
                    },
                };
                for p in page..(page + count).min(64) {
                    model[p as usize] = Some(k * 1000 + (p - page));
                }
                runs.push(run);
            }
            let got = resolve(runs);
            assert!(got.windows(2).all(|w| w[0].end() <= w[1].page));
            for (p, want) in model.iter().enumerate() {
                let p = p as u64;
                let have = got
                    .iter()
                    .find(|r| r.page <= p && p < r.end())
                    .map(|r| match r.src {
                        Src::Data { file, stride } => file + (p - r.page) * stride,
                        Src::Fill(_) => unreachable!(),
                    });
                assert_eq!(have, *want, "page {p}");
            }
        }
    }
}
