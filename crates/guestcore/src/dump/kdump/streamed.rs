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
//! Pages are gathered into batches and compressed in parallel ([`super::pool`]); a batch's
//! descriptors go out in runs of consecutive slots, its data in one piece per chunk. Memory:
//! one batch of pages and its compressed form, never anything per page of RAM beyond the
//! one-bit-per-frame set of pages received.
//!
//! Only dump levels that need no page array fit a stream: 0, and 1 (zero pages), which a kdump
//! file keeps in its bitmap, stored once, as makedumpfile does.

use super::encode::{descriptors, head_blocks};
use super::plan::{count, plan_reserving, KdumpPlan, PfnRanges, Shape, PAGE_U64};
use super::pool::{store_pages, Chunk, CHUNK_PAGES};
use super::writer::{now, write_bitmap};
use super::{Compression, KdumpMachine, KdumpSummary, SeekSink};
use crate::codec::{decompress_page, PAGE};
use crate::dump::output::{AtomicOutput, OutputOptions};
use crate::dump::sink::{PageSink, SinkEnd};
use crate::dump::writeback::WritebackRuns;
use crate::dump::{DumpOutcome, KdumpOutcome};
use crate::dump_level::FrameSet;
use crate::format::kdump::{NewUtsname, PageDesc};
use crate::format::ElfNote;
use crate::phys::{PhysMemory, RamMap};
use crate::progress::NoProgress;
use crate::{Error, Result};
use rayon::prelude::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use zerocopy::{FromBytes, IntoBytes};

/// Pages gathered before they are compressed and written (1 MiB: two pool chunks, so both
/// cores of a small host work). Small because the stream waits while a batch is compressed:
/// QEMU stops writing, and the guest's writes to pages not yet sent wait with it. A batch of
/// 4 MiB in zlib on a loaded 2-core host kept the stream waiting over a second, past the
/// stall bound (`qmp::snapshot::STREAM_STALL_LIMIT`); 1 MiB is tens of milliseconds.
const BATCH_PAGES: usize = 256;
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
}

/// Pages received and not yet written: per page its frame and, for a non-zero page, its
/// place in `bytes`.
#[derive(Debug, Default)]
struct Batch {
    entries: Vec<(u64, Option<usize>)>,
    bytes: Vec<u8>,
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
    /// RAM frames received so far.
    seen: FrameSet,
    batch: Batch,
    chunks: Vec<Chunk>,
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
            .write_all_at(&[0u8; PAGE], plan.zero_off())
            .map_err(io)?;
        let mut first_slot = Vec::with_capacity(plan.dumped.len());
        let mut slot = 0;
        for &(s, e) in &plan.dumped {
            first_slot.push(slot);
            slot += e - s;
        }
        let summary = KdumpSummary {
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
            writeback: WritebackRuns::default(),
            summary,
        })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.name), e)
    }

    /// The descriptor slot of `pfn`, when it is dumped.
    fn slot(&self, pfn: u64) -> Option<u64> {
        slot_of(&self.plan.dumped, &self.first_slot, pfn)
    }

    /// The page of guest-physical `gpa` (4 KiB aligned): `Some(bytes)` (4096 of them), or
    /// `None` for a page of zeros. A page outside RAM is an error; a page sent again replaces
    /// the earlier copy.
    pub fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        if gpa % PAGE_U64 != 0 || bytes.is_some_and(|b| b.len() != PAGE) {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is not one aligned 4 KiB page"),
            ));
        }
        let pfn = gpa / PAGE_U64;
        if self.slot(pfn).is_none() {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is outside the guest's RAM"),
            ));
        }
        self.seen.insert(pfn, pfn + 1);
        let place = bytes.map(|b| {
            let at = self.batch.bytes.len();
            self.batch.bytes.extend_from_slice(b);
            at
        });
        self.batch.entries.push((pfn, place));
        if self.batch.bytes.len() >= BATCH_PAGES * PAGE
            || self.batch.entries.len() >= 8 * BATCH_PAGES
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Compresses and writes the pending batch: the data of its non-zero pages after what is
    /// written, then its descriptors in runs of consecutive slots.
    fn flush(&mut self) -> Result<()> {
        if self.batch.entries.is_empty() {
            return Ok(());
        }
        let kind = self.spec.compression;
        let pages = self.batch.bytes.len() / PAGE;
        let n = pages.div_ceil(CHUNK_PAGES);
        self.chunks.truncate(n);
        while self.chunks.len() < n {
            self.chunks.push(Chunk::new());
        }
        self.batch
            .bytes
            .par_chunks(CHUNK_PAGES * PAGE)
            .zip(self.chunks.par_iter_mut())
            .for_each(|(p, c)| store_pages(kind, p, c));
        // The stored pages' descriptors in batch order, their data back to back.
        let mut stored = Vec::with_capacity(pages * DESC as usize);
        let mut pos = self.data_pos;
        for c in &self.chunks {
            descriptors(
                &c.entries,
                self.plan.zero_off(),
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
            size: (PAGE as u32).into(),
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

    /// RAM frames no page has arrived for yet.
    pub fn missing(&self) -> u64 {
        self.seen.capacity() - self.seen.len()
    }

    /// The pages received so far, as guest-physical memory with its own handle on the file
    /// (for what the stream's end needs from RAM while nothing more arrives). Pages not
    /// received read as an error.
    pub fn memory(&mut self) -> Result<WrittenKdump> {
        self.flush()?;
        let file = self.output.reader()?;
        Ok(WrittenKdump {
            file,
            name: self.name.clone(),
            ram: self.ram.clone(),
            desc_off: self.plan.desc_off,
            compression: self.spec.compression,
            dumped: self.plan.dumped.clone(),
            first_slot: self.first_slot.clone(),
            seen: self.seen.clone(),
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

/// The page of descriptor `slot` of a kdump file being written, decompressed into `out`.
fn read_page_at(
    file: &std::fs::File,
    name: &str,
    desc_off: u64,
    compression: Compression,
    slot: u64,
    out: &mut [u8],
) -> Result<()> {
    let err = |e| Error::io(format!("reading back {name}"), e);
    let mut d = [0u8; DESC as usize];
    file.read_exact_at(&mut d, desc_off + slot * DESC)
        .map_err(err)?;
    let d = PageDesc::read_from_bytes(&d).expect("descriptor size");
    let (size, flags) = (d.size.get() as usize, d.flags.get());
    if size > PAGE {
        return Err(Error::format(name, "a page descriptor written wrong"));
    }
    let mut data = vec![0u8; size];
    file.read_exact_at(&mut data, d.offset.get()).map_err(err)?;
    if flags == 0 {
        out[..size].copy_from_slice(&data);
        return Ok(());
    }
    decompress_page(compression, &data, out)
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
    /// Dumped pfn ranges `[start, end)`, as planned.
    dumped: PfnRanges,
    /// The descriptor slot of each range's first pfn.
    first_slot: Vec<u64>,
    seen: FrameSet,
}

impl WrittenKdump {
    fn slot(&self, pfn: u64) -> Option<u64> {
        slot_of(&self.dumped, &self.first_slot, pfn).filter(|_| self.seen.contains(pfn))
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
        let mut page = vec![0u8; PAGE];
        let mut done = 0;
        while done < buf.len() {
            let a = gpa + done as u64;
            let slot = self.slot(a / PAGE_U64).ok_or(Error::NotInMemory {
                addr: a,
                len: (buf.len() - done) as u64,
            })?;
            read_page_at(
                &self.file,
                &self.name,
                self.desc_off,
                self.compression,
                slot,
                &mut page,
            )?;
            let off = (a % PAGE_U64) as usize;
            let n = (PAGE - off).min(buf.len() - done);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;
    use crate::phys::kdump::KdumpFile;

    fn ram() -> RamMap {
        RamMap::new(vec![
            PhysRange::new(0, 0x9f000),
            PhysRange::new(0x100000, 0x900000),
        ])
        .unwrap()
    }

    fn page_of(gpa: u64) -> Vec<u8> {
        // Compressible halves and a random-looking tail, so some pages are stored raw.
        let f = gpa / PAGE_U64;
        (0..PAGE as u64)
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
        }
    }

    #[test]
    fn pages_in_any_order_read_back_as_sent() {
        for kind in [
            Compression::Lzo,
            Compression::Zlib,
            Compression::Snappy,
            Compression::Zstd,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("s.kdump");
            let ram = ram();
            let mut s =
                StreamedKdump::create(&out, &OutputOptions::default(), &ram, spec(kind)).unwrap();
            let mut frames: Vec<u64> = ram
                .ranges()
                .iter()
                .flat_map(|r| (r.start / PAGE_U64)..(r.end / PAGE_U64))
                .collect();
            // Interleaved from both ends (not in pfn order), every third page zero, one page
            // sent twice (the later copy wins, also when it is a zero page).
            let mut order = Vec::new();
            while !frames.is_empty() {
                order.push(frames.remove(0));
                if let Some(f) = frames.pop() {
                    order.push(f);
                }
            }
            for &f in &order {
                let gpa = f * PAGE_U64;
                if f % 3 == 0 {
                    s.page(gpa, None).unwrap();
                } else {
                    s.page(gpa, Some(&page_of(gpa))).unwrap();
                }
            }
            s.page(0x101000, Some(&[9u8; PAGE])).unwrap();
            s.page(0x102000, None).unwrap();
            assert_eq!(s.missing(), 0);
            let mut back = [0u8; 8];
            s.memory().unwrap().read_at(0x101ffc, &mut back).unwrap();
            assert_eq!(back, [9, 9, 9, 9, 0, 0, 0, 0], "across a page boundary");
            s.memory().unwrap().read_at(0x104000, &mut back).unwrap();
            assert_eq!(back[..], page_of(0x104000)[..8]);
            assert!(s.page(0xa0000, None).is_err(), "a page outside RAM");
            assert!(s.page(0x100800, None).is_err(), "an unaligned page");
            let note = ElfNote::new(
                b"VMCOREINFO",
                0,
                b"OSRELEASE=6.1.0-test\nNUMBER(phys_base)=16777216\n".to_vec(),
            );
            let summary = s.finish(std::slice::from_ref(&note), None, 2).unwrap();
            assert_eq!(summary.dumped_pages, ram.total() / PAGE_U64);

            let k = KdumpFile::open(&out).unwrap();
            assert_eq!(k.ram().ranges(), ram.ranges());
            let mut got = vec![0u8; PAGE];
            for &f in &order {
                let gpa = f * PAGE_U64;
                k.read_at(gpa, &mut got).unwrap();
                let want = match gpa {
                    0x101000 => vec![9u8; PAGE],
                    0x102000 => vec![0u8; PAGE],
                    _ if f % 3 == 0 => vec![0u8; PAGE],
                    _ => page_of(gpa),
                };
                assert!(got == want, "{kind:?}: page {gpa:#x}");
            }
            assert_eq!(k.info().release, "6.1.0-test");
            assert_eq!((k.info().nr_cpus, k.phys_base()), (2, 16 << 20));
            assert!(k.vmcoreinfo().is_some());
        }
    }

    #[test]
    fn a_missing_page_or_oversized_notes_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.kdump");
        let ram = ram();
        let small = StreamedKdumpSpec {
            notes_reserve: 16,
            ..spec(Compression::Lzo)
        };
        let mut s = StreamedKdump::create(&out, &OutputOptions::default(), &ram, small).unwrap();
        s.page(0, Some(&page_of(0))).unwrap();
        let e = s.finish(&[], None, 1).unwrap_err().to_string();
        assert!(e.contains("never sent"), "{e}");
        let mut s = StreamedKdump::create(&out, &OutputOptions::default(), &ram, small).unwrap();
        for r in ram.ranges() {
            for gpa in (r.start..r.end).step_by(PAGE) {
                s.page(gpa, None).unwrap();
            }
        }
        let big = ElfNote::new(b"VMCOREINFO", 0, vec![b'x'; 8192]);
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
