//! AArch64 system registers named by their encoding (op0, op1, CRn, CRm, op2), and the 64-bit
//! register id KVM gives each (`arch/arm64/include/uapi/asm/kvm.h`: `KVM_REG_ARM64 |
//! KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | op0 << 14 | op1 << 11 | CRn << 7 | CRm << 3 | op2`).
//!
//! Why here: QEMU migrates an Arm vCPU's system registers as two parallel arrays in its `cpu`
//! section, `cpreg_vmstate_indexes` and `cpreg_vmstate_values` (`target/arm/machine.c`), and
//! the indexes are these KVM ids under TCG as under KVM (seen in a QEMU 10.0 `-M virt -cpu
//! max` TCG stream: TTBR0_EL1 is `0x6030_0000_0013_c100`). The same arrays hold AArch32 and
//! other coprocessor registers under other ids (`0x4020…`, `0x4030…`), which
//! [`SysReg::from_kvm_id`] does not take for AArch64 ones.

/// `KVM_REG_ARM64`: the architecture field of an arm64 register id.
const KVM_REG_ARM64: u64 = 0x6000_0000_0000_0000;
/// `KVM_REG_SIZE_U64`: the register is 64 bits.
const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
/// `KVM_REG_ARM64_SYSREG`: the coprocessor field of a system register (0x13 << 16).
const KVM_REG_ARM64_SYSREG: u64 = 0x0013 << 16;
/// The fixed high bits of every 64-bit AArch64 system register id.
const SYSREG_ID_BASE: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG;

/// An AArch64 system register's encoding, as `MRS`/`MSR` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysReg {
    /// op0 (2 bits; 3 for the registers here).
    pub op0: u8,
    /// op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// op2 (3 bits).
    pub op2: u8,
}

impl SysReg {
    /// The register with this encoding (each field masked to its width).
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        SysReg {
            op0: op0 & 3,
            op1: op1 & 7,
            crn: crn & 15,
            crm: crm & 15,
            op2: op2 & 7,
        }
    }

    /// The KVM register id (what QEMU's `cpreg_vmstate_indexes` holds).
    pub const fn kvm_id(self) -> u64 {
        SYSREG_ID_BASE
            | (self.op0 as u64) << 14
            | (self.op1 as u64) << 11
            | (self.crn as u64) << 7
            | (self.crm as u64) << 3
            | self.op2 as u64
    }

    /// The register a KVM id names, `None` when the id is not a 64-bit AArch64 system
    /// register's (an AArch32 coprocessor register, a core register, a wrong size).
    pub const fn from_kvm_id(id: u64) -> Option<Self> {
        if id & !0xffff != SYSREG_ID_BASE {
            return None;
        }
        Some(SysReg::new(
            ((id >> 14) & 3) as u8,
            ((id >> 11) & 7) as u8,
            ((id >> 7) & 15) as u8,
            ((id >> 3) & 15) as u8,
            (id & 7) as u8,
        ))
    }
}

/// SCTLR_EL1: S3_0_C1_C0_0.
pub const SCTLR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 0);
/// TTBR0_EL1: S3_0_C2_C0_0.
pub const TTBR0_EL1: SysReg = SysReg::new(3, 0, 2, 0, 0);
/// TTBR1_EL1: S3_0_C2_C0_1.
pub const TTBR1_EL1: SysReg = SysReg::new(3, 0, 2, 0, 1);
/// TCR_EL1: S3_0_C2_C0_2.
pub const TCR_EL1: SysReg = SysReg::new(3, 0, 2, 0, 2);
/// ID_AA64MMFR0_EL1: S3_0_C0_C7_0.
pub const ID_AA64MMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 7, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_ids_as_qemu_migrates_them() {
        // The ids a QEMU 10.0 TCG `-M virt -cpu max` stream holds for these registers.
        assert_eq!(TTBR0_EL1.kvm_id(), 0x6030_0000_0013_c100);
        assert_eq!(TTBR1_EL1.kvm_id(), 0x6030_0000_0013_c101);
        assert_eq!(TCR_EL1.kvm_id(), 0x6030_0000_0013_c102);
        assert_eq!(SCTLR_EL1.kvm_id(), 0x6030_0000_0013_c080);
        assert_eq!(ID_AA64MMFR0_EL1.kvm_id(), 0x6030_0000_0013_c038);
        for r in [TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1, ID_AA64MMFR0_EL1] {
            assert_eq!(SysReg::from_kvm_id(r.kvm_id()), Some(r));
        }
        // Every encoding survives the round trip.
        let r = SysReg::new(3, 7, 15, 15, 7);
        assert_eq!(SysReg::from_kvm_id(r.kvm_id()), Some(r));
        // AArch32 coprocessor ids from the same stream, and a 32-bit-sized sysreg id, are not.
        for id in [
            0x4020_0000_000f_6800,
            0x4030_0000_200e_0000,
            0x6020_0000_0013_c100,
            0,
        ] {
            assert_eq!(SysReg::from_kvm_id(id), None, "{id:#x}");
        }
    }
}
