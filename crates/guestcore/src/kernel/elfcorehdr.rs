//! The crashed kernel's ELF core header, as kdump leaves it in RAM for the capture kernel.
//!
//! When a kernel with a loaded crash kernel panics, it saves each CPU's registers as an
//! NT_PRSTATUS note in its per-CPU `crash_notes`, and jumps to the capture kernel, whose
//! command line says `elfcorehdr=ADDR`. At ADDR lies an ELF64 ET_CORE header prepared when
//! the crash kernel was loaded: one PT_NOTE per CPU pointing at those `crash_notes`, one
//! PT_NOTE pointing at the crashed kernel's `vmcoreinfo_note`, and PT_LOADs for its RAM and
//! text. Everything here is guest data: the header count, segment sizes and note sizes are
//! all bounded before they are used.
//!
//! The PT_LOADs describe the crashed kernel's RAM *less the crashkernel reservation* (both
//! the kernel's own header writer and kexec-tools leave it out): the capture kernel runs in
//! exactly the RAM they leave out, which is how [`CrashHeader::leaves_out`] tells a capture
//! kernel without any vCPU state. A PT_LOAD whose end overflows is ignored: kexec-tools
//! 2.0.25 on arm64 Linux 6.1 writes a kernel-text PT_LOAD with a garbage address and a size
//! near 2^64 (seen in the harness's aarch64 kdump guest).

use crate::format::note::{ElfNote, NT_PRSTATUS, VMCOREINFO_NAME};
use crate::format::vmcoreinfo::vmcoreinfo_text;
use crate::phys::PhysMemory;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

/// The most program headers read from one header.
pub(super) const MAX_PHDRS: usize = 4096;
/// The most bytes read from one PT_NOTE segment.
pub(super) const MAX_NOTE_SEGMENT: u64 = 64 << 10;
/// The most NT_PRSTATUS notes kept (CPUs).
pub(super) const MAX_CPUS: usize = 8192;

/// What a core header in RAM describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashHeader {
    /// Physical address of the header.
    pub addr: u64,
    /// The NT_PRSTATUS notes, one per CPU that saved its registers, in header order.
    pub prstatus: Vec<ElfNote>,
    /// Physical addresses the PT_NOTE segments point at (one of them is the VMCOREINFO note).
    pub note_addrs: Vec<u64>,
    /// The VMCOREINFO text found through the header, if any.
    pub vmcoreinfo: Option<Vec<u8>>,
    /// The physical ranges of its PT_LOADs (`p_paddr`, `p_memsz`), those whose end does not
    /// overflow: the crashed kernel's RAM.
    pub loads: Vec<std::ops::Range<u64>>,
}

impl CrashHeader {
    /// True when `addr` is RAM this header's PT_LOADs leave out while they describe some:
    /// the crashkernel reservation, where the capture kernel started for this crash runs.
    /// (Whether `addr` is RAM at all is the caller's to ask.)
    pub fn leaves_out(&self, addr: u64) -> bool {
        !self.loads.is_empty() && !self.loads.iter().any(|r| r.contains(&addr))
    }
}

/// Reads the header at `addr`, or `None` when it is not a usable kdump core header.
pub(super) fn read_crash_header(
    mem: &(impl PhysMemory + ?Sized),
    addr: u64,
) -> Option<CrashHeader> {
    let mut ehdr = [0u8; 64];
    mem.read_at(addr, &mut ehdr).ok()?;
    let h = elf::FileHeader64::<LE>::parse(&ehdr[..]).ok()?;
    if h.e_type(LE) != elf::ET_CORE
        || usize::from(h.e_phentsize(LE)) != std::mem::size_of::<elf::ProgramHeader64<LE>>()
    {
        return None;
    }
    let phnum = usize::from(h.e_phnum(LE));
    let phoff = h.e_phoff(LE);
    if phnum == 0 || phnum > MAX_PHDRS || phoff > 1 << 20 {
        return None;
    }
    let mut raw = vec![0u8; phnum * 56];
    mem.read_at(addr.checked_add(phoff)?, &mut raw).ok()?;
    let phdrs: &[elf::ProgramHeader64<LE>] = object::pod::slice_from_all_bytes(&raw).ok()?;
    let mut out = CrashHeader {
        addr,
        prstatus: Vec::new(),
        note_addrs: Vec::new(),
        vmcoreinfo: None,
        loads: phdrs
            .iter()
            .filter(|p| p.p_type(LE) == elf::PT_LOAD)
            .filter_map(|p| {
                let start = p.p_paddr(LE);
                Some(start..start.checked_add(p.p_memsz(LE))?)
            })
            .filter(|r| !r.is_empty())
            .collect(),
    };
    for p in phdrs.iter().filter(|p| p.p_type(LE) == elf::PT_NOTE) {
        // kexec writes the physical address in both p_offset and p_paddr.
        let at = p.p_paddr(LE);
        let len = p.p_memsz(LE).min(MAX_NOTE_SEGMENT);
        out.note_addrs.push(at);
        if len == 0 || !mem.is_ram(at, len) {
            continue;
        }
        let mut data = vec![0u8; len as usize];
        if mem.read_at(at, &mut data).is_err() {
            continue;
        }
        for note in parse_notes_lenient(&data) {
            if note.name == b"CORE" && note.n_type == NT_PRSTATUS {
                if out.prstatus.len() < MAX_CPUS {
                    out.prstatus.push(note);
                }
            } else if note.name == VMCOREINFO_NAME && out.vmcoreinfo.is_none() {
                out.vmcoreinfo = vmcoreinfo_text(&note.desc).map(<[u8]>::to_vec);
            }
        }
    }
    // A header with no note at all is not a kdump header (a stray core file in the page cache).
    (!out.note_addrs.is_empty()).then_some(out)
}

/// The notes of a segment up to the first one that does not parse: crash notes are followed
/// by an empty terminator note, and `p_memsz` covers the whole per-CPU buffer.
fn parse_notes_lenient(mut data: &[u8]) -> Vec<ElfNote> {
    let mut out = Vec::new();
    let u32_at = |d: &[u8], o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
    };
    while let (Some(namesz), Some(descsz), Some(n_type)) =
        (u32_at(data, 0), u32_at(data, 4), u32_at(data, 8))
    {
        if namesz == 0 && descsz == 0 {
            break;
        }
        let name_end = 12 + namesz as usize;
        let desc_start = (name_end + 3) & !3;
        let desc_end = desc_start + descsz as usize;
        let (Some(name), Some(desc)) = (data.get(12..name_end), data.get(desc_start..desc_end))
        else {
            break;
        };
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        out.push(ElfNote::new(name, n_type, desc.to_vec()));
        data = match data.get((desc_end + 3) & !3..) {
            Some(rest) => rest,
            None => break,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_stop_at_the_terminator_and_at_garbage() {
        let mut d = Vec::new();
        ElfNote::new(b"CORE", 1, vec![7; 336]).encode_into(&mut d);
        ElfNote::new(b"CORE", 1, vec![8; 336]).encode_into(&mut d);
        d.extend_from_slice(&[0; 12]);
        d.extend_from_slice(&[0xff; 40]);
        let n = parse_notes_lenient(&d);
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].desc[0], 8);
        // A size that claims more than the segment holds ends the list.
        let mut bad = Vec::new();
        bad.extend_from_slice(&5u32.to_le_bytes());
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.extend_from_slice(b"CORE\0\0\0\0");
        assert!(parse_notes_lenient(&bad).is_empty());
    }
}
