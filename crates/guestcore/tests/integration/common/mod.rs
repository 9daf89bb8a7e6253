//! Helpers shared by the walker tests: run a walk, compare with the testkit's reference
//! translator.
#![allow(dead_code)]

use guestcore::cpu::X86CpuState;
use guestcore::paging::{walk, Leaf, PageFlags, PagingMode, WalkLimits, WalkReport};
use guestcore::phys::PhysMemory;
use guestcore_testkit::reference;

/// The flags the tests compare: effective permissions, RAM-ness, large page.
pub const KEY: PageFlags = PageFlags::WRITE
    .union(PageFlags::USER)
    .union(PageFlags::NX)
    .union(PageFlags::IO)
    .union(PageFlags::LARGE);

/// Walks with `limits`, collecting every leaf.
pub fn leaves_with<M: PhysMemory>(
    mem: &M,
    cpu: &X86CpuState,
    limits: WalkLimits,
) -> (Vec<Leaf>, WalkReport) {
    let mode = PagingMode::from_cpu(cpu).expect("valid registers");
    let mut out = Vec::new();
    let report = walk(mem, &mode, limits, |l| out.push(*l)).expect("root in RAM");
    (out, report)
}

/// Walks with default limits.
pub fn leaves<M: PhysMemory>(mem: &M, cpu: &X86CpuState) -> (Vec<Leaf>, WalkReport) {
    leaves_with(mem, cpu, WalkLimits::default())
}

/// `(va, pa, size, flags & KEY)` of each leaf, for exact comparisons.
pub fn summary(leaves: &[Leaf]) -> Vec<(u64, u64, u64, PageFlags)> {
    leaves
        .iter()
        .map(|l| (l.va, l.pa, l.size, l.flags & KEY))
        .collect()
}

/// Asserts that the reference translator maps `va` to `pa` with the leaf's permissions.
pub fn check_against_reference<M: PhysMemory>(mem: &M, cpu: &X86CpuState, leaf: &Leaf, off: u64) {
    let va = leaf.va.wrapping_add(off);
    let r = reference::translate(mem, cpu, va)
        .unwrap_or_else(|| panic!("walk leaf {leaf:x?} at +{off:#x}: reference says unmapped"));
    let a20 = if cpu.a20_enabled { !0 } else { !(1u64 << 20) };
    assert_eq!(r.pa, (leaf.pa + off) & a20, "pa of {va:#x} in {leaf:x?}");
    assert_eq!(r.write, leaf.flags.contains(PageFlags::WRITE), "W {va:#x}");
    assert_eq!(r.user, leaf.flags.contains(PageFlags::USER), "U {va:#x}");
    assert_eq!(r.nx, leaf.flags.contains(PageFlags::NX), "NX {va:#x}");
    assert!(r.page_size >= leaf.size, "leaf bigger than the page");
}

/// Every leaf agrees with the reference at its first and last byte, leaves are sorted and
/// disjoint.
pub fn check_all_leaves<M: PhysMemory>(mem: &M, cpu: &X86CpuState, leaves: &[Leaf]) {
    for l in leaves {
        check_against_reference(mem, cpu, l, 0);
        check_against_reference(mem, cpu, l, l.size - 1);
    }
    for w in leaves.windows(2) {
        assert!(
            w[0].va.checked_add(w[0].size).is_some_and(|e| e <= w[1].va),
            "leaves out of order or overlapping: {:x?} {:x?}",
            w[0],
            w[1]
        );
    }
}
