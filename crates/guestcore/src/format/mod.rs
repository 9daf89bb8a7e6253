//! Raw on-disk structures shared by readers and writers: ELF class, machine and header
//! constants, ELF notes, the QEMU CPU note, NT_PRSTATUS, AArch64 system-register ids
//! (`arm64_sysreg`), VMCOREINFO text (and its one reader from guest memory, and an arm64
//! kernel's layout in it, `arm64_layout`), kdump headers, flags and machine names, a whole kdump file of any block size for tests and
//! fuzz seeds (`kdump_blocks`), the QEMU
//! migration stream and its vmdesc JSON, libvirt's save-image header, LiME and AVML range
//! headers.
//!
//! One home for each format, so that the reader, the writer, the tests that make inputs and
//! the fuzz seeds all say the same thing once: every file here has the format's read side
//! (decode) and, where a writer or a test writes the format, its write side (encode). The
//! readers built on them (which need I/O, mappings, limits) are in [`crate::phys`] and
//! [`crate::kernel`], the writers in [`crate::dump`]. This is the bottom layer: it imports
//! nothing of the crate but the error type.

pub mod arm64_layout;
pub mod arm64_sysreg;
pub mod avml;
pub mod elf;
pub mod kdump;
pub mod kdump_blocks;
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
