//! Raw on-disk structures shared by readers and writers: ELF notes, and (later) kdump headers.

pub mod kdump;
pub mod note;

pub use note::ElfNote;
