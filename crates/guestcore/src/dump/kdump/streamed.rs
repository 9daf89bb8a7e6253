//! A kdump-compressed file written as its pages arrive, in any order, from a stream (a QEMU
//! background snapshot): no copy of guest RAM is held anywhere but in the output file.
//!
//! A kdump file can be filled out of order because only its page data is variable: the
//! bitmaps follow from the RAM map (every RAM page is dumped), so each page's descriptor has
//! a fixed slot, decided before the first page (its rank among the dumped pfns). The data goes
//! after the descriptors in the order pages arrive; each descriptor points at its page's
//! data wherever that landed (readers never assume data in pfn order). The notes (the vCPU
//! registers, the VMCOREINFO) are only known at the stream's end: room for them is reserved
//! after the sub-header, and the header block is written last by [`StreamedKdump::finish`],
//! which refuses a file in which a RAM page never arrived. Until then the file is a temporary
//! one beside the target (atomic output), removed on every error.
//!
//! **Blocks larger than the stream's pages.** The stream sends 4 KiB pages; a kernel with 16
//! or 64 KiB pages needs blocks of that size ([`BlockSize`]), each compressed whole. A block
//! is assembled in memory as its frames arrive and goes out when its last RAM frame has. The
//! stream sends RAM in address order, so a few blocks are open at a time; the pages the guest
//! writes during the snapshot come early and out of order, and open blocks of their own. At
//! most [`OPEN_BLOCKS`] are held: the least recently touched is then *staged* — its frames
//! written raw after the data so far, their offsets kept — and read back when its next frame
//! comes. A staged frame's 4 KiB stay in the file unreferenced (readers follow descriptors
//! only): the price of bounded memory, paid only for frames that arrive out of order. A page
//! sent again for a block already written has that block read back, patched and written anew.
//!
//! Pages are gathered into batches and compressed in parallel ([`super::pool`]); a batch's
//! descriptors go out in runs of consecutive slots, its data in one piece per chunk. Memory:
//! one batch of pages and its compressed form, the open blocks, and per staged block the
//! offsets of its frames; never anything per page of RAM beyond the one-bit-per-frame set of
//! pages received.
//!
//! Only dump levels that need no page array fit a stream: 0, and 1 (zero pages), which a kdump
//! file keeps in its bitmap, stored once, as makedumpfile does.

use super::blocks::{ram_frames_in, BlockSize, FRAME};
use super::encode::{descriptors, head_blocks};
use super::plan::{count, plan_reserving, KdumpPlan, PfnRanges, Shape};
use super::pool::{chunk_blocks, store_pages, Chunk};
use super::writer::{now, write_bitmap};
use super::{Compression, KdumpMachine, KdumpSummary, SeekSink};
use crate::codec::decompress_page;
use crate::dump::output::{AtomicOutput, OutputOptions};
use crate::dump::sink::{PageSink, SinkEnd};
use crate::dump::writeback::WritebackRuns;
use crate::dump::{DumpOutcome, KdumpOutcome};
use crate::dump_level::FrameSet;
use crate::format::kdump::{NewUtsname, PageDesc};
use crate::format::ElfNote;
use crate::phys::{is_zero, PhysMemory, RamMap};
use crate::progress::NoProgress;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::Path;
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of pages gathered before they are compressed and written (1 MiB: two pool chunks of
/// 4 KiB pages, so both cores of a small host work). Small because the stream waits while a
/// batch is compressed: QEMU stops writing, and the guest's writes to pages not yet sent wait
/// with it. A batch of 4 MiB in zlib on a loaded 2-core host kept the stream waiting over a
/// second, past the stall bound (`qmp::snapshot::STREAM_STALL_LIMIT`); 1 MiB is tens of
/// milliseconds.
const BATCH_BYTES: usize = 1 << 20;
/// Entries (zero pages take no bytes) gathered before a batch is written.
const BATCH_ENTRIES: usize = 2048;
/// Blocks larger than a page assembled in memory at a time (at most 4 MiB of 64 KiB blocks).
const OPEN_BLOCKS: usize = 64;
const DESC: u64 = size_of::<PageDesc>() as u64;

/// What the file describes, fixed when it is created.
#[derive(Clone, Copy, Debug)]
pub struct StreamedKdumpSpec {
    /// The architecture (and header ABI).
    pub machine: KdumpMachine,
    /// The page compression.
    pub compression: Compression,
    /// The dump level recorded in the sub-header: 0 or 1 (others need the page array).
    pub dump_level: u8,
    /// Bytes of notes the stream's end may bring (more is an error at [`StreamedKdump::finish`]).
    pub notes_reserve: u64,
    /// The file's block: the dumped kernel's page size.
    pub block_size: BlockSize,
}

/// Blocks complete and not yet written: per block its number and, for a non-zero block, its
/// place in `bytes`.
#[derive(Debug, Default)]
struct Batch {
    entries: Vec<(u64, Option<usize>)>,
    bytes: Vec<u8>,
}

/// A block larger than a page whose frames are arriving.
#[derive(Debug)]
struct OpenBlock {
    block: u64,
    /// The block's bytes (frames not arrived are zeros).
    bytes: Vec<u8>,
    /// The frames arrived, one bit per frame of the block.
    have: u32,
    /// The frames that arrived with bytes (the others as zero pages): a block without any is
    /// zero, with no scan of its bytes.
    data: u32,
    /// When a frame last arrived (for choosing the block to stage).
    used: u64,
}

/// An incomplete block put aside in the file: the frames arrived and, for each non-zero one,
/// where it was written raw.
#[derive(Debug, Default)]
struct Staged {
    have: u32,
    frames: Vec<(u8, u64)>,
}

/// A kdump file being filled from a stream.
pub struct StreamedKdump {
    output: AtomicOutput,
    name: String,
    ram: RamMap,
    spec: StreamedKdumpSpec,
    plan: KdumpPlan,
    /// Descriptor slot of the first pfn of each of `plan.dumped`'s ranges.
    first_slot: Vec<u64>,
    /// RAM frames (4 KiB) received so far.
    seen: FrameSet,
    batch: Batch,
    chunks: Vec<Chunk>,
    /// Blocks being assembled (blocks larger than a page only).
    open: Vec<OpenBlock>,
    /// Incomplete blocks put aside in the file.
    staged: HashMap<u64, Staged>,
    /// Buffers of blocks written, for the next open ones.
    spare: Vec<Vec<u8>>,
    /// Frames arrived so far (the clock of [`OpenBlock::used`]).
    tick: u64,
    /// Where the next stored page's data goes.
    data_pos: u64,
    writeback: WritebackRuns,
    summary: KdumpSummary,
}

impl std::fmt::Debug for StreamedKdump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedKdump")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("received", &self.seen.len())
            .field("open", &self.open.len())
            .field("staged", &self.staged.len())
            .field("data_pos", &self.data_pos)
            .finish()
    }
}

impl StreamedKdump {
    /// Creates the temporary file for a kdump file of all of `ram` and writes everything that
    /// the RAM map decides (the bitmaps, the shared zero page). An existing `out` is an error
    /// unless `opts.force`.
    pub fn create(
        out: &Path,
        opts: &OutputOptions,
        ram: &RamMap,
        spec: StreamedKdumpSpec,
    ) -> Result<Self> {
        if spec.dump_level > 1 {
            return Err(Error::Unsupported(format!(
                "dump level {} needs the kernel's page array, which a stream brings too late",
                spec.dump_level
            )));
        }
        let req = shape(ram, &spec, &[], None, 1);
        super::plan::check_bitmaps(&req)?;
        let plan = plan_reserving(&req, spec.notes_reserve)?;
        let output = AtomicOutput::create(out, opts)?;
        let name = out.display().to_string();
        let io = |e| Error::io(format!("writing {name}"), e);
        {
            let mut sink = SeekSink::new(output.file());
            for (at, ranges) in [
                (plan.bitmap1_off, &plan.ram),
                (plan.bitmap2_off, &plan.dumped),
            ] {
                write_bitmap(&mut sink, at, plan.bitmap_bytes, ranges, None, &NoProgress)
                    .map_err(|e| e.map_or(Error::Cancelled, io))?;
            }
        }
        output
            .file()
            .write_all_at(&vec![0u8; plan.block.size()], plan.zero_off())
            .map_err(io)?;
        let mut first_slot = Vec::with_capacity(plan.dumped.len());
        let mut slot = 0;
        for &(s, e) in &plan.dumped {
            first_slot.push(slot);
            slot += e - s;
        }
        let summary = KdumpSummary {
            block_size: plan.block.bytes(),
            max_mapnr: plan.max_mapnr,
            ram_pages: count(&plan.ram),
            dumped_pages: plan.dumped_pages,
            ..KdumpSummary::default()
        };
        Ok(StreamedKdump {
            data_pos: plan.pages_off(),
            output,
            name,
            ram: ram.clone(),
            spec,
            plan,
            first_slot,
            seen: FrameSet::for_ram(ram),
            batch: Batch::default(),
            chunks: Vec::new(),
            open: Vec::new(),
            staged: HashMap::new(),
            spare: Vec::new(),
            tick: 0,
            writeback: WritebackRuns::default(),
            summary,
        })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.name), e)
    }

    /// The descriptor slot of block `pfn`, when it is dumped.
    fn slot(&self, pfn: u64) -> Option<u64> {
        slot_of(&self.plan.dumped, &self.first_slot, pfn)
    }

    /// The page of guest-physical `gpa` (4 KiB aligned): `Some(bytes)` (4096 of them), or
    /// `None` for a page of zeros. A page outside RAM is an error; a page sent again replaces
    /// the earlier copy.
    pub fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        if gpa % FRAME != 0 || bytes.is_some_and(|b| b.len() as u64 != FRAME) {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is not one aligned 4 KiB page"),
            ));
        }
        if self.ram.ram_parts(gpa, FRAME).next().is_none() {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is outside the guest's RAM"),
            ));
        }
        let frame = gpa / FRAME;
        let again = self.seen.insert(frame, frame + 1) == 0;
        if self.plan.block.frames() > 1 {
            return self.assemble(frame, bytes, again);
        }
        self.push(frame, bytes);
        self.flush_if_full()
    }

    /// Adds a complete block (`bytes` one block, or `None` for zeros) to the batch.
    fn push(&mut self, pfn: u64, bytes: Option<&[u8]>) {
        let place = bytes.map(|b| {
            let at = self.batch.bytes.len();
            self.batch.bytes.extend_from_slice(b);
            at
        });
        self.batch.entries.push((pfn, place));
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.bytes.len() >= BATCH_BYTES || self.batch.entries.len() >= BATCH_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    /// The frames of block `b` that hold RAM, one bit each.
    fn ram_mask(&self, b: u64) -> u32 {
        let bs = self.plan.block.bytes();
        let mut mask = 0u32;
        for p in self.ram.ram_parts(b * bs, bs) {
            let (s, e) = ((p.start - b * bs) / FRAME, (p.end - b * bs).div_ceil(FRAME));
            for i in s..e {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Puts `frame` into its block, which goes to the batch once its last RAM frame is in.
    /// `again`: the frame was received before.
    fn assemble(&mut self, frame: u64, bytes: Option<&[u8]>, again: bool) -> Result<()> {
        let k = self.plan.block.frames();
        let (b, i) = (frame / k, (frame % k) as usize);
        self.tick += 1;
        let at = match self.open.iter().position(|o| o.block == b) {
            Some(at) => at,
            None => self.open_block(b, again)?,
        };
        let f = FRAME as usize;
        let o = &mut self.open[at];
        let dst = &mut o.bytes[i * f..(i + 1) * f];
        match bytes {
            Some(src) => {
                dst.copy_from_slice(src);
                o.data |= 1 << i;
            }
            None => {
                dst.fill(0);
                o.data &= !(1 << i);
            }
        }
        o.have |= 1 << i;
        o.used = self.tick;
        let want = self.ram_mask(b);
        if self.open[at].have & want != want {
            return Ok(());
        }
        let o = self.open.swap_remove(at);
        // The pool zero-checks blocks with bytes; one made of zero pages only is zero.
        self.push(b, (o.data != 0).then_some(&o.bytes[..]));
        self.spare.push(o.bytes);
        self.flush_if_full()
    }

    /// Opens block `b` with what arrived of it before: its staged frames, or (`again`, for a
    /// block already complete) the block as written. Stages the least recently touched open
    /// block when [`OPEN_BLOCKS`] are open. Returns the block's index in `open`.
    fn open_block(&mut self, b: u64, again: bool) -> Result<usize> {
        if self.open.len() >= OPEN_BLOCKS {
            let lru = (0..self.open.len())
                .min_by_key(|&i| self.open[i].used)
                .expect("open blocks");
            let o = self.open.swap_remove(lru);
            self.stage(o)?;
        }
        let bs = self.plan.block.size();
        let mut bytes = match self.spare.pop() {
            Some(mut v) if v.len() == bs => {
                v.fill(0);
                v
            }
            _ => vec![0u8; bs],
        };
        let (mut have, mut data) = (0, 0);
        if let Some(st) = self.staged.remove(&b) {
            have = st.have;
            let f = FRAME as usize;
            for (i, off) in st.frames {
                data |= 1 << i;
                let dst = &mut bytes[i as usize * f..(i as usize + 1) * f];
                self.output
                    .file()
                    .read_exact_at(dst, off)
                    .map_err(|e| Error::io(format!("reading back {}", self.name), e))?;
            }
        } else if again {
            // Every frame of the block arrived before and it was written: read it back.
            self.flush()?;
            let slot = self.slot(b).expect("a RAM frame's block is dumped");
            read_page_at(&self.reader_parts(), slot, &mut bytes)?;
            have = self.ram_mask(b);
            data = have;
        }
        self.open.push(OpenBlock {
            block: b,
            bytes,
            have,
            data,
            used: self.tick,
        });
        Ok(self.open.len() - 1)
    }

    /// Writes the non-zero frames arrived of `o` raw after the data so far and keeps where.
    fn stage(&mut self, o: OpenBlock) -> Result<()> {
        let f = FRAME as usize;
        let mut st = Staged {
            have: o.have,
            frames: Vec::new(),
        };
        let start = self.data_pos;
        for i in 0..self.plan.block.frames() as usize {
            let frame = &o.bytes[i * f..(i + 1) * f];
            if o.data >> i & 1 == 0 || is_zero(frame) {
                continue;
            }
            self.output
                .file()
                .write_all_at(frame, self.data_pos)
                .map_err(|e| self.io(e))?;
            st.frames.push((i as u8, self.data_pos));
            self.data_pos += FRAME;
        }
        self.writeback
            .wrote(self.output.file(), start, self.data_pos - start);
        self.staged.insert(o.block, st);
        self.spare.push(o.bytes);
        Ok(())
    }

    /// What reading back a written block needs.
    fn reader_parts(&self) -> ReadBack<'_> {
        ReadBack {
            file: self.output.file(),
            name: &self.name,
            desc_off: self.plan.desc_off,
            compression: self.spec.compression,
        }
    }

    /// Compresses and writes the pending batch: the data of its non-zero pages after what is
    /// written, then its descriptors in runs of consecutive slots.
    fn flush(&mut self) -> Result<()> {
        if self.batch.entries.is_empty() {
            return Ok(());
        }
        let kind = self.spec.compression;
        let block = self.plan.block;
        let pages = self.batch.bytes.len() / block.size();
        let n = pages.div_ceil(chunk_blocks(block));
        self.chunks.truncate(n);
        while self.chunks.len() < n {
            self.chunks.push(Chunk::new(block));
        }
        self.batch
            .bytes
            .par_chunks(chunk_blocks(block) * block.size())
            .zip(self.chunks.par_iter_mut())
            .for_each(|(p, c)| store_pages(kind, block, p, c));
        // The stored pages' descriptors in batch order, their data back to back.
        let mut stored = Vec::with_capacity(pages * DESC as usize);
        let mut pos = self.data_pos;
        let zero_off = (self.plan.zero_off(), block.bytes() as u32);
        for c in &self.chunks {
            descriptors(
                &c.entries,
                zero_off,
                &mut pos,
                &mut self.summary,
                &mut stored,
            );
        }
        let file = self.output.file();
        let mut at = self.data_pos;
        for c in &self.chunks {
            file.write_all_at(c.stored(), at).map_err(|e| self.io(e))?;
            at += c.stored().len() as u64;
        }
        self.writeback
            .wrote(file, self.data_pos, at - self.data_pos);
        self.data_pos = at;
        let zero = PageDesc {
            offset: self.plan.zero_off().into(),
            size: (block.bytes() as u32).into(),
            flags: 0.into(),
            page_flags: 0.into(),
        };
        let mut stored = stored.chunks_exact(DESC as usize);
        let mut run: Vec<u8> = Vec::new();
        let mut run_slot = 0;
        let entries = std::mem::take(&mut self.batch.entries);
        for &(pfn, place) in &entries {
            let slot = self.slot(pfn).expect("checked when the page arrived");
            let desc = match place {
                Some(_) => stored.next().expect("one descriptor per stored page"),
                None => {
                    self.summary.zero_pages += 1;
                    zero.as_bytes()
                }
            };
            if !run.is_empty() && run_slot + run.len() as u64 / DESC != slot {
                self.write_descs(run_slot, &run)?;
                run.clear();
            }
            if run.is_empty() {
                run_slot = slot;
            }
            run.extend_from_slice(desc);
        }
        self.write_descs(run_slot, &run)?;
        self.batch.entries = entries;
        self.batch.entries.clear();
        self.batch.bytes.clear();
        Ok(())
    }

    fn write_descs(&self, first: u64, descs: &[u8]) -> Result<()> {
        self.output
            .file()
            .write_all_at(descs, self.plan.desc_off + first * DESC)
            .map_err(|e| self.io(e))
    }

    /// The page compression.
    pub fn compression(&self) -> Compression {
        self.spec.compression
    }

    /// RAM frames (4 KiB) no page has arrived for yet.
    pub fn missing(&self) -> u64 {
        self.seen.capacity() - self.seen.len()
    }

    /// The pages received so far, as guest-physical memory with its own handle on the file
    /// (for what the stream's end needs from RAM while nothing more arrives). Pages of blocks
    /// not complete read as an error.
    pub fn memory(&mut self) -> Result<WrittenKdump> {
        self.flush()?;
        let file = self.output.reader()?;
        let pending = self
            .open
            .iter()
            .map(|o| o.block)
            .chain(self.staged.keys().copied())
            .collect();
        Ok(WrittenKdump {
            file,
            name: self.name.clone(),
            ram: self.ram.clone(),
            desc_off: self.plan.desc_off,
            compression: self.spec.compression,
            block: self.plan.block,
            dumped: self.plan.dumped.clone(),
            first_slot: self.first_slot.clone(),
            seen: self.seen.clone(),
            pending,
        })
    }

    /// Completes the file with `notes` (VMCOREINFO among them, which names the release and
    /// `phys_base` in the headers) for `nr_cpus` vCPUs, and renames it into place. Fails,
    /// leaving nothing, when a RAM page never arrived or the notes exceed the reserve.
    pub fn finish(
        mut self,
        notes: &[ElfNote],
        utsname: Option<&NewUtsname>,
        nr_cpus: u32,
    ) -> Result<KdumpSummary> {
        self.flush()?;
        let missing = self.missing();
        if missing > 0 {
            return Err(Error::format(
                "the stream",
                format!(
                "the stream ended with {missing} pages of the guest's RAM never sent: no dump written"
            )));
        }
        debug_assert!(self.open.is_empty() && self.staged.is_empty());
        let req = shape(&self.ram, &self.spec, notes, utsname, nr_cpus);
        let last = plan_reserving(&req, self.spec.notes_reserve)?;
        if last.sub_hdr_blocks != self.plan.sub_hdr_blocks {
            return Err(Error::Limit {
                bound: "reserved notes",
                detail: format!(
                    "the dump's notes take {} bytes, more than the {} reserved for them",
                    last.notes.len(),
                    self.spec.notes_reserve
                ),
            });
        }
        let head = head_blocks(&req, &last, now())?;
        let file = self.output.file();
        file.write_all_at(&head, 0).map_err(|e| self.io(e))?;
        file.set_len(self.data_pos).map_err(|e| self.io(e))?;
        self.summary.bytes_written = self.data_pos;
        self.output.commit()?;
        Ok(self.summary)
    }
}

/// Where a kdump file being written keeps its pages.
struct ReadBack<'a> {
    file: &'a std::fs::File,
    name: &'a str,
    desc_off: u64,
    compression: Compression,
}

/// The block of descriptor `slot` of a kdump file being written, decompressed into `out`
/// (one block).
fn read_page_at(at: &ReadBack<'_>, slot: u64, out: &mut [u8]) -> Result<()> {
    let name = at.name;
    let err = |e| Error::io(format!("reading back {name}"), e);
    let mut d = [0u8; DESC as usize];
    at.file
        .read_exact_at(&mut d, at.desc_off + slot * DESC)
        .map_err(err)?;
    let d = PageDesc::read_from_bytes(&d).expect("descriptor size");
    let (size, flags) = (d.size.get() as usize, d.flags.get());
    if size > out.len() {
        return Err(Error::format(name, "a page descriptor written wrong"));
    }
    let mut data = vec![0u8; size];
    at.file
        .read_exact_at(&mut data, d.offset.get())
        .map_err(err)?;
    if flags == 0 {
        out[..size].copy_from_slice(&data);
        return Ok(());
    }
    decompress_page(at.compression, &data, out)
        .map_err(|e| Error::format(name, format!("reading back a page: {e}")))
}

/// A [`StreamedKdump`]'s pages received so far, as guest-physical memory.
#[derive(Debug)]
pub struct WrittenKdump {
    file: std::fs::File,
    name: String,
    ram: RamMap,
    desc_off: u64,
    compression: Compression,
    block: BlockSize,
    /// Dumped pfn ranges `[start, end)`, as planned.
    dumped: PfnRanges,
    /// The descriptor slot of each range's first pfn.
    first_slot: Vec<u64>,
    seen: FrameSet,
    /// Blocks some of whose frames arrived, not yet written.
    pending: HashSet<u64>,
}

impl WrittenKdump {
    /// The slot of block `pfn` when it was written: all its RAM frames arrived, and it is
    /// not still being assembled.
    fn slot(&self, pfn: u64) -> Option<u64> {
        let k = self.block.frames();
        slot_of(&self.dumped, &self.first_slot, pfn).filter(|_| {
            self.seen.count_in(pfn * k, (pfn + 1) * k) == ram_frames_in(&self.ram, self.block, pfn)
                && !self.pending.contains(&pfn)
        })
    }
}

/// The descriptor slot of `pfn`: its rank among the dumped pfns, from the ranges and the slot
/// of each range's first pfn; `None` for a pfn not dumped.
fn slot_of(dumped: &[(u64, u64)], first_slot: &[u64], pfn: u64) -> Option<u64> {
    let i = dumped.partition_point(|r| r.1 <= pfn);
    dumped
        .get(i)
        .filter(|r| r.0 <= pfn)
        .map(|r| first_slot[i] + (pfn - r.0))
}

impl PhysMemory for WrittenKdump {
    fn read_at(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.block.bytes();
        let mut page = vec![0u8; self.block.size()];
        let at = ReadBack {
            file: &self.file,
            name: &self.name,
            desc_off: self.desc_off,
            compression: self.compression,
        };
        let mut done = 0;
        while done < buf.len() {
            let a = gpa + done as u64;
            let slot = self.slot(a / bs).ok_or(Error::NotInMemory {
                addr: a,
                len: (buf.len() - done) as u64,
            })?;
            read_page_at(&at, slot, &mut page)?;
            let off = (a % bs) as usize;
            let n = (page.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&page[off..off + n]);
            done += n;
        }
        Ok(())
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
}

impl PageSink for StreamedKdump {
    fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        StreamedKdump::page(self, gpa, bytes)
    }

    fn memory(&mut self) -> Result<Box<dyn PhysMemory>> {
        Ok(Box::new(StreamedKdump::memory(self)?))
    }

    fn finish(self: Box<Self>, end: &SinkEnd<'_>) -> Result<DumpOutcome> {
        if end.mappings.is_some() {
            return Err(Error::Unsupported(
                "kdump files hold physical memory only".into(),
            ));
        }
        let compression = self.compression();
        Ok(DumpOutcome::Kdump(KdumpOutcome {
            summary: (*self).finish(end.notes, end.utsname, end.nr_cpus.max(1) as u32)?,
            compression,
        }))
    }
}

/// The shape of the file: all RAM, the notes given, no filter.
fn shape<'a>(
    ram: &'a RamMap,
    spec: &StreamedKdumpSpec,
    notes: &'a [ElfNote],
    utsname: Option<&'a NewUtsname>,
    nr_cpus: u32,
) -> Shape<'a> {
    Shape {
        ram,
        notes,
        vmcoreinfo: None,
        utsname,
        machine: spec.machine,
        nr_cpus,
        compression: spec.compression,
        filter: None,
        excluded: None,
        dump_level: spec.dump_level,
        block: spec.block_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;
    use crate::phys::kdump::KdumpFile;

    const PAGE: usize = FRAME as usize;

    /// RAM whose hole starts inside a 16 KiB and a 64 KiB block (0x9f000).
    fn ram() -> RamMap {
        RamMap::new(vec![
            PhysRange::new(0, 0x9f000),
            PhysRange::new(0x100000, 0x900000),
        ])
        .unwrap()
    }

    fn page_of(gpa: u64) -> Vec<u8> {
        // Compressible halves and a random-looking tail, so some pages are stored raw.
        let f = gpa / FRAME;
        (0..FRAME)
            .map(|i| {
                if f % 5 == 0 {
                    (i.wrapping_mul(0x9e37_79b9).wrapping_add(f) >> 13) as u8
                } else {
                    (f as u8) ^ ((i / 512) as u8)
                }
            })
            .collect()
    }

    fn spec(compression: Compression) -> StreamedKdumpSpec {
        StreamedKdumpSpec {
            machine: KdumpMachine::X86_64,
            compression,
            dump_level: 0,
            notes_reserve: 8192,
            block_size: BlockSize::KIB_4,
        }
    }

    /// The frames of `ram` interleaved from both ends (not in pfn order), or (`stride`) in
    /// seven passes, each frame's block open across them (more blocks open than are held).
    fn order(ram: &RamMap, stride: bool) -> Vec<u64> {
        let mut frames: Vec<u64> = ram
            .ranges()
            .iter()
            .flat_map(|r| (r.start / FRAME)..(r.end / FRAME))
            .collect();
        if stride {
            frames.sort_by_key(|f| (f % 7, *f));
            return frames;
        }
        let mut order = Vec::new();
        while !frames.is_empty() {
            order.push(frames.remove(0));
            if let Some(f) = frames.pop() {
                order.push(f);
            }
        }
        order
    }

    /// Pages sent in any order, with blocks of 4, 16 and 64 KiB, read back through the pages
    /// received and through guestcore's kdump reader as sent: every third page zero, one page
    /// sent twice (the later copy wins, also when it is a zero page, after its block was
    /// written), the bytes of a block outside RAM zeros.
    #[test]
    fn pages_in_any_order_read_back_as_sent() {
        for (bs, kind, stride) in [
            (4096, Compression::Lzo, false),
            (4096, Compression::Zlib, false),
            (4096, Compression::Snappy, false),
            (4096, Compression::Zstd, false),
            // Larger blocks: the codecs are the writer's (tested per block size there); here
            // the assembly, in order and staged.
            (16384, Compression::Lzo, true),
            (16384, Compression::Zlib, false),
            (65536, Compression::Snappy, false),
            (65536, Compression::Zstd, true),
        ] {
            let what = format!("{bs} {kind:?} stride {stride}");
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("s.kdump");
            let ram = ram();
            let block = BlockSize::new(bs).unwrap();
            let spec = StreamedKdumpSpec {
                block_size: block,
                ..spec(kind)
            };
            let mut s = StreamedKdump::create(&out, &OutputOptions::default(), &ram, spec).unwrap();
            let order = order(&ram, stride);
            for &f in &order {
                let gpa = f * FRAME;
                if f % 3 == 0 {
                    s.page(gpa, None).unwrap();
                } else {
                    s.page(gpa, Some(&page_of(gpa))).unwrap();
                }
            }
            if stride && bs > 4096 {
                assert!(s.data_pos > s.plan.pages_off(), "{what}: staged frames");
            }
            s.page(0x101000, Some(&[9u8; PAGE])).unwrap();
            s.page(0x102000, None).unwrap();
            assert_eq!(s.missing(), 0, "{what}");
            let mut back = [0u8; 8];
            s.memory().unwrap().read_at(0x101ffc, &mut back).unwrap();
            assert_eq!(
                back,
                [9, 9, 9, 9, 0, 0, 0, 0],
                "{what}: across a page boundary"
            );
            s.memory().unwrap().read_at(0x104000, &mut back).unwrap();
            assert_eq!(back[..], page_of(0x104000)[..8], "{what}");
            assert!(s.page(0xa0000, None).is_err(), "{what}: a page outside RAM");
            assert!(s.page(0x100800, None).is_err(), "{what}: an unaligned page");
            let note = ElfNote::new(
                b"VMCOREINFO",
                0,
                b"OSRELEASE=6.1.0-test\nNUMBER(phys_base)=16777216\n".to_vec(),
            );
            let summary = s.finish(std::slice::from_ref(&note), None, 2).unwrap();
            let blocks = 0x9f000u64.div_ceil(bs) + 0x900000 / bs;
            assert_eq!(summary.dumped_pages, blocks, "{what}");

            let k = KdumpFile::open(&out).unwrap();
            assert_eq!(k.info().block_size, bs, "{what}");
            let ends: Vec<_> = k.ram().ranges().iter().map(|r| (r.start, r.end)).collect();
            assert_eq!(
                ends,
                vec![(0, 0x9f000u64.next_multiple_of(bs)), (0x100000, 0xa00000)],
                "{what}: RAM in blocks"
            );
            let mut got = vec![0u8; PAGE];
            for &f in &order {
                let gpa = f * FRAME;
                k.read_at(gpa, &mut got).unwrap();
                let want = match gpa {
                    0x101000 => vec![9u8; PAGE],
                    0x102000 => vec![0u8; PAGE],
                    _ if f % 3 == 0 => vec![0u8; PAGE],
                    _ => page_of(gpa),
                };
                assert!(got == want, "{what}: page {gpa:#x}");
            }
            let tail = (0x9f000u64.next_multiple_of(bs) - 0x9f000) as usize;
            let mut zeros = vec![1u8; tail];
            if tail > 0 {
                k.read_at(0x9f000, &mut zeros).unwrap();
            }
            assert!(
                zeros.iter().all(|&b| b == 0),
                "{what}: the block's non-RAM bytes"
            );
            assert_eq!(k.info().release, "6.1.0-test");
            assert_eq!((k.info().nr_cpus, k.phys_base()), (2, 16 << 20));
            assert!(k.vmcoreinfo().is_some());
        }
    }

    #[test]
    fn a_missing_page_or_oversized_notes_leave_no_file() {
        for bs in [4096, 65536] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("s.kdump");
            let ram = ram();
            let small = StreamedKdumpSpec {
                notes_reserve: 16,
                block_size: BlockSize::new(bs).unwrap(),
                ..spec(Compression::Lzo)
            };
            let mut s =
                StreamedKdump::create(&out, &OutputOptions::default(), &ram, small).unwrap();
            s.page(0, Some(&page_of(0))).unwrap();
            let e = s.finish(&[], None, 1).unwrap_err().to_string();
            assert!(e.contains("never sent"), "{e}");
            let mut s =
                StreamedKdump::create(&out, &OutputOptions::default(), &ram, small).unwrap();
            for r in ram.ranges() {
                for gpa in (r.start..r.end).step_by(PAGE) {
                    s.page(gpa, None).unwrap();
                }
            }
            let big = ElfNote::new(b"VMCOREINFO", 0, vec![b'x'; 8192 + bs as usize]);
            let e = s.finish(&[big], None, 1).unwrap_err().to_string();
            assert!(e.contains("reserved"), "{e}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            let two = StreamedKdumpSpec {
                dump_level: 2,
                ..small
            };
            assert!(StreamedKdump::create(&out, &OutputOptions::default(), &ram, two).is_err());
        }
    }
}
