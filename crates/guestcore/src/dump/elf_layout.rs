//! The plan of an ELF core file: every header value and file offset, computed before any I/O.
//!
//! ```text
//! Ehdr | Phdr × n (e_phoff = e_ehsize) | PT_NOTE data | pad to 4 KiB | physical data runs | .shstrtab | Shdr × 2
//! ```
//!
//! Program headers follow the file header directly because makedumpfile reads them there
//! whatever `e_phoff` says. The first program header is the PT_NOTE, then one PT_LOAD per RAM
//! range (non-paging) or per mapping (paging). Physical memory is stored once, as *data runs*:
//!
//! * non-paging: one run per RAM range (clipped to the filter), one PT_LOAD per run;
//! * paging: the runs are the union of the physical ranges of the mappings whose memory is RAM
//!   (clipped to the filter). Physical RAM that no mapping references is not written: no PT_LOAD
//!   could describe it. For a Linux x86_64 guest the direct map covers all RAM, so this is all
//!   RAM in the window; aliases (ESPFIX64 maps one page 65,536 times) cost one program header
//!   each and no data.
//!
//! A paging core has one PT_LOAD per *run* of memory, not per permission: mappings that continue
//! each other both virtually and physically are one PT_LOAD whatever their flags (`p_flags`
//! says what any part allows), as in QEMU's own paging dump. libkdumpfile (0.5.1, and its
//! code to this day) needs that to open a 32-bit guest's core:
//!
//! * before it can translate anything it reads the kernel's root page table at the virtual
//!   address VMCOREINFO gives for `swapper_pg_dir` (to learn whether the direct map at
//!   `0xc0000000` is PAE), and that read can only be served by the PT_LOADs;
//! * it looks a virtual address up in its PT_LOADs sorted by `p_paddr` (its by-virtual-address
//!   list is sorted with a comparison of `p_paddr`), and the first one whose virtual end reaches
//!   the address decides: when that one starts more than a page above the address, the lookup
//!   fails and it falls back to the page tables it is still setting up ("Infinite read
//!   recursion"), and no kernel address translates.
//!
//! So the direct-map PT_LOAD holding a kernel address must come, in `p_paddr` order, before
//! every mapping at a higher virtual address (vmalloc, fixmap, kmap) of physical memory below
//! it. One PT_LOAD for each contiguous stretch of the direct map starts at the bottom of its RAM
//! and comes first; cut at every permission change (the kernel's read-only text, one NX page),
//! the piece holding `swapper_pg_dir` starts above such aliases and the guest cannot be read.
//! Between equal `p_paddr`s it keeps file order (glibc's `qsort` is a stable merge sort), and
//! the file is in virtual order, so the direct map's PT_LOAD comes before the kernel's
//! higher aliases of its first page. gdb, crash, drgn and makedumpfile read no `p_flags`.
//! (A dump level cuts the direct map again where kept data starts; a filtered 32-bit paging
//! core can still fail there.)
//!
//! Each run starts at a file offset congruent to its physical address modulo 4 KiB, so page
//! mappings keep `p_offset ≡ p_vaddr (mod 4 KiB)` (gdb can mmap them), while `p_align` is 0 in
//! every program header (`elf_headers::P_ALIGN` says why: crash).
//! A mapping whose memory is not in the file (`IO`, not entirely RAM, or left out by a dump
//! level) gets `p_filesz = 0, p_memsz = size` and the offset where the data starts: crash
//! takes the smallest non-zero `p_offset` as the end of the headers, starting from the first
//! PT_LOAD's, so a first PT_LOAD with `p_offset = 0` makes it give up.
//!
//! Section headers (null + `.shstrtab`) are always written: section 0 carries the real program
//! header count in `sh_info` when it exceeds 65,534 (`e_phnum = PN_XNUM`), and strict readers
//! want a section string table.

use crate::addr::{PhysRange, SIZE_4K};
use crate::dump_level::frames::FRAME;
use crate::dump_level::FrameSet;
use crate::format::elf::{e_phnum, ElfClass, ElfMachine};
use crate::mapping::{Mapping, MappingList};
use crate::paging::PageFlags;
use crate::phys::RamMap;
use crate::{Error, Result};
use object::elf;
use std::borrow::Cow;

/// The name table of the only real section.
pub(crate) const SHSTRTAB: &[u8] = b"\0.shstrtab\0";
/// Offset of ".shstrtab" in [`SHSTRTAB`].
pub(crate) const SHSTRTAB_NAME: u32 = 1;
/// Number of section headers: null (PN_XNUM holder) and `.shstrtab`.
pub(crate) const SHNUM: u16 = 2;

/// One program header, class-independent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`: `PT_LOAD`, `PT_NOTE`, ….
    pub p_type: u32,
    /// `p_flags`: `PF_R`/`PF_W`/`PF_X` bits.
    pub flags: u32,
    /// `p_offset`: file offset of the segment's bytes.
    pub offset: u64,
    /// `p_vaddr`: guest-virtual address of the segment (0 when it has none).
    pub vaddr: u64,
    /// `p_paddr`: guest-physical address of the segment.
    pub paddr: u64,
    /// `p_filesz`: bytes stored in the file.
    pub filesz: u64,
    /// `p_memsz`: bytes of memory described (at least `filesz`; the rest reads as zeros).
    pub memsz: u64,
}

/// Physical memory `phys` is stored at file offset `offset`. A filtered dump's run is followed
/// by frames the dump level left out, up to `mem_end`: its physical PT_LOAD covers them in
/// `p_memsz` but not `p_filesz`, so readers see them as zeros, as in makedumpfile's ELF dumps.
/// (A RAM range that starts with left-out frames has a run with an empty `phys` there.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRun {
    /// The guest-physical bytes stored in the file.
    pub phys: PhysRange,
    /// File offset where `phys.start`'s byte is stored.
    pub offset: u64,
    /// End of the memory the run's PT_LOAD describes (`phys.end` when nothing follows).
    pub mem_end: u64,
}

/// What the PT_LOADs describe.
#[derive(Clone, Copy, Debug)]
pub enum DumpLayout<'a> {
    /// Paging off: one PT_LOAD per RAM range, `p_vaddr = p_paddr`.
    Physical,
    /// Paging on: one PT_LOAD per mapping, `p_vaddr` virtual, `p_paddr` physical.
    Paging(&'a MappingList),
}

/// Everything about the file except the memory bytes and the note bytes.
///
/// The program headers are not stored: [`segments`](Self::segments) derives each one, in file
/// order, from the mapping list (or the runs) and the data runs, so a plan costs O(data runs)
/// beside the list it borrows, whatever the number of PT_LOADs.
#[derive(Clone, Debug)]
pub struct ElfPlan<'a> {
    pub(crate) class: ElfClass,
    pub(crate) machine: ElfMachine,
    pub(crate) note: ProgramHeader,
    pub(crate) loads: Loads<'a>,
    pub(crate) runs: Vec<DataRun>,
    /// Where the memory data starts (after the notes, 4 KiB aligned): the offset of PT_LOADs
    /// without data.
    pub(crate) data_start: u64,
    /// True when a dump level cut the runs (mappings then hold runs followed by left-out
    /// frames).
    pub(crate) filtered: bool,
    /// Frames a dump level leaves out that are written anyway, to keep the number of PT_LOADs
    /// within [`MAX_FILTERED_RUNS`].
    pub(crate) excluded_written: u64,
    pub(crate) shstrtab_offset: u64,
    pub(crate) shoff: u64,
    pub(crate) file_size: u64,
}

/// Where the PT_LOADs come from.
#[derive(Clone, Debug)]
pub(crate) enum Loads<'a> {
    /// One per data run.
    Physical,
    /// One per mapping (clipped to the filter).
    Paging(Cow<'a, MappingList>),
}

impl ElfPlan<'_> {
    /// The ELF class.
    pub fn class(&self) -> ElfClass {
        self.class
    }
    /// Program headers, PT_NOTE first, derived one at a time.
    pub fn segments(&self) -> impl Iterator<Item = ProgramHeader> + '_ {
        let data_start = self.data_start;
        let fix = move |mut s: ProgramHeader| {
            if s.filesz == 0 {
                s.offset = data_start;
            }
            s
        };
        let loads: Box<dyn Iterator<Item = ProgramHeader> + '_> = match &self.loads {
            Loads::Physical => Box::new(self.runs.iter().map(|r| ProgramHeader {
                p_type: elf::PT_LOAD,
                flags: elf::PF_R | elf::PF_W | elf::PF_X,
                offset: r.offset,
                vaddr: r.phys.start,
                paddr: r.phys.start,
                filesz: r.phys.len(),
                memsz: r.mem_end - r.phys.start,
            })),
            Loads::Paging(list) => Box::new(list.iter().map(|m| self.load_of(m))),
        };
        std::iter::once(self.note).chain(loads.map(fix))
    }
    /// The PT_LOAD of mapping `m`: its bytes are in the file when a data run covers them.
    fn load_of(&self, m: &Mapping) -> ProgramHeader {
        let mut seg = ProgramHeader {
            p_type: elf::PT_LOAD,
            flags: mapping_flags(m.flags),
            vaddr: m.va.0,
            paddr: m.pa.0,
            memsz: m.size,
            ..ProgramHeader::default()
        };
        if m.is_ram() {
            // The data run holding the mapping's first byte: the mapping's bytes in it are in
            // the file (all of them, unless a dump level left out the frames after it, which
            // then read as zeros).
            let i = self.runs.partition_point(|r| r.phys.end <= m.pa.0);
            if let Some(r) = self.runs.get(i) {
                if r.phys.start <= m.pa.0 && (self.filtered || m.pa.0 + m.size <= r.phys.end) {
                    seg.offset = r.offset + (m.pa.0 - r.phys.start);
                    seg.filesz = m.size.min(r.phys.end - m.pa.0);
                }
            }
        }
        seg
    }
    /// Number of program headers, the PT_NOTE included.
    pub(crate) fn program_header_count(&self) -> u64 {
        self.load_count() as u64 + 1
    }
    /// Number of PT_LOAD program headers.
    pub(crate) fn load_count(&self) -> usize {
        match &self.loads {
            Loads::Physical => self.runs.len(),
            Loads::Paging(list) => list.len(),
        }
    }
    /// Where each piece of physical memory goes in the file.
    pub fn runs(&self) -> &[DataRun] {
        &self.runs
    }
    /// Frames the dump level left out that the file holds anyway (short gaps between kept
    /// frames, joined so the number of PT_LOADs stays within [`MAX_FILTERED_RUNS`]).
    pub fn excluded_written(&self) -> u64 {
        self.excluded_written
    }
    /// Bytes of guest memory stored in the file.
    pub fn data_bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.phys.len()).sum()
    }
    /// Size of the finished file.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }
    /// Offset of the section header table.
    pub fn shoff(&self) -> u64 {
        self.shoff
    }
    /// True when `e_phnum` is PN_XNUM (the count lives in section 0's `sh_info`).
    pub fn pn_xnum(&self) -> bool {
        e_phnum(self.program_header_count()) == elf::PN_XNUM
    }
    /// The PT_NOTE's offset (right after the program headers).
    pub(crate) fn note_offset(&self) -> u64 {
        self.note.offset
    }

    /// How many program headers fit between the file header and the notes.
    pub(crate) fn program_header_room(&self) -> u64 {
        (self.note.offset - self.class.ehsize()) / self.class.phentsize()
    }

    /// This physical plan's file, with one PT_LOAD per mapping of `list` instead of one per
    /// data run: every RAM mapping's bytes are where the physical layout put them (aliases
    /// share them), the rest have no file bytes. The program headers must fit the room the
    /// plan has before its notes.
    pub(crate) fn with_paging<'b>(&self, list: &'b MappingList) -> Result<ElfPlan<'b>> {
        if !matches!(self.loads, Loads::Physical) || self.filtered {
            return Err(Error::Unsupported(
                "only an unfiltered physical plan takes a mapping list".into(),
            ));
        }
        if list.is_empty() {
            return Err(Error::Unsupported(
                "the mapping list is empty: nothing to dump".into(),
            ));
        }
        // Adjacent runs are adjacent in the file too (a run starts at its address's offset
        // in a page, so nothing pads between them): one run here, as touching RAM is one run
        // in a paging plan, so a mapping over both has all its bytes, and the PT_LOADs are
        // those a paging plan of the same memory has.
        let mut runs: Vec<DataRun> = Vec::with_capacity(self.runs.len());
        for r in &self.runs {
            match runs.last_mut() {
                Some(last)
                    if last.phys.end == r.phys.start
                        && last.offset + last.phys.len() == r.offset =>
                {
                    last.phys.end = r.phys.end;
                    last.mem_end = r.mem_end;
                }
                _ => runs.push(*r),
            }
        }
        // A joined mapping must lie in one data run, or its bytes would not be found.
        let list = joined(Cow::Borrowed(list), |pa, size| {
            let i = runs.partition_point(|r| r.phys.end <= pa);
            runs.get(i).is_some_and(|r| {
                r.phys.start <= pa && pa.checked_add(size).is_some_and(|end| end <= r.phys.end)
            })
        });
        let room = self.program_header_room();
        let phnum = list.len() as u64 + 1;
        if phnum > room {
            return Err(Error::Limit {
                bound: "reserved program headers",
                detail: format!("{phnum} program headers do not fit the {room} reserved for them"),
            });
        }
        let plan = ElfPlan {
            class: self.class,
            machine: self.machine,
            note: self.note,
            loads: Loads::Paging(list),
            runs,
            data_start: self.data_start,
            filtered: false,
            excluded_written: 0,
            shstrtab_offset: self.shstrtab_offset,
            shoff: self.shoff,
            file_size: self.file_size,
        };
        if plan.class == ElfClass::Elf32 {
            check_elf32(&plan)?;
        }
        Ok(plan)
    }
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The `p_flags` of a mapping: R always, W with WRITE, X unless NX.
pub(crate) fn mapping_flags(flags: PageFlags) -> u32 {
    let mut f = elf::PF_R;
    if flags.contains(PageFlags::WRITE) {
        f |= elf::PF_W;
    }
    if !flags.contains(PageFlags::NX) {
        f |= elf::PF_X;
    }
    f
}

/// Plans a core for `ram` (the source's RAM map), `notes_len` bytes of encoded notes, `layout`,
/// an optional physical `filter` and the frames a dump level leaves out (`excluded`). Fails
/// when the filter holds no RAM, when a paging layout leaves no mapping, or when ELF32 cannot
/// hold a value.
pub(crate) fn plan<'a>(
    class: ElfClass,
    machine: ElfMachine,
    ram: &RamMap,
    notes_len: u64,
    layout: DumpLayout<'a>,
    filter: Option<PhysRange>,
    excluded: Option<&FrameSet>,
) -> Result<ElfPlan<'a>> {
    plan_reserving(class, machine, ram, notes_len, layout, filter, excluded, 0)
}

/// [`plan`] with room for at least `phnum_reserve` program headers before the notes, whatever
/// the layout needs now. A streamed core plans its physical layout with the room first, writes
/// the pages, then takes its PT_LOADs from the page tables it received
/// ([`ElfPlan::with_paging`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_reserving<'a>(
    class: ElfClass,
    machine: ElfMachine,
    ram: &RamMap,
    notes_len: u64,
    layout: DumpLayout<'a>,
    filter: Option<PhysRange>,
    excluded: Option<&FrameSet>,
    phnum_reserve: u64,
) -> Result<ElfPlan<'a>> {
    if let Some(w) = filter {
        if w.is_empty() || ram.ram_parts(w.start, w.len()).next().is_none() {
            return Err(Error::NotInMemory {
                addr: w.start,
                len: w.len(),
            });
        }
    }
    if ram.ranges().is_empty() {
        return Err(Error::Unsupported(
            "the guest has no RAM to dump".to_string(),
        ));
    }

    // Program headers: data is placed after them, once their number is known.
    let (loads, phys_runs) = match layout {
        DumpLayout::Physical => (Loads::Physical, physical_runs(ram, filter)),
        DumpLayout::Paging(list) => paging_runs(ram, list, filter)?,
    };
    let filtered = excluded.is_some_and(|x| !x.is_empty());
    let (loads, spans, excluded_written) = match excluded.filter(|x| !x.is_empty()) {
        None => {
            let spans = phys_runs.iter().map(|r| (*r, r.end)).collect();
            (loads, spans, 0)
        }
        Some(x) => {
            let (spans, written) = kept_runs(&phys_runs, x);
            let loads = match loads {
                Loads::Physical => Loads::Physical,
                Loads::Paging(list) => Loads::Paging(Cow::Owned(split_at_runs(&list, &spans, ram))),
            };
            (loads, spans, written)
        }
    };
    let phys_runs: Vec<(PhysRange, u64)> = match loads {
        // Paging: only the data is needed to place mappings.
        Loads::Paging(_) => spans.into_iter().filter(|(d, _)| !d.is_empty()).collect(),
        Loads::Physical => spans,
    };
    let phnum = 1 + match &loads {
        Loads::Physical => phys_runs.len() as u64,
        Loads::Paging(list) => list.len() as u64,
    };
    if phnum > u64::from(u32::MAX) {
        return Err(Error::Limit {
            bound: "ELF program headers",
            detail: format!(
                "{phnum} program headers do not fit an ELF file (at most {})",
                u32::MAX
            ),
        });
    }
    let phoff = class.ehsize();
    let note_offset = phoff + phnum.max(phnum_reserve) * class.phentsize();
    let note = ProgramHeader {
        p_type: elf::PT_NOTE,
        offset: note_offset,
        filesz: notes_len,
        ..ProgramHeader::default()
    };
    let mut cursor = align_up(note_offset + notes_len, SIZE_4K);
    let data_start = cursor;
    let mut runs = Vec::with_capacity(phys_runs.len());
    for (phys, mem_end) in phys_runs {
        if phys.is_empty() {
            runs.push(DataRun {
                phys,
                offset: 0,
                mem_end,
            });
            continue;
        }
        // Same offset within a page as the physical address.
        cursor += (phys.start % SIZE_4K + SIZE_4K - cursor % SIZE_4K) % SIZE_4K;
        runs.push(DataRun {
            phys,
            offset: cursor,
            mem_end,
        });
        cursor += phys.len();
    }
    let shstrtab_offset = cursor;
    let shoff = align_up(shstrtab_offset + SHSTRTAB.len() as u64, class.word());
    let file_size = shoff + u64::from(SHNUM) * class.shentsize();
    let plan = ElfPlan {
        class,
        machine,
        note,
        loads,
        runs,
        data_start,
        filtered,
        excluded_written,
        shstrtab_offset,
        shoff,
        file_size,
    };
    if class == ElfClass::Elf32 {
        check_elf32(&plan)?;
    }
    Ok(plan)
}

/// The data runs of a physical core: the RAM ranges, clipped to the filter.
fn physical_runs(ram: &RamMap, filter: Option<PhysRange>) -> Vec<PhysRange> {
    ram.ranges()
        .iter()
        .filter_map(|r| match filter {
            Some(w) => r.intersect(&w),
            None => Some(*r),
        })
        .collect()
}

/// The mapping list of a paging core (clipped to the filter) and its data runs.
fn paging_runs<'a>(
    ram: &RamMap,
    list: &'a MappingList,
    filter: Option<PhysRange>,
) -> Result<(Loads<'a>, Vec<PhysRange>)> {
    let list: Cow<'a, MappingList> = match filter {
        Some(w) => Cow::Owned(list.clip_phys(w)),
        None => Cow::Borrowed(list),
    };
    // Touching RAM is one data run below, so a mapping joined within RAM stays readable.
    let list = joined(list, |pa, size| ram.contains(pa, size));
    if list.is_empty() {
        return Err(Error::Unsupported(match filter {
            Some(w) => format!("no mapping has physical memory in {w}: nothing to dump"),
            None => "the mapping list is empty: nothing to dump".to_string(),
        }));
    }
    // The union of the physical ranges of RAM mappings. Sorted by start, then merged when they
    // overlap or touch (touching RAM ranges are contiguous RAM, so the run stays readable).
    let mut phys: Vec<PhysRange> = list
        .iter()
        .filter(|m| m.is_ram() && ram.contains(m.pa.0, m.size))
        .map(|m| m.phys())
        .collect();
    phys.sort_unstable();
    phys.dedup();
    let mut runs: Vec<PhysRange> = Vec::new();
    for p in phys {
        match runs.last_mut() {
            Some(last) if p.start <= last.end => last.end = last.end.max(p.end),
            _ => runs.push(p),
        }
    }
    Ok((Loads::Paging(list), runs))
}

/// `list` with every mapping that continues the one before it both virtually and physically
/// joined into it, whatever their permissions (`p_flags` then says what any of them allows:
/// writable if one is, executable if one is). RAM joins RAM only where `same_run` says the
/// joined physical range is in one data run; memory that is not RAM joins memory that is not
/// RAM. The module doc says why (libkdumpfile). Borrowed as it was when nothing joins.
fn joined<'a>(
    list: Cow<'a, MappingList>,
    same_run: impl Fn(u64, u64) -> bool,
) -> Cow<'a, MappingList> {
    let joins = |a: &Mapping, b: &Mapping| {
        a.va.0.checked_add(a.size) == Some(b.va.0)
            && a.pa.0.checked_add(a.size) == Some(b.pa.0)
            && match (a.is_ram(), b.is_ram()) {
                (true, true) => a
                    .size
                    .checked_add(b.size)
                    .is_some_and(|n| same_run(a.pa.0, n)),
                (false, false) => true,
                _ => false,
            }
    };
    if !list.as_slice().windows(2).any(|w| joins(&w[0], &w[1])) {
        return list;
    }
    let mut out: Vec<Mapping> = Vec::with_capacity(list.len());
    for m in list.iter() {
        match out.last_mut() {
            Some(last) if joins(last, m) => {
                let nx = last.flags & m.flags & PageFlags::NX;
                last.flags = ((last.flags | m.flags) - PageFlags::NX) | nx;
                last.size += m.size;
            }
            _ => out.push(*m),
        }
    }
    let mut joined = MappingList::new();
    for m in out {
        joined.push_unmerged(m.va.0, m.pa.0, m.size, m.flags);
    }
    Cow::Owned(joined)
}

/// The most data runs a filtered dump is cut into. Every run is a PT_LOAD (physical) or splits
/// the mappings over it (paging), and crash looks segments up one by one: past this, the
/// shortest gaps of left-out frames are written after all (and counted).
pub const MAX_FILTERED_RUNS: usize = 65_000;

/// `runs` less the frames of `excluded`, cut at every gap of left-out frames at least
/// `min_gap` long: each piece is the kept data and where the left-out frames after it end (the
/// next piece, or the end of its run); a run that starts with left-out frames has an empty
/// first piece. `None` when that makes more than [`MAX_FILTERED_RUNS`] pieces.
fn cut_runs(
    runs: &[PhysRange],
    excluded: &FrameSet,
    min_gap: u64,
) -> Option<(Vec<(PhysRange, u64)>, u64)> {
    let mut out: Vec<(PhysRange, u64)> = Vec::new();
    let mut written = 0;
    for r in runs {
        let (fs, fe) = (r.start / FRAME, r.end.div_ceil(FRAME));
        let mut start = r.start;
        for (a, b) in excluded.members_in(fs, fe) {
            if b - a < min_gap && a * FRAME > r.start && b * FRAME < r.end {
                written += b - a;
                continue;
            }
            let cut = (a * FRAME).max(r.start);
            let resume = (b * FRAME).min(r.end);
            out.push((PhysRange { start, end: cut }, resume));
            if out.len() > MAX_FILTERED_RUNS {
                return None;
            }
            start = resume;
        }
        if start < r.end {
            out.push((PhysRange { start, end: r.end }, r.end));
            if out.len() > MAX_FILTERED_RUNS {
                return None;
            }
        }
    }
    // A piece with no data is only needed at the start of a run (nothing before it to extend).
    let mut kept: Vec<(PhysRange, u64)> = Vec::with_capacity(out.len());
    for (d, end) in out {
        match kept.last_mut() {
            Some(last) if d.is_empty() && last.1 == d.start => last.1 = end,
            _ => kept.push((d, end)),
        }
    }
    Some((kept, written))
}

/// `runs` without the frames `excluded` leaves out, joining the shortest gaps when there would
/// be too many pieces; and the number of left-out frames written anyway.
fn kept_runs(runs: &[PhysRange], excluded: &FrameSet) -> (Vec<(PhysRange, u64)>, u64) {
    let mut min_gap = 1;
    loop {
        if let Some(r) = cut_runs(runs, excluded, min_gap) {
            return r;
        }
        min_gap *= 4;
    }
}

/// The mappings of `list` split where a piece of kept data starts (`spans` from
/// [`kept_runs`]), so each mapping's kept bytes come first: its PT_LOAD then holds them in
/// `p_filesz` and the left-out frames after them in `p_memsz` only. Mappings whose memory is
/// not RAM stay as they are.
fn split_at_runs(list: &MappingList, spans: &[(PhysRange, u64)], ram: &RamMap) -> MappingList {
    let mut out = MappingList::new();
    for m in list {
        let p = m.phys();
        if !(m.is_ram() && ram.contains(m.pa.0, m.size)) {
            out.push(m.va.0, m.pa.0, m.size, m.flags);
            continue;
        }
        let mut at = p.start;
        let first = spans.partition_point(|(d, _)| d.start <= p.start);
        for (d, _) in spans[first..].iter().take_while(|(d, _)| d.start < p.end) {
            if d.is_empty() || d.start <= at {
                continue;
            }
            out.push_unmerged(m.va.0 + (at - p.start), at, d.start - at, m.flags);
            at = d.start;
        }
        out.push_unmerged(m.va.0 + (at - p.start), at, p.end - at, m.flags);
    }
    out
}

/// Fails with the first value that does not fit in 32 bits.
fn check_elf32(plan: &ElfPlan<'_>) -> Result<()> {
    const MAX: u64 = u32::MAX as u64;
    let fail = |what: String, v: u64| {
        Err(Error::Limit {
            bound: "ELF32 fields",
            detail: format!(
                "ELF32 cannot hold {what} = {v:#x} (more than 32 bits); write ELF64 instead"
            ),
        })
    };
    for (i, s) in plan.segments().enumerate() {
        let name = if i == 0 {
            "the PT_NOTE".to_string()
        } else {
            format!("PT_LOAD #{i} (physical {:#x})", s.paddr)
        };
        for (field, v) in [
            ("p_paddr", s.paddr),
            ("p_vaddr", s.vaddr),
            ("p_memsz", s.memsz),
            ("p_filesz", s.filesz),
            ("p_offset", s.offset),
        ] {
            if v > MAX {
                return fail(format!("{field} of {name}"), v);
            }
        }
        // A segment must also end inside the 32-bit address space.
        if s.paddr.saturating_add(s.memsz) > MAX + 1 {
            return fail(format!("the end of {name}"), s.paddr + s.memsz);
        }
    }
    if plan.file_size > MAX {
        return fail("the file size".to_string(), plan.file_size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &ElfPlan<'_>) -> Vec<ProgramHeader> {
        p.segments().collect()
    }

    fn ram() -> RamMap {
        RamMap::new(vec![
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0x100000, 0x300000),
        ])
        .unwrap()
    }

    #[test]
    fn physical_layout_offsets() {
        let p = plan(
            ElfClass::Elf64,
            ElfMachine::X86_64,
            &ram(),
            100,
            DumpLayout::Physical,
            None,
            None,
        )
        .unwrap();
        assert_eq!(segs(&p).len(), 3);
        assert_eq!(p.note_offset(), 64 + 3 * 56);
        assert_eq!(segs(&p)[0].filesz, 100);
        assert_eq!(p.runs[0].offset, 0x1000);
        assert_eq!(p.runs[1].offset, 0x1000 + 0xa0000);
        assert_eq!(segs(&p)[2].offset, p.runs[1].offset);
        assert_eq!(segs(&p)[2].vaddr, 0x100000);
        assert_eq!(segs(&p)[2].filesz, 0x300000);
        assert_eq!(p.shstrtab_offset, 0x1000 + 0xa0000 + 0x300000);
        assert_eq!(p.shoff % 8, 0);
        assert_eq!(p.file_size, p.shoff + 128);
        assert!(!p.pn_xnum());
    }

    #[test]
    fn physical_filter_clips() {
        let p = plan(
            ElfClass::Elf32,
            ElfMachine::I386,
            &ram(),
            0,
            DumpLayout::Physical,
            Some(PhysRange::new(0x9f000, 0x62000)),
            None,
        )
        .unwrap();
        let loads: Vec<_> = segs(&p)[1..].iter().map(|s| (s.paddr, s.memsz)).collect();
        assert_eq!(loads, vec![(0x9f000, 0x1000), (0x100000, 0x1000)]);
        assert!(plan(
            ElfClass::Elf64,
            ElfMachine::X86_64,
            &ram(),
            0,
            DumpLayout::Physical,
            Some(PhysRange::new(0xa0000, 0x60000)),
            None,
        )
        .is_err());
    }

    #[test]
    fn paging_aliases_share_data() {
        let mut l = MappingList::new();
        l.push(0x1000, 0x2000, 0x1000, PageFlags::WRITE);
        l.push(0x5000, 0x2000, 0x1000, PageFlags::NX);
        l.push(0x6000, 0x1000, 0x2000, PageFlags::empty()); // overlaps the first physically
        l.push(0x9000, 0xb0000, 0x1000, PageFlags::WRITE); // not RAM
        l.push(0xa000, 0x100000, 0x1000, PageFlags::WRITE | PageFlags::IO);
        let p = plan(
            ElfClass::Elf64,
            ElfMachine::X86_64,
            &ram(),
            0,
            DumpLayout::Paging(&l),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            p.runs.iter().map(|r| r.phys).collect::<Vec<_>>(),
            vec![PhysRange::new(0x1000, 0x2000)]
        );
        assert_eq!(p.data_bytes(), 0x2000);
        let s = &segs(&p)[1..];
        assert_eq!(s[0].offset, s[1].offset, "aliases share data");
        assert_eq!(s[2].offset + 0x1000, s[0].offset);
        assert_eq!(s[0].offset % SIZE_4K, 0x2000 % SIZE_4K);
        assert_eq!(s[0].flags, elf::PF_R | elf::PF_W | elf::PF_X);
        assert_eq!(s[1].flags, elf::PF_R);
        assert_eq!(s[2].flags, elf::PF_R | elf::PF_X);
        for io in &s[3..] {
            // No data: the offset is where data starts, never 0 (crash needs that).
            assert_eq!((io.offset, io.filesz, io.memsz), (p.data_start, 0, 0x1000));
            assert_ne!(io.offset, 0);
        }
    }

    /// The PT_LOAD libkdumpfile (0.5.1) reads virtual `va` from before it knows the page
    /// tables, as its `find_closest_file_vload` finds it: the PT_LOADs with file bytes sorted
    /// by `p_paddr` (stably), the first whose virtual end reaches `va`, if it holds `va`.
    fn libkdumpfile_lookup(segs: &[ProgramHeader], va: u64) -> Option<ProgramHeader> {
        let mut loads: Vec<ProgramHeader> = segs
            .iter()
            .filter(|s| s.p_type == elf::PT_LOAD && s.filesz > 0)
            .copied()
            .collect();
        loads.sort_by_key(|s| s.paddr);
        let s = loads.into_iter().find(|s| va < s.vaddr + s.filesz)?;
        (s.vaddr <= va).then_some(s)
    }

    /// A 32-bit Linux guest as the i386 captures have it: a direct map at 0xc0000000 cut by
    /// permissions (read-only pages, the kernel's text), a user page, and a vmalloc alias at a
    /// high virtual address of physical memory below the kernel's data. libkdumpfile finds
    /// every direct-map page (swapper_pg_dir among them) only when each contiguous stretch of
    /// the direct map is one PT_LOAD: cut, the alias comes first in `p_paddr` order.
    #[test]
    fn direct_map_is_one_load_per_run_for_libkdumpfile() {
        let ram = RamMap::new(vec![
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0x100000, 0x700000),
        ])
        .unwrap();
        let (w, nx, u) = (PageFlags::WRITE, PageFlags::NX, PageFlags::USER);
        let mut l = MappingList::new();
        l.push(0x0804_8000, 0x30_0000, 0x1000, u | w | nx);
        l.push(0xc000_0000, 0, 0x9b000, w | nx);
        l.push(0xc009_b000, 0x9b000, 0x5000, nx);
        l.push(0xc00a_0000, 0xa0000, 0x60000, w | nx | PageFlags::IO);
        l.push(0xc010_0000, 0x10_0000, 0x10_0000, w | nx);
        l.push(0xc020_0000, 0x20_0000, 0x10_0000, PageFlags::empty()); // text
        l.push(0xc030_0000, 0x30_0000, 0x50_0000, w | nx); // data, swapper_pg_dir
        l.push(0xd07e_c000, 0x15_0000, 0x1000, w | nx); // vmalloc alias
        l.push(0xff40_0000, 0x40_0000, 0x1000, w | nx); // fixmap alias of the root
        for layout in [None, Some(PhysRange::new(0, 0x80_0000))] {
            let p = plan(
                ElfClass::Elf64,
                ElfMachine::I386,
                &ram,
                0,
                DumpLayout::Paging(&l),
                layout,
                None,
            )
            .unwrap();
            let s = segs(&p);
            for va in (0xc000_0000..0xc080_0000u64).step_by(0x1000) {
                if (0xc00a_0000..0xc010_0000).contains(&va) {
                    continue; // not RAM
                }
                let got = libkdumpfile_lookup(&s, va);
                assert!(
                    got.is_some_and(|g| g.vaddr <= va && va < g.vaddr + g.filesz),
                    "libkdumpfile cannot find {va:#x}: it reads {got:x?}"
                );
            }
            let direct: Vec<_> = s[1..]
                .iter()
                .filter(|s| s.vaddr >= 0xc000_0000 && s.vaddr < 0xd000_0000)
                .map(|s| (s.vaddr, s.paddr, s.memsz, s.filesz, s.flags))
                .collect();
            let rwx = elf::PF_R | elf::PF_W | elf::PF_X;
            assert_eq!(
                direct,
                vec![
                    (0xc000_0000, 0, 0xa0000, 0xa0000, elf::PF_R | elf::PF_W),
                    (0xc00a_0000, 0xa0000, 0x60000, 0, elf::PF_R | elf::PF_W),
                    (0xc010_0000, 0x10_0000, 0x70_0000, 0x70_0000, rwx),
                ],
                "one PT_LOAD per run of RAM, the permissions of all its parts"
            );
            // The aliases are still there, with the same bytes as the direct map.
            let alias = s.iter().find(|s| s.vaddr == 0xd07e_c000).unwrap();
            assert_eq!(alias.offset, direct_offset(&s, 0x15_0000));
        }
    }

    /// The file offset of physical `pa` in the direct map's PT_LOAD holding it.
    fn direct_offset(segs: &[ProgramHeader], pa: u64) -> u64 {
        let d = segs
            .iter()
            .find(|s| s.vaddr >= 0xc000_0000 && s.paddr <= pa && pa < s.paddr + s.filesz)
            .unwrap();
        d.offset + (pa - d.paddr)
    }

    /// A streamed core's PT_LOADs (a physical plan given the mapping list) are those of a
    /// paging plan of the same memory: mappings join across adjacent RAM ranges (adjacent in
    /// the file too) with all their bytes, and never across memory that is not RAM.
    #[test]
    fn with_paging_joins_like_a_paging_plan() {
        let ram = RamMap::new(vec![
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0x100000, 0x100000),
            PhysRange::new(0x200000, 0x100000),
            PhysRange::new(0x400000, 0x100000),
        ])
        .unwrap();
        let mut l = MappingList::new();
        l.push(0xc010_0000, 0x10_0000, 0x8_0000, PageFlags::WRITE);
        l.push(0xc018_0000, 0x18_0000, 0x8_0000, PageFlags::empty());
        l.push(0xc020_0000, 0x20_0000, 0x10_0000, PageFlags::WRITE);
        l.push(0xc030_0000, 0x30_0000, 0x10_0000, PageFlags::IO);
        l.push(0xc040_0000, 0x40_0000, 0x10_0000, PageFlags::WRITE);
        let phys = plan_reserving(
            ElfClass::Elf64,
            ElfMachine::I386,
            &ram,
            0,
            DumpLayout::Physical,
            None,
            None,
            16,
        )
        .unwrap();
        let streamed = phys.with_paging(&l).unwrap();
        let shape = |p: &ElfPlan<'_>| -> Vec<_> {
            segs(p)[1..]
                .iter()
                .map(|s| (s.vaddr, s.paddr, s.memsz, s.filesz, s.flags))
                .collect()
        };
        let rwx = elf::PF_R | elf::PF_W | elf::PF_X;
        assert_eq!(
            shape(&streamed),
            vec![
                (0xc010_0000, 0x10_0000, 0x20_0000, 0x20_0000, rwx),
                (0xc030_0000, 0x30_0000, 0x10_0000, 0, elf::PF_R | elf::PF_X),
                (0xc040_0000, 0x40_0000, 0x10_0000, 0x10_0000, rwx),
            ]
        );
        let pulled = plan(
            ElfClass::Elf64,
            ElfMachine::I386,
            &ram,
            0,
            DumpLayout::Paging(&l),
            None,
            None,
        )
        .unwrap();
        assert_eq!(shape(&streamed), shape(&pulled));
        // The bytes are where the physical plan wrote them.
        for s in segs(&streamed)[1..].iter().filter(|s| s.filesz > 0) {
            let r = phys
                .runs
                .iter()
                .find(|r| r.phys.start <= s.paddr && s.paddr < r.phys.end);
            assert_eq!(
                Some(s.offset),
                r.map(|r| r.offset + (s.paddr - r.phys.start))
            );
        }
    }

    #[test]
    fn elf32_overflow_names_the_value() {
        let ram = RamMap::new(vec![
            PhysRange::new(0, 0x1000),
            PhysRange::new(0x1_0000_0000, 0x1000),
        ])
        .unwrap();
        let e = plan(
            ElfClass::Elf32,
            ElfMachine::I386,
            &ram,
            0,
            DumpLayout::Physical,
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p_paddr") && e.contains("0x100000000"), "{e}");
        // The window below 4 GiB fits.
        plan(
            ElfClass::Elf32,
            ElfMachine::I386,
            &ram,
            0,
            DumpLayout::Physical,
            Some(PhysRange::new(0, 0x1000)),
            None,
        )
        .unwrap();
    }

    #[test]
    fn pn_xnum_counts_the_note() {
        let mut l = MappingList::new();
        for i in 0..0xfffe_u64 {
            l.push(i * 0x10000, 0x1000, 0x1000, PageFlags::empty());
        }
        fn mk(l: &MappingList) -> ElfPlan<'_> {
            plan(
                ElfClass::Elf64,
                ElfMachine::X86_64,
                &ram(),
                0,
                DumpLayout::Paging(l),
                None,
                None,
            )
            .unwrap()
        }
        let p = mk(&l);
        assert_eq!(segs(&p).len(), 0xffff);
        // 65,534 aliases of one page: one data run; the headers are derived, not stored.
        assert_eq!(p.runs().len(), 1);
        assert!(p.pn_xnum(), "65,535 headers do not fit e_phnum");
        let mut short = MappingList::new();
        for m in &l.as_slice()[1..] {
            short.push(m.va.0, m.pa.0, m.size, m.flags);
        }
        assert!(!mk(&short).pn_xnum());
    }
}
