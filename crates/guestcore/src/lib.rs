//! guestcore turns the memory of an x86 or AArch64 virtual machine into something a debugger can read.
//!
//! **Start with [`Guest`].** It opens any input (raw images, ELF cores, kdump files, QEMU
//! migration streams, LiME/AVML images, `qmp:SOCKET` for a running QEMU), names its vCPUs and
//! the Linux kernels in its memory, and does every job as one call: [`Guest::select`] the page
//! tables to look through, [`Guest::mappings`] / [`Guest::walk`], [`Guest::translate`],
//! [`Guest::read_virt`], [`Guest::kernel_log`], [`Guest::dump`] in any [`DumpFormat`], and
//! [`Guest::dump_input`], the one call that dumps any [`Input`], a running QEMU from a
//! background snapshot where it can. Its choices and warnings arrive as
//! [`Notice`]s; nothing in this crate prints. The facade and the types it returns are
//! re-exported here, at the crate root.
//!
//! The pipeline behind it, one module per box (the building blocks, public for people who
//! write their own tools):
//!
//! ```text
//!  source ──► PhysMemory ──► CPU state ──► PagingMode ──► walker ──► MappingList ──► writer
//!  (raw, ELF,   read_at,       CR0 CR3 CR4    off/32-bit/    one bounded   sorted, merged,    ELF (paging /
//!   kdump, live) RAM ranges    EFER A20 regs   PAE/4/5-lvl    engine        aliases kept       non-paging), kdump
//! ```
//!
//! The facade itself (`guest`), its errors, progress and number parsing are private modules
//! whose types are re-exported here. The public modules are the building blocks, each public
//! for one reason:
//!
//! * [`addr`] — the address and range types every block speaks, and the canonical-address rule.
//! * [`image`] — open any input as memory plus CPU state, notes and VMCOREINFO, without the
//!   facade's policy.
//! * [`phys`] — one [`PhysMemory`] reader per input format (raw, ELF, kdump, LiME/AVML, QEMU
//!   migration streams, a running QEMU's RAM), for tools that read memory themselves.
//! * [`cpu`] — [`X86CpuState`] and its codecs (ELF notes, HMP text, migration vmstate), for
//!   tools that build paging modes or write notes.
//! * [`paging`] — the paging modes and the one page-table walker, the core of any tool.
//! * [`mapping`] — the merged virtual→physical mapping list a walk produces, and its renderings.
//! * [`kernel`] — find the Linux kernels in guest memory and read their log.
//! * [`dump_level`] — makedumpfile's page filter, for tools that write filtered dumps.
//! * [`dump`] — the core-file writers (ELF, kdump) and the [`PageSink`](dump::PageSink)
//!   streaming writers that take pages in any order, with atomic output.
//! * [`qmp`] — the QMP client and live sessions, for tools that drive a running QEMU.
//! * [`format`](mod@format) — the on-disk formats (ELF, notes, kdump headers, VMCOREINFO, QEMU
//!   migration streams and vmdesc, libvirt save images, LiME/AVML), read and written, for
//!   tools that parse or make such files.
//! * [`codec`] — the kdump page codecs, shared by the kdump reader and writer.
//! * [`limits`] — the bounds guestcore puts on work, for messages that name them.
//!
//! Long operations report through [`Progress`] (and can be cancelled through it).

#![warn(missing_docs)]
// An item outsiders cannot reach says so (`pub(crate)`), so `pub` means public API.
#![warn(unreachable_pub)]

pub mod addr;
pub mod codec;
pub mod cpu;
pub mod dump;
pub mod dump_level;
mod error;
pub mod format;
mod guest;
pub mod image;
mod input;
pub mod kernel;
pub mod mapping;
pub mod paging;
pub mod phys;
mod progress;
pub mod qmp;
mod sys;
mod units;

// The facade, and the types its calls take and return: what a program that embeds guestcore
// (the CLI included) imports. The modules above are the building blocks for tool authors.
pub use addr::{PhysAddr, PhysRange, VirtAddr};
pub use cpu::hmp::parse_info_registers;
pub use cpu::{Aarch64CpuState, CpuState, X86CpuState, CR4_PSE};
pub use dump::kdump::{Compression, KdumpSummary};
pub use dump::{create_output, AtomicOutput, OutputOptions};
pub use dump::{DumpSummary, ElfClass};
pub use dump_level::{DumpLevel, FilterReport};
pub use error::{Error, Result};
pub use guest::{
    CpuOverrides, DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, Guest, GuestOptions,
    KdumpOutcome, LiveCapture, NoSnapshot, Notice, NoticeSink, Selected, SnapshotBlocker, View,
    ViewSpec, VmcoreinfoFrom,
};
pub use image::{GuestImage, ImageFormat};
pub use input::Input;
pub use kernel::{CrashHeader, KernelLayout, LayoutError};
pub use kernel::{Kernel, KernelRole, KernelScan, KernelSelector, UnreadablePages};
pub use mapping::render;
pub use mapping::{Mapping, MappingList};
pub use paging::{state_for_mode, StopReason};
pub use paging::{Leaf, ModeKind, PageFlags, PagingMode, Translation, WalkLimits, WalkReport};
pub use phys::layout::Layout;
pub use phys::{PhysMemory, RamMap};
pub use progress::{NoProgress, Progress};
pub use qmp::snapshot::SnapshotReport;
pub use qmp::LiveOptions;
pub use units::parse_u64;

/// The bounds guestcore puts on work and output, which a caller may name in its messages.
pub mod limits {
    pub use crate::dump::elf_layout::MAX_FILTERED_RUNS;
    pub use crate::kernel::scan::MAX_FOUND as MAX_KERNELS_FOUND;
    pub use crate::paging::LOOP_FRAMES_COUNTED;
}
