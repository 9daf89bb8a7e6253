//! One pass over the kernel's page array: which RAM frames a dump level leaves out.
//!
//! Sections are read in parallel, each in windows of [`WINDOW_PAGES`] `struct page`s: the page
//! array is mapped with 2 MiB pages, so a window costs one or two translations, and a window
//! inside one page of a mapped source is classified where it lies (`virt_slice`: no copy of
//! the 64 MiB array of a 4 GiB guest), any other one is read with one `read_virt`. Memory is
//! O(threads × window) and time O(RAM frames). A window that does not read leaves its frames
//! *unclassified*: kept, and counted.

use super::classify::{Class, Verdict};
use super::frames::{FrameSet, FRAME};
use super::page_array::{PageLayout, SectionMap, SectionTable};
use crate::kernel::vread::{read_virt, release_virt, virt_slice};
use crate::paging::PagingMode;
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;

/// `struct page`s read at a time.
pub const WINDOW_PAGES: u64 = 8192;

/// Frames the zero-page pass reads at a time (2 MiB), a multiple of every kernel page size.
const PIECE: u64 = 512;

/// Frames left out, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// All-zero pages (level 1).
    pub zero: u64,
    /// Page cache without private data (level 2).
    pub cache: u64,
    /// Page cache with private data (level 4).
    pub cache_private: u64,
    /// User-process data (level 8).
    pub user: u64,
    /// Free pages (level 16).
    pub free: u64,
    /// Hardware-poisoned pages.
    pub hwpoison: u64,
    /// Logically offline pages.
    pub offline: u64,
    /// Frames past the end of the kernel's page array (past its last present section):
    /// memory the kernel does not manage, such as device memory an input holds at the top of
    /// the address space. makedumpfile ends its dump there too.
    pub beyond_page_array: u64,
}

impl Excluded {
    pub(crate) fn add(&mut self, class: Class, n: u64) {
        let c = match class {
            Class::Free => &mut self.free,
            Class::Cache => &mut self.cache,
            Class::CachePrivate => &mut self.cache_private,
            Class::User => &mut self.user,
            Class::HwPoison => &mut self.hwpoison,
            Class::Offline => &mut self.offline,
        };
        *c += n;
    }

    /// Frames left out for any reason.
    pub fn total(&self) -> u64 {
        self.zero
            + self.cache
            + self.cache_private
            + self.user
            + self.free
            + self.hwpoison
            + self.offline
            + self.beyond_page_array
    }
}

/// What one section's pass found.
#[derive(Default)]
struct SectionResult {
    /// `[start, end)` pfn runs and why (adjacent runs of one class joined).
    runs: Vec<(u64, u64, Class)>,
    unclassified: u64,
    bad_free_orders: u64,
}

impl SectionResult {
    fn push(&mut self, start: u64, end: u64, class: Class) {
        match self.runs.last_mut() {
            Some(last) if last.1 == start && last.2 == class => last.1 = end,
            _ => self.runs.push((start, end, class)),
        }
    }
}

/// Classifies the frames of one section.
fn scan_section<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    layout: &PageLayout,
    bits: u8,
    map: SectionMap,
    runs: &[(u64, u64)],
) -> SectionResult {
    let mut out = SectionResult::default();
    let size = layout.size_page as u64;
    let mut buf = Vec::new();
    let mut tail_buf = vec![0u8; size as usize];
    // Frames up to here are inside a block already left out.
    let mut skip_until = 0u64;
    for &(run_start, run_end) in runs {
        let mut pfn = run_start;
        while pfn < run_end {
            let end = (pfn + WINDOW_PAGES).min(run_end);
            let n = end - pfn;
            let va = map.base.wrapping_add(pfn.wrapping_mul(size));
            // The window's struct pages, borrowed from a mapped source where one page maps
            // them all, and one more: a compound head's first tail.
            let body_len = n * size;
            let (body, extra): (&[u8], Option<&[u8]>) =
                if let Some(body) = virt_slice(mem, mode, va, body_len) {
                    let tail_va = va.wrapping_add(body_len);
                    let extra = read_virt(mem, mode, tail_va, &mut tail_buf).is_ok();
                    (body, extra.then_some(&tail_buf[..]))
                } else {
                    buf.resize(((n + 1) * size) as usize, 0);
                    if read_virt(mem, mode, va, &mut buf).is_ok() {
                        let (body, extra) = buf.split_at(body_len as usize);
                        (body, Some(extra))
                    } else {
                        buf.truncate(body_len as usize);
                        if read_virt(mem, mode, va, &mut buf).is_err() {
                            out.unclassified += end.saturating_sub(pfn.max(skip_until));
                            pfn = end;
                            continue;
                        }
                        (&buf[..], None)
                    }
                };
            for i in 0..n {
                let p = pfn + i;
                if p < skip_until {
                    continue;
                }
                let at = (i * size) as usize;
                let page = &body[at..at + size as usize];
                let tail = body.get(at + size as usize..at + 2 * size as usize).or(
                    // The last struct page of the window: its tail is the extra one.
                    if i + 1 == n { extra } else { None },
                );
                match layout.classify(bits, p, page, tail) {
                    Ok(Some(Verdict { class, pages })) => {
                        let stop = p.saturating_add(pages);
                        out.push(p, stop, class);
                        skip_until = stop;
                    }
                    Ok(None) => {}
                    Err(()) => out.bad_free_orders += 1,
                }
            }
            release_virt(mem, mode, va, n * size);
            pfn = end;
        }
    }
    out
}

/// The classification of a guest's RAM for one level: the frames to leave out, and counts.
pub(crate) struct Classified {
    pub excluded: Excluded,
    pub unclassified: u64,
    pub bad_free_orders: u64,
    /// Frames the page array would leave out that are in `keep`.
    pub protected: u64,
    /// RAM frames of the input in no section of the kernel's (kept).
    pub outside: u64,
}

/// Marks in `out` the frames the page array says `bits` leaves out, except those in the set
/// `keep` returns. `keep` (a walk of the kernel's page tables) runs beside the pass over the
/// page array, as neither needs the other until the results are merged.
#[allow(clippy::too_many_arguments)]
pub(crate) fn classify_ram<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    layout: &PageLayout,
    table: &SectionTable,
    bits: u8,
    keep: impl FnOnce() -> FrameSet + Send,
    out: &mut FrameSet,
    progress: &dyn Progress,
) -> Result<Classified> {
    // `out` counts 4 KiB frames; the page array, kernel pages of `1 << k` frames each.
    let k = table.frame_shift();
    let unit = 1u64 << k;
    // log2 of the frames per section.
    let shift = table.pfn_section_shift + k;
    // Sections that hold RAM.
    let mut sections: Vec<u64> = Vec::new();
    for (s, e) in out.ram_runs_in(0, u64::MAX) {
        for nr in s >> shift..=(e - 1) >> shift {
            if sections.last() != Some(&nr) {
                sections.push(nr);
            }
        }
    }
    let (maps, unread) = table
        .maps(mem, mode, &sections)
        .map_err(|why| Error::Unsupported(format!("the kernel's page array: {why}")))?;
    if maps.is_empty() && unread.is_empty() {
        return Err(Error::Unsupported(
            "the kernel's page array has no present section over the input's RAM".into(),
        ));
    }
    progress.start("reading the page array", maps.len() as u64);
    let work: Vec<(SectionMap, Vec<(u64, u64)>)> = maps
        .iter()
        .map(|m| {
            let lo = m.nr << shift;
            // The kernel pages with a RAM frame, as pfns (a section is whole kernel pages).
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for (s, e) in out.ram_runs_in(lo, lo + (1 << shift)) {
                let (s, e) = (s >> k, e.div_ceil(unit));
                match runs.last_mut() {
                    Some(l) if l.1 >= s => l.1 = l.1.max(e),
                    _ => runs.push((s, e)),
                }
            }
            (*m, runs)
        })
        .collect();
    let (keep, results) = rayon::join(keep, || -> Vec<SectionResult> {
        work.par_iter()
            .map(|(m, runs)| {
                if progress.cancelled() {
                    return SectionResult::default();
                }
                let r = scan_section(mem, mode, layout, bits, *m, runs);
                progress.advance(1);
                r
            })
            .collect()
    });
    progress.finish();
    if progress.cancelled() {
        return Err(Error::Cancelled);
    }
    let mut c = Classified {
        excluded: Excluded::default(),
        unclassified: 0,
        bad_free_orders: 0,
        protected: 0,
        outside: 0,
    };
    // Needed frames the array would leave out (a set, so overlapping runs count once).
    let mut protected = FrameSet::for_ram(mem.ram());
    // RAM frames of sections that do not read are unclassified; those of sections the kernel
    // does not have (memory it does not manage: firmware, device memory) are outside it.
    let frames_of = |nr: u64| -> u64 {
        let lo = nr << shift;
        out.ram_runs_in(lo, lo + (1 << shift))
            .iter()
            .map(|(s, e)| e - s)
            .sum()
    };
    let mapped: u64 = maps.iter().map(|m| frames_of(m.nr)).sum();
    let unreadable: u64 = unread.iter().map(|&nr| frames_of(nr)).sum();
    c.unclassified += unreadable;
    // makedumpfile's dump ends with the last present section: so does ours.
    let end = maps
        .iter()
        .map(|m| m.nr)
        .chain(unread.iter().copied())
        .map(|nr| (nr + 1) << shift)
        .max()
        .unwrap_or(0);
    let beyond: u64 = out
        .ram_runs_in(end, u64::MAX)
        .iter()
        .map(|(s, e)| e - s)
        .sum();
    c.outside = out.capacity() - mapped - unreadable - beyond;
    c.excluded.beyond_page_array = out.insert(end, u64::MAX);
    for r in results {
        c.unclassified += r.unclassified.saturating_mul(unit);
        c.bad_free_orders += r.bad_free_orders;
        for (s, e, class) in r.runs {
            // Whole kernel pages: one a needed frame lies in is kept, and protected, whole.
            let (s, e) = (s.saturating_mul(unit), e.saturating_mul(unit));
            for (a, b) in keep.gaps_in(s, e) {
                let a = a.checked_next_multiple_of(unit).unwrap_or(u64::MAX);
                let b = b - b % unit;
                if a < b {
                    let new = out.insert(a, b);
                    c.excluded.add(class, new);
                }
            }
            for (a, b) in keep.members_in(s, e) {
                let b = b.checked_next_multiple_of(unit).unwrap_or(u64::MAX);
                protected.insert((a - a % unit).max(s), b.min(e));
            }
        }
    }
    c.protected = protected.len();
    Ok(c)
}

/// Marks the all-zero kernel pages among those `out` keeps (for ELF output, whose layout is
/// fixed before the data is written); returns how many frames. A kernel page is `unit` frames
/// (a power of two, at most [`PIECE`]), left out only when every one of them is RAM, kept and
/// zero. Reads in parallel 2 MiB pieces; frames in holes of a sparse source's file are not
/// read ([`crate::phys::holes`]).
pub(crate) fn mark_zero_frames<M: PhysMemory + ?Sized>(
    mem: &M,
    out: &mut FrameSet,
    unit: u64,
    progress: &dyn Progress,
) -> Result<u64> {
    let unit = unit.clamp(1, PIECE);
    let mut pieces: Vec<(u64, u64)> = Vec::new();
    for (s, e) in out.ram_runs_in(0, u64::MAX) {
        for (a, b) in out.gaps_in(s, e) {
            // Pieces end on multiples of PIECE, so no kernel page is split between two.
            let mut p = a;
            while p < b {
                let q = ((p / PIECE + 1) * PIECE).min(b);
                pieces.push((p, q));
                p = q;
            }
        }
    }
    let total: u64 = pieces.iter().map(|(a, b)| b - a).sum();
    progress.start("finding zero pages", total * FRAME);
    let ram = mem.ram();
    let found: Vec<Result<Vec<(u64, u64)>>> = pieces
        .par_iter()
        .map_init(Vec::new, |buf: &mut Vec<u8>, &(a, b)| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let mut zero: Vec<(u64, u64)> = Vec::new();
            // Frames wholly in a hole of the source's file are zero without a read.
            let mut data: Vec<(u64, u64)> = Vec::new();
            crate::phys::holes::for_each_data_run(mem, a * FRAME, b * FRAME, |s, e| {
                data.push((s, e));
                true
            });
            let mut d = 0;
            for pfn in a..b {
                let addr = pfn * FRAME;
                while d < data.len() && data[d].1 <= addr {
                    d += 1;
                }
                let in_hole = !data.get(d).is_some_and(|r| r.0 < addr + FRAME);
                // Only the RAM bytes of the frame count (a partial frame at a range's edge).
                let mut all_zero = true;
                for part in ram.ram_parts(addr, FRAME).filter(|_| !in_hole) {
                    let page: &[u8] = match mem.slice(part.start, part.len()) {
                        Some(s) => s,
                        None => {
                            buf.resize(part.len() as usize, 0);
                            mem.read_at(part.start, buf)?;
                            buf
                        }
                    };
                    if !crate::phys::is_zero(page) {
                        all_zero = false;
                        break;
                    }
                }
                if all_zero {
                    match zero.last_mut() {
                        Some(l) if l.1 == pfn => l.1 = pfn + 1,
                        _ => zero.push((pfn, pfn + 1)),
                    }
                }
            }
            if unit > 1 {
                // Only whole kernel pages: pieces start and end on page boundaries but where
                // RAM or the kept frames do not, and a page cut there stays.
                zero.retain_mut(|(s, e)| {
                    *s = s.next_multiple_of(unit);
                    *e -= *e % unit;
                    s < e
                });
            }
            mem.release(a * FRAME, (b - a) * FRAME);
            // A file cut while this piece was read gave zeros: not zero pages of the guest.
            mem.intact()?;
            progress.advance((b - a) * FRAME);
            Ok(zero)
        })
        .collect();
    progress.finish();
    let mut n = 0;
    for r in found {
        for (s, e) in r? {
            n += out.insert(s, e);
        }
    }
    Ok(n)
}
