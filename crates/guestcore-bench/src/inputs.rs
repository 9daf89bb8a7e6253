//! Benchmark inputs, all generated (never downloaded, never hand-made).
//!
//! * [`linux_guest`] — the testkit's Linux-like 4-level guest (direct map in 1 GiB/2 MiB pages,
//!   4 MiB of kernel text in 4 KiB pages, 65,536 ESPFIX aliases, vmalloc) plus a user heap of
//!   many 4 KiB pages (1/16 of RAM, never mergeable). Sparse: costs its tables, not its RAM.
//! * [`mapping_guest`] — exactly `n` non-mergeable 4 KiB leaves, for the scaling series.
//! * [`FilledMemory`] — a sparse guest whose unwritten pages read as pseudo-random bytes, so a
//!   dump of it has real data to copy (a file of zeros would only measure hole punching).

use guestcore::addr::PhysRange;
use guestcore::cpu::X86CpuState;
use guestcore::dump::notes::{dump_notes, CpuNotes};
use guestcore::dump::{
    write_elf_core, DumpLayout, DumpSummary, ElfClass, ElfDumpRequest, ElfMachine, OutputOptions,
};
use guestcore::phys::{PhysMemory, RamMap};
use guestcore::NoProgress;
use guestcore_testkit::geometry::{A, P, RW, US, XD};
use guestcore_testkit::{linux_like_with_heap, GuestBuilder, LinuxLike, SparseMemory};
use std::path::Path;

const PAGE: u64 = 4096;

/// The Linux-like guest of `ram` bytes with a user heap covering 1/16 of RAM in 4 KiB pages.
pub fn linux_guest(ram: u64) -> LinuxLike {
    linux_like_with_heap(ram, heap_pages(ram))
}

/// Heap pages of [`linux_guest`].
pub fn heap_pages(ram: u64) -> u64 {
    ram / PAGE / 16
}

/// Start of the leaves of [`mapping_guest`]: PML4 slot 32, far from anything else.
pub const MAPS_BASE: u64 = 0x1000_0000_0000;
/// RAM of [`mapping_guest`]: room for the tables of 10M leaves (≈ 80 MiB of PTs).
pub const MAPS_RAM: u64 = 1 << 30;

/// A 4-level guest with exactly `n` user 4 KiB leaves from [`MAPS_BASE`] on, each mapped to the
/// frame below its predecessor's (wrapping at the top of RAM), so no two merge. Page tables are
/// written a whole page at a time, so building 10M leaves takes about a second.
pub fn mapping_guest(n: u64) -> (SparseMemory, X86CpuState) {
    let mut b =
        GuestBuilder::new(guestcore::paging::ModeKind::Level4, MAPS_RAM).tables_at(0x10_0000);
    let frames = MAPS_RAM / PAGE;
    let mut done = 0;
    let mut pt = vec![0u8; PAGE as usize];
    while done < n {
        let count = (n - done).min(512);
        pt.fill(0);
        for k in 0..count {
            let i = done + k;
            let pa = (frames - 1 - (i % frames)) * PAGE;
            let e = pa | P | RW | US | A | XD;
            pt[(k * 8) as usize..(k * 8 + 8) as usize].copy_from_slice(&e.to_le_bytes());
        }
        let frame = b.alloc_frame();
        b.write_phys(frame, &pt);
        // Level 2 (0 = PML4) is the PD entry that points at this PT.
        b.raw_entry(MAPS_BASE + done * PAGE, 2, frame | P | RW | US | A);
        done += count;
    }
    b.build()
}

/// Guest memory whose never-written (all-zero) pages read as deterministic pseudo-random bytes.
pub struct FilledMemory<'a> {
    /// The memory read through; its written pages read as they are.
    pub inner: &'a SparseMemory,
}

/// Names the wrapper only: the inner memory's `Debug` would print every written page.
impl std::fmt::Debug for FilledMemory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilledMemory").finish_non_exhaustive()
    }
}

impl FilledMemory<'_> {
    fn fill(pa: u64, buf: &mut [u8]) {
        for (i, w) in buf.chunks_mut(8).enumerate() {
            let mut x = (pa + 8 * i as u64) | 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            w.copy_from_slice(&b[..w.len()]);
        }
    }

    fn is_zero(b: &[u8]) -> bool {
        b.iter().all(|&x| x == 0)
    }
}

impl PhysMemory for FilledMemory<'_> {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> guestcore::Result<()> {
        self.inner.read_at(addr, buf)?;
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr + done as u64;
            let n = ((PAGE - a % PAGE) as usize).min(buf.len() - done);
            let page = a & !(PAGE - 1);
            // Decide per whole page, so a partial read agrees with a full one.
            let mut whole = [0u8; PAGE as usize];
            let chunk = &mut buf[done..done + n];
            let zero = if n == PAGE as usize {
                Self::is_zero(chunk)
            } else {
                self.inner.read_at(page, &mut whole)?;
                Self::is_zero(&whole)
            };
            if zero {
                Self::fill(a, chunk);
            }
            done += n;
        }
        Ok(())
    }

    fn ram(&self) -> &RamMap {
        self.inner.ram()
    }

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let page = self.inner.slice(addr & !(PAGE - 1), PAGE)?;
        if Self::is_zero(page) {
            return None;
        }
        self.inner.slice(addr, len)
    }
}

/// Writes a non-paging ELF core of `mem` with `cpu`'s notes to `out` (replacing it).
pub fn write_core(
    mem: &dyn PhysMemory,
    cpu: &X86CpuState,
    layout: DumpLayout<'_>,
    out: &Path,
) -> guestcore::Result<DumpSummary> {
    let notes = dump_notes(
        CpuNotes::Build {
            cpus: &[cpu.clone().into()],
            long_mode: true,
        },
        &[],
        None,
    );
    let req = ElfDumpRequest {
        memory: mem,
        notes: &notes,
        machine: ElfMachine::X86_64,
        class: ElfClass::Elf64,
        layout,
        filter: None::<PhysRange>,
        excluded: None,
    };
    write_elf_core(&req, out, &OutputOptions { force: true }, &NoProgress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestcore::mapping::MappingList;
    use guestcore::paging::{PagingMode, WalkLimits};

    #[test]
    fn mapping_guest_has_exactly_n_unmergeable_leaves() {
        for n in [1, 511, 512, 1000, 3000] {
            let (mem, cpu) = mapping_guest(n);
            let mode = PagingMode::from_cpu(&cpu).unwrap();
            let (list, report) =
                MappingList::from_walk(&mem, &mode, WalkLimits::default()).unwrap();
            assert_eq!(report.leaves, n);
            assert_eq!(list.len() as u64, n, "no merging");
            assert_eq!(list.as_slice()[0].va.0, MAPS_BASE);
        }
    }

    #[test]
    fn filled_memory_keeps_tables_and_fills_the_rest() {
        let g = linux_guest(64 << 20);
        let f = FilledMemory { inner: &g.memory };
        let root = g.cpu.cr3();
        let mut a = [0u8; 8];
        f.read_at(root + 0x800, &mut a).unwrap();
        assert_eq!(a, g.memory.read_u64(root + 0x800).unwrap().to_le_bytes());
        let mut x = [0u8; 16];
        f.read_at((32 << 20) + 8, &mut x).unwrap();
        assert_ne!(x, [0; 16]);
        let mut y = vec![0u8; 8192];
        f.read_at(32 << 20, &mut y).unwrap();
        assert_eq!(&y[8..24], &x);
    }
}
