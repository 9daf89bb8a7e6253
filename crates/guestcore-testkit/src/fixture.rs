//! Synthetic guests written to files, the way real inputs arrive: an ELF core like QEMU's
//! `dump-guest-memory` (physical PT_LOADs, PRSTATUS + QEMU notes, VMCOREINFO) or a raw image.
//! Tests of the CLI and of readers use these, so fixtures are generated, never committed.

use guestcore::cpu::{CpuState, X86CpuState};
use guestcore::dump::notes::{dump_notes, CpuNotes};
use guestcore::dump::{
    write_elf_core, DumpLayout, ElfClass, ElfDumpRequest, ElfMachine, OutputOptions,
};
use guestcore::phys::PhysMemory;
use guestcore::NoProgress;
use std::path::Path;

/// Writes `mem` as a physical (non-paging) ELF64 core with notes for `cpus` and an optional
/// VMCOREINFO text, like QEMU's `dump-guest-memory` with paging off.
pub fn write_qemu_like_core(
    path: &Path,
    mem: &dyn PhysMemory,
    cpus: &[X86CpuState],
    vmcoreinfo: Option<&[u8]>,
) -> guestcore::Result<()> {
    let long_mode = cpus.iter().any(|c| c.long_mode());
    let cpus: Vec<CpuState> = cpus.iter().cloned().map(CpuState::from).collect();
    let notes = dump_notes(
        CpuNotes::Build {
            cpus: &cpus,
            long_mode,
        },
        &[],
        vmcoreinfo,
    );
    let req = ElfDumpRequest {
        memory: mem,
        notes: &notes,
        machine: if long_mode {
            ElfMachine::X86_64
        } else {
            ElfMachine::I386
        },
        class: ElfClass::Elf64,
        layout: DumpLayout::Physical,
        filter: None,
        excluded: None,
    };
    write_elf_core(&req, path, &OutputOptions { force: true }, &NoProgress).map(|_| ())
}

/// Writes the RAM ranges of `mem` back to back as a raw image and returns the `--layout`
/// text that places them (`PHYS:LEN,…`), as a dump tool that skips holes would.
pub fn write_raw_image(path: &Path, mem: &dyn PhysMemory) -> std::io::Result<String> {
    let mut bytes = Vec::with_capacity(mem.ram().total() as usize);
    let mut layout = Vec::new();
    for r in mem.ram().ranges() {
        let start = bytes.len();
        bytes.resize(start + r.len() as usize, 0);
        mem.read_at(r.start, &mut bytes[start..])
            .map_err(std::io::Error::other)?;
        layout.push(format!("{:#x}:{:#x}", r.start, r.len()));
    }
    std::fs::write(path, bytes)?;
    Ok(layout.join(","))
}
