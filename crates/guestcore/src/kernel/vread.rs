//! Reading virtual memory through a set of page tables, page by page: the crate's one
//! virtual-memory reader.
//!
//! Used by the facade's virtual reads (`Guest::read_virt`) and for the structures VMCOREINFO
//! points at (the printk ring buffer, the page array). Each read is bounded by its caller; a
//! page that does not translate, or translates outside guest RAM, is
//! [`Error::NotMapped`] naming the address, never zeros.

use crate::paging::{translate, PageFlags, PagingMode};
use crate::phys::PhysMemory;
use crate::{Error, Result};

/// Reads `buf.len()` bytes at virtual `va` of the address space `mode` describes.
pub(crate) fn read_virt<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    va: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = va.checked_add(done as u64).ok_or(Error::NotMapped {
            vaddr: va,
            why: "the range wraps past the top of the address space".into(),
        })?;
        let (paddr, page_left) = ram_leaf(mem, mode, at)?;
        let n = ((buf.len() - done) as u64).min(page_left) as usize;
        crate::phys::read_bulk(mem, paddr, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Where `va` lies in guest RAM, and how many bytes of its page are left from it; an error
/// when it does not translate or maps I/O.
fn ram_leaf<M: PhysMemory + ?Sized>(mem: &M, mode: &PagingMode, va: u64) -> Result<(u64, u64)> {
    let t = translate(mem, mode, va)?;
    if t.flags.contains(PageFlags::IO) {
        return Err(Error::NotMapped {
            vaddr: va,
            why: format!("maps {:#x}, which is not guest RAM", t.paddr),
        });
    }
    Ok((t.paddr, t.page_size - (va & (t.page_size - 1))))
}

/// `[va, va + len)` borrowed from `mem` ([`PhysMemory::slice`]: a mapped file) when one page
/// of `mode` maps all of it to guest RAM; `None` when it does not (crosses a page, does not
/// translate, is I/O, or the source lends no slices), and the caller reads with
/// [`read_virt`]. The page array behind 2 MiB pages of the direct map or vmemmap is read this
/// way without a copy.
pub(crate) fn virt_slice<'m, M: PhysMemory + ?Sized>(
    mem: &'m M,
    mode: &PagingMode,
    va: u64,
    len: u64,
) -> Option<&'m [u8]> {
    let (paddr, page_left) = ram_leaf(mem, mode, va).ok()?;
    if len > page_left {
        return None;
    }
    mem.slice(paddr, len)
}

/// Tells `mem` that the physical pages behind `[va, va + len)` will not be read again soon
/// ([`PhysMemory::release`]): a pass over a large virtual array (the page array) then stays
/// O(window) resident. Pages that do not translate are skipped.
pub(crate) fn release_virt<M: PhysMemory + ?Sized>(mem: &M, mode: &PagingMode, va: u64, len: u64) {
    let end = va.saturating_add(len);
    let mut at = va;
    while at < end {
        let Ok(t) = translate(mem, mode, at) else {
            at = (at | 0xfff).saturating_add(1);
            continue;
        };
        let n = (t.page_size - (at & (t.page_size - 1))).min(end - at);
        mem.release(t.paddr, n);
        at = at.saturating_add(n);
    }
}

/// A little-endian unsigned integer of `width` (4 or 8) bytes at `va`.
pub(crate) fn read_uint<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    va: u64,
    width: usize,
) -> Result<u64> {
    let mut b = [0u8; 8];
    read_virt(mem, mode, va, &mut b[..width])?;
    Ok(u64::from_le_bytes(b))
}

/// A little-endian unsigned integer of `width` (at most 8) bytes at `off` in `bytes`, or `None`
/// when it does not lie inside (an offset from hostile VMCOREINFO).
pub(crate) fn uint_at(bytes: &[u8], off: usize, width: usize) -> Option<u64> {
    let mut b = [0u8; 8];
    b.get_mut(..width)?
        .copy_from_slice(bytes.get(off..off.checked_add(width)?)?);
    Some(u64::from_le_bytes(b))
}
