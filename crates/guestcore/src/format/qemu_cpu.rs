//! QEMU's per-vCPU ELF note (`QEMU`, type 0): `QEMUCPUState` version 1, as QEMU's x86
//! `dump-guest-memory` writes it. crash reads its CR3/IDT to find KASLR when VMCOREINFO is
//! missing, so our writer emits it and our reader prefers it (it has CR0–CR4; NT_PRSTATUS has not).
//!
//! Layout (little-endian, no padding): `u32 version, u32 size`, 16 GPRs in the order
//! rax rbx rcx rdx rsi rdi **rsp rbp** r8–r15 (note: not the order of `X86CpuState::gpr`),
//! rip, rflags, 10 segments `{u32 selector, u32 limit, u32 flags, u32 pad, u64 base}` in the order
//! cs ds es fs gs ss ldt tr gdt idt, `cr[5]`, then `kernel_gs_base` — 440 bytes. QEMU releases
//! before `kernel_gs_base` was added wrote the same layout without it (432 bytes, same version).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `QEMUCPUState.version` this layout describes.
pub const QEMU_CPU_STATE_VERSION: u32 = 1;
/// Size of the current layout, with `kernel_gs_base`.
pub const QEMU_CPU_STATE_SIZE: usize = 440;
/// Size of the older layout without `kernel_gs_base`.
pub const QEMU_CPU_STATE_SIZE_V1_OLD: usize = 432;
/// Note name.
pub const QEMU_NOTE_NAME: &[u8] = b"QEMU";

/// Indices into [`QemuCpuState::gpr`] of the two registers whose slots differ from
/// `X86CpuState::gpr` (rsp before rbp); rax … rdi and r8 … r15 sit at the same index in both.
pub(crate) mod gpr {
    pub(crate) const RSP: usize = 6;
    pub(crate) const RBP: usize = 7;
}

/// `QEMUCPUSegment`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub(crate) struct QemuCpuSegment {
    /// The segment selector.
    pub selector: U32,
    /// The limit from the descriptor cache, in bytes (granularity applied).
    pub limit: U32,
    /// QEMU's descriptor flags word (`SegmentCache.flags`: type, DPL, P, L, D/B, G bits).
    pub flags: U32,
    /// Zero.
    pub pad: U32,
    /// The base address from the descriptor cache.
    pub base: U64,
}

/// `QEMUCPUState` version 1 with `kernel_gs_base`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub(crate) struct QemuCpuState {
    /// [`QEMU_CPU_STATE_VERSION`].
    pub version: U32,
    /// The size QEMU wrote, in bytes (440, or 432 before `kernel_gs_base`).
    pub size: U32,
    /// rax rbx rcx rdx rsi rdi rsp rbp r8 … r15 (see [`gpr`]).
    pub gpr: [U64; 16],
    /// The instruction pointer.
    pub rip: U64,
    /// RFLAGS.
    pub rflags: U64,
    /// cs ds es fs gs ss ldt tr gdt idt.
    pub segs: [QemuCpuSegment; 10],
    /// CR0 to CR4 (`cr[1]` is reserved and zero).
    pub cr: [U64; 5],
    /// The `IA32_KERNEL_GS_BASE` MSR (the base `swapgs` swaps in).
    pub kernel_gs_base: U64,
}

const _: () = assert!(std::mem::size_of::<QemuCpuSegment>() == 24);
const _: () = assert!(std::mem::size_of::<QemuCpuState>() == QEMU_CPU_STATE_SIZE);
const _: () =
    assert!(std::mem::offset_of!(QemuCpuState, kernel_gs_base) == QEMU_CPU_STATE_SIZE_V1_OLD);
