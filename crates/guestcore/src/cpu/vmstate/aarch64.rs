//! An aarch64 vCPU's registers from its `cpu` device section (QEMU's `target/arm/machine.c`,
//! `vmstate_arm_cpu`), located by the vmdesc's field names, as [`super::decode_cpu`] does for
//! x86.
//!
//! Fields used (their order and sizes as a QEMU 10.0 `-M virt -cpu max` stream's vmdesc
//! describes them, version 22): `env.xregs` (32 × u64: x0–x30, then the stack pointer in use),
//! `env.pc` (u64), `cpsr` (4 bytes: PSTATE as `pstate_read` gives it for an AArch64 vCPU),
//! `cpreg_vmstate_indexes` and `cpreg_vmstate_values` (two arrays of the same length, u64
//! each: every system register QEMU migrates, by its KVM id, see
//! [`crate::format::arm64_sysreg`]). Integers are big-endian, as every vmstate integer.
//!
//! From the cpreg arrays come TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1 and ID_AA64MMFR0_EL1; a
//! register the arrays lack stays `None`. A vCPU stopped in AArch32 state (PSTATE.nRW, bit 4)
//! keeps its general registers in `env.regs`, not `env.xregs`: its x registers are then what
//! QEMU last synchronised, and its system registers are still right.

use super::Section;
use crate::cpu::Aarch64CpuState;
use crate::format::arm64_sysreg::{
    SysReg, ID_AA64MMFR0_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1,
};
use crate::format::vmdesc::{DeviceDesc, FieldAt};
use crate::Result;
use std::path::Path;

/// Where in [`Aarch64CpuState`] a system register goes.
type Slot = fn(&mut Aarch64CpuState) -> &mut Option<u64>;

/// The system registers taken from the cpreg arrays, and where each goes.
const SYSREGS: [(SysReg, Slot); 5] = [
    (TTBR0_EL1, |s| &mut s.ttbr0_el1),
    (TTBR1_EL1, |s| &mut s.ttbr1_el1),
    (TCR_EL1, |s| &mut s.tcr_el1),
    (SCTLR_EL1, |s| &mut s.sctlr_el1),
    (ID_AA64MMFR0_EL1, |s| &mut s.id_aa64mmfr0_el1),
];

/// Decodes one aarch64 `cpu` section (`data`, described by `desc`) into vCPU `index`'s state.
pub fn decode_cpu_aarch64(desc: &DeviceDesc, data: &[u8], path: &Path) -> Result<Aarch64CpuState> {
    let sec = Section::new(desc, data, path, "aarch64 cpu")?;
    let bad = |what: String| sec.bad(what);
    let field = |name: &str| sec.field(name);
    let uint = |f: &FieldAt, i: u64, want: u64| sec.uint(f, i, want);

    let mut s = Aarch64CpuState::new(desc.instance_id);
    let xregs = field("env.xregs")?;
    if xregs.count < 32 {
        return Err(bad(format!(
            "env.xregs has {} registers, not 32",
            xregs.count
        )));
    }
    for (i, x) in s.x.iter_mut().enumerate() {
        *x = uint(&xregs, i as u64, 8)?;
    }
    s.sp = uint(&xregs, 31, 8)?;
    s.pc = uint(&field("env.pc")?, 0, 8)?;
    s.pstate = uint(&field("cpsr")?, 0, 4)?;

    let indexes = field("cpreg_vmstate_indexes")?;
    let values = field("cpreg_vmstate_values")?;
    if indexes.count != values.count {
        return Err(bad(format!(
            "cpreg_vmstate_indexes has {} entries but cpreg_vmstate_values {}",
            indexes.count, values.count
        )));
    }
    // The vmdesc's count was checked against the section's length: this loop reads no more
    // elements than the section holds.
    for i in 0..indexes.count {
        let Some(reg) = SysReg::from_kvm_id(uint(&indexes, i, 8)?) else {
            continue;
        };
        if let Some((_, slot)) = SYSREGS.iter().find(|(r, _)| *r == reg) {
            let slot = slot(&mut s);
            // The first entry wins, should a stream name a register twice.
            if slot.is_none() {
                *slot = Some(uint(&values, i, 8)?);
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vmdesc::Vmdesc;

    /// A vmdesc `cpu` entry in the shape QEMU 10's `vmstate_arm_cpu` has (the fields
    /// decode_cpu_aarch64 reads, with fields it skips around them) and the section's bytes.
    /// Only the system registers `state` has are put in the cpreg arrays, after an AArch32
    /// coprocessor register.
    pub(crate) fn cpu_section(instance: u32, state: &Aarch64CpuState) -> (String, Vec<u8>) {
        let mut cpregs: Vec<(u64, u64)> = vec![(0x4020_0000_000f_6800, 0x5a5a)];
        for (reg, slot) in SYSREGS {
            if let Some(v) = *slot(&mut state.clone()) {
                cpregs.push((reg.kvm_id(), v));
            }
        }
        let n = cpregs.len();
        let json = format!(
            r#"{{"name": "cpu", "instance_id": {instance}, "vmsd_name": "cpu", "version": 22, "fields": [
            {{"name": "env.regs", "array_len": 16, "type": "uint32", "size": 4}},
            {{"name": "env.xregs", "array_len": 32, "type": "uint64", "size": 8}},
            {{"name": "env.pc", "type": "uint64", "size": 8}},
            {{"name": "cpsr", "type": "cpsr", "size": 4}},
            {{"name": "env.spsr", "type": "uint32", "size": 4}},
            {{"name": "cpreg_vmstate_array_len", "type": "int32 le", "size": 4}},
            {{"name": "cpreg_vmstate_indexes", "array_len": {n}, "type": "uint64", "size": 8}},
            {{"name": "cpreg_vmstate_values", "array_len": {n}, "type": "uint64", "size": 8}},
            {{"name": "power_state", "type": "powered_off", "size": 1}}],
            "subsections": [{{"vmsd_name": "cpu/irq-line-state", "version": 1, "fields": [
                {{"name": "env.irq_line_state", "type": "uint32", "size": 4}}]}}]}}"#
        );
        let mut d = vec![0u8; 16 * 4];
        for x in state.x.iter().chain([&state.sp]) {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d.extend_from_slice(&state.pc.to_be_bytes());
        d.extend_from_slice(&(state.pstate as u32).to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(&(n as u32).to_be_bytes());
        for (id, _) in &cpregs {
            d.extend_from_slice(&id.to_be_bytes());
        }
        for (_, v) in &cpregs {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.push(0);
        d.extend_from_slice(&[5, 18]);
        d.extend_from_slice(b"cpu/irq-line-state");
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        (json, d)
    }

    pub(crate) fn sample_state(index: u32) -> Aarch64CpuState {
        let mut s = Aarch64CpuState::new(index);
        for (i, x) in s.x.iter_mut().enumerate() {
            *x = 0x1000 + i as u64;
        }
        s.sp = 0xffff_8000_0a00_3ec0;
        s.pc = 0xffff_8000_0801_2340 + index as u64;
        s.pstate = 0x6000_03c5;
        s.ttbr0_el1 = Some(0x0001_0000_4321_0000);
        s.ttbr1_el1 = Some(0x4123_4000);
        s.tcr_el1 = Some(0x0000_0034_b559_3519);
        s.sctlr_el1 = Some(0x30d0_199d);
        s.id_aa64mmfr0_el1 = Some(0x0000_0000_0000_1125);
        s
    }

    fn parse(json: &str) -> Vmdesc {
        Vmdesc::parse(
            format!(r#"{{"devices": [{json}]}}"#).as_bytes(),
            Path::new("t"),
        )
        .unwrap()
    }

    #[test]
    fn decodes_registers_and_sysregs_by_name() {
        let want = sample_state(1);
        let (json, data) = cpu_section(1, &want);
        let d = parse(&json);
        let got = decode_cpu_aarch64(d.device("cpu", 1).unwrap(), &data, Path::new("t")).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.current_el(), 1);
        assert_eq!(got.mmu_enabled(), Some(true));
    }

    #[test]
    fn sysregs_the_arrays_lack_are_none() {
        let mut want = sample_state(0);
        want.ttbr0_el1 = None;
        want.id_aa64mmfr0_el1 = None;
        let (json, data) = cpu_section(0, &want);
        let got = decode_cpu_aarch64(
            parse(&json).device("cpu", 0).unwrap(),
            &data,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(got.missing_translation_registers(), vec!["TTBR0_EL1"]);
    }

    #[test]
    fn a_lying_vmdesc_is_an_error() {
        let (json, data) = cpu_section(0, &sample_state(0));
        let d = parse(&json);
        let cpu = d.device("cpu", 0).unwrap();
        let e = decode_cpu_aarch64(cpu, &data[1..], Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("vmdesc describes"), "{e}");
        // Arrays of different lengths (same total bytes: the values array one shorter, the
        // irq-line-state subsection's field 8 bytes longer is not possible, so shorten the
        // section too).
        let lying = json.replacen(
            r#""cpreg_vmstate_values", "array_len": 6"#,
            r#""cpreg_vmstate_values", "array_len": 5"#,
            1,
        );
        assert_ne!(lying, json);
        let d = parse(&lying);
        let mut short = data.clone();
        short.drain(data.len() - 40..data.len() - 32);
        let e =
            decode_cpu_aarch64(d.device("cpu", 0).unwrap(), &short, Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("6 entries but"), "{e}");
        // An x86 section is not an aarch64 one.
        let (x86, x86_data) = crate::cpu::vmstate::tests::cpu_section(0, &Default::default());
        let d = parse(&x86);
        let e =
            decode_cpu_aarch64(d.device("cpu", 0).unwrap(), &x86_data, Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("no field env.xregs"), "{e}");
        // xregs 4 bytes wide.
        let narrow = json.replacen(
            r#""env.xregs", "array_len": 32, "type": "uint64", "size": 8"#,
            r#""env.xregs", "array_len": 64, "type": "uint64", "size": 4"#,
            1,
        );
        let d = parse(&narrow);
        assert!(decode_cpu_aarch64(d.device("cpu", 0).unwrap(), &data, Path::new("t")).is_err());
    }
}
