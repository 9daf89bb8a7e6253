//! Raw on-disk structures shared by readers and writers: ELF notes, the QEMU CPU note,
//! NT_PRSTATUS, VMCOREINFO text, kdump headers and flags, the ELF class and machine of a core.

pub mod elf_class;
pub mod kdump;
pub mod kdump_header;
pub mod note;
pub mod prstatus;
pub mod qemu_cpu;
pub mod vmcoreinfo;
pub mod vmdesc;

pub use note::ElfNote;
