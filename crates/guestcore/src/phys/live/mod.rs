//! The RAM of a running QEMU, read in place.
//!
//! Two ways in, chosen per RAM block by `qmp::session`:
//!
//! * **shared file** — a `memory-backend-file` with `share=on`: the file *is* guest RAM, so it
//!   is mapped read-only as raw memory and copied out through raw pointers (`copy`, the one
//!   place that touches live RAM);
//! * **process memory** — anonymous RAM: `pread` on `/proc/PID/mem` of the QEMU process at
//!   the host virtual address HMP `gpa2hva` reported (needs ptrace rights on QEMU: same user
//!   and Yama `ptrace_scope` ≤ 1 with CAP_SYS_PTRACE, or root).
//!
//! A running guest changes its RAM under us, so no `&[u8]` is ever formed over it
//! ([`PhysMemory::slice`](crate::phys::PhysMemory::slice) is `None`): every read is a copy into the caller's buffer, as
//! rust-vmm's vm-memory does.
//!
//! One memory source per file: [`LiveMemory`] (`memory.rs`) reads the running guest;
//! `RamCopy` (`ram_copy.rs`) is the private copy `copy_ram` takes of it once (paused), which a
//! dump writer can then borrow while the guest runs again.

mod copy;
mod memory;
mod ram_copy;

pub use memory::LiveMemory;
pub(crate) use ram_copy::copy_ram;

use serde::Serialize;
use std::path::PathBuf;

/// The QEMU options that make guest RAM readable by another process.
pub(crate) const SHARED_RAM_HINT: &str = "start QEMU with `-object memory-backend-file,id=mem,share=on,mem-path=FILE,size=SIZE -machine memory-backend=mem` (SIZE = -m), or run guestcore as a user allowed to ptrace QEMU";

/// Where one piece of guest RAM lives on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveSource {
    /// At `offset` in a shared memory-backend file.
    File {
        /// The memory-backend file (`mem-path=`).
        path: PathBuf,
        /// Byte offset of the piece in that file.
        offset: u64,
    },
    /// At host virtual address `hva` in the QEMU process.
    Process {
        /// Host virtual address of the piece's first byte in QEMU's address space.
        hva: u64,
    },
}

/// How a live source reads guest RAM (for `info` and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveAccess {
    /// Every block through a mapped shared memory-backend file.
    SharedFile,
    /// Every block through `/proc/PID/mem`.
    ProcessMemory,
    /// Some blocks each way.
    Mixed,
}
