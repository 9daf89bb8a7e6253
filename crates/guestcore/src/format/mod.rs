//! Raw on-disk structures shared by readers and writers: ELF header constants, ELF notes, the
//! QEMU CPU note, NT_PRSTATUS, VMCOREINFO text, and (later) kdump headers.

pub mod elf;
pub mod kdump;
pub mod note;
pub mod prstatus;
pub mod qemu_cpu;
pub mod vmcoreinfo;
pub mod vmdesc;

pub use note::ElfNote;
