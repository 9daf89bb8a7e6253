//! The list of guest RAM ranges of a source, and the "is this whole range RAM" question the
//! walker asks for every leaf (QEMU only checks a leaf's first byte; we check all of it).
//!
//! The walker asks once per leaf, and a hostile input can have millions of leaves over a RAM
//! map of many small adjacent ranges (one-page PT_LOADs that the ELF reader cannot join because
//! their file offsets are not contiguous). So membership is answered from a second, joined view
//! (`spans`: adjacent ranges merged, whatever backs them) with one binary search: O(log n) per
//! question, never a walk along neighbouring ranges.

use crate::addr::PhysRange;
use crate::{Error, Result};
use serde::Serialize;

/// One piece of a named QEMU RAM block placed in guest-physical memory: `phys.len()` bytes
/// from byte `offset` of block `block`. QEMU's RAM is blocks (`pc.ram`, a memory backend, a
/// BIOS image) that the machine maps at guest-physical ranges, a block possibly in several
/// pieces (below and above the PCI hole). A running guest's pieces come from its flat view
/// (`crate::qmp::mtree`), a migration stream's from its machine type's layout
/// (`phys::migration::layout`) or from the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RamPiece {
    /// The RAM block's id (`pc.ram`, a memory-backend id).
    pub block: String,
    /// Byte offset in the block where the piece starts (of `phys.start`).
    pub offset: u64,
    /// The guest-physical range the piece covers.
    pub phys: PhysRange,
}

/// Sorted, non-overlapping guest-physical RAM ranges. Adjacent ranges are kept apart (a dump
/// writes one segment per range, as the source had them) but [`contains`](Self::contains) and
/// [`ram_parts`](Self::ram_parts) treat them as one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RamMap {
    ranges: Vec<PhysRange>,
    /// `ranges` with adjacent ranges joined: what is RAM, regardless of how it is stored.
    #[serde(skip)]
    spans: Vec<PhysRange>,
}

impl RamMap {
    /// Builds a map from ranges in any order; empty ranges are dropped, overlaps are an error.
    pub fn new(mut ranges: Vec<PhysRange>) -> Result<Self> {
        ranges.retain(|r| !r.is_empty());
        ranges.sort();
        for w in ranges.windows(2) {
            if w[1].start < w[0].end {
                return Err(Error::Unsupported(format!(
                    "overlapping guest-physical ranges {} and {}",
                    w[0], w[1]
                )));
            }
        }
        let mut spans: Vec<PhysRange> = Vec::new();
        for r in &ranges {
            match spans.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => spans.push(*r),
            }
        }
        Ok(RamMap { ranges, spans })
    }

    /// The ranges, sorted by start.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges
    }

    /// Total bytes of RAM.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    /// One past the highest RAM byte (0 when empty).
    pub fn end(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// Index of the range holding `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.end <= addr);
        (i < self.ranges.len() && self.ranges[i].start <= addr).then_some(i)
    }

    /// Where `[addr, addr + len)` lies when it lies inside one range: that range's index and
    /// the offset of `addr` in it. `None` when any byte is outside the range holding `addr`.
    pub fn locate(&self, addr: u64, len: u64) -> Option<(usize, u64)> {
        let i = self.index_of(addr)?;
        let r = self.ranges[i];
        (addr.checked_add(len)? <= r.end).then_some((i, addr - r.start))
    }

    /// Splits a read of `buf` at `addr` at the boundaries of adjacent ranges and calls `read`
    /// once per piece with the range's index, the piece's address and its part of `buf`, in
    /// address order. Fails with [`Error::NotInMemory`] (before any piece is read) when a byte
    /// is not RAM. An empty `buf` reads nothing.
    pub fn each_piece(
        &self,
        addr: u64,
        buf: &mut [u8],
        mut read: impl FnMut(usize, u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if !self.contains(addr, buf.len() as u64) {
            return Err(Error::NotInMemory {
                addr,
                len: buf.len() as u64,
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr + done as u64;
            let i = self.index_of(a).expect("contains() saw every byte in RAM");
            let n = ((self.ranges[i].end - a) as usize).min(buf.len() - done);
            read(i, a, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Number of maximal runs of contiguous RAM (adjacent ranges joined).
    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// True when every byte of `[addr, addr + len)` lies in RAM (adjacent ranges join).
    /// One binary search, however many ranges the map has.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let i = self.spans.partition_point(|r| r.end <= addr);
        self.spans
            .get(i)
            .is_some_and(|s| s.start <= addr && end <= s.end)
    }

    /// The parts of `[addr, addr + len)` that are RAM, in order (empty when none is); adjacent
    /// ranges come out as one part. Costs O(log n) plus the parts returned.
    pub fn ram_parts(&self, addr: u64, len: u64) -> impl Iterator<Item = PhysRange> + '_ {
        let want = PhysRange::new(addr, len);
        let first = self.spans.partition_point(|r| r.end <= addr);
        self.spans[first..]
            .iter()
            .take_while(move |r| r.start < want.end)
            .filter_map(move |r| r.intersect(&want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> RamMap {
        RamMap::new(vec![
            PhysRange::new(0x100000, 0x100000),
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0x200000, 0x1000),
        ])
        .unwrap()
    }

    #[test]
    fn contains_whole_range_only() {
        let m = map();
        assert!(m.contains(0, 0xa0000));
        assert!(!m.contains(0, 0xa0001));
        assert!(!m.contains(0x9f000, 0x200000));
        assert!(m.contains(0x1ff000, 0x2000), "adjacent ranges join");
        assert!(!m.contains(0x1ff000, 0x3000));
        assert!(!m.contains(u64::MAX - 1, 4));
        assert_eq!(m.total(), 0xa0000 + 0x101000);
        assert_eq!(m.end(), 0x201000);
    }

    #[test]
    fn parts() {
        let m = map();
        let p: Vec<_> = m.ram_parts(0x9f000, 0x200000).collect();
        assert_eq!(
            p,
            vec![
                PhysRange::new(0x9f000, 0x1000),
                PhysRange::new(0x100000, 0x101000),
            ],
            "adjacent ranges come out as one part"
        );
    }

    /// Hostile class 3: many adjacent one-page ranges (one-page PT_LOADs that share a file
    /// page, so the ELF reader keeps them apart). Membership must come from the joined view:
    /// one span, so every question is one binary search, not a walk over 65,000 neighbours.
    #[test]
    fn many_adjacent_ranges_are_one_span() {
        const N: u64 = 65_000;
        let mut ranges: Vec<_> = (0..N).map(|i| PhysRange::new(i * 0x1000, 0x1000)).collect();
        // A gap-free block, then a block with one-page holes every other page.
        ranges.extend((0..N).map(|i| PhysRange::new((2 * N + 2 * i) * 0x1000, 0x1000)));
        let m = RamMap::new(ranges).unwrap();
        assert_eq!(m.ranges().len(), 2 * N as usize);
        assert_eq!(m.span_count(), 1 + N as usize);
        assert!(m.contains(0, N * 0x1000));
        assert!(m.contains(0x1000, (N - 2) * 0x1000));
        assert!(!m.contains(0, (N + 1) * 0x1000));
        assert!(!m.contains(2 * N * 0x1000, 0x2000));
        assert_eq!(m.ram_parts(0, N * 0x1000).count(), 1);
        assert_eq!(m.ram_parts(2 * N * 0x1000, 8 * 0x1000).count(), 4);
    }

    #[test]
    fn overlap_rejected() {
        assert!(RamMap::new(vec![PhysRange::new(0, 10), PhysRange::new(5, 10)]).is_err());
    }

    #[test]
    fn locate_in_one_range() {
        let m = map();
        assert_eq!(m.locate(0x100010, 0x10), Some((1, 0x10)));
        assert_eq!(m.locate(0x1ff000, 0x1000), Some((1, 0xff000)));
        assert_eq!(
            m.locate(0x1ff000, 0x1001),
            None,
            "crosses into the next range"
        );
        assert_eq!(m.locate(0xa0000, 1), None, "a hole");
        assert_eq!(m.locate(u64::MAX, 2), None);
    }

    #[test]
    fn each_piece_splits_at_adjacent_ranges() {
        let m = map();
        let mut seen = Vec::new();
        let mut buf = [0u8; 0x20];
        m.each_piece(0x1ffff0, &mut buf, |i, a, b| {
            seen.push((i, a, b.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(1, 0x1ffff0, 0x10), (2, 0x200000, 0x10)]);
        let mut never = |_: usize, _: u64, _: &mut [u8]| -> Result<()> { panic!("read a hole") };
        assert!(m.each_piece(0x9fff0, &mut buf, &mut never).is_err());
        assert!(m.each_piece(0xa0000, &mut [], &mut never).is_err());
        m.each_piece(0, &mut [], &mut never).unwrap();
    }
}
