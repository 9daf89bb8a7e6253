//! A kdump file's block: the dumped kernel's page.
//!
//! Readers (crash, libkdumpfile and drgn through it, makedumpfile) number a kdump file's
//! bitmap bits and page descriptors by the header's `block_size` and take it for the kernel's
//! `PAGESIZE`: a file of 4 KiB blocks for an arm64 kernel with 16 KiB pages is misread. So the
//! block is the kernel's page — 4, 16 or 64 KiB — and every count of the file (max_mapnr, the
//! bitmaps, the descriptors, the stored pages, the shared zero page) is in blocks.
//!
//! What guestcore knows about RAM and about the frames a dump level leaves out is in 4 KiB
//! frames ([`FRAME`]); this module maps them to blocks: a block holds RAM when any of its
//! bytes is RAM (it is dumped with its non-RAM bytes as zeros), and a block is left out only
//! when every RAM frame of it is ([`ExcludedBlocks`]).

use crate::dump_level::FrameSet;
use crate::phys::RamMap;
use crate::{Error, Result};

/// Bytes of the frames the RAM map, page filters and streams count in.
pub(super) const FRAME: u64 = 4096;

/// The largest block: 64 KiB, arm64's largest page (and the codecs' largest input).
const MAX: u64 = crate::codec::MAX_BLOCK as u64;

/// The block size of a kdump file: a power of two from 4 KiB to 64 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockSize(u32);

impl BlockSize {
    /// 4 KiB: x86's pages, and the block of a dump whose kernel is not known.
    pub const KIB_4: BlockSize = BlockSize(4096);

    /// The block of a kernel whose `PAGESIZE` is `bytes`; an error for any other size than a
    /// power of two from 4 KiB to 64 KiB.
    pub fn new(bytes: u64) -> Result<Self> {
        if !bytes.is_power_of_two() || !(FRAME..=MAX).contains(&bytes) {
            return Err(Error::Unsupported(format!(
                "a kdump file of {bytes}-byte pages: guestcore writes blocks of 4 KiB to 64 KiB"
            )));
        }
        Ok(BlockSize(bytes as u32))
    }

    /// Bytes per block.
    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// Bytes per block, as a length.
    pub fn size(self) -> usize {
        self.0 as usize
    }

    /// 4 KiB frames per block.
    pub(super) fn frames(self) -> u64 {
        self.bytes() / FRAME
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        Self::KIB_4
    }
}

impl std::fmt::Display for BlockSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} KiB", self.0 / 1024)
    }
}

/// The 4 KiB frames of RAM in block `block`: those holding any byte of RAM.
pub(super) fn ram_frames_in(ram: &RamMap, block: BlockSize, b: u64) -> u64 {
    let bs = block.bytes();
    let mut n = 0;
    let mut last = None;
    for p in ram.ram_parts(b * bs, bs) {
        let (mut s, e) = (p.start / FRAME, p.end.div_ceil(FRAME));
        if last == Some(s) {
            s += 1; // a frame holding the end of one part and the start of the next
        }
        n += e.saturating_sub(s);
        last = Some(e - 1);
    }
    n
}

/// The blocks a dump level leaves out, from the 4 KiB frames it leaves out: a block is left
/// out only when every one of its RAM frames is (a kernel with 16 KiB pages has one
/// `struct page` per block, so a filter that reads its page array leaves out whole blocks;
/// a frame-level filter that keeps any frame of a block keeps the block).
#[derive(Clone, Copy, Debug)]
pub(super) struct ExcludedBlocks<'a> {
    pub frames: &'a FrameSet,
    pub ram: &'a RamMap,
    pub block: BlockSize,
}

impl<'a> ExcludedBlocks<'a> {
    /// True when block `b` is left out.
    fn excluded(&self, b: u64) -> bool {
        let k = self.block.frames();
        let ram = ram_frames_in(self.ram, self.block, b);
        ram > 0 && self.frames.count_in(b * k, (b + 1) * k) == ram
    }

    /// The runs `[a, b)` of left-out blocks within blocks `[lo, hi)`, in order.
    pub(super) fn runs_in(&self, lo: u64, hi: u64) -> Box<dyn Iterator<Item = (u64, u64)> + 'a> {
        let k = self.block.frames();
        if k == 1 {
            return Box::new(self.frames.members_in(lo, hi));
        }
        let this = *self;
        // Per run of left-out frames: its partial first block (when all of it is out), its
        // whole blocks, its partial last block (likewise). Sorted, overlapping by at most one
        // block between runs: merged below.
        let mut blocks = self
            .frames
            .members_in(lo * k, hi * k)
            .flat_map(move |(a, b)| {
                let (full_s, full_e) = (a.div_ceil(k), b / k);
                let head = (a % k != 0 && this.excluded(a / k)).then(|| (a / k, a / k + 1));
                let whole = (full_s < full_e).then_some((full_s, full_e));
                let last = (b - 1) / k;
                let tail = (b % k != 0 && (a % k == 0 || last != a / k) && this.excluded(last))
                    .then_some((last, last + 1));
                [head, whole, tail].into_iter().flatten()
            })
            .peekable();
        Box::new(std::iter::from_fn(move || {
            let (s, mut e) = blocks.next()?;
            while let Some(&(s2, e2)) = blocks.peek() {
                if s2 > e {
                    break;
                }
                e = e.max(e2);
                blocks.next();
            }
            Some((s, e))
        }))
    }

    /// The runs of blocks within `[lo, hi)` that are not left out, in order.
    pub(super) fn gaps_in(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, u64)> + 'a {
        let mut out = self.runs_in(lo, hi);
        let mut pos = lo;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            match out.next() {
                Some((s, e)) => {
                    let gap = (pos < s).then_some((pos, s));
                    pos = e;
                    if gap.is_some() {
                        return gap;
                    }
                }
                None => {
                    done = true;
                    return (pos < hi).then_some((pos, hi));
                }
            }
        })
    }

    /// Blocks left out within `[lo, hi)`.
    pub(super) fn count_in(&self, lo: u64, hi: u64) -> u64 {
        if self.block.frames() == 1 {
            return self.frames.count_in(lo, hi);
        }
        self.runs_in(lo, hi).map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;

    #[test]
    fn sizes() {
        for ok in [4096, 16384, 65536] {
            assert_eq!(BlockSize::new(ok).unwrap().bytes(), ok);
        }
        for bad in [0, 2048, 8191, 131072] {
            assert!(BlockSize::new(bad).is_err(), "{bad}");
        }
        assert_eq!(BlockSize::new(16384).unwrap().frames(), 4);
        assert_eq!(BlockSize::default().to_string(), "4 KiB");
    }

    #[test]
    fn ram_frames_of_partial_blocks() {
        let b16 = BlockSize::new(16384).unwrap();
        // RAM from 0x1800 (frame 1, partly) to 0x9000, and one frame at 0xf000 (block 3).
        let ram = RamMap::new(vec![
            PhysRange::new(0x1800, 0x7800),
            PhysRange::new(0xf000, 0x1000),
        ])
        .unwrap();
        assert_eq!(ram_frames_in(&ram, b16, 0), 3, "frames 1..4");
        assert_eq!(ram_frames_in(&ram, b16, 1), 4, "frames 4..8");
        assert_eq!(ram_frames_in(&ram, b16, 2), 1, "frame 8");
        assert_eq!(ram_frames_in(&ram, b16, 3), 1, "frame 0xf");
        assert_eq!(ram_frames_in(&ram, b16, 4), 0);
        // Two parts in one frame count it once.
        let split = RamMap::new(vec![
            PhysRange::new(0x4000, 0x800),
            PhysRange::new(0x4c00, 0x1400),
        ])
        .unwrap();
        assert_eq!(ram_frames_in(&split, b16, 1), 2, "frames 4 and 5");
    }

    /// A block is left out only when all of its RAM frames are, whatever runs the frames
    /// come in; the 4 KiB case is the frame set itself.
    #[test]
    fn blocks_left_out_follow_their_frames() {
        let ram = RamMap::new(vec![
            PhysRange::new(0x1000, 0x3f000),
            PhysRange::new(0x80000, 0x40000),
        ])
        .unwrap();
        let mut frames = FrameSet::for_ram(&ram);
        // Frames 1..8 (block 0 is frames 0..4 of which 1..4 are RAM: all out; block 1 whole),
        // 9..11 (block 2 partly), 16..32 (blocks 4..8), 0x80..0x83 (block 0x20 partly),
        // 0x84..0x88 (block 0x21 whole) and 0xbc..0xc0 (block 0x2f, the last).
        for (s, e) in [
            (1, 8),
            (9, 11),
            (16, 32),
            (0x80, 0x83),
            (0x84, 0x88),
            (0xbc, 0xc0),
        ] {
            frames.insert(s, e);
        }
        let b16 = BlockSize::new(16384).unwrap();
        let x = ExcludedBlocks {
            frames: &frames,
            ram: &ram,
            block: b16,
        };
        let runs: Vec<_> = x.runs_in(0, 0x30).collect();
        assert_eq!(runs, vec![(0, 2), (4, 8), (0x21, 0x22), (0x2f, 0x30)]);
        assert_eq!(x.count_in(0, 0x30), 2 + 4 + 1 + 1);
        assert_eq!(x.count_in(1, 5), 2);
        let gaps: Vec<_> = x.gaps_in(0, 0x30).collect();
        assert_eq!(gaps, vec![(2, 4), (8, 0x21), (0x22, 0x2f)]);
        let gaps: Vec<_> = x.gaps_in(0x2f, 0x30).collect();
        assert!(gaps.is_empty(), "{gaps:?}");
        // Every block, checked one by one against its frames.
        let k = b16.frames();
        for b in 0..0x30u64 {
            let ram_frames = ram_frames_in(&ram, b16, b);
            let out = (b * k..(b + 1) * k).filter(|&f| frames.contains(f)).count() as u64;
            let want = ram_frames > 0 && out == ram_frames;
            let got = runs.iter().any(|&(s, e)| s <= b && b < e);
            assert_eq!(got, want, "block {b:#x}");
        }
        let x4 = ExcludedBlocks {
            block: BlockSize::KIB_4,
            ..x
        };
        assert_eq!(x4.count_in(0, 0xc0), frames.len());
        assert_eq!(x4.runs_in(0, 0xc0).next(), Some((1, 8)));
    }
}
