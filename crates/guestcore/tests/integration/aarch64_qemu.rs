//! aarch64 sources from a real QEMU (`qemu-system-aarch64`, Debian's `qemu-system-arm`): a
//! `-M virt -cpu max` guest runs a payload this test builds (it sets the stack pointer,
//! TTBR0_EL1, TTBR1_EL1, TCR_EL1 and every x register to known values, then spins), is
//! stopped, dumped with `dump-guest-memory` and migrated to a file. The ELF's notes, the
//! stream's `cpu` sections and both files' RAM must give back what the payload set, where the
//! payload was loaded. Real-guest tier (`GUESTCORE_REAL_GUESTS=1`): it boots QEMU.

use guestcore::cpu::notes::{cpus_of_machine, NoteCpus};
use guestcore::cpu::vmstate::{decode_cpu_aarch64, section_arch};
use guestcore::cpu::Aarch64CpuState;
use guestcore::format::elf::{Arch, EM_AARCH64};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::migration::MigrationFile;
use guestcore::phys::PhysMemory;
use guestcore_testkit::tools::{real_guests_wanted, require};
use serde_json::json;
use std::time::Duration;

use super::aarch64_payload::{movk, movz, msr, sysreg, Virt, BASE, ISB, SPIN};

const SP: u64 = 0x4011_0000;
const TTBR0: u64 = 0x4020_0000;
const TTBR1: u64 = 0x4030_0000;
const TCR: u64 = 0x32_b519_3510;

fn x_value(i: usize) -> u64 {
    0xa0a0_0000_0000_1000 + i as u64
}

/// The payload's instructions; the last, `b .`, is where the vCPU spins.
fn code() -> Vec<u32> {
    let mut c = vec![
        movz(0, (SP >> 16) as u16, 1),
        0x9100_001f, // mov sp, x0
        movz(0, (TTBR0 >> 16) as u16, 1),
        msr(sysreg::TTBR0_EL1, 0),
        movz(0, (TTBR1 >> 16) as u16, 1),
        msr(sysreg::TTBR1_EL1, 0),
        movz(0, TCR as u16, 0),
        movk(0, (TCR >> 16) as u16, 1),
        movk(0, (TCR >> 32) as u16, 2),
        msr(sysreg::TCR_EL1, 0),
        ISB,
    ];
    for i in 0..31u32 {
        let v = x_value(i as usize);
        c.push(movz(i, v as u16, 0));
        c.push(movk(i, (v >> 48) as u16, 3));
    }
    c.push(SPIN);
    c
}

fn expected_cpu0() -> Aarch64CpuState {
    let mut c = Aarch64CpuState::new(0);
    for (i, x) in c.x.iter_mut().enumerate() {
        *x = x_value(i);
    }
    c.sp = SP;
    c.pc = BASE + (code().len() as u64 - 1) * 4;
    c
}

#[test]
fn virt_dump_and_migration_stream_give_back_the_payloads_registers() {
    if !real_guests_wanted() {
        return;
    }
    let Some(qemu) = require("qemu-system-aarch64") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut virt = Virt::start(&qemu, dir.path(), 2, &code(), &[]);
    // Let vCPU 0 run the payload into its loop (a few hundred instructions).
    std::thread::sleep(Duration::from_millis(500));
    virt.qmp.cmd("stop", json!({}));
    let elf = dir.path().join("vm.elf");
    virt.qmp.cmd(
        "dump-guest-memory",
        json!({"paging": false, "protocol": format!("file:{}", elf.display())}),
    );
    let mig = virt.migrate_to_file("vm.mig");
    virt.quit();
    let code: Vec<u8> = code().iter().flat_map(|w| w.to_le_bytes()).collect();

    let want = expected_cpu0();
    let mut ram = vec![0u8; code.len()];

    // The ELF core: aarch64 notes, RAM at 1 GiB.
    let core = ElfCore::open(&elf).unwrap();
    assert_eq!(core.machine(), EM_AARCH64);
    let cpus = cpus_of_machine(core.notes(), core.machine()).unwrap();
    assert_eq!(cpus.arch(), Arch::Aarch64);
    let NoteCpus::Aarch64(cpus) = cpus else {
        unreachable!()
    };
    assert_eq!(cpus.len(), 2, "{cpus:?}");
    let c0 = &cpus[0];
    assert_eq!(
        (c0.x, c0.sp, c0.pc, c0.current_el()),
        (want.x, want.sp, want.pc, 1),
        "vCPU 0 from the ELF notes: {c0:?}"
    );
    assert_eq!(
        c0.missing_translation_registers().len(),
        4,
        "QEMU's aarch64 notes carry no system register"
    );
    assert_eq!(cpus[1].index, 1);
    core.read_at(BASE, &mut ram).unwrap();
    assert_eq!(ram, code, "the payload in the ELF core at {BASE:#x}");

    // The migration stream: the virt layout and the cpu sections.
    let m = MigrationFile::open(&mig, None).unwrap();
    assert!(
        m.configuration().machine.starts_with("virt"),
        "{}",
        m.configuration().machine
    );
    ram.fill(0);
    m.read_at(BASE, &mut ram).unwrap();
    assert_eq!(
        ram, code,
        "the payload in the stream's mach-virt.ram at {BASE:#x}"
    );
    let sections = m.cpu_sections();
    assert_eq!(sections.len(), 2);
    let decoded: Vec<Aarch64CpuState> = sections
        .iter()
        .map(|s| {
            assert_eq!(section_arch(&s.desc), Some(Arch::Aarch64));
            decode_cpu_aarch64(&s.desc, &s.data, &mig).unwrap()
        })
        .collect();
    let s0 = &decoded[0];
    assert_eq!(
        (s0.x, s0.sp, s0.pc, s0.pstate),
        (c0.x, c0.sp, c0.pc, c0.pstate),
        "vCPU 0: the stream and the ELF notes agree"
    );
    assert_eq!(
        (s0.ttbr0_el1, s0.ttbr1_el1, s0.tcr_el1),
        (Some(TTBR0), Some(TTBR1), Some(TCR)),
        "vCPU 0's translation registers as the payload set them: {s0:?}"
    );
    assert_eq!(s0.mmu_enabled(), Some(false), "{s0:?}");
    // `-cpu max` implements a physical-address size (PARange, bits 3:0) the Arm ARM names.
    let mmfr0 = s0
        .id_aa64mmfr0_el1
        .expect("ID_AA64MMFR0_EL1 in the cpreg arrays");
    assert!(mmfr0 & 0xf <= 6, "PARange of {mmfr0:#x}");
    // vCPU 1 was reset to the entry but stays powered off (PSCI): it never ran the payload.
    let s1 = &decoded[1];
    assert_eq!((s1.index, s1.pc, s1.x[5]), (1, BASE, 0), "vCPU 1: {s1:?}");
    assert_eq!(
        (s1.x, s1.pc),
        (cpus[1].x, cpus[1].pc),
        "vCPU 1: stream and notes agree"
    );
}
