//! Reading guest memory by virtual address: page by page through the selected tables, refusing
//! addresses that map device memory (reading them as RAM would be silently wrong).

use super::{Guest, Selected};
use crate::paging::PageFlags;
use crate::{Error, Result};

impl Guest {
    /// Fills `buf` from virtual address `vaddr` through `sel`'s tables. An unmapped page, or
    /// one that maps memory that is not guest RAM, is an error naming the address.
    pub fn read_virt(&self, sel: &Selected, vaddr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let addr = vaddr
                .checked_add(done as u64)
                .ok_or_else(|| Error::Unsupported("address range wraps".into()))?;
            let t = self.translate(sel, addr)?;
            if t.flags.contains(PageFlags::IO) {
                return Err(Error::Unsupported(format!(
                    "virtual address {addr:#x} maps {:#x}, which is not guest RAM",
                    t.paddr
                )));
            }
            let page_left = t.page_size - (addr & (t.page_size - 1));
            let chunk = (buf.len() - done).min(usize::try_from(page_left).unwrap_or(usize::MAX));
            self.read_phys(t.paddr, &mut buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Fills `buf` from guest-physical address `paddr`.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<()> {
        self.image.memory.read_at(paddr, buf).map_err(|e| {
            e.context(format!(
                "{}: reading {} bytes at physical {paddr:#x}",
                self.image.path.display(),
                buf.len()
            ))
        })
    }
}
