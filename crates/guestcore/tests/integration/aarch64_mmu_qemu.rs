//! guestcore's aarch64 walk against a real MMU: QEMU's (`qemu-system-aarch64 -M virt -cpu
//! max`). For each granule (4, 16 and 64 KiB), several VA sizes and both output-address
//! formats (48-bit, and the 52-bit ones: LPA for 64 KiB, LPA2 for 4 and 16 KiB), the testkit's
//! builder writes tables with pages and blocks of random attributes and output addresses in
//! both halves; a payload loads them into TTBR0/TTBR1/TCR_EL1, turns the MMU on and spins on
//! an identity-mapped page. Then, for every address tried (inside each mapping, and in the
//! gaps between them), QEMU's `gva2gpa` on vCPU 0 and guestcore's `translate`, from the
//! registers and RAM in QEMU's migration stream, must agree, and so must the testkit's
//! reference translator; every leaf guestcore's walk lists must start where `gva2gpa` says.
//! Descriptors that map nothing on a real MMU (the reserved level-3 type, blocks at levels
//! that allow none) must map nothing in guestcore either.
//!
//! Debian ships no 64 KiB-page arm64 kernel, so this is where the 64 KiB granule and the LPA
//! format meet a real MMU. Real-guest tier (`GUESTCORE_REAL_GUESTS=1`): it boots QEMU.

use super::aarch64_payload::{mov64, mrs, msr, sysreg, Virt, BASE, ISB, ORR_X0_1, RAM_MIB, SPIN};
use guestcore::cpu::vmstate::decode_cpu_aarch64;
use guestcore::cpu::{Aarch64CpuState, CpuState};
use guestcore::paging::{translate, walk, Leaf, PagingMode, WalkLimits};
use guestcore::phys::migration::MigrationFile;
use guestcore::phys::PhysMemory;
use guestcore_testkit::aarch64::{self as arm, desc, Aarch64Builder};
use guestcore_testkit::random::Rng;
use guestcore_testkit::tools::{real_guests_wanted, require};
use serde_json::json;
use std::time::Duration;

/// `virt`'s RAM: at 1 GiB.
const RAM: (u64, u64) = (0x4000_0000, RAM_MIB << 20);
/// Where the tables go (above the payload).
const TABLES: u64 = 0x4020_0000;
/// MAIR_EL1: attribute 0 is normal write-back memory (the payload's page uses it).
const MAIR: u64 = 0xff;
/// Mappings per half.
const MAPPINGS: u64 = 24;

struct Config {
    name: &'static str,
    granule: u64,
    va_bits: u32,
    pa_bits: u32,
}

const CONFIGS: [Config; 9] = [
    Config {
        name: "4k-48",
        granule: 4096,
        va_bits: 48,
        pa_bits: 48,
    },
    Config {
        name: "4k-39",
        granule: 4096,
        va_bits: 39,
        pa_bits: 48,
    },
    Config {
        name: "4k-52-lpa2",
        granule: 4096,
        va_bits: 52,
        pa_bits: 52,
    },
    Config {
        name: "16k-47",
        granule: 16384,
        va_bits: 47,
        pa_bits: 48,
    },
    Config {
        name: "16k-36",
        granule: 16384,
        va_bits: 36,
        pa_bits: 48,
    },
    Config {
        name: "16k-52-lpa2",
        granule: 16384,
        va_bits: 52,
        pa_bits: 52,
    },
    Config {
        name: "64k-48",
        granule: 65536,
        va_bits: 48,
        pa_bits: 48,
    },
    Config {
        name: "64k-42",
        granule: 65536,
        va_bits: 42,
        pa_bits: 48,
    },
    Config {
        name: "64k-52-lpa",
        granule: 65536,
        va_bits: 52,
        pa_bits: 52,
    },
];

/// The level-2 block size of a granule (2 MiB, 32 MiB, 512 MiB).
fn block_size(granule: u64) -> u64 {
    granule * granule / 8
}

/// The payload: MAIR, TCR, both TTBRs, then SCTLR_EL1.M; spins at the last instruction.
fn payload(tcr: u64, ttbr0: u64, ttbr1: u64) -> Vec<u32> {
    let mut c = Vec::new();
    for (value, reg) in [
        (MAIR, sysreg::MAIR_EL1),
        (tcr, sysreg::TCR_EL1),
        (ttbr0, sysreg::TTBR0_EL1),
        (ttbr1, sysreg::TTBR1_EL1),
    ] {
        c.extend(mov64(0, value));
        c.push(msr(reg, 0));
    }
    c.push(ISB);
    c.extend([
        mrs(0, sysreg::SCTLR_EL1),
        ORR_X0_1,
        msr(sysreg::SCTLR_EL1, 0),
        ISB,
    ]);
    c.push(SPIN);
    c
}

/// Tables for `cfg` and the addresses to try: inside every mapping, and in the empty slots.
fn build(cfg: &Config, seed: u64) -> (Aarch64Builder, Vec<u64>) {
    let mut b = Aarch64Builder::new(cfg.granule, cfg.va_bits, cfg.pa_bits, &[RAM], TABLES);
    // The payload's page, identity-mapped (normal memory, EL1 read/write/execute).
    b.map(BASE, BASE, cfg.granule, 0);
    let mut rng = Rng::new(seed);
    let mut tries = Vec::new();
    let slot = 1u64 << (cfg.va_bits - 6);
    let pa_top = 1u64 << cfg.pa_bits;
    for half in 0..2u64 {
        let base = if half == 0 { 0 } else { !0u64 << cfg.va_bits };
        for i in 0..MAPPINGS {
            // Slot 0 of the low half holds the payload; slots are far apart, so no two
            // mappings share a table entry above their own level.
            let start = base + (i + 1) * slot;
            let size = if rng.chance(30) {
                block_size(cfg.granule)
            } else {
                cfg.granule
            };
            let va = start + rng.below(slot / size / 2) * size;
            let pa = rng.below(pa_top / size) * size;
            let mut attrs = 0;
            for bit in [desc::AP_RO, desc::AP_EL0, desc::PXN, desc::UXN, desc::NG] {
                if rng.chance(40) {
                    attrs |= bit;
                }
            }
            b.map(va, pa, size, attrs);
            tries.push(va + rng.below(size));
            tries.push(va + size - 1);
            tries.push(va + size); // just after: unmapped unless the next page is
            tries.push(start + slot / 2 + rng.below(slot / 2)); // the slot's empty half
        }
        // A level-3 entry of the reserved type 0b01 (maps nothing), and a block one level above
        // the highest that always allows blocks: level 0 with 4 KiB and level 1 with 16 KiB
        // map nothing without the 52-bit formats (TCR_EL1.DS), while level 1 with 64 KiB maps
        // where the CPU implements 52-bit PAs whatever TCR_EL1.IPS says (the Arm ARM's
        // BlockDescSupported asks PAMax(); `-cpu max` has it). QEMU decides each.
        let start = base + (MAPPINGS + 1) * slot;
        let at = b.entry_addr(start, 3).unwrap();
        b.write_u64(at, b.encode_oa(BASE) | desc::AF | desc::VALID);
        tries.push(start + rng.below(cfg.granule));
        let no_block = if cfg.granule == 4096 { 0 } else { 1 };
        if cfg.pa_bits == 48 && b.start_level() <= no_block {
            let start = base + (MAPPINGS + 2) * slot;
            let at = b.entry_addr(start, no_block).unwrap();
            b.write_u64(at, desc::AF | desc::VALID);
            tries.push(start + rng.below(slot));
        }
    }
    tries.push(BASE);
    (b, tries)
}

/// QEMU's `gva2gpa` of `va` on vCPU 0: the physical address, or `None` for "Unmapped".
fn gva2gpa(virt: &mut Virt, va: u64) -> Option<u64> {
    let out = virt.qmp.hmp(&format!("gva2gpa {va:#x}"));
    // "gpa: 0x…", or "gpa: 0" (QEMU prints it with %#x).
    if let Some(v) = out.trim().strip_prefix("gpa: ") {
        let hex = v.strip_prefix("0x").unwrap_or(v);
        return Some(u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{out:?}: {e}")));
    }
    assert!(out.contains("Unmapped"), "gva2gpa {va:#x}: {out:?}");
    None
}

fn check(qemu: &std::path::Path, cfg: &Config, seed: u64) {
    let (b, tries) = build(cfg, seed);
    let mut blob = vec![0u8; (b.tables_end() - TABLES) as usize];
    b.memory().read_at(TABLES, &mut blob).unwrap();
    let code = payload(b.tcr(), b.ttbr(b.root(0)), b.ttbr(b.root(1)));
    let spin_pc = BASE + (code.len() as u64 - 1) * 4;
    let dir = tempfile::tempdir().unwrap();
    let mut virt = Virt::start(qemu, dir.path(), 1, &code, &[(TABLES, &blob)]);
    std::thread::sleep(Duration::from_millis(300));
    virt.qmp.cmd("stop", json!({}));
    let truth: Vec<(u64, Option<u64>)> = tries
        .iter()
        .map(|&va| (va, gva2gpa(&mut virt, va)))
        .collect();
    let mig = virt.migrate_to_file("vm.mig");

    // What QEMU's stream gives guestcore: the vCPU's registers and RAM.
    let m = MigrationFile::open(&mig, None).unwrap();
    let s = &m.cpu_sections()[0];
    let cpu: Aarch64CpuState = decode_cpu_aarch64(&s.desc, &s.data, &mig).unwrap();
    assert_eq!(
        (cpu.pc, cpu.mmu_enabled(), cpu.tcr_el1),
        (spin_pc, Some(true), Some(b.tcr())),
        "{}: the payload ran to its loop with the MMU on: {cpu:x?}",
        cfg.name
    );
    let mode = PagingMode::from_state(&CpuState::Aarch64(cpu.clone())).unwrap();
    let mut mapped = 0;
    for (va, want) in &truth {
        let got = translate(&m, &mode, *va).ok().map(|t| t.paddr);
        let reference = arm::translate(&m, &cpu, *va).map(|r| r.pa);
        assert_eq!(
            (got, reference),
            (*want, *want),
            "{}: {va:#x}: guestcore, reference translator vs QEMU's gva2gpa {want:x?}",
            cfg.name
        );
        mapped += usize::from(want.is_some());
    }
    assert!(
        mapped as u64 >= 2 * 2 * MAPPINGS,
        "{}: only {mapped} of {} addresses mapped",
        cfg.name,
        truth.len()
    );
    // The walk of QEMU's stream lists what the built tables hold, each leaf where QEMU's MMU
    // (still there after the migration) puts its first byte.
    let mut from_stream: Vec<Leaf> = Vec::new();
    walk(&m, &mode, WalkLimits::default(), |l| from_stream.push(*l)).unwrap();
    let mut built: Vec<Leaf> = Vec::new();
    walk(b.memory(), &mode, WalkLimits::default(), |l| built.push(*l)).unwrap();
    let key = |l: &Leaf| (l.va, l.pa, l.size);
    assert_eq!(
        from_stream.iter().map(key).collect::<Vec<_>>(),
        built.iter().map(key).collect::<Vec<_>>(),
        "{}: the walk of QEMU's stream and of the built tables",
        cfg.name
    );
    assert!(
        from_stream.len() as u64 > 2 * MAPPINGS,
        "{}: {from_stream:x?}",
        cfg.name
    );
    for l in &from_stream {
        assert_eq!(
            gva2gpa(&mut virt, l.va),
            Some(l.pa),
            "{}: the walk's leaf {l:x?}",
            cfg.name
        );
    }
    virt.quit();
}

#[test]
fn every_granule_translates_as_qemus_mmu_does() {
    if !real_guests_wanted() {
        return;
    }
    let Some(qemu) = require("qemu-system-aarch64") else {
        return;
    };
    for (i, cfg) in CONFIGS.iter().enumerate() {
        check(&qemu, cfg, 0x6a09_e667 + i as u64);
    }
}
