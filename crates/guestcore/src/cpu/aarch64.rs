//! [`Aarch64CpuState`]: one aarch64 vCPU's registers, as far as a source knows them.
//!
//! Why the system registers are `Option`s: unlike x86, where every source that has a vCPU has
//! its CR3, aarch64 sources differ in what they carry. QEMU's aarch64 ELF dump notes hold the
//! general registers (NT_PRSTATUS) but no translation registers; a migration stream's `cpu`
//! section and a live QEMU have all of them; a kernel found in RAM gives only the high half's
//! root and size (VMCOREINFO's `swapper_pg_dir`, `TCR_EL1_T1SZ`). A register a source lacks is
//! `None`, so the walker and the notices can say what is missing instead of walking zeros.
//!
//! Facts (Arm ARM, D8 "The AArch64 Virtual Memory System Architecture", and the register
//! descriptions of TCR_EL1, TTBRn_EL1, SCTLR_EL1, ID_AA64MMFR0_EL1) are summarised where each
//! field is decoded, in `paging`.

use serde::{Deserialize, Serialize};

/// SCTLR_EL1.M: the EL1&0 stage-1 MMU is on.
pub const SCTLR_M: u64 = 1 << 0;

/// One aarch64 vCPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aarch64CpuState {
    /// 0-based vCPU index as the source numbers it.
    pub index: u32,
    /// x0 … x30 (x29 is the frame pointer, x30 the link register).
    pub x: [u64; 31],
    /// The stack pointer in use at the time (the `sp` of NT_PRSTATUS).
    pub sp: u64,
    /// The program counter.
    pub pc: u64,
    /// PSTATE as the kernel's `pt_regs` keeps it (NZCV, DAIF, the current EL in bits 3:2, SPSel).
    pub pstate: u64,
    /// TTBR0_EL1: the root of the low half (user space); ASID in bits 63:48.
    pub ttbr0_el1: Option<u64>,
    /// TTBR1_EL1: the root of the high half (the kernel).
    pub ttbr1_el1: Option<u64>,
    /// TCR_EL1: T0SZ/T1SZ, granules TG0/TG1, IPS, EPD0/EPD1, DS (LPA2), TBI …
    pub tcr_el1: Option<u64>,
    /// SCTLR_EL1: M (MMU on), and the rest of the EL1 system control.
    pub sctlr_el1: Option<u64>,
    /// ID_AA64MMFR0_EL1: PARange, the implemented physical-address size.
    pub id_aa64mmfr0_el1: Option<u64>,
}

impl Aarch64CpuState {
    /// A state with every register zero and no system register known.
    pub fn new(index: u32) -> Self {
        Aarch64CpuState {
            index,
            ..Default::default()
        }
    }

    /// The exception level the vCPU was at (PSTATE bits 3:2).
    pub fn current_el(&self) -> u8 {
        ((self.pstate >> 2) & 3) as u8
    }

    /// `Some(true)` when SCTLR_EL1.M is set, `None` when the source has no SCTLR_EL1.
    pub fn mmu_enabled(&self) -> Option<bool> {
        self.sctlr_el1.map(|s| s & SCTLR_M != 0)
    }

    /// The names of the translation registers this state lacks (for notices and errors).
    pub fn missing_translation_registers(&self) -> Vec<&'static str> {
        [
            ("TTBR0_EL1", self.ttbr0_el1.is_none()),
            ("TTBR1_EL1", self.ttbr1_el1.is_none()),
            ("TCR_EL1", self.tcr_el1.is_none()),
            ("SCTLR_EL1", self.sctlr_el1.is_none()),
        ]
        .into_iter()
        .filter_map(|(n, missing)| missing.then_some(n))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn el_and_mmu_and_what_is_missing() {
        let mut s = Aarch64CpuState::new(1);
        s.pstate = 0x3c5; // EL1h with DAIF masked
        assert_eq!(s.current_el(), 1);
        assert_eq!(s.mmu_enabled(), None);
        s.sctlr_el1 = Some(0x30d0_199d);
        assert_eq!(s.mmu_enabled(), Some(true));
        s.ttbr1_el1 = Some(0x4142_0000);
        assert_eq!(
            s.missing_translation_registers(),
            vec!["TTBR0_EL1", "TCR_EL1"]
        );
    }
}
