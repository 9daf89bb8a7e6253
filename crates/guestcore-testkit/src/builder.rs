//! [`GuestBuilder`]: writes page tables for any paging mode into a guest RAM image and returns
//! the memory plus a vCPU whose CR0/CR3/CR4/EFER select that mode.
//!
//! Normal use is [`map`](GuestBuilder::map) (largest pages that fit) or
//! [`map_pages`](GuestBuilder::map_pages) (one page size); intermediate tables come from a bump
//! allocator inside RAM. Hostile layouts — reserved bits, self-references, loops, pointers past
//! RAM, MMIO leaves — are written through the escape hatches [`raw_entry`](GuestBuilder::raw_entry)
//! and [`modify_entry`](GuestBuilder::modify_entry), which address an entry by the virtual
//! address whose walk reads it and by its level (0 = root).

use crate::allocator::FrameAllocator;
use crate::geometry::{Geometry, MapFlags, PageSize};
use crate::memory::SparseMemory;
use guestcore::cpu::{
    X86CpuState, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME, EFER_NXE,
};
use guestcore::paging::ModeKind;
use guestcore::phys::{PhysMemory, VecMemory};

/// CR0.PE.
const CR0_PE: u64 = 1;
/// Default position of the PAE PDPT inside its frame: 32-byte aligned, not page aligned.
pub const PAE_ROOT_OFFSET: u64 = 0x7e0;

/// Builds a guest: RAM, page tables, data, registers.
#[derive(Debug, Clone)]
pub struct GuestBuilder {
    kind: ModeKind,
    geo: Option<Geometry>,
    mem: SparseMemory,
    alloc: FrameAllocator,
    root: Option<u64>,
    pae_root_offset: u64,
    nxe: bool,
    pse: bool,
    a20: bool,
}

impl GuestBuilder {
    /// A guest of `kind` with RAM at `[0, ram_size)`.
    pub fn new(kind: ModeKind, ram_size: u64) -> Self {
        Self::with_ram(kind, &[(0, ram_size)])
    }

    /// A guest with a PC-like hole: RAM at `[0, 0xa0000)` and `[0x100000, ram_size)`.
    pub fn pc(kind: ModeKind, ram_size: u64) -> Self {
        Self::with_ram(kind, &[(0, 0xa0000), (0x10_0000, ram_size - 0x10_0000)])
    }

    /// A guest with RAM at the given `(start, len)` ranges. Tables are allocated from the first
    /// RAM frame at or above 64 KiB (or the lowest RAM frame when there is none there).
    pub fn with_ram(kind: ModeKind, ranges: &[(u64, u64)]) -> Self {
        let mem = SparseMemory::new(ranges);
        let ram = mem.ram().clone();
        let start = if ram.ranges().iter().any(|r| r.end > 0x1_1000) {
            0x1_0000
        } else {
            ram.ranges().first().map_or(0, |r| r.start)
        };
        GuestBuilder {
            kind,
            geo: (kind != ModeKind::Off).then(|| Geometry::of(kind)),
            mem,
            alloc: FrameAllocator::new(ram, start),
            root: None,
            pae_root_offset: PAE_ROOT_OFFSET,
            nxe: true,
            pse: true,
            a20: true,
        }
    }

    /// Moves the table allocator to `pa` (before the first table is allocated, usually).
    pub fn tables_at(mut self, pa: u64) -> Self {
        self.alloc = FrameAllocator::new(self.mem.ram().clone(), pa);
        self
    }

    /// EFER.NXE (default on; only PAE and IA-32e modes have an XD bit).
    pub fn nxe(mut self, on: bool) -> Self {
        self.nxe = on;
        self
    }

    /// CR4.PSE (default on; decides 4 MiB leaves in 32-bit paging).
    pub fn pse(mut self, on: bool) -> Self {
        self.pse = on;
        self
    }

    /// The A20 line (default enabled; `false` masks physical bit 20).
    pub fn a20(mut self, enabled: bool) -> Self {
        self.a20 = enabled;
        self
    }

    /// Offset of the PAE PDPT inside its frame (32-byte aligned; default [`PAE_ROOT_OFFSET`]).
    pub fn pae_root_offset(mut self, off: u64) -> Self {
        assert!(off % 32 == 0 && off < 4096, "PAE CR3 is 32-byte aligned");
        assert!(self.root.is_none(), "set the PDPT offset before mapping");
        self.pae_root_offset = off;
        self
    }

    /// The mode being built.
    pub fn kind(&self) -> ModeKind {
        self.kind
    }

    /// The table geometry.
    ///
    /// # Panics
    /// With paging off.
    pub fn geometry(&self) -> Geometry {
        self.geo.expect("paging off has no tables")
    }

    /// The memory as built so far.
    pub fn memory(&self) -> &SparseMemory {
        &self.mem
    }

    /// One fresh RAM frame from the table allocator (for test data that must not collide with
    /// tables).
    pub fn alloc_frame(&mut self) -> u64 {
        self.alloc.alloc()
    }

    /// `n` contiguous RAM frames from the table allocator.
    pub fn alloc_frames(&mut self, n: u64) -> u64 {
        self.alloc.alloc_contiguous(n)
    }

    /// Writes bytes into guest RAM.
    pub fn write_phys(&mut self, pa: u64, bytes: &[u8]) -> &mut Self {
        self.mem.write(pa, bytes);
        self
    }

    /// Writes a little-endian u64 into guest RAM.
    pub fn write_u64(&mut self, pa: u64, v: u64) -> &mut Self {
        self.mem.write_u64(pa, v);
        self
    }

    /// Physical address of the root table (CR3 without flag bits), allocated on first use.
    pub fn root(&mut self) -> u64 {
        if let Some(r) = self.root {
            return r;
        }
        let frame = self.alloc.alloc();
        let r = if self.kind == ModeKind::Pae {
            frame + self.pae_root_offset
        } else {
            frame
        };
        self.root = Some(r);
        r
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with the largest leaves that fit alignment
    /// and length (4 MiB with PSE in 32-bit paging; 2 MiB; 1 GiB in IA-32e).
    pub fn map(&mut self, va: u64, pa: u64, size: u64, flags: MapFlags) -> &mut Self {
        let geo = self.geometry();
        let mut sizes: Vec<PageSize> = [PageSize::Size1G, PageSize::Size4M, PageSize::Size2M]
            .into_iter()
            .filter(|&s| geo.leaf_level(s).is_some())
            .filter(|&s| s != PageSize::Size4M || self.pse)
            .collect();
        sizes.push(PageSize::Size4K);
        let mut off = 0;
        while off < size {
            let page = sizes
                .iter()
                .copied()
                .find(|s| {
                    let b = s.bytes();
                    (va + off) % b == 0 && (pa + off) % b == 0 && size - off >= b
                })
                .unwrap_or_else(|| panic!("{va:#x}/{pa:#x}/{size:#x} not 4 KiB aligned"));
            self.map_page(va + off, pa + off, page, flags);
            off += page.bytes();
        }
        self
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with leaves of one size.
    pub fn map_pages(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        page: PageSize,
        flags: MapFlags,
    ) -> &mut Self {
        let b = page.bytes();
        assert!(size % b == 0, "size {size:#x} is not a multiple of {b:#x}");
        let mut off = 0;
        while off < size {
            self.map_page(va + off, pa + off, page, flags);
            off += b;
        }
        self
    }

    /// Maps one leaf of `page` size at `va` (both addresses aligned to it).
    ///
    /// # Panics
    /// When the mode has no such leaves, on misalignment, or when an upper level already holds a
    /// leaf on the path.
    pub fn map_page(&mut self, va: u64, pa: u64, page: PageSize, flags: MapFlags) -> &mut Self {
        let geo = self.geometry();
        let level = geo
            .leaf_level(page)
            .unwrap_or_else(|| panic!("{:?} has no {page:?} leaves", self.kind));
        let b = page.bytes();
        assert!(
            va % b == 0 && pa % b == 0,
            "{va:#x} -> {pa:#x} not aligned to {b:#x}"
        );
        let entry = geo.leaf_entry(level, pa, flags);
        self.raw_entry(va, level, entry)
    }

    /// Physical address of the entry at `level` read when translating `va`; allocates the
    /// tables above it as needed.
    pub fn entry_addr(&mut self, va: u64, level: usize) -> u64 {
        let geo = self.geometry();
        assert!(level < geo.depth(), "level {level} is below the leaf level");
        let mut table = self.root();
        for l in 0..level {
            let ea = table + geo.index(va, l) * geo.entry_bytes;
            let e = self.read_entry(ea);
            table = match geo.next_table(l, e) {
                Some(t) => t,
                None if e & crate::geometry::P == 0 => {
                    let t = self.alloc.alloc();
                    self.write_entry(ea, geo.table_entry(l, t));
                    t
                }
                None => panic!("{va:#x}: level {l} entry {e:#x} is a leaf, not a table"),
            };
        }
        table + geo.index(va, level) * geo.entry_bytes
    }

    /// Physical address of the table at `level` on the path of `va` (allocating as needed).
    pub fn table_addr(&mut self, va: u64, level: usize) -> u64 {
        let geo = self.geometry();
        self.entry_addr(va, level) - geo.index(va, level) * geo.entry_bytes
    }

    /// Writes `value` as the entry at `level` on the path of `va` (escape hatch: anything goes).
    pub fn raw_entry(&mut self, va: u64, level: usize, value: u64) -> &mut Self {
        let ea = self.entry_addr(va, level);
        self.write_entry(ea, value);
        self
    }

    /// Rewrites the entry at `level` on the path of `va` through `f` (e.g. clear R/W in a PDE).
    pub fn modify_entry(&mut self, va: u64, level: usize, f: impl FnOnce(u64) -> u64) -> &mut Self {
        let ea = self.entry_addr(va, level);
        let old = self.read_entry(ea);
        self.write_entry(ea, f(old));
        self
    }

    /// Reads the entry at physical `ea` (4 or 8 bytes by mode).
    pub fn read_entry(&self, ea: u64) -> u64 {
        if self.geometry().entry_bytes == 4 {
            self.mem.read_u32(ea).map(u64::from)
        } else {
            self.mem.read_u64(ea)
        }
        .expect("entry inside RAM")
    }

    /// Writes the entry at physical `ea` (4 or 8 bytes by mode).
    pub fn write_entry(&mut self, ea: u64, value: u64) {
        if self.geometry().entry_bytes == 4 {
            self.mem.write_u32(ea, value as u32);
        } else {
            self.mem.write_u64(ea, value);
        }
    }

    /// The vCPU state for this guest: CR0 (PE, PG, WP), CR3 (the root), CR4 (PSE, PAE, LA57),
    /// EFER (LME, LMA, NXE) and the A20 line, set for the mode.
    pub fn cpu(&mut self) -> X86CpuState {
        let mut cpu = X86CpuState::new(0);
        cpu.a20_enabled = self.a20;
        if self.kind == ModeKind::Off {
            cpu.cr[0] = CR0_PE;
            return cpu;
        }
        cpu.cr[0] = CR0_PE | CR0_PG | CR0_WP;
        cpu.cr[3] = self.root();
        let nxe = if self.nxe { EFER_NXE } else { 0 };
        let pse = if self.pse { CR4_PSE } else { 0 };
        let (cr4, efer, cs_flags) = match self.kind {
            ModeKind::Off => unreachable!("handled above"),
            ModeKind::Aarch64 => panic!("aarch64 guests are built by crate::aarch64"),
            ModeKind::Bits32 => (pse, 0, 0x00c0_9b00),
            ModeKind::Pae => (pse | CR4_PAE, nxe, 0x00c0_9b00),
            ModeKind::Level4 => (pse | CR4_PAE, nxe | EFER_LME | EFER_LMA, 0x00a0_9b00),
            ModeKind::Level5 => (
                pse | CR4_PAE | CR4_LA57,
                nxe | EFER_LME | EFER_LMA,
                0x00a0_9b00,
            ),
        };
        cpu.cr[4] = cr4;
        cpu.efer = efer;
        cpu.cs.selector = 0x10;
        cpu.cs.flags = cs_flags;
        cpu
    }

    /// The sparse memory and the vCPU.
    pub fn build(mut self) -> (SparseMemory, X86CpuState) {
        let cpu = self.cpu();
        (self.mem, cpu)
    }

    /// A dense [`VecMemory`] copy and the vCPU (small guests: allocates every RAM byte).
    pub fn build_vec(self) -> (VecMemory, X86CpuState) {
        let (mem, cpu) = self.build();
        (mem.to_vec_memory(), cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::translate;

    #[test]
    fn every_mode_maps_what_it_was_told() {
        let cases = [
            (ModeKind::Bits32, 0x8040_0000u64, PageSize::Size4M),
            (ModeKind::Pae, 0xc020_0000, PageSize::Size2M),
            (ModeKind::Level4, 0xffff_8000_4000_0000, PageSize::Size1G),
            (ModeKind::Level5, 0xff00_0000_0020_0000, PageSize::Size2M),
        ];
        for (kind, va, big) in cases {
            let mut b = GuestBuilder::new(kind, 0x8000_0000);
            b.map_page(0x1000, 0x5000, PageSize::Size4K, MapFlags::WRITE);
            b.map_page(va, 0x4000_0000, big, MapFlags::USER | MapFlags::NX);
            let (mem, cpu) = b.build();
            let t = translate(&mem, &cpu, 0x1234).unwrap();
            assert_eq!(
                (t.pa, t.page_size, t.write, t.user),
                (0x5234, 4096, true, false)
            );
            let t = translate(&mem, &cpu, va + 0x1_2345).unwrap();
            assert_eq!(t.pa, 0x4001_2345, "{kind:?}");
            assert_eq!(t.page_size, big.bytes());
            assert!(t.user && !t.write);
            assert_eq!(t.nx, kind != ModeKind::Bits32, "{kind:?}");
            assert_eq!(translate(&mem, &cpu, 0x2000), None);
        }
    }

    #[test]
    fn pae_root_is_not_page_aligned() {
        let mut b = GuestBuilder::new(ModeKind::Pae, 1 << 24);
        assert_eq!(b.root() % 4096, PAE_ROOT_OFFSET);
        let (_, cpu) = b.build();
        assert_eq!(cpu.cr[3] % 4096, PAE_ROOT_OFFSET);
    }

    #[test]
    fn pse36_leaf_above_4g() {
        let mut b = GuestBuilder::new(ModeKind::Bits32, 1 << 24);
        b.map_page(
            0x40_0000,
            0x12_ffc0_0000,
            PageSize::Size4M,
            MapFlags::empty(),
        );
        let (mem, cpu) = b.build();
        assert_eq!(translate(&mem, &cpu, 0x40_0010).unwrap().pa, 0x12_ffc0_0010);
    }
}
