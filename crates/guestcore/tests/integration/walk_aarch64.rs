//! aarch64 EL1&0 stage-1 translation through the same walker and translator as x86: random
//! hostile table sets in every granule and VA size checked against the testkit's independent
//! reference (written from the Arm ARM), and one test per rule (blocks per level, reserved
//! descriptors, the contiguous hint, hierarchical attributes, 52-bit output addresses, EPDn,
//! loops between the halves, the MMU off, the VMCOREINFO-only kernel mode).

use guestcore::cpu::Aarch64CpuState;
use guestcore::mapping::MappingList;
use guestcore::paging::{
    translate, walk, Leaf, ModeKind, PageFlags, PagingMode, StopReason, WalkLimits, WalkReport,
};
use guestcore::phys::PhysMemory;
use guestcore_testkit::aarch64::{self as arm, desc, tcr, Aarch64Builder, RandomArmTables};
use guestcore_testkit::random::Rng;
use proptest::prelude::*;

const LIMITS: WalkLimits = WalkLimits {
    max_entries: 1 << 25,
    max_leaves: 1 << 20,
    max_mappings: 1 << 30,
};

fn leaves_of<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    limits: WalkLimits,
) -> (Vec<Leaf>, WalkReport) {
    let mut out = Vec::new();
    let report = walk(mem, mode, limits, |l| out.push(*l)).expect("a root in RAM");
    (out, report)
}

fn containing(leaves: &[Leaf], va: u64) -> Option<&Leaf> {
    let i = leaves.partition_point(|l| l.va <= va);
    let l = leaves.get(i.checked_sub(1)?)?;
    (va - l.va < l.size).then_some(l)
}

/// The reference and guestcore agree on `va` inside `leaf`.
fn agrees(mem: &impl PhysMemory, cpu: &Aarch64CpuState, leaf: &Leaf, va: u64) {
    let r = arm::translate(mem, cpu, va)
        .unwrap_or_else(|| panic!("leaf {leaf:x?}: reference says {va:#x} is unmapped"));
    assert_eq!(r.pa, leaf.pa + (va - leaf.va), "pa of {va:#x} in {leaf:x?}");
    assert_eq!(r.page_size, leaf.size, "size at {va:#x}");
    let f = leaf.flags;
    assert_eq!(
        (r.write, r.user, r.pxn, r.uxn, r.block),
        (
            f.contains(PageFlags::WRITE),
            f.contains(PageFlags::USER),
            f.contains(PageFlags::NX),
            f.contains(PageFlags::UXN),
            f.contains(PageFlags::LARGE)
        ),
        "flags at {va:#x}: reference {r:x?}, leaf {leaf:x?}"
    );
}

fn check(granule: u64, va_bits: u32, seed: u64, sample_seed: u64) {
    let t = RandomArmTables::generate(granule, va_bits, seed);
    let (mem, cpu) = (&t.memory, &t.cpu);
    let mode = PagingMode::aarch64(cpu).unwrap();
    assert_eq!(mode.kind, ModeKind::Aarch64);
    let mut leaves = Vec::new();
    let report = match walk(mem, &mode, LIMITS, |l| leaves.push(*l)) {
        Ok(r) => r,
        Err(e) => {
            // Only when no enabled half has a root in RAM, which the reference sees too.
            for va in [0x1000, u64::MAX - 0xfff] {
                assert_eq!(arm::translate(mem, cpu, va), None, "{e}");
            }
            return;
        }
    };
    assert_eq!(report.leaves, leaves.len() as u64);
    let complete = report.stopped.is_none();
    for w in leaves.windows(2) {
        assert!(
            w[0].va.checked_add(w[0].size).is_some_and(|e| e <= w[1].va),
            "leaves out of order or overlapping: {:x?} {:x?}",
            w[0],
            w[1]
        );
    }
    let mut rng = Rng::new(sample_seed);
    for l in leaves.iter().take(200) {
        agrees(mem, cpu, l, l.va);
        agrees(mem, cpu, l, l.va + (l.size - 1));
        agrees(mem, cpu, l, l.va + rng.below(l.size));
    }
    if complete {
        let (list, _) = MappingList::from_walk(mem, &mode, LIMITS).unwrap();
        let leaf_bytes: u64 = leaves.iter().map(|l| l.size).sum();
        let map_bytes: u64 = list.as_slice().iter().map(|m| m.size).sum();
        assert_eq!(
            map_bytes, leaf_bytes,
            "merging must neither add nor drop bytes"
        );
    }
    let mut vas: Vec<u64> = (0..300).map(|_| t.random_va(&mut rng)).collect();
    for _ in 0..100 {
        if let Some(l) = leaves.get(rng.below(leaves.len().max(1) as u64) as usize) {
            vas.push(l.va + rng.below(l.size));
        }
    }
    for va in vas {
        let r = arm::translate(mem, cpu, va);
        let tr = translate(mem, &mode, va);
        let leaf = containing(&leaves, va);
        match r {
            None => {
                assert!(
                    leaf.is_none(),
                    "{va:#x}: reference unmapped, walk has {leaf:x?}"
                );
                assert!(
                    tr.is_err(),
                    "{va:#x}: reference unmapped, translate {tr:x?}"
                );
            }
            Some(r) => {
                let tr = tr.unwrap_or_else(|e| panic!("{va:#x} -> {r:x?}: translate: {e}"));
                assert_eq!(
                    (tr.paddr, tr.page_size),
                    (r.pa, r.page_size),
                    "translate of {va:#x}"
                );
                let f = tr.flags;
                assert_eq!(
                    (r.write, r.user, r.pxn, r.uxn, r.block),
                    (
                        f.contains(PageFlags::WRITE),
                        f.contains(PageFlags::USER),
                        f.contains(PageFlags::NX),
                        f.contains(PageFlags::UXN),
                        f.contains(PageFlags::LARGE)
                    ),
                    "translate flags of {va:#x}"
                );
                if complete {
                    let leaf =
                        leaf.unwrap_or_else(|| panic!("{va:#x} -> {r:x?} missing from walk"));
                    agrees(mem, cpu, leaf, va);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn granule_4k_matches_reference(seed: u64, sample: u64, v in 0usize..5) {
        check(4096, [39, 42, 47, 48, 52][v], seed, sample);
    }

    #[test]
    fn granule_16k_matches_reference(seed: u64, sample: u64, v in 0usize..5) {
        check(16384, [39, 42, 47, 48, 52][v], seed, sample);
    }

    #[test]
    fn granule_64k_matches_reference(seed: u64, sample: u64, v in 0usize..5) {
        check(65536, [39, 42, 47, 48, 52][v], seed, sample);
    }
}

const RAM: [(u64, u64); 1] = [(0x4000_0000, 0x400_0000)];

fn built(b: &Aarch64Builder) -> (guestcore_testkit::SparseMemory, Aarch64CpuState, PagingMode) {
    let cpu = b.cpu();
    let mode = PagingMode::aarch64(&cpu).unwrap();
    (b.memory().clone(), cpu, mode)
}

fn high(va_bits: u32, off: u64) -> u64 {
    !((1u64 << va_bits) - 1) | off
}

#[test]
fn blocks_at_every_level_that_allows_them() {
    // (granule, VA bits, PA bits, block size): 4K L1/L2 and L0 with DS; 16K L2 and L1 with DS;
    // 64K L2 and L1 with a 52-bit PA.
    for (g, va_bits, pa, size) in [
        (4096u64, 48u32, 48u32, 1u64 << 30),
        (4096, 48, 48, 1 << 21),
        (4096, 52, 52, 1 << 39),
        (16384, 47, 48, 1 << 25),
        (16384, 52, 52, 1 << 36),
        (65536, 48, 48, 1 << 29),
        (65536, 52, 52, 1 << 42),
    ] {
        let mut b = Aarch64Builder::new(g, va_bits, pa, &RAM, 0x4000_0000);
        let va = high(va_bits, 3 * size);
        let pa_out = 5 * size;
        b.map(va, pa_out, size, desc::UXN);
        let (mem, cpu, mode) = built(&b);
        let (leaves, report) = leaves_of(&mem, &mode, LIMITS);
        assert_eq!(report.reserved_entries, 0, "{g} {size:#x}");
        assert_eq!(leaves.len(), 1, "{g} {size:#x}: {leaves:x?}");
        let l = leaves[0];
        assert_eq!((l.va, l.pa, l.size), (va, pa_out, size), "{g}");
        assert!(l
            .flags
            .contains(PageFlags::LARGE | PageFlags::UXN | PageFlags::IO));
        agrees(&mem, &cpu, &l, va + (size - 1));
        let t = translate(&mem, &mode, va + 0x1234).unwrap();
        assert_eq!((t.paddr, t.page_size), (pa_out + 0x1234, size));
    }
}

#[test]
fn blocks_where_not_allowed_and_reserved_level_3_type_are_reserved() {
    // 4K L0 without DS, 16K L1 without DS, 64K L1 below a 52-bit PA, a level-3 block (type 01).
    for (g, va_bits, level) in [
        (4096u64, 48u32, 0),
        (16384, 47, 1),
        (65536, 48, 1),
        (4096, 39, 3),
        (65536, 42, 3),
    ] {
        let mut b = Aarch64Builder::new(g, va_bits, 48, &RAM, 0x4000_0000);
        let va = high(va_bits, 0);
        let at = b.entry_addr(va, level).unwrap();
        b.write_u64(at, 0x4000_0000 | desc::AF | desc::VALID);
        let (mem, cpu, mode) = built(&b);
        let (leaves, report) = leaves_of(&mem, &mode, LIMITS);
        assert!(leaves.is_empty(), "{g} L{level}: {leaves:x?}");
        assert_eq!(report.reserved_entries, 1, "{g} L{level}");
        let e = translate(&mem, &mode, va).unwrap_err().to_string();
        assert!(
            e.contains(&format!("L{level} entry")) && e.contains("reserved"),
            "{e}"
        );
        assert_eq!(arm::translate(&mem, &cpu, va), None);
    }
}

#[test]
fn contiguous_hint_translates_each_page() {
    let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
    let base = high(48, 0x10_0000);
    // Sixteen pages marked contiguous whose output addresses are not: each keeps its own.
    for i in 0..16u64 {
        b.map(
            base + i * 4096,
            0x4100_0000 + (15 - i) * 0x3000,
            4096,
            desc::CONT,
        );
    }
    let (mem, cpu, mode) = built(&b);
    let (leaves, _) = leaves_of(&mem, &mode, LIMITS);
    assert_eq!(leaves.len(), 16);
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(
            (l.va, l.pa, l.size),
            (
                base + i as u64 * 4096,
                0x4100_0000 + (15 - i as u64) * 0x3000,
                4096
            )
        );
        agrees(&mem, &cpu, l, l.va + 7);
    }
}

#[test]
fn table_attributes_are_inherited_unless_hpd() {
    for hpd in [false, true] {
        let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
        if hpd {
            b.tcr_extra = tcr::HPD0;
        }
        // Four pages under one L2 table: the L1 table descriptor above them says read-only, no
        // EL0, PXN and UXN; the pages themselves allow everything.
        for i in 0..4u64 {
            b.map(
                0x20_0000 + i * 4096,
                0x4200_0000 + i * 4096,
                4096,
                desc::AP_EL0,
            );
        }
        b.table_attrs(
            0x20_0000,
            1,
            desc::AP_TABLE_RO | desc::AP_TABLE_EL0 | desc::PXN_TABLE | desc::UXN_TABLE,
        );
        let (mem, cpu, mode) = built(&b);
        let (leaves, _) = leaves_of(&mem, &mode, LIMITS);
        assert_eq!(leaves.len(), 4);
        for l in &leaves {
            let all = PageFlags::WRITE | PageFlags::USER;
            let never = PageFlags::NX | PageFlags::UXN;
            if hpd {
                assert!(
                    l.flags.contains(all) && !l.flags.intersects(never),
                    "{l:x?}"
                );
            } else {
                assert!(
                    !l.flags.intersects(all) && l.flags.contains(never),
                    "{l:x?}"
                );
            }
            agrees(&mem, &cpu, l, l.va);
        }
        assert!(leaves[0]
            .flags
            .contains(PageFlags::ACCESSED | PageFlags::GLOBAL));
    }
}

#[test]
fn leaf_permissions_and_bits() {
    let mut b = Aarch64Builder::new(16384, 48, 48, &RAM, 0x4000_0000);
    let va = 0x4000;
    b.map(va, 0x4300_0000, 16384, desc::AP_RO | desc::NG | desc::PXN);
    b.map(
        2 * va,
        0x4300_4000,
        16384,
        desc::DBM | desc::UXN | desc::AP_EL0,
    );
    let (mem, _, mode) = built(&b);
    let (leaves, _) = leaves_of(&mem, &mode, LIMITS);
    let f: Vec<PageFlags> = leaves.iter().map(|l| l.flags).collect();
    assert_eq!(
        f[0],
        PageFlags::ACCESSED | PageFlags::NX,
        "read-only, not global, kernel-only, PXN: {:?}",
        f[0]
    );
    assert_eq!(
        f[1],
        PageFlags::ACCESSED
            | PageFlags::GLOBAL
            | PageFlags::WRITE
            | PageFlags::USER
            | PageFlags::DIRTY
            | PageFlags::UXN
    );
    assert_eq!(f[1].tlb_string(), "E-G-DA--UW");
    assert_eq!(f[1].mem_string(), "urwxE");
    assert_eq!(f[0].tlb_string(), "X---A----");
}

#[test]
fn lpa_and_lpa2_output_addresses() {
    // Tables above 2^48 (TTBR BADDR[51:48] in bits 5:2, table descriptors' high bits) and a
    // page at a 52-bit output address, in LPA (64K) and LPA2 (4K with DS) formats.
    let ram = [(0x000f_0000_0000_0000u64, 0x100_0000u64)];
    for g in [65536u64, 4096, 16384] {
        let mut b = Aarch64Builder::new(g, 52, 52, &ram, 0x000f_0000_0000_0000);
        let va = high(52, 0x4_0000_0000);
        let pa = 0x000a_bcde_0000_0000 | (7 * g);
        b.map(va, pa, g, 0);
        b.map(5 * g, 0x000f_0000_0080_0000, g, desc::AP_EL0);
        let (mem, cpu, mode) = built(&b);
        assert!(mode.aarch64.as_ref().unwrap().high.as_ref().unwrap().root >> 48 == 0xf);
        let (leaves, report) = leaves_of(&mem, &mode, LIMITS);
        assert_eq!(report.tables_outside_ram, 0, "{g}");
        let got: Vec<(u64, u64)> = leaves.iter().map(|l| (l.va, l.pa)).collect();
        assert_eq!(got, vec![(5 * g, 0x000f_0000_0080_0000), (va, pa)], "{g}");
        for l in &leaves {
            agrees(&mem, &cpu, l, l.va + 1);
        }
        let t = translate(&mem, &mode, va + 9).unwrap();
        assert_eq!(t.paddr, pa + 9);
        assert_eq!(
            t.steps.first().map(|s| s.level),
            Some(if g == 4096 {
                "L-1"
            } else if g == 16384 {
                "L0"
            } else {
                "L1"
            })
        );
    }
}

#[test]
fn output_addresses_masked_to_the_pa_size() {
    let mut b = Aarch64Builder::new(4096, 39, 40, &RAM, 0x4000_0000);
    b.map(0x1000, 0xab00_4000_2000, 4096, 0);
    let (mem, _, mode) = built(&b);
    let (leaves, _) = leaves_of(&mem, &mode, LIMITS);
    assert_eq!(
        leaves[0].pa, 0x00_4000_2000,
        "bits 47:40 dropped with a 40-bit PA"
    );
}

#[test]
fn epd_disables_a_half() {
    for (extra, low_left) in [(tcr::EPD0, false), (tcr::EPD1, true)] {
        let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
        b.map(0x1000, 0x4400_0000, 4096, 0);
        b.map(high(48, 0x1000), 0x4400_1000, 4096, 0);
        b.tcr_extra = extra;
        let mut cpu = b.cpu();
        if low_left {
            cpu.ttbr1_el1 = None; // a disabled half needs no register
        } else {
            cpu.ttbr0_el1 = None;
        }
        let mode = PagingMode::aarch64(&cpu).unwrap();
        let mem = b.memory();
        let (leaves, _) = leaves_of(mem, &mode, LIMITS);
        let want = if low_left { 0x1000 } else { high(48, 0x1000) };
        assert_eq!(leaves.iter().map(|l| l.va).collect::<Vec<_>>(), vec![want]);
        let gone = if low_left { high(48, 0x1000) } else { 0x1000 };
        let e = translate(mem, &mode, gone).unwrap_err().to_string();
        assert!(e.contains("EPD"), "{e}");
        assert_eq!(arm::translate(mem, &cpu, gone), None);
    }
    // Both halves disabled: an empty walk, not an error.
    let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
    b.tcr_extra = tcr::EPD0 | tcr::EPD1;
    let (mem, _, mode) = built(&b);
    let (leaves, report) = leaves_of(&mem, &mode, LIMITS);
    assert_eq!((leaves.len(), report.entries_visited), (0, 0));
}

#[test]
fn loops_between_the_halves_are_bounded() {
    // Every entry of each root points at the other root: TTBR0 → TTBR1 → TTBR0 … down to
    // level 3, where the entries are pages (so the roots are mapped many times over).
    let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
    let (r0, r1) = (b.root(0), b.root(1));
    for i in 0..512 {
        b.write_u64(r0 + i * 8, r1 | 3);
        b.write_u64(r1 + i * 8, r0 | 3);
    }
    let (mem, cpu, mode) = built(&b);
    let small = WalkLimits {
        max_entries: 1 << 16,
        ..WalkLimits::default()
    };
    let (_, report) = leaves_of(&mem, &mode, small);
    assert_eq!(report.stopped, Some(StopReason::EntryLimit), "{report:?}");
    assert!(
        report.self_references > 0 && report.loop_leaves > 0,
        "{report:?}"
    );
    // A leaf budget stops it too (the fuzz target runs the default budget).
    let leaves_cap = WalkLimits {
        max_leaves: 1 << 14,
        ..WalkLimits::default()
    };
    let mut n = 0u64;
    let report = walk(&mem, &mode, leaves_cap, |_| n += 1).unwrap();
    assert_eq!(report.stopped, Some(StopReason::LeafLimit), "{report:?}");
    assert_eq!(n, 1 << 14);
    // translate follows one path: bounded by the level count.
    let tr = translate(&mem, &mode, high(48, 0x1234_5678)).unwrap();
    assert_eq!(tr.steps.len(), 4);
    assert_eq!(
        Some(tr.paddr),
        arm::translate(&mem, &cpu, high(48, 0x1234_5678)).map(|r| r.pa)
    );
}

#[test]
fn mmu_off_is_the_physical_view() {
    let mut cpu = Aarch64CpuState::new(0);
    cpu.sctlr_el1 = Some(0x30d0_0980);
    cpu.id_aa64mmfr0_el1 = Some(5);
    let mode = PagingMode::aarch64(&cpu).unwrap();
    assert_eq!((mode.kind, mode.va_bits()), (ModeKind::Off, 48));
    let mem =
        guestcore_testkit::SparseMemory::new(&[(0x4000_0000, 0x1000), (0x10_0000_0000, 0x2000)]);
    let (leaves, _) = leaves_of(&mem, &mode, LIMITS);
    let got: Vec<(u64, u64)> = leaves.iter().map(|l| (l.va, l.size)).collect();
    assert_eq!(
        got,
        vec![(0x4000_0000, 0x1000), (0x10_0000_0000, 0x2000)],
        "RAM above 4 GiB too"
    );
    assert_eq!(
        translate(&mem, &mode, 0x10_0000_0010).unwrap().paddr,
        0x10_0000_0010
    );
    assert!(translate(&mem, &mode, 1 << 48).is_err());
}

#[test]
fn kernel_mode_from_vmcoreinfo_facts() {
    for (g, va_bits) in [(4096u64, 48u32), (16384, 47), (65536, 42), (4096, 52)] {
        let pa = if va_bits == 52 { 52 } else { 48 };
        let mut b = Aarch64Builder::new(g, va_bits, pa, &RAM, 0x4000_0000);
        b.map(high(va_bits, 0x10 * g), 0x4500_0000, g, desc::UXN);
        b.map(0x10 * g, 0x4500_0000 + g, g, 0);
        let (mem, _, full) = built(&b);
        let kernel = PagingMode::aarch64_kernel(b.root(1), va_bits, g, pa).unwrap();
        assert!(kernel.aarch64.as_ref().unwrap().low.is_none());
        let (k, _) = leaves_of(&mem, &kernel, LIMITS);
        let (all, _) = leaves_of(&mem, &full, LIMITS);
        assert_eq!(all.len(), 2);
        assert_eq!(k, all[1..].to_vec(), "{g} {va_bits}: the kernel half alone");
    }
    let e = PagingMode::aarch64_kernel(0x4000_0000, 48, 8192, 48).unwrap_err();
    assert!(e.to_string().contains("8192"), "{e}");
}

#[test]
fn missing_registers_are_named() {
    let mut cpu = Aarch64CpuState::new(2);
    cpu.sctlr_el1 = Some(1);
    let e = PagingMode::aarch64(&cpu).unwrap_err().to_string();
    assert!(e.contains("TTBR0_EL1, TTBR1_EL1, TCR_EL1"), "{e}");
    cpu.tcr_el1 = Some(8 | 16 << 16 | 2 << 30); // T0SZ=8
    cpu.ttbr0_el1 = Some(0);
    cpu.ttbr1_el1 = Some(0);
    let e = PagingMode::aarch64(&cpu).unwrap_err().to_string();
    assert!(e.contains("T0SZ=8"), "{e}");
}

#[test]
fn random_sets_exercise_every_case() {
    // The generator must reach what the property tests claim to check: leaves of both halves,
    // blocks, reserved descriptors, loops, tables outside RAM.
    for g in [4096u64, 16384, 65536] {
        let (mut low, mut high_half, mut blocks, mut reserved, mut loops) = (0, 0, 0, 0, 0);
        for seed in 0..40 {
            let t = RandomArmTables::generate(g, 48, seed);
            let Ok(mode) = PagingMode::aarch64(&t.cpu) else {
                continue;
            };
            let mut leaves = Vec::new();
            let Ok(r) = walk(&t.memory, &mode, LIMITS, |l| leaves.push(*l)) else {
                continue;
            };
            low += leaves.iter().filter(|l| l.va >> 63 == 0).count();
            high_half += leaves.iter().filter(|l| l.va >> 63 == 1).count();
            blocks += leaves
                .iter()
                .filter(|l| l.flags.contains(PageFlags::LARGE))
                .count();
            reserved += r.reserved_entries;
            loops += r.self_references;
        }
        assert!(
            low > 0 && high_half > 0 && blocks > 0 && reserved > 0 && loops > 0,
            "{g}: low {low} high {high_half} blocks {blocks} reserved {reserved} loops {loops}"
        );
    }
}

#[test]
fn halves_may_differ_in_granule_and_size() {
    // TTBR1: 4 KiB granule, 48 bits (the builder's). TTBR0: 64 KiB granule, T0SZ=22 (42 bits:
    // an 8192-entry level-2 root and level-3 tables), written by hand.
    let mut b = Aarch64Builder::new(4096, 48, 48, &RAM, 0x4000_0000);
    b.map(high(48, 0x2000), 0x4100_0000, 4096, desc::UXN);
    let mut frames: Vec<u64> = (0..48).map(|_| b.alloc()).collect();
    frames.retain(|f| f % 0x1_0000 == 0);
    let (l2, l3) = (frames[0], frames[1]);
    // VA 0x2_4001_0000: L2 index 0x2_4001_0000 >> 29 = 18, L3 index (va >> 16) & 0x1fff = 1.
    let va = 0x2_4001_0000u64;
    b.write_u64(l2 + 18 * 8, l3 | 3);
    b.write_u64(
        l3 + 8,
        0x4120_0000 | desc::AF | desc::AP_EL0 | desc::PXN | 3,
    );
    // A 512 MiB block at L2 index 1.
    b.write_u64(l2 + 8, 0x6000_0000 | desc::AF | 1);
    let mut cpu = b.cpu();
    let t = cpu.tcr_el1.unwrap() & !0xc03f; // clear T0SZ and TG0
    cpu.tcr_el1 = Some(t | 22 | 1 << 14);
    cpu.ttbr0_el1 = Some(l2);
    let mode = PagingMode::aarch64(&cpu).unwrap();
    let mem = b.memory();
    let (leaves, report) = leaves_of(mem, &mode, LIMITS);
    assert_eq!(report.reserved_entries, 0);
    let got: Vec<(u64, u64, u64)> = leaves.iter().map(|l| (l.va, l.pa, l.size)).collect();
    assert_eq!(
        got,
        vec![
            (1 << 29, 0x6000_0000, 1 << 29),
            (va, 0x4120_0000, 0x1_0000),
            (high(48, 0x2000), 0x4100_0000, 4096)
        ]
    );
    for l in &leaves {
        agrees(mem, &cpu, l, l.va + (l.size - 1));
    }
    let tr = translate(mem, &mode, va + 0x1234).unwrap();
    let names: Vec<&str> = tr.steps.iter().map(|s| s.level).collect();
    assert_eq!((tr.paddr, names), (0x4120_1234, vec!["L2", "L3"]));
    assert!(
        translate(mem, &mode, 1 << 42).is_err(),
        "beyond TTBR0's 42 bits"
    );
    assert_eq!(arm::translate(mem, &cpu, 1 << 42), None);
}
