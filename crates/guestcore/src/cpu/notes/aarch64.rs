//! aarch64 vCPUs ⇄ ELF notes: the `CORE` NT_PRSTATUS in the arm64 layout
//! ([`crate::format::prstatus`]: x0–x30, sp, pc, pstate).
//!
//! What QEMU 10's aarch64 `dump-guest-memory` writes per vCPU, in order (its
//! `target/arm/arch_dump.c`, and seen in a QEMU 10.0 `-M virt -cpu max` dump): NT_PRSTATUS
//! (`CORE`, 392 bytes, `pr_pid` = vCPU index + 1, `pr_fpvalid` = 1), NT_PRFPREG (`CORE`, 528
//! bytes: V0–V31, FPSR, FPCR) and, when the vCPU has SVE, NT_ARM_SVE (`LINUX`, type 0x405).
//! No note carries a system register: TTBR0/1_EL1, TCR_EL1, SCTLR_EL1 and ID_AA64MMFR0_EL1
//! are `None` in a state read from notes (unlike x86, where QEMU's own `QEMU` note has the
//! control registers). The FP/SVE notes are not registers a walk or a dump needs and are not
//! decoded; a writer of a core that gdb reads needs only NT_PRSTATUS.
//!
//! Only little-endian cores are read (the ELF readers refuse big-endian ones).

use super::prstatus_descs;
use crate::cpu::Aarch64CpuState;
use crate::format::note::{ElfNote, NT_PRSTATUS};
use crate::format::prstatus::{aarch64, PrStatusAarch64, CORE_NOTE_NAME, PRSTATUS_AARCH64_SIZE};
use crate::{Error, Result};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// A decoded aarch64 NT_PRSTATUS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aarch64PrStatus {
    /// `pr_pid`: QEMU writes the vCPU index + 1, Linux the task's pid.
    pub pid: u32,
    /// x0–x30, sp, pc, pstate; every system register `None` (index 0: the caller numbers it).
    pub state: Aarch64CpuState,
}

/// The aarch64 NT_PRSTATUS (`CORE`, 392 bytes) for one vCPU: its general registers, sp, pc
/// and pstate. `pr_fpvalid` is 0: no NT_PRFPREG is written beside it.
pub fn encode_prstatus_aarch64(cpu: &Aarch64CpuState, pid: u32) -> ElfNote {
    let mut p = PrStatusAarch64::new_zeroed();
    p.pid = U32::new(pid);
    for (dst, &src) in p.regs.iter_mut().zip(&cpu.x) {
        *dst = U64::new(src);
    }
    p.regs[aarch64::SP] = U64::new(cpu.sp);
    p.regs[aarch64::PC] = U64::new(cpu.pc);
    p.regs[aarch64::PSTATE] = U64::new(cpu.pstate);
    ElfNote::new(CORE_NOTE_NAME, NT_PRSTATUS, p.as_bytes().to_vec())
}

/// Decodes an aarch64 NT_PRSTATUS descriptor (exactly 392 bytes).
pub fn decode_prstatus_aarch64(desc: &[u8]) -> Result<Aarch64PrStatus> {
    let p = PrStatusAarch64::read_from_bytes(desc).map_err(|_| {
        Error::CpuState(format!(
            "aarch64 NT_PRSTATUS is {} bytes, expected {PRSTATUS_AARCH64_SIZE}",
            desc.len()
        ))
    })?;
    let mut state = Aarch64CpuState::new(0);
    for (dst, src) in state.x.iter_mut().zip(&p.regs[..aarch64::X_COUNT]) {
        *dst = src.get();
    }
    state.sp = p.regs[aarch64::SP].get();
    state.pc = p.regs[aarch64::PC].get();
    state.pstate = p.regs[aarch64::PSTATE].get();
    Ok(Aarch64PrStatus {
        pid: p.pid.get(),
        state,
    })
}

/// The aarch64 vCPUs of a core's notes, numbered 0, 1, … in note order: one per `CORE`
/// NT_PRSTATUS that decodes (general registers, sp, pc, pstate; no system register). Notes
/// that do not decode are skipped, as on x86.
pub fn aarch64_cpus_from_notes(notes: &[ElfNote]) -> Vec<Aarch64CpuState> {
    prstatus_descs(notes)
        .filter_map(|d| decode_prstatus_aarch64(d).ok())
        .enumerate()
        .map(|(i, p)| Aarch64CpuState {
            index: i as u32,
            ..p.state
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::note::{NT_ARM_SVE, NT_PRFPREG, NT_QEMU_CPUSTATE};

    fn sample(index: u32) -> Aarch64CpuState {
        let mut c = Aarch64CpuState::new(index);
        for (i, x) in c.x.iter_mut().enumerate() {
            *x = 0xa000_0000_0000_0000 + ((index as u64) << 16) + i as u64;
        }
        c.sp = 0xffff_8000_0800_3f00;
        c.pc = 0xffff_8000_0810_1234 + index as u64;
        c.pstate = 0x6000_03c5;
        c
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn prstatus_round_trip_at_the_kernel_offsets() {
        let cpu = sample(0);
        let note = encode_prstatus_aarch64(&cpu, 1);
        assert_eq!((note.name.as_slice(), note.n_type), (&b"CORE"[..], 1));
        let d = &note.desc;
        assert_eq!(d.len(), 392);
        assert_eq!(
            u32::from_le_bytes(d[32..36].try_into().unwrap()),
            1,
            "pr_pid"
        );
        assert_eq!(u64_at(d, 112), cpu.x[0], "x0 at pr_reg");
        assert_eq!(u64_at(d, 112 + 30 * 8), cpu.x[30], "x30 (lr)");
        assert_eq!(u64_at(d, 112 + 31 * 8), cpu.sp);
        assert_eq!(u64_at(d, 112 + 32 * 8), cpu.pc);
        assert_eq!(u64_at(d, 112 + 33 * 8), cpu.pstate);
        let back = decode_prstatus_aarch64(d).unwrap();
        assert_eq!((back.pid, back.state), (1, cpu));
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let d = encode_prstatus_aarch64(&sample(0), 1).desc;
        for n in [0, 336, 391, 393] {
            let mut b = d.clone();
            b.resize(n, 0);
            let e = decode_prstatus_aarch64(&b).unwrap_err();
            assert!(e.to_string().contains("expected 392"), "{n}: {e}");
        }
    }

    #[test]
    fn cpus_in_note_order_other_notes_skipped() {
        let notes = vec![
            encode_prstatus_aarch64(&sample(0), 1),
            ElfNote::new(b"CORE", NT_PRFPREG, vec![0; 528]),
            ElfNote::new(b"LINUX", NT_ARM_SVE, vec![0; 592]),
            ElfNote::new(b"CORE", NT_PRSTATUS, vec![0; 336]), // not the arm64 layout
            ElfNote::new(b"QEMU", NT_QEMU_CPUSTATE, vec![0; 392]),
            encode_prstatus_aarch64(&sample(1), 2),
        ];
        let cpus = aarch64_cpus_from_notes(&notes);
        assert_eq!(cpus, vec![sample(0), sample(1)]);
        assert!(cpus
            .iter()
            .all(|c| c.missing_translation_registers().len() == 4));
    }
}
