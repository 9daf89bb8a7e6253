//! `NT_PRSTATUS` descriptors (`CORE` notes): the Linux `elf_prstatus` that gdb, crash and
//! drgn read for per-thread registers. Only the pid and the register block matter to a VM dump;
//! signal and timing fields stay zero.
//!
//! Every 64-bit Linux (LP64) lays `elf_prstatus` out the same way around its `pr_reg`: a
//! 112-byte prefix (`pr_info`, `pr_cursig`, `pr_sigpend`, `pr_sighold`, then `pr_pid` at +32,
//! `pr_ppid`, `pr_pgrp`, `pr_sid`, four `timeval`s), the architecture's register block, then
//! `int pr_fpvalid` padded to 8. So the 64-bit layouts are one structure,
//! [`PrStatus64`], told apart by their register count alone:
//!
//! * x86_64: 336 bytes, `user_regs_struct` (27 × u64) at +112.
//! * aarch64: 392 bytes, `user_pt_regs` (x0–x30, sp, pc, pstate: 34 × u64) at +112
//!   (`arch/arm64/include/uapi/asm/ptrace.h`; QEMU's `target/arm/arch_dump.c` checks the same
//!   392 and writes `pr_fpvalid` 1, `pr_pid` the vCPU index + 1).
//! * i386: 144 bytes, `pr_pid` at +24, `user_regs_struct` (17 × u32) at +72; segment selectors are
//!   16-bit values stored in 32-bit slots.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Note name of NT_PRSTATUS.
pub const CORE_NOTE_NAME: &[u8] = b"CORE";
/// Size of the x86_64 `elf_prstatus`.
pub const PRSTATUS_X86_64_SIZE: usize = 336;
/// Size of the i386 `elf_prstatus`.
pub const PRSTATUS_I386_SIZE: usize = 144;
/// Size of the aarch64 `elf_prstatus`.
pub const PRSTATUS_AARCH64_SIZE: usize = 392;

/// Indices of x86_64 `user_regs_struct` fields in [`PrStatusX86_64::regs`].
pub(crate) mod x86_64 {
    pub(crate) const R15: usize = 0;
    pub(crate) const R14: usize = 1;
    pub(crate) const R13: usize = 2;
    pub(crate) const R12: usize = 3;
    pub(crate) const RBP: usize = 4;
    pub(crate) const RBX: usize = 5;
    pub(crate) const R11: usize = 6;
    pub(crate) const R10: usize = 7;
    pub(crate) const R9: usize = 8;
    pub(crate) const R8: usize = 9;
    pub(crate) const RAX: usize = 10;
    pub(crate) const RCX: usize = 11;
    pub(crate) const RDX: usize = 12;
    pub(crate) const RSI: usize = 13;
    pub(crate) const RDI: usize = 14;
    // 15: orig_rax (the syscall number, -1 outside one): left 0 in a VM dump.
    pub(crate) const RIP: usize = 16;
    pub(crate) const CS: usize = 17;
    pub(crate) const EFLAGS: usize = 18;
    pub(crate) const RSP: usize = 19;
    pub(crate) const SS: usize = 20;
    pub(crate) const FS_BASE: usize = 21;
    pub(crate) const GS_BASE: usize = 22;
    pub(crate) const DS: usize = 23;
    pub(crate) const ES: usize = 24;
    pub(crate) const FS: usize = 25;
    pub(crate) const GS: usize = 26;
    /// Number of registers.
    pub(crate) const COUNT: usize = 27;
}

/// Indices of i386 `user_regs_struct` fields in [`PrStatusI386::regs`].
pub(crate) mod i386 {
    pub(crate) const EBX: usize = 0;
    pub(crate) const ECX: usize = 1;
    pub(crate) const EDX: usize = 2;
    pub(crate) const ESI: usize = 3;
    pub(crate) const EDI: usize = 4;
    pub(crate) const EBP: usize = 5;
    pub(crate) const EAX: usize = 6;
    pub(crate) const DS: usize = 7;
    pub(crate) const ES: usize = 8;
    pub(crate) const FS: usize = 9;
    pub(crate) const GS: usize = 10;
    // 11: orig_eax (the syscall number, -1 outside one): left 0 in a VM dump.
    pub(crate) const EIP: usize = 12;
    pub(crate) const CS: usize = 13;
    pub(crate) const EFLAGS: usize = 14;
    pub(crate) const ESP: usize = 15;
    pub(crate) const SS: usize = 16;
    /// Number of registers.
    pub(crate) const COUNT: usize = 17;
}

/// Indices of aarch64 `user_pt_regs` fields in [`PrStatusAarch64::regs`]: x0 … x30 at 0 … 30.
pub(crate) mod aarch64 {
    /// x0 … x30.
    pub(crate) const X_COUNT: usize = 31;
    pub(crate) const SP: usize = 31;
    pub(crate) const PC: usize = 32;
    pub(crate) const PSTATE: usize = 33;
    /// Number of registers.
    pub(crate) const COUNT: usize = 34;
}

/// A 64-bit (LP64) `elf_prstatus` with `N` 64-bit registers in `pr_reg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct PrStatus64<const N: usize> {
    /// `pr_info` (signal info), `pr_cursig`, `pr_sigpend`, `pr_sighold`: zero.
    pub pad1: [u8; 32],
    /// `pr_pid`: the thread id gdb and crash show (the pid the caller passes in).
    pub pid: U32,
    /// `pr_ppid`, `pr_pgrp`, `pr_sid` and the four `timeval`s: zero.
    pub pad2: [u8; 76],
    /// `pr_reg`: the architecture's register block.
    pub regs: [U64; N],
    /// `pr_fpvalid` (an `int`) and tail padding to 8.
    pub fpvalid: U32,
    /// Tail padding: zero.
    pub pad3: [u8; 4],
}

/// x86_64 `elf_prstatus`, `regs` indexed by [`x86_64`].
pub(crate) type PrStatusX86_64 = PrStatus64<{ x86_64::COUNT }>;
/// aarch64 `elf_prstatus`, `regs` indexed by [`aarch64`].
pub(crate) type PrStatusAarch64 = PrStatus64<{ aarch64::COUNT }>;

/// i386 `elf_prstatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct PrStatusI386 {
    /// `pr_info` (signal info), `pr_cursig`, `pr_sigpend`, `pr_sighold`: zero.
    pub pad1: [u8; 24],
    /// `pr_pid`: the thread id gdb and crash show (the pid the caller passes in).
    pub pid: U32,
    /// `pr_ppid`, `pr_pgrp`, `pr_sid` and the four `timeval`s: zero.
    pub pad2: [u8; 44],
    /// `pr_reg`: `user_regs_struct`, indexed by [`i386`].
    pub regs: [U32; i386::COUNT],
    /// `pr_fpvalid`: zero.
    pub pad3: [u8; 4],
}

const _: () = assert!(std::mem::size_of::<PrStatusX86_64>() == PRSTATUS_X86_64_SIZE);
const _: () = assert!(std::mem::offset_of!(PrStatusX86_64, pid) == 32);
const _: () = assert!(std::mem::offset_of!(PrStatusX86_64, regs) == 112);
const _: () = assert!(std::mem::size_of::<PrStatusAarch64>() == PRSTATUS_AARCH64_SIZE);
const _: () = assert!(std::mem::offset_of!(PrStatusAarch64, regs) == 112);
const _: () = assert!(std::mem::offset_of!(PrStatusAarch64, fpvalid) == 384);
const _: () = assert!(std::mem::size_of::<PrStatusI386>() == PRSTATUS_I386_SIZE);
const _: () = assert!(std::mem::offset_of!(PrStatusI386, pid) == 24);
const _: () = assert!(std::mem::offset_of!(PrStatusI386, regs) == 72);
