//! guestcore turns the memory of an x86 virtual machine into something a debugger can read.
//!
//! **Start with [`Guest`].** It opens any input (raw images, ELF cores, kdump files, QEMU
//! migration streams, LiME/AVML images, `qmp:SOCKET` for a running QEMU), names its vCPUs and
//! the Linux kernels in its memory, and does every job as one call: [`Guest::select`] the page
//! tables to look through, [`Guest::mappings`] / [`Guest::walk`], [`Guest::translate`],
//! [`Guest::read_virt`], [`Guest::kernel_log`], [`Guest::dump`] in any [`DumpFormat`], and
//! [`Guest::dump_running`] from a QEMU background snapshot. Its choices and warnings arrive as
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
//! * [`dump`] — core-file writers (ELF, kdump, streamed ELF), atomic output.
//! * [`qmp`] — a QMP client, live sessions, the watchdog, background snapshots.
//! * [`live_dump`] — a consistent dump of a running guest from a QEMU background snapshot.
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
pub mod kernel;
pub mod live_dump;
pub mod mapping;
pub mod paging;
pub mod phys;
pub mod progress;
pub mod qmp;
mod sys;
pub mod units;

// The facade, and the types its calls take and return.
pub use cpu::X86CpuState;
pub use dump::kdump::{Compression, KdumpSummary};
pub use dump::{DumpSummary, ElfClass};
pub use dump_level::{DumpLevel, FilterReport};
pub use error::{Error, Result};
pub use guest::{
    CpuOverrides, DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, Guest, GuestOptions,
    KdumpOutcome, Notice, NoticeSink, Selected, View, ViewSpec,
};
pub use image::{GuestImage, ImageFormat};
pub use kernel::{Kernel, KernelRole, KernelScan};
pub use live_dump::LiveDump;
pub use mapping::{Mapping, MappingList};
pub use paging::{Leaf, ModeKind, PageFlags, PagingMode, Translation, WalkLimits, WalkReport};
pub use phys::{PhysMemory, RamMap};
pub use progress::{NoProgress, Progress};
pub use qmp::LiveOptions;
