//! [`X86CpuState`]: one vCPU's registers, in QEMU's register order.

use serde::{Deserialize, Serialize};

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging enabled.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PSE: 4 MiB pages in 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: 64-bit page-table entries.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57: 5-level paging in IA-32e mode.
pub const CR4_LA57: u64 = 1 << 12;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: bit 63 of PAE/IA-32e entries is execute-disable.
pub const EFER_NXE: u64 = 1 << 11;

/// A segment register or descriptor-table register as QEMU keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The selector loaded into the register (0 for GDTR and IDTR).
    pub selector: u32,
    /// The limit from the descriptor cache, in bytes (granularity applied).
    pub limit: u32,
    /// QEMU's descriptor flags word (type, S, DPL, P, AVL, L, D/B, G in descriptor bit positions).
    pub flags: u32,
    /// The linear base address from the descriptor cache.
    pub base: u64,
}

/// One x86 vCPU.
///
/// General-purpose registers are in QEMU's order: rax rbx rcx rdx rsi rdi rbp rsp r8–r15.
/// Segments are in QEMU's order: cs ds es fs gs ss ldt tr gdt idt (named fields below).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct X86CpuState {
    /// 0-based vCPU index as the source numbers it.
    pub index: u32,
    /// rax rbx rcx rdx rsi rdi rbp rsp r8 … r15 (QEMU's `regs[]` order).
    pub gpr: [u64; 16],
    /// The instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// Code segment; its L bit (in `flags`) says 64-bit code.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS; in long mode its `base` is the `IA32_FS_BASE` MSR.
    pub fs: Segment,
    /// GS; in long mode its `base` is the `IA32_GS_BASE` MSR (the kernel's per-CPU area).
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// LDTR: the local descriptor table.
    pub ldt: Segment,
    /// TR: the task-state segment.
    pub tr: Segment,
    /// GDTR: the global descriptor table's base and limit.
    pub gdt: Segment,
    /// IDTR: the interrupt descriptor table's base and limit (crash finds KASLR from it).
    pub idt: Segment,
    /// CR0, CR1 (unused), CR2, CR3, CR4.
    pub cr: [u64; 5],
    /// The `IA32_EFER` MSR (LME, LMA, NXE …); see `efer_inferred`.
    pub efer: u64,
    /// True when the A20 line is enabled (addresses pass unmasked); false forces bit 20 to 0.
    pub a20_enabled: bool,
    /// The `IA32_KERNEL_GS_BASE` MSR (the GS base `swapgs` swaps in).
    pub kernel_gs_base: u64,
    /// True when EFER was not in the source and was inferred (QEMU's CPU note has no EFER: it is
    /// inferred from the ELF machine and the CS descriptor's L bit).
    pub efer_inferred: bool,
}

impl X86CpuState {
    /// CR0.
    pub fn cr0(&self) -> u64 {
        self.cr[0]
    }
    /// CR3.
    pub fn cr3(&self) -> u64 {
        self.cr[3]
    }
    /// CR4.
    pub fn cr4(&self) -> u64 {
        self.cr[4]
    }
    /// True when IA-32e (long) mode is active.
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }
    /// True when CR0.PG is set.
    pub fn paging_enabled(&self) -> bool {
        self.cr[0] & CR0_PG != 0
    }
    /// A new state with the A20 line enabled and everything else zero.
    pub fn new(index: u32) -> Self {
        X86CpuState {
            index,
            a20_enabled: true,
            ..Default::default()
        }
    }
}
