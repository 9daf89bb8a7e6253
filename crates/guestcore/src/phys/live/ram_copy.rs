//! [`RamCopy`]: a private copy of a live guest's RAM, taken while it is paused, that a
//! dump writer borrows slices of after the guest runs again.

use crate::addr::PAGE_SIZE as PAGE;
use crate::phys::{is_zero, ChunkMemory, PhysMemory};
use crate::progress::Progress;
use crate::{Error, Result};
use memmap2::MmapMut;

/// A private copy of guest RAM taken at one moment: what a `--pause` dump writes after the
/// guest runs again. Zero pages are not copied (anonymous memory reads back as zeros without
/// costing RAM), so a mostly idle guest costs little host memory.
pub(crate) type RamCopy = ChunkMemory<MmapMut>;

/// Bytes copied per step of [`copy_ram`].
const SNAP_CHUNK: usize = 2 << 20;

/// Copies every RAM range of `mem` into private memory. Progress: `start("copy", bytes)`;
/// cancellable ([`Error::Cancelled`]).
pub(crate) fn copy_ram(mem: &dyn PhysMemory, progress: &dyn Progress) -> Result<RamCopy> {
    let ram = mem.ram().clone();
    progress.start("copy", ram.total());
    let mut chunks = Vec::with_capacity(ram.ranges().len());
    let mut scratch = vec![0u8; SNAP_CHUNK];
    for r in ram.ranges() {
        let len = usize::try_from(r.len()).map_err(|_| Error::Limit {
            bound: "address space",
            detail: format!("RAM range {r} is too large"),
        })?;
        let mut map = MmapMut::map_anon(len).map_err(|e| {
            Error::io(
                format!("allocating {} MiB for a copy of guest RAM", len >> 20),
                e,
            )
        })?;
        let mut off = 0usize;
        while off < len {
            if progress.cancelled() {
                progress.finish();
                return Err(Error::Cancelled);
            }
            let n = SNAP_CHUNK.min(len - off);
            let buf = &mut scratch[..n];
            mem.read_at(r.start + off as u64, buf)?;
            for (i, page) in buf.chunks(PAGE as usize).enumerate() {
                if !is_zero(page) {
                    let at = off + i * PAGE as usize;
                    map[at..at + page.len()].copy_from_slice(page);
                }
            }
            progress.advance(n as u64);
            off += n;
        }
        chunks.push(map);
    }
    progress.finish();
    Ok(ChunkMemory::from_chunks(ram, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn a_copy_keeps_zero_pages_zero() {
        let mut data = vec![0u8; 3 * SNAP_CHUNK + 123];
        data[5] = 1;
        data[SNAP_CHUNK + PAGE as usize * 3 + 7] = 2;
        let last = data.len() - 1;
        data[last] = 3;
        let src = crate::phys::VecMemory::flat(data.clone());
        let snap = copy_ram(&src, &NoProgress).unwrap();
        assert_eq!(snap.slice(0, data.len() as u64).unwrap(), &data[..]);
    }
}
