//! Text and JSON renderings a QEMU user recognises.
//!
//! Listings are written line by line to the caller's writer, never built whole in memory: a
//! hostile guest's tables can produce millions of mappings, and their text is ten times the
//! size of the list.

use super::list::MappingList;
use crate::paging::{Leaf, PageFlags};
use std::fmt::Write;

/// One line per merged mapping, like HMP `info mem` (virtual range, size, `urwx` permissions)
/// followed by the physical start, which `info mem` does not show; ` io` marks non-RAM.
pub(crate) fn mem_line(out: &mut String, va: u64, size: u64, pa: u64, flags: PageFlags) {
    let _ = writeln!(
        out,
        "{va:016x}-{end:016x} {size:016x} {perm} {pa:016x}{io}",
        end = va.wrapping_add(size),
        perm = flags.mem_string(),
        io = if flags.contains(PageFlags::IO) {
            " io"
        } else {
            ""
        },
    );
}

/// Writes the `mem` listing to `out` one line at a time (one line buffer, reused).
pub fn write_mem(out: &mut dyn std::io::Write, list: &MappingList) -> std::io::Result<()> {
    let mut line = String::with_capacity(96);
    for m in list {
        line.clear();
        mem_line(&mut line, m.va.0, m.size, m.pa.0, m.flags);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// One line per leaf, like HMP `info tlb`: `VA: PA FLAGS`, plus the leaf size and ` io` for
/// non-RAM leaves. Addresses are canonical and physical addresses fully masked (QEMU prints
/// NX inside the PA in PAE mode and drops PSE-36 bits; we do neither).
pub fn tlb_line(out: &mut String, leaf: &Leaf) {
    let _ = writeln!(
        out,
        "{:016x}: {:016x} {} {}{}",
        leaf.va,
        leaf.pa,
        leaf.flags.tlb_string(),
        size_name(leaf.size),
        if leaf.flags.contains(PageFlags::IO) {
            " io"
        } else {
            ""
        },
    );
}

/// `4K`, `2M`, `4M`, `1G`, or a hex byte count for other sizes.
pub fn size_name(size: u64) -> String {
    match size {
        0x1000 => "4K".into(),
        0x20_0000 => "2M".into(),
        0x40_0000 => "4M".into(),
        0x4000_0000 => "1G".into(),
        s if s % (1 << 20) == 0 => format!("{}M", s >> 20),
        s => format!("{s:#x}"),
    }
}
