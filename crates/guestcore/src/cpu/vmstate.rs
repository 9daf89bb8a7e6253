//! A vCPU's registers from its `cpu` device section (QEMU's `target/i386/machine.c`,
//! `vmstate_x86_cpu`), located by the vmdesc's field names rather than by fixed offsets,
//! since the field list changes with the CPU model and QEMU version.
//!
//! Fields used: `env.regs` (16 × u64 in QEMU's order rax rcx rdx rbx rsp rbp rsi rdi r8–r15),
//! `env.eip`, `env.eflags`, `env.segs` (6 segments es cs ss ds fs gs, each `selector`, `base`,
//! `limit`, `flags`), `env.ldt`, `env.tr`, `env.gdt`, `env.idt`, `env.cr[0]`, `env.cr[2]`,
//! `env.cr[3]`, `env.cr[4]`, `env.efer`, `env.a20_mask`, `env.kernelgsbase`. Integers are
//! big-endian, as every vmstate integer.
//!
//! An aarch64 vCPU's section (`target/arm/machine.c`) is decoded beside it by
//! [`decode_cpu_aarch64`]; [`section_arch`] says which of the two a section is, from the
//! fields its vmdesc entry names.

use crate::cpu::{Segment, X86CpuState};
use crate::format::elf::Arch;
use crate::format::vmdesc::{be_uint, DeviceDesc, FieldAt};
use crate::{Error, Result};
use std::path::Path;

/// `env.regs` index of each of [`X86CpuState::gpr`]'s registers (rax rbx rcx rdx rsi rdi rbp
/// rsp r8–r15).
const GPR_FROM_ENV: [u64; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

pub mod aarch64;
pub use aarch64::decode_cpu_aarch64;

/// The architecture of the vCPU a `cpu` section saved, from its vmdesc entry's fields: x86's
/// `vmstate_x86_cpu` has `env.eip`, Arm's `vmstate_arm_cpu` `env.xregs` and `env.pc`. `None`
/// for neither (another target, or a vmdesc that describes no such fields).
pub fn section_arch(desc: &DeviceDesc) -> Option<Arch> {
    let has = |name: &str| desc.fields.iter().any(|f| f.name == name);
    if has("env.xregs") && has("env.pc") {
        Some(Arch::Aarch64)
    } else if has("env.eip") && has("env.regs") {
        Some(Arch::X86)
    } else {
        None
    }
}

/// Decodes one `cpu` section of either architecture ([`section_arch`]); a section of neither is
/// read as x86's, whose decoder names the field it lacks.
pub fn decode_any(desc: &DeviceDesc, data: &[u8], path: &Path) -> Result<crate::cpu::CpuState> {
    match section_arch(desc) {
        Some(Arch::Aarch64) => decode_cpu_aarch64(desc, data, path).map(Into::into),
        _ => decode_cpu(desc, data, path).map(Into::into),
    }
}

/// One `cpu` section read by its vmdesc's field names (both architectures' decoders), each
/// failure an error naming the file and the section.
struct Section<'a> {
    desc: &'a DeviceDesc,
    data: &'a [u8],
    path: &'a Path,
    /// How the section is named in errors (`cpu`, `aarch64 cpu`).
    kind: &'static str,
}

impl<'a> Section<'a> {
    /// The section, once its length matches what its vmdesc describes.
    fn new(
        desc: &'a DeviceDesc,
        data: &'a [u8],
        path: &'a Path,
        kind: &'static str,
    ) -> Result<Self> {
        desc.check_section(data, path)?;
        Ok(Section {
            desc,
            data,
            path,
            kind,
        })
    }

    fn bad(&self, what: String) -> Error {
        Error::format(
            self.path,
            format!(
                "{} section instance {}: {what}",
                self.kind, self.desc.instance_id
            ),
        )
    }

    fn field(&self, name: &str) -> Result<FieldAt<'a>> {
        self.desc
            .field(name)
            .ok_or_else(|| self.bad(format!("the vmdesc has no field {name}")))
    }

    /// Element `i` of `f`, an unsigned integer of `want` bytes.
    fn uint(&self, f: &FieldAt, i: u64, want: u64) -> Result<u64> {
        if f.size != want {
            return Err(self.bad(format!(
                "field {} has {} bytes per element, not {want}",
                f.field.name, f.size
            )));
        }
        f.uint(self.data, i)
            .ok_or_else(|| self.bad(format!("field {} element {i} is missing", f.field.name)))
    }
}

/// Decodes one x86 `cpu` section (`data`, described by `desc`) into vCPU `index`'s state.
pub fn decode_cpu(desc: &DeviceDesc, data: &[u8], path: &Path) -> Result<X86CpuState> {
    let sec = Section::new(desc, data, path, "cpu")?;
    let bad = |what: String| sec.bad(what);
    let field = |name: &str| sec.field(name);
    let uint = |f: &FieldAt, i: u64, want: u64| sec.uint(f, i, want);
    let u64_of = |name: &str| uint(&field(name)?, 0, 8);

    let mut s = X86CpuState::new(desc.instance_id);
    let regs = field("env.regs")?;
    if regs.count < 8 {
        return Err(bad(format!("env.regs has {} registers", regs.count)));
    }
    for (i, &from) in GPR_FROM_ENV.iter().enumerate() {
        if from < regs.count {
            s.gpr[i] = uint(&regs, from, 8)?;
        }
    }
    s.rip = u64_of("env.eip")?;
    s.rflags = u64_of("env.eflags")?;
    let segment = |f: &FieldAt, i: u64| -> Result<Segment> {
        let el = f
            .element(data, i)
            .ok_or_else(|| bad(format!("segment {} element {i} is missing", f.field.name)))?;
        let member = |m: &str| -> Result<u64> {
            let (off, size) = f
                .member(m)
                .ok_or_else(|| bad(format!("segment {} has no member {m}", f.field.name)))?;
            usize::try_from(off)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(o, n)| el.get(o..o.checked_add(n)?))
                .and_then(be_uint)
                .ok_or_else(|| {
                    bad(format!(
                        "segment {} member {m} lies outside it",
                        f.field.name
                    ))
                })
        };
        Ok(Segment {
            selector: member("selector")? as u32,
            base: member("base")?,
            limit: member("limit")? as u32,
            flags: member("flags")? as u32,
        })
    };
    let segs = field("env.segs")?;
    if segs.count < 6 {
        return Err(bad(format!("env.segs has {} segments", segs.count)));
    }
    s.es = segment(&segs, 0)?;
    s.cs = segment(&segs, 1)?;
    s.ss = segment(&segs, 2)?;
    s.ds = segment(&segs, 3)?;
    s.fs = segment(&segs, 4)?;
    s.gs = segment(&segs, 5)?;
    s.ldt = segment(&field("env.ldt")?, 0)?;
    s.tr = segment(&field("env.tr")?, 0)?;
    s.gdt = segment(&field("env.gdt")?, 0)?;
    s.idt = segment(&field("env.idt")?, 0)?;
    s.cr[0] = u64_of("env.cr[0]")?;
    s.cr[2] = u64_of("env.cr[2]")?;
    s.cr[3] = u64_of("env.cr[3]")?;
    s.cr[4] = u64_of("env.cr[4]")?;
    s.efer = u64_of("env.efer")?;
    s.efer_inferred = false;
    if let Ok(k) = u64_of("env.kernelgsbase") {
        s.kernel_gs_base = k;
    }
    // a20_mask is all ones when A20 is enabled, bit 20 clear when it is masked.
    if let Ok(f) = field("env.a20_mask") {
        s.a20_enabled = uint(&f, 0, 4)? & (1 << 20) != 0;
    }
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vmdesc::Vmdesc;

    /// A vmdesc `cpu` entry with the fields decode_cpu reads (in QEMU's order, with a few
    /// fields it skips in between) and the matching section bytes.
    pub(crate) fn cpu_section(instance: u32, state: &X86CpuState) -> (String, Vec<u8>) {
        let seg = r#"{"vmsd_name": "segment", "version": 1, "fields": [
            {"name": "selector", "type": "uint32", "size": 4},
            {"name": "base", "type": "uint64", "size": 8},
            {"name": "limit", "type": "uint32", "size": 4},
            {"name": "flags", "type": "uint32", "size": 4}]}"#;
        let json = format!(
            r#"{{"name": "cpu", "instance_id": {instance}, "vmsd_name": "cpu", "version": 12, "fields": [
            {{"name": "env.regs", "array_len": 16, "type": "uint64", "size": 8}},
            {{"name": "env.eip", "type": "uint64", "size": 8}},
            {{"name": "env.eflags", "type": "uint64", "size": 8}},
            {{"name": "env.hflags", "type": "uint32", "size": 4}},
            {{"name": "env.segs", "array_len": 6, "type": "struct", "struct": {seg}, "size": 20}},
            {{"name": "env.ldt", "type": "struct", "struct": {seg}, "size": 20}},
            {{"name": "env.tr", "type": "struct", "struct": {seg}, "size": 20}},
            {{"name": "env.gdt", "type": "struct", "struct": {seg}, "size": 20}},
            {{"name": "env.idt", "type": "struct", "struct": {seg}, "size": 20}},
            {{"name": "env.cr[0]", "type": "uint64", "size": 8}},
            {{"name": "env.cr[2]", "type": "uint64", "size": 8}},
            {{"name": "env.cr[3]", "type": "uint64", "size": 8}},
            {{"name": "env.cr[4]", "type": "uint64", "size": 8}},
            {{"name": "env.a20_mask", "type": "int32", "size": 4}},
            {{"name": "env.efer", "type": "uint64", "size": 8}},
            {{"name": "env.kernelgsbase", "type": "uint64", "size": 8}}],
            "subsections": [{{"vmsd_name": "cpu/x", "version": 1, "fields": [
                {{"name": "x", "type": "uint8", "size": 1}}]}}]}}"#
        );
        let mut d = Vec::new();
        let mut regs = [0u64; 16];
        for (i, &from) in GPR_FROM_ENV.iter().enumerate() {
            regs[from as usize] = state.gpr[i];
        }
        for r in regs {
            d.extend_from_slice(&r.to_be_bytes());
        }
        d.extend_from_slice(&state.rip.to_be_bytes());
        d.extend_from_slice(&state.rflags.to_be_bytes());
        d.extend_from_slice(&7u32.to_be_bytes());
        let seg_bytes = |d: &mut Vec<u8>, s: &Segment| {
            d.extend_from_slice(&s.selector.to_be_bytes());
            d.extend_from_slice(&s.base.to_be_bytes());
            d.extend_from_slice(&s.limit.to_be_bytes());
            d.extend_from_slice(&s.flags.to_be_bytes());
        };
        for s in [
            &state.es, &state.cs, &state.ss, &state.ds, &state.fs, &state.gs, &state.ldt,
            &state.tr, &state.gdt, &state.idt,
        ] {
            seg_bytes(&mut d, s);
        }
        for c in [0, 2, 3, 4] {
            d.extend_from_slice(&state.cr[c].to_be_bytes());
        }
        let a20: u32 = if state.a20_enabled { !0 } else { !(1 << 20) };
        d.extend_from_slice(&a20.to_be_bytes());
        d.extend_from_slice(&state.efer.to_be_bytes());
        d.extend_from_slice(&state.kernel_gs_base.to_be_bytes());
        d.extend_from_slice(&[5, 5]);
        d.extend_from_slice(b"cpu/x");
        d.extend_from_slice(&1u32.to_be_bytes());
        d.push(9);
        (json, d)
    }

    pub(crate) fn sample_state(index: u32) -> X86CpuState {
        let mut s = X86CpuState::new(index);
        for (i, g) in s.gpr.iter_mut().enumerate() {
            *g = 0x1000 + i as u64;
        }
        s.rip = 0xffff_ffff_8100_0000 + index as u64;
        s.rflags = 0x246;
        s.cs = Segment {
            selector: 0x10,
            limit: 0xffff_ffff,
            flags: 0xa09b00,
            base: 0,
        };
        s.gs.base = 0xffff_8880_0000_0000;
        s.gdt = Segment {
            base: 0xffff_fe00_0000_1000,
            limit: 0x7f,
            ..Default::default()
        };
        s.cr = [0x8005_0033, 0, 0x7f00_0000, 0x1234_5000, 0x6f0];
        s.efer = 0xd01;
        s.kernel_gs_base = 0x55;
        s
    }

    #[test]
    fn sections_say_their_architecture() {
        let parse = |json: String| {
            Vmdesc::parse(
                format!(r#"{{"devices": [{json}]}}"#).as_bytes(),
                Path::new("t"),
            )
            .unwrap()
        };
        let x86 = parse(cpu_section(0, &sample_state(0)).0);
        assert_eq!(section_arch(x86.device("cpu", 0).unwrap()), Some(Arch::X86));
        let arm = parse(aarch64::tests::cpu_section(0, &aarch64::tests::sample_state(0)).0);
        assert_eq!(
            section_arch(arm.device("cpu", 0).unwrap()),
            Some(Arch::Aarch64)
        );
        let none = parse(r#"{"name": "cpu", "instance_id": 0, "fields": []}"#.into());
        assert_eq!(section_arch(none.device("cpu", 0).unwrap()), None);
    }

    #[test]
    fn decodes_by_field_names() {
        let want = sample_state(1);
        let (json, data) = cpu_section(1, &want);
        let d = Vmdesc::parse(
            format!(r#"{{"devices": [{json}]}}"#).as_bytes(),
            Path::new("t"),
        )
        .unwrap();
        let got = decode_cpu(d.device("cpu", 1).unwrap(), &data, Path::new("t")).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.gpr[7], 0x1007, "rsp");

        // One byte short: the vmdesc no longer matches the section.
        let e = decode_cpu(d.device("cpu", 1).unwrap(), &data[1..], Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("vmdesc describes"), "{e}");
        // A vmdesc that calls eip 4 bytes wide.
        let lying = json.replacen(
            r#""env.eip", "type": "uint64", "size": 8"#,
            r#""env.eip", "type": "uint64", "size": 4"#,
            1,
        );
        let d = Vmdesc::parse(
            format!(r#"{{"devices": [{lying}]}}"#).as_bytes(),
            Path::new("t"),
        )
        .unwrap();
        assert!(decode_cpu(d.device("cpu", 1).unwrap(), &data[4..], Path::new("t")).is_err());
    }
}
