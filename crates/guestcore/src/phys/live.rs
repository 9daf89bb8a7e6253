//! The RAM of a running QEMU, read in place.
//!
//! Two ways in, chosen per RAM block by [`crate::qmp::live`]:
//!
//! * **shared file** — a `memory-backend-file` with `share=on`: the file *is* guest RAM, so it
//!   is mapped read-only ([`MmapRaw`]) and copied out through raw pointers;
//! * **process memory** — anonymous RAM: `pread` on `/proc/PID/mem` of the QEMU process at
//!   the host virtual address HMP `gpa2hva` reported (needs ptrace rights on QEMU: same user
//!   and Yama `ptrace_scope` ≤ 1 with CAP_SYS_PTRACE, or root).
//!
//! A running guest changes its RAM under us, so no `&[u8]` is ever formed over it
//! ([`PhysMemory::slice`] is `None`): every read is a copy into the caller's buffer, as
//! rust-vmm's vm-memory does. [`snapshot`] copies all of it once into private memory, which a
//! dump writer can then borrow while the guest runs again.

use super::{read_via_slice, PhysMemory, RamMap};
use crate::addr::PhysRange;
use crate::progress::Progress;
use crate::{Error, Result};
use memmap2::{MmapMut, MmapOptions, MmapRaw};
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The QEMU options that make guest RAM readable by another process.
pub const SHARED_RAM_HINT: &str = "start QEMU with `-object memory-backend-file,id=mem,share=on,mem-path=FILE,size=SIZE -machine memory-backend=mem` (SIZE = -m), or run guestcore as a user allowed to ptrace QEMU";

/// Where one piece of guest RAM lives on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveSource {
    /// At `offset` in a shared memory-backend file.
    File { path: PathBuf, offset: u64 },
    /// At host virtual address `hva` in the QEMU process.
    Process { hva: u64 },
}

/// How a live source reads guest RAM (for `info` and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveAccess {
    /// Every block through a mapped shared memory-backend file.
    SharedFile,
    /// Every block through `/proc/PID/mem`.
    ProcessMemory,
    /// Some blocks each way.
    Mixed,
}

#[derive(Debug)]
enum Piece {
    /// Index into `maps`, offset in that map.
    Map(usize, u64),
    /// Host virtual address in the QEMU process.
    Proc(u64),
}

/// Guest RAM of a running QEMU. Every read is a copy (see the module docs).
#[derive(Debug)]
pub struct LiveMemory {
    ram: RamMap,
    /// One per RAM range, in the order of `ram.ranges()`.
    pieces: Vec<Piece>,
    maps: Vec<(PathBuf, MmapRaw)>,
    proc_mem: Option<(u32, File)>,
}

impl LiveMemory {
    /// Opens the host side of each guest RAM range. `pid` (QEMU's) is needed when any piece is
    /// [`LiveSource::Process`]. Fails, naming the QEMU options to add, when the memory cannot be
    /// read.
    pub fn open(ranges: Vec<(PhysRange, LiveSource)>, pid: Option<u32>) -> Result<Self> {
        let mut ranges = ranges;
        ranges.retain(|r| !r.0.is_empty());
        ranges.sort_by_key(|r| r.0.start);
        let ram = RamMap::new(ranges.iter().map(|r| r.0).collect())?;
        let mut maps: Vec<(PathBuf, MmapRaw)> = Vec::new();
        let mut proc_mem = None;
        let mut pieces = Vec::with_capacity(ranges.len());
        for (phys, src) in &ranges {
            match src {
                LiveSource::File { path, offset } => {
                    let i = match maps.iter().position(|m| &m.0 == path) {
                        Some(i) => i,
                        None => {
                            maps.push((path.clone(), map_file(path)?));
                            maps.len() - 1
                        }
                    };
                    let len = maps[i].1.len() as u64;
                    if !matches!(offset.checked_add(phys.len()), Some(end) if end <= len) {
                        return Err(Error::Unsupported(format!(
                            "{}: {len} bytes, but guest RAM {phys} needs offset {offset:#x}..{:#x}",
                            path.display(),
                            offset.saturating_add(phys.len())
                        )));
                    }
                    pieces.push(Piece::Map(i, *offset));
                }
                LiveSource::Process { hva } => {
                    if proc_mem.is_none() {
                        let pid = pid.ok_or_else(|| {
                            Error::Unsupported(format!(
                                "guest RAM is anonymous and the QEMU pid is unknown: {SHARED_RAM_HINT}"
                            ))
                        })?;
                        proc_mem = Some((pid, open_proc_mem(pid)?));
                    }
                    pieces.push(Piece::Proc(*hva));
                }
            }
        }
        let mem = LiveMemory {
            ram,
            pieces,
            maps,
            proc_mem,
        };
        // Prove every range readable now, so the error comes before any output exists.
        let mut b = [0u8; 8];
        for r in mem.ram.ranges() {
            mem.read_at(r.start, &mut b)?;
        }
        Ok(mem)
    }

    /// How the RAM is read.
    pub fn access(&self) -> LiveAccess {
        let files = self
            .pieces
            .iter()
            .filter(|p| matches!(p, Piece::Map(..)))
            .count();
        match files {
            n if n == self.pieces.len() => LiveAccess::SharedFile,
            0 => LiveAccess::ProcessMemory,
            _ => LiveAccess::Mixed,
        }
    }

    fn read_in_range(&self, i: usize, addr: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.ram.ranges()[i];
        let off = addr - r.start;
        match self.pieces[i] {
            Piece::Map(m, base) => {
                let map = &self.maps[m].1;
                let start = (base + off) as usize;
                debug_assert!(start + buf.len() <= map.len());
                // SAFETY: `open` checked that the whole range lies inside the mapping, which
                // lives as long as `self`. The mapping is read-only and the guest may write
                // the bytes concurrently, so no reference to them is formed: this is a plain
                // byte copy from the raw mapping into `buf`, which does not overlap it. The
                // file is QEMU's RAM backend; QEMU never truncates it while running (a file
                // truncated by someone else would raise SIGBUS, as with any mapped file).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        map.as_ptr().add(start),
                        buf.as_mut_ptr(),
                        buf.len(),
                    );
                }
                Ok(())
            }
            Piece::Proc(hva) => {
                let (pid, file) = self.proc_mem.as_ref().expect("opened with a Proc piece");
                file.read_exact_at(buf, hva + off).map_err(|e| {
                    Error::io(
                        format!(
                            "reading guest-physical {addr:#x} (+{:#x}) from /proc/{pid}/mem (did QEMU exit?)",
                            buf.len()
                        ),
                        e,
                    )
                })
            }
        }
    }
}

impl PhysMemory for LiveMemory {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() || (buf.is_empty() && done == 0) {
            let a = addr.checked_add(done as u64);
            let i = a
                .and_then(|a| self.ram.index_of(a))
                .ok_or(Error::NotInMemory {
                    addr,
                    len: buf.len() as u64,
                })?;
            if buf.is_empty() {
                return Ok(());
            }
            let a = a.expect("checked above");
            let r = self.ram.ranges()[i];
            let n = ((r.end - a) as usize).min(buf.len() - done);
            if done + n < buf.len() && self.ram.ranges().get(i + 1).map(|x| x.start) != Some(r.end)
            {
                return Err(Error::NotInMemory {
                    addr,
                    len: buf.len() as u64,
                });
            }
            self.read_in_range(i, a, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
}

fn map_file(path: &PathBuf) -> Result<MmapRaw> {
    let file = File::open(path).map_err(|e| {
        Error::io(
            format!("{}: open the guest's memory-backend file", path.display()),
            e,
        )
    })?;
    // MAP_POPULATE: fault the whole file in now, while the guest still runs, not during the
    // pause (a cold 1 GiB backend costs seconds of page faults on the first pass).
    MmapOptions::new()
        .populate()
        .map_raw_read_only(&file)
        .map_err(|e| Error::io(format!("{}: mmap", path.display()), e))
}

fn open_proc_mem(pid: u32) -> Result<File> {
    let p = format!("/proc/{pid}/mem");
    let f = File::open(&p).map_err(|e| {
        Error::Unsupported(format!(
            "guest RAM is anonymous and {p} cannot be opened ({e}): {SHARED_RAM_HINT}"
        ))
    })?;
    // Opening can succeed where reading is refused (ptrace checks happen at read time).
    Ok(f)
}

/// A private copy of guest RAM taken at one moment: what a `--pause` dump writes after the
/// guest runs again. Zero pages are not copied (anonymous memory reads back as zeros without
/// costing RAM), so a mostly idle guest costs little host memory.
#[derive(Debug)]
pub struct SnapshotMemory {
    ram: RamMap,
    /// One anonymous mapping per RAM range.
    chunks: Vec<MmapMut>,
}

/// Bytes copied per step of [`snapshot`].
const SNAP_CHUNK: usize = 2 << 20;
const PAGE: usize = 4096;

/// Copies every RAM range of `mem` into private memory. Progress: `start("snapshot", bytes)`;
/// cancellable ([`Error::Cancelled`]).
pub fn snapshot(mem: &dyn PhysMemory, progress: &dyn Progress) -> Result<SnapshotMemory> {
    let ram = mem.ram().clone();
    progress.start("snapshot", ram.total());
    let mut chunks = Vec::with_capacity(ram.ranges().len());
    let mut scratch = vec![0u8; SNAP_CHUNK];
    for r in ram.ranges() {
        let len = usize::try_from(r.len())
            .map_err(|_| Error::Unsupported(format!("RAM range {r} is too large")))?;
        let mut map = MmapMut::map_anon(len).map_err(|e| {
            Error::io(
                format!("allocating {} MiB for a snapshot of guest RAM", len >> 20),
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
            for (i, page) in buf.chunks(PAGE).enumerate() {
                if !super::is_zero(page) {
                    let at = off + i * PAGE;
                    map[at..at + page.len()].copy_from_slice(page);
                }
            }
            progress.advance(n as u64);
            off += n;
        }
        chunks.push(map);
    }
    progress.finish();
    Ok(SnapshotMemory { ram, chunks })
}

impl PhysMemory for SnapshotMemory {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        read_via_slice(self, addr, buf)
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let i = self.ram.index_of(addr)?;
        let r = self.ram.ranges()[i];
        if addr.checked_add(len)? > r.end {
            return None;
        }
        let off = (addr - r.start) as usize;
        Some(&self.chunks[i][off..off + len as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use std::io::Write;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn shared_file_pieces_and_holes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data = pattern(0x30000, 3);
        f.write_all(&data).unwrap();
        let path = f.path().to_path_buf();
        let file = |offset| LiveSource::File {
            path: path.clone(),
            offset,
        };
        // Low RAM with a hole, a piece above it, like pc's split around the PCI hole.
        let mem = LiveMemory::open(
            vec![
                (PhysRange::new(0x10000, 0x10000), file(0x10000)),
                (PhysRange::new(0, 0x8000), file(0)),
                (PhysRange::new(0x1_0000_0000, 0x10000), file(0x20000)),
            ],
            None,
        )
        .unwrap();
        assert_eq!(mem.access(), LiveAccess::SharedFile);
        let mut b = vec![0u8; 0x100];
        mem.read_at(0x7f00, &mut b).unwrap();
        assert_eq!(b, data[0x7f00..0x8000]);
        assert!(
            mem.read_at(0x7f01, &mut b).is_err(),
            "crosses into the hole"
        );
        mem.read_at(0x1_0000_0010, &mut b).unwrap();
        assert_eq!(b, data[0x20010..0x20110]);
        assert!(mem.slice(0, 8).is_none(), "never a slice over live memory");
        assert!(mem.read_at(u64::MAX - 3, &mut b).is_err());
        mem.read_at(0, &mut []).unwrap();

        let snap = snapshot(&mem, &NoProgress).unwrap();
        assert_eq!(snap.ram(), mem.ram());
        assert_eq!(
            snap.slice(0x10000, 0x10000).unwrap(),
            &data[0x10000..0x20000]
        );

        // A piece past the end of the file is refused at open.
        let e = LiveMemory::open(vec![(PhysRange::new(0, 0x40000), file(0))], None).unwrap_err();
        assert!(e.to_string().contains("needs offset"), "{e}");
    }

    #[test]
    fn process_memory_of_ourselves() {
        let data = pattern(0x5000, 9);
        let hva = data.as_ptr() as u64;
        let mem = LiveMemory::open(
            vec![(
                PhysRange::new(0x100000, 0x5000),
                LiveSource::Process { hva },
            )],
            Some(std::process::id()),
        )
        .unwrap();
        assert_eq!(mem.access(), LiveAccess::ProcessMemory);
        let mut b = vec![0u8; 0x5000];
        mem.read_at(0x100000, &mut b).unwrap();
        assert_eq!(b, data);
        let e = LiveMemory::open(
            vec![(PhysRange::new(0, 0x1000), LiveSource::Process { hva })],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("memory-backend-file"), "{e}");
    }

    #[test]
    fn snapshot_keeps_zero_pages_zero() {
        let mut data = vec![0u8; 3 * SNAP_CHUNK + 123];
        data[5] = 1;
        data[SNAP_CHUNK + PAGE * 3 + 7] = 2;
        let last = data.len() - 1;
        data[last] = 3;
        let src = crate::phys::VecMemory::flat(data.clone());
        let snap = snapshot(&src, &NoProgress).unwrap();
        assert_eq!(snap.slice(0, data.len() as u64).unwrap(), &data[..]);
    }
}
