//! [`LiveMemory`]: the RAM of a running QEMU, each block read where it lives on the host (a
//! mapped shared backend file, or `/proc/PID/mem`), every read a copy (see [`super`]).

use super::copy::copy_from_live;
use super::{LiveAccess, LiveSource, SHARED_RAM_HINT};
use crate::addr::PhysRange;
use crate::phys::{map_shared_ram, PhysMemory, RamMap};
use crate::{Error, Result};
use memmap2::MmapRaw;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

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
                            maps.push((path.clone(), map_shared_ram(path)?));
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
                // `open` checked that the whole range lies inside the mapping.
                if copy_from_live(&self.maps[m].1, base + off, buf) {
                    Ok(())
                } else {
                    Err(Error::NotInMemory {
                        addr,
                        len: buf.len() as u64,
                    })
                }
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
        if buf.is_empty() {
            // Still an error outside RAM, as for any other read.
            return match self.ram.index_of(addr) {
                Some(_) => Ok(()),
                None => Err(Error::NotInMemory { addr, len: 0 }),
            };
        }
        self.ram
            .each_piece(addr, buf, |i, a, part| self.read_in_range(i, a, part))
    }
    fn ram(&self) -> &RamMap {
        &self.ram
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::live::copy_ram;
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

        let snap = copy_ram(&mem, &NoProgress).unwrap();
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
}
