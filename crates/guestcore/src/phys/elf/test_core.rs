//! Hand-built ELF cores for tests: bytes written field by field (not through `object`), so the
//! reader is checked against an independent writer. Layout: header | program headers | notes |
//! segment data | section header 0 (only when PN_XNUM is needed or forced).

use crate::format::ElfNote;
use std::io::Write;

/// One PT_LOAD: `data` are its file bytes (`p_filesz = data.len()`), or it shares the file
/// bytes of an earlier load (`share = Some(index)`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Load {
    pub vaddr: u64,
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub share: Option<usize>,
}

impl Load {
    /// A load whose memory is exactly its data, with `vaddr = paddr`.
    pub(crate) fn at(paddr: u64, data: Vec<u8>) -> Self {
        Load {
            vaddr: paddr,
            paddr,
            memsz: data.len() as u64,
            data,
            share: None,
        }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub(crate) struct CoreSpec {
    pub class64: bool,
    pub machine: u16,
    pub e_type: u16,
    pub notes: Vec<ElfNote>,
    pub loads: Vec<Load>,
    /// Write `e_phnum = 0xffff` and the count in section 0's `sh_info` even for few headers.
    pub force_xnum: bool,
}

impl CoreSpec {
    pub(crate) fn new(class64: bool, machine: u16) -> Self {
        CoreSpec {
            class64,
            machine,
            e_type: object::elf::ET_CORE,
            notes: Vec::new(),
            loads: Vec::new(),
            force_xnum: false,
        }
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// A word of the file's class.
fn putw(out: &mut Vec<u8>, class64: bool, v: u64) {
    if class64 {
        put64(out, v)
    } else {
        put32(out, v as u32)
    }
}

/// Builds the core file bytes.
pub(crate) fn build(spec: &CoreSpec) -> Vec<u8> {
    let c64 = spec.class64;
    let (ehsize, phentsize, shentsize) = if c64 { (64, 56, 64) } else { (52, 32, 40) };
    let has_notes = !spec.notes.is_empty();
    let phnum = spec.loads.len() + usize::from(has_notes);
    let xnum = spec.force_xnum || phnum >= 0xffff;
    let phoff = ehsize as u64;
    let notes = ElfNote::encode_all(&spec.notes);
    let notes_off = phoff + (phnum * phentsize) as u64;
    let mut data_off = notes_off + notes.len() as u64;
    let mut offsets = Vec::with_capacity(spec.loads.len());
    for l in &spec.loads {
        match l.share {
            Some(i) => offsets.push(offsets[i]),
            None => {
                offsets.push(data_off);
                data_off += l.data.len() as u64;
            }
        }
    }
    let shoff = if xnum { data_off } else { 0 };

    let mut out = Vec::with_capacity(data_off as usize + shentsize);
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[if c64 { 2 } else { 1 }, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    put16(&mut out, spec.e_type);
    put16(&mut out, spec.machine);
    put32(&mut out, 1);
    putw(&mut out, c64, 0); // e_entry
    putw(&mut out, c64, phoff);
    putw(&mut out, c64, shoff);
    put32(&mut out, 0); // e_flags
    put16(&mut out, ehsize as u16);
    put16(&mut out, phentsize as u16);
    put16(&mut out, if xnum { 0xffff } else { phnum as u16 });
    put16(&mut out, if xnum { shentsize as u16 } else { 0 });
    put16(&mut out, u16::from(xnum)); // e_shnum
    put16(&mut out, 0); // e_shstrndx
    assert_eq!(out.len(), ehsize);

    let phdr = |out: &mut Vec<u8>, p_type: u32, flags: u32, off, va, pa, filesz, memsz| {
        put32(out, p_type);
        if c64 {
            put32(out, flags);
        }
        putw(out, c64, off);
        putw(out, c64, va);
        putw(out, c64, pa);
        putw(out, c64, filesz);
        putw(out, c64, memsz);
        if !c64 {
            put32(out, flags);
        }
        putw(out, c64, 0); // p_align
    };
    if has_notes {
        let n = notes.len() as u64;
        phdr(&mut out, object::elf::PT_NOTE, 0, notes_off, 0, 0, n, n);
    }
    for (l, &off) in spec.loads.iter().zip(&offsets) {
        let filesz = match l.share {
            Some(i) => spec.loads[i].data.len(),
            None => l.data.len(),
        } as u64;
        let off = if filesz == 0 { 0 } else { off };
        phdr(
            &mut out,
            object::elf::PT_LOAD,
            7,
            off,
            l.vaddr,
            l.paddr,
            filesz,
            l.memsz,
        );
    }
    out.extend_from_slice(&notes);
    for l in spec.loads.iter().filter(|l| l.share.is_none()) {
        out.extend_from_slice(&l.data);
    }
    if xnum {
        // Section header 0: everything zero except sh_info = the real e_phnum.
        let mut sh = vec![0u8; shentsize];
        let info_at = if c64 { 44 } else { 28 };
        sh[info_at..info_at + 4].copy_from_slice(&(phnum as u32).to_le_bytes());
        out.extend_from_slice(&sh);
    }
    out
}

/// Writes `bytes` to a temporary file.
pub(crate) fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush temp file");
    f
}

/// Deterministic test bytes.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}
