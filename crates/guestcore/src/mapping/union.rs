//! The union of several vCPUs' views, with one physical page per virtual page.
//!
//! `dump --paging --all-cpus` wants every vCPU's mappings in one core, but a core can say only
//! one thing about a virtual address: gdb, crash and drgn read the first PT_LOAD that covers
//! it. When two vCPUs run different page tables (two processes' user halves, or a crashed
//! kernel beside its kdump capture kernel) the same virtual page can map different physical
//! pages, and a plain union (what QEMU's paging dump writes) would be silently wrong for
//! whichever view loses. So the union here keeps **one view per virtual range by a stated
//! rule: the first view that maps a virtual page wins** (views come in the caller's order,
//! the CLI's is vCPU order). Later views add only the virtual ranges no earlier view maps;
//! where they map a range the earlier views already map, to different physical memory, that
//! is a [`UnionConflict`]: counted, the first one kept for the message, never written.
//! Where they agree nothing is lost, whatever the permission bits say.
//!
//! Cost: one sorted sweep per view, O(union + view) time and memory.

use super::{Mapping, MappingList};
use crate::addr::{PhysAddr, VirtAddr};

/// What one view added to the union.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewPart {
    /// The view's label (the vCPU index).
    pub cpu: u32,
    /// Mappings (before merging) taken from this view.
    pub mappings: u64,
    /// Virtual bytes taken from this view.
    pub bytes: u64,
}

/// A virtual range two views map to different physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnionConflict {
    /// First virtual byte of the conflicting piece.
    pub va: u64,
    /// Its length.
    pub size: u64,
    /// The view (vCPU) whose mapping was kept.
    pub kept_cpu: u32,
    /// Where the kept mapping maps `va`.
    pub kept_pa: u64,
    /// The view (vCPU) whose mapping was dropped.
    pub dropped_cpu: u32,
    /// Where the dropped mapping mapped `va`.
    pub dropped_pa: u64,
}

/// The union of views and what each contributed.
#[derive(Clone, Debug, Default)]
pub(crate) struct ViewUnion {
    /// Sorted, merged, one physical address per virtual address.
    pub list: MappingList,
    /// One entry per view, in the order given.
    pub parts: Vec<ViewPart>,
    /// Conflicting pieces dropped (each a maximal overlap of two mappings).
    pub conflicts: u64,
    /// Virtual bytes in those pieces.
    pub conflict_bytes: u64,
    /// The first conflict met (lowest virtual address of the first view that had one).
    pub first_conflict: Option<UnionConflict>,
}

/// The union of `views` (label, list), the first view that maps a virtual page winning.
pub(crate) fn union_of_views<'a>(
    views: impl IntoIterator<Item = (u32, &'a MappingList)>,
) -> ViewUnion {
    let mut acc: Vec<(u32, Mapping)> = Vec::new();
    let mut out = ViewUnion::default();
    for (cpu, list) in views {
        let mut part = ViewPart {
            cpu,
            ..ViewPart::default()
        };
        let fresh = uncovered(&acc, cpu, list.as_slice(), &mut out);
        part.mappings = fresh.len() as u64;
        part.bytes = fresh.iter().map(|m| m.size).sum();
        acc = merge_sorted(acc, fresh.into_iter().map(|m| (cpu, m)).collect());
        out.parts.push(part);
    }
    for (_, m) in &acc {
        out.list.push(m.va.0, m.pa.0, m.size, m.flags);
    }
    out
}

fn start(m: &Mapping) -> u128 {
    u128::from(m.va.0)
}

/// One past the last byte, without wrapping at the top of the address space.
fn end(m: &Mapping) -> u128 {
    u128::from(m.va.0) + u128::from(m.size)
}

/// The piece `[from, to)` of `m`.
fn piece(m: &Mapping, from: u128, to: u128) -> Mapping {
    let skip = (from - start(m)) as u64;
    Mapping {
        va: VirtAddr(from as u64),
        pa: PhysAddr(m.pa.0.wrapping_add(skip)),
        size: (to - from) as u64,
        flags: m.flags,
    }
}

/// The parts of `view` that no mapping in `acc` covers; overlaps that disagree on the
/// physical address are recorded in `out` as conflicts.
fn uncovered(
    acc: &[(u32, Mapping)],
    cpu: u32,
    view: &[Mapping],
    out: &mut ViewUnion,
) -> Vec<Mapping> {
    let mut fresh = Vec::new();
    let mut i = 0;
    for v in view {
        while i < acc.len() && end(&acc[i].1) <= start(v) {
            i += 1;
        }
        let (mut cur, vend) = (start(v), end(v));
        let mut k = i;
        while cur < vend {
            let Some((kept_cpu, a)) = acc.get(k).filter(|(_, a)| start(a) < vend) else {
                fresh.push(piece(v, cur, vend));
                break;
            };
            if start(a) > cur {
                fresh.push(piece(v, cur, start(a)));
            }
            let (from, to) = (start(a).max(cur), end(a).min(vend));
            let kept = piece(a, from, to);
            let mine = piece(v, from, to);
            if kept.pa != mine.pa {
                out.conflicts += 1;
                out.conflict_bytes += kept.size;
                out.first_conflict.get_or_insert(UnionConflict {
                    va: kept.va.0,
                    size: kept.size,
                    kept_cpu: *kept_cpu,
                    kept_pa: kept.pa.0,
                    dropped_cpu: cpu,
                    dropped_pa: mine.pa.0,
                });
            }
            cur = to;
            if end(a) <= vend {
                k += 1;
            }
        }
    }
    fresh
}

/// Merges two sorted lists whose ranges do not overlap each other.
fn merge_sorted(a: Vec<(u32, Mapping)>, b: Vec<(u32, Mapping)>) -> Vec<(u32, Mapping)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.1.va.0 <= y.1.va.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::PageFlags;

    const W: PageFlags = PageFlags::WRITE;

    fn list(maps: &[(u64, u64, u64)]) -> MappingList {
        let mut l = MappingList::new();
        for &(va, pa, size) in maps {
            l.push(va, pa, size, W);
        }
        l
    }

    fn triples(l: &MappingList) -> Vec<(u64, u64, u64)> {
        l.iter().map(|m| (m.va.0, m.pa.0, m.size)).collect()
    }

    #[test]
    fn agreeing_views_add_only_what_is_new() {
        let a = list(&[(0x1000, 0x5000, 0x2000)]);
        let b = list(&[(0x2000, 0x6000, 0x2000), (0x9000, 0x1000, 0x1000)]);
        let u = union_of_views([(0, &a), (1, &b)]);
        assert_eq!(
            triples(&u.list),
            vec![(0x1000, 0x5000, 0x3000), (0x9000, 0x1000, 0x1000)]
        );
        assert_eq!(u.conflicts, 0);
        assert_eq!(u.parts[1].mappings, 2);
        assert_eq!(u.parts[1].bytes, 0x2000);
    }

    #[test]
    fn the_first_view_wins_a_conflict_and_it_is_reported() {
        // vCPU 1 maps 0x1000..0x4000 elsewhere; its 0x4000 page is new.
        let a = list(&[(0x1000, 0x5000, 0x2000)]);
        let b = list(&[(0x0000, 0x10_0000, 0x5000)]);
        let u = union_of_views([(0, &a), (1, &b)]);
        assert_eq!(
            triples(&u.list),
            vec![
                (0x0000, 0x10_0000, 0x1000),
                (0x1000, 0x5000, 0x2000),
                (0x3000, 0x10_3000, 0x2000)
            ]
        );
        assert_eq!((u.conflicts, u.conflict_bytes), (1, 0x2000));
        assert_eq!(
            u.first_conflict,
            Some(UnionConflict {
                va: 0x1000,
                size: 0x2000,
                kept_cpu: 0,
                kept_pa: 0x5000,
                dropped_cpu: 1,
                dropped_pa: 0x10_1000,
            })
        );
        // One virtual address, one physical address.
        let s = u.list.as_slice();
        assert!(s.windows(2).all(|w| w[0].va_end() <= w[1].va.0));
    }

    #[test]
    fn one_long_mapping_over_many_and_the_top_page() {
        let top = 0xffff_ffff_ffff_f000;
        let a = list(&[
            (0x1000, 0x1000, 0x1000),
            (0x3000, 0x3000, 0x1000),
            (top, 0x9000, 0x1000),
        ]);
        let b = list(&[(0, 0, 0x10_000), (top, 0x8000, 0x1000)]);
        let u = union_of_views([(0, &a), (1, &b)]);
        // b agrees with a's identity pages and fills the gaps; the top page conflicts.
        assert_eq!(
            triples(&u.list),
            vec![(0, 0, 0x10_000), (top, 0x9000, 0x1000)]
        );
        assert_eq!(u.conflicts, 1);
        assert_eq!(u.parts[1].mappings, 3);
    }

    #[test]
    fn three_views_in_order() {
        let a = list(&[(0x1000, 0x1000, 0x1000)]);
        let b = list(&[(0x1000, 0x2000, 0x1000), (0x2000, 0x2000, 0x1000)]);
        let c = list(&[(0x2000, 0x7000, 0x1000)]);
        let u = union_of_views([(0, &a), (1, &b), (2, &c)]);
        assert_eq!(triples(&u.list), vec![(0x1000, 0x1000, 0x2000)]);
        assert_eq!(u.conflicts, 2);
        assert_eq!(u.first_conflict.unwrap().dropped_cpu, 1);
        assert_eq!(u.parts[2].mappings, 0);
    }
}
