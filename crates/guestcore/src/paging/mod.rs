//! Paging, x86 and aarch64: every mode is *data* ([`PagingMode`]: levels, index bits, leaf sizes, masks) and
//! one engine serves them all — [`walk()`] enumerates every leaf in ascending canonical
//! virtual-address order, [`translate()`] follows one address and records each entry it read.
//! Both decode entries through the same `entry` function, so they cannot disagree.
//!
//! Facts (Intel SDM vol. 3A ch. 4) are in `shared/DESIGN.md` §3; aarch64's (Arm ARM D8) in
//! `aarch64`, which turns TCR_EL1 and the TTBRs into the same [`Level`]s, one hierarchy per
//! half of the address space.

mod aarch64;
pub(crate) mod entry;
mod flags;
mod mode;
mod translate;
mod walk;

pub use aarch64::{Aarch64Half, Aarch64Regime, Granule, Ttbr};
pub use flags::PageFlags;
pub use mode::{state_for_mode, Level, ModeKind, PagingMode};
pub use translate::{translate, TraceStep, Translation};
pub use walk::{
    walk, walk_until, walk_with_tables, Leaf, StopReason, WalkLimits, WalkReport,
    LOOP_FRAMES_COUNTED,
};
