use super::*;
use crate::cpu::{CR0_PG, CR4_PAE};
use crate::format::elf::EM_386;

/// A state where every field has a distinct value.
fn sample() -> X86CpuState {
    let mut c = X86CpuState::new(0);
    for (i, g) in c.gpr.iter_mut().enumerate() {
        *g = 0x1111_0000_0000_0000 + (i as u64) * 0x101;
    }
    c.rip = 0xffff_ffff_8100_1234;
    c.rflags = 0x246;
    for (i, s) in segments_mut(&mut c).into_iter().enumerate() {
        let i = i as u32;
        *s = Segment {
            selector: 0x10 + i,
            limit: 0xfffff - i,
            flags: 0xa09b00 + i,
            base: 0xffff_8880_0000_0000 + u64::from(i) * 0x1000,
        };
    }
    c.cr = [0x8005_0033, 0, 0x7f00_dead_0000, 0x1_2345_6000, 0x3706f0];
    c.kernel_gs_base = 0xffff_8881_3bc0_0000;
    c
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

#[test]
fn qemu_note_round_trip() {
    let cpu = sample();
    let note = encode_qemu_note(&cpu);
    assert_eq!(note.name, b"QEMU");
    assert_eq!(note.n_type, 0);
    assert_eq!(note.desc.len(), 440);
    assert_eq!(decode_qemu_note(&note.desc).unwrap(), cpu);
}

#[test]
fn qemu_note_layout_at_known_offsets() {
    let cpu = sample();
    let d = encode_qemu_note(&cpu).desc;
    assert_eq!(u32_at(&d, 0), 1, "version");
    assert_eq!(u32_at(&d, 4), 440, "size");
    assert_eq!(u64_at(&d, 8), cpu.gpr[RAX]);
    assert_eq!(u64_at(&d, 8 + 6 * 8), cpu.gpr[RSP], "rsp before rbp");
    assert_eq!(u64_at(&d, 8 + 7 * 8), cpu.gpr[RBP]);
    assert_eq!(u64_at(&d, 8 + 15 * 8), cpu.gpr[15]);
    assert_eq!(u64_at(&d, 136), cpu.rip);
    assert_eq!(u64_at(&d, 144), cpu.rflags);
    assert_eq!(u32_at(&d, 152), cpu.cs.selector);
    assert_eq!(u32_at(&d, 160), cpu.cs.flags);
    assert_eq!(u64_at(&d, 168), cpu.cs.base);
    assert_eq!(u64_at(&d, 152 + 9 * 24 + 16), cpu.idt.base);
    assert_eq!(u64_at(&d, 392 + 3 * 8), cpu.cr[3]);
    assert_eq!(u64_at(&d, 432), cpu.kernel_gs_base);
}

#[test]
fn qemu_note_decodes_hand_built_bytes() {
    let mut d = vec![0u8; 440];
    d[0..4].copy_from_slice(&1u32.to_le_bytes());
    d[4..8].copy_from_slice(&440u32.to_le_bytes());
    d[8 + 7 * 8..8 + 8 * 8].copy_from_slice(&0xbbbbu64.to_le_bytes()); // rbp
    d[136..144].copy_from_slice(&0xffff_ffff_81e0_0000u64.to_le_bytes()); // rip
    d[160..164].copy_from_slice(&DESC_L_MASK.to_le_bytes()); // cs.flags
    d[392..400].copy_from_slice(&0x8000_0011u64.to_le_bytes()); // cr0
    d[416..424].copy_from_slice(&0x1_0000_0000u64.to_le_bytes()); // cr3
    let c = decode_qemu_note(&d).unwrap();
    assert_eq!(c.gpr[RBP], 0xbbbb);
    assert_eq!(c.gpr[RSP], 0);
    assert_eq!(c.rip, 0xffff_ffff_81e0_0000);
    assert_eq!(c.cs.flags, DESC_L_MASK);
    assert_eq!(c.cr0(), 0x8000_0011);
    assert_eq!(c.cr3(), 1 << 32);
    assert!(c.a20_enabled);

    // Older QEMU: 432 bytes, no kernel_gs_base.
    let old = decode_qemu_note(&d[..432]).unwrap();
    assert_eq!(old.kernel_gs_base, 0);
    assert_eq!(old.cr3(), 1 << 32);

    assert!(decode_qemu_note(&d[..431]).is_err());
    assert!(decode_qemu_note(&[]).is_err());
    d[0] = 2;
    assert!(matches!(decode_qemu_note(&d), Err(Error::CpuState(_))));
}

#[test]
fn prstatus_x86_64_round_trip_and_offsets() {
    let cpu = sample();
    let note = encode_prstatus_x86_64(&cpu, 7);
    assert_eq!((note.name.as_slice(), note.n_type), (&b"CORE"[..], 1));
    let d = &note.desc;
    assert_eq!(d.len(), 336);
    assert_eq!(u32_at(d, 32), 7, "pid");
    assert_eq!(u64_at(d, 112), cpu.gpr[15], "r15 first");
    assert_eq!(u64_at(d, 112 + 10 * 8), cpu.gpr[RAX]);
    assert_eq!(u64_at(d, 112 + 16 * 8), cpu.rip);
    assert_eq!(u64_at(d, 112 + 19 * 8), cpu.gpr[RSP]);
    assert_eq!(
        u64_at(d, 112 + 26 * 8),
        u64::from(cpu.gs.selector),
        "gs last"
    );

    let p = decode_prstatus(d).unwrap();
    assert_eq!((p.pid, p.bits), (7, 64));
    assert_eq!(p.state.gpr, cpu.gpr);
    assert_eq!((p.state.rip, p.state.rflags), (cpu.rip, cpu.rflags));
    assert_eq!(p.state.cs.selector, cpu.cs.selector);
    assert_eq!(p.state.gs.selector, cpu.gs.selector);
    assert_eq!(p.state.fs.base, cpu.fs.base);
    assert_eq!(p.state.gs.base, cpu.gs.base);
    assert_eq!(p.state.cr, [0; 5]);
}

#[test]
fn prstatus_i386_round_trip_and_offsets() {
    let mut cpu = sample();
    for g in &mut cpu.gpr {
        *g &= 0xffff_ffff;
    }
    cpu.gpr[8..].fill(0);
    cpu.rip = 0xc100_0000;
    let note = encode_prstatus_i386(&cpu, 2);
    let d = &note.desc;
    assert_eq!(d.len(), 144);
    assert_eq!(u32_at(d, 24), 2, "pid");
    assert_eq!(u32_at(d, 72), cpu.gpr[RBX] as u32, "ebx first");
    assert_eq!(u32_at(d, 72 + 6 * 4), cpu.gpr[RAX] as u32);
    assert_eq!(u32_at(d, 72 + 12 * 4), 0xc100_0000, "eip");
    assert_eq!(u32_at(d, 72 + 15 * 4), cpu.gpr[RSP] as u32, "esp");
    let p = decode_prstatus(d).unwrap();
    assert_eq!((p.pid, p.bits), (2, 32));
    assert_eq!(p.state.gpr, cpu.gpr);
    assert_eq!(p.state.rip, 0xc100_0000);
    assert_eq!(p.state.ss.selector, cpu.ss.selector);

    assert!(decode_prstatus(&d[..100]).is_err());
    assert!(decode_prstatus(&[0; 337]).is_err());
}

#[test]
fn cpus_prefer_qemu_notes_and_infer_efer() {
    let mut a = sample();
    a.cs.flags = 0; // no L bit: long mode comes from EM_X86_64 + PG + PAE
    let mut b = sample();
    b.cr[3] = 0x5000;
    let notes = vec![
        encode_prstatus_x86_64(&a, 1),
        encode_prstatus_x86_64(&b, 2),
        encode_qemu_note(&a),
        encode_qemu_note(&b),
        ElfNote::new(b"VMCOREINFO", 0, b"X=1\n".to_vec()),
    ];
    let cpus = cpus_from_notes(&notes, EM_X86_64);
    assert_eq!(cpus.len(), 2);
    assert_eq!((cpus[0].index, cpus[1].index), (0, 1));
    assert_eq!(cpus[1].cr3(), 0x5000);
    for c in &cpus {
        assert!(c.long_mode() && c.efer_inferred && c.a20_enabled);
        assert_eq!(c.efer, EFER_LMA | EFER_LME | EFER_NXE | EFER_SCE);
    }
}

#[test]
fn efer_inference_cases() {
    let mut c = X86CpuState::new(0);
    c.cr = [CR0_PG | 1, 0, 0, 0x1000, CR4_PAE];
    infer_efer(&mut c, EM_386, true);
    assert_eq!(c.efer, EFER_NXE, "PAE without long mode");
    c.cs.flags = DESC_L_MASK;
    infer_efer(&mut c, EM_386, true);
    assert!(c.long_mode(), "CS.L implies long mode whatever the machine");
    c.cs.flags = 0;
    c.cr[4] = 0;
    infer_efer(&mut c, EM_386, true);
    assert_eq!(c.efer, 0);
    infer_efer(&mut c, EM_X86_64, true);
    assert_eq!(c.efer, 0, "no LMA without PAE paging");
    c.cs.flags = DESC_L_MASK;
    c.cr = [0x11, 0, 0, 0, 0];
    infer_efer(&mut c, EM_X86_64, true);
    assert!(
        !c.long_mode(),
        "a stale 64-bit CS with paging off (reset) is not long mode"
    );
    c.cs.flags = 0;
    c.cr[0] = 0;
    infer_efer(&mut c, EM_X86_64, false);
    assert!(c.long_mode(), "x86_64 prstatus-only: trust the machine");
    assert!(c.efer_inferred);
}

#[test]
fn cpus_fall_back_to_prstatus() {
    let a = sample();
    let notes = vec![
        encode_prstatus_i386(&a, 1),
        encode_prstatus_i386(&a, 2),
        ElfNote::new(b"QEMU", 0, vec![1; 10]), // undecodable: skipped
    ];
    let cpus = cpus_from_notes(&notes, EM_386);
    assert_eq!(cpus.len(), 2);
    assert_eq!(cpus[1].index, 1);
    assert_eq!(cpus[0].cr3(), 0);
    assert_eq!(cpus[0].gpr[RAX], a.gpr[RAX] & 0xffff_ffff);
    assert!(!cpus[0].long_mode());
    assert!(cpus_from_notes(&[], EM_X86_64).is_empty());
}

#[test]
fn the_machine_chooses_the_architecture() {
    use crate::format::elf::{Arch, EM_AARCH64};
    let mut arm = Aarch64CpuState::new(0);
    arm.pc = 0xffff_8000_0801_0000;
    arm.x[30] = 0x77;
    let notes = vec![encode_prstatus_aarch64(&arm, 1)];
    let cpus = cpus_of_machine(&notes, EM_AARCH64).unwrap();
    assert_eq!(cpus.arch(), Arch::Aarch64);
    assert_eq!(cpus, NoteCpus::Aarch64(vec![arm]));
    // Read as x86, the arm64 layout is no NT_PRSTATUS it knows: no vCPU, not wrong registers.
    let x86 = cpus_of_machine(&notes, EM_X86_64).unwrap();
    assert_eq!((x86.arch(), x86.len()), (Arch::X86, 0));
    let x86_notes = vec![encode_prstatus_x86_64(&sample(), 1)];
    let cpus = cpus_of_machine(&x86_notes, EM_X86_64).unwrap();
    assert_eq!((cpus.arch(), cpus.len()), (Arch::X86, 1));
    assert!(cpus_of_machine(&x86_notes, EM_AARCH64).unwrap().is_empty());
    let e = cpus_of_machine(&notes, 40).unwrap_err();
    assert!(e.to_string().contains("ELF machine 40"), "{e}");
}
