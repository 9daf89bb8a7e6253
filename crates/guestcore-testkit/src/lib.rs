//! Test support for guestcore: synthetic guests whose page tables are known exactly.
//!
//! * [`builder`] — [`GuestBuilder`] writes page tables of any x86 mode into a RAM image.
//! * [`aarch64`] — aarch64 tables for every granule, their own reference translator (from the
//!   Arm ARM) and random hostile table sets.
//! * [`allocator`] — the bump allocator of table frames it uses.
//! * [`memory`] — [`SparseMemory`], RAM that only costs the pages written (big guests).
//! * [`reference`] — an independent translator written from the Intel SDM: the oracle.
//! * [`linux_like`] — a 4-level guest shaped like Linux x86_64 (direct map, ESPFIX aliases…).
//! * [`fixture`] — synthetic guests written as ELF cores or raw images.
//! * [`random`] — random and garbage table sets for property tests and fuzzing.
//! * [`vmcoreinfo`] — VMCOREINFO lines of a real kernel for synthetic ones.
//! * [`tools`] — external tools the tests run, and the rule for a missing one under `CI=true`.
//!
//! Nothing here calls guestcore's paging code, so a bug there cannot hide in both.

pub mod aarch64;
pub mod allocator;
pub mod builder;
pub mod fixture;
pub mod geometry;
pub mod linux_like;
pub mod memory;
pub mod pages;
pub mod random;
pub mod reference;
pub mod tools;
pub mod vmcoreinfo;

pub use builder::GuestBuilder;
pub use geometry::{MapFlags, PageSize};
pub use linux_like::{linux_like, linux_like_with_heap, LinuxLike};
pub use memory::SparseMemory;
