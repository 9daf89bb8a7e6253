//! Raw on-disk structures shared by readers and writers: ELF class, machine and header
//! constants, ELF notes, the QEMU CPU note, NT_PRSTATUS, VMCOREINFO text, kdump headers and
//! flags, the vmdesc JSON of a migration stream.

pub mod avml;
pub mod elf;
pub mod kdump;
pub mod kdump_header;
pub mod libvirt_save;
pub mod lime;
pub mod migration;
pub mod note;
pub mod prstatus;
pub mod qemu_cpu;
pub mod vmcoreinfo;
pub mod vmdesc;

pub use note::ElfNote;
