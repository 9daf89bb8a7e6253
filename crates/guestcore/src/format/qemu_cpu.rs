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

/// Indices into [`QemuCpuState::gpr`] (QEMU note order).
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RBX: usize = 1;
    pub const RCX: usize = 2;
    pub const RDX: usize = 3;
    pub const RSI: usize = 4;
    pub const RDI: usize = 5;
    pub const RSP: usize = 6;
    pub const RBP: usize = 7;
    /// r8 … r15 follow at 8 … 15.
    pub const R8: usize = 8;
}

/// Segment indices into [`QemuCpuState::segs`].
pub mod seg {
    pub const CS: usize = 0;
    pub const DS: usize = 1;
    pub const ES: usize = 2;
    pub const FS: usize = 3;
    pub const GS: usize = 4;
    pub const SS: usize = 5;
    pub const LDT: usize = 6;
    pub const TR: usize = 7;
    pub const GDT: usize = 8;
    pub const IDT: usize = 9;
}

/// `QEMUCPUSegment`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct QemuCpuSegment {
    pub selector: U32,
    pub limit: U32,
    pub flags: U32,
    pub pad: U32,
    pub base: U64,
}

/// `QEMUCPUState` version 1 with `kernel_gs_base`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct QemuCpuState {
    pub version: U32,
    pub size: U32,
    pub gpr: [U64; 16],
    pub rip: U64,
    pub rflags: U64,
    pub segs: [QemuCpuSegment; 10],
    pub cr: [U64; 5],
    pub kernel_gs_base: U64,
}

const _: () = assert!(std::mem::size_of::<QemuCpuSegment>() == 24);
const _: () = assert!(std::mem::size_of::<QemuCpuState>() == QEMU_CPU_STATE_SIZE);
const _: () =
    assert!(std::mem::offset_of!(QemuCpuState, kernel_gs_base) == QEMU_CPU_STATE_SIZE_V1_OLD);
