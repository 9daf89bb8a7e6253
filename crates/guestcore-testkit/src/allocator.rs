//! A bump allocator of 4 KiB frames inside guest RAM, for page tables and test data.
//!
//! Tests need to know where tables live (to corrupt them, or to keep data clear of them), so
//! allocation is deterministic: frames come in ascending order from a start address, skipping
//! anything that is not RAM (e.g. the PC hole at 0xa0000–0x100000). Nothing is ever freed.

use guestcore::phys::RamMap;

const PAGE: u64 = 4096;

/// Hands out consecutive RAM frames starting at a given address.
#[derive(Debug, Clone)]
pub struct FrameAllocator {
    ram: RamMap,
    next: u64,
}

impl FrameAllocator {
    /// Allocates from `start` (rounded up to 4 KiB) upwards, within `ram`.
    pub fn new(ram: RamMap, start: u64) -> Self {
        FrameAllocator {
            ram,
            next: start.next_multiple_of(PAGE),
        }
    }

    /// The next frame that [`alloc`](Self::alloc) would consider.
    pub fn cursor(&self) -> u64 {
        self.next
    }

    /// One 4 KiB frame of RAM.
    ///
    /// # Panics
    /// When RAM is exhausted.
    pub fn alloc(&mut self) -> u64 {
        self.alloc_contiguous(1)
    }

    /// `n` physically contiguous frames; returns the first.
    ///
    /// # Panics
    /// When no run of `n` RAM frames is left above the cursor.
    pub fn alloc_contiguous(&mut self, n: u64) -> u64 {
        let len = n * PAGE;
        loop {
            if self.ram.contains(self.next, len) {
                let pa = self.next;
                self.next += len;
                return pa;
            }
            // Skip to the next RAM range that starts above the cursor.
            let next_range = self
                .ram
                .ranges()
                .iter()
                .find(|r| r.end > self.next && r.end - r.start.max(self.next) >= len)
                .unwrap_or_else(|| {
                    panic!(
                        "guest RAM exhausted: no {n} free frames above {:#x}",
                        self.next
                    )
                });
            // Progress is guaranteed: either this moves the cursor up, or the cursor is inside a
            // range with room for `len`, where `contains` above already succeeded.
            self.next = next_range.start.max(self.next).next_multiple_of(PAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestcore::addr::PhysRange;

    #[test]
    fn skips_holes() {
        let ram = RamMap::new(vec![
            PhysRange::new(0, 0xa0000),
            PhysRange::new(0x100000, 0x10000),
        ])
        .unwrap();
        let mut a = FrameAllocator::new(ram, 0x9e001);
        assert_eq!(a.alloc(), 0x9f000);
        assert_eq!(a.alloc(), 0x100000);
        assert_eq!(a.alloc_contiguous(2), 0x101000);
        assert_eq!(a.cursor(), 0x103000);
    }
}
