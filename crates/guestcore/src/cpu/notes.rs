//! CPU state ⇄ ELF notes: QEMU's `QEMU` CPU-state note and the `CORE` NT_PRSTATUS note.
//!
//! Which vCPUs a core's notes describe depends on its architecture, told by its `e_machine`:
//! [`cpus_of_machine`] reads them as [`NoteCpus`], x86 (this module) or aarch64
//! ([`aarch64`](mod@aarch64): NT_PRSTATUS in the arm64 layout). Both read the same `CORE`
//! NT_PRSTATUS notes ([`prstatus_descs`]); the layouts are data in [`crate::format::prstatus`].
//!
//! The QEMU note is the one that describes address translation (CR0, CR3, CR4, segment
//! descriptors); NT_PRSTATUS only has general registers, which is all gdb needs. So readers prefer
//! QEMU notes and fall back to NT_PRSTATUS (then CR3 is unknown, 0, and must come from the user).
//!
//! Neither note carries EFER, which decides between PAE and IA-32e paging; `infer_efer` rebuilds
//! it from the ELF machine and the CS descriptor's L bit and marks the state `efer_inferred`.
//!
//! Byte layouts live in [`crate::format::qemu_cpu`] and [`crate::format::prstatus`]; this module
//! only maps fields, minding that the three register orders differ (ours: rax rbx rcx rdx rsi rdi
//! rbp rsp; QEMU note: … rsp rbp; prstatus: r15 r14 … in kernel `pt_regs` order).

use super::{Aarch64CpuState, Segment, X86CpuState, CR4_PAE, EFER_LMA, EFER_LME, EFER_NXE};
use crate::format::elf::{Arch, ElfMachine, EM_X86_64};
use crate::format::note::{ElfNote, NT_PRSTATUS, NT_QEMU_CPUSTATE};
use crate::format::prstatus::{
    i386, x86_64, PrStatusI386, PrStatusX86_64, CORE_NOTE_NAME, PRSTATUS_I386_SIZE,
    PRSTATUS_X86_64_SIZE,
};
use crate::format::qemu_cpu::{
    gpr as qgpr, QemuCpuSegment, QemuCpuState, QEMU_CPU_STATE_SIZE, QEMU_CPU_STATE_SIZE_V1_OLD,
    QEMU_CPU_STATE_VERSION, QEMU_NOTE_NAME,
};
use crate::{Error, Result};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// QEMU's segment-flags bit for a 64-bit code segment (descriptor L bit, `DESC_L_MASK`).
pub(crate) const DESC_L_MASK: u32 = 1 << 21;
/// EFER.SCE: SYSCALL enable (bit 0); set with long mode when EFER is inferred.
pub(crate) const EFER_SCE: u64 = 1;

/// Indices into [`X86CpuState::gpr`].
const RAX: usize = 0;
const RBX: usize = 1;
const RCX: usize = 2;
const RDX: usize = 3;
const RSI: usize = 4;
const RDI: usize = 5;
const RBP: usize = 6;
const RSP: usize = 7;
const R8: usize = 8;

/// `X86CpuState::gpr` index → QEMU note GPR index.
const fn qemu_gpr_index(i: usize) -> usize {
    match i {
        RBP => qgpr::RBP,
        RSP => qgpr::RSP,
        i => i, // rax…rdi and r8…r15 sit at the same index in both orders
    }
}

fn seg_to_qemu(s: &Segment) -> QemuCpuSegment {
    QemuCpuSegment {
        selector: U32::new(s.selector),
        limit: U32::new(s.limit),
        flags: U32::new(s.flags),
        pad: U32::new(0),
        base: U64::new(s.base),
    }
}

fn seg_from_qemu(s: &QemuCpuSegment) -> Segment {
    Segment {
        selector: s.selector.get(),
        limit: s.limit.get(),
        flags: s.flags.get(),
        base: s.base.get(),
    }
}

/// The segments of a state in QEMU's order (cs ds es fs gs ss ldt tr gdt idt).
fn segments(cpu: &X86CpuState) -> [&Segment; 10] {
    [
        &cpu.cs, &cpu.ds, &cpu.es, &cpu.fs, &cpu.gs, &cpu.ss, &cpu.ldt, &cpu.tr, &cpu.gdt, &cpu.idt,
    ]
}

fn segments_mut(cpu: &mut X86CpuState) -> [&mut Segment; 10] {
    [
        &mut cpu.cs,
        &mut cpu.ds,
        &mut cpu.es,
        &mut cpu.fs,
        &mut cpu.gs,
        &mut cpu.ss,
        &mut cpu.ldt,
        &mut cpu.tr,
        &mut cpu.gdt,
        &mut cpu.idt,
    ]
}

/// The `QEMU` note (type 0, QEMUCPUState v1, 440 bytes) for one vCPU.
pub fn encode_qemu_note(cpu: &X86CpuState) -> ElfNote {
    let mut s = QemuCpuState::new_zeroed();
    s.version = U32::new(QEMU_CPU_STATE_VERSION);
    s.size = U32::new(QEMU_CPU_STATE_SIZE as u32);
    for (i, &v) in cpu.gpr.iter().enumerate() {
        s.gpr[qemu_gpr_index(i)] = U64::new(v);
    }
    s.rip = U64::new(cpu.rip);
    s.rflags = U64::new(cpu.rflags);
    for (dst, src) in s.segs.iter_mut().zip(segments(cpu)) {
        *dst = seg_to_qemu(src);
    }
    for (dst, &src) in s.cr.iter_mut().zip(&cpu.cr) {
        *dst = U64::new(src);
    }
    s.kernel_gs_base = U64::new(cpu.kernel_gs_base);
    ElfNote::new(QEMU_NOTE_NAME, NT_QEMU_CPUSTATE, s.as_bytes().to_vec())
}

/// Decodes a QEMU note descriptor (440 bytes, or 432 from QEMU versions without
/// `kernel_gs_base`). EFER is left 0 and not marked inferred: see `infer_efer`.
pub fn decode_qemu_note(desc: &[u8]) -> Result<X86CpuState> {
    if desc.len() < QEMU_CPU_STATE_SIZE_V1_OLD {
        return Err(Error::CpuState(format!(
            "QEMU CPU note is {} bytes, expected {QEMU_CPU_STATE_SIZE}",
            desc.len()
        )));
    }
    let mut buf = [0u8; QEMU_CPU_STATE_SIZE];
    let n = desc.len().min(QEMU_CPU_STATE_SIZE);
    buf[..n].copy_from_slice(&desc[..n]);
    let s = QemuCpuState::read_from_bytes(&buf[..])
        .map_err(|_| Error::CpuState("QEMU CPU note: bad size".into()))?;
    if s.version.get() != QEMU_CPU_STATE_VERSION {
        return Err(Error::CpuState(format!(
            "QEMU CPU note version {} (only version {QEMU_CPU_STATE_VERSION} is known)",
            s.version.get()
        )));
    }
    let mut cpu = X86CpuState::new(0);
    for (i, v) in cpu.gpr.iter_mut().enumerate() {
        *v = s.gpr[qemu_gpr_index(i)].get();
    }
    cpu.rip = s.rip.get();
    cpu.rflags = s.rflags.get();
    for (dst, src) in segments_mut(&mut cpu).into_iter().zip(&s.segs) {
        *dst = seg_from_qemu(src);
    }
    for (dst, src) in cpu.cr.iter_mut().zip(&s.cr) {
        *dst = src.get();
    }
    // A 432-byte note has no kernel_gs_base: the zero padding above leaves it 0.
    cpu.kernel_gs_base = s.kernel_gs_base.get();
    Ok(cpu)
}

/// Sets EFER from what the dump implies, since no note carries it: long mode (LMA, LME, NXE,
/// SCE) when CS is a 64-bit code segment, or when the core is `EM_X86_64` and the vCPU has
/// paging with PAE on (`have_crs`; without control registers, `EM_X86_64` alone decides); NXE
/// alone for PAE outside long mode (harmless when the guest left it off: bit 63 is then reserved
/// and zero in valid tables). Never long mode with paging off. Marks the state `efer_inferred`.
pub(crate) fn infer_efer(cpu: &mut X86CpuState, machine: u16, have_crs: bool) {
    let cs_long = cpu.cs.flags & DESC_L_MASK != 0;
    let pae_paging = cpu.paging_enabled() && cpu.cr4() & CR4_PAE != 0;
    // Long mode needs paging: a vCPU caught with CR0.PG clear (reset, firmware) is not in it,
    // whatever its stale CS descriptor says.
    let long = (cs_long || (machine == EM_X86_64 && (!have_crs || pae_paging)))
        && (!have_crs || cpu.paging_enabled());
    cpu.efer = if long {
        EFER_LMA | EFER_LME | EFER_NXE | EFER_SCE
    } else if cpu.cr4() & CR4_PAE != 0 {
        EFER_NXE
    } else {
        0
    };
    cpu.efer_inferred = true;
}

/// A decoded NT_PRSTATUS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrStatus {
    /// `pr_pid`: the task's pid (QEMU writes the vCPU index + 1, Linux the task's pid).
    pub pid: u32,
    /// 64 for the x86_64 layout, 32 for i386.
    pub bits: u8,
    /// General registers, rip, rflags, segment selectors (and FS/GS bases on x86_64); control
    /// registers are unknown (0).
    pub state: X86CpuState,
}

/// The x86_64 NT_PRSTATUS (`CORE`, 336 bytes) for one vCPU; `orig_rax` is written as 0.
pub fn encode_prstatus_x86_64(cpu: &X86CpuState, pid: u32) -> ElfNote {
    let mut p = PrStatusX86_64::new_zeroed();
    p.pid = U32::new(pid);
    let g = &cpu.gpr;
    let mut r = [0u64; x86_64::COUNT];
    r[x86_64::R15] = g[15];
    r[x86_64::R14] = g[14];
    r[x86_64::R13] = g[13];
    r[x86_64::R12] = g[12];
    r[x86_64::RBP] = g[RBP];
    r[x86_64::RBX] = g[RBX];
    r[x86_64::R11] = g[11];
    r[x86_64::R10] = g[10];
    r[x86_64::R9] = g[9];
    r[x86_64::R8] = g[R8];
    r[x86_64::RAX] = g[RAX];
    r[x86_64::RCX] = g[RCX];
    r[x86_64::RDX] = g[RDX];
    r[x86_64::RSI] = g[RSI];
    r[x86_64::RDI] = g[RDI];
    r[x86_64::RIP] = cpu.rip;
    r[x86_64::CS] = cpu.cs.selector.into();
    r[x86_64::EFLAGS] = cpu.rflags;
    r[x86_64::RSP] = g[RSP];
    r[x86_64::SS] = cpu.ss.selector.into();
    r[x86_64::FS_BASE] = cpu.fs.base;
    r[x86_64::GS_BASE] = cpu.gs.base;
    r[x86_64::DS] = cpu.ds.selector.into();
    r[x86_64::ES] = cpu.es.selector.into();
    r[x86_64::FS] = cpu.fs.selector.into();
    r[x86_64::GS] = cpu.gs.selector.into();
    for (dst, src) in p.regs.iter_mut().zip(r) {
        *dst = U64::new(src);
    }
    ElfNote::new(CORE_NOTE_NAME, NT_PRSTATUS, p.as_bytes().to_vec())
}

/// The i386 NT_PRSTATUS (`CORE`, 144 bytes) for one vCPU: registers truncated to 32 bits.
pub fn encode_prstatus_i386(cpu: &X86CpuState, pid: u32) -> ElfNote {
    let mut p = PrStatusI386::new_zeroed();
    p.pid = U32::new(pid);
    let g = &cpu.gpr;
    let mut r = [0u64; i386::COUNT];
    r[i386::EBX] = g[RBX];
    r[i386::ECX] = g[RCX];
    r[i386::EDX] = g[RDX];
    r[i386::ESI] = g[RSI];
    r[i386::EDI] = g[RDI];
    r[i386::EBP] = g[RBP];
    r[i386::EAX] = g[RAX];
    r[i386::DS] = cpu.ds.selector.into();
    r[i386::ES] = cpu.es.selector.into();
    r[i386::FS] = cpu.fs.selector.into();
    r[i386::GS] = cpu.gs.selector.into();
    r[i386::EIP] = cpu.rip;
    r[i386::CS] = cpu.cs.selector.into();
    r[i386::EFLAGS] = cpu.rflags;
    r[i386::ESP] = g[RSP];
    r[i386::SS] = cpu.ss.selector.into();
    for (dst, src) in p.regs.iter_mut().zip(r) {
        *dst = U32::new(src as u32);
    }
    ElfNote::new(CORE_NOTE_NAME, NT_PRSTATUS, p.as_bytes().to_vec())
}

/// Decodes an NT_PRSTATUS descriptor; the layout is told by its length (336: x86_64, 144: i386).
pub fn decode_prstatus(desc: &[u8]) -> Result<PrStatus> {
    let mut cpu = X86CpuState::new(0);
    let g = &mut cpu.gpr;
    match desc.len() {
        PRSTATUS_X86_64_SIZE => {
            let p = PrStatusX86_64::read_from_bytes(desc)
                .map_err(|_| Error::CpuState("NT_PRSTATUS: bad size".into()))?;
            let r = |i: usize| p.regs[i].get();
            g[15] = r(x86_64::R15);
            g[14] = r(x86_64::R14);
            g[13] = r(x86_64::R13);
            g[12] = r(x86_64::R12);
            g[RBP] = r(x86_64::RBP);
            g[RBX] = r(x86_64::RBX);
            g[11] = r(x86_64::R11);
            g[10] = r(x86_64::R10);
            g[9] = r(x86_64::R9);
            g[R8] = r(x86_64::R8);
            g[RAX] = r(x86_64::RAX);
            g[RCX] = r(x86_64::RCX);
            g[RDX] = r(x86_64::RDX);
            g[RSI] = r(x86_64::RSI);
            g[RDI] = r(x86_64::RDI);
            g[RSP] = r(x86_64::RSP);
            cpu.rip = r(x86_64::RIP);
            cpu.rflags = r(x86_64::EFLAGS);
            cpu.cs.selector = r(x86_64::CS) as u32;
            cpu.ss.selector = r(x86_64::SS) as u32;
            cpu.ds.selector = r(x86_64::DS) as u32;
            cpu.es.selector = r(x86_64::ES) as u32;
            cpu.fs.selector = r(x86_64::FS) as u32;
            cpu.gs.selector = r(x86_64::GS) as u32;
            cpu.fs.base = r(x86_64::FS_BASE);
            cpu.gs.base = r(x86_64::GS_BASE);
            Ok(PrStatus {
                pid: p.pid.get(),
                bits: 64,
                state: cpu,
            })
        }
        PRSTATUS_I386_SIZE => {
            let p = PrStatusI386::read_from_bytes(desc)
                .map_err(|_| Error::CpuState("NT_PRSTATUS: bad size".into()))?;
            let r = |i: usize| u64::from(p.regs[i].get());
            // Selectors are 16-bit values in 32-bit slots; the upper half is padding.
            let sel = |i: usize| p.regs[i].get() & 0xffff;
            g[RBX] = r(i386::EBX);
            g[RCX] = r(i386::ECX);
            g[RDX] = r(i386::EDX);
            g[RSI] = r(i386::ESI);
            g[RDI] = r(i386::EDI);
            g[RBP] = r(i386::EBP);
            g[RAX] = r(i386::EAX);
            g[RSP] = r(i386::ESP);
            cpu.rip = r(i386::EIP);
            cpu.rflags = r(i386::EFLAGS);
            cpu.cs.selector = sel(i386::CS);
            cpu.ss.selector = sel(i386::SS);
            cpu.ds.selector = sel(i386::DS);
            cpu.es.selector = sel(i386::ES);
            cpu.fs.selector = sel(i386::FS);
            cpu.gs.selector = sel(i386::GS);
            Ok(PrStatus {
                pid: p.pid.get(),
                bits: 32,
                state: cpu,
            })
        }
        n => Err(Error::CpuState(format!(
            "NT_PRSTATUS of {n} bytes is neither x86_64 ({PRSTATUS_X86_64_SIZE}) nor i386 \
             ({PRSTATUS_I386_SIZE})"
        ))),
    }
}

fn is_note(n: &ElfNote, name: &[u8], n_type: u32) -> bool {
    n.name == name && n.n_type == n_type
}

/// The descriptors of the `CORE` NT_PRSTATUS notes, in note order: one per vCPU (or thread),
/// whatever the architecture.
pub(crate) fn prstatus_descs(notes: &[ElfNote]) -> impl Iterator<Item = &[u8]> {
    notes
        .iter()
        .filter(|n| is_note(n, CORE_NOTE_NAME, NT_PRSTATUS))
        .map(|n| n.desc.as_slice())
}

/// The vCPUs a core's notes describe, of the architecture its `e_machine` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteCpus {
    /// An x86 core's (`EM_X86_64`, `EM_386`): see [`cpus_from_notes`].
    X86(Vec<X86CpuState>),
    /// An aarch64 core's (`EM_AARCH64`): see [`aarch64_cpus_from_notes`].
    Aarch64(Vec<Aarch64CpuState>),
}

impl NoteCpus {
    /// The architecture the notes were read as.
    pub fn arch(&self) -> Arch {
        match self {
            NoteCpus::X86(_) => Arch::X86,
            NoteCpus::Aarch64(_) => Arch::Aarch64,
        }
    }

    /// How many vCPUs were read.
    pub fn len(&self) -> usize {
        match self {
            NoteCpus::X86(c) => c.len(),
            NoteCpus::Aarch64(c) => c.len(),
        }
    }

    /// True when no note decoded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The vCPUs of a core's `notes`, read as the architecture `e_machine` names: x86
/// ([`cpus_from_notes`], EFER inferred from the machine) or aarch64
/// ([`aarch64_cpus_from_notes`]). An `e_machine` guestcore does not read is an error naming it,
/// not x86 registers read out of another architecture's notes.
pub fn cpus_of_machine(notes: &[ElfNote], e_machine: u16) -> Result<NoteCpus> {
    let machine = ElfMachine::from_e_machine(e_machine).ok_or_else(|| {
        Error::CpuState(format!(
            "ELF machine {e_machine} is not one guestcore reads CPU notes of (x86_64 62, i386 3, \
             aarch64 183)"
        ))
    })?;
    Ok(match machine.arch() {
        Arch::X86 => NoteCpus::X86(cpus_from_notes(notes, e_machine)),
        Arch::Aarch64 => NoteCpus::Aarch64(aarch64_cpus_from_notes(notes)),
    })
}

/// The vCPUs a core's notes describe, numbered 0, 1, … in note order: one per QEMU note that
/// decodes; when there is none, one per NT_PRSTATUS (general registers only, CR3 = 0). EFER is
/// inferred for each (`infer_efer`). Notes that do not decode are skipped.
pub fn cpus_from_notes(notes: &[ElfNote], machine: u16) -> Vec<X86CpuState> {
    let mut cpus: Vec<X86CpuState> = notes
        .iter()
        .filter(|n| is_note(n, QEMU_NOTE_NAME, NT_QEMU_CPUSTATE))
        .filter_map(|n| decode_qemu_note(&n.desc).ok())
        .collect();
    let have_crs = !cpus.is_empty();
    if !have_crs {
        cpus = prstatus_descs(notes)
            .filter_map(|d| decode_prstatus(d).ok())
            .map(|p| p.state)
            .collect();
    }
    for (i, cpu) in cpus.iter_mut().enumerate() {
        cpu.index = i as u32;
        infer_efer(cpu, machine, have_crs);
    }
    cpus
}

mod aarch64;
pub use aarch64::{
    aarch64_cpus_from_notes, decode_prstatus_aarch64, encode_prstatus_aarch64, Aarch64PrStatus,
};

#[cfg(test)]
mod tests;
