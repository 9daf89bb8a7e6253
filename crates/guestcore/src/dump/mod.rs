//! Core-file writers.
//!
//! * [`kdump::write_kdump`] — kdump-compressed (diskdump) files for crash, plain or flattened.
//! * [`write_elf_core`] — an ELF core (`ET_CORE`) that gdb, crash and drgn read: non-paging
//!   (one PT_LOAD per RAM range) or paging (one PT_LOAD per mapping, physical memory written
//!   once and shared by aliases), ELF64 or ELF32, PN_XNUM when there are more than 65,534
//!   program headers. File layout and its reasons: `elf_layout`.
//!
//! A dump's pages are either pulled from an opened input by these writers, or pushed in any
//! order into a [`PageSink`] (the streamed ELF and kdump writers) by a QEMU background
//! snapshot (`from_stream`); what goes into the file is planned the same way for both, by
//! the facade (the `guest` module).
//!
//! Writers share three pieces: a pure *plan* of every header and offset (so size and
//! ELF32-fitness are known before a file exists), an atomic output file ([`OutputOptions`]),
//! and a chunked copy of guest memory that leaves zero runs as holes.

mod copy;
mod elf;
mod elf_headers;
pub(crate) mod elf_layout;
pub(crate) mod from_stream;
pub mod kdump;
pub mod notes;
mod outcome;
mod output;
pub(crate) mod sink;
pub mod streamed;
mod writeback;

pub use elf::{plan_elf_core, write_elf_core, ElfDumpRequest};
pub use elf_headers::{ElfClass, ElfMachine};
pub use elf_layout::{DataRun, DumpLayout, ElfPlan, ProgramHeader};
pub use outcome::{DumpFormat, DumpOutcome, KdumpOutcome};
pub use output::{create_output, AtomicOutput, OutputOptions};
pub use sink::{PageSink, SinkEnd};

/// What a writer produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpSummary {
    /// Memory segments (PT_LOADs).
    pub segments: usize,
    /// All program headers (PT_NOTE included).
    pub program_headers: usize,
    /// Bytes of guest memory the file holds (written or left as zero holes).
    pub data_bytes: u64,
    /// Bytes of guest memory actually written (the rest were zero and left as holes).
    pub bytes_written: u64,
    /// Bytes of guest memory not written because they were zero.
    pub zero_bytes_skipped: u64,
    /// Size of the file.
    pub file_size: u64,
    /// True when `e_phnum` is PN_XNUM and the count is in section 0's `sh_info`.
    pub pn_xnum: bool,
    /// Frames a dump level left out that are in the file anyway ([`ElfPlan::excluded_written`]).
    pub excluded_written: u64,
}
