//! The kernel's page array (`struct page` per frame) as its VMCOREINFO describes it, and where
//! each memory section's part of it lies.
//!
//! Facts used (from the kernel's `crash_core`/`vmcoreinfo` exports and makedumpfile's
//! documentation of how it reads them):
//!
//! * SPARSEMEM splits physical memory into sections of `2^SECTION_SIZE_BITS` bytes.
//!   `SYMBOL(mem_section)` is the section table: with SPARSEMEM_EXTREME an array of pointers to
//!   *roots*, each a page of `struct mem_section` (`PAGE_SIZE / SIZE(mem_section)` of them);
//!   without it, the array of `struct mem_section` itself. Some kernels export the address of
//!   the pointer instead of its value, so an extreme table that does not validate is tried once
//!   more through that pointer.
//! * `section_mem_map` holds `mem_map − first_pfn` (in `struct page` units) in its high bits and
//!   flags in the low 5 (bit 0: present). So the `struct page` of pfn `p` in that section is at
//!   `(section_mem_map & ~0x1f) + p × SIZE(page)` (wrapping arithmetic).
//! * A pfn is a physical address over the *kernel's* page size (`PAGESIZE`): 4 KiB on x86,
//!   4, 16 or 64 KiB on arm64, where pfns count from physical address 0 (a `virt` board's RAM
//!   at `PHYS_OFFSET`, 1 GiB, starts at pfn 0x40000 with 4 KiB pages), not from
//!   `PHYS_OFFSET`. A root of an extreme table is one kernel page of `struct mem_section`s.
//! * arm64 keeps its `struct page`s in the vmemmap (`VMEMMAP_START`, mapped by the kernel's
//!   TTBR1 tables), and `section_mem_map` encodes addresses there like any SPARSEMEM_VMEMMAP
//!   kernel's: the section table is read the same way, through the kernel's own tables.
//! * `SECTION_SIZE_BITS` and `MAX_PHYSMEM_BITS` are exported since Linux 5.13 and 5.0 (both
//!   present on the Debian 6.1 and 6.12 kernels tested); missing, they take the kernel's own
//!   values: x86_64 27/46 (52 with 5-level paging), i386 26/32 (PAE 29/36); arm64 27 with 4
//!   or 16 KiB pages and 29 with 64 KiB from 5.12 (30 for every page size before), and
//!   `MAX_PHYSMEM_BITS` = `CONFIG_ARM64_PA_BITS`, taken as 52 for a 52-bit VA kernel and 48
//!   otherwise.
//!
//! Every value comes from the guest: offsets must lie inside `SIZE(page)`, sizes are bounded,
//! and a table that does not read is an error for the section, not for the dump.

use crate::format::vmcoreinfo::{
    vmcoreinfo_field, vmcoreinfo_get, vmcoreinfo_number, vmcoreinfo_symbol,
};
use crate::kernel::vread::{read_virt, uint_at};
use crate::paging::PagingMode;
use crate::phys::PhysMemory;

/// Low bits of `section_mem_map` that are flags, not address.
const SECTION_MAP_FLAG_BITS: u64 = 0x1f;
/// `SECTION_MARKED_PRESENT`.
const SECTION_PRESENT: u64 = 1;
/// The largest `struct page` accepted (real ones are 32–80 bytes).
const MAX_SIZE_PAGE: u64 = 1024;
/// log2 of the 4 KiB frames a dump's frame sets count in.
const FRAME_SHIFT: u32 = 12;

/// The machine a page array belongs to, as far as its geometry depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Machine {
    /// x86_64, 4- or 5-level paging (`NUMBER(pgtable_l5_enabled)`).
    X86_64,
    /// i386, with or without PAE.
    I386 {
        /// PAE paging.
        pae: bool,
    },
    /// arm64.
    Arm64 {
        /// log2 of the kernel's page size (`PAGESIZE`): 12, 14 or 16.
        page_shift: u32,
        /// `NUMBER(VA_BITS)`: the configured VA size.
        va_bits: u32,
        /// `OSRELEASE`'s (major, minor).
        version: (u32, u32),
    },
}

impl Machine {
    /// log2 of the kernel's page size.
    pub(super) fn page_shift(self) -> u32 {
        match self {
            Machine::Arm64 { page_shift, .. } => page_shift,
            _ => FRAME_SHIFT,
        }
    }

    /// The kernel's `SECTION_SIZE_BITS` and `MAX_PHYSMEM_BITS` when its VMCOREINFO does not
    /// say (see the module docs).
    fn default_bits(self, text: &[u8]) -> (i64, i64) {
        match self {
            Machine::X86_64 => (
                27,
                if vmcoreinfo_number(text, "pgtable_l5_enabled") == Some(1) {
                    52
                } else {
                    46
                },
            ),
            Machine::I386 { pae: true } => (29, 36),
            Machine::I386 { pae: false } => (26, 32),
            Machine::Arm64 {
                page_shift,
                va_bits,
                version,
            } => (
                match (version >= (5, 12), page_shift) {
                    (false, _) => 30,
                    (true, 16) => 29,
                    (true, _) => 27,
                },
                if va_bits == 52 { 52 } else { 48 },
            ),
        }
    }

    /// The lowest address of the kernel's half, where every `struct page` lies.
    fn kernel_start(self, text: &[u8]) -> u64 {
        match self {
            // 5-level paging starts it at 0xff00…, 4-level at 0xffff8….
            Machine::X86_64 if vmcoreinfo_number(text, "pgtable_l5_enabled") == Some(1) => {
                0xff00_0000_0000_0000
            }
            Machine::X86_64 => 0xffff_8000_0000_0000,
            Machine::I386 { .. } => 0xc000_0000,
            // TTBR1's half at the configured VA size; a smaller size in use lies inside it.
            Machine::Arm64 { va_bits, .. } => u64::MAX << va_bits,
        }
    }
}

/// What [`PageLayout`] knows of `struct page` and the page flags.
#[derive(Clone, Debug)]
pub(super) struct PageLayout {
    /// Bytes of the kernel's `unsigned long` (8 on x86_64, 4 on i386).
    pub word: usize,
    /// `SIZE(page)`.
    pub size_page: usize,
    pub(crate) off_flags: usize,
    pub(crate) off_mapping: Option<usize>,
    pub(crate) off_mapcount: Option<usize>,
    pub(crate) off_private: Option<usize>,
    pub(crate) off_compound_head: Option<usize>,
    /// Offset of the compound order in the *first tail page*, and its width (1 or 2 bytes).
    pub(crate) order_in_tail: Option<(usize, usize)>,
    /// Offset of the compound destructor id in the first tail page, and its width.
    pub(crate) dtor_in_tail: Option<(usize, usize)>,
    pub(crate) pg_lru: Option<u32>,
    pub(crate) pg_private: Option<u32>,
    pub(crate) pg_swapcache: Option<u32>,
    pub(crate) pg_swapbacked: Option<u32>,
    pub(crate) pg_slab: Option<u32>,
    pub(crate) pg_hwpoison: Option<u32>,
    pub(crate) pg_hugetlb: Option<u32>,
    pub(crate) pg_head_mask: u64,
    pub(crate) buddy_mapcount: Option<u32>,
    pub(crate) offline_mapcount: Option<u32>,
    pub(crate) slab_mapcount: Option<u32>,
    pub(crate) hugetlb_mapcount: Option<u32>,
    pub(crate) unaccepted_mapcount: Option<u32>,
    pub(crate) hugetlb_dtor: Option<u64>,
    /// `LENGTH(zone.free_area)`: buddy orders are below it.
    pub(crate) free_area_len: Option<u64>,
}

/// The kernel's section table.
#[derive(Clone, Debug)]
pub(super) struct SectionTable {
    mem_section: u64,
    size_mem_section: u64,
    off_section_mem_map: usize,
    /// `LENGTH(mem_section)`, when exported.
    length: Option<u64>,
    /// log2 of the kernel pages (pfns) per section.
    pub(crate) pfn_section_shift: u32,
    /// log2 of the kernel's page size.
    page_shift: u32,
    max_physmem_bits: u32,
    size_page: u64,
    word: usize,
    kernel_start: u64,
}

/// A bit number of the page flags, checked to be a bit of a word.
fn bit(text: &[u8], name: &str, word: usize) -> Option<u32> {
    vmcoreinfo_number(text, name)
        .filter(|b| (0..(word as i64) * 8).contains(b))
        .map(|b| b as u32)
}

/// A `*_MAPCOUNT_VALUE` as the 32-bit `_mapcount` holds it.
fn mapcount(text: &[u8], name: &str) -> Option<u32> {
    vmcoreinfo_number(text, name)
        .filter(|v| (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(v))
        .map(|v| v as u32)
}

/// (major, minor) of `OSRELEASE`.
fn kernel_version(text: &[u8]) -> Option<(u32, u32)> {
    let r = vmcoreinfo_get(text, "OSRELEASE")?;
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl PageLayout {
    /// Reads the layout, or names the first missing value every level needs.
    pub(super) fn from_vmcoreinfo(text: &[u8], word: usize) -> Result<Self, String> {
        let need = |kind: &str, name: &str, limit: u64| {
            vmcoreinfo_field(text, kind, name, limit)
                .ok_or_else(|| format!("VMCOREINFO has no {kind}({name})"))
        };
        let size_page = need("SIZE", "page", MAX_SIZE_PAGE + 1)?;
        if size_page < 2 * word as u64 {
            return Err(format!("SIZE(page) = {size_page} is too small"));
        }
        // An offset is usable only when a field of `width` bytes there lies inside the page.
        let off = |name: &str, width: usize| {
            vmcoreinfo_field(text, "OFFSET", name, size_page)
                .map(|o| o as usize)
                .filter(|o| o + width <= size_page as usize)
        };
        let off_flags = off("page.flags", word).ok_or("VMCOREINFO has no OFFSET(page.flags)")?;
        let version = kernel_version(text).unwrap_or((0, 0));
        let width = if version >= (4, 16) { 1 } else { 2 };
        // In the first tail page: folio fields are offsets from the head page.
        let in_tail = |folio: &str, page: &str| {
            vmcoreinfo_field(text, "OFFSET", folio, 2 * size_page)
                .and_then(|o| o.checked_sub(size_page))
                .map(|o| o as usize)
                .or_else(|| off(page, width))
                .filter(|o| o + width <= size_page as usize)
                .filter(|_| version >= (4, 4))
                .map(|o| (o, width))
        };
        Ok(PageLayout {
            word,
            size_page: size_page as usize,
            off_flags,
            off_mapping: off("page.mapping", word),
            off_mapcount: off("page._mapcount", 4),
            off_private: off("page.private", word),
            off_compound_head: off("page.compound_head", word),
            order_in_tail: in_tail("folio._folio_order", "page.compound_order"),
            dtor_in_tail: in_tail("folio._folio_dtor", "page.compound_dtor"),
            pg_lru: bit(text, "PG_lru", word),
            pg_private: bit(text, "PG_private", word),
            pg_swapcache: bit(text, "PG_swapcache", word),
            pg_swapbacked: bit(text, "PG_swapbacked", word),
            pg_slab: bit(text, "PG_slab", word),
            pg_hwpoison: bit(text, "PG_hwpoison", word),
            pg_hugetlb: bit(text, "PG_hugetlb", word),
            pg_head_mask: vmcoreinfo_number(text, "PG_head_mask").map_or(0, |m| m as u64),
            buddy_mapcount: mapcount(text, "PAGE_BUDDY_MAPCOUNT_VALUE"),
            offline_mapcount: mapcount(text, "PAGE_OFFLINE_MAPCOUNT_VALUE"),
            slab_mapcount: mapcount(text, "PAGE_SLAB_MAPCOUNT_VALUE"),
            hugetlb_mapcount: mapcount(text, "PAGE_HUGETLB_MAPCOUNT_VALUE"),
            unaccepted_mapcount: mapcount(text, "PAGE_UNACCEPTED_MAPCOUNT_VALUE"),
            hugetlb_dtor: vmcoreinfo_number(text, "HUGETLB_PAGE_DTOR").map(|d| d as u64),
            free_area_len: vmcoreinfo_field(text, "LENGTH", "zone.free_area", 64),
        })
    }

    /// Why this layout cannot classify pages for `bits` of a dump level (`None`: it can).
    pub(super) fn missing_for(&self, bits: u8) -> Option<String> {
        use super::DumpLevel as L;
        let mut missing = Vec::new();
        let mut need = |ok: bool, what: &str| {
            if !ok {
                missing.push(what.to_string());
            }
        };
        if bits & (L::CACHE | L::CACHE_PRIVATE) != 0 {
            need(self.pg_lru.is_some(), "NUMBER(PG_lru)");
            need(self.pg_private.is_some(), "NUMBER(PG_private)");
            need(self.pg_swapcache.is_some(), "NUMBER(PG_swapcache)");
        }
        if bits & (L::CACHE | L::CACHE_PRIVATE | L::USER) != 0 {
            need(self.off_mapping.is_some(), "OFFSET(page.mapping)");
            // Slab pages are flagged (PG_slab) up to 6.9, typed (`page_type`) from 6.10.
            need(
                self.pg_slab.is_some() || self.slab_mapcount.is_some(),
                "NUMBER(PG_slab) or NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",
            );
        }
        if bits & L::FREE != 0 {
            need(
                self.buddy_mapcount.is_some(),
                "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE) (free lists are not followed)",
            );
            need(self.off_mapcount.is_some(), "OFFSET(page._mapcount)");
            need(self.off_private.is_some(), "OFFSET(page.private)");
        }
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

/// Where one section's `struct page`s are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SectionMap {
    /// Section number.
    pub nr: u64,
    /// Virtual address of the `struct page` of pfn 0 as this section encodes it: the page of
    /// pfn `p` is at `base + p × SIZE(page)`.
    pub base: u64,
}

impl SectionTable {
    /// Reads the section table's description, or says why this kernel has none usable.
    pub(super) fn from_vmcoreinfo(
        text: &[u8],
        layout: &PageLayout,
        machine: Machine,
    ) -> Result<Self, String> {
        let mem_section = vmcoreinfo_symbol(text, "mem_section").ok_or_else(|| {
            if vmcoreinfo_symbol(text, "mem_map").is_some() {
                "the kernel uses FLATMEM (SYMBOL(mem_map), no SYMBOL(mem_section)), whose page array guestcore does not read".to_string()
            } else {
                "VMCOREINFO has no SYMBOL(mem_section): not a SPARSEMEM kernel".to_string()
            }
        })?;
        let size_mem_section = vmcoreinfo_field(text, "SIZE", "mem_section", 4097)
            .filter(|s| *s >= layout.word as u64)
            .ok_or("VMCOREINFO has no usable SIZE(mem_section)")?;
        let off_section_mem_map = vmcoreinfo_field(
            text,
            "OFFSET",
            "mem_section.section_mem_map",
            size_mem_section,
        )
        .filter(|o| o + layout.word as u64 <= size_mem_section)
        .ok_or("VMCOREINFO has no usable OFFSET(mem_section.section_mem_map)")?
            as usize;
        let page_shift = machine.page_shift();
        let (def_section, def_phys) = machine.default_bits(text);
        let section_size_bits = vmcoreinfo_number(text, "SECTION_SIZE_BITS").unwrap_or(def_section);
        let max_physmem_bits = vmcoreinfo_number(text, "MAX_PHYSMEM_BITS").unwrap_or(def_phys);
        if !(i64::from(page_shift) + 1..=40).contains(&section_size_bits)
            || !(section_size_bits..=52).contains(&max_physmem_bits)
        {
            return Err(format!(
                "SECTION_SIZE_BITS {section_size_bits} / MAX_PHYSMEM_BITS {max_physmem_bits} are not plausible for {} KiB pages",
                1 << (page_shift - 10)
            ));
        }
        Ok(SectionTable {
            mem_section,
            size_mem_section,
            off_section_mem_map,
            length: vmcoreinfo_field(text, "LENGTH", "mem_section", 1 << 32),
            pfn_section_shift: section_size_bits as u32 - page_shift,
            page_shift,
            max_physmem_bits: max_physmem_bits as u32,
            size_page: layout.size_page as u64,
            word: layout.word,
            kernel_start: machine.kernel_start(text),
        })
    }

    /// log2 of the 4 KiB frames in one kernel page (0 with 4 KiB pages, 2 with 16 KiB).
    pub(super) fn frame_shift(&self) -> u32 {
        self.page_shift - FRAME_SHIFT
    }

    /// `SECTIONS_PER_ROOT`: one kernel page of `struct mem_section`.
    fn per_root_extreme(&self) -> u64 {
        ((1u64 << self.page_shift) / self.size_mem_section).max(1)
    }

    /// True for SPARSEMEM_EXTREME (makedumpfile's test: `LENGTH(mem_section)` is the number of
    /// roots an extreme table has, or is not exported).
    fn extreme(&self) -> bool {
        let sections = 1u64 << (self.max_physmem_bits - self.pfn_section_shift - self.page_shift);
        match self.length {
            None => true,
            Some(l) => l == sections.div_ceil(self.per_root_extreme()),
        }
    }

    /// The mem_map base of every present section among `sections` (sorted section numbers),
    /// and the sections that could not be read (absent ones are in neither).
    pub(super) fn maps<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        mode: &PagingMode,
        sections: &[u64],
    ) -> Result<(Vec<SectionMap>, Vec<u64>), String> {
        if !self.extreme() {
            let mut out = Vec::new();
            let mut unread = Vec::new();
            for &nr in sections {
                let at = nr
                    .checked_mul(self.size_mem_section)
                    .and_then(|o| o.checked_add(self.mem_section));
                match at.and_then(|a| self.read_map(mem, mode, nr, a)) {
                    Some(Some(m)) => out.push(m),
                    Some(None) => {}
                    None => unread.push(nr),
                }
            }
            return Ok((out, unread));
        }
        // Try the symbol as the root array, then as a pointer to it. A table whose roots do
        // not read at all is not wrong, only unreadable: its sections stay unclassified.
        let first = self.extreme_maps(mem, mode, self.mem_section, sections);
        if let Some(r) = first.as_ref().filter(|(m, _)| !m.is_empty()) {
            return Ok(r.clone());
        }
        let mut b = [0u8; 8];
        let through_pointer = read_virt(mem, mode, self.mem_section, &mut b[..self.word])
            .ok()
            .and_then(|_| self.extreme_maps(mem, mode, u64::from_le_bytes(b), sections))
            .filter(|(m, _)| !m.is_empty());
        if let Some(r) = through_pointer {
            return Ok(r);
        }
        match first {
            Some(r) if !r.1.is_empty() => Ok(r),
            _ => Err(format!(
                "the section table at {:#x} has no valid present section",
                self.mem_section
            )),
        }
    }

    /// `Some((maps, unread))` when the root array at `roots` validates: every present
    /// section's mem_map is a kernel address.
    fn extreme_maps<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        mode: &PagingMode,
        roots: u64,
        sections: &[u64],
    ) -> Option<(Vec<SectionMap>, Vec<u64>)> {
        let per_root = self.per_root_extreme();
        let mut out = Vec::new();
        let mut unread = Vec::new();
        // (root number, root pointer, the root's page when it reads)
        let mut root_page: Option<(u64, u64, Option<Vec<u8>>)> = None;
        for &nr in sections {
            let root_nr = nr / per_root;
            if root_page.as_ref().map(|r| r.0) != Some(root_nr) {
                let mut b = [0u8; 8];
                let slot = root_nr.checked_mul(self.word as u64)?.checked_add(roots)?;
                read_virt(mem, mode, slot, &mut b[..self.word]).ok()?;
                let root = u64::from_le_bytes(b);
                if root != 0 && root < self.kernel_start {
                    return None;
                }
                let page = (root != 0).then(|| {
                    let mut p = vec![0u8; (per_root * self.size_mem_section) as usize];
                    read_virt(mem, mode, root, &mut p).ok().map(|_| p)
                });
                root_page = Some((root_nr, root, page.flatten()));
            }
            let page = match &root_page {
                Some((_, _, Some(page))) => page,
                Some((_, root, None)) => {
                    // An absent root (0) holds no section; one that does not read, unread ones.
                    if *root != 0 {
                        unread.push(nr);
                    }
                    continue;
                }
                None => continue,
            };
            let at = ((nr % per_root) * self.size_mem_section) as usize + self.off_section_mem_map;
            let map = uint_at(page, at, self.word)?;
            match self.decode(nr, map) {
                Some(Some(m)) => out.push(m),
                Some(None) => {}
                None => return None,
            }
        }
        Some((out, unread))
    }

    /// One non-extreme section at `at`: `None` unreadable, `Some(None)` absent.
    fn read_map<M: PhysMemory + ?Sized>(
        &self,
        mem: &M,
        mode: &PagingMode,
        nr: u64,
        at: u64,
    ) -> Option<Option<SectionMap>> {
        let mut b = [0u8; 8];
        read_virt(
            mem,
            mode,
            at.checked_add(self.off_section_mem_map as u64)?,
            &mut b[..self.word],
        )
        .ok()?;
        self.decode(nr, u64::from_le_bytes(b))
    }

    /// `Some(None)`: not present; `None`: present but not a kernel address (invalid table).
    fn decode(&self, nr: u64, map: u64) -> Option<Option<SectionMap>> {
        if map & SECTION_PRESENT == 0 {
            return Some(None);
        }
        let mask = if self.word == 8 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let coded = map & !SECTION_MAP_FLAG_BITS & mask;
        let first = (nr << self.pfn_section_shift).wrapping_mul(self.size_page);
        let mem_map = coded.wrapping_add(first) & mask;
        if mem_map < self.kernel_start {
            return None;
        }
        Some(Some(SectionMap { nr, base: coded }))
    }
}
