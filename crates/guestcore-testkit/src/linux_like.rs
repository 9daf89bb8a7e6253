//! A 4-level guest shaped like Linux x86_64, for walker benchmarks and end-to-end tests.
//!
//! It reproduces the features that make real kernels hard on dump tools: a direct map of all RAM
//! in large pages, kernel text in 4 KiB pages, the ESPFIX64 area (one frame aliased 65,536 times
//! at 64 KiB stride — with PT and PD pages shared between aliases, as Linux does, so three table
//! pages describe 4 GiB of virtual space), scattered vmalloc pages and a few user pages. Memory is
//! [`SparseMemory`], so a guest of any RAM size costs only its tables and data.

use crate::builder::GuestBuilder;
use crate::geometry::{MapFlags, PageSize, A, G, P, RW, XD};
use crate::memory::SparseMemory;
use guestcore::cpu::X86CpuState;
use guestcore::paging::ModeKind;

/// Start of the direct map of all physical memory (`page_offset_base` without KASLR).
pub const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
/// Start of kernel text (`__START_KERNEL_map` + 16 MiB).
pub const KERNEL_TEXT: u64 = 0xffff_ffff_8100_0000;
/// Physical load address of the kernel.
pub const KERNEL_PHYS: u64 = 0x100_0000;
/// Size of the kernel text mapping (4 KiB pages).
pub const KERNEL_TEXT_SIZE: u64 = 4 << 20;
/// Start of the ESPFIX64 area (PML4 slot 510).
pub const ESPFIX_BASE: u64 = 0xffff_ff00_0000_0000;
/// Number of ESPFIX aliases of the one stack frame.
pub const ESPFIX_ALIASES: u64 = 65_536;
/// Distance between two ESPFIX aliases.
pub const ESPFIX_STRIDE: u64 = 64 << 10;
/// Start of vmalloc space (`vmalloc_base` without KASLR).
pub const VMALLOC_BASE: u64 = 0xffff_c900_0000_0000;
/// Number of vmalloc pages mapped (each its own frame, mapped in descending physical order so
/// they never merge).
pub const VMALLOC_PAGES: u64 = 16;
/// User text pages (r-x).
pub const USER_TEXT: u64 = 0x40_0000;
/// User data pages (rw-, NX).
pub const USER_DATA: u64 = 0x60_0000;
/// User stack pages (rw-, NX), just below the top of the lower half.
pub const USER_STACK: u64 = 0x7fff_fffd_e000;
/// Start of the optional user heap of [`linux_like_with_heap`] (a PIE process's heap).
pub const USER_HEAP: u64 = 0x5555_5555_8000;

/// A string placed at a known address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownString {
    /// Canonical virtual address of the first byte.
    pub va: u64,
    /// Physical address of the first byte.
    pub pa: u64,
    /// The string's bytes as written (no terminating NUL).
    pub text: &'static str,
}

/// The generated guest.
#[derive(Debug, Clone)]
pub struct LinuxLike {
    /// Guest-physical memory holding the tables, the strings and the region contents.
    pub memory: SparseMemory,
    /// A vCPU in IA-32e mode whose CR3 points at the generated tables.
    pub cpu: X86CpuState,
    /// Strings written at known addresses (one per region).
    pub strings: Vec<KnownString>,
    /// Leaves a correct walk finds.
    pub expected_leaves: u64,
}

/// Builds a Linux-like 4-level guest with RAM at `[0, ram)`.
///
/// # Panics
/// When `ram` is below 64 MiB or not a multiple of 2 MiB.
pub fn linux_like(ram: u64) -> LinuxLike {
    linux_like_with_heap(ram, 0)
}

/// [`linux_like`] plus a user heap of `heap_pages` 4 KiB pages at [`USER_HEAP`], backed by
/// frames taken downwards from the top of RAM (descending, so no two leaves merge), as a
/// long-running process's heap looks after the page allocator has scattered it. The frames are
/// not written, so the guest stays sparse; only the page tables (one PT per 512 pages) cost.
///
/// # Panics
/// As [`linux_like`], and when the heap needs more frames than the top half of RAM.
pub fn linux_like_with_heap(ram: u64, heap_pages: u64) -> LinuxLike {
    assert!(
        ram >= 64 << 20,
        "the Linux-like guest needs at least 64 MiB"
    );
    assert!(ram % (2 << 20) == 0, "RAM must be a multiple of 2 MiB");
    let mut b = GuestBuilder::new(ModeKind::Level4, ram).tables_at(0x10_0000);
    let mut strings = Vec::new();
    let mut leaves = 0;
    let mut put = |b: &mut GuestBuilder, va: u64, pa: u64, text: &'static str| {
        b.write_phys(pa, text.as_bytes());
        strings.push(KnownString { va, pa, text });
    };

    // Direct map: 1 GiB pages where aligned, 2 MiB elsewhere.
    let kernel_rw = MapFlags::WRITE | MapFlags::NX | MapFlags::GLOBAL | MapFlags::ACCESSED;
    b.map(DIRECT_MAP, 0, ram, kernel_rw | MapFlags::DIRTY);
    leaves += (ram >> 30) + ((ram % (1 << 30)) >> 21);

    // Kernel text, 4 KiB pages, read-only executable.
    let text = MapFlags::GLOBAL | MapFlags::ACCESSED;
    b.map_pages(
        KERNEL_TEXT,
        KERNEL_PHYS,
        KERNEL_TEXT_SIZE,
        PageSize::Size4K,
        text,
    );
    leaves += KERNEL_TEXT_SIZE >> 12;
    put(
        &mut b,
        KERNEL_TEXT,
        KERNEL_PHYS,
        "Linux version 6.1.0-guestcore-testkit",
    );

    // ESPFIX64: one PT with an alias every 16 entries, one PD whose 512 entries all point to that
    // PT, one PDPT whose first 4 entries all point to that PD.
    let stack = b.alloc_frame();
    let (pt, pd, pdpt) = (b.alloc_frame(), b.alloc_frame(), b.alloc_frame());
    for i in (0..512).step_by((ESPFIX_STRIDE >> 12) as usize) {
        b.write_entry(pt + i * 8, stack | P | A | G | XD);
    }
    for i in 0..512 {
        b.write_entry(pd + i * 8, pt | P | RW | A);
    }
    for i in 0..((ESPFIX_ALIASES * ESPFIX_STRIDE) >> 30) {
        b.write_entry(pdpt + i * 8, pd | P | RW | A);
    }
    b.raw_entry(ESPFIX_BASE, 0, pdpt | P | RW | A);
    leaves += ESPFIX_ALIASES;
    put(
        &mut b,
        ESPFIX_BASE + 0x40,
        stack + 0x40,
        "espfix stack frame",
    );

    // vmalloc: scattered frames.
    let frames: Vec<u64> = (0..VMALLOC_PAGES).map(|_| b.alloc_frame()).collect();
    for (i, &f) in frames.iter().rev().enumerate() {
        let va = VMALLOC_BASE + (i as u64) * 4096;
        b.map_page(va, f, PageSize::Size4K, kernel_rw);
    }
    leaves += VMALLOC_PAGES;
    put(
        &mut b,
        VMALLOC_BASE + 3 * 4096 + 0x123,
        frames[frames.len() - 4] + 0x123,
        "vmalloc'd buffer",
    );

    // User pages.
    let user = MapFlags::USER | MapFlags::ACCESSED;
    for (va, n, flags) in [
        (USER_TEXT, 4, user),
        (USER_DATA, 2, user | MapFlags::WRITE | MapFlags::NX),
        (USER_STACK, 2, user | MapFlags::WRITE | MapFlags::NX),
    ] {
        let pa = b.alloc_frames(n);
        b.map_pages(va, pa, n * 4096, PageSize::Size4K, flags);
        leaves += n;
        if va == USER_TEXT {
            put(&mut b, va + 0x10, pa + 0x10, "/sbin/init user text");
        }
    }

    // The optional big heap.
    assert!(heap_pages * 4096 <= ram / 2, "heap larger than half of RAM");
    let heap = user | MapFlags::WRITE | MapFlags::NX;
    for i in 0..heap_pages {
        let pa = ram - (i + 1) * 4096;
        b.map_page(USER_HEAP + i * 4096, pa, PageSize::Size4K, heap);
    }
    leaves += heap_pages;

    // A string reached through the direct map only.
    let pa = b.alloc_frame() + 0x800;
    put(&mut b, DIRECT_MAP + pa, pa, "direct-mapped data");

    let (memory, cpu) = b.build();
    LinuxLike {
        memory,
        cpu,
        strings,
        expected_leaves: leaves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::translate;
    use guestcore::phys::PhysMemory;

    #[test]
    fn strings_are_where_they_are_said_to_be() {
        let g = linux_like(256 << 20);
        assert!(
            g.memory.pages_written() < 200,
            "sparse: {}",
            g.memory.pages_written()
        );
        for s in &g.strings {
            let t = translate(&g.memory, &g.cpu, s.va).unwrap_or_else(|| panic!("{s:?}"));
            assert_eq!(t.pa, s.pa, "{s:?}");
            let mut buf = vec![0; s.text.len()];
            g.memory.read_at(t.pa, &mut buf).unwrap();
            assert_eq!(buf, s.text.as_bytes());
        }
        let last_alias = ESPFIX_BASE + (ESPFIX_ALIASES - 1) * ESPFIX_STRIDE;
        let t = translate(&g.memory, &g.cpu, last_alias).unwrap();
        assert!(!t.write && t.nx && !t.user);
        assert_eq!(translate(&g.memory, &g.cpu, last_alias + 4096), None);
        assert_eq!(g.expected_leaves, 128 + 1024 + 65_536 + 16 + 8);
    }

    #[test]
    fn heap_pages_are_separate_leaves() {
        let g = linux_like_with_heap(64 << 20, 1000);
        assert_eq!(g.expected_leaves, 32 + 1024 + 65_536 + 16 + 8 + 1000);
        let t = translate(&g.memory, &g.cpu, USER_HEAP + 999 * 4096).unwrap();
        assert_eq!(t.pa, (64 << 20) - 1000 * 4096);
        assert!(t.user && t.write && t.nx);
        assert!(g.memory.pages_written() < 200, "sparse");
    }
}
