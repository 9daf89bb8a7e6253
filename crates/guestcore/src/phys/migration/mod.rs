//! QEMU migration streams as input: files written by `migrate file:PATH` (with or without the
//! `mapped-ram` capability), `savevm`-style and background-snapshot streams, and `virsh save`
//! images that wrap one.
//!
//! * [`stream`] reads a stream in one forward pass from any `Read` (a pipe included) and
//!   hands out [`stream::Event`]s: configuration, RAM blocks, pages, device sections, the
//!   vmdesc. Live dumps stream through it; the offline reader is built on it.
//! * `ram` decodes the `ram` section's records; `vmcoreinfo` the guest's VMCOREINFO
//!   pointer. The format itself (section types, RAM flags, the mapped-ram header, the
//!   vmcoreinfo section, and a writer of streams for tests) is in [`crate::format::migration`],
//!   libvirt's save-image header in [`crate::format::libvirt_save`]; the vmdesc JSON (the
//!   closing description of every device section's fields) in [`crate::format::vmdesc`]; a
//!   vCPU's registers from its `cpu` section are decoded by [`crate::cpu::vmstate`] (on top of
//!   this layer, by `image`).
//! * `layout` places RAM blocks in guest-physical memory for the machine types it knows
//!   (`pc-i440fx-*`, `pc-q35-*`, aarch64 `virt-*`) as [`RamPiece`](super::RamPiece)s; [`file`](mod@file) is the
//!   offline [`PhysMemory`](super::PhysMemory).
//!
//! The stream is untrusted input: every count and length it declares is capped before use
//! ([`stream::Limits`]), and anything malformed is an error naming the offset, never a panic
//! and never a wrong page.

mod input;

pub(crate) mod devices;
pub mod file;
mod layout;
pub(crate) mod ram;
pub mod stream;
pub(crate) mod vmcoreinfo;

pub use file::MigrationFile;
pub use stream::{Event, PageContent, Parser};
