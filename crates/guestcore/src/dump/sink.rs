//! The writer side of a dump whose pages are pushed, in whatever order a stream brings them
//! (a QEMU background snapshot), instead of pulled from an opened input.
//!
//! Both formats can be filled that way ([`super::streamed::StreamedElf`],
//! [`super::kdump::StreamedKdump`]): their layout follows from the RAM map alone, so every
//! page has its place before it arrives, and what only the stream's end says (the vCPUs'
//! registers, VMCOREINFO, a paging core's PT_LOADs) goes into room reserved up front. The
//! content of that end is decided by the same plan as a dump of a file, over the pages
//! received ([`PageSink::memory`]); this trait is the one seam between the two.

use super::DumpOutcome;
use crate::format::ElfNote;
use crate::mapping::MappingList;
use crate::phys::PhysMemory;
use crate::Result;

/// What completes a pushed dump, decided once every page arrived.
#[derive(Clone, Copy, Debug)]
pub struct SinkEnd<'a> {
    /// The dump's notes (CPU registers, VMCOREINFO), within the room reserved for them.
    pub notes: &'a [ElfNote],
    /// The described kernel's `uname` strings, for a kdump header.
    pub utsname: Option<&'a crate::format::kdump::NewUtsname>,
    /// The CPU count a kdump header records.
    pub nr_cpus: usize,
    /// For a paging ELF core: its mappings (one PT_LOAD each), within the reserved room.
    pub mappings: Option<&'a MappingList>,
}

/// A dump file filled page by page in any order, then completed.
pub trait PageSink {
    /// Stores the 4 KiB page at guest-physical `gpa` (`None`: a page of zeros). A page sent
    /// again replaces the earlier copy.
    fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()>;

    /// The pages received so far, as guest-physical memory that stays readable while the
    /// sink waits (the plan reads VMCOREINFO and page tables from it).
    fn memory(&mut self) -> Result<Box<dyn PhysMemory>>;

    /// Completes the file and renames it into place; fails, leaving nothing, when a RAM page
    /// never arrived or `end` does not fit the room reserved for it.
    fn finish(self: Box<Self>, end: &SinkEnd<'_>) -> Result<DumpOutcome>;
}
