//! Facts of the ELF format that several modules need: the class and machine of a core, the
//! `e_phnum` rule, and the `e_machine` values. Here, below the core reader (`phys::elf`), the
//! CPU note codecs (`cpu::notes`), the layout planner (`dump::elf_layout`) and the header
//! encoder (`dump::elf_headers`), so none takes constants from another's module and the encoder
//! depends on the planner, not the other way too.

use object::elf;

/// `e_machine` of x86_64 cores.
pub const EM_X86_64: u16 = elf::EM_X86_64;
/// `e_machine` of i386 cores.
pub const EM_386: u16 = elf::EM_386;

/// ELF class of the output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfClass {
    /// ELFCLASS64: 64-byte file header, 56-byte program headers.
    Elf64,
    /// ELFCLASS32: 52-byte file header, 32-byte program headers; every offset, address and size
    /// must fit in 32 bits.
    Elf32,
}

impl ElfClass {
    /// `e_ehsize`: the size of the file header.
    pub const fn ehsize(self) -> u64 {
        match self {
            ElfClass::Elf64 => 64,
            ElfClass::Elf32 => 52,
        }
    }
    /// `e_phentsize`: the size of one program header.
    pub const fn phentsize(self) -> u64 {
        match self {
            ElfClass::Elf64 => 56,
            ElfClass::Elf32 => 32,
        }
    }
    /// `e_shentsize`: the size of one section header.
    pub const fn shentsize(self) -> u64 {
        match self {
            ElfClass::Elf64 => 64,
            ElfClass::Elf32 => 40,
        }
    }
    /// Alignment of the section header table.
    pub(crate) const fn word(self) -> u64 {
        match self {
            ElfClass::Elf64 => 8,
            ElfClass::Elf32 => 4,
        }
    }
}

/// `e_machine` of the output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfMachine {
    /// EM_X86_64 (62): long-mode guests.
    X86_64,
    /// EM_386 (3): guests in 32-bit or PAE paging, or with paging off.
    I386,
}

impl ElfMachine {
    /// The `e_machine` value.
    pub const fn e_machine(self) -> u16 {
        match self {
            ElfMachine::X86_64 => elf::EM_X86_64,
            ElfMachine::I386 => elf::EM_386,
        }
    }
}

/// `e_phnum` for `phnum` program headers: the count itself, or PN_XNUM when it does not fit
/// (the real count then lives in section 0's `sh_info`).
pub(crate) fn e_phnum(phnum: u64) -> u16 {
    if phnum >= u64::from(elf::PN_XNUM) {
        elf::PN_XNUM
    } else {
        phnum as u16
    }
}
