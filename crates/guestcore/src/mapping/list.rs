//! [`MappingList`]: sorted by canonical virtual address, merged wherever a run continues both
//! virtually and physically with the same permissions. Aliases (many virtual ranges onto one
//! physical range) stay separate entries. Construction from a walk is an O(n) append because
//! the walker already emits in order.
//!
//! A list built from a walk is bounded by [`WalkLimits::max_mappings`], not only by the leaf
//! count: a leaf only partly in RAM splits into up to 2k+1 mappings for k RAM ranges under
//! it, so a hostile guest can alias huge leaves over RAM with many holes. Splitting stops at
//! the first piece that does not fit, so the work per leaf is bounded by what is kept.

use crate::addr::{PhysAddr, PhysRange, VirtAddr};
use crate::paging::{walk_until, Leaf, PageFlags, PagingMode, StopReason, WalkLimits, WalkReport};
use crate::phys::{PhysMemory, RamMap};
use crate::Result;
use serde::Serialize;

/// `size` bytes at virtual `va` map to physical `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// First virtual address.
    pub va: VirtAddr,
    /// The guest-physical address `va` maps to.
    pub pa: PhysAddr,
    /// Length in bytes.
    pub size: u64,
    /// Effective permissions (`WRITE`, `USER`, `NX`) and `IO` for non-RAM ranges.
    pub flags: PageFlags,
}

impl Mapping {
    /// One past the last virtual byte (wrapping at 2^64 to 0 for the top page).
    pub fn va_end(&self) -> u64 {
        self.va.0.wrapping_add(self.size)
    }
    /// The physical range.
    pub fn phys(&self) -> PhysRange {
        PhysRange::new(self.pa.0, self.size)
    }
    /// True when this range is guest RAM.
    pub fn is_ram(&self) -> bool {
        !self.flags.contains(PageFlags::IO)
    }
}

/// A sorted, merged list of mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MappingList {
    maps: Vec<Mapping>,
}

impl MappingList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks `mode` over `mem` and builds the merged list. The walk stops with
    /// [`StopReason::MappingLimit`] when the list would exceed `limits.max_mappings`; the list
    /// then holds every mapping below the virtual address where it stopped.
    pub fn from_walk<M: PhysMemory + ?Sized>(
        mem: &M,
        mode: &PagingMode,
        limits: WalkLimits,
    ) -> Result<(Self, WalkReport)> {
        let mut list = MappingList::new();
        let ram = mem.ram();
        let max = usize::try_from(limits.max_mappings).unwrap_or(usize::MAX);
        let report = walk_until(mem, mode, limits, |leaf| {
            list.push_leaf_within(leaf, ram, max)
        })?;
        Ok((list, report))
    }

    /// Appends a leaf. A leaf only partly in RAM is split at the RAM boundaries into RAM and
    /// `IO` pieces, so the RAM part of e.g. a 2 MiB page over the VGA hole stays readable.
    pub fn push_leaf(&mut self, leaf: &Leaf, ram: &RamMap) {
        let _ = self.push_leaf_within(leaf, ram, usize::MAX);
    }

    /// [`push_leaf`](Self::push_leaf) into a list of at most `max` mappings: fails with
    /// [`StopReason::MappingLimit`] at the first piece that does not fit (the pieces before it
    /// are kept), so a leaf over many RAM holes costs no more than the pieces it adds.
    pub fn push_leaf_within(
        &mut self,
        leaf: &Leaf,
        ram: &RamMap,
        max: usize,
    ) -> std::result::Result<(), StopReason> {
        let flags = leaf.flags & PageFlags::MERGE_KEY;
        if !flags.contains(PageFlags::IO) {
            return self.push_within(leaf.va, leaf.pa, leaf.size, flags, max);
        }
        let mut cursor = leaf.pa;
        let end = leaf.pa + leaf.size;
        let io = flags | PageFlags::IO;
        let ramf = flags - PageFlags::IO;
        for part in ram.ram_parts(leaf.pa, leaf.size) {
            if part.start > cursor {
                self.push_within(
                    leaf.va + (cursor - leaf.pa),
                    cursor,
                    part.start - cursor,
                    io,
                    max,
                )?;
            }
            self.push_within(
                leaf.va + (part.start - leaf.pa),
                part.start,
                part.len(),
                ramf,
                max,
            )?;
            cursor = part.end;
        }
        if cursor < end {
            self.push_within(leaf.va + (cursor - leaf.pa), cursor, end - cursor, io, max)?;
        }
        Ok(())
    }

    /// Appends a range, merging it into the last one when it continues it virtually and
    /// physically with the same flags. Ranges must come in ascending virtual order.
    pub fn push(&mut self, va: u64, pa: u64, size: u64, flags: PageFlags) {
        let _ = self.push_within(va, pa, size, flags, usize::MAX);
    }

    /// Appends a range as its own mapping, even when it continues the last one (a dump that
    /// needs the boundary: a filtered paging core splits mappings where kept data starts).
    /// Ranges must come in ascending virtual order.
    pub fn push_unmerged(&mut self, va: u64, pa: u64, size: u64, flags: PageFlags) {
        if size > 0 {
            self.maps.push(Mapping {
                va: VirtAddr(va),
                pa: PhysAddr(pa),
                size,
                flags,
            });
        }
    }

    /// [`push`](Self::push), unless it would make the list longer than `max`.
    fn push_within(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        flags: PageFlags,
        max: usize,
    ) -> std::result::Result<(), StopReason> {
        if size == 0 {
            return Ok(());
        }
        if let Some(last) = self.maps.last_mut() {
            if last.flags == flags
                && last.va.0.checked_add(last.size) == Some(va)
                && last.pa.0.checked_add(last.size) == Some(pa)
            {
                last.size += size;
                return Ok(());
            }
        }
        if self.maps.len() >= max {
            return Err(StopReason::MappingLimit);
        }
        self.maps.push(Mapping {
            va: VirtAddr(va),
            pa: PhysAddr(pa),
            size,
            flags,
        });
        Ok(())
    }

    /// The mappings, sorted by virtual address.
    pub fn as_slice(&self) -> &[Mapping] {
        &self.maps
    }

    /// Iterates the mappings.
    pub fn iter(&self) -> std::slice::Iter<'_, Mapping> {
        self.maps.iter()
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The parts of every mapping whose physical memory lies inside `window`, trimmed to it
    /// (the `--begin/--length` filter of a paging dump).
    pub fn clip_phys(&self, window: PhysRange) -> MappingList {
        let mut out = MappingList::new();
        for m in &self.maps {
            if let Some(part) = m.phys().intersect(&window) {
                let off = part.start - m.pa.0;
                out.maps.push(Mapping {
                    va: VirtAddr(m.va.0 + off),
                    pa: PhysAddr(part.start),
                    size: part.len(),
                    flags: m.flags,
                });
            }
        }
        out
    }
}

impl<'a> IntoIterator for &'a MappingList {
    type Item = &'a Mapping;
    type IntoIter = std::slice::Iter<'a, Mapping>;
    fn into_iter(self) -> Self::IntoIter {
        self.maps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: PageFlags = PageFlags::WRITE;

    #[test]
    fn merges_only_when_both_contiguous() {
        let mut l = MappingList::new();
        l.push(0x1000, 0x5000, 0x1000, RW);
        l.push(0x2000, 0x6000, 0x1000, RW);
        l.push(0x3000, 0x6000, 0x1000, RW); // alias: virtually contiguous, physically not
        l.push(0x4000, 0x7000, 0x1000, PageFlags::empty()); // flags differ
        assert_eq!(l.len(), 3);
        assert_eq!(l.as_slice()[0].size, 0x2000);
        assert_eq!(l.as_slice()[1].pa, PhysAddr(0x6000));
    }

    #[test]
    fn partial_ram_leaf_is_split() {
        let ram = RamMap::new(vec![
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0xc0000, 0x140000),
        ])
        .unwrap();
        let leaf = Leaf {
            va: 0xffff_8880_0000_0000,
            pa: 0,
            size: 0x20_0000,
            flags: RW | PageFlags::IO | PageFlags::LARGE,
            entry: 0,
        };
        let mut l = MappingList::new();
        l.push_leaf(&leaf, &ram);
        let parts: Vec<_> = l.iter().map(|m| (m.pa.0, m.size, m.is_ram())).collect();
        assert_eq!(
            parts,
            vec![
                (0, 0xa0000, true),
                (0xa0000, 0x20000, false),
                (0xc0000, 0x140000, true)
            ]
        );
        assert_eq!(l.as_slice()[2].va.0, 0xffff_8880_000c_0000);
    }

    /// Hostile class 1: 1 GiB leaves aliased over RAM with a thousand one-page holes. Each
    /// leaf splits into 2000 pieces; the list stops at its limit, and splitting stops with it.
    #[test]
    fn partial_ram_leaves_stop_at_the_mapping_limit() {
        const HOLES: u64 = 1000;
        let stride = ((1u64 << 30) / HOLES) & !0xfff;
        let ram = RamMap::new(
            (0..HOLES)
                .map(|i| PhysRange::new(i * stride, stride - 0x1000))
                .collect(),
        )
        .unwrap();
        let mut l = MappingList::new();
        let max = 10_000;
        let mut pushed = 0;
        let mut stop = None;
        for i in 0..512u64 {
            let leaf = Leaf {
                va: i << 30,
                pa: 0,
                size: 1 << 30,
                flags: RW | PageFlags::IO | PageFlags::LARGE,
                entry: 0,
            };
            if let Err(r) = l.push_leaf_within(&leaf, &ram, max) {
                stop = Some(r);
                break;
            }
            pushed += 1;
        }
        assert_eq!(stop, Some(StopReason::MappingLimit));
        // 1000 RAM pieces, 999 holes and the IO tail after the last range: 2000 per leaf.
        assert_eq!(pushed, max / (2 * HOLES as usize));
        assert_eq!(l.len(), max);
        // Pieces alternate RAM / IO, in virtual order.
        assert!(l.as_slice()[0].is_ram() && !l.as_slice()[1].is_ram());
        assert!(l.as_slice().windows(2).all(|w| w[0].va < w[1].va));
    }

    #[test]
    fn clip_to_window() {
        let mut l = MappingList::new();
        l.push(0x10000, 0x0, 0x4000, RW);
        l.push(0x20000, 0x8000, 0x1000, RW);
        let c = l.clip_phys(PhysRange::new(0x2000, 0x1000));
        assert_eq!(
            c.as_slice(),
            &[Mapping {
                va: VirtAddr(0x12000),
                pa: PhysAddr(0x2000),
                size: 0x1000,
                flags: RW
            }]
        );
    }
}
