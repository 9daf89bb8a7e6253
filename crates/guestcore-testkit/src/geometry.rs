//! Table geometry of each paging mode, as the *builders* see it: index positions, entry width,
//! which page sizes a level can hold, and how to encode an entry.
//!
//! Deliberately separate from guestcore's `paging::mode`: the builders must not inherit a bug
//! from the code they test. (The reference translator has its own decoding again, in
//! [`crate::reference`].)

use bitflags::bitflags;
use guestcore::paging::ModeKind;

/// Entry bit: present.
pub const P: u64 = 1 << 0;
/// Entry bit: writable.
pub const RW: u64 = 1 << 1;
/// Entry bit: user.
pub const US: u64 = 1 << 2;
/// Entry bit: write-through.
pub const PWT: u64 = 1 << 3;
/// Entry bit: cache disable.
pub const PCD: u64 = 1 << 4;
/// Entry bit: accessed.
pub const A: u64 = 1 << 5;
/// Entry bit: dirty.
pub const D: u64 = 1 << 6;
/// Entry bit: page size (large leaf).
pub const PS: u64 = 1 << 7;
/// Entry bit: global.
pub const G: u64 = 1 << 8;
/// Entry bit: execute-disable (PAE and IA-32e).
pub const XD: u64 = 1 << 63;

bitflags! {
    /// What a leaf written by the builder allows. `NX` is written as bit 63 in PAE/IA-32e
    /// entries (and ignored in 32-bit paging, which has no such bit).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MapFlags: u32 {
        /// R/W (bit 1): writes allowed.
        const WRITE = 1 << 0;
        /// U/S (bit 2): user-mode accesses allowed.
        const USER = 1 << 1;
        /// XD (bit 63): instruction fetches not allowed.
        const NX = 1 << 2;
        /// G (bit 8): global translation.
        const GLOBAL = 1 << 3;
        /// A (bit 5): accessed.
        const ACCESSED = 1 << 4;
        /// D (bit 6): dirty.
        const DIRTY = 1 << 5;
        /// PWT (bit 3): page-level write-through.
        const PWT = 1 << 6;
        /// PCD (bit 4): page-level cache disable.
        const PCD = 1 << 7;
    }
}

/// Leaf sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, every mode.
    Size4K,
    /// 2 MiB: PAE and IA-32e PDE.
    Size2M,
    /// 4 MiB: 32-bit PDE with CR4.PSE.
    Size4M,
    /// 1 GiB: IA-32e PDPTE.
    Size1G,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size4M => 1 << 22,
            PageSize::Size1G => 1 << 30,
        }
    }
}

/// The shape of one mode's hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The paging mode this shape is for.
    pub kind: ModeKind,
    /// `(shift, index_bits)` of each level, root first.
    pub levels: &'static [(u32, u32)],
    /// 4 or 8.
    pub entry_bytes: u64,
}

impl Geometry {
    /// The geometry of `kind`.
    ///
    /// # Panics
    /// For [`ModeKind::Off`], which has no tables, and [`ModeKind::Aarch64`], whose shape
    /// depends on its registers (see [`crate::aarch64`]).
    pub fn of(kind: ModeKind) -> Geometry {
        let (levels, entry_bytes): (&'static [(u32, u32)], u64) = match kind {
            ModeKind::Off => panic!("paging off has no tables"),
            ModeKind::Aarch64 => panic!("aarch64 tables are built by crate::aarch64"),
            ModeKind::Bits32 => (&[(22, 10), (12, 10)], 4),
            ModeKind::Pae => (&[(30, 2), (21, 9), (12, 9)], 8),
            ModeKind::Level4 => (&[(39, 9), (30, 9), (21, 9), (12, 9)], 8),
            ModeKind::Level5 => (&[(48, 9), (39, 9), (30, 9), (21, 9), (12, 9)], 8),
        };
        Geometry {
            kind,
            levels,
            entry_bytes,
        }
    }

    /// Number of levels.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// Index of `va` into the table of `level`.
    pub fn index(&self, va: u64, level: usize) -> u64 {
        let (shift, bits) = self.levels[level];
        (va >> shift) & ((1 << bits) - 1)
    }

    /// Bytes of one table of `level` (32 for the PAE PDPT, else 4096).
    pub fn table_bytes(&self, level: usize) -> u64 {
        (1u64 << self.levels[level].1) * self.entry_bytes
    }

    /// The level whose entries are leaves of `size`, if this mode has such leaves.
    pub fn leaf_level(&self, size: PageSize) -> Option<usize> {
        let shift = size.bytes().trailing_zeros();
        let level = self.levels.iter().position(|&(s, _)| s == shift)?;
        let last = level + 1 == self.depth();
        let large_ok = match self.kind {
            ModeKind::Bits32 => size == PageSize::Size4M,
            ModeKind::Pae => size == PageSize::Size2M,
            _ => matches!(size, PageSize::Size2M | PageSize::Size1G),
        };
        (last || large_ok).then_some(level)
    }

    /// Address bits of a table pointer or 4 KiB leaf.
    pub fn addr_mask(&self) -> u64 {
        if self.entry_bytes == 4 {
            0xffff_f000
        } else {
            0x000f_ffff_ffff_f000
        }
    }

    /// A present entry pointing to a table at `pa`, allowing everything (so the leaf decides).
    pub fn table_entry(&self, level: usize, pa: u64) -> u64 {
        if self.kind == ModeKind::Pae && level == 0 {
            // PAE PDPTEs have no R/W, U/S (those bits are reserved there).
            return pa | P;
        }
        pa | P | RW | US
    }

    /// A present leaf entry at `level` mapping the page at `pa` (aligned to the leaf size).
    pub fn leaf_entry(&self, level: usize, pa: u64, flags: MapFlags) -> u64 {
        let large = level + 1 != self.depth();
        let mut e = P;
        for (f, bit) in [
            (MapFlags::WRITE, RW),
            (MapFlags::USER, US),
            (MapFlags::PWT, PWT),
            (MapFlags::PCD, PCD),
            (MapFlags::ACCESSED, A),
            (MapFlags::DIRTY, D),
            (MapFlags::GLOBAL, G),
        ] {
            if flags.contains(f) {
                e |= bit;
            }
        }
        if flags.contains(MapFlags::NX) && self.entry_bytes == 8 {
            e |= XD;
        }
        if large {
            e |= PS;
        }
        if self.kind == ModeKind::Bits32 && large {
            // PSE-36: physical bits 39:32 go to entry bits 20:13.
            assert!(pa < 1 << 40, "PSE-36 reaches 40 physical bits");
            e | (pa & 0xffc0_0000) | (((pa >> 32) & 0xff) << 13)
        } else {
            e | (pa & self.addr_mask())
        }
    }

    /// The table an existing entry points to, when it is a present non-leaf entry.
    pub fn next_table(&self, level: usize, entry: u64) -> Option<u64> {
        let last = level + 1 == self.depth();
        if entry & P == 0 || last {
            return None;
        }
        // Levels where PS makes a leaf: the 32-bit PD, the PAE PD, the IA-32e PDPT and PD.
        let may_be_large = match self.kind {
            ModeKind::Bits32 => true,
            ModeKind::Pae => level == 1,
            _ => self.depth() - level <= 3,
        };
        if may_be_large && entry & PS != 0 {
            return None;
        }
        Some(entry & self.addr_mask())
    }
}
