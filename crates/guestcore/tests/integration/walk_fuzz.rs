//! Garbage in, bounded work out: random bytes as page tables in every mode must never panic and
//! must stop within the configured limits; a table whose every entry points to itself must hit
//! the entry limit and say so.

use guestcore::mapping::MappingList;
use guestcore::paging::{translate, walk, ModeKind, PagingMode, StopReason, WalkLimits};
use guestcore_testkit::geometry::{P, RW, US};
use guestcore_testkit::random::{random_ram, Rng};
use guestcore_testkit::GuestBuilder;
use proptest::prelude::*;

const SMALL: WalkLimits = WalkLimits {
    max_entries: 20_000,
    max_leaves: 2_000,
    max_mappings: 1 << 30,
};
const MODES: [ModeKind; 4] = [
    ModeKind::Bits32,
    ModeKind::Pae,
    ModeKind::Level4,
    ModeKind::Level5,
];

fn fuzz_one(kind: ModeKind, seed: u64) {
    let (mem, cpu) = random_ram(kind, seed, 64 << 10);
    let mode = PagingMode::from_cpu(&cpu).expect("the generator sets consistent registers");
    let mut n = 0u64;
    let mut last_va = None;
    let mut ordered = true;
    match walk(&mem, &mode, SMALL, |l| {
        n += 1;
        ordered &= match last_va {
            None => true,
            Some(v) => l.va > v,
        };
        last_va = Some(l.va);
    }) {
        Err(_) => assert!(
            !guestcore::phys::PhysMemory::is_ram(&mem, mode.root, 32),
            "only a root outside RAM is an error"
        ),
        Ok(r) => {
            assert!(r.entries_visited <= SMALL.max_entries, "{r:?}");
            assert!(r.leaves <= SMALL.max_leaves, "{r:?}");
            assert_eq!(r.leaves, n);
            assert!(ordered, "leaves in ascending order");
            if r.stopped.is_none() {
                assert!(r.entries_visited < SMALL.max_entries || r.leaves < SMALL.max_leaves);
            }
            let (list, r2) = MappingList::from_walk(&mem, &mode, SMALL).unwrap();
            assert_eq!(r2, r);
            assert!(
                list.len() as u64 <= 3 * r.leaves,
                "a leaf splits into at most 3 pieces here"
            );
        }
    }
    let mut rng = Rng::new(seed ^ 0x5eed);
    for _ in 0..64 {
        let _ = translate(&mem, &mode, rng.next_u64());
        let _ = translate(&mem, &mode, rng.next_u64() & 0xffff_ffff);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn random_ram_never_panics_and_stays_bounded(seed: u64) {
        for kind in MODES {
            fuzz_one(kind, seed);
        }
    }
}

#[test]
fn every_entry_pointing_to_its_own_table_hits_the_entry_limit() {
    for kind in MODES {
        let mut b = GuestBuilder::new(kind, 1 << 20);
        let geo = b.geometry();
        let root = b.root();
        let table = if kind == ModeKind::Pae {
            // The PDPT cannot point to itself (its entries name 4 KiB tables); its PD does.
            let pd = b.alloc_frame();
            for i in 0..4 {
                b.write_entry(root + i * 8, pd | P);
            }
            pd
        } else {
            root
        };
        for i in 0..4096 / geo.entry_bytes {
            b.write_entry(table + i * geo.entry_bytes, table | P | RW | US);
        }
        let (mem, cpu) = b.build();
        let mode = PagingMode::from_cpu(&cpu).unwrap();
        let limits = WalkLimits {
            max_entries: 100_000,
            max_leaves: 1 << 30,
            max_mappings: 1 << 30,
        };
        let mut leaves = 0u64;
        let r = walk(&mem, &mode, limits, |l| {
            assert_eq!(l.pa, table, "every leaf is the table itself");
            leaves += 1;
        })
        .unwrap();
        assert_eq!(r.stopped, Some(StopReason::EntryLimit), "{kind:?}: {r:?}");
        assert_eq!(r.entries_visited, limits.max_entries);
        assert_eq!(r.leaves, leaves);
        assert!(
            leaves > 90_000,
            "{kind:?}: nearly every entry visited was a leaf"
        );
        let (_, r2) = MappingList::from_walk(&mem, &mode, limits).unwrap();
        assert_eq!(r2.stopped, Some(StopReason::EntryLimit));
    }
}
