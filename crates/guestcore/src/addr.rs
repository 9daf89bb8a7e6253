//! Address newtypes and page sizes.
//!
//! Guest-physical and guest-virtual addresses are both `u64`; mixing them up is the classic
//! dump-tool bug, so public types that hold both name them apart.

use serde::{Deserialize, Serialize};
use std::fmt;

/// 4 KiB.
pub(crate) const SIZE_4K: u64 = 1 << 12;
/// The page of guest RAM every reader and writer counts in: x86's base page, the unit of a
/// dump's page data, of zero-page skipping and of the page-start scans for kernel notes.
pub const PAGE_SIZE: u64 = SIZE_4K;

macro_rules! addr_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            pub const fn get(self) -> u64 {
                self.0
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($name), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }
        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }
    };
}

addr_type!(PhysAddr, "A guest-physical address.");
addr_type!(
    VirtAddr,
    "A guest-virtual (linear) address, canonical when it came from a walk."
);

/// A half-open range `[start, end)` of guest-physical addresses.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct PhysRange {
    /// First guest-physical byte address in the range.
    pub start: u64,
    /// One past the last byte address (`start == end` is empty).
    pub end: u64,
}

impl PhysRange {
    /// `[start, start + len)`, saturating at `u64::MAX`.
    pub fn new(start: u64, len: u64) -> Self {
        PhysRange {
            start,
            end: start.saturating_add(len),
        }
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// True when the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// The overlap of two ranges, if any.
    pub fn intersect(&self, other: &PhysRange) -> Option<PhysRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(PhysRange { start, end })
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// Sign-extends `va` from bit `bits - 1` (48 for 4-level, 57 for 5-level paging).
pub const fn canonical(va: u64, bits: u32) -> u64 {
    if bits >= 64 {
        return va;
    }
    let shift = 64 - bits;
    (((va << shift) as i64) >> shift) as u64
}

/// True when `va` is canonical for a `bits`-wide linear address space.
pub const fn is_canonical(va: u64, bits: u32) -> bool {
    canonical(va, bits) == va
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_extension() {
        assert_eq!(canonical(0x0000_8000_0000_0000, 48), 0xffff_8000_0000_0000);
        assert_eq!(canonical(0x0000_7fff_ffff_f000, 48), 0x0000_7fff_ffff_f000);
        assert_eq!(canonical(0x0100_0000_0000_0000, 57), 0xff00_0000_0000_0000);
        assert!(!is_canonical(0x0000_8000_0000_0000, 48));
        assert!(is_canonical(0x0000_8000_0000_0000, 57));
    }

    #[test]
    fn range_ops() {
        let a = PhysRange::new(0x1000, 0x2000);
        assert_eq!(a.len(), 0x2000);
        assert_eq!(
            a.intersect(&PhysRange::new(0x2000, 0x10000)),
            Some(PhysRange {
                start: 0x2000,
                end: 0x3000
            })
        );
        assert_eq!(a.intersect(&PhysRange::new(0x3000, 1)), None);
        assert_eq!(PhysRange::new(u64::MAX - 1, 10).end, u64::MAX);
    }
}
