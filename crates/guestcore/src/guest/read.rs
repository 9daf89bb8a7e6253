//! Reading guest memory by virtual address, through the selected tables, with the crate's one
//! virtual-memory reader ([`crate::kernel::vread::read_virt`]): an address that does not
//! translate, or that maps memory which is not guest RAM (reading device memory as RAM would be
//! silently wrong), is [`Error::NotMapped`](crate::Error::NotMapped) naming the address.

use super::{Guest, Selected};
use crate::kernel::vread;
use crate::Result;

impl Guest {
    /// Fills `buf` from virtual address `vaddr` through `sel`'s tables. An unmapped page, or
    /// one that maps memory that is not guest RAM, is [`Error::NotMapped`](crate::Error::NotMapped)
    /// naming the address.
    pub fn read_virt(&self, sel: &Selected, vaddr: u64, buf: &mut [u8]) -> Result<()> {
        vread::read_virt(&*self.image.memory, &sel.mode, vaddr, buf)
            .map_err(|e| e.context(self.image.path.display().to_string()))
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
