//! LiME memory images and AVML's snappy-compressed variant, mapped read-only, as
//! [`PhysMemory`].
//!
//! The file format (ranges, each a 32-byte header and its data, raw for LiME, a snappy framed
//! stream for AVML) is in [`crate::format::lime`] and [`crate::format::avml`]. AVML leaves out
//! all-zero blocks, so RAM that was zero can be a hole here: a read there is
//! [`Error::NotInMemory`], as for any hole in a source.
//!
//! LiME ranges are lent in place like a raw image ([`PhysMemory::slice`],
//! [`PhysMemory::file_extent`]). AVML ranges are never decompressed whole: opening scans the
//! chunk headers (each compressed chunk's uncompressed length is the varint that starts its raw
//! snappy payload) into an index from guest-physical address to chunk, and a read decompresses
//! the chunks it needs, through `snap`'s frame decoder so each chunk's CRC is checked, keeping
//! the last chunk per thread. Every count comes from the file and is bounded by its length or by
//! [`MAX_RANGES`]; no malformed input panics.

use super::{map_file, InputMap, PhysMemory, RamMap};
use crate::addr::PhysRange;
use crate::format::avml::{
    AVML_MAGIC, AVML_VERSION, CHUNK_COMPRESSED, CHUNK_HEADER_LEN, CHUNK_STREAM_IDENTIFIER,
    CHUNK_UNCOMPRESSED, CRC_LEN, MAX_CHUNK, STREAM_IDENTIFIER, TRAILER_LEN,
};
use crate::format::lime::{RangeHeader, HEADER_LEN, LIME_MAGIC, LIME_VERSION};
use crate::{Error, Result};
use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(test)]
mod tests;

/// Most ranges a file may have. AVML cuts ranges at 16 MiB, so this is 4 TiB of RAM in
/// AVML's cutting; the index costs a few dozen bytes a range.
pub const MAX_RANGES: usize = 1 << 18;
/// Guest-physical addresses end below 2^52 (the x86 architectural limit).
pub const PHYS_LIMIT: u64 = 1 << 52;
/// Where one RAM range's bytes are in the file.
#[derive(Debug, Clone)]
enum Backing {
    /// LiME: the bytes, uncompressed, at this file offset.
    Plain { offset: u64 },
    /// AVML: these entries of [`LimeImage::chunks`].
    Compressed { chunks: std::ops::Range<usize> },
}

/// One snappy frame chunk that holds data.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Guest-physical address of its first uncompressed byte.
    phys: u64,
    /// File offset of its 4-byte chunk header.
    offset: u64,
    /// Length of the chunk after its header (CRC and payload).
    len: u32,
    /// Uncompressed bytes (1..=64 KiB).
    ulen: u32,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.phys + u64::from(self.ulen)
    }
}

/// Distinguishes sources in the per-thread chunk cache.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The last chunk this thread decompressed.
struct Cached {
    source: u64,
    chunk: usize,
    data: Vec<u8>,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// A LiME or AVML memory image.
#[derive(Debug)]
pub struct LimeImage {
    path: PathBuf,
    map: InputMap,
    /// The open file behind `map`, for [`PhysMemory::file_extent`].
    file: File,
    ram: RamMap,
    /// One per RAM range, in the order of `ram.ranges()`.
    backing: Vec<Backing>,
    /// The chunks of every compressed range, each range's in address order.
    chunks: Vec<Chunk>,
    compressed: bool,
    id: u64,
}

impl LimeImage {
    /// Maps `path` and reads its range headers (and the chunk headers of compressed ranges).
    /// Any structural fault is an [`Error::Format`] naming its file offset.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, map) = map_file(path)?;
        let Some(map) = map else {
            return Err(Error::format(path, "empty file: no LiME range header"));
        };
        let mut parser = Parser {
            path,
            map: &map,
            chunks: Vec::new(),
        };
        let mut pieces = parser.ranges()?;
        let chunks = parser.chunks;

        pieces.sort_by_key(|p| p.range.start);
        for w in pieces.windows(2) {
            if w[1].range.start < w[0].range.end {
                return Err(Error::format(
                    path,
                    format!(
                        "ranges overlap: {} (header at offset {:#x}) and {} (header at offset \
                         {:#x})",
                        w[0].range, w[0].header, w[1].range, w[1].header
                    ),
                ));
            }
        }
        // The headers were read through the mapping: a file cut meanwhile read as zeros.
        map.intact()?;
        let ram = RamMap::new(pieces.iter().map(|p| p.range).collect())?;
        let compressed = pieces
            .iter()
            .any(|p| matches!(p.backing, Backing::Compressed { .. }));
        Ok(LimeImage {
            path: path.to_path_buf(),
            map,
            file,
            ram,
            backing: pieces.into_iter().map(|p| p.backing).collect(),
            chunks,
            compressed,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when any range is AVML-compressed.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// Number of range headers in the file.
    pub fn range_count(&self) -> usize {
        self.backing.len()
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.map.get(start..end)
    }

    /// Range `i` holds `[addr, addr + len)` entirely: its backing.
    fn whole(&self, addr: u64, len: u64) -> Option<(PhysRange, &Backing)> {
        let i = self.ram.index_of(addr)?;
        let r = self.ram.ranges()[i];
        (addr.checked_add(len)? <= r.end).then(|| (r, &self.backing[i]))
    }

    /// Copies `out.len()` bytes at `addr` out of the compressed chunks `chunks`, which hold
    /// them (the caller keeps the read inside one range).
    fn read_compressed(
        &self,
        chunks: &std::ops::Range<usize>,
        addr: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let list = &self.chunks[chunks.clone()];
        let mut done = 0usize;
        while done < out.len() {
            let a = addr + done as u64;
            let k = list.partition_point(|c| c.end() <= a);
            let c = list
                .get(k)
                .filter(|c| c.phys <= a)
                .ok_or(Error::NotInMemory {
                    addr,
                    len: out.len() as u64,
                })?;
            let off = (a - c.phys) as usize;
            let n = (c.ulen as usize - off).min(out.len() - done);
            self.with_chunk(chunks.start + k, |data| {
                out[done..done + n].copy_from_slice(&data[off..off + n]);
            })?;
            done += n;
        }
        Ok(())
    }

    /// Runs `f` on the uncompressed bytes of chunk `k`, from this thread's cache or freshly
    /// decompressed (CRC checked).
    fn with_chunk(&self, k: usize, f: impl FnOnce(&[u8])) -> Result<()> {
        CACHE.with_borrow_mut(|cache| {
            if let Some(c) = cache.as_ref() {
                if c.source == self.id && c.chunk == k {
                    f(&c.data);
                    return Ok(());
                }
            }
            let mut data = cache.take().map(|c| c.data).unwrap_or_default();
            self.decompress(k, &mut data)?;
            f(&data);
            *cache = Some(Cached {
                source: self.id,
                chunk: k,
                data,
            });
            Ok(())
        })
    }

    fn decompress(&self, k: usize, data: &mut Vec<u8>) -> Result<()> {
        let c = self.chunks[k];
        let raw = self
            .bytes(c.offset, CHUNK_HEADER_LEN + u64::from(c.len))
            .expect("chunks lie inside the file (checked by the scan)");
        data.clear();
        data.resize(c.ulen as usize, 0);
        // One chunk behind a stream identifier is a whole framed stream: snap's frame decoder
        // checks its type, length and CRC-32C for us.
        let mut dec = snap::read::FrameDecoder::new(STREAM_IDENTIFIER.chain(raw));
        dec.read_exact(data).map_err(|e| {
            Error::format(
                &self.path,
                format!(
                    "corrupt snappy chunk at file offset {:#x} (guest-physical {:#x}): {e}",
                    c.offset, c.phys
                ),
            )
        })
    }
}

impl PhysMemory for LimeImage {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let missing = Error::NotInMemory {
            addr,
            len: buf.len() as u64,
        };
        let mut done = 0usize;
        while done < buf.len() {
            let Some(a) = addr.checked_add(done as u64) else {
                return Err(missing);
            };
            let Some(i) = self.ram.index_of(a) else {
                return Err(missing);
            };
            let r = self.ram.ranges()[i];
            let n = ((r.end - a) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match &self.backing[i] {
                Backing::Plain { offset } => {
                    let src = self
                        .bytes(offset + (a - r.start), n as u64)
                        .expect("LiME ranges lie inside the file (checked at open)");
                    out.copy_from_slice(src);
                }
                Backing::Compressed { chunks } => self.read_compressed(chunks, a, out)?,
            }
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
        match self.whole(addr, len)? {
            (r, Backing::Plain { offset }) => self.bytes(offset + (addr - r.start), len),
            (_, Backing::Compressed { .. }) => None,
        }
    }

    fn file_extent(&self, addr: u64, len: u64) -> Option<(&File, u64)> {
        match self.whole(addr, len)? {
            (r, Backing::Plain { offset }) => {
                let offset = offset + (addr - r.start);
                (offset.checked_add(len)? <= self.file_len()).then_some((&self.file, offset))
            }
            (_, Backing::Compressed { .. }) => None,
        }
    }

    fn release(&self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        let Some(mut i) = self.ram.index_of(addr) else {
            return;
        };
        while let Some(&r) = self.ram.ranges().get(i) {
            if r.start >= end {
                break;
            }
            let a = addr.max(r.start);
            let b = end.min(r.end);
            match &self.backing[i] {
                Backing::Plain { offset } => {
                    super::release_mapped(&self.map, offset + (a - r.start), b - a)
                }
                Backing::Compressed { chunks } => {
                    let list = &self.chunks[chunks.clone()];
                    let first = list.partition_point(|c| c.end() <= a);
                    let last = list.partition_point(|c| c.phys < b);
                    if first < last {
                        let from = list[first].offset;
                        let to = list[last - 1].offset
                            + CHUNK_HEADER_LEN
                            + u64::from(list[last - 1].len);
                        super::release_mapped(&self.map, from, to - from);
                    }
                }
            }
            i += 1;
        }
    }
}

/// One range as read from its header.
struct Piece {
    range: PhysRange,
    /// File offset of its header, for messages.
    header: u64,
    backing: Backing,
}

/// Walks the headers of a mapped file.
struct Parser<'a> {
    path: &'a Path,
    map: &'a [u8],
    chunks: Vec<Chunk>,
}

impl Parser<'_> {
    fn err(&self, what: String) -> Error {
        Error::format(self.path, what)
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// `map[offset..offset + len]`, `None` past the end of the file.
    fn get(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.map.get(start..end)
    }

    fn u64_at(&self, offset: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.get(offset, 8)?.try_into().ok()?))
    }

    /// Every range of the file, in file order.
    fn ranges(&mut self) -> Result<Vec<Piece>> {
        let mut pieces = Vec::new();
        let mut off = 0u64;
        while off < self.len() {
            if pieces.len() == MAX_RANGES {
                return Err(self.err(format!(
                    "more than {MAX_RANGES} ranges (the next header is at offset {off:#x})"
                )));
            }
            let Some(h) = self.get(off, HEADER_LEN) else {
                return Err(self.err(format!(
                    "{} bytes at offset {off:#x}: too short for a range header (truncated \
                     file or trailing garbage)",
                    self.len() - off
                )));
            };
            let RangeHeader {
                magic,
                version,
                first,
                last,
            } = RangeHeader::decode(h).expect("a whole header");
            let compressed = match (magic, version) {
                (LIME_MAGIC, LIME_VERSION) => false,
                (AVML_MAGIC, AVML_VERSION) => true,
                (LIME_MAGIC, v) => {
                    return Err(self.err(format!(
                        "LiME header at offset {off:#x} has version {v}; only {LIME_VERSION} is \
                         known"
                    )))
                }
                (AVML_MAGIC, v) => {
                    return Err(self.err(format!(
                        "AVML header at offset {off:#x} has version {v}; only {AVML_VERSION} is \
                         known"
                    )))
                }
                (m, _) => {
                    return Err(self.err(format!(
                        "bad magic {m:#010x} at offset {off:#x}: not a LiME or AVML range header \
                         (trailing garbage or a corrupt file)"
                    )))
                }
            };
            if last < first {
                return Err(self.err(format!(
                    "range header at offset {off:#x}: last address {last:#x} is below the first \
                     {first:#x}"
                )));
            }
            if last >= PHYS_LIMIT {
                return Err(self.err(format!(
                    "range header at offset {off:#x}: address {last:#x} is past 2^52, the x86 \
                     physical address limit"
                )));
            }
            let size = last - first + 1;
            let range = PhysRange::new(first, size);
            let data = off + HEADER_LEN;
            let (backing, next) = if compressed {
                let from = self.chunks.len();
                let end = self.scan_stream(off, data, first, size)?;
                let Some(stored) = self.u64_at(end) else {
                    return Err(self.err(format!(
                        "AVML range {range} (header at offset {off:#x}): the file ends before \
                         its compressed-size trailer"
                    )));
                };
                if stored != end - data {
                    return Err(self.err(format!(
                        "AVML range {range} (header at offset {off:#x}): its trailer says \
                         {stored} compressed bytes, its snappy stream has {}",
                        end - data
                    )));
                }
                let chunks = from..self.chunks.len();
                (Backing::Compressed { chunks }, end + TRAILER_LEN)
            } else {
                if size > self.len() - data {
                    return Err(self.err(format!(
                        "LiME range {range} (header at offset {off:#x}) has {size:#x} bytes of \
                         data but the file ends {:#x} bytes after its header",
                        self.len() - data
                    )));
                }
                (Backing::Plain { offset: data }, data + size)
            };
            pieces.push(Piece {
                range,
                header: off,
                backing,
            });
            off = next;
        }
        Ok(pieces)
    }

    /// Indexes the snappy frames of the AVML range whose header is at `header` and data at
    /// `data`: chunks until `size` bytes are accounted for. Returns the offset past its last
    /// chunk. Each step moves at least 4 bytes along the file, so the scan ends.
    fn scan_stream(&mut self, header: u64, data: u64, phys: u64, size: u64) -> Result<u64> {
        let mut at = data;
        let mut produced = 0u64;
        let mut first = true;
        let max_body = snap::raw::max_compress_len(MAX_CHUNK) as u64 + CRC_LEN;
        let here =
            |at: u64| format!("snappy chunk at offset {at:#x} (range header at {header:#x})");
        while produced < size {
            let Some(h) = self.get(at, CHUNK_HEADER_LEN) else {
                return Err(self.err(format!(
                    "AVML range at offset {header:#x}: its compressed data runs past the end of \
                     the file ({produced:#x} of {size:#x} bytes found)"
                )));
            };
            let ty = h[0];
            let len = u64::from(u32::from_le_bytes([h[1], h[2], h[3], 0]));
            let Some(body) = self.get(at + CHUNK_HEADER_LEN, len) else {
                return Err(self.err(format!(
                    "{}: its {len} bytes run past the end of the file",
                    here(at)
                )));
            };
            if first && ty != CHUNK_STREAM_IDENTIFIER {
                return Err(self.err(format!(
                    "{}: the stream does not start with a snappy stream identifier (chunk type \
                     {ty:#04x})",
                    here(at)
                )));
            }
            first = false;
            let ulen = match ty {
                CHUNK_STREAM_IDENTIFIER if body == &STREAM_IDENTIFIER[4..] => 0,
                CHUNK_STREAM_IDENTIFIER => {
                    return Err(self.err(format!("{}: bad stream identifier", here(at))))
                }
                CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED if len < CRC_LEN => {
                    return Err(self.err(format!("{}: {len} bytes is too short", here(at))))
                }
                CHUNK_COMPRESSED if len > max_body => {
                    return Err(self.err(format!(
                        "{}: {len} compressed bytes is more than a 64 KiB chunk can take",
                        here(at)
                    )))
                }
                CHUNK_COMPRESSED => snap::raw::decompress_len(&body[CRC_LEN as usize..])
                    .map_err(|e| self.err(format!("{}: bad uncompressed length: {e}", here(at))))?
                    as u64,
                CHUNK_UNCOMPRESSED => len - CRC_LEN,
                0x02..=0x7f => {
                    return Err(self.err(format!(
                        "{}: reserved unskippable chunk type {ty:#04x}",
                        here(at)
                    )))
                }
                // Padding and reserved skippable chunks.
                _ => 0,
            };
            if ulen > MAX_CHUNK as u64 {
                return Err(self.err(format!(
                    "{}: claims {ulen} uncompressed bytes, more than the 64 KiB a chunk may hold",
                    here(at)
                )));
            }
            if ulen > size - produced {
                return Err(self.err(format!(
                    "{}: the snappy stream holds more than the range's {size:#x} bytes",
                    here(at)
                )));
            }
            if ulen > 0 {
                self.chunks.push(Chunk {
                    phys: phys + produced,
                    offset: at,
                    len: len as u32,
                    ulen: ulen as u32,
                });
            }
            produced += ulen;
            at += CHUNK_HEADER_LEN + len;
        }
        Ok(at)
    }
}
