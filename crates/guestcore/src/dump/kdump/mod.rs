//! kdump-compressed ("diskdump") output, as makedumpfile writes it and crash, libkdumpfile and
//! drgn read it.
//!
//! File layout (block = the dumped kernel's page: 4 KiB, or arm64's 16 or 64 KiB, see
//! [`blocks`]; a "page" and a "pfn" below are one block and its number):
//!
//! ```text
//! block 0      disk_dump_header (KDUMP, version 6, utsname, status = compression flag)
//! block 1..    kdump_sub_header, then the ELF notes (PRSTATUS…, QEMU…, VMCOREINFO)
//! bitmap 1     one bit per pfn below max_mapnr: the pfn is guest RAM   (LSB first)
//! bitmap 2     one bit per pfn: the pfn is dumped (RAM within the filter)
//! page_desc[]  24 bytes per dumped pfn, in pfn order
//! page data    one shared all-zero page (raw), then every other page, compressed on its own
//!              or raw when compression does not shrink it
//! ```
//!
//! **Zero pages** are not excluded: every all-zero page gets a descriptor pointing at the one
//! shared raw zero page (flags 0, size 4096), so readers see them as present (the same choice
//! QEMU makes, and what makedumpfile writes at dump level 1). Pages outside the optional
//! window, and the frames a dump level leaves out ([`crate::dump_level`], in 4 KiB frames: a
//! larger block is left out when all its RAM frames are), are excluded (bit clear in bitmap 2;
//! `dump_level` in the sub-header says why); pages partly covered by RAM are dumped with the
//! non-RAM bytes as zeros.
//!
//! The i686 form uses the 32-bit ABI of the headers (452-byte header, 80-byte sub header), as an
//! i686 makedumpfile writes it; x86_64 uses the 64-bit one.
//!
//! The writer is split as the ELF writer is: `plan` decides what goes where (pure),
//! `encode` makes the header, bitmap and descriptor bytes, `writer` does the I/O, with
//! `pool` compressing pages in parallel. The on-disk structures are in
//! [`crate::format::kdump`] and [`crate::format::kdump_header`], the page codecs in
//! [`crate::codec`].

mod blocks;
mod encode;
mod flatten;
mod plan;
mod pool;
mod streamed;
mod writer;

/// The compression a kdump file names; the page codecs themselves are in [`crate::codec`].
pub use crate::format::kdump::Compression;
/// The architecture a kdump file names; the table of names is in [`crate::format::kdump`].
pub use crate::format::kdump::KdumpMachine;
pub use blocks::BlockSize;
use flatten::SeekSink;
pub use streamed::{StreamedKdump, StreamedKdumpSpec};
pub use writer::{write_kdump, write_kdump_to};

use crate::addr::PhysRange;
use crate::dump_level::FrameSet;
use crate::format::kdump::NewUtsname;
use crate::format::ElfNote;
use crate::phys::PhysMemory;
use serde::Serialize;
use std::fmt;

/// What to write.
#[derive(Clone, Copy)]
pub struct KdumpRequest<'a> {
    /// The guest's physical memory; its [`ram`](PhysMemory::ram) defines bitmap 1 and max_mapnr.
    pub memory: &'a dyn PhysMemory,
    /// Encoded CPU notes, in order (PRSTATUS per CPU, then QEMU per CPU). A VMCOREINFO note
    /// among them is used as the VMCOREINFO when [`vmcoreinfo`](Self::vmcoreinfo) is `None`.
    pub notes: &'a [ElfNote],
    /// The guest's VMCOREINFO text; appended as a `VMCOREINFO` note (unless `notes` has one).
    pub vmcoreinfo: Option<&'a [u8]>,
    /// The described kernel's `uname` strings (from its `init_uts_ns`), for the header's
    /// utsname; `None` writes the release from VMCOREINFO and defaults for the rest.
    pub utsname: Option<&'a NewUtsname>,
    /// The architecture written in the utsname; it picks the header ABI (32- or 64-bit).
    pub machine: KdumpMachine,
    /// The header's `nr_cpus`: how many CPUs the guest has.
    pub nr_cpus: u32,
    /// How each dumped page is compressed (the header's `status` flag follows it).
    pub compression: Compression,
    /// Dump only pages intersecting this physical range (others are excluded in bitmap 2).
    pub filter: Option<PhysRange>,
    /// 4 KiB frames a dump level leaves out (excluded in bitmap 2, as makedumpfile excludes
    /// them): a block is left out when every RAM frame of it is.
    pub excluded: Option<&'a FrameSet>,
    /// The dump level recorded in the sub-header (`dump_level`).
    pub dump_level: u8,
    /// The file's block: the dumped kernel's page size (its VMCOREINFO's `PAGESIZE`), 4 KiB
    /// when no kernel is known.
    pub block_size: BlockSize,
    /// Write makedumpfile's flattened stream instead of the plain seekable file.
    pub flatten: bool,
    /// Replace an existing output file.
    pub force: bool,
}

impl<'a> KdumpRequest<'a> {
    /// All of `memory`'s RAM as an x86_64 kdump file of 4 KiB blocks with one CPU and no notes,
    /// compressed with `compression`, at dump level 0, refusing to replace a file; set the other fields
    /// with struct update syntax.
    pub fn new(memory: &'a dyn PhysMemory, compression: Compression) -> Self {
        KdumpRequest {
            memory,
            notes: &[],
            vmcoreinfo: None,
            utsname: None,
            machine: KdumpMachine::X86_64,
            nr_cpus: 1,
            compression,
            filter: None,
            excluded: None,
            dump_level: 0,
            block_size: BlockSize::KIB_4,
            flatten: false,
            force: false,
        }
    }
}

impl fmt::Debug for KdumpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KdumpRequest")
            .field("ram", self.memory.ram())
            .field("notes", &self.notes.len())
            .field("vmcoreinfo", &self.vmcoreinfo.map(<[u8]>::len))
            .field("machine", &self.machine)
            .field("nr_cpus", &self.nr_cpus)
            .field("compression", &self.compression)
            .field("filter", &self.filter)
            .field("excluded", &self.excluded.map(FrameSet::len))
            .field("dump_level", &self.dump_level)
            .field("block_size", &self.block_size)
            .field("flatten", &self.flatten)
            .field("force", &self.force)
            .finish()
    }
}

/// Tuning that does not change what the file means.
#[derive(Clone, Debug)]
pub struct KdumpOptions {
    /// 4 KiB pages' worth of blocks compressed per parallel batch (bounds memory: about
    /// 3 × 4 KiB × this, as two windows are compressed ahead of the one being written; a
    /// window of larger blocks holds as many bytes, in fewer blocks).
    pub window_pages: usize,
    /// Worker threads; `None` uses rayon's global pool.
    pub threads: Option<usize>,
    /// `timestamp.tv_sec` of the header; `None` is now. (`tv_usec` is always 0: libkdumpfile
    /// probes the 32-bit header ABI first, and a page-size-like `tv_usec` would fool it.)
    pub timestamp: Option<u64>,
}

impl Default for KdumpOptions {
    fn default() -> Self {
        KdumpOptions {
            window_pages: 2048,
            threads: None,
            timestamp: None,
        }
    }
}

/// What was written, in blocks (pages of the dumped kernel: 4 KiB, or arm64's 16 or 64 KiB).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KdumpSummary {
    /// Bytes per block (page): 4096, or an arm64 kernel's 16384 or 65536.
    pub block_size: u64,
    /// Pfns below max_mapnr (the bitmaps' length in bits).
    pub max_mapnr: u64,
    /// Pfns marked as RAM (bitmap 1).
    pub ram_pages: u64,
    /// Pfns dumped (bitmap 2), each with a descriptor.
    pub dumped_pages: u64,
    /// Dumped pages that were all zero (sharing one data page).
    pub zero_pages: u64,
    /// Dumped non-zero pages stored compressed.
    pub compressed_pages: u64,
    /// Dumped non-zero pages stored raw (compression did not shrink them, or none asked).
    pub raw_pages: u64,
    /// Bytes of the output (the stream's bytes for the flattened form).
    pub bytes_written: u64,
}
