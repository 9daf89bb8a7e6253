//! A set of page frames (pfns) over a guest's RAM, one bit per frame.
//!
//! Filtering marks the frames a dump leaves out. A bitmap over `0..RAM top` would follow the
//! highest RAM address, which a hostile or sparse input can put near 2^52; this one holds a
//! bitmap per *span* of contiguous RAM frames, so it costs one bit per frame of RAM present,
//! whatever the address space looks like. Frames outside every span are never in the set.

use crate::phys::RamMap;

/// Bytes per page frame.
pub(crate) const FRAME: u64 = 4096;

/// Frames `[start, start + len)` and their bits.
#[derive(Clone, Debug)]
struct Span {
    start: u64,
    len: u64,
    words: Vec<u64>,
}

/// A set of page frames of one guest's RAM.
#[derive(Clone, Debug, Default)]
pub struct FrameSet {
    spans: Vec<Span>,
    count: u64,
}

impl FrameSet {
    /// An empty set able to hold every frame that holds RAM of `ram` (a frame partly RAM too).
    pub(crate) fn for_ram(ram: &RamMap) -> Self {
        let mut spans: Vec<Span> = Vec::new();
        for r in ram.ranges() {
            let (s, e) = (r.start / FRAME, r.end.div_ceil(FRAME));
            match spans.last_mut() {
                Some(last) if s <= last.start + last.len => {
                    last.len = last.len.max(e - last.start);
                }
                _ => spans.push(Span {
                    start: s,
                    len: e - s,
                    words: Vec::new(),
                }),
            }
        }
        for s in &mut spans {
            s.words = vec![0; s.len.div_ceil(64) as usize];
        }
        FrameSet { spans, count: 0 }
    }

    /// Frames in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when no frame is in the set.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frames the set can hold (frames of RAM).
    pub(crate) fn capacity(&self) -> u64 {
        self.spans.iter().map(|s| s.len).sum()
    }

    /// Index of the span holding `pfn`.
    fn span_of(&self, pfn: u64) -> Option<usize> {
        let i = self.spans.partition_point(|s| s.start + s.len <= pfn);
        (i < self.spans.len() && self.spans[i].start <= pfn).then_some(i)
    }

    /// True when `pfn` is in the set.
    pub fn contains(&self, pfn: u64) -> bool {
        self.span_of(pfn).is_some_and(|i| {
            let s = &self.spans[i];
            let b = pfn - s.start;
            s.words[(b / 64) as usize] >> (b % 64) & 1 == 1
        })
    }

    /// Applies `op` to the bits of `[start, end)` that are RAM frames, word by word; `op` gets
    /// a word and the mask of the bits in range and returns the new word. Returns the change in
    /// the number of set bits.
    fn update(&mut self, start: u64, end: u64, op: impl Fn(u64, u64) -> u64) -> i64 {
        let mut delta = 0i64;
        let first = self.spans.partition_point(|s| s.start + s.len <= start);
        for s in &mut self.spans[first..] {
            if s.start >= end {
                break;
            }
            for (w, mask) in word_masks(s, start, end) {
                let old = s.words[w];
                let new = op(old, mask);
                delta += i64::from(new.count_ones()) - i64::from(old.count_ones());
                s.words[w] = new;
            }
        }
        delta
    }

    /// Adds the RAM frames of `[start, end)`; returns how many were not in the set before.
    pub fn insert(&mut self, start: u64, end: u64) -> u64 {
        let d = self.update(start, end, |w, m| w | m) as u64;
        self.count += d;
        d
    }

    /// Removes the frames of `[start, end)`; returns how many were in the set.
    pub fn remove(&mut self, start: u64, end: u64) -> u64 {
        let d = self.update(start, end, |w, m| w & !m).unsigned_abs();
        self.count -= d;
        d
    }

    /// Frames of `[start, end)` in the set.
    pub(crate) fn count_in(&self, start: u64, end: u64) -> u64 {
        let first = self.spans.partition_point(|s| s.start + s.len <= start);
        self.spans[first..]
            .iter()
            .take_while(|s| s.start < end)
            .flat_map(|s| word_masks(s, start, end).map(|(w, m)| (s.words[w] & m).count_ones()))
            .map(u64::from)
            .sum()
    }

    /// The runs `[a, b)` of RAM frames (in the set or not) within `[start, end)`, in order.
    pub(crate) fn ram_runs_in(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let first = self.spans.partition_point(|s| s.start + s.len <= start);
        self.spans[first..]
            .iter()
            .take_while(|s| s.start < end)
            .map(|s| (s.start.max(start), (s.start + s.len).min(end)))
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// The runs `[a, b)` of frames of `[start, end)` that are *not* in the set, in order
    /// (frames outside RAM count as not in the set).
    pub(crate) fn gaps_in(&self, start: u64, end: u64) -> Runs<'_> {
        Runs {
            set: self,
            pos: start,
            end,
            member: false,
        }
    }

    /// The runs `[a, b)` of frames of `[start, end)` that are in the set, in order.
    pub(crate) fn members_in(&self, start: u64, end: u64) -> Runs<'_> {
        Runs {
            set: self,
            pos: start,
            end,
            member: true,
        }
    }

    /// The first frame at or after `pfn` (below `end`) whose membership is `member`, or `end`.
    fn next_with(&self, pfn: u64, end: u64, member: bool) -> u64 {
        let mut p = pfn;
        while p < end {
            let Some(i) = self.span_of(p) else {
                if !member {
                    return p;
                }
                // Outside RAM: skip to the next span.
                let next = self.spans.partition_point(|s| s.start + s.len <= p);
                match self.spans.get(next) {
                    Some(s) if s.start < end => {
                        p = s.start;
                        continue;
                    }
                    _ => return end,
                }
            };
            let s = &self.spans[i];
            let limit = end.min(s.start + s.len);
            let mut b = p - s.start;
            let hi = limit - s.start;
            while b < hi {
                let w = s.words[(b / 64) as usize];
                let w = if member { w } else { !w };
                let w = w >> (b % 64);
                if w != 0 {
                    let at = b + u64::from(w.trailing_zeros());
                    return (s.start + at).min(limit).max(p);
                }
                b = (b / 64 + 1) * 64;
            }
            if !member && limit < end {
                // Past this span's end the frames are outside RAM: not members.
                return limit;
            }
            p = limit;
        }
        end
    }
}

/// The words of `s` that hold frames of `[start, end)`, each with the mask of those frames'
/// bits (none when the span and the range do not meet).
fn word_masks(s: &Span, start: u64, end: u64) -> impl Iterator<Item = (usize, u64)> {
    let lo = start.clamp(s.start, s.start + s.len) - s.start;
    let hi = end.clamp(s.start, s.start + s.len) - s.start;
    let mut b = lo;
    std::iter::from_fn(move || {
        if b >= hi {
            return None;
        }
        let off = b % 64;
        let n = (64 - off).min(hi - b);
        let mask = if n == 64 {
            !0
        } else {
            ((1u64 << n) - 1) << off
        };
        let w = (b / 64) as usize;
        b += n;
        Some((w, mask))
    })
}

/// Iterator of [`FrameSet::gaps_in`] and [`FrameSet::members_in`].
#[derive(Debug)]
pub(crate) struct Runs<'a> {
    set: &'a FrameSet,
    pos: u64,
    end: u64,
    member: bool,
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        let a = self.set.next_with(self.pos, self.end, self.member);
        if a >= self.end {
            self.pos = self.end;
            return None;
        }
        let b = self.set.next_with(a, self.end, !self.member);
        self.pos = b;
        Some((a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;

    fn ram(ranges: &[(u64, u64)]) -> RamMap {
        RamMap::new(
            ranges
                .iter()
                .map(|&(s, e)| PhysRange { start: s, end: e })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn insert_remove_count_across_words_and_spans() {
        let mut f = FrameSet::for_ram(&ram(&[
            (0, 200 * FRAME),
            (1 << 40, (1 << 40) + 100 * FRAME),
        ]));
        assert_eq!(f.capacity(), 300);
        assert_eq!(f.insert(60, 130), 70);
        assert_eq!(f.insert(100, 250), 70, "only RAM frames below 200 are new");
        assert_eq!(f.len(), 140);
        assert!(f.contains(60) && f.contains(199) && !f.contains(59) && !f.contains(200));
        let hi = (1 << 40) / FRAME;
        assert_eq!(f.insert(hi - 5, hi + 3), 3);
        assert_eq!(f.count_in(0, u64::MAX), 143);
        assert_eq!(f.remove(64, 128), 64);
        assert_eq!(f.len(), 79);
        assert_eq!(f.count_in(60, 70), 4);
    }

    #[test]
    fn gaps_are_the_frames_not_in_the_set() {
        let mut f = FrameSet::for_ram(&ram(&[(0, 300 * FRAME)]));
        f.insert(10, 20);
        f.insert(64, 200);
        f.insert(250, 300);
        let g: Vec<_> = f.gaps_in(0, 300).collect();
        assert_eq!(g, vec![(0, 10), (20, 64), (200, 250)]);
        let g: Vec<_> = f.gaps_in(15, 260).collect();
        assert_eq!(g, vec![(20, 64), (200, 250)]);
        // Past RAM every frame is a gap.
        let g: Vec<_> = f.gaps_in(290, 310).collect();
        assert_eq!(g, vec![(300, 310)]);
        assert_eq!(
            FrameSet::default().gaps_in(3, 9).collect::<Vec<_>>(),
            vec![(3, 9)]
        );
        let m: Vec<_> = f.members_in(0, u64::MAX).collect();
        assert_eq!(m, vec![(10, 20), (64, 200), (250, 300)]);
        assert_eq!(
            f.members_in(15, 70).collect::<Vec<_>>(),
            vec![(15, 20), (64, 70)]
        );
    }

    #[test]
    fn partial_frames_at_range_edges_belong_to_the_set() {
        let f = FrameSet::for_ram(&ram(&[(FRAME + 8, 3 * FRAME - 8)]));
        assert_eq!(f.capacity(), 2);
    }
}
