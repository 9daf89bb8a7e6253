//! Hand-built page tables in every paging mode, with the exact leaf list the walker must find.
//! Each test also checks the leaves against the testkit's reference translator and, where it
//! says something new, `paging::translate` and its trace.

use crate::common;

use common::{check_all_leaves, leaves, leaves_with, summary};
use guestcore::mapping::MappingList;
use guestcore::paging::{translate, ModeKind, PageFlags, PagingMode, StopReason, WalkLimits};
use guestcore::phys::PhysMemory;
use guestcore_testkit::geometry::{P, PS, RW, US, XD};
use guestcore_testkit::{GuestBuilder, MapFlags, PageSize};

const W: PageFlags = PageFlags::WRITE;
const U: PageFlags = PageFlags::USER;
const NX: PageFlags = PageFlags::NX;
const IO: PageFlags = PageFlags::IO;
const L: PageFlags = PageFlags::LARGE;
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const M4: u64 = 0x40_0000;
const G1: u64 = 0x4000_0000;

#[test]
fn bits32_4k_4m_and_pse36_above_4g() {
    let mut b = GuestBuilder::with_ram(ModeKind::Bits32, &[(0, 8 << 20), (0x12_ffc0_0000, M4)]);
    b.map_page(
        0x1000,
        0x5000,
        PageSize::Size4K,
        MapFlags::WRITE | MapFlags::USER,
    );
    b.map_page(M4, M4, PageSize::Size4M, MapFlags::WRITE);
    b.map_page(
        0xffc0_0000,
        0x12_ffc0_0000,
        PageSize::Size4M,
        MapFlags::USER,
    );
    let (mem, cpu) = b.clone().build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0x5000, K4, W | U),
            (M4, M4, M4, W | L),
            (0xffc0_0000, 0x12_ffc0_0000, M4, U | L),
        ]
    );
    assert_eq!(
        (report.leaves, report.io_leaves, report.stopped),
        (3, 0, None)
    );
    check_all_leaves(&mem, &cpu, &got);

    // Without CR4.PSE the PS bit is ignored: both PDEs become table pointers, one to a zeroed
    // RAM frame, one (0xffc00000) past RAM.
    let (mem, cpu) = b.pse(false).build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(summary(&got), vec![(0x1000, 0x5000, K4, W | U)]);
    assert_eq!(report.tables_outside_ram, 1);
}

#[test]
fn pae_with_unaligned_cr3_2m_leaves_and_xd() {
    let build = |nxe: bool| {
        let mut b = GuestBuilder::new(ModeKind::Pae, 64 << 20).nxe(nxe);
        b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
        b.map_page(
            0xc000_0000,
            M2,
            PageSize::Size2M,
            MapFlags::USER | MapFlags::NX,
        );
        b.map_page(0xffe0_0000, 0x40_0000, PageSize::Size2M, MapFlags::WRITE);
        b.build()
    };
    let (mem, cpu) = build(true);
    assert_ne!(cpu.cr[3] % 4096, 0, "PDPT not page aligned");
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    assert_eq!(mode.root, cpu.cr[3]);
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0x5000, K4, W),
            (0xc000_0000, M2, M2, U | NX | L),
            (0xffe0_0000, 0x40_0000, M2, W | L),
        ]
    );
    assert_eq!(report.reserved_entries, 0);
    check_all_leaves(&mem, &cpu, &got);

    // Without EFER.NXE bit 63 is reserved: the XD leaf is skipped and counted.
    let (mem, cpu) = build(false);
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![(0x1000, 0x5000, K4, W), (0xffe0_0000, 0x40_0000, M2, W | L)]
    );
    assert_eq!(report.reserved_entries, 1);
    check_all_leaves(&mem, &cpu, &got);
}

#[test]
fn pae_trace_reads_the_unaligned_pdpt() {
    let mut b = GuestBuilder::new(ModeKind::Pae, 16 << 20);
    b.map_page(0x8000_3000, 0x7000, PageSize::Size4K, MapFlags::WRITE);
    let pde = b.entry_addr(0x8000_3000, 1);
    let pte = b.entry_addr(0x8000_3000, 2);
    let (mem, cpu) = b.build();
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let t = translate(&mem, &mode, 0x8000_3abc).unwrap();
    assert_eq!(t.paddr, 0x7abc);
    let addrs: Vec<_> = t.steps.iter().map(|s| (s.level, s.entry_addr)).collect();
    assert_eq!(
        addrs,
        vec![("PDPT", cpu.cr[3] + 2 * 8), ("PD", pde), ("PT", pte)]
    );
}

#[test]
fn pae_entries_reserve_bits_62_to_52() {
    // Unlike IA-32e (where 62:52 are ignored/protection keys), PAE PDEs and PTEs reserve them.
    let mut b = GuestBuilder::new(ModeKind::Pae, 16 << 20);
    b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x2000, 0x6000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x4000_0000, M2, PageSize::Size2M, MapFlags::WRITE);
    b.modify_entry(0x2000, 2, |e| e | (1 << 52));
    b.modify_entry(0x4000_0000, 1, |e| e | (1 << 62));
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(summary(&got), vec![(0x1000, 0x5000, K4, W)]);
    assert_eq!(report.reserved_entries, 2);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    assert!(translate(&mem, &mode, 0x2000).is_err());
}

#[test]
fn level4_all_leaf_sizes_and_canonical_addresses() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 4 * G1);
    b.map_page(
        0x1000,
        0x5000,
        PageSize::Size4K,
        MapFlags::WRITE | MapFlags::USER,
    );
    b.map_page(0x7fff_ffe0_0000, M2, PageSize::Size2M, MapFlags::USER);
    b.map_page(
        0xffff_8000_0000_0000,
        G1,
        PageSize::Size1G,
        MapFlags::WRITE | MapFlags::NX,
    );
    b.map_page(
        0xffff_ffff_ffff_f000,
        0x9000,
        PageSize::Size4K,
        MapFlags::empty(),
    );
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0x5000, K4, W | U),
            (0x7fff_ffe0_0000, M2, M2, U | L),
            (0xffff_8000_0000_0000, G1, G1, W | NX | L),
            (0xffff_ffff_ffff_f000, 0x9000, K4, PageFlags::empty()),
        ]
    );
    assert_eq!(report.stopped, None);
    check_all_leaves(&mem, &cpu, &got);

    let (list, _) = MappingList::from_walk(
        &mem,
        &PagingMode::from_cpu(&cpu).unwrap(),
        WalkLimits::default(),
    )
    .unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list.as_slice()[3].va_end(), 0, "top page ends at 2^64");
}

#[test]
fn permissions_and_across_levels_nx_or() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 64 << 20);
    let all = MapFlags::WRITE | MapFlags::USER;
    b.map_page(0x20_0000, 0x5000, PageSize::Size4K, all);
    b.map_page(0x4000_0000, 0x6000, PageSize::Size4K, all);
    b.map_page(0x80_0000_0000, 0x7000, PageSize::Size4K, all | MapFlags::NX);
    // PDE above the first page: read-only. PDPTE above the second: supervisor, XD.
    b.modify_entry(0x20_0000, 2, |e| e & !RW);
    b.modify_entry(0x4000_0000, 1, |e| (e & !US) | XD);
    let (mem, cpu) = b.build();
    let (got, _) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x20_0000, 0x5000, K4, U),
            (0x4000_0000, 0x6000, K4, W | NX),
            (0x80_0000_0000, 0x7000, K4, W | U | NX),
        ]
    );
    check_all_leaves(&mem, &cpu, &got);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let t = translate(&mem, &mode, 0x4000_0123).unwrap();
    assert_eq!(t.flags & common::KEY, W | NX);
}

#[test]
fn nx_only_with_nxe() {
    for nxe in [true, false] {
        let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20).nxe(nxe);
        b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::NX);
        b.map_page(0x2000, 0x6000, PageSize::Size4K, MapFlags::empty());
        let (mem, cpu) = b.build();
        let (got, report) = leaves(&mem, &cpu);
        if nxe {
            assert_eq!(
                summary(&got),
                vec![
                    (0x1000, 0x5000, K4, NX),
                    (0x2000, 0x6000, K4, PageFlags::empty())
                ]
            );
        } else {
            assert_eq!(
                summary(&got),
                vec![(0x2000, 0x6000, K4, PageFlags::empty())]
            );
            assert_eq!(report.reserved_entries, 1);
        }
    }
}

#[test]
fn level5_sign_extends_bit_56() {
    let va = 0xff12_3456_7860_0000;
    let mut b = GuestBuilder::new(ModeKind::Level5, 64 << 20);
    b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::USER);
    b.map_page(va, M2, PageSize::Size2M, MapFlags::WRITE);
    b.map_page(
        0x00ff_ffff_ffff_f000,
        0x8000,
        PageSize::Size4K,
        MapFlags::USER,
    );
    let (mem, cpu) = b.build();
    let (got, _) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0x5000, K4, U),
            (0x00ff_ffff_ffff_f000, 0x8000, K4, U),
            (va, M2, M2, W | L),
        ]
    );
    check_all_leaves(&mem, &cpu, &got);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    assert_eq!(translate(&mem, &mode, va + 0x10).unwrap().paddr, M2 + 0x10);
    assert_eq!(
        translate(&mem, &mode, va + 0x10).unwrap().steps.len(),
        4,
        "PML5..PD"
    );
    assert!(
        translate(&mem, &mode, 0x0112_3456_7860_0000).is_err(),
        "not canonical"
    );
}

#[test]
fn a20_masks_tables_and_leaves() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20).a20(false);
    b.map_page(0x1000, 0x10_5000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x4000_0000, M2, PageSize::Size2M, MapFlags::WRITE);
    // A PT pointer with bit 20 set: with A20 masked it reaches the real PT below 1 MiB.
    b.map_page(0x80_0000, 0x7000, PageSize::Size4K, MapFlags::WRITE);
    b.modify_entry(0x80_0000, 2, |e| e | 0x10_0000);
    let (mem, cpu) = b.build();
    let (got, _) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0x5000, K4, W),
            (0x80_0000, 0x7000, K4, W),
            (0x4000_0000, M2, 1 << 20, W | L),
            (0x4010_0000, M2, 1 << 20, W | L),
        ]
    );
    check_all_leaves(&mem, &cpu, &got);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    assert_eq!(
        translate(&mem, &mode, 0x4010_0042).unwrap().paddr,
        M2 + 0x42
    );
}

#[test]
fn leaves_outside_ram_are_io_and_partial_ones_split() {
    let mut b = GuestBuilder::pc(ModeKind::Level4, 64 << 20);
    b.map_page(0x1000, 0xfee0_0000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x20_0000, 0, PageSize::Size2M, MapFlags::WRITE);
    b.map_page(0x40_0000, M2, PageSize::Size2M, MapFlags::WRITE);
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(
        summary(&got),
        vec![
            (0x1000, 0xfee0_0000, K4, W | IO),
            (0x20_0000, 0, M2, W | L | IO),
            (0x40_0000, M2, M2, W | L),
        ]
    );
    assert_eq!(report.io_leaves, 2);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let (list, _) = MappingList::from_walk(&mem, &mode, WalkLimits::default()).unwrap();
    let parts: Vec<_> = list
        .iter()
        .map(|m| (m.va.0, m.pa.0, m.size, m.is_ram()))
        .collect();
    assert_eq!(
        parts,
        vec![
            (0x1000, 0xfee0_0000, K4, false),
            (0x20_0000, 0, 0xa0000, true),
            (0x2a_0000, 0xa0000, 0x60000, false),
            // The RAM part above the hole continues into the next leaf and merges with it.
            (0x30_0000, 0x10_0000, 0x30_0000, true),
        ]
    );
    let t = translate(&mem, &mode, 0x20_0000 + 0xb8000).unwrap();
    assert!(t.flags.contains(IO), "VGA hole");
    let t = translate(&mem, &mode, 0x20_1000).unwrap();
    assert!(!t.flags.contains(IO));
}

#[test]
fn reserved_bits_are_skipped_and_counted() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 4 * G1);
    b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x20_0000, M2, PageSize::Size2M, MapFlags::WRITE);
    b.map_page(0x4000_0000, G1, PageSize::Size1G, MapFlags::WRITE);
    b.map_page(0x80_0000_0000, 0x6000, PageSize::Size4K, MapFlags::WRITE);
    b.map_page(0x80_0000_1000, 0x7000, PageSize::Size4K, MapFlags::WRITE);
    b.modify_entry(0x20_0000, 2, |e| e | (1 << 13)); // 2 MiB leaf: bits 20:13 reserved
    b.modify_entry(0x4000_0000, 1, |e| e | (1 << 29)); // 1 GiB leaf: bits 29:13 reserved
    b.modify_entry(0x80_0000_0000, 0, |e| e | PS); // PS reserved in a PML4E
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(summary(&got), vec![(0x1000, 0x5000, K4, W)]);
    assert_eq!(report.reserved_entries, 3);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let err = translate(&mem, &mode, 0x20_0000).unwrap_err().to_string();
    assert!(err.contains("reserved"), "{err}");
}

#[test]
fn self_referencing_pml4_terminates_with_the_self_map() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
    let root = b.root();
    b.raw_entry(0xffff_ff80_0000_0000, 0, root | P | RW); // PML4[511] -> PML4
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(report.stopped, None);
    // Through slot 511 four times the PML4 maps itself at the top page.
    let top = got.last().unwrap();
    assert_eq!(
        (top.va, top.pa, top.size),
        (0xffff_ffff_ffff_f000, root, K4)
    );
    assert_eq!(got[0].va, 0x1000);
    check_all_leaves(&mem, &cpu, &got);
    // Every leaf but the real one comes through the self-map, and maps a table page.
    assert!(report.self_references > 0, "{report:?}");
    assert_eq!(report.loop_leaves, got.len() as u64 - 1, "{report:?}");
    assert!((1..=4).contains(&report.loop_frames), "{report:?}");
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let t = translate(&mem, &mode, 0xffff_ffff_ffff_fff8).unwrap();
    assert_eq!(t.paddr, root + 0xff8);
    assert!(t.steps.iter().all(|s| s.table == root));
}

#[test]
fn bits32_root_pointing_at_itself_is_one_page_aliased_a_million_times() {
    let mut b = GuestBuilder::new(ModeKind::Bits32, 16 << 20);
    let root = b.root();
    for i in 0..1024u64 {
        b.raw_entry(i << 22, 0, root | P | RW);
    }
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(report.stopped, None);
    assert_eq!(got.len(), 1 << 20);
    assert!(got.iter().all(|l| l.pa == root && l.size == K4));
    assert_eq!(report.self_references, 1024);
    assert_eq!(report.loop_leaves, 1 << 20);
    assert_eq!(report.loop_frames, 1);
}

#[test]
fn ordinary_tables_report_no_self_reference() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    b.map_pages(0, 0x10_0000, 10 * K4, PageSize::Size4K, MapFlags::WRITE);
    let (mem, cpu) = b.build();
    let (_, report) = leaves(&mem, &cpu);
    assert_eq!(
        (
            report.self_references,
            report.loop_leaves,
            report.loop_frames
        ),
        (0, 0, 0)
    );
}

#[test]
fn loop_from_pdpt_back_to_pml4_terminates() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
    let root = b.root();
    b.raw_entry(5 << 30, 1, root | P | RW | US); // PDPT[5] -> PML4 (as a PD)
    let (mem, cpu) = b.build();
    let (got, report) = leaves(&mem, &cpu);
    assert_eq!(report.stopped, None);
    check_all_leaves(&mem, &cpu, &got);
    // PML4 as PD, its entry 0 -> PDPT as PT, whose entries 0 and 5 are "4 KiB pages".
    assert!(got.iter().any(|l| l.va == 5 << 30 && l.pa & !0xfff != 0));
    // PDPT[5] -> PML4, then (PML4 as PD)[0] -> PDPT: both point above themselves.
    assert_eq!(report.self_references, 2, "{report:?}");
    assert!(report.loop_leaves > 0, "{report:?}");
}

#[test]
fn limits_stop_the_walk_and_say_so() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    b.map_pages(0, 0x10_0000, 10 * K4, PageSize::Size4K, MapFlags::WRITE);
    let (mem, cpu) = b.build();
    let (got, report) = leaves_with(
        &mem,
        &cpu,
        WalkLimits {
            max_entries: 1 << 20,
            max_leaves: 3,
            max_mappings: 1 << 30,
        },
    );
    assert_eq!(got.len(), 3);
    assert_eq!(report.stopped, Some(StopReason::LeafLimit));
    let (got, report) = leaves_with(
        &mem,
        &cpu,
        WalkLimits {
            max_entries: 100,
            max_leaves: 1 << 20,
            max_mappings: 1 << 30,
        },
    );
    assert_eq!(report.stopped, Some(StopReason::EntryLimit));
    assert_eq!(report.entries_visited, 100);
    assert_eq!(got.len(), 10, "the leaves come first in index order");
}

#[test]
fn root_table_outside_ram_is_an_error() {
    let b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    let (mem, mut cpu) = b.build();
    cpu.cr[3] = 1 << 40;
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    assert!(guestcore::paging::walk(&mem, &mode, WalkLimits::default(), |_| {}).is_err());
    assert!(MappingList::from_walk(&mem, &mode, WalkLimits::default()).is_err());
    assert!(translate(&mem, &mode, 0).is_err());
    assert!(!mem.is_ram(1 << 40, 1));
}

#[test]
fn translate_trace_names_every_entry() {
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    let va = 0xffff_8000_1234_5000;
    b.map_page(va, 0x9000, PageSize::Size4K, MapFlags::WRITE);
    let eas: Vec<u64> = (0..4).map(|l| b.entry_addr(va, l)).collect();
    let (mem, cpu) = b.build();
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let t = translate(&mem, &mode, va + 0x678).unwrap();
    assert_eq!((t.paddr, t.page_size), (0x9678, K4));
    let steps: Vec<_> = t.steps.iter().map(|s| (s.level, s.entry_addr)).collect();
    assert_eq!(
        steps,
        vec![
            ("PML4", eas[0]),
            ("PDPT", eas[1]),
            ("PD", eas[2]),
            ("PT", eas[3])
        ]
    );
    let leaf_step = &t.steps[3];
    assert_eq!(leaf_step.entry & !0xfff & !XD, 0x9000);
}
