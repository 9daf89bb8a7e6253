#![no_main]
//! The aarch64 walker and translator over arbitrary memory: the first 40 bytes are TCR_EL1,
//! TTBR0_EL1, TTBR1_EL1 (their base addresses taken modulo the RAM size, ASIDs kept),
//! SCTLR_EL1 and ID_AA64MMFR0_EL1; the rest is RAM at physical 0, so descriptors may point
//! anywhere, at either root, past RAM. The walk runs with the default budget (hostile tables
//! must stop within it), leaves must come in ascending order, and `translate` must agree with
//! every leaf it is asked about.
use guestcore::cpu::Aarch64CpuState;
use guestcore::paging::{translate, walk, ModeKind, PageFlags, PagingMode, WalkLimits};
use guestcore::phys::VecMemory;
use libfuzzer_sys::fuzz_target;

/// Leaves checked against `translate` (the walk itself may produce millions).
const CHECKED: usize = 512;

fuzz_target!(|data: &[u8]| {
    if data.len() < 48 {
        return;
    }
    let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let ram = data.len() as u64 - 40;
    let mut cpu = Aarch64CpuState::new(0);
    cpu.tcr_el1 = Some(word(0));
    cpu.ttbr0_el1 = Some((word(1) & 0xffff_0000_0000_0000) | (word(1) % ram));
    cpu.ttbr1_el1 = Some((word(2) & 0xffff_0000_0000_0000) | (word(2) % ram));
    cpu.sctlr_el1 = Some(word(3));
    cpu.id_aa64mmfr0_el1 = Some(word(4));
    let Ok(mode) = PagingMode::aarch64(&cpu) else {
        return;
    };
    let mem = VecMemory::flat(data[40..].to_vec());
    let limits = WalkLimits::default();
    let mut checked = Vec::with_capacity(CHECKED);
    let mut last: Option<(u64, u64)> = None;
    let mut n = 0u64;
    let result = walk(&mem, &mode, limits, |l| {
        n += 1;
        if let Some((va, size)) = last {
            assert!(
                va.checked_add(size).is_some_and(|end| end <= l.va),
                "leaves out of order: {va:#x}+{size:#x} then {l:x?}"
            );
        }
        last = Some((l.va, l.size));
        if checked.len() < CHECKED {
            checked.push(*l);
        }
    });
    let Ok(report) = result else {
        return;
    };
    assert!(report.entries_visited <= limits.max_entries);
    assert!(report.leaves <= limits.max_leaves && report.leaves == n);
    let key =
        PageFlags::WRITE | PageFlags::USER | PageFlags::NX | PageFlags::UXN | PageFlags::LARGE;
    for l in &checked {
        for off in [0, l.size / 2, l.size - 1] {
            let t = translate(&mem, &mode, l.va + off)
                .unwrap_or_else(|e| panic!("leaf {l:x?}: translate +{off:#x}: {e}"));
            assert_eq!(t.paddr, l.pa + off, "{l:x?} +{off:#x}");
            if mode.kind != ModeKind::Off {
                // (With the MMU off a leaf is a whole RAM range, a translation one page.)
                assert_eq!(t.page_size, l.size, "{l:x?}");
                assert_eq!(t.flags & key, l.flags & key, "{l:x?}");
            }
        }
    }
    for va in [0u64, 0x1000, 0xffff_0000_0000_0000, u64::MAX & !0xfff] {
        let _ = translate(&mem, &mode, va);
    }
});
