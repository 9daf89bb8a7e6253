//! The notes a dump carries, in the order QEMU writes them and crash, gdb and drgn expect:
//! `NT_PRSTATUS` per vCPU, the `QEMU` CPU-state note per vCPU, then the guest's VMCOREINFO.
//!
//! When the CPU state came from the source's own notes they are kept byte for byte (the
//! PRSTATUS notes hold pids and signal info no other source has); when it came from elsewhere
//! (HMP text, command-line registers, a raw image) both notes are built from that state.

use crate::cpu::notes::{encode_prstatus_i386, encode_prstatus_x86_64, encode_qemu_note};
use crate::cpu::CpuState;
use crate::format::note::{NT_PRSTATUS, NT_QEMU_CPUSTATE, VMCOREINFO_NAME};
use crate::format::ElfNote;

/// Where a dump's CPU state comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuNotes<'a> {
    /// Keep these source notes (the CPU state was decoded from them).
    FromSource(&'a [ElfNote]),
    /// Build notes from the given states; `long_mode` picks the x86_64 or i386 PRSTATUS layout.
    Build {
        /// The vCPUs: a `CORE` NT_PRSTATUS each (pid: position + 1), then a `QEMU` note each.
        cpus: &'a [CpuState],
        /// True for the x86_64 layouts, false for i386.
        long_mode: bool,
    },
}

/// The notes of a dump: CPU notes as chosen, then the VMCOREINFO `vmcoreinfo` (the source's
/// note kept byte for byte when it holds the same text), then any other source notes
/// unchanged.
pub fn dump_notes(
    cpu: CpuNotes<'_>,
    source_notes: &[ElfNote],
    vmcoreinfo: Option<&[u8]>,
) -> Vec<ElfNote> {
    let is_prstatus = |n: &ElfNote| n.name == b"CORE" && n.n_type == NT_PRSTATUS;
    let is_qemu = |n: &ElfNote| n.name == b"QEMU" && n.n_type == NT_QEMU_CPUSTATE;
    let is_vmcoreinfo = |n: &ElfNote| n.name == VMCOREINFO_NAME;
    let mut out = Vec::new();
    match cpu {
        CpuNotes::FromSource(notes) => {
            out.extend(notes.iter().filter(|n| is_prstatus(n)).cloned());
            out.extend(notes.iter().filter(|n| is_qemu(n)).cloned());
        }
        CpuNotes::Build { cpus, long_mode } => {
            // Only x86 vCPUs reach here until the AArch64 PRSTATUS encoder is wired in
            // (issue 28): the views refuse AArch64 vCPUs before a dump is planned.
            let x86: Vec<_> = cpus.iter().filter_map(CpuState::as_x86).collect();
            for (i, c) in x86.iter().enumerate() {
                let pid = i as u32 + 1;
                out.push(if long_mode {
                    encode_prstatus_x86_64(c, pid)
                } else {
                    encode_prstatus_i386(c, pid)
                });
            }
            out.extend(x86.iter().map(|c| encode_qemu_note(c)));
        }
    }
    // The VMCOREINFO of the kernel the dump describes: the source's own note byte for byte
    // when it holds that text, a new note otherwise, and none when `vmcoreinfo` is None (a
    // dump never pairs one kernel's tables with another kernel's VMCOREINFO).
    if let Some(v) = vmcoreinfo {
        let trimmed = |d: &[u8]| -> usize { d.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) };
        match source_notes
            .iter()
            .find(|n| is_vmcoreinfo(n) && n.desc[..trimmed(&n.desc)] == v[..trimmed(v)])
        {
            Some(n) => out.push(n.clone()),
            None => out.push(ElfNote::new(VMCOREINFO_NAME, 0, v.to_vec())),
        }
    }
    out.extend(
        source_notes
            .iter()
            .filter(|n| !is_prstatus(n) && !is_qemu(n) && !is_vmcoreinfo(n))
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::notes::cpus_from_notes;
    use crate::cpu::X86CpuState;

    #[test]
    fn built_notes_are_in_qemu_order_and_decode_back() {
        let mut a = X86CpuState::new(0);
        a.cr[3] = 0x1000;
        a.rip = 0xffff_ffff_8100_0000;
        let mut b = X86CpuState::new(1);
        b.cr[3] = 0x2000;
        let notes = dump_notes(
            CpuNotes::Build {
                cpus: &[a.clone().into(), b.clone().into()],
                long_mode: true,
            },
            &[],
            Some(b"OSRELEASE=6.1.0\n"),
        );
        let kinds: Vec<_> = notes.iter().map(|n| (n.name_str(), n.desc.len())).collect();
        assert_eq!(
            kinds,
            vec![
                ("CORE".to_string(), 336),
                ("CORE".to_string(), 336),
                ("QEMU".to_string(), 440),
                ("QEMU".to_string(), 440),
                ("VMCOREINFO".to_string(), 16)
            ]
        );
        let back = cpus_from_notes(&notes, 62);
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].cr[3], back[0].rip, back[1].cr[3]),
            (0x1000, a.rip, 0x2000)
        );
    }

    #[test]
    fn source_notes_kept_byte_for_byte_and_reordered() {
        let src = vec![
            ElfNote::new(VMCOREINFO_NAME, 0, b"X=1\n".to_vec()),
            ElfNote::new(b"QEMU", 0, vec![7; 440]),
            ElfNote::new(b"CORE", 1, vec![9; 336]),
            ElfNote::new(b"LINUX", 0x202, vec![1, 2, 3]),
        ];
        let notes = dump_notes(CpuNotes::FromSource(&src), &src, Some(b"X=1\n\0\0"));
        assert_eq!(
            notes,
            vec![
                src[2].clone(),
                src[1].clone(),
                src[0].clone(),
                src[3].clone()
            ]
        );
    }

    #[test]
    fn another_kernels_vmcoreinfo_replaces_the_sources_and_none_drops_it() {
        let src = vec![ElfNote::new(
            VMCOREINFO_NAME,
            0,
            b"OSRELEASE=capture\n".to_vec(),
        )];
        let notes = dump_notes(
            CpuNotes::FromSource(&src),
            &src,
            Some(b"OSRELEASE=crashed\n"),
        );
        assert_eq!(
            notes,
            vec![ElfNote::new(
                VMCOREINFO_NAME,
                0,
                b"OSRELEASE=crashed\n".to_vec()
            )]
        );
        assert!(dump_notes(CpuNotes::FromSource(&src), &src, None).is_empty());
    }
}
