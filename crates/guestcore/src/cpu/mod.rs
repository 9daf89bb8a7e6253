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
pub use state::{
    Segment, X86CpuState, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME, EFER_NXE,
};
