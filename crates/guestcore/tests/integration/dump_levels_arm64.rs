//! Dump levels on arm64 guests built here with 16 KiB and 64 KiB kernel pages: RAM at
//! `PHYS_OFFSET` (1 GiB, as on QEMU's `virt`), the linear map and the vmemmap in TTBR1's
//! tables, a SPARSEMEM_EXTREME section table whose roots are one kernel page, and an arm64
//! VMCOREINFO. A kernel page is 4 or 16 of the 4 KiB frames the filter counts: each must be
//! left out or kept whole, whether its page array, a frame the kernel needs, or the zero-page
//! pass decides. (The real-guest suite checks the same filter against drgn and makedumpfile's
//! rules on real arm64 kernels.)

use super::dump_levels::page;
use guestcore::dump_level::{page_filter, DumpLevel, KernelPages, PageFilter};
use guestcore::paging::PagingMode;
use guestcore::NoProgress;
use guestcore_testkit::aarch64::{desc, Aarch64Builder};
use guestcore_testkit::memory::SparseMemory;
use guestcore_testkit::random::Rng;

const RAM_START: u64 = 0x4000_0000;
const RAM: u64 = 64 << 20;
/// `PAGE_OFFSET` of a 48-bit kernel: the linear map, from `PHYS_OFFSET` on.
const LINEAR: u64 = 0xffff_0000_0000_0000;
const SIZE_PAGE: u64 = 64;

/// One kernel page size's geometry.
#[derive(Clone, Copy)]
struct Geo {
    granule: u64,
    /// `SECTION_SIZE_BITS` (Linux: 27 with 16 KiB pages, 29 with 64 KiB).
    section_bits: u32,
}

const G16: Geo = Geo {
    granule: 16384,
    section_bits: 27,
};
const G64: Geo = Geo {
    granule: 65536,
    section_bits: 29,
};

impl Geo {
    /// `VMEMMAP_START` with 48-bit VAs: `-(1 << (VA_BITS - (PAGE_SHIFT - 6)))`.
    fn vmemmap(self) -> u64 {
        u64::MAX << (48 - (self.granule.trailing_zeros() - 6))
    }
    /// The first pfn of RAM (pfns count from physical 0, not from `PHYS_OFFSET`).
    fn first_pfn(self) -> u64 {
        RAM_START / self.granule
    }
    fn pages(self) -> u64 {
        RAM / self.granule
    }
    /// Frames (4 KiB) per kernel page.
    fn unit(self) -> u64 {
        self.granule / 4096
    }
    /// The 4 KiB frames of kernel page `i`.
    fn frames(self, i: u64) -> std::ops::Range<u64> {
        (self.first_pfn() + i) * self.unit()..(self.first_pfn() + i + 1) * self.unit()
    }
}

const LRU: u64 = 1 << 4;
const HEAD: u64 = 1 << 16;
const FILE: u64 = LINEAR + 0x1234_0000;

/// Kernel pages by their index from the first pfn.
const FREE: u64 = 100; // an order-2 buddy block: 4 pages, 16 frames
const ANON: u64 = 200;
const CACHE: u64 = 300;
const NEEDED_ANON: u64 = 400; // anonymous, but a frame of it is one the caller keeps
const COMPOUND: u64 = 500; // an anonymous compound page of order 1
const PARTLY_ZERO: u64 = 600; // one of its four frames is not zero

fn known(g: Geo, i: u64) -> Option<[u8; 64]> {
    match i {
        FREE => Some(page(0, 0, -129, 2)),
        ANON | NEEDED_ANON => Some(page(LRU | 1 << 19, FILE | 1, 0, 0)),
        CACHE => Some(page(LRU, FILE, -1, 0)),
        COMPOUND => Some(page(HEAD, FILE | 1, 0, 0)),
        i if i == COMPOUND + 1 => {
            let mut t = page(0, 0, -1, 0);
            t[8..16].copy_from_slice(&((g.vmemmap() + COMPOUND * SIZE_PAGE) | 1).to_le_bytes());
            t[17] = 1; // compound_order
            Some(t)
        }
        _ => None,
    }
}

struct Kernel {
    mem: SparseMemory,
    mode: PagingMode,
    vmcoreinfo: String,
    /// Physical address of the page array.
    array: u64,
}

/// The guest: the struct pages of [`known`], data in the pages they name.
fn kernel(g: Geo) -> Kernel {
    let mut b = Aarch64Builder::new(
        g.granule,
        48,
        48,
        &[(RAM_START, RAM)],
        RAM_START + (32 << 20),
    );
    let rw = desc::PXN | desc::UXN;
    // The linear map, in level-2 blocks (32 MiB with 16 KiB pages, 512 MiB with 64 KiB).
    let block = g.granule * (g.granule / 8);
    for off in (0..RAM).step_by(block as usize) {
        b.map(LINEAR + off, RAM_START + off, block, rw);
    }
    // The page array: one struct page per kernel page, in the vmemmap.
    let array_pages = (g.pages() * SIZE_PAGE).div_ceil(g.granule);
    let array = b.alloc();
    for _ in 1..array_pages {
        b.alloc();
    }
    for i in 0..array_pages {
        b.map(
            g.vmemmap() + i * g.granule,
            array + i * g.granule,
            g.granule,
            rw,
        );
    }
    // mem_section: a pointer per root; root 0 holds RAM's section (8 or 2), a root being
    // one kernel page of 16-byte `struct mem_section`s.
    let roots = b.alloc();
    let root = b.alloc();
    let lin = |pa: u64| LINEAR + (pa - RAM_START);
    b.write_u64(roots, lin(root));
    let nr = RAM_START >> g.section_bits;
    let coded = g.vmemmap().wrapping_sub(g.first_pfn() * SIZE_PAGE);
    b.write_u64(root + nr * 16, coded | 0b11);
    let cpu = b.cpu();
    let mode = PagingMode::aarch64(&cpu).unwrap();
    let mut mem = b.into_memory();
    for i in 0..g.pages() {
        if let Some(p) = known(g, i) {
            mem.write(array + i * SIZE_PAGE, &p);
        }
    }
    // Data in every page the rules name, and in one frame of PARTLY_ZERO.
    for i in [FREE, ANON, CACHE, NEEDED_ANON, COMPOUND, COMPOUND + 1] {
        mem.write_u64(RAM_START + i * g.granule + 8, 0x5a5a);
    }
    mem.write_u64(RAM_START + PARTLY_ZERO * g.granule + 2 * 4096 + 16, 0x5a5a);
    let vmcoreinfo = format!(
        "OSRELEASE=6.1.0-test-arm64\nPAGESIZE={}\nNUMBER(VA_BITS)=48\n\
         NUMBER(kimage_voffset)=0xffff7fff00000000\nNUMBER(PHYS_OFFSET)=0x40000000\n\
         NUMBER(TCR_EL1_T1SZ)=0x10\nSIZE(page)=64\nOFFSET(page.flags)=0\n\
         OFFSET(page.mapping)=24\nOFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\n\
         OFFSET(page.private)=40\nOFFSET(page.compound_dtor)=16\n\
         OFFSET(page.compound_order)=17\nOFFSET(page.compound_head)=8\n\
         LENGTH(zone.free_area)=12\nNUMBER(PG_lru)=4\nNUMBER(PG_private)=13\n\
         NUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\nNUMBER(PG_slab)=9\n\
         NUMBER(PG_hwpoison)=22\nNUMBER(PG_head_mask)=65536\n\
         NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\
         SIZE(mem_section)=16\nOFFSET(mem_section.section_mem_map)=0\n\
         NUMBER(SECTION_SIZE_BITS)={}\nNUMBER(MAX_PHYSMEM_BITS)=48\nLENGTH(mem_section)={}\n\
         SYMBOL(mem_section)={:x}\n",
        g.granule,
        g.section_bits,
        (1u64 << (48 - g.section_bits)) / (g.granule / 16),
        lin(roots)
    );
    Kernel {
        mem,
        mode,
        vmcoreinfo,
        array,
    }
}

fn filter(
    k: &Kernel,
    vmcoreinfo: &str,
    level: u8,
    keep: &[guestcore::addr::PhysRange],
) -> guestcore::Result<PageFilter> {
    page_filter(
        &k.mem,
        DumpLevel::new(level).unwrap(),
        Some(KernelPages {
            mode: &k.mode,
            vmcoreinfo: vmcoreinfo.as_bytes(),
        }),
        keep,
        &NoProgress,
    )
}

/// Every left-out frame's kernel page is left out whole.
fn assert_whole_pages(g: Geo, f: &PageFilter) {
    let x = f.excluded();
    let unit = g.unit();
    for i in 0..g.pages() {
        let n = g.frames(i).filter(|&fr| x.contains(fr)).count() as u64;
        assert!(
            n == 0 || n == unit,
            "{} KiB kernel page {i}: {n} of its {unit} frames left out",
            g.granule >> 10
        );
    }
}

fn pages_are_classified_and_left_out_whole(g: Geo) {
    let k = kernel(g);
    let unit = g.unit();
    // A frame of NEEDED_ANON (its third) is one the caller keeps: the page stays whole.
    let needed = guestcore::addr::PhysRange::new(RAM_START + NEEDED_ANON * g.granule + 2 * 4096, 8);
    let f = filter(&k, &k.vmcoreinfo, 2 | 8 | 16, &[needed]).unwrap();
    let r = f.report();
    assert!(r.page_array, "{r:?}");
    assert_eq!(r.page_size, g.granule, "{r:?}");
    assert_eq!(r.ram_frames, RAM / 4096);
    assert_eq!(r.unclassified, 0, "{r:?}");
    assert_eq!(r.excluded.free, 4 * unit, "an order-2 block: {r:?}");
    assert_eq!(r.excluded.cache, unit, "{r:?}");
    assert_eq!(
        r.excluded.user,
        3 * unit,
        "ANON and the order-1 compound page: {r:?}"
    );
    assert_eq!(r.protected, unit, "the needed page, whole: {r:?}");
    let x = f.excluded();
    let want: Vec<u64> = [FREE, FREE + 1, FREE + 2, FREE + 3, ANON, CACHE]
        .into_iter()
        .chain([COMPOUND, COMPOUND + 1])
        .flat_map(|i| g.frames(i))
        .collect();
    let got: Vec<u64> = (0..g.pages())
        .flat_map(|i| g.frames(i))
        .filter(|&fr| x.contains(fr))
        .collect();
    assert_eq!(got, want, "{} KiB pages", g.granule >> 10);
    assert_whole_pages(g, &f);
}

#[test]
fn sixteen_kib_pages_are_classified_and_left_out_whole() {
    pages_are_classified_and_left_out_whole(G16);
}

#[test]
fn sixty_four_kib_pages_are_classified_and_left_out_whole() {
    pages_are_classified_and_left_out_whole(G64);
}

#[test]
fn zero_pages_are_whole_kernel_pages() {
    for g in [G16, G64] {
        let k = kernel(g);
        let mut f = filter(&k, &k.vmcoreinfo, 31, &[]).unwrap();
        f.exclude_zero_pages(&k.mem, &NoProgress).unwrap();
        let x = f.excluded();
        assert!(
            g.frames(PARTLY_ZERO).all(|fr| !x.contains(fr)),
            "a page with one non-zero frame is kept whole"
        );
        assert!(
            g.frames(PARTLY_ZERO + 1).all(|fr| x.contains(fr)),
            "an all-zero page is left out"
        );
        assert_whole_pages(g, &f);
        // Zero pages alone, too (level 1).
        let mut f = filter(&k, &k.vmcoreinfo, 1, &[]).unwrap();
        f.exclude_zero_pages(&k.mem, &NoProgress).unwrap();
        assert!(
            f.report().excluded.zero > RAM / 4096 / 2,
            "{:?}",
            f.report()
        );
        assert_whole_pages(g, &f);
    }
}

#[test]
fn a_page_size_that_is_not_arm64s_is_an_error_not_a_guess() {
    let k = kernel(G16);
    for (bad, says) in [
        ("PAGESIZE=16384\n", "PAGESIZE"),
        ("PAGESIZE=16384\n", "PAGESIZE=12288"),
        ("NUMBER(SECTION_SIZE_BITS)=27\n", "SECTION_SIZE_BITS 13"),
    ] {
        let text = match says {
            "PAGESIZE" => k.vmcoreinfo.replace(bad, ""),
            "PAGESIZE=12288" => k.vmcoreinfo.replace(bad, "PAGESIZE=12288\n"),
            _ => k.vmcoreinfo.replace(bad, "NUMBER(SECTION_SIZE_BITS)=13\n"),
        };
        assert_ne!(text, k.vmcoreinfo, "{says}: the text changed");
        let e = filter(&k, &text, 16, &[]).expect_err(says).to_string();
        let key = says.split(['=', ' ']).next().unwrap();
        assert!(e.contains(key), "{says}: {e}");
    }
    // A section whose struct pages lie below the kernel's half (VA_BITS 39 puts it at
    // 0xffff_ff80_…, above this vmemmap) is not believed: an error, not a filter.
    let text = k
        .vmcoreinfo
        .replace("NUMBER(VA_BITS)=48", "NUMBER(VA_BITS)=39");
    assert_ne!(text, k.vmcoreinfo);
    let e = filter(&k, &text, 16, &[])
        .expect_err("VA_BITS 39")
        .to_string();
    assert!(e.contains("no valid present section"), "{e}");
}

/// Hostile geometry and struct pages: a random page size, section and PA sizes, VA size,
/// `SIZE(mem_section)` and `LENGTH(mem_section)` in the VMCOREINFO, random bytes in the page
/// array. Every outcome is an error or a report whose counts add up, never a panic, and every
/// left-out frame's kernel page (of the size the report names) is left out whole.
#[test]
fn hostile_arm64_geometry_is_bounded() {
    let base = kernel(G16);
    let mut rng = Rng::new(28);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..40 {
        let mut k = Kernel {
            mem: base.mem.clone(),
            mode: base.mode.clone(),
            vmcoreinfo: String::new(),
            array: base.array,
        };
        // Random struct pages over a few windows of the array (flags, mapping, orders).
        for _ in 0..200 {
            let i = rng.below(G16.pages());
            let at = base.array + i * SIZE_PAGE;
            let b = rng.bytes(SIZE_PAGE as usize);
            k.mem.write(at, &b);
        }
        let page = rng.pick(&[16384u64, 16384, 16384, 4096, 65536, 12288, 0]);
        let mut text = base
            .vmcoreinfo
            .replace("PAGESIZE=16384", &format!("PAGESIZE={page}"));
        for (key, v) in [
            ("NUMBER(SECTION_SIZE_BITS)=27", rng.below(64)),
            ("NUMBER(MAX_PHYSMEM_BITS)=48", rng.below(64)),
            ("NUMBER(VA_BITS)=48", 30 + rng.below(30)),
            ("SIZE(mem_section)=16", rng.below(5000)),
            ("LENGTH(mem_section)=2048", rng.next_u64() % 100_000),
        ] {
            if rng.chance(15) {
                let name = key.split('=').next().unwrap();
                text = text.replace(key, &format!("{name}={v}"));
            }
        }
        k.vmcoreinfo = text;
        match filter(&k, &k.vmcoreinfo, 31, &[]) {
            Err(_) => refused += 1,
            Ok(mut f) => {
                ok += 1;
                f.exclude_zero_pages(&k.mem, &NoProgress).unwrap();
                let r = f.report().clone();
                assert!(
                    r.excluded.total() <= r.ram_frames && f.excluded().len() == r.excluded.total(),
                    "round {round}: {r:?}"
                );
                let g = Geo {
                    granule: r.page_size,
                    section_bits: 0,
                };
                assert_whole_pages(g, &f);
            }
        }
    }
    eprintln!("{ok} filtered, {refused} refused");
    assert!(ok > 0 && refused > 0, "{ok} filtered, {refused} refused");
}
