//! Single-address translation with a trace of every entry read, like QEMU's `gva2gpa` plus the
//! detail a debugger wants when a translation goes wrong.

use super::entry::{self, Entry};
use super::flags::PageFlags;
use super::mode::{ModeKind, PagingMode, Tables};
use crate::addr::is_canonical;
use crate::phys::PhysMemory;
use crate::{Error, Result};
use serde::Serialize;

/// One entry read during a translation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// Table level name (`PML4`, `PD`, ...).
    pub level: &'static str,
    /// Physical address of the table.
    pub table: u64,
    /// Index into the table.
    pub index: u32,
    /// Physical address of the entry.
    pub entry_addr: u64,
    /// The entry as read (0 when it could not be read).
    pub entry: u64,
}

/// A successful translation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// The virtual address asked for.
    pub vaddr: u64,
    /// The guest-physical address it maps to.
    pub paddr: u64,
    /// Size of the leaf that maps `vaddr`.
    pub page_size: u64,
    /// Effective permissions plus the leaf's own bits; `IO` when the page is not guest RAM.
    pub flags: PageFlags,
    /// Every entry read, root first.
    pub steps: Vec<TraceStep>,
}

/// Translates `vaddr`. Errors: non-canonical or out-of-range address, a not-present or
/// reserved entry, a table outside guest memory (each naming the level). On aarch64 bit 55
/// picks TTBR0's or TTBR1's half and the address must lie in that half's range (a tagged
/// address is not stripped: addresses are taken as given).
pub fn translate<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    vaddr: u64,
) -> Result<Translation> {
    let not_mapped = |why: String| Error::NotMapped { vaddr, why };
    in_range(mode, vaddr).map_err(not_mapped)?;
    let mut steps = Vec::new();
    if mode.kind == ModeKind::Off {
        let paddr = vaddr & mode.a20_mask;
        let mut flags = PageFlags::WRITE | PageFlags::USER;
        if !mem.is_ram(paddr, 1) {
            flags |= PageFlags::IO;
        }
        return Ok(Translation {
            vaddr,
            paddr,
            page_size: 4096,
            flags,
            steps,
        });
    }
    let t: Tables = match &mode.aarch64 {
        Some(r) => {
            let ttbr = r.half_for(vaddr).map_err(not_mapped)?.ttbr;
            mode.tables()
                .find(|t| t.half.is_some_and(|h| h.ttbr == ttbr))
        }
        None => mode.tables().next(),
    }
    .ok_or_else(|| not_mapped("the mode has no page tables".into()))?;
    let width = mode.entry_bytes() as u64;
    let mut table = t.root;
    let mut acc = PageFlags::WRITE | PageFlags::USER;
    for (level, lvl) in t.levels.iter().enumerate() {
        let index = ((vaddr >> lvl.shift) & ((1 << lvl.index_bits) - 1)) as u32;
        let entry_addr = (table + index as u64 * width) & mode.a20_mask;
        let raw = if width == 8 {
            mem.read_u64(entry_addr)
        } else {
            mem.read_u32(entry_addr).map(u64::from)
        };
        let raw = raw.map_err(|_| {
            not_mapped(format!(
                "{} table at {table:#x} is outside guest memory",
                lvl.name
            ))
        })?;
        steps.push(TraceStep {
            level: lvl.name,
            table,
            index,
            entry_addr,
            entry: raw,
        });
        match entry::decode(mode, &t, level, raw) {
            Entry::NotPresent => {
                return Err(not_mapped(format!(
                    "{} entry {index} at {entry_addr:#x} is not present ({raw:#x})",
                    lvl.name
                )))
            }
            Entry::Reserved if t.half.is_some() => {
                return Err(not_mapped(format!(
                    "{} entry {index} at {entry_addr:#x} is a reserved descriptor ({raw:#x}: a \
                     block where the granule allows none, or type 0b01 at level 3)",
                    lvl.name
                )))
            }
            Entry::Reserved => {
                return Err(not_mapped(format!(
                    "{} entry {index} at {entry_addr:#x} has reserved bits set ({raw:#x})",
                    lvl.name
                )))
            }
            Entry::Table(next) => {
                acc = entry::combine(acc, entry::perms(mode, &t, level, raw));
                table = next;
            }
            Entry::Leaf { pa, size } => {
                let mut flags = entry::combine(acc, entry::perms(mode, &t, level, raw));
                flags |= entry::leaf_bits(&t, level, raw);
                let paddr = (pa + (vaddr & (size - 1))) & mode.a20_mask;
                if !mem.is_ram(paddr, 1) {
                    flags |= PageFlags::IO;
                }
                return Ok(Translation {
                    vaddr,
                    paddr,
                    page_size: size,
                    flags,
                    steps,
                });
            }
        }
    }
    Err(not_mapped(
        "page-table hierarchy ended without a leaf".into(),
    ))
}

/// Whether `vaddr` is an address of `mode` at all: canonical in IA-32e, below 4 GiB in the
/// 32-bit modes, below the PA size for aarch64 with the MMU off (an aarch64 half checks its own
/// range when it is chosen).
fn in_range(mode: &PagingMode, vaddr: u64) -> std::result::Result<(), String> {
    if mode.is_aarch64() {
        if mode.kind == ModeKind::Off && vaddr >> mode.va_bits().min(63) != 0 {
            return Err(format!(
                "above the {}-bit physical address space (MMU off)",
                mode.va_bits()
            ));
        }
    } else if mode.is_long() {
        if !is_canonical(vaddr, mode.va_bits()) {
            return Err(format!(
                "not canonical for {}-bit linear addresses",
                mode.va_bits()
            ));
        }
    } else if vaddr > u32::MAX as u64 {
        return Err("above 4 GiB in a 32-bit paging mode".into());
    }
    Ok(())
}
