//! The list of guest RAM ranges of a source, and the "is this whole range RAM" question the
//! walker asks for every leaf (QEMU only checks a leaf's first byte; we check all of it).

use crate::addr::PhysRange;
use crate::{Error, Result};
use serde::Serialize;

/// Sorted, non-overlapping guest-physical RAM ranges. Adjacent ranges are kept apart (a dump
/// writes one segment per range, as the source had them) but [`contains`](Self::contains) treats
/// them as one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RamMap {
    ranges: Vec<PhysRange>,
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
        Ok(RamMap { ranges })
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

    /// True when every byte of `[addr, addr + len)` lies in RAM (adjacent ranges join).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return self.index_of(addr).is_some();
        }
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let Some(mut i) = self.index_of(addr) else {
            return false;
        };
        let mut covered = self.ranges[i].end;
        while covered < end {
            i += 1;
            match self.ranges.get(i) {
                Some(r) if r.start == covered => covered = r.end,
                _ => return false,
            }
        }
        true
    }

    /// The parts of `[addr, addr + len)` that are RAM, in order (empty when none is).
    pub fn ram_parts(&self, addr: u64, len: u64) -> impl Iterator<Item = PhysRange> + '_ {
        let want = PhysRange::new(addr, len);
        let first = self.ranges.partition_point(|r| r.end <= addr);
        self.ranges[first..]
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
                PhysRange::new(0x100000, 0x100000),
                PhysRange::new(0x200000, 0x1000)
            ]
        );
    }

    #[test]
    fn overlap_rejected() {
        assert!(RamMap::new(vec![PhysRange::new(0, 10), PhysRange::new(5, 10)]).is_err());
    }
}
