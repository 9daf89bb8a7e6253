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
/// `e_machine` of aarch64 cores (183; ELF64 only: the AArch64 ELF ABI has no ELF32 cores of
/// a 64-bit guest, and QEMU's `dump-guest-memory` writes ELFCLASS64 for every aarch64 vCPU).
pub const EM_AARCH64: u16 = elf::EM_AARCH64;

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

/// The guest architecture a core describes: what decides which CPU notes, which registers and
/// which page-table walker belong to it. One architecture may have several ELF machines
/// (x86: `EM_X86_64` and `EM_386`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86 (i386 and x86_64): [`crate::cpu::X86CpuState`].
    X86,
    /// AArch64: [`crate::cpu::Aarch64CpuState`].
    Aarch64,
}

/// `e_machine` of a core, the input's or the output's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfMachine {
    /// EM_X86_64 (62): long-mode guests.
    X86_64,
    /// EM_386 (3): guests in 32-bit or PAE paging, or with paging off.
    I386,
    /// EM_AARCH64 (183): aarch64 guests; ELF64 only.
    Aarch64,
}

impl ElfMachine {
    /// The `e_machine` value.
    pub const fn e_machine(self) -> u16 {
        match self {
            ElfMachine::X86_64 => elf::EM_X86_64,
            ElfMachine::I386 => elf::EM_386,
            ElfMachine::Aarch64 => elf::EM_AARCH64,
        }
    }

    /// The machine an `e_machine` value names, `None` for one guestcore does not read.
    pub const fn from_e_machine(e_machine: u16) -> Option<Self> {
        match e_machine {
            elf::EM_X86_64 => Some(ElfMachine::X86_64),
            elf::EM_386 => Some(ElfMachine::I386),
            elf::EM_AARCH64 => Some(ElfMachine::Aarch64),
            _ => None,
        }
    }

    /// The architecture of the guest.
    pub const fn arch(self) -> Arch {
        match self {
            ElfMachine::X86_64 | ElfMachine::I386 => Arch::X86,
            ElfMachine::Aarch64 => Arch::Aarch64,
        }
    }

    /// True when a core of this machine may have `class`: x86 either class (an i386 core is
    /// ELF64 whenever RAM ends above 4 GiB), aarch64 only ELF64.
    pub const fn allows(self, class: ElfClass) -> bool {
        !matches!((self, class), (ElfMachine::Aarch64, ElfClass::Elf32))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_round_trip_through_e_machine() {
        for m in [ElfMachine::X86_64, ElfMachine::I386, ElfMachine::Aarch64] {
            assert_eq!(ElfMachine::from_e_machine(m.e_machine()), Some(m));
        }
        assert_eq!(ElfMachine::Aarch64.e_machine(), 183);
        assert_eq!(EM_AARCH64, 183);
        assert_eq!(ElfMachine::from_e_machine(40), None, "EM_ARM is not read");
        assert_eq!(ElfMachine::I386.arch(), Arch::X86);
        assert_eq!(ElfMachine::Aarch64.arch(), Arch::Aarch64);
        assert!(ElfMachine::Aarch64.allows(ElfClass::Elf64));
        assert!(!ElfMachine::Aarch64.allows(ElfClass::Elf32));
        assert!(ElfMachine::I386.allows(ElfClass::Elf32));
    }
}
