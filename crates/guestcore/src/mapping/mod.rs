//! The memory-mapping list: what the guest maps, merged into as few ranges as possible without
//! losing an alias, and its renderings (QEMU `info mem` / `info tlb` style text, JSON).

mod list;
pub mod render;

pub use list::{Mapping, MappingList};
