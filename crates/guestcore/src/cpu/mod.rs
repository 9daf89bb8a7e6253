//! Virtual CPU state (x86 in [`X86CpuState`], aarch64 in [`Aarch64CpuState`]): the registers that decide how the guest translates addresses, plus the
//! rest of the register file that dumps carry for debuggers.
//!
//! Sources: the ELF notes QEMU writes ([`notes`]), the text of QEMU's HMP
//! `info registers -a` ([`hmp`]), and command-line flags (built by the CLI).

mod aarch64;
pub mod hmp;
pub mod notes;
mod state;
pub mod vmstate;

pub use aarch64::{Aarch64CpuState, SCTLR_M};
// (CpuState and Arch are defined below.)
pub use state::{
    Segment, X86CpuState, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME, EFER_NXE,
};

/// The architecture a vCPU (and so a guest) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// x86: 32-bit or long mode ([`X86CpuState`]).
    X86,
    /// AArch64 ([`Aarch64CpuState`]).
    Aarch64,
}

/// One vCPU of either architecture: what the facade, the views and the dumps carry, so that
/// one pipeline serves both. Code that needs an architecture's registers matches on it;
/// what every architecture has (its index, whether it translates) is a method here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "arch", rename_all = "kebab-case")]
pub enum CpuState {
    /// An x86 vCPU.
    X86(X86CpuState),
    /// An AArch64 vCPU.
    Aarch64(Aarch64CpuState),
}

impl CpuState {
    /// Its 0-based index as the source numbers it.
    pub fn index(&self) -> u32 {
        match self {
            CpuState::X86(c) => c.index,
            CpuState::Aarch64(c) => c.index,
        }
    }

    /// Its architecture.
    pub fn arch(&self) -> Arch {
        match self {
            CpuState::X86(_) => Arch::X86,
            CpuState::Aarch64(_) => Arch::Aarch64,
        }
    }

    /// True when it translates virtual addresses: x86 CR0.PG, AArch64 SCTLR_EL1.M (an
    /// AArch64 source without SCTLR_EL1 translates when it has a root).
    pub fn paging_enabled(&self) -> bool {
        match self {
            CpuState::X86(c) => c.paging_enabled(),
            CpuState::Aarch64(c) => c
                .mmu_enabled()
                .unwrap_or(c.ttbr0_el1.is_some() || c.ttbr1_el1.is_some()),
        }
    }

    /// True for 64-bit code: x86 long mode, and always on AArch64.
    pub fn is_64bit(&self) -> bool {
        match self {
            CpuState::X86(c) => c.long_mode(),
            CpuState::Aarch64(_) => true,
        }
    }

    /// The x86 registers, when it is an x86 vCPU.
    pub fn as_x86(&self) -> Option<&X86CpuState> {
        match self {
            CpuState::X86(c) => Some(c),
            CpuState::Aarch64(_) => None,
        }
    }

    /// The AArch64 registers, when it is an AArch64 vCPU.
    pub fn as_aarch64(&self) -> Option<&Aarch64CpuState> {
        match self {
            CpuState::Aarch64(c) => Some(c),
            CpuState::X86(_) => None,
        }
    }
}

impl From<X86CpuState> for CpuState {
    fn from(c: X86CpuState) -> Self {
        CpuState::X86(c)
    }
}

impl From<Aarch64CpuState> for CpuState {
    fn from(c: Aarch64CpuState) -> Self {
        CpuState::Aarch64(c)
    }
}
