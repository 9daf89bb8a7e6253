//! guestcore turns the memory of an x86 virtual machine into something a debugger can read.
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
//! * [`guest`] — the facade and the policy it applies (which vCPU, which kernel, which notes).
//! * [`image`] — open any input: memory, CPU state, notes, VMCOREINFO.
//! * [`phys`] — guest-physical memory sources behind the [`PhysMemory`] trait.
//! * [`cpu`] — [`X86CpuState`] and its codecs (ELF notes, HMP text, migration vmstate).
//! * [`paging`] — paging modes described as data and the one walker that serves them all.
//! * [`mapping`] — the merged virtual→physical mapping list and its renderings.
//! * [`kernel`] — the Linux kernels in guest memory (VMCOREINFO, kdump headers), their log.
//! * [`dump_level`] — makedumpfile's dump levels from a kernel's page array.
//! * [`dump`] — core-file writers (ELF, kdump), pulling pages from an input or taking them
//!   in any order from a stream (a background snapshot), atomic output.
//! * [`qmp`] — a QMP client, live sessions, the watchdog, background snapshots.
//! * [`format`](mod@format) — on-disk facts (ELF, notes, kdump headers, VMCOREINFO, QEMU
//!   migration streams and vmdesc, libvirt save images, LiME/AVML), read and written, and
//!   [`codec`] — the kdump page codecs both the reader and the writer use.
//!
//! Long operations report through [`Progress`] (and can be cancelled through it).

#![warn(missing_docs)]

pub mod addr;
pub mod codec;
pub mod cpu;
pub mod dump;
pub mod dump_level;
pub mod error;
pub mod format;
pub mod guest;
pub mod image;
mod input;
pub mod kernel;
pub mod mapping;
pub mod paging;
pub mod phys;
pub mod progress;
pub mod qmp;
mod sys;
pub mod units;

// The facade, and the types its calls take and return: what a program that embeds guestcore
// (the CLI included) imports. The modules above are the building blocks for tool authors.
pub use addr::{PhysAddr, PhysRange, VirtAddr};
pub use cpu::hmp::parse_info_registers;
pub use cpu::{X86CpuState, CR4_PSE};
pub use dump::kdump::{Compression, KdumpSummary};
pub use dump::{create_output, AtomicOutput, OutputOptions};
pub use dump::{DumpSummary, ElfClass};
pub use dump_level::{DumpLevel, FilterReport};
pub use error::{Error, Result};
pub use guest::{
    CpuOverrides, DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, Guest, GuestOptions,
    KdumpOutcome, LiveCapture, NoSnapshot, Notice, NoticeSink, Selected, SnapshotBlocker, View,
    ViewSpec,
};
pub use image::{GuestImage, ImageFormat};
pub use input::Input;
pub use kernel::{CrashHeader, KernelLayout, LayoutError};
pub use kernel::{Kernel, KernelRole, KernelScan, KernelSelector};
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
