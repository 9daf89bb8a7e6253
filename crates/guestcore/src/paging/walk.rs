//! The walker: enumerates every leaf of a page-table hierarchy in ascending canonical
//! virtual-address order. An aarch64 mode has two hierarchies, TTBR0's half and then TTBR1's,
//! walked by the same code one after the other (see `mode::Tables`).
//!
//! Guests control their own page tables, so the walk is bounded: recursion depth is the mode's
//! level count (never data-driven), and [`WalkLimits`] caps the entries visited and leaves
//! produced. Self-referencing tables (Windows' self-map) and loops therefore terminate; when a
//! limit cuts the walk short the [`WalkReport`] says so.

use super::entry::{self, Entry};
use super::flags::PageFlags;
use super::mode::{Level, ModeKind, PagingMode, Tables};
use crate::phys::PhysMemory;
use crate::{Error, Result};
use serde::Serialize;

/// Bounds on one walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WalkLimits {
    /// Table entries examined (present or not) before the walk stops.
    pub max_entries: u64,
    /// Leaves produced before the walk stops.
    pub max_leaves: u64,
    /// Mappings a mapping list may hold before the walk stops (a leaf only partly in RAM
    /// becomes up to 2k+1 mappings for k RAM ranges under it, so leaves alone do not bound
    /// them). Used by [`crate::mapping::MappingList::from_walk`]; [`walk`] ignores it.
    pub max_mappings: u64,
}

impl Default for WalkLimits {
    /// Sized so one command ends in well under a minute and 1 GiB on a 2-core machine,
    /// whatever the tables say: 2^28 entries (a few seconds of walking), 2^24 leaves (streamed
    /// by `tlb`: about 1 GiB of text), 2^21 mappings (a 64 MiB list; a paging ELF dump derives its program
    /// headers from that list one at a time, and its data runs are at most one per mapping). A real Linux guest has about 2^16
    /// leaves and fewer mappings.
    fn default() -> Self {
        WalkLimits {
            max_entries: 1 << 28,
            max_leaves: 1 << 24,
            max_mappings: 1 << 21,
        }
    }
}

/// Why a walk ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// [`WalkLimits::max_entries`] reached.
    EntryLimit,
    /// [`WalkLimits::max_leaves`] reached.
    LeafLimit,
    /// [`WalkLimits::max_mappings`] reached (the mapping list is full).
    MappingLimit,
}

/// What a walk saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WalkReport {
    /// Table entries examined.
    pub entries_visited: u64,
    /// Leaves produced (including I/O leaves).
    pub leaves: u64,
    /// Leaves not entirely inside guest RAM.
    pub io_leaves: u64,
    /// Table pointers to memory outside guest RAM (skipped).
    pub tables_outside_ram: u64,
    /// Present entries with reserved bits set (skipped: the CPU would fault).
    pub reserved_entries: u64,
    /// Table pointers to the root or to a table above them on the same path (a self-map, as
    /// Windows builds on purpose, or a loop; on aarch64 also to the other half's root). They are walked like any table (the CPU would),
    /// so their leaves map page tables; [`loop_leaves`](Self::loop_leaves) counts those.
    pub self_references: u64,
    /// Leaves reached through a self-reference.
    pub loop_leaves: u64,
    /// Distinct 4 KiB frames those leaves start at, counted up to [`LOOP_FRAMES_COUNTED`].
    pub loop_frames: u64,
    /// Set when a limit stopped the walk; the leaves produced so far are still valid.
    pub stopped: Option<StopReason>,
}

/// Distinct frames of loop leaves counted at most (the count only feeds a warning).
pub const LOOP_FRAMES_COUNTED: u64 = 1 << 16;

/// One leaf: `size` bytes at canonical `va` map to physical `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Leaf {
    /// First virtual address (canonical: sign-extended; on aarch64 the full 64-bit address,
    /// the TTBR1 half's with its upper bits all ones).
    pub va: u64,
    /// First physical address.
    pub pa: u64,
    /// Page size in bytes.
    pub size: u64,
    /// Effective permissions plus the leaf's own bits; `IO` when not entirely in guest RAM.
    pub flags: PageFlags,
    /// The raw leaf entry (0 when paging is off).
    pub entry: u64,
}

/// Walks `mode`'s tables over `mem`, calling `sink` for every leaf in ascending canonical
/// virtual-address order. Fails only when the root table itself is not in guest memory (on
/// aarch64: when no enabled half's root is; one that is not counts in `tables_outside_ram`).
///
/// With paging off the "leaves" are the RAM ranges below 4 GiB (on aarch64, below the PA
/// size), identity-mapped.
/// With the A20 line masked, large leaves are split into 1 MiB pieces (bit 20 of every
/// physical address is forced to 0, so a large page is no longer physically contiguous).
pub fn walk<M, F>(mem: &M, mode: &PagingMode, limits: WalkLimits, mut sink: F) -> Result<WalkReport>
where
    M: PhysMemory + ?Sized,
    F: FnMut(&Leaf),
{
    walk_until(mem, mode, limits, |leaf| {
        sink(leaf);
        Ok(())
    })
}

/// [`walk`] with a sink that can stop the walk: returning `Err(reason)` ends it there, with
/// `reason` in [`WalkReport::stopped`] (a mapping list that is full stops this way).
pub fn walk_until<M, F>(
    mem: &M,
    mode: &PagingMode,
    limits: WalkLimits,
    sink: F,
) -> Result<WalkReport>
where
    M: PhysMemory + ?Sized,
    F: FnMut(&Leaf) -> std::result::Result<(), StopReason>,
{
    walk_with_tables(mem, mode, limits, |_, _| {}, sink)
}

/// [`walk_until`] that also tells `on_table` the physical address and byte length of every
/// table it reads (the root included), in the order it reads them: the frames a dump must
/// keep for the tables to be walked again.
pub fn walk_with_tables<M, T, F>(
    mem: &M,
    mode: &PagingMode,
    limits: WalkLimits,
    on_table: T,
    sink: F,
) -> Result<WalkReport>
where
    M: PhysMemory + ?Sized,
    T: FnMut(u64, u64),
    F: FnMut(&Leaf) -> std::result::Result<(), StopReason>,
{
    let mut w = Walker {
        mem,
        mode,
        tables: None,
        roots: [u64::MAX; 2],
        limits,
        report: WalkReport::default(),
        sink,
        on_table,
        bufs: Vec::new(),
        raw: Vec::new(),
        path: [u64::MAX; MAX_LEVELS],
        in_loop: 0,
        loop_frames: std::collections::HashSet::new(),
    };
    if mode.kind == ModeKind::Off {
        w.walk_identity();
        return Ok(w.report);
    }
    let root_len =
        |t: &Tables| t.levels.first().map_or(0, Level::entries) as u64 * mode.entry_bytes() as u64;
    let in_ram = |t: &Tables| mem.is_ram(t.root, root_len(t));
    if mode.tables().next().is_none() {
        // An aarch64 regime with both halves disabled (EPD0 and EPD1): nothing is mapped.
        return Ok(w.report);
    }
    if !mode.tables().any(|t| in_ram(&t)) {
        let first = mode.tables().next();
        return Err(Error::NotInMemory {
            addr: first.map_or(mode.root, |t| t.root),
            len: first.map_or(0, |t| root_len(&t)),
        });
    }
    for (slot, t) in w.roots.iter_mut().zip(mode.tables()) {
        *slot = t.root;
    }
    for t in mode.tables() {
        if !in_ram(&t) {
            w.report.tables_outside_ram += 1;
            continue;
        }
        w.tables = Some(t);
        w.bufs
            .resize_with(t.levels.len(), || Vec::with_capacity(1024));
        w.path = [u64::MAX; MAX_LEVELS];
        if w.visit(0, t.root, 0, PageFlags::WRITE | PageFlags::USER)
            .is_err()
        {
            break;
        }
    }
    w.report.loop_frames = w.loop_frames.len() as u64;
    Ok(w.report)
}

/// The most levels any mode has (5-level paging; aarch64's levels -1 to 3).
const MAX_LEVELS: usize = 5;

struct Walker<'a, M: ?Sized, T, F> {
    mem: &'a M,
    mode: &'a PagingMode,
    /// The hierarchy being walked.
    tables: Option<Tables<'a>>,
    /// Every hierarchy's root: a pointer to one is a self-reference from either half.
    roots: [u64; 2],
    limits: WalkLimits,
    report: WalkReport,
    sink: F,
    /// Told every table read.
    on_table: T,
    /// One entry buffer per level, reused across tables.
    bufs: Vec<Vec<u64>>,
    /// Scratch bytes for sources without a borrowed view.
    raw: Vec<u8>,
    /// The table being read at each level of the current path.
    path: [u64; MAX_LEVELS],
    /// How many self-references the current path went through.
    in_loop: u32,
    /// Distinct frames of loop leaves (bounded by [`LOOP_FRAMES_COUNTED`]).
    loop_frames: std::collections::HashSet<u64>,
}

/// `Err(())` unwinds the walk when a limit is hit.
type Flow = std::result::Result<(), ()>;

impl<M, T, F> Walker<'_, M, T, F>
where
    M: PhysMemory + ?Sized,
    T: FnMut(u64, u64),
    F: FnMut(&Leaf) -> std::result::Result<(), StopReason>,
{
    fn visit(&mut self, level: usize, table: u64, va_base: u64, acc: PageFlags) -> Flow {
        let Some(t) = self.tables else {
            return Ok(());
        };
        let lvl = t.levels[level];
        self.path[level] = table;
        let mut entries = std::mem::take(&mut self.bufs[level]);
        let ok = self.load_table(table, lvl.entries(), &mut entries);
        let result = if ok {
            self.visit_entries(level, &entries, va_base, acc)
        } else {
            self.report.tables_outside_ram += 1;
            Ok(())
        };
        self.bufs[level] = entries;
        result
    }

    fn visit_entries(
        &mut self,
        level: usize,
        entries: &[u64],
        va_base: u64,
        acc: PageFlags,
    ) -> Flow {
        let Some(t) = self.tables else {
            return Ok(());
        };
        let lvl = t.levels[level];
        for (i, &raw) in entries.iter().enumerate() {
            self.report.entries_visited += 1;
            if self.report.entries_visited > self.limits.max_entries {
                self.report.entries_visited -= 1;
                self.report.stopped = Some(StopReason::EntryLimit);
                return Err(());
            }
            let va = va_base | ((i as u64) << lvl.shift);
            match entry::decode(self.mode, &t, level, raw) {
                Entry::NotPresent => {}
                Entry::Reserved => self.report.reserved_entries += 1,
                Entry::Table(next) => {
                    let acc = entry::combine(acc, entry::perms(self.mode, &t, level, raw));
                    let looped = self.path[..=level].contains(&next) || self.roots.contains(&next);
                    if looped {
                        self.report.self_references += 1;
                        self.in_loop += 1;
                    }
                    let flow = self.visit(level + 1, next, va, acc);
                    if looped {
                        self.in_loop -= 1;
                    }
                    flow?;
                }
                Entry::Leaf { pa, size } => {
                    let mut flags = entry::combine(acc, entry::perms(self.mode, &t, level, raw));
                    flags |= entry::leaf_bits(&t, level, raw);
                    self.emit(t.place(va), pa, size, flags, raw)?;
                }
            }
        }
        Ok(())
    }

    /// Reads a table's entries into `out`; false when the table is not entirely in RAM.
    fn load_table(&mut self, table: u64, n: usize, out: &mut Vec<u64>) -> bool {
        let width = self.mode.entry_bytes();
        let len = n * width;
        out.clear();
        let bytes: &[u8] = match self.mem.slice(table, len as u64) {
            Some(s) => s,
            None => {
                self.raw.resize(len, 0);
                if self.mem.read_at(table, &mut self.raw).is_err() {
                    return false;
                }
                &self.raw
            }
        };
        (self.on_table)(table, len as u64);
        if width == 8 {
            out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
            );
        } else {
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64),
            );
        }
        true
    }

    fn emit(&mut self, va: u64, pa: u64, size: u64, flags: PageFlags, raw: u64) -> Flow {
        let a20_off = self.mode.a20_mask != !0;
        if a20_off && size > (1 << 20) {
            for k in 0..size >> 20 {
                let off = k << 20;
                self.emit_one(
                    va + off,
                    (pa + off) & self.mode.a20_mask,
                    1 << 20,
                    flags,
                    raw,
                )?;
            }
            return Ok(());
        }
        self.emit_one(va, pa, size, flags, raw)
    }

    fn emit_one(&mut self, va: u64, pa: u64, size: u64, mut flags: PageFlags, raw: u64) -> Flow {
        if self.report.leaves >= self.limits.max_leaves {
            self.report.stopped = Some(StopReason::LeafLimit);
            return Err(());
        }
        self.report.leaves += 1;
        if self.in_loop > 0 {
            self.report.loop_leaves += 1;
            if (self.loop_frames.len() as u64) < LOOP_FRAMES_COUNTED {
                self.loop_frames.insert(pa >> 12);
            }
        }
        if !self.mem.is_ram(pa, size) {
            flags |= PageFlags::IO;
            self.report.io_leaves += 1;
        }
        (self.sink)(&Leaf {
            va,
            pa,
            size,
            flags,
            entry: raw,
        })
        .map_err(|reason| self.report.stopped = Some(reason))
    }

    /// Paging off: linear = physical for the RAM below 4 GiB (aarch64: below the PA size).
    fn walk_identity(&mut self) {
        let ranges: Vec<_> = self.mem.ram().ranges().to_vec();
        let flags = PageFlags::WRITE | PageFlags::USER;
        let limit = 1u64 << self.mode.va_bits().min(63);
        for r in ranges {
            if r.start >= limit {
                break;
            }
            let end = r.end.min(limit);
            let a20_off = self.mode.a20_mask != !0;
            let mut start = r.start;
            while start < end {
                // With A20 masked, linear bit 20 is dropped: emit 1 MiB pieces so each is contiguous.
                let piece_end = if a20_off {
                    ((start >> 20) + 1).saturating_mul(1 << 20).min(end)
                } else {
                    end
                };
                let pa = start & self.mode.a20_mask;
                if self
                    .emit_one(start, pa, piece_end - start, flags, 0)
                    .is_err()
                {
                    return;
                }
                start = piece_end;
            }
        }
    }
}
