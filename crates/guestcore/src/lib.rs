//! guestcore turns the memory of an x86 virtual machine into something a debugger can read.
//!
//! The pipeline, one module per box:
//!
//! ```text
//!  source ──► PhysMemory ──► CPU state ──► PagingMode ──► walker ──► MappingList ──► writer
//!  (raw, ELF,   read_at,       CR0 CR3 CR4    off/32-bit/    one bounded   sorted, merged,    ELF (paging /
//!   kdump, live) RAM ranges    EFER A20 regs   PAE/4/5-lvl    engine        aliases kept       non-paging), kdump
//! ```
//!
//! * [`phys`] — guest-physical memory sources behind the [`phys::PhysMemory`] trait.
//! * [`cpu`] — [`cpu::X86CpuState`] and its codecs (ELF notes, HMP text).
//! * [`paging`] — paging modes described as data and the one walker that serves them all.
//! * [`mapping`] — the merged virtual→physical mapping list and its renderings.
//! * [`dump`] — core-file writers.
//! * [`kernel`] — the Linux kernels in guest memory (VMCOREINFO, kdump headers), their log.
//! * [`qmp`] — a QMP client and live sessions on a running QEMU (`qmp:SOCKET` inputs).
//! * [`live_dump`] — a consistent dump of a running guest from a QEMU background snapshot.
//!
//! Nothing in this crate prints: long operations report through [`progress::Progress`].

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

pub use dump::kdump::Compression;
pub use dump::{DumpSummary, ElfClass};
pub use dump_level::DumpLevel;
pub use error::{Error, Result};
pub use guest::{
    CpuOverrides, DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, Guest, GuestOptions,
    KdumpOutcome, Notice, Selected, View, ViewSpec,
};
