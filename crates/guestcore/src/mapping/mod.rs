//! The memory-mapping list: what the guest maps, merged into as few ranges as possible without
//! losing an alias, the union of several vCPUs' views (one physical page per virtual page),
//! and its renderings (QEMU `info mem` / `info tlb` style text, JSON).

mod list;
pub mod render;
mod union;

pub use list::{Mapping, MappingList};
pub(crate) use union::{union_of_views, UnionConflict, ViewPart};
