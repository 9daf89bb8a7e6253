//! Property tests: random (partly garbage) page-table sets in every mode, checked against the
//! testkit's independent reference translator.
//!
//! For each table set: every walk leaf agrees with the reference at its ends and at a random
//! offset; every sampled address the reference maps lies in exactly the walk leaf that says the
//! same, and every one it does not map lies in no leaf; `translate()` agrees with the reference;
//! the merged `MappingList` covers the same bytes, sends them to the same physical addresses, and
//! is exactly as large as the leaves together.

use crate::common;

use common::{check_against_reference, check_all_leaves, leaves_with};
use guestcore::mapping::{Mapping, MappingList};
use guestcore::paging::{translate, Leaf, ModeKind, PageFlags, PagingMode, WalkLimits};
use guestcore::phys::PhysMemory;
use guestcore_testkit::random::{RandomTables, Rng};
use guestcore_testkit::reference;
use proptest::prelude::*;

const LIMITS: WalkLimits = WalkLimits {
    max_entries: 1 << 24,
    max_leaves: 1 << 20,
    max_mappings: 1 << 30,
};
const SAMPLES: usize = 300;

fn containing<T>(items: &[T], va: u64, start: impl Fn(&T) -> (u64, u64)) -> Option<&T> {
    let i = items.partition_point(|x| start(x).0 <= va);
    let x = items.get(i.checked_sub(1)?)?;
    let (s, size) = start(x);
    (va - s < size).then_some(x)
}

fn check(kind: ModeKind, seed: u64, sample_seed: u64) {
    let t = RandomTables::generate(kind, seed);
    let (mem, cpu) = (&t.memory, &t.cpu);
    let mode = PagingMode::from_cpu(cpu).unwrap();
    let (leaves, report) = leaves_with(mem, cpu, LIMITS);
    assert_eq!(report.stopped, None, "{report:?}");
    assert_eq!(report.leaves, leaves.len() as u64);
    check_all_leaves(mem, cpu, &leaves);

    let mut rng = Rng::new(sample_seed);
    for l in leaves.iter().take(64) {
        check_against_reference(mem, cpu, l, rng.below(l.size));
    }

    let (list, list_report) = MappingList::from_walk(mem, &mode, LIMITS).unwrap();
    assert_eq!(list_report, report);
    let maps = list.as_slice();
    let leaf_bytes: u64 = leaves.iter().map(|l| l.size).sum();
    let map_bytes: u64 = maps.iter().map(|m| m.size).sum();
    assert_eq!(
        map_bytes, leaf_bytes,
        "merging must neither add nor drop bytes"
    );
    for w in maps.windows(2) {
        assert!(w[0].va.0 + w[0].size <= w[1].va.0, "{:x?}", &w);
    }

    // Addresses aimed at the tables, and addresses inside known leaves.
    let mut vas: Vec<u64> = (0..SAMPLES).map(|_| t.random_va(&mut rng)).collect();
    if !leaves.is_empty() {
        for _ in 0..SAMPLES / 3 {
            let l = leaves[rng.below(leaves.len() as u64) as usize];
            vas.push(l.va + rng.below(l.size));
        }
    }
    for va in vas {
        let r = reference::translate(mem, cpu, va);
        let leaf: Option<&Leaf> = containing(&leaves, va, |l| (l.va, l.size));
        let map: Option<&Mapping> = containing(maps, va, |m| (m.va.0, m.size));
        let tr = translate(mem, &mode, va);
        match r {
            None => {
                assert!(
                    leaf.is_none(),
                    "{va:#x}: reference unmapped, walk has {leaf:x?}"
                );
                assert!(
                    map.is_none(),
                    "{va:#x}: reference unmapped, list has {map:x?}"
                );
                assert!(
                    tr.is_err(),
                    "{va:#x}: reference unmapped, translate {tr:x?}"
                );
            }
            Some(r) => {
                let leaf = leaf.unwrap_or_else(|| panic!("{va:#x} -> {r:x?} missing from walk"));
                check_against_reference(mem, cpu, leaf, va - leaf.va);
                let m = map.unwrap_or_else(|| panic!("{va:#x} -> {r:x?} missing from list"));
                assert_eq!(m.pa.0 + (va - m.va.0), r.pa, "list pa of {va:#x}");
                assert_eq!(m.is_ram(), mem.is_ram(r.pa, 1), "list RAM-ness at {va:#x}");
                let perm = PageFlags::WRITE | PageFlags::USER | PageFlags::NX;
                assert_eq!(m.flags & perm, leaf.flags & perm);
                let tr = tr.unwrap_or_else(|e| panic!("{va:#x} -> {r:x?}: translate: {e}"));
                assert_eq!(tr.paddr, r.pa, "translate pa of {va:#x}");
                assert_eq!(tr.page_size, r.page_size, "translate size of {va:#x}");
                assert_eq!(tr.flags.contains(PageFlags::WRITE), r.write);
                assert_eq!(tr.flags.contains(PageFlags::USER), r.user);
                assert_eq!(tr.flags.contains(PageFlags::NX), r.nx);
                assert_eq!(tr.flags.contains(PageFlags::IO), !mem.is_ram(r.pa, 1));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn bits32_matches_reference(seed: u64, sample: u64) {
        check(ModeKind::Bits32, seed, sample);
    }

    #[test]
    fn pae_matches_reference(seed: u64, sample: u64) {
        check(ModeKind::Pae, seed, sample);
    }

    #[test]
    fn level4_matches_reference(seed: u64, sample: u64) {
        check(ModeKind::Level4, seed, sample);
    }

    #[test]
    fn level5_matches_reference(seed: u64, sample: u64) {
        check(ModeKind::Level5, seed, sample);
    }
}
