//! memflow (0.2) as a peer: its x86-64 translator over the very bytes guestcore walks.
//!
//! memflow reads guest-physical memory through its `PhysicalMemory` trait; [`MemflowPhys`]
//! implements it on top of any guestcore [`PhysMemory`], so both walkers read the same source
//! (a copy per read for memflow, which is how its own connectors work too).
//!
//! Two memflow calls are measured, because neither is exactly guestcore's mapping list:
//! * `virt_translation_map` — every translation with its physical address, sorted (BTreeSet)
//!   and merged where both virtual and physical addresses continue: the closest equivalent;
//! * `virt_page_map_range(0, …)` — virtual ranges only (no physical address), merged across
//!   physical discontinuities; cheaper, but it answers a smaller question.
//!
//! memflow knows 4-level paging only (no LA57), has no notion of guest RAM holes (a leaf over
//! MMIO is just a translation) and no canonical sign extension in its output addresses.

use guestcore::phys::PhysMemory;
use memflow::architecture::x86::x64;
use memflow::cglue::{CTup2, CTup3};
use memflow::error::{Error, ErrorKind, ErrorOrigin, Result};
use memflow::mem::mem_data::{opt_call, MemOps, PhysicalReadMemOps, PhysicalWriteMemOps};
use memflow::mem::{PhysicalMemory, PhysicalMemoryMetadata, VirtualDma, VirtualTranslate};
use memflow::types::{umem, Address};

/// A guestcore memory source seen through memflow's `PhysicalMemory` trait (read-only).
pub struct MemflowPhys<'a> {
    /// The source memflow reads.
    pub mem: &'a dyn PhysMemory,
}

/// Shows the source's RAM ranges, not its bytes.
impl std::fmt::Debug for MemflowPhys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemflowPhys")
            .field("ram", &self.mem.ram().ranges())
            .finish()
    }
}

impl PhysicalMemory for MemflowPhys<'_> {
    fn phys_read_raw_iter(
        &mut self,
        MemOps {
            inp,
            mut out,
            mut out_fail,
        }: PhysicalReadMemOps,
    ) -> Result<()> {
        for CTup3(addr, meta, mut data) in inp {
            if self.mem.read_at(addr.to_umem(), &mut data).is_ok() {
                opt_call(out.as_deref_mut(), CTup2(meta, data));
            } else {
                opt_call(out_fail.as_deref_mut(), CTup2(meta, data));
            }
        }
        Ok(())
    }

    fn phys_write_raw_iter(&mut self, _: PhysicalWriteMemOps) -> Result<()> {
        Err(Error(ErrorOrigin::Connector, ErrorKind::ReadOnly))
    }

    fn metadata(&self) -> PhysicalMemoryMetadata {
        let ram = self.mem.ram();
        PhysicalMemoryMetadata {
            max_address: Address::from(ram.end().saturating_sub(1)),
            real_size: ram.total() as umem,
            readonly: true,
            ideal_batch_size: u32::MAX,
        }
    }
}

/// What one memflow enumeration returned.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemflowCount {
    /// Entries returned.
    pub entries: u64,
    /// Bytes they cover.
    pub bytes: u64,
}

/// `virt_translation_map` over the whole address space of the tables at `cr3`.
pub fn translation_map(mem: &dyn PhysMemory, cr3: u64) -> MemflowCount {
    let mut v = VirtualDma::new(
        MemflowPhys { mem },
        x64::ARCH,
        x64::new_translator(Address::from(cr3 & !0xfff)),
    );
    let mut c = MemflowCount::default();
    v.virt_translation_map(
        (&mut |t: memflow::mem::virt_translate::VirtualTranslation| {
            c.entries += 1;
            c.bytes += t.size;
            true
        })
            .into(),
    );
    c
}

/// `virt_page_map_range(0, null, invalid)`: every mapped virtual range, gaps of 0 kept.
pub fn page_map(mem: &dyn PhysMemory, cr3: u64) -> MemflowCount {
    let mut v = VirtualDma::new(
        MemflowPhys { mem },
        x64::ARCH,
        x64::new_translator(Address::from(cr3 & !0xfff)),
    );
    let mut c = MemflowCount::default();
    v.virt_page_map_range(
        0,
        Address::null(),
        Address::invalid(),
        (&mut |CTup3(_, size, _): memflow::mem::MemoryRange| {
            c.entries += 1;
            c.bytes += size;
            true
        })
            .into(),
    );
    c
}
