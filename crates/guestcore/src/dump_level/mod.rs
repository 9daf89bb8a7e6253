//! Filtered dumps: which page frames a dump leaves out at a makedumpfile dump level.
//!
//! A big guest is mostly page cache, user memory and free pages, none of which a kernel
//! debugger needs. The kernel's own page array (`struct page` per frame, found through
//! VMCOREINFO and read through the kernel's page tables) says what each frame holds, so the
//! filter is computed in one pass before the dump is written, and the writers leave the
//! frames out as they copy: no second pass over RAM, no temporary unfiltered file.
//!
//! * [`DumpLevel`] — the bitmask (1 zero, 2 cache, 4 cache with private data, 8 user data,
//!   16 free).
//! * `page_array` — `struct page` and the section table, from VMCOREINFO.
//! * `classify` — makedumpfile's rules for one `struct page`.
//! * `scan` — the pass over the array (parallel, windowed: O(threads × window) memory).
//! * `frames` — the set of frames left out (one bit per frame of RAM).
//!
//! The page array is found the same way on every architecture: x86_64, i386 and arm64, whose
//! `struct page`s sit in its vmemmap, read through the kernel's TTBR1 tables like any kernel
//! address (`page_array`).
//!
//! **Frames and kernel pages.** Every set and count here is of 4 KiB frames
//! ([`frames::FRAME`]), the granule of the dump's ranges. A kernel with larger pages (arm64's
//! 16 and 64 KiB, its VMCOREINFO's `PAGESIZE`, in [`FilterReport::page_size`]) has one
//! `struct page` per kernel page, whose pfn is its physical address over that size: a verdict
//! covers all of the page's frames, a frame the kernel needs keeps its whole page, and the
//! zero-page pass leaves a page out only when all of its frames are zero. So each kernel
//! page's RAM frames are all in the set or all out of it: a writer that stores whole kernel
//! pages (a kdump file's blocks are the kernel's pages) leaves a page out exactly when its
//! first frame is out, and one that stores 4 KiB frames (ELF) leaves out the same bytes.
//!
//! The guest owns its page array, so it is not trusted to hurt the dump: frames the kernel
//! needs to be debugged (its page tables, the data its VMCOREINFO names, its VMCOREINFO note
//! and crash notes) are kept
//! whatever their `struct page` says ([`FilterReport::protected`]); frames whose `struct page`
//! cannot be read are kept and counted ([`FilterReport::unclassified`]); a level whose rules
//! the VMCOREINFO cannot support is an error, never a silently unfiltered dump.

mod classify;
pub(crate) mod frames;
mod level;
mod page_array;
mod scan;

pub use frames::FrameSet;
pub use level::DumpLevel;
pub use scan::{Excluded, WINDOW_PAGES};

use crate::addr::PhysRange;
use crate::format::arm64_layout::Arm64Layout;
use crate::format::vmcoreinfo::vmcoreinfo_entries;
use crate::paging::{translate, walk_with_tables, ModeKind, PageFlags, PagingMode, WalkLimits};
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::{Error, Result};
use page_array::{Machine, PageLayout, SectionTable};
use serde::Serialize;

/// The kernel whose page array decides: its page tables and VMCOREINFO.
#[derive(Clone, Copy, Debug)]
pub struct KernelPages<'a> {
    /// Walks the kernel's own tables (its `init_top_pgt`/`swapper_pg_dir`).
    pub mode: &'a PagingMode,
    /// Its VMCOREINFO text.
    pub vmcoreinfo: &'a [u8],
}

/// What a filter leaves out and keeps, in frames.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FilterReport {
    /// The dump level.
    pub level: u8,
    /// Frames of RAM (a frame partly RAM counts).
    pub ram_frames: u64,
    /// Frames left out, by reason.
    pub excluded: Excluded,
    /// Frames kept because their `struct page` could not be read (a section or a page-array
    /// piece that does not translate or is not RAM).
    pub unclassified: u64,
    /// Frames of the input that no section of the kernel covers (memory the kernel does not
    /// manage, such as firmware or device memory an ELF input holds): kept, as makedumpfile
    /// keeps them.
    pub outside_page_array: u64,
    /// Frames the page array marked for leaving out that the kernel needs (its page tables,
    /// the data VMCOREINFO names, its notes): kept.
    pub protected: u64,
    /// Free-page heads whose order is past the allocator's (hostile or corrupt): kept.
    pub bad_free_orders: u64,
    /// True when the page array was read (levels above 1, and level 1 when it is readable:
    /// hardware-poisoned and offline pages are left out at every level, as makedumpfile does).
    pub page_array: bool,
    /// Why the page array was not read for a level that can do without it.
    pub page_array_skipped: Option<String>,
    /// True when zero pages were looked for (ELF output at a level with bit 1; kdump output
    /// stores zero pages as one shared page instead, as makedumpfile does).
    pub zero_scanned: bool,
    /// Bytes of the kernel's page (4096 on x86; 4, 16 or 64 KiB on arm64, from its
    /// VMCOREINFO's `PAGESIZE`). Every count here is of 4 KiB frames, and each kernel page's
    /// RAM frames are all left out or all kept.
    pub page_size: u64,
}

impl FilterReport {
    /// Frames kept.
    pub fn kept(&self) -> u64 {
        self.ram_frames - self.excluded.total()
    }
}

/// The frames a dump at some level leaves out.
#[derive(Clone, Debug)]
pub struct PageFilter {
    excluded: FrameSet,
    report: FilterReport,
}

impl PageFilter {
    /// The frames left out.
    pub fn excluded(&self) -> &FrameSet {
        &self.excluded
    }
    /// The counts.
    pub fn report(&self) -> &FilterReport {
        &self.report
    }
    /// The level.
    pub fn level(&self) -> DumpLevel {
        DumpLevel::new(self.report.level).unwrap_or_default()
    }

    /// Also leaves out the all-zero frames among those kept, when the level has bit 1 (one
    /// parallel read of the kept frames). ELF writers need it before they plan the file;
    /// the kdump writer does not (zero pages share one stored page, as makedumpfile writes
    /// them).
    pub fn exclude_zero_pages<M: PhysMemory + ?Sized>(
        &mut self,
        mem: &M,
        progress: &dyn Progress,
    ) -> Result<()> {
        if !self.level().has(DumpLevel::ZERO) || self.report.zero_scanned {
            return Ok(());
        }
        let unit = (self.report.page_size / frames::FRAME).max(1);
        self.report.excluded.zero +=
            scan::mark_zero_frames(mem, &mut self.excluded, unit, progress)?;
        self.report.zero_scanned = true;
        Ok(())
    }
}

/// Computes the frames `level` leaves out of `mem`, reading `kernel`'s page array.
///
/// Levels with bits 2–16 need `kernel` and a VMCOREINFO that describes the page array; the
/// error says what is missing. Level 1 alone reads the page array when it can (for poisoned
/// and offline pages) and otherwise says why not in [`FilterReport::page_array_skipped`].
/// `keep` are physical ranges kept whatever the page array says (notes the caller knows of),
/// on top of the kernel's page tables and the data its VMCOREINFO names, found here.
pub fn page_filter<M: PhysMemory + ?Sized>(
    mem: &M,
    level: DumpLevel,
    kernel: Option<KernelPages<'_>>,
    keep: &[PhysRange],
    progress: &dyn Progress,
) -> Result<PageFilter> {
    let mut excluded = FrameSet::for_ram(mem.ram());
    let mut report = FilterReport {
        level: level.bits(),
        ram_frames: excluded.capacity(),
        page_size: kernel.as_ref().map_or(frames::FRAME, page_size),
        ..FilterReport::default()
    };
    if level.bits() == 0 {
        return Ok(PageFilter { excluded, report });
    }
    let needed = |why: String| Error::NoPageArray {
        level: level.bits(),
        why,
    };
    let prepared = match kernel {
        None => {
            Err("no Linux kernel's VMCOREINFO and page tables are known for this input".to_string())
        }
        Some(k) => prepare(k, level),
    };
    let (k, layout, table) = match prepared {
        Ok(p) => p,
        Err(why) if level.needs_page_array() => return Err(needed(why)),
        Err(why) => {
            report.page_array_skipped = Some(why);
            return Ok(PageFilter { excluded, report });
        }
    };
    // What the kernel needs stays, whatever its struct page says.
    let needs = || {
        let mut needs = FrameSet::for_ram(mem.ram());
        kernel_frames(mem, k.mode, k.vmcoreinfo, &mut needs);
        for r in keep {
            needs.insert(r.start / frames::FRAME, r.end.div_ceil(frames::FRAME));
        }
        needs
    };
    let c = scan::classify_ram(
        mem,
        k.mode,
        &layout,
        &table,
        level.bits(),
        needs,
        &mut excluded,
        progress,
    )?;
    report.page_array = true;
    report.excluded = c.excluded;
    report.unclassified = c.unclassified;
    report.bad_free_orders = c.bad_free_orders;
    report.protected = c.protected;
    report.outside_page_array = c.outside;
    Ok(PageFilter { excluded, report })
}

/// The bytes of `k`'s pages: arm64's `PAGESIZE` when it is one of its page sizes, else 4 KiB.
fn page_size(k: &KernelPages<'_>) -> u64 {
    machine(k).map_or(frames::FRAME, |m| 1 << m.page_shift())
}

/// The machine `k`'s page array belongs to (its page size and VA size from VMCOREINFO on
/// arm64).
fn machine(k: &KernelPages<'_>) -> std::result::Result<Machine, String> {
    if !k.mode.is_aarch64() {
        return Ok(if k.mode.is_long() {
            Machine::X86_64
        } else {
            Machine::I386 {
                pae: k.mode.kind == ModeKind::Pae,
            }
        });
    }
    let a = Arm64Layout::from_vmcoreinfo(k.vmcoreinfo).map_err(|e| e.to_string())?;
    let page_size = a
        .page_size
        .ok_or("VMCOREINFO has no PAGESIZE: the kernel's page size is not known")?;
    Ok(Machine::Arm64 {
        page_shift: page_size.trailing_zeros(),
        va_bits: a.va_bits,
        version: (a.version.0, a.version.1),
    })
}

/// The kernel pieces for a page-array pass, or why there are none.
fn prepare(
    k: KernelPages<'_>,
    level: DumpLevel,
) -> std::result::Result<(KernelPages<'_>, PageLayout, SectionTable), String> {
    let machine = machine(&k)?;
    let word = if k.mode.is_64bit() { 8 } else { 4 };
    let layout = PageLayout::from_vmcoreinfo(k.vmcoreinfo, word)?;
    if let Some(m) = layout.missing_for(level.bits()) {
        return Err(format!("its VMCOREINFO lacks {m}"));
    }
    let table = SectionTable::from_vmcoreinfo(k.vmcoreinfo, &layout, machine)?;
    Ok((k, layout, table))
}

/// Most bytes kept for the kallsyms tables (real ones are 1–3 MiB).
const MAX_KALLSYMS: u64 = 16 << 20;

/// Marks the frames the kernel needs to be debugged at all: every table of its page tables,
/// and the frames of every symbol its VMCOREINFO names (`init_uts_ns`, `swapper_pg_dir`, the
/// printk ring, `mem_section`, `node_data`, the kallsyms tables from first to last, …). These
/// are live data, never free, cache or user memory in a sound kernel, so keeping them changes
/// nothing there; a hostile page array cannot talk the filter out of them. (The image as a
/// whole is not kept: the kernel frees parts of it after boot, and reuses them.)
fn kernel_frames<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    vmcoreinfo: &[u8],
    out: &mut FrameSet,
) {
    use frames::FRAME;
    let mut tables: Vec<(u64, u64)> = Vec::new();
    let _ = walk_with_tables(
        mem,
        mode,
        WalkLimits::default(),
        |pa, len| tables.push((pa / FRAME, (pa + len).div_ceil(FRAME))),
        |_| Ok(()),
    );
    for (s, e) in tables {
        out.insert(s, e);
    }
    let mut keep_va = |va: u64| {
        if let Ok(t) = translate(mem, mode, va) {
            if !t.flags.contains(PageFlags::IO) {
                out.insert(t.paddr / FRAME, t.paddr / FRAME + 1);
            }
        }
    };
    let mut kallsyms = (u64::MAX, 0u64);
    for (key, value) in vmcoreinfo_entries(vmcoreinfo) {
        let Some(name) = key
            .strip_prefix("SYMBOL(")
            .and_then(|k| k.strip_suffix(')'))
        else {
            continue;
        };
        let Ok(va) = u64::from_str_radix(value.trim().trim_start_matches("0x"), 16) else {
            continue;
        };
        if name.starts_with("kallsyms_") {
            kallsyms = (kallsyms.0.min(va), kallsyms.1.max(va));
        }
        keep_va(va);
    }
    if kallsyms.0 < kallsyms.1 && kallsyms.1 - kallsyms.0 <= MAX_KALLSYMS {
        let mut va = kallsyms.0 & !(FRAME - 1);
        while va <= kallsyms.1 + FRAME {
            keep_va(va);
            va += FRAME;
        }
    }
}
