//! What a dump is asked to be (its file format) and what it wrote, whichever way its pages
//! arrived: pulled from an opened input, or pushed by a stream into a [`super::PageSink`].

use super::kdump::{Compression, KdumpSummary};
use super::{DumpSummary, ElfClass};

/// The file format of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    /// An ELF core (gdb, crash, drgn), physical or paging.
    Elf(ElfClass),
    /// A kdump-compressed (diskdump) file with this page compression (crash, makedumpfile,
    /// libkdumpfile); physical memory only.
    Kdump(Compression),
}

/// What a dump wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DumpOutcome {
    /// An ELF core.
    Elf {
        /// Its counts.
        summary: DumpSummary,
        /// True for a paging layout (false when paging was asked for but is off).
        paging: bool,
    },
    /// A kdump file.
    Kdump(KdumpOutcome),
}

/// What a kdump dump wrote.
#[derive(Clone, Debug)]
pub struct KdumpOutcome {
    /// Its counts.
    pub summary: KdumpSummary,
    /// The page compression.
    pub compression: Compression,
}
