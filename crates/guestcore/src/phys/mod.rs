//! Guest-physical memory sources.
//!
//! Every source (raw image, ELF core, kdump file, LiME/AVML image, live QEMU) answers three questions through
//! [`PhysMemory`]: read these bytes, which ranges are RAM, and is this whole range RAM. The walker
//! and the writers depend on nothing else, so a new source is one new file here.

pub(crate) mod holes;
mod mmap;
mod ram_map;

pub mod elf;
pub mod kdump;
pub mod layout;
pub mod lime;
pub mod live;
pub mod migration;
pub mod raw;

pub(crate) use mmap::map_file;
pub use ram_map::{RamMap, RamPiece};

pub(crate) use mmap::{map_shared_ram, release_mapped, InputMap};

use crate::addr::PhysRange;
use crate::{Error, Result};

/// Guest-physical memory.
///
/// Implementations must never panic on any address or length: an address outside guest memory is
/// [`Error::NotInMemory`].
pub trait PhysMemory: Send + Sync {
    /// Reads exactly `buf.len()` bytes starting at guest-physical `addr`.
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()>;

    /// The guest's RAM ranges (sorted, non-overlapping).
    fn ram(&self) -> &RamMap;

    /// True when every byte of `[addr, addr + len)` is guest RAM in this source.
    fn is_ram(&self, addr: u64, len: u64) -> bool {
        self.ram().contains(addr, len)
    }

    /// A borrowed view of `[addr, addr + len)` when the source holds those bytes contiguously in
    /// stable memory (a mapped file). `None` means "use [`read_at`](Self::read_at)": live memory,
    /// compressed pages, ranges crossing segments.
    fn slice(&self, _addr: u64, _len: u64) -> Option<&[u8]> {
        None
    }

    /// A hint that `[addr, addr + len)` will not be read again soon; writers call it after
    /// copying each chunk. Mapped sources drop those pages from the process's resident set
    /// (they stay in the page cache), so dumping a 16 GiB guest does not grow RSS to 16 GiB.
    /// Reads afterwards still work. Default: nothing.
    fn release(&self, _addr: u64, _len: u64) {}

    /// `Ok` while everything read from this source came from its input as it was opened; an
    /// [`Error::InputCut`] naming the file once the file was cut under its mapping (see
    /// `phys::mmap`) or is now shorter than what was opened. Passes over many pieces call it
    /// after each piece and writers before a dump is kept: bytes read since a cut are zeros
    /// that are not the file's. Costs an atomic load and an `fstat`. Default: `Ok`.
    fn intact(&self) -> Result<()> {
        Ok(())
    }

    /// The file that holds `[addr, addr + len)` contiguously, and the offset of `addr` in it,
    /// when the source is a plain file on disk (a raw image, an ELF core). Writers use it to let
    /// the kernel copy file to file (`copy_file_range`) instead of copying through this process.
    /// `None` (the default) means "copy the bytes from [`slice`](Self::slice) or
    /// [`read_at`](Self::read_at)". When `Some`, the file bytes must equal what `slice` lends.
    fn file_extent(&self, _addr: u64, _len: u64) -> Option<(&std::fs::File, u64)> {
        None
    }

    /// Calls `f` with each `[s, e)` of `[start, end)` that may hold non-zero bytes, in address
    /// order; bytes outside them read as zero, or are not RAM. Stops when `f` returns `false`
    /// and returns `false` then. Passes over all RAM (dumps, kernel scans, the page array) go
    /// through [`holes::for_each_data_run`], which calls this, so they cost what the source
    /// holds, not what its RAM map spans. Default: the data extents of the source's file
    /// ([`file_extent`](Self::file_extent), `SEEK_DATA`), else the whole range. A source that
    /// knows better (a migration file's page index) says so here.
    fn data_runs(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, u64) -> bool) -> bool {
        holes::file_data_runs(self, start, end, f)
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_at(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_at(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// `PhysMemory` for a pointer to a source (`Box<T>`, `&T`): every method, defaults included,
/// goes to the pointee, so a wrapped source keeps its own `slice`, `release` and `file_extent`.
macro_rules! forward_phys_memory {
    ($($ptr:ty),+) => {$(
        impl<T: PhysMemory + ?Sized> PhysMemory for $ptr {
            fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
                (**self).read_at(addr, buf)
            }
            fn ram(&self) -> &RamMap {
                (**self).ram()
            }
            fn is_ram(&self, addr: u64, len: u64) -> bool {
                (**self).is_ram(addr, len)
            }
            fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
                (**self).slice(addr, len)
            }
            fn release(&self, addr: u64, len: u64) {
                (**self).release(addr, len)
            }
            fn file_extent(&self, addr: u64, len: u64) -> Option<(&std::fs::File, u64)> {
                (**self).file_extent(addr, len)
            }
            fn data_runs(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, u64) -> bool) -> bool {
                (**self).data_runs(start, end, f)
            }
            fn intact(&self) -> Result<()> {
                (**self).intact()
            }
        }
    )+};
}

forward_phys_memory!(Box<T>, &T);

/// Guest memory held in this process, one buffer per RAM range: [`VecMemory`] (`Vec`s, for
/// tests and small tools) and `live::RamCopy` (anonymous mappings).
#[derive(Debug, Clone)]
pub struct ChunkMemory<B> {
    ram: RamMap,
    /// One buffer per RAM range, in the order of `ram.ranges()`, each as long as its range.
    chunks: Vec<B>,
}

/// Guest memory held in a `Vec` at a list of physical ranges; used by tests and small tools.
pub type VecMemory = ChunkMemory<Vec<u8>>;

impl<B: AsRef<[u8]>> ChunkMemory<B> {
    /// `chunks[i]` holds RAM range `i` of `ram` (same length).
    pub(crate) fn from_chunks(ram: RamMap, chunks: Vec<B>) -> Self {
        debug_assert!(ram
            .ranges()
            .iter()
            .zip(&chunks)
            .all(|(r, c)| r.len() == c.as_ref().len() as u64));
        ChunkMemory { ram, chunks }
    }
}

impl VecMemory {
    /// One flat block of RAM at physical 0.
    pub fn flat(bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        VecMemory {
            ram: RamMap::new(vec![PhysRange::new(0, len)]).expect("one range is valid"),
            chunks: vec![bytes],
        }
    }

    /// Blocks at given physical bases; fails when they overlap.
    pub fn from_blocks(mut blocks: Vec<(u64, Vec<u8>)>) -> Result<Self> {
        blocks.sort_by_key(|b| b.0);
        let ranges = blocks
            .iter()
            .map(|(base, b)| PhysRange::new(*base, b.len() as u64))
            .collect();
        Ok(VecMemory {
            ram: RamMap::new(ranges)?,
            chunks: blocks.into_iter().map(|b| b.1).collect(),
        })
    }
}

impl<B: AsRef<[u8]> + Send + Sync> PhysMemory for ChunkMemory<B> {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        read_via_slice(self, addr, buf)
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let (i, off) = self.ram.locate(addr, len)?;
        self.chunks[i]
            .as_ref()
            .get(off as usize..(off + len) as usize)
    }
}

/// `read_at` for sources that lend slices: one copy from [`PhysMemory::slice`] when the bytes
/// lie in one RAM range, [`read_piecewise`] when they cross adjacent ranges.
pub(crate) fn read_via_slice<M: PhysMemory + ?Sized>(
    mem: &M,
    addr: u64,
    buf: &mut [u8],
) -> Result<()> {
    match mem.slice(addr, buf.len() as u64) {
        Some(s) => {
            buf.copy_from_slice(s);
            Ok(())
        }
        None => read_piecewise(mem, addr, buf),
    }
}

/// Reads `buf` range by range through [`PhysMemory::slice`], for reads that cross the boundary of
/// two adjacent RAM ranges. Fails with [`Error::NotInMemory`] at the first byte not in RAM.
pub(crate) fn read_piecewise<M: PhysMemory + ?Sized>(
    mem: &M,
    addr: u64,
    buf: &mut [u8],
) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len() as u64;
    mem.ram().each_piece(addr, buf, |_, a, part| {
        let s = mem
            .slice(a, part.len() as u64)
            .ok_or(Error::NotInMemory { addr, len })?;
        part.copy_from_slice(s);
        Ok(())
    })
}

/// Reads of at least this many bytes go through the source's file when it has one.
const BULK_READ: usize = 64 << 10;

/// [`PhysMemory::read_at`] for large sequential reads (the page array, a window at a time):
/// from the source's file with `pread` when the bytes lie in it ([`PhysMemory::file_extent`]),
/// which costs one kernel copy and leaves nothing mapped, where reading through the mapping
/// costs page faults and, to keep memory bounded, unmapping afterwards. Smaller reads, and
/// sources without a file, use `read_at`.
pub(crate) fn read_bulk<M: PhysMemory + ?Sized>(mem: &M, addr: u64, buf: &mut [u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    if buf.len() >= BULK_READ {
        if let Some((file, offset)) = mem.file_extent(addr, buf.len() as u64) {
            return file.read_exact_at(buf, offset).map_err(|e| {
                // A file cut under us reads short: say so, naming it.
                mem.intact().err().unwrap_or_else(|| {
                    Error::io(format!("reading {:#x} of the source's file", addr), e)
                })
            });
        }
    }
    mem.read_at(addr, buf)
}

/// True when every byte is zero. ORs 32 words at a time without an early exit inside the
/// block, which the compiler turns into vector code; stops at the first non-zero block.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(256);
    for block in &mut blocks {
        let mut acc = 0u64;
        for w in block.chunks_exact(8) {
            acc |= u64::from_ne_bytes(w.try_into().expect("8-byte chunk"));
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}
