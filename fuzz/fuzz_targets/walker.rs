#![no_main]
//! The page-table walker and mapping list over arbitrary memory: the first 40 bytes are CR0,
//! CR3, CR4, EFER and a flags byte (A20); the rest is RAM at physical 0 (tables may point
//! anywhere, at themselves, past RAM). Small limits keep each run short; the list is checked
//! for order and bounds.
use guestcore::cpu::X86CpuState;
use guestcore::mapping::MappingList;
use guestcore::paging::{PagingMode, WalkLimits};
use guestcore::phys::VecMemory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 33 {
        return;
    }
    let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let mut cpu = X86CpuState::new(0);
    cpu.cr[0] = word(0);
    cpu.cr[3] = word(1) % (data.len() as u64).max(1);
    cpu.cr[4] = word(2);
    cpu.efer = word(3);
    cpu.a20_enabled = data[32] & 1 == 0;
    let Ok(mode) = PagingMode::from_cpu(&cpu) else {
        return;
    };
    let mem = VecMemory::flat(data[33..].to_vec());
    let limits = WalkLimits {
        max_entries: 1 << 16,
        max_leaves: 1 << 12,
        max_mappings: 1 << 12,
    };
    if let Ok((list, report)) = MappingList::from_walk(&mem, &mode, limits) {
        assert!(list.len() as u64 <= limits.max_mappings);
        assert!(report.leaves <= limits.max_leaves);
        assert!(report.entries_visited <= limits.max_entries);
        assert!(list.as_slice().windows(2).all(|w| w[0].va <= w[1].va));
    }
    for va in [0u64, 0x1000, 0xffff_8000_0000_0000, u64::MAX & !0xfff] {
        let _ = guestcore::paging::translate(&mem, &mode, va);
    }
});
