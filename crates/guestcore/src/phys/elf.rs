//! ELF core files (QEMU `dump-guest-memory`, our own writer, `/proc/vmcore` copies) as
//! guest-physical memory.
//!
//! Headers are read with `object`'s low-level `read::elf` API because it gets PN_XNUM right
//! (`e_phnum == 0xffff`: the real count is section header 0's `sh_info`) — paging-mode cores of a
//! Linux guest have ~65k+ PT_LOADs, and higher-level readers (goblin) silently truncate them.
//!
//! Physical memory comes from PT_LOAD `p_paddr`/`p_memsz`; bytes past `p_filesz` read as zero.
//! Two rules make this work for paging-mode cores:
//!
//! * **Aliases.** Many PT_LOADs describe the same physical memory under different virtual
//!   addresses. The RAM map is built from the *distinct* physical ranges: where PT_LOADs overlap
//!   physically the first one (in program-header order) provides the bytes, later ones only fill
//!   what is still uncovered. This is one sorted interval set, O(n log n) for any n.
//! * **Not in the file.** A PT_LOAD with `p_filesz == 0` says "this mapping exists but its memory
//!   was not dumped" (MMIO, or filtered out). It is **not** RAM here: reading it is
//!   [`Error::NotInMemory`], rather than a page of invented zeros.
//!
//! The file is mapped read-only, so [`PhysMemory::slice`] borrows file bytes without copying.

use super::{map_file, InputMap, PhysMemory, RamMap};
use crate::addr::PhysRange;
use crate::format::ElfNote;
use crate::{Error, Result};
use object::elf::{ET_CORE, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[cfg(test)]
pub(crate) mod test_core;
#[cfg(test)]
mod tests;

pub use crate::format::elf::{EM_386, EM_X86_64};

/// One PT_LOAD program header, as the file has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ElfSegment {
    /// `p_vaddr`: the guest-virtual address the segment maps (0 in many vmcores).
    pub vaddr: u64,
    /// `p_paddr`: the guest-physical address of the segment's first byte.
    pub paddr: u64,
    /// `p_offset`: where the segment's bytes start in the file, in bytes.
    pub offset: u64,
    /// `p_filesz`: bytes of the segment stored in the file.
    pub filesz: u64,
    /// `p_memsz`: bytes the segment covers in guest memory (the part past `filesz` reads as zero).
    pub memsz: u64,
    /// `PF_X` / `PF_W` / `PF_R` bits.
    pub flags: u32,
}

/// One distinct physical range and where its bytes are: `file_len` bytes from `file_offset`,
/// the rest of the range reads as zero (`p_filesz < p_memsz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    range: PhysRange,
    file_offset: u64,
    file_len: u64,
}

/// An ELF core file mapped read-only.
#[derive(Debug)]
pub struct ElfCore {
    path: PathBuf,
    map: InputMap,
    /// The open file behind `map`, for [`PhysMemory::file_extent`].
    file: File,
    class: u8,
    machine: u16,
    segments: Vec<ElfSegment>,
    notes: Vec<ElfNote>,
    ram: RamMap,
    /// Parallel to `ram.ranges()`.
    chunks: Vec<Chunk>,
}

/// What the program headers say, before the RAM map is built.
struct Headers {
    machine: u16,
    segments: Vec<ElfSegment>,
    /// `(offset, filesz)` of each PT_NOTE.
    note_segments: Vec<(u64, u64)>,
}

impl ElfCore {
    /// Maps and parses the ELF core at `path` (ELF32 or ELF64, little-endian, `ET_CORE`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |what: String| Error::format(path, what);
        let (file, map) = map_file(path)?;
        let file_len = map.as_ref().map_or(0, |m| m.len() as u64);
        let Some(map) = map.filter(|_| file_len >= 16) else {
            return Err(bad(format!(
                "not an ELF file (only {file_len} bytes, shorter than an ELF identification)"
            )));
        };
        let data: &[u8] = &map;

        if data[..4] != object::elf::ELFMAG {
            return Err(bad("not an ELF file (bad magic)".into()));
        }
        if data[5] != object::elf::ELFDATA2LSB {
            return Err(bad(format!(
                "unsupported ELF data encoding {} (only little-endian cores are read)",
                data[5]
            )));
        }
        let (class, headers) = match data[4] {
            object::elf::ELFCLASS32 => (
                32,
                parse_headers::<object::elf::FileHeader32<LittleEndian>>(data, path)?,
            ),
            object::elf::ELFCLASS64 => (
                64,
                parse_headers::<object::elf::FileHeader64<LittleEndian>>(data, path)?,
            ),
            c => return Err(bad(format!("unknown ELF class {c}"))),
        };

        let mut notes = Vec::new();
        for (i, &(offset, filesz)) in headers.note_segments.iter().enumerate() {
            let bytes = file_bytes(data, offset, filesz).ok_or_else(|| {
                bad(format!(
                    "PT_NOTE {i} (offset {offset:#x}, size {filesz:#x}) runs past the end of the \
                     file ({file_len:#x} bytes)"
                ))
            })?;
            notes.extend(ElfNote::parse_all(bytes).map_err(|e| bad(format!("PT_NOTE {i}: {e}")))?);
        }

        let chunks = physical_chunks(&headers.segments);
        if chunks.is_empty() {
            return Err(bad(
                "no physical memory: no PT_LOAD segment has bytes in the file".into(),
            ));
        }
        check_amplification(&chunks, file_len).map_err(bad)?;
        // The headers and notes were read through the mapping: a file cut meanwhile read as
        // zeros.
        map.intact()?;
        let ram = RamMap::new(chunks.iter().map(|c| c.range).collect())
            .map_err(|e| bad(format!("inconsistent physical segments: {e}")))?;
        Ok(ElfCore {
            path: path.to_path_buf(),
            map,
            file,
            class,
            machine: headers.machine,
            segments: headers.segments,
            notes,
            ram,
            chunks,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// 32 or 64.
    pub fn class(&self) -> u8 {
        self.class
    }
    /// `e_machine` ([`EM_X86_64`], [`EM_386`], …).
    pub fn machine(&self) -> u16 {
        self.machine
    }
    /// Every PT_LOAD, in program-header order (including those with `p_filesz == 0`).
    pub fn segments(&self) -> &[ElfSegment] {
        &self.segments
    }
    /// The notes of every PT_NOTE, in file order.
    pub fn notes(&self) -> &[ElfNote] {
        &self.notes
    }
    /// The file bytes of a segment (its first `min(p_filesz, p_memsz)` bytes).
    pub fn segment_data(&self, seg: &ElfSegment) -> Option<&[u8]> {
        file_bytes(&self.map, seg.offset, seg.filesz.min(seg.memsz))
    }
}

/// `data[offset..offset + len]`, or `None` when it is not all inside `data`.
fn file_bytes(data: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

/// Reads the ELF header and program headers of one class; checks every segment against the file.
fn parse_headers<Elf: FileHeader<Endian = LittleEndian>>(
    data: &[u8],
    path: &Path,
) -> Result<Headers> {
    let bad = |what: String| Error::format(path, what);
    let header =
        Elf::parse(data).map_err(|e| bad(format!("truncated or invalid ELF header: {e}")))?;
    let endian = LittleEndian;
    let e_type = header.e_type(endian);
    if e_type != ET_CORE {
        return Err(bad(format!(
            "not a core file (e_type {e_type}, expected ET_CORE = {ET_CORE})"
        )));
    }
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| bad(format!("cannot read the program headers: {e}")))?;

    let file_len = data.len() as u64;
    let mut segments = Vec::new();
    let mut note_segments = Vec::new();
    for (i, ph) in phdrs.iter().enumerate() {
        let offset: u64 = ph.p_offset(endian).into();
        let filesz: u64 = ph.p_filesz(endian).into();
        match ph.p_type(endian) {
            PT_LOAD => {
                let seg = ElfSegment {
                    vaddr: ph.p_vaddr(endian).into(),
                    paddr: ph.p_paddr(endian).into(),
                    offset,
                    filesz,
                    memsz: ph.p_memsz(endian).into(),
                    flags: ph.p_flags(endian),
                };
                if seg.paddr.checked_add(seg.memsz).is_none() {
                    return Err(bad(format!(
                        "PT_LOAD {i}: physical range {:#x} + {:#x} overflows 64 bits",
                        seg.paddr, seg.memsz
                    )));
                }
                let present = seg.filesz.min(seg.memsz);
                if present > 0 && !matches!(offset.checked_add(present), Some(e) if e <= file_len) {
                    return Err(bad(format!(
                        "PT_LOAD {i} (offset {offset:#x}, filesz {:#x}) runs past the end of \
                         the file ({file_len:#x} bytes)",
                        seg.filesz
                    )));
                }
                segments.push(seg);
            }
            PT_NOTE => note_segments.push((offset, filesz)),
            _ => {}
        }
    }
    Ok(Headers {
        machine: header.e_machine(endian),
        segments,
        note_segments,
    })
}

/// RAM a core may describe beyond what its file holds before it is refused: every command
/// that reads all of RAM (a dump, `kernels`) would otherwise do work a hostile header can
/// make arbitrarily larger than the file.
const AMPLIFICATION_FREE: u64 = 16 << 30;
/// How many times the file size the described RAM may be, past [`AMPLIFICATION_FREE`].
const AMPLIFICATION_FACTOR: u64 = 64;

/// Refuses a core whose PT_LOADs describe far more RAM than the file holds: distinct physical
/// ranges that share file bytes, or `p_memsz` far past `p_filesz` (zero-filled tails). Real
/// cores (QEMU, /proc/vmcore, makedumpfile, ours) describe RAM with file bytes of its own.
fn check_amplification(chunks: &[Chunk], file_len: u64) -> std::result::Result<(), String> {
    let ram: u64 = chunks
        .iter()
        .map(|c| c.range.len())
        .fold(0, u64::saturating_add);
    let limit = AMPLIFICATION_FREE.max(file_len.saturating_mul(AMPLIFICATION_FACTOR));
    if ram > limit {
        let in_file: u64 = chunks
            .iter()
            .map(|c| c.file_len)
            .fold(0, u64::saturating_add);
        return Err(format!(
            "its PT_LOADs describe {ram:#x} bytes of physical memory ({in_file:#x} of them from file bytes, shared or not, the rest zero-filled past p_filesz) in a file of {file_len:#x} bytes: more than {AMPLIFICATION_FACTOR}× the file and {} GiB; refusing a core that would make every read of its RAM do that much work",
            AMPLIFICATION_FREE >> 30
        ));
    }
    Ok(())
}

/// The distinct physical ranges of `segments`, sorted; the first PT_LOAD covering a byte wins.
/// Segments with no file bytes are not memory. Neighbours that continue each other in the file
/// too are joined, so a paging-mode core's thousands of 4 KiB aliases become a few ranges.
fn physical_chunks(segments: &[ElfSegment]) -> Vec<Chunk> {
    // Covered physical space so far, as merged intervals start → end.
    let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
    let mut chunks = Vec::new();
    for seg in segments {
        let present = seg.filesz.min(seg.memsz);
        if present == 0 {
            continue;
        }
        let (start, end) = (seg.paddr, seg.paddr + seg.memsz);
        // Covered intervals touching [start, end]: possibly one starting before, then all
        // starting inside.
        let mut touching: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = covered.range(..start).next_back() {
            if e >= start {
                touching.push((s, e));
            }
        }
        touching.extend(covered.range(start..=end).map(|(&s, &e)| (s, e)));

        let mut cursor = start;
        let mut emit = |gap_start: u64, gap_end: u64| {
            let delta = gap_start - seg.paddr;
            chunks.push(Chunk {
                range: PhysRange {
                    start: gap_start,
                    end: gap_end,
                },
                file_offset: seg.offset + delta.min(present),
                file_len: present.saturating_sub(delta).min(gap_end - gap_start),
            });
        };
        for &(s, e) in &touching {
            if s > cursor {
                emit(cursor, s.min(end));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            emit(cursor, end);
        }

        let merged_start = touching.first().map_or(start, |t| t.0.min(start));
        let merged_end = touching.last().map_or(end, |t| t.1.max(end));
        for (s, _) in &touching {
            covered.remove(s);
        }
        covered.insert(merged_start, merged_end);
    }

    chunks.sort_by_key(|c| c.range.start);
    let mut joined: Vec<Chunk> = Vec::with_capacity(chunks.len());
    for c in chunks {
        if let Some(last) = joined.last_mut() {
            let fully_in_file = last.file_len == last.range.len();
            if fully_in_file
                && last.range.end == c.range.start
                && last.file_offset + last.file_len == c.file_offset
            {
                last.range.end = c.range.end;
                last.file_len += c.file_len;
                continue;
            }
        }
        joined.push(c);
    }
    joined
}

impl PhysMemory for ElfCore {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(s) = self.slice(addr, buf.len() as u64) {
            buf.copy_from_slice(s);
            return self.map.intact();
        }
        let total = buf.len() as u64;
        let not_in = || Error::NotInMemory { addr, len: total };
        let mut done = 0usize;
        while done < buf.len() {
            let Some(a) = addr.checked_add(done as u64) else {
                return Err(not_in());
            };
            let Some(i) = self.ram.index_of(a) else {
                return Err(not_in());
            };
            let c = &self.chunks[i];
            let n = usize::try_from(c.range.end - a)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let out = &mut buf[done..done + n];
            let in_range = a - c.range.start;
            // Bytes of this piece that are in the file; the rest is the zero tail.
            let from_file = c.file_len.saturating_sub(in_range).min(n as u64) as usize;
            if from_file > 0 {
                let src = file_bytes(&self.map, c.file_offset + in_range, from_file as u64)
                    .ok_or_else(not_in)?;
                out[..from_file].copy_from_slice(src);
            }
            out[from_file..].fill(0);
            done += n;
        }
        self.map.intact()
    }

    fn intact(&self) -> Result<()> {
        self.map.whole()
    }

    fn ram(&self) -> &RamMap {
        &self.ram
    }

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let c = &self.chunks[self.ram.index_of(addr)?];
        let in_range = addr - c.range.start;
        if in_range.checked_add(len)? > c.file_len {
            return None;
        }
        file_bytes(&self.map, c.file_offset + in_range, len)
    }

    fn file_extent(&self, addr: u64, len: u64) -> Option<(&File, u64)> {
        let c = &self.chunks[self.ram.index_of(addr)?];
        let in_range = addr - c.range.start;
        if in_range.checked_add(len)? > c.file_len {
            return None;
        }
        let offset = c.file_offset + in_range;
        (offset.checked_add(len)? <= self.map.len() as u64).then_some((&self.file, offset))
    }

    fn release(&self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        let mut a = addr;
        while a < end {
            let Some(i) = self.ram.index_of(a) else {
                return;
            };
            let c = &self.chunks[i];
            let in_range = a - c.range.start;
            let n = (c.range.end.min(end) - a).min(c.file_len.saturating_sub(in_range));
            super::release_mapped(&self.map, c.file_offset + in_range, n);
            a = c.range.end.min(end);
        }
    }
}
