//! The RAM layout of a running QEMU, from HMP `info mtree -f`.
//!
//! The flat view of address space `memory` lists every guest-physical range with the RAM block
//! behind it and the offset inside the block
//! (`0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000`). The blocks
//! that are guest RAM are the memory backends `query-memdev` lists (`-m` alone creates one named
//! `pc.ram`; `-machine memory-backend=ID` names it ID). On `pc`, RAM below 4 GiB stops at the
//! PCI hole and the rest appears at 4 GiB with an offset — exactly what the flat view shows,
//! so nothing about the split is hard-coded here.

use crate::addr::PhysRange;
use crate::phys::RamPiece;
use crate::{Error, Result};

/// One line of a flat view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FlatRange {
    /// The guest-physical range of the line.
    pub phys: PhysRange,
    /// `ram`, `rom`, `i/o`, `romd` …
    pub kind: String,
    /// The memory region's name (a RAM block for RAM).
    pub block: String,
    /// Offset inside the region (the `@…` suffix; 0 without one).
    pub offset: u64,
}

/// The flat view of address space `memory` in `info mtree -f` output.
pub(super) fn parse_memory_flat_view(text: &str) -> Result<Vec<FlatRange>> {
    let mut in_memory = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("FlatView #") {
            if found {
                break;
            }
            in_memory = false;
            continue;
        }
        if t == "AS \"memory\", root: system" || t.starts_with("AS \"memory\",") {
            in_memory = true;
            found = true;
            continue;
        }
        if !in_memory {
            continue;
        }
        if let Some(r) = parse_flat_line(t) {
            out.push(r);
        }
    }
    if !found {
        return Err(Error::parse(
            "info mtree -f",
            "no flat view for address space \"memory\"",
        ));
    }
    Ok(out)
}

/// `0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000`.
fn parse_flat_line(t: &str) -> Option<FlatRange> {
    let (range, rest) = t.split_once(' ')?;
    let (s, e) = range.split_once('-')?;
    let start = u64::from_str_radix(s, 16).ok()?;
    let last = u64::from_str_radix(e, 16).ok()?;
    let rest = rest.strip_prefix("(prio ")?;
    let (attrs, name) = rest.split_once("): ")?;
    let kind = attrs.split_once(", ")?.1.to_string();
    let (block, offset) = match name.rsplit_once(" @") {
        Some((n, off)) if off.len() == 16 => (n, u64::from_str_radix(off, 16).ok()?),
        _ => (name, 0),
    };
    let end = last.checked_add(1)?;
    (end > start).then(|| FlatRange {
        phys: PhysRange { start, end },
        kind,
        block: block.trim().to_string(),
        offset,
    })
}

/// The RAM/ROM ranges of `blocks` as pieces of guest RAM, with neighbours that continue each
/// other (same block, adjacent physically and in the block) joined.
pub(super) fn ram_pieces(flat: &[FlatRange], blocks: &[String]) -> Vec<RamPiece> {
    let mut v: Vec<&FlatRange> = flat
        .iter()
        .filter(|f| (f.kind == "ram" || f.kind == "rom") && blocks.contains(&f.block))
        .collect();
    v.sort_by_key(|f| f.phys.start);
    let mut out: Vec<RamPiece> = Vec::new();
    for f in v {
        if let Some(last) = out.last_mut() {
            if last.block == f.block
                && last.phys.end == f.phys.start
                && last.offset + last.phys.len() == f.offset
            {
                last.phys.end = f.phys.end;
                continue;
            }
        }
        out.push(RamPiece {
            phys: f.phys,
            block: f.block.clone(),
            offset: f.offset,
        });
    }
    out
}

#[cfg(test)]
mod tests;
