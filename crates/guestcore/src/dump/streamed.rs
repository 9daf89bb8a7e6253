//! A physical ELF core written as its pages arrive, in any order, from a stream (a QEMU
//! background snapshot): no copy of guest RAM is held anywhere but in the output file.
//!
//! The file has the layout of [`write_elf_core`](super::write_elf_core)'s physical core (one
//! PT_LOAD per RAM range, each page at a fixed offset), planned up front from the RAM map,
//! with room for the notes reserved: their contents (the vCPU registers, the VMCOREINFO) are
//! only known at the stream's end, where QEMU puts the device state. Each page is written
//! where the plan puts it as it arrives; consecutive pages are batched into one write, and
//! zero pages are not written at all (the file is fresh, so they read as zeros). The notes, the
//! headers and the section table are written by [`StreamedElf::finish`], which refuses a file
//! in which a RAM page never arrived: a dump is only ever complete. Until then the file is a
//! temporary one beside the target (atomic output), removed on every error.

use super::elf::{write_headers, write_sections};
use super::elf_layout::{plan_reserving, DataRun, ElfPlan};
use super::output::AtomicOutput;
use super::sink::{PageSink, SinkEnd};
use super::writeback::WritebackRuns;
use super::{DumpLayout, DumpOutcome, DumpSummary, ElfClass, ElfMachine, OutputOptions};
use crate::addr::PAGE_SIZE as PAGE;
use crate::dump_level::FrameSet;
use crate::format::ElfNote;
use crate::mapping::MappingList;
use crate::phys::{PhysMemory, RamMap};
use crate::{Error, Result};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Consecutive pages gathered into one write.
const BATCH: usize = 1 << 20;

/// An ELF core being filled from a stream.
#[derive(Debug)]
pub struct StreamedElf {
    output: AtomicOutput,
    name: String,
    plan: ElfPlan<'static>,
    ram: RamMap,
    notes_reserve: u64,
    /// RAM frames received so far.
    seen: FrameSet,
    /// File offset of `batch[0]`.
    batch_at: u64,
    batch: Vec<u8>,
    writeback: WritebackRuns,
    written: u64,
    zero_pages: u64,
    pages: u64,
}

impl StreamedElf {
    /// Creates the temporary file for a physical core of `ram` with `notes_reserve` bytes for
    /// the notes and room for at least `phnum_reserve` program headers (for a paging core
    /// whose PT_LOADs come at the end, [`finish_paging`](Self::finish_paging); 0 otherwise).
    /// An existing `out` is an error unless `opts.force`.
    pub fn create(
        out: &Path,
        opts: &OutputOptions,
        ram: &RamMap,
        class: ElfClass,
        machine: ElfMachine,
        notes_reserve: u64,
        phnum_reserve: u64,
    ) -> Result<Self> {
        let plan = plan_reserving(
            class,
            machine,
            ram,
            notes_reserve,
            DumpLayout::Physical,
            None,
            None,
            phnum_reserve,
        )?;
        let output = AtomicOutput::create(out, opts)?;
        Ok(StreamedElf {
            name: out.display().to_string(),
            output,
            plan,
            ram: ram.clone(),
            notes_reserve,
            seen: FrameSet::for_ram(ram),
            batch_at: 0,
            batch: Vec::with_capacity(BATCH),
            writeback: WritebackRuns::default(),
            written: 0,
            zero_pages: 0,
            pages: 0,
        })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.name), e)
    }

    fn run_of(&self, gpa: u64) -> Option<&DataRun> {
        run_at(self.plan.runs(), gpa)
    }

    /// How many program headers the file has room for (the PT_NOTE included).
    pub fn program_header_room(&self) -> u64 {
        self.plan.program_header_room()
    }

    /// Writes the pending batch.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let file = self.output.file();
        file.write_all_at(&self.batch, self.batch_at)
            .map_err(|e| self.io(e))?;
        self.written += self.batch.len() as u64;
        self.writeback
            .wrote(file, self.batch_at, self.batch.len() as u64);
        self.batch.clear();
        Ok(())
    }

    /// The page of guest-physical `gpa` (4 KiB aligned): `Some(bytes)` (4096 of them), or
    /// `None` for a page of zeros. A page outside RAM is an error; a page sent again replaces
    /// the earlier copy.
    pub fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        if gpa % PAGE != 0 || bytes.is_some_and(|b| b.len() as u64 != PAGE) {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is not one aligned 4 KiB page"),
            ));
        }
        let Some(run) = self.run_of(gpa) else {
            return Err(Error::format(
                "the stream",
                format!("a stream page at {gpa:#x} is outside the guest's RAM"),
            ));
        };
        let at = run.offset + (gpa - run.phys.start);
        let frame = gpa / PAGE;
        let again = self.seen.count_in(frame, frame + 1) == 1;
        self.seen.insert(frame, frame + 1);
        self.pages += 1;
        match bytes {
            Some(b) if !crate::phys::is_zero(b) => {
                if self.batch.is_empty() {
                    self.batch_at = at;
                } else if self.batch_at + self.batch.len() as u64 != at || self.batch.len() >= BATCH
                {
                    self.flush()?;
                    self.batch_at = at;
                }
                self.batch.extend_from_slice(b);
            }
            _ => {
                self.zero_pages += 1;
                if again {
                    // An earlier copy may be in the file: zero it.
                    self.flush()?;
                    self.output
                        .file()
                        .write_all_at(&[0u8; PAGE as usize], at)
                        .map_err(|e| self.io(e))?;
                }
            }
        }
        Ok(())
    }

    /// RAM frames no page has arrived for yet.
    pub fn missing(&self) -> u64 {
        self.seen.capacity() - self.seen.len()
    }

    /// Pages received (zero pages included) and zero pages among them.
    pub fn received(&self) -> (u64, u64) {
        (self.pages, self.zero_pages)
    }

    /// The memory received so far, for reading while nothing more arrives (the page tables a
    /// paging core's PT_LOADs come from). Pages not received read as zeros. It holds its own
    /// handle on the file, so it stays readable beside the writer.
    pub fn memory(&mut self) -> Result<Written> {
        self.flush()?;
        let file = self.output.reader()?;
        Ok(Written {
            file,
            name: self.name.clone(),
            runs: self.plan.runs().to_vec(),
            ram: self.ram.clone(),
        })
    }

    /// Completes the file with `notes` (at most the reserved size) and renames it into place.
    /// Fails, leaving nothing, when a RAM page never arrived.
    pub fn finish(self, notes: &[ElfNote]) -> Result<DumpSummary> {
        self.finish_as(notes, None)
    }

    /// [`finish`](Self::finish) as a paging core: one PT_LOAD per mapping of `list` (the
    /// walk of the received page tables), each RAM mapping's bytes where the physical layout
    /// put them. Fails, leaving nothing, when the program headers exceed the reserved room.
    pub fn finish_paging(self, notes: &[ElfNote], list: &MappingList) -> Result<DumpSummary> {
        self.finish_as(notes, Some(list))
    }

    fn finish_as(mut self, notes: &[ElfNote], list: Option<&MappingList>) -> Result<DumpSummary> {
        self.flush()?;
        let missing = self.missing();
        if missing > 0 {
            return Err(Error::format(
                "the stream",
                format!(
                "the stream ended with {missing} pages of the guest's RAM never sent: no dump written"
            )));
        }
        let encoded = ElfNote::encode_all(notes);
        if encoded.len() as u64 > self.notes_reserve {
            return Err(Error::Limit {
                bound: "reserved notes",
                detail: format!(
                    "the dump's notes take {} bytes, more than the {} reserved for them",
                    encoded.len(),
                    self.notes_reserve
                ),
            });
        }
        self.plan.note.filesz = encoded.len() as u64;
        let paging = list.map(|l| self.plan.with_paging(l)).transpose()?;
        let plan = paging.as_ref().unwrap_or(&self.plan);
        let file = self.output.file();
        write_headers(plan, notes, file, &self.name)?;
        write_sections(plan, file, &self.name)?;
        file.set_len(plan.file_size())
            .map_err(|e| Error::io(format!("writing {}", self.name), e))?;
        let summary = DumpSummary {
            segments: plan.load_count(),
            program_headers: plan.program_header_count() as usize,
            data_bytes: plan.data_bytes(),
            bytes_written: self.written,
            zero_bytes_skipped: self.zero_pages * PAGE,
            file_size: plan.file_size(),
            pn_xnum: plan.pn_xnum(),
            excluded_written: 0,
        };
        self.output.commit()?;
        Ok(summary)
    }
}

impl PageSink for StreamedElf {
    fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        StreamedElf::page(self, gpa, bytes)
    }

    fn memory(&mut self) -> Result<Box<dyn PhysMemory>> {
        Ok(Box::new(StreamedElf::memory(self)?))
    }

    fn finish(self: Box<Self>, end: &SinkEnd<'_>) -> Result<DumpOutcome> {
        let Some(list) = end.mappings else {
            return Ok(DumpOutcome::Elf {
                summary: (*self).finish(end.notes)?,
                paging: false,
            });
        };
        let room = self.program_header_room();
        if list.len() as u64 + 1 > room {
            return Err(Error::Limit {
                bound: "reserved program headers",
                detail: format!(
                    "the guest's page tables grew while the snapshot ran: {} program headers, \
                 room for {room} (run it again, or pause the guest)",
                    list.len() + 1
                ),
            });
        }
        Ok(DumpOutcome::Elf {
            summary: (*self).finish_paging(end.notes, list)?,
            paging: true,
        })
    }
}

/// The data run holding guest-physical `gpa`, if any (`runs` sorted by address).
fn run_at(runs: &[DataRun], gpa: u64) -> Option<&DataRun> {
    let i = runs.partition_point(|r| r.phys.end <= gpa);
    runs.get(i).filter(|r| r.phys.start <= gpa)
}

/// A [`StreamedElf`]'s pages received so far, as guest-physical memory.
#[derive(Debug)]
pub struct Written {
    file: std::fs::File,
    name: String,
    runs: Vec<DataRun>,
    ram: RamMap,
}

impl PhysMemory for Written {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr + done as u64;
            let Some(run) = run_at(&self.runs, a) else {
                return Err(Error::NotInMemory {
                    addr: a,
                    len: (buf.len() - done) as u64,
                });
            };
            let n = ((run.phys.end - a) as usize).min(buf.len() - done);
            self.file
                .read_exact_at(&mut buf[done..done + n], run.offset + (a - run.phys.start))
                .map_err(|e| Error::io(format!("reading back {}", self.name), e))?;
            done += n;
        }
        Ok(())
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;
    use crate::phys::elf::ElfCore;

    fn ram() -> RamMap {
        RamMap::new(vec![
            PhysRange::new(0, 0x9f000),
            PhysRange::new(0x100000, 0x300000),
        ])
        .unwrap()
    }

    fn page_of(gpa: u64) -> Vec<u8> {
        (0..PAGE)
            .map(|i| ((gpa / PAGE) as u8) ^ (i as u8))
            .collect()
    }

    #[test]
    fn pages_in_any_order_make_the_core_a_plain_dump_would() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.elf");
        let ram = ram();
        let mut s = StreamedElf::create(
            &out,
            &OutputOptions::default(),
            &ram,
            ElfClass::Elf64,
            ElfMachine::X86_64,
            8192,
            0,
        )
        .unwrap();
        let mut frames: Vec<u64> = ram
            .ranges()
            .iter()
            .flat_map(|r| (r.start / PAGE)..(r.end / PAGE))
            .collect();
        // Reverse order, every third page zero, one page sent twice.
        frames.reverse();
        for &f in &frames {
            let gpa = f * PAGE;
            if f % 3 == 0 {
                s.page(gpa, None).unwrap();
            } else {
                s.page(gpa, Some(&page_of(gpa))).unwrap();
            }
        }
        s.page(0x101000, Some(&[9u8; 4096])).unwrap();
        s.page(0x102000, None).unwrap();
        assert_eq!(s.missing(), 0);
        let mut back = [0u8; 8];
        s.memory().unwrap().read_at(0x101000, &mut back).unwrap();
        assert_eq!(back, [9u8; 8]);
        assert!(s.page(0xa0000, None).is_err(), "a page outside RAM");
        assert!(s.page(0x100800, None).is_err(), "an unaligned page");
        let note = ElfNote::new(b"VMCOREINFO", 0, b"OSRELEASE=test\n".to_vec());
        s.finish(std::slice::from_ref(&note)).unwrap();

        let core = ElfCore::open(&out).unwrap();
        assert_eq!(core.ram().ranges(), ram.ranges());
        assert!(core
            .notes()
            .iter()
            .any(|n| n.desc.starts_with(b"OSRELEASE=test")));
        let mut got = vec![0u8; PAGE as usize];
        for &f in &frames {
            let gpa = f * PAGE;
            core.read_at(gpa, &mut got).unwrap();
            let want = match gpa {
                0x101000 => vec![9u8; 4096],
                0x102000 => vec![0u8; 4096],
                _ if f % 3 == 0 => vec![0u8; 4096],
                _ => page_of(gpa),
            };
            assert!(got == want, "page {gpa:#x}");
        }
    }

    #[test]
    fn a_missing_page_or_oversized_notes_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.elf");
        let ram = ram();
        let new = || {
            StreamedElf::create(
                &out,
                &OutputOptions::default(),
                &ram,
                ElfClass::Elf64,
                ElfMachine::X86_64,
                64,
                0,
            )
            .unwrap()
        };
        let mut s = new();
        s.page(0, Some(&page_of(0))).unwrap();
        let e = s.finish(&[]).unwrap_err().to_string();
        assert!(e.contains("never sent"), "{e}");
        let mut s = new();
        for r in ram.ranges() {
            for gpa in (r.start..r.end).step_by(PAGE as usize) {
                s.page(gpa, None).unwrap();
            }
        }
        let big = ElfNote::new(b"VMCOREINFO", 0, vec![b'x'; 100]);
        assert!(s.finish(&[big]).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
