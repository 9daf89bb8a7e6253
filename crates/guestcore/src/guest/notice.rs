//! What the facade tells its caller besides its results: which choice it made for the caller
//! (a note), and where the output differs from what was asked for (a warning).
//!
//! The library never prints. A [`Guest`](super::Guest) sends each notice, as it happens, to
//! the sink its caller set ([`Guest::on_notice`](super::Guest::on_notice)); a CLI prints
//! them, a library user may log or ignore them. Notices that a caller may want to render in
//! its own words (a walk's report, an `--all-cpus` union, a dump level's counts) carry their
//! data instead of text.

use super::dump::SnapshotBlocker;
use crate::dump_level::FilterReport;
use crate::mapping::{UnionConflict, ViewPart};
use crate::paging::WalkReport;
use crate::qmp::snapshot::SnapshotReport;
use std::sync::Arc;

/// One thing worth telling the user.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Notice {
    /// Information: a choice made for the caller, a fact about the input.
    Note(String),
    /// The result is not what was asked for (but is still valid).
    Warning(String),
    /// No vCPU was named: the first with paging on that does not run a crashed kernel was
    /// chosen among several.
    ChoseCpu {
        /// Its index.
        cpu: u32,
        /// How many vCPUs the input has.
        of: usize,
        /// vCPUs passed over because they are parked in a crashed kernel, as
        /// `(vCPU, kernel index)`.
        parked: Vec<(u32, usize)>,
    },
    /// A page-table walk finished; its report says whether limits cut it short and what it
    /// skipped (render with the caller's names for the limits).
    Walk {
        /// The vCPU (or kernel view) whose tables were walked.
        cpu: u32,
        /// The walk's counts.
        report: WalkReport,
    },
    /// A paging view was built from several vCPUs' mappings.
    Union {
        /// What each vCPU added.
        parts: Vec<ViewPart>,
        /// Virtual ranges the vCPUs map to different physical memory (the first vCPU wins).
        conflicts: u64,
        /// Bytes in those ranges.
        conflict_bytes: u64,
        /// The first such range.
        first_conflict: Option<UnionConflict>,
    },
    /// A warning: the input's VMCOREINFO describes a kernel whose tables the walked vCPU does
    /// not run, so a paging dump carries no VMCOREINFO (a kernel view walks that kernel's).
    ForeignVmcoreinfo {
        /// That kernel's index in [`Guest::kernels`](super::Guest::kernels).
        kernel: usize,
        /// Its release.
        release: String,
    },
    /// A warning: a paging dump was asked for and the vCPU has paging off, so the dump has the
    /// physical layout.
    PagingOff {
        /// The vCPU.
        cpu: u32,
    },
    /// A warning: several kernels are in memory, no vCPU runs one, and none was named to
    /// filter a dump by its page array.
    NoFilterKernel {
        /// How many kernels with usable tables.
        kernels: usize,
    },
    /// A warning: pages of RAM the source holds could not be read (they fail to decode, or an
    /// I/O error) while looking for kernels, so a kernel whose VMCOREINFO is in one is missing.
    UnreadablePages(crate::kernel::UnreadablePages),
    /// Where a dump's VMCOREINFO comes from (or that it has none).
    DumpVmcoreinfo(VmcoreinfoFrom),
    /// A running guest is paused for its dump instead of dumped from a background snapshot.
    NoSnapshot(NoSnapshot),
    /// A libvirt domain was read through libvirt's own monitor (`libvirt:`), which marks it
    /// tainted ("custom monitor control commands issued", in `virsh dominfo`'s messages).
    LibvirtTainted {
        /// The domain's name.
        domain: String,
    },
    /// A running guest was dumped from a background snapshot: QEMU's figures for it.
    Snapshot(SnapshotReport),
    /// A dump level's page filter was computed.
    Filter {
        /// Its counts.
        report: FilterReport,
        /// The kernel whose page array it read, as `(index, release)`.
        kernel: Option<(usize, String)>,
    },
}

/// Where a dump's VMCOREINFO comes from: the kernel it describes is the one a kernel view
/// names, else the one the walked vCPU runs, else the only kernel in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VmcoreinfoFrom {
    /// The input's own note (QEMU's `-device vmcoreinfo`, a kdump file's): it is the
    /// described kernel's.
    Input,
    /// The note of a kernel found in guest RAM, because the input has none or its own is
    /// another kernel's.
    Ram {
        /// The kernel's index in [`Guest::kernels`](super::Guest::kernels).
        kernel: usize,
        /// Its release.
        release: String,
        /// Where its note lies in guest-physical memory.
        addr: u64,
        /// True when the input had a note of its own (another kernel's).
        replaced_input: bool,
    },
    /// No Linux kernel was found in memory and the input carries no VMCOREINFO: the dump has
    /// none (drgn and libkdumpfile then cannot find the kernel).
    None,
}

/// Why a running guest's dump does not come from a background snapshot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NoSnapshot {
    /// The dump asked for is not one a snapshot gives.
    Blocked(SnapshotBlocker),
    /// QEMU or the host cannot take one (QEMU's words where it gave them).
    Refused(String),
}

/// Receives notices (see [`Guest::on_notice`](super::Guest::on_notice) and
/// [`GuestOptions::with_notices`](super::GuestOptions::with_notices)).
pub type NoticeSink = Arc<dyn Fn(&Notice) + Send + Sync>;
