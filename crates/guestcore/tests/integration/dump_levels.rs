//! Dump levels on a guest built here: a 4-level kernel address space with a direct map, a
//! vmemmap page array, a SPARSEMEM_EXTREME section table and a VMCOREINFO that describes them.
//! Known `struct page`s give exact expected counts; hostile ones (every page "free", order 63,
//! section tables that point nowhere, missing VMCOREINFO) must give bounded, honest results.
//! (The real-guest suite checks the same filter against makedumpfile on real kernels.)

use guestcore::dump::kdump::{write_kdump, Compression, KdumpOptions, KdumpRequest};
use guestcore::dump::{plan_elf_core, DumpLayout, ElfClass, ElfDumpRequest, ElfMachine};
use guestcore::dump_level::{page_filter, DumpLevel, KernelPages};
use guestcore::paging::ModeKind;
use guestcore::paging::PagingMode;
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::{PhysMemory, VecMemory};
use guestcore::NoProgress;
use guestcore_testkit::builder::GuestBuilder;
use guestcore_testkit::geometry::MapFlags;
use std::time::Instant;

const RAM: u64 = 64 << 20;
const FRAMES: u64 = RAM / 4096;
const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
const SIZE_PAGE: u64 = 64;

/// The guest, and where its struct pages are (physical address of pfn 0's).
struct Kernel {
    mem: VecMemory,
    mode: PagingMode,
    vmcoreinfo: String,
    /// Frames of the page tables, the section table and the roots array.
    needed: Vec<u64>,
}

/// A `struct page` (6.1 x86_64 layout): flags, mapping, private, _mapcount, and the first
/// tail's compound_dtor/compound_order (offsets 16/17 of the next one). arm64's 6.1 has the
/// same layout (`dump_levels_arm64`).
pub(super) fn page(flags: u64, mapping: u64, mapcount: i32, private: u64) -> [u8; 64] {
    let mut p = [0u8; 64];
    p[0..8].copy_from_slice(&flags.to_le_bytes());
    p[24..32].copy_from_slice(&mapping.to_le_bytes());
    p[40..48].copy_from_slice(&private.to_le_bytes());
    p[48..52].copy_from_slice(&mapcount.to_le_bytes());
    p
}

const VMCOREINFO_PAGE: &str = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSIZE(page)=64\n\
OFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\nOFFSET(page.lru)=8\n\
OFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_dtor)=16\n\
OFFSET(page.compound_order)=17\nOFFSET(page.compound_head)=8\nLENGTH(zone.free_area)=11\n\
NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\n\
NUMBER(PG_slab)=9\nNUMBER(PG_hwpoison)=23\nNUMBER(PG_head_mask)=65536\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(HUGETLB_PAGE_DTOR)=2\n\
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=27\nNUMBER(MAX_PHYSMEM_BITS)=46\n";

/// Builds the guest; `pages(pfn)` gives each frame's struct page (`None`: an unused page).
fn kernel(pages: impl Fn(u64) -> Option<[u8; 64]>, roots_value: Option<u64>) -> Kernel {
    kernel_with(pages, roots_value, false)
}

/// [`kernel`], with the page array on one 2 MiB page of the vmemmap when `huge_array` (as real
/// kernels map it; RAM then starts at pfn 1, as on a PC), else on 4 KiB pages.
fn kernel_with(
    pages: impl Fn(u64) -> Option<[u8; 64]>,
    roots_value: Option<u64>,
    huge_array: bool,
) -> Kernel {
    let mut b = if huge_array {
        GuestBuilder::with_ram(ModeKind::Level4, &[(4096, RAM - 4096)])
    } else {
        GuestBuilder::new(ModeKind::Level4, RAM)
    };
    let rw = MapFlags::WRITE | MapFlags::NX | MapFlags::GLOBAL;
    b.map(DIRECT_MAP, 0, RAM, rw);
    let array_bytes = FRAMES * SIZE_PAGE;
    let array = if huge_array {
        // 2 MiB of frames at a 2 MiB boundary, mapped by one large page.
        let raw = b.alloc_frames(2 * (2 << 20) / 4096);
        let array = raw.next_multiple_of(2 << 20);
        b.map(VMEMMAP, array, 2 << 20, rw);
        array
    } else {
        let array = b.alloc_frames(array_bytes / 4096);
        b.map(VMEMMAP, array, array_bytes, rw);
        array
    };
    let roots = b.alloc_frame();
    let section = b.alloc_frame();
    b.write_u64(roots, roots_value.unwrap_or(DIRECT_MAP + section));
    b.write_u64(section, VMEMMAP | 0b11); // present, has mem_map; section 0 starts at pfn 0
    for pfn in 0..FRAMES {
        if let Some(p) = pages(pfn) {
            b.write_phys(array + pfn * SIZE_PAGE, &p);
        }
    }
    // Every frame the tables use: walk once with a recording sink.
    let cpu = b.cpu();
    let (mem, _) = {
        let (m, c) = b.build_vec();
        (m, c)
    };
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let mut needed = vec![roots / 4096];
    let _ = guestcore::paging::walk_with_tables(
        &mem,
        &mode,
        guestcore::paging::WalkLimits::default(),
        |pa, _| needed.push(pa / 4096),
        |_| Ok(()),
    );
    let vmcoreinfo = format!(
        "{VMCOREINFO_PAGE}SYMBOL(mem_section)={:x}\n",
        DIRECT_MAP + roots
    );
    Kernel {
        mem,
        mode,
        vmcoreinfo,
        needed,
    }
}

fn filter(k: &Kernel, level: u8) -> guestcore::Result<guestcore::dump_level::PageFilter> {
    filter_from(&k.mem, k, level)
}

/// [`filter`] reading the guest's memory through `mem`.
fn filter_from(
    mem: &dyn PhysMemory,
    k: &Kernel,
    level: u8,
) -> guestcore::Result<guestcore::dump_level::PageFilter> {
    page_filter(
        mem,
        DumpLevel::new(level).unwrap(),
        Some(KernelPages {
            mode: &k.mode,
            vmcoreinfo: k.vmcoreinfo.as_bytes(),
        }),
        &[],
        &NoProgress,
    )
}

const BUDDY: u64 = 8192;
const CACHE: u64 = 9216;
const ANON: u64 = 9300;
const HUGE: u64 = 10240;
const POISON: u64 = 11000;

/// A buddy block of order 10, 16 cache pages (8 with private data), 10 anonymous pages, a
/// hugetlb page of order 9 and a poisoned page.
fn known_pages(pfn: u64) -> Option<[u8; 64]> {
    let lru = 1 << 4;
    let file_mapping = DIRECT_MAP + 0x1234_0000;
    match pfn {
        BUDDY => Some(page(0, 0, -129, 10)),
        p if (CACHE..CACHE + 8).contains(&p) => Some(page(lru, file_mapping, -1, 0)),
        p if (CACHE + 8..CACHE + 16).contains(&p) => Some(page(lru | 1 << 13, file_mapping, -1, 0)),
        p if (ANON..ANON + 10).contains(&p) => Some(page(lru | 1 << 19, file_mapping | 1, 0, 0)),
        HUGE => Some(page(1 << 16, file_mapping, -1, 0)),
        p if p == HUGE + 1 => {
            let mut t = page(0, 0, -1, 0);
            t[8..16].copy_from_slice(&((DIRECT_MAP + 0x100) | 1).to_le_bytes());
            t[16] = 2; // HUGETLB_PAGE_DTOR
            t[17] = 9;
            Some(t)
        }
        POISON => Some(page(1 << 23, 0, -1, 0)),
        _ => Some(page(0, 0, -1, 0)),
    }
}

#[test]
fn each_level_leaves_out_what_its_rules_say() {
    let k = kernel(known_pages, None);
    let r = |level| filter(&k, level).unwrap().report().clone();
    let x = |level| r(level).excluded;
    assert_eq!(x(16).free, 1024);
    assert_eq!(
        (x(2).cache, x(2).cache_private),
        (8, 0),
        "private pages stay at level 2"
    );
    assert_eq!(x(4).cache + x(4).cache_private, 16);
    assert_eq!(x(4).cache_private, 8);
    assert_eq!(x(8).user, 10 + 512, "anonymous pages and the hugetlb page");
    for level in [1, 2, 8, 16, 31] {
        assert_eq!(x(level).hwpoison, 1, "poisoned pages go at every level");
    }
    let all = r(30);
    assert_eq!(all.excluded.total(), 1024 + 16 + 522 + 1);
    assert_eq!(all.kept(), FRAMES - all.excluded.total());
    assert_eq!(
        (all.unclassified, all.protected, all.outside_page_array),
        (0, 0, 0)
    );
    assert!(all.page_array && !all.zero_scanned);
    let f = filter(&k, 16).unwrap();
    assert!(f.excluded().contains(BUDDY + 1023) && !f.excluded().contains(BUDDY + 1024));
    let f = filter(&k, 8).unwrap();
    assert!(f.excluded().contains(HUGE + 511) && !f.excluded().contains(HUGE + 512));
    assert_eq!(r(0).excluded.total(), 0, "level 0 reads nothing");
}

/// A source that lends no slices, so every read of the page array is a copy.
struct Copied<'a>(&'a VecMemory);

impl PhysMemory for Copied<'_> {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> guestcore::Result<()> {
        self.0.read_at(addr, buf)
    }
    fn ram(&self) -> &guestcore::phys::RamMap {
        self.0.ram()
    }
}

#[test]
fn a_page_array_borrowed_from_the_source_classifies_as_one_copied() {
    // The array is read in windows of WINDOW_PAGES struct pages from the first RAM frame
    // (pfn 1): a hugetlb head of order 9 as the last struct page of the first window has its
    // first tail, which holds its order, in the next one.
    let head = guestcore::dump_level::WINDOW_PAGES;
    let pages = |pfn: u64| match pfn {
        p if p == head => known_pages(HUGE),
        p if p == head + 1 => known_pages(HUGE + 1),
        12288 => known_pages(BUDDY),
        p if p > head + 1 && p < 12288 => known_pages(0),
        p => known_pages(p),
    };
    let k = kernel_with(pages, None, true);
    for level in [8, 16, 31] {
        let borrowed = filter(&k, level).unwrap();
        let copied = filter_from(&Copied(&k.mem), &k, level).unwrap();
        assert_eq!(borrowed.report(), copied.report(), "level {level}");
        for pfn in 0..FRAMES {
            assert_eq!(
                borrowed.excluded().contains(pfn),
                copied.excluded().contains(pfn),
                "level {level}, pfn {pfn}"
            );
        }
    }
    let f = filter(&k, 8).unwrap();
    assert_eq!(f.report().excluded.user, 512, "{:?}", f.report());
    assert!(f.excluded().contains(head) && f.excluded().contains(head + 511));
    let f = filter(&k, 16).unwrap();
    assert_eq!(f.report().excluded.free, 1024);
    assert!(f.excluded().contains(12288 + 1023) && !f.excluded().contains(12288 + 1024));
}

#[test]
fn zero_pages_and_the_writers() {
    let k = kernel(known_pages, None);
    let mut f = filter(&k, 31).unwrap();
    f.exclude_zero_pages(&k.mem, &NoProgress).unwrap();
    let zero = f.report().excluded.zero;
    assert!(zero > FRAMES / 2, "most of this guest is zero: {zero}");
    for &n in &k.needed {
        assert!(!f.excluded().contains(n) || zero > 0, "tables are not zero");
    }
    // kdump: the level is recorded and the frames are absent from bitmap 2.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let req = KdumpRequest {
        vmcoreinfo: Some(k.vmcoreinfo.as_bytes()),
        excluded: Some(f.excluded()),
        dump_level: 31,
        ..KdumpRequest::new(&k.mem, Compression::Zlib)
    };
    let s = write_kdump(&req, &out, &KdumpOptions::default(), &NoProgress).unwrap();
    assert_eq!(s.dumped_pages, FRAMES - f.excluded().len());
    let file = KdumpFile::open(&out).unwrap();
    assert_eq!(file.info().dump_level, 31);
    assert_eq!(file.present_pages(), FRAMES);
    assert_eq!(file.dumped_pages(), s.dumped_pages);
    let mut b = [0u8; 8];
    assert!(
        file.read_at(BUDDY * 4096, &mut b).is_err(),
        "a left-out page does not read"
    );
    // ELF: each PT_LOAD holds kept data, the left-out frames after it only in p_memsz.
    let elf = ElfDumpRequest {
        memory: &k.mem,
        notes: &[],
        machine: ElfMachine::X86_64,
        class: ElfClass::Elf64,
        layout: DumpLayout::Physical,
        filter: None,
        excluded: Some(f.excluded()),
    };
    let plan = plan_elf_core(&elf).unwrap();
    assert_eq!(plan.data_bytes(), (FRAMES - f.excluded().len()) * 4096);
    let loads: Vec<_> = plan.segments().skip(1).collect();
    let covered: u64 = loads.iter().map(|s| s.memsz).sum();
    assert_eq!(covered, RAM, "the PT_LOADs still describe all RAM");
    assert!(loads.iter().all(|s| s.filesz <= s.memsz && s.offset != 0));
}

#[test]
fn a_page_array_that_calls_everything_free_cannot_take_the_kernel() {
    // Every struct page is a free block of order 10, so every frame would go.
    let k = kernel(|_| Some(page(0, 0, -129, 10)), None);
    let t = Instant::now();
    let f = filter(&k, 16).unwrap();
    assert!(t.elapsed().as_secs() < 10);
    let r = f.report();
    assert!(r.protected > 0, "{r:?}");
    for &n in &k.needed {
        assert!(
            !f.excluded().contains(n),
            "frame {n:#x} (tables/section table) kept"
        );
    }
    assert_eq!(r.kept(), FRAMES - r.excluded.free);
    assert!(r.kept() >= k.needed.len() as u64);
}

#[test]
fn order_63_and_bad_free_orders_are_bounded() {
    // pfn 0 is the head of an anonymous compound page of order 63; every free head claims order
    // 40 (past the allocator's 11).
    let k = kernel(
        |pfn| match pfn {
            0 => Some(page(1 << 16, 1, 0, 0)),
            1 => {
                let mut t = page(0, 0, 0, 0);
                t[17] = 63;
                Some(t)
            }
            p if p % 2 == 0 => Some(page(0, 0, -129, 40)),
            _ => Some(page(0, 0, -1, 0)),
        },
        None,
    );
    let t = Instant::now();
    let f = filter(&k, 31).unwrap();
    assert!(t.elapsed().as_secs() < 10);
    let r = f.report();
    // makedumpfile's rule: an order of 63 is below the word size and pfn 0 is aligned to it,
    // so the "page" covers all of RAM, except what the kernel needs.
    assert_eq!(r.excluded.user + r.protected, FRAMES);
    let k = kernel(|pfn| (pfn % 2 == 0).then(|| page(0, 0, -129, 40)), None);
    let r = filter(&k, 16).unwrap().report().clone();
    assert_eq!(r.excluded.free, 0);
    assert_eq!(r.bad_free_orders, FRAMES / 2, "counted, and the pages kept");
}

#[test]
fn section_tables_that_point_nowhere_leave_pages_unclassified() {
    // The root points at a kernel address that no table maps.
    let k = kernel(known_pages, Some(DIRECT_MAP + (1 << 40)));
    let r = filter(&k, 31).unwrap().report().clone();
    assert_eq!(r.unclassified, FRAMES);
    assert_eq!(r.excluded.total(), 0);
    // A root that is not a kernel address at all: no valid table, a clear error.
    let k = kernel(known_pages, Some(0x1000));
    let e = filter(&k, 31).unwrap_err().to_string();
    assert!(
        e.contains("page array") && e.contains("no valid present section"),
        "{e}"
    );
}

#[test]
fn missing_vmcoreinfo_is_an_error_for_the_levels_that_need_it() {
    let mut k = kernel(known_pages, None);
    k.vmcoreinfo = k
        .vmcoreinfo
        .replace("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n", "");
    let e = filter(&k, 16).unwrap_err().to_string();
    assert!(e.contains("PAGE_BUDDY_MAPCOUNT_VALUE"), "{e}");
    assert!(filter(&k, 8).is_ok(), "level 8 does not need it");
    // FLATMEM: named, not silently unfiltered.
    k.vmcoreinfo = k
        .vmcoreinfo
        .replace("SYMBOL(mem_section)", "SYMBOL(mem_map)");
    let e = filter(&k, 2).unwrap_err().to_string();
    assert!(e.contains("FLATMEM"), "{e}");
    // Level 1 works without any kernel, and says why it did not read a page array.
    let f = page_filter(&k.mem, DumpLevel::new(1).unwrap(), None, &[], &NoProgress).unwrap();
    assert!(!f.report().page_array && f.report().page_array_skipped.is_some());
    assert!(k.mem.ram().total() > 0);
}
