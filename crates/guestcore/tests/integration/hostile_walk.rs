//! Hostile page tables built with the testkit: small inputs whose tables ask for far more work
//! or memory than their size. Each test checks the bound by construction (what was produced,
//! where the walk stopped), not by timing.

use guestcore::mapping::{Mapping, MappingList};
use guestcore::paging::{walk, ModeKind, PagingMode, StopReason, WalkLimits};
use guestcore::phys::PhysMemory;
use guestcore_testkit::geometry::{P, RW};
use guestcore_testkit::{GuestBuilder, MapFlags, PageSize};

const G1: u64 = 1 << 30;

/// Class 1: 512 one-GiB leaves aliased over a GiB of RAM with a thousand one-page holes. Each
/// leaf is 2000 mappings (RAM and I/O pieces); the list must stop at its mapping limit, and
/// the walk with it.
#[test]
fn aliased_gib_leaves_over_holey_ram_stop_at_the_mapping_limit() {
    const HOLES: u64 = 1000;
    let stride = (G1 / HOLES) & !0xfff;
    let ram: Vec<(u64, u64)> = (0..HOLES).map(|i| (i * stride, stride - 0x1000)).collect();
    let mut b = GuestBuilder::with_ram(ModeKind::Level4, &ram);
    for i in 0..512 {
        b.map_page(i * G1, 0, PageSize::Size1G, MapFlags::WRITE);
    }
    let (mem, cpu) = b.build();
    assert_eq!(mem.ram().ranges().len(), HOLES as usize);
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let limits = WalkLimits {
        max_mappings: 100_000,
        ..WalkLimits::default()
    };
    let (list, report) = MappingList::from_walk(&mem, &mode, limits).unwrap();
    assert_eq!(report.stopped, Some(StopReason::MappingLimit));
    assert_eq!(list.len(), 100_000);
    assert_eq!(report.leaves, 100_000 / 2000 + 1, "{report:?}");
    // What was kept is the start of the address space, in order.
    assert_eq!(list.as_slice()[0].va.0, 0);
    assert!(list.as_slice().windows(2).all(|w| w[0].va < w[1].va));
}

/// One table page whose every entry points at itself: at every level of a 5-level walk, so the
/// tables describe 512^5 pages in 4 KiB of memory.
fn self_referencing_5level() -> (guestcore_testkit::SparseMemory, PagingMode) {
    let mut b = GuestBuilder::new(ModeKind::Level5, 1 << 20);
    let root = b.root();
    for i in 0..512 {
        b.write_u64(root + i * 8, root | P | RW);
    }
    let (mem, cpu) = b.build();
    (mem, PagingMode::from_cpu(&cpu).unwrap())
}

/// Class 2: dense self-referencing 5-level tables. Every leaf is an alias (same physical page,
/// next virtual page), so none merge: the mapping limit, not memory, ends the walk.
#[test]
fn dense_5level_tables_stop_at_the_mapping_limit() {
    let (mem, mode) = self_referencing_5level();
    let limits = WalkLimits {
        max_mappings: 1 << 16,
        ..WalkLimits::default()
    };
    let (list, report) = MappingList::from_walk(&mem, &mode, limits).unwrap();
    assert_eq!(report.stopped, Some(StopReason::MappingLimit));
    assert_eq!(list.len(), 1 << 16);
    assert_eq!(report.leaves, (1 << 16) + 1);
}

/// Class 2, streamed: a plain walk (`tlb`) of the same tables ends at the leaf limit.
#[test]
fn dense_5level_tables_stop_at_the_leaf_limit() {
    let (mem, mode) = self_referencing_5level();
    let limits = WalkLimits {
        max_leaves: 1 << 16,
        ..WalkLimits::default()
    };
    let mut n = 0u64;
    let report = walk(&mem, &mode, limits, |_| n += 1).unwrap();
    assert_eq!(report.stopped, Some(StopReason::LeafLimit));
    assert_eq!(n, 1 << 16);
}

/// The defaults keep every command within its budget whatever the tables say (about a minute
/// and 1 GiB on a 2-core machine): the list and what is derived from it per mapping, and the
/// streamed leaves.
#[test]
fn default_limits_fit_the_budget() {
    let d = WalkLimits::default();
    let list_bytes = d.max_mappings * size_of::<Mapping>() as u64;
    assert!(list_bytes <= 64 << 20, "{list_bytes}");
    // A paging ELF dump plans a program header, a run and a reference per mapping
    // (about 150 bytes with the list itself).
    assert!(d.max_mappings * 150 <= 512 << 20);
    assert!(d.max_leaves <= 1 << 24);
    assert!(d.max_entries <= 1 << 28);
}
