//! Byte encodings of the ELF file, program and section headers of a core file, for both classes.
//!
//! The structs are `object::elf`'s, with little-endian field types, so field order and sizes
//! come from one audited definition. Values are checked to fit the class by the layout planner
//! ([`super::elf_layout`]) before anything is encoded; here a value that does not fit ELF32 is
//! a bug, and is truncated only after a debug assertion.

use super::elf_layout::ProgramHeader;
use crate::format::elf::e_phnum;
pub use crate::format::elf::{ElfClass, ElfMachine};
use object::elf;
use object::endian::{LittleEndian as LE, U16, U32, U64};
use object::pod::bytes_of;

/// The fields of the file header that vary between cores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileHeaderFields {
    pub class: ElfClass,
    pub machine: ElfMachine,
    /// Real number of program headers (PN_XNUM is applied here).
    pub phnum: u64,
    pub phoff: u64,
    pub shoff: u64,
    pub shnum: u16,
    pub shstrndx: u16,
}

fn ident(class: ElfClass) -> elf::Ident {
    elf::Ident {
        magic: elf::ELFMAG,
        class: match class {
            ElfClass::Elf64 => elf::ELFCLASS64,
            ElfClass::Elf32 => elf::ELFCLASS32,
        },
        data: elf::ELFDATA2LSB,
        version: elf::EV_CURRENT,
        os_abi: elf::ELFOSABI_SYSV,
        abi_version: 0,
        padding: [0; 7],
    }
}

fn u32_of(v: u64) -> U32<LE> {
    debug_assert!(
        v <= u64::from(u32::MAX),
        "{v:#x} was not checked to fit ELF32"
    );
    U32::new(LE, v as u32)
}
fn u16_of(v: u64) -> U16<LE> {
    U16::new(LE, v as u16)
}

/// Encodes the ELF file header.
pub(crate) fn file_header(f: &FileHeaderFields) -> Vec<u8> {
    let c = f.class;
    let phnum = U16::new(LE, e_phnum(f.phnum));
    match c {
        ElfClass::Elf64 => bytes_of(&elf::FileHeader64::<LE> {
            e_ident: ident(c),
            e_type: U16::new(LE, elf::ET_CORE),
            e_machine: U16::new(LE, f.machine.e_machine()),
            e_version: U32::new(LE, u32::from(elf::EV_CURRENT)),
            e_entry: U64::new(LE, 0),
            e_phoff: U64::new(LE, f.phoff),
            e_shoff: U64::new(LE, f.shoff),
            e_flags: U32::new(LE, 0),
            e_ehsize: u16_of(c.ehsize()),
            e_phentsize: u16_of(c.phentsize()),
            e_phnum: phnum,
            e_shentsize: u16_of(c.shentsize()),
            e_shnum: U16::new(LE, f.shnum),
            e_shstrndx: U16::new(LE, f.shstrndx),
        })
        .to_vec(),
        ElfClass::Elf32 => bytes_of(&elf::FileHeader32::<LE> {
            e_ident: ident(c),
            e_type: U16::new(LE, elf::ET_CORE),
            e_machine: U16::new(LE, f.machine.e_machine()),
            e_version: U32::new(LE, u32::from(elf::EV_CURRENT)),
            e_entry: U32::new(LE, 0),
            e_phoff: u32_of(f.phoff),
            e_shoff: u32_of(f.shoff),
            e_flags: U32::new(LE, 0),
            e_ehsize: u16_of(c.ehsize()),
            e_phentsize: u16_of(c.phentsize()),
            e_phnum: phnum,
            e_shentsize: u16_of(c.shentsize()),
            e_shnum: U16::new(LE, f.shnum),
            e_shstrndx: U16::new(LE, f.shstrndx),
        })
        .to_vec(),
    }
}

/// `p_align` of every program header guestcore writes: 0, as QEMU's dump-guest-memory and the
/// kernel's /proc/vmcore write it. crash 8 chooses its reader from the first PT_LOAD: a
/// page-aligned `p_offset` together with a non-zero `p_align` sends it down its old "netdump"
/// path, which cannot find a relocated (KASLR) kernel and fails with "read error: kernel
/// virtual address … page_offset_base". No reader we know of needs a non-zero value.
pub(crate) const P_ALIGN: u64 = 0;

/// Appends one encoded program header to `out`.
pub(crate) fn push_program_header(class: ElfClass, s: &ProgramHeader, out: &mut Vec<u8>) {
    match class {
        ElfClass::Elf64 => out.extend_from_slice(bytes_of(&elf::ProgramHeader64::<LE> {
            p_type: U32::new(LE, s.p_type),
            p_flags: U32::new(LE, s.flags),
            p_offset: U64::new(LE, s.offset),
            p_vaddr: U64::new(LE, s.vaddr),
            p_paddr: U64::new(LE, s.paddr),
            p_filesz: U64::new(LE, s.filesz),
            p_memsz: U64::new(LE, s.memsz),
            p_align: U64::new(LE, P_ALIGN),
        })),
        ElfClass::Elf32 => out.extend_from_slice(bytes_of(&elf::ProgramHeader32::<LE> {
            p_type: U32::new(LE, s.p_type),
            p_offset: u32_of(s.offset),
            p_vaddr: u32_of(s.vaddr),
            p_paddr: u32_of(s.paddr),
            p_filesz: u32_of(s.filesz),
            p_memsz: u32_of(s.memsz),
            p_flags: U32::new(LE, s.flags),
            p_align: u32_of(P_ALIGN),
        })),
    }
}

/// One section header's fields (both classes).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Section {
    pub name: u32,
    pub sh_type: u32,
    pub offset: u64,
    pub size: u64,
    pub info: u32,
    pub align: u64,
}

/// Appends one encoded section header to `out`.
pub(crate) fn push_section_header(class: ElfClass, s: &Section, out: &mut Vec<u8>) {
    match class {
        ElfClass::Elf64 => out.extend_from_slice(bytes_of(&elf::SectionHeader64::<LE> {
            sh_name: U32::new(LE, s.name),
            sh_type: U32::new(LE, s.sh_type),
            sh_flags: U64::new(LE, 0),
            sh_addr: U64::new(LE, 0),
            sh_offset: U64::new(LE, s.offset),
            sh_size: U64::new(LE, s.size),
            sh_link: U32::new(LE, 0),
            sh_info: U32::new(LE, s.info),
            sh_addralign: U64::new(LE, s.align),
            sh_entsize: U64::new(LE, 0),
        })),
        ElfClass::Elf32 => out.extend_from_slice(bytes_of(&elf::SectionHeader32::<LE> {
            sh_name: U32::new(LE, s.name),
            sh_type: U32::new(LE, s.sh_type),
            sh_flags: U32::new(LE, 0),
            sh_addr: U32::new(LE, 0),
            sh_offset: u32_of(s.offset),
            sh_size: u32_of(s.size),
            sh_link: U32::new(LE, 0),
            sh_info: U32::new(LE, s.info),
            sh_addralign: u32_of(s.align),
            sh_entsize: U32::new(LE, 0),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_class() {
        for class in [ElfClass::Elf64, ElfClass::Elf32] {
            let f = FileHeaderFields {
                class,
                machine: ElfMachine::I386,
                phnum: 3,
                phoff: class.ehsize(),
                shoff: 0x1000,
                shnum: 2,
                shstrndx: 1,
            };
            let h = file_header(&f);
            assert_eq!(h.len() as u64, class.ehsize());
            assert_eq!(&h[..4], b"\x7fELF");
            assert_eq!(u16::from_le_bytes([h[16], h[17]]), elf::ET_CORE);
            assert_eq!(u16::from_le_bytes([h[18], h[19]]), 3);
            let mut p = Vec::new();
            push_program_header(class, &ProgramHeader::default(), &mut p);
            assert_eq!(p.len() as u64, class.phentsize());
            let mut s = Vec::new();
            push_section_header(class, &Section::default(), &mut s);
            assert_eq!(s.len() as u64, class.shentsize());
        }
    }

    #[test]
    fn pn_xnum_threshold() {
        assert_eq!(e_phnum(0xfffe), 0xfffe);
        assert_eq!(e_phnum(0xffff), 0xffff);
        assert_eq!(e_phnum(70_001), 0xffff);
    }
}
