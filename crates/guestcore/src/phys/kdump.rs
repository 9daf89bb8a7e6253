//! Reading kdump-compressed ("diskdump") files, plain or in makedumpfile's flattened form.
//!
//! The flattened form is indexed once at open (record headers only: an in-memory map from
//! plain-file offsets to stream offsets, later records winning where they overlap, gaps reading
//! as zeros as libkdumpfile does), so both forms are read in place with positioned reads.
//!
//! What is RAM: bitmap 1 says which pfns the guest had ([`KdumpFile::present_ranges`]); bitmap 2
//! says which were dumped. Only dumped pages are RAM for [`PhysMemory::ram`] and
//! [`PhysMemory::is_ram`]; reading an excluded page (present but filtered out, e.g. by
//! `makedumpfile -d 31`) is [`Error::NotInMemory`] — never silent zeros — so a walk or a
//! conversion never mistakes excluded memory for zeroed memory. (crash errors on excluded pages
//! unless told to zero-fill them; this is the same default.)
//!
//! Hostile input: every size comes from the file and is checked against the file's real length
//! before anything is allocated or read; a bad page is an [`Error::Format`] naming its pfn.
//! Memory stays proportional to the file: the bitmaps are kept as words (they are in the file),
//! the RAM map is built only from bitmap 2, whose runs of set bits each need at least one
//! 24-byte page descriptor in the file (checked at open, so alternating bits cannot ask for
//! more ranges than the file could describe), and bitmap 1 — which nothing in the file backs — is never turned into a
//! range list; [`KdumpFile::present_ranges`] walks it lazily.
//!
//! Blocks: the file's unit is the header's `block_size`, a power of two from 4 KiB to 64 KiB
//! (anything else is refused at open). It is the kernel's page size when makedumpfile wrote the
//! file (16 KiB or 64 KiB on arm64 kernels built so), and 64 KiB in every aarch64 file QEMU's
//! `dump-guest-memory` writes, whatever the guest's page size. Everything the file counts is in
//! blocks: the sub header starts at block 1, the bitmaps after `1 + sub_hdr_size` blocks, one
//! bitmap bit and one page descriptor per block, a frame number is an address divided by the
//! block size, and a stored block decompresses to one block. The one block buffer that holds
//! the last block read is allocated at open, so a read allocates nothing, whatever the size.

use super::{PhysMemory, RamMap};
use crate::addr::PhysRange;
use crate::codec::{decompress_page, Compression};
use crate::format::kdump::KdumpMachine;
use crate::format::kdump::{
    FlatHeader, FlatRecordHeader, NewUtsname, PageDesc, FLAT_END, FLAT_HEADER_SIZE, FLAT_SIGNATURE,
};
use crate::format::kdump_header::{
    DiskDumpHeader, HeaderAbi, KdumpHeaders, KdumpSubHeader, HEADER_PROBE,
};
use crate::format::note::{NT_PRSTATUS, VMCOREINFO_NAME};
use crate::format::prstatus::CORE_NOTE_NAME;
use crate::format::ElfNote;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zerocopy::FromBytes;

/// The smallest `block_size` read: x86 and 4 KiB-page kernels.
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// The largest `block_size` read: 64 KiB-page kernels, and QEMU's aarch64 dumps.
pub const MAX_BLOCK_SIZE: u64 = 65536;

/// Header facts of an opened kdump file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KdumpInfo {
    /// `utsname.machine` (`x86_64`, `i686`, or whatever the writer put there).
    pub machine: String,
    /// `utsname.release`.
    pub release: String,
    /// `header_version` of the disk_dump_header (6 and up carry the 64-bit PFN fields).
    pub header_version: i32,
    /// The header's `status` word (compression flag of the file).
    pub status: u32,
    /// True for the 64-bit header ABI.
    pub abi_64bit: bool,
    /// `block_size`: bytes per block, the unit of the bitmaps, descriptors and frame numbers
    /// (4096 on x86; a 16 KiB or 64 KiB page kernel's page size; 64 KiB from QEMU on aarch64).
    pub block_size: u64,
    /// Number of blocks the bitmaps cover (`max_mapnr_64` when set, else `max_mapnr`).
    pub max_mapnr: u64,
    /// `nr_cpus` of the header: CPUs of the dumped system.
    pub nr_cpus: i32,
    /// `dump_level` of the sub-header: makedumpfile's page-exclusion mask (`-d`).
    pub dump_level: i32,
    /// `phys_base` as stored (two's complement when negative).
    pub phys_base: u64,
    /// True when the input was a flattened stream.
    pub flattened: bool,
}

/// Maps plain-file offsets to offsets in a flattened stream.
#[derive(Debug, Default)]
struct FlatIndex {
    /// start → (end, stream offset of start).
    segs: BTreeMap<u64, (u64, u64)>,
}

impl FlatIndex {
    fn insert(&mut self, start: u64, end: u64, at: u64) {
        // Carve out what the new record overwrites.
        let first = self
            .segs
            .range(..start)
            .next_back()
            .filter(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s);
        let keys: Vec<u64> = first
            .into_iter()
            .chain(self.segs.range(start..end).map(|(s, _)| *s))
            .collect();
        for k in keys {
            let (e, a) = self.segs.remove(&k).expect("key listed");
            if k < start {
                self.segs.insert(k, (start, a));
            }
            if e > end {
                self.segs.insert(end, (e, a + (end - k)));
            }
        }
        self.segs.insert(start, (end, at));
    }
}

/// Where the file's bytes are.
struct Source {
    path: PathBuf,
    file: File,
    /// Real length of the file on disk.
    file_len: u64,
    flat: Option<FlatIndex>,
    /// Length of the plain file (the flattened stream's highest written offset).
    len: u64,
}

impl Source {
    fn err(&self, what: impl Into<String>) -> Error {
        Error::format(&self.path, what)
    }

    /// Reads `buf.len()` bytes at plain-file offset `off`.
    fn read(&self, off: u64, buf: &mut [u8]) -> std::result::Result<(), String> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| {
                format!(
                    "{} bytes at offset {off:#x} lie past the end of the file ({:#x} bytes)",
                    buf.len(),
                    self.len
                )
            })?;
        let Some(flat) = &self.flat else {
            return self.file.read_exact_at(buf, off).map_err(|e| e.to_string());
        };
        buf.fill(0);
        let from = flat.segs.range(..=off).next_back().map_or(off, |(s, _)| *s);
        for (&s, &(e, at)) in flat.segs.range(from..end) {
            let (a, b) = (s.max(off), e.min(end));
            if a >= b {
                continue;
            }
            let dst = &mut buf[(a - off) as usize..(b - off) as usize];
            self.file
                .read_exact_at(dst, at + (a - s))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `off` into a new buffer; `len` is bounded by the real file size.
    fn read_vec(&self, off: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        if len > self.file_len {
            return Err(self.err(format!(
                "{what} of {len} bytes is larger than the file ({} bytes)",
                self.file_len
            )));
        }
        let mut v = vec![0u8; len as usize];
        self.read(off, &mut v)
            .map_err(|e| self.err(format!("{what}: {e}")))?;
        Ok(v)
    }
}

/// The last block read, decompressed: one block's buffer, allocated at open.
struct PageCache {
    pfn: Option<u64>,
    page: Box<[u8]>,
    scratch: Vec<u8>,
}

/// A kdump-compressed file as guest-physical memory.
pub struct KdumpFile {
    src: Source,
    info: KdumpInfo,
    /// `log2(info.block_size)`: a frame number is an address shifted right by this.
    shift: u32,
    /// Bitmap 2 (dumped pfns), `max_mapnr` bits.
    dumped: Vec<u64>,
    /// Set bits of `dumped` before each word.
    rank: Vec<u64>,
    desc_off: u64,
    ram: RamMap,
    /// Bitmap 1 (pfns the guest had), `max_mapnr` bits.
    present: Vec<u64>,
    notes: Vec<ElfNote>,
    vmcoreinfo: Option<Vec<u8>>,
    cache: Mutex<PageCache>,
}

impl std::fmt::Debug for KdumpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdumpFile")
            .field("path", &self.src.path)
            .field("info", &self.info)
            .field("ram", &self.ram)
            .finish_non_exhaustive()
    }
}

fn bits_to_words(bytes: &[u8], nbits: u64) -> Vec<u64> {
    let mut words: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    // Bits at and above nbits do not count.
    let full = (nbits / 64) as usize;
    if full < words.len() {
        let rem = nbits % 64;
        words[full] &= if rem == 0 { 0 } else { (1u64 << rem) - 1 };
        for w in &mut words[full + 1..] {
            *w = 0;
        }
    }
    words
}

/// The runs of set bits of `words` as pfn ranges `[start, end)`, a word at a time (whole words
/// of zeros or ones cost one step each).
fn runs_of(words: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let nbits = words.len() as u64 * 64;
    // First position at or after `p` whose bit equals `want` (or `nbits`).
    let seek = move |mut p: u64, want: bool| {
        while p < nbits {
            let w = words[(p / 64) as usize];
            let w = if want { w } else { !w } >> (p % 64);
            if w != 0 {
                return (p + u64::from(w.trailing_zeros())).min(nbits);
            }
            p = (p / 64 + 1) * 64;
        }
        nbits
    };
    let mut p = 0u64;
    std::iter::from_fn(move || {
        let start = seek(p, true);
        if start >= nbits {
            return None;
        }
        let end = seek(start, false);
        p = end;
        Some((start, end))
    })
}

/// The runs of set bits of `words` as byte ranges of blocks of `1 << shift` bytes.
fn ranges_of(words: &[u64], shift: u32) -> Result<RamMap> {
    RamMap::new(
        runs_of(words)
            .map(|(s, e)| PhysRange::new(s << shift, (e - s) << shift))
            .collect(),
    )
}

/// The block size a header names, as a shift: a power of two from [`MIN_BLOCK_SIZE`] to
/// [`MAX_BLOCK_SIZE`], or what is wrong with it.
fn block_shift(block_size: i32) -> std::result::Result<u32, String> {
    u64::try_from(block_size)
        .ok()
        .filter(|b| (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(b) && b.is_power_of_two())
        .map(u64::trailing_zeros)
        .ok_or_else(|| {
            format!(
                "block size {block_size} (want a power of two from {MIN_BLOCK_SIZE} to \
                 {MAX_BLOCK_SIZE})"
            )
        })
}

/// The header and sub header, checked for what this reader supports, and the block size as a
/// shift.
fn read_headers(src: &Source) -> Result<(HeaderAbi, KdumpHeaders, u32)> {
    let mut h = [0u8; HEADER_PROBE];
    src.read(0, &mut h)
        .map_err(|e| src.err(format!("not a kdump file: header: {e}")))?;
    let (abi, header) = DiskDumpHeader::decode_any(&h).map_err(|e| src.err(e.0))?;
    let version = header.header_version;
    let (block_size, sub_hdr_size) = (header.block_size, header.sub_hdr_size);
    let shift = block_shift(block_size).map_err(|e| src.err(e))?;
    if version < 1 || sub_hdr_size < 0 {
        return Err(src.err(format!(
            "header version {version} / sub header size {sub_hdr_size} not supported"
        )));
    }
    let mut b = vec![0u8; abi.sub_header_size()];
    src.read(1 << shift, &mut b)
        .map_err(|e| src.err(format!("sub header: {e}")))?;
    let sub = KdumpSubHeader::decode(&b, abi).map_err(|e| src.err(e.0))?;
    if sub.split != 0 {
        return Err(Error::Unsupported(format!(
            "{}: one part of a split dump (reassemble it with makedumpfile --reassemble)",
            src.path.display()
        )));
    }
    Ok((abi, KdumpHeaders { header, sub }, shift))
}

/// The two bitmaps as words, what they make of the file, and where the descriptors start.
struct Bitmaps {
    present: Vec<u64>,
    dumped: Vec<u64>,
    rank: Vec<u64>,
    desc_off: u64,
    ram: RamMap,
}

impl Bitmaps {
    /// The bitmaps of a file of blocks of `1 << shift` bytes.
    fn read(src: &Source, header: &DiskDumpHeader, max_mapnr: u64, shift: u32) -> Result<Self> {
        let bitmap_blocks = header.bitmap_blocks;
        // At most 2^31 blocks of 2^16 bytes: no overflow.
        let half_bytes = u64::from(bitmap_blocks / 2) << shift;
        if bitmap_blocks < 2 || half_bytes * 8 < max_mapnr {
            return Err(src.err(format!(
                "bitmap of {bitmap_blocks} blocks is shorter than max_mapnr {max_mapnr} needs"
            )));
        }
        // Every block's address must fit in 64 bits (2^47 bitmap bits of 64 KiB would not).
        if max_mapnr > u64::MAX >> shift {
            return Err(src.err(format!(
                "max_mapnr {max_mapnr} blocks of {} bytes lie past the 64-bit address space",
                1u64 << shift
            )));
        }
        // sub_hdr_size was checked not negative: at most 2^31 blocks.
        let bitmap1_off = (1 + header.sub_hdr_size as u64) << shift;
        let bitmap2_off = bitmap1_off + half_bytes;
        let used = max_mapnr.div_ceil(8);
        let b1 = src.read_vec(bitmap1_off, used, "bitmap 1")?;
        let b2 = src.read_vec(bitmap2_off, used, "bitmap 2")?;
        let present = bits_to_words(&b1, max_mapnr);
        let dumped = bits_to_words(&b2, max_mapnr);
        drop((b1, b2));
        let mut rank = Vec::with_capacity(dumped.len());
        let mut acc = 0u64;
        for w in &dumped {
            rank.push(acc);
            acc += w.count_ones() as u64;
        }
        // Every dumped pfn has a 24-byte descriptor in the complete file, so each run of dumped
        // pfns has at least one: a bitmap with more runs than the file could hold descriptors
        // for is not a kdump file, and would make the RAM map larger than the file. (A file
        // truncated inside its descriptors still opens; its missing pages fail when read.)
        let runs = runs_of(&dumped).count() as u64;
        let min_desc_bytes = runs.saturating_mul(size_of::<PageDesc>() as u64);
        if min_desc_bytes > src.file_len {
            return Err(src.err(format!(
                "bitmap 2 has {runs} runs of dumped pages, more than a file of {} bytes can \
                 hold descriptors for ({} bytes each)",
                src.file_len,
                size_of::<PageDesc>()
            )));
        }
        let ram = ranges_of(&dumped, shift)?;
        Ok(Bitmaps {
            present,
            dumped,
            rank,
            desc_off: bitmap2_off + half_bytes,
            ram,
        })
    }
}

/// The notes and the VMCOREINFO text (its own field, or else its note).
fn read_notes(
    src: &Source,
    version: i32,
    sub: &KdumpSubHeader,
) -> Result<(Vec<ElfNote>, Option<Vec<u8>>)> {
    let notes = if version >= 4 && sub.size_note > 0 {
        let bytes = src.read_vec(sub.offset_note, sub.size_note, "notes")?;
        ElfNote::parse_all(&bytes).map_err(|e| src.err(format!("notes: {e}")))?
    } else {
        Vec::new()
    };
    let vmcoreinfo = if version >= 3 && sub.size_vmcoreinfo > 0 {
        let (at, len) = (sub.offset_vmcoreinfo, sub.size_vmcoreinfo);
        Some(src.read_vec(at, len, "VMCOREINFO")?)
    } else {
        notes
            .iter()
            .find(|n| n.name == VMCOREINFO_NAME)
            .map(|n| n.desc.clone())
    };
    Ok((notes, vmcoreinfo))
}

impl KdumpFile {
    /// Opens a plain or flattened kdump file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io(path.display().to_string(), e))?
            .len();
        let mut src = Source {
            path,
            file,
            file_len,
            flat: None,
            len: file_len,
        };
        let mut sig = [0u8; 16];
        if file_len >= 16 {
            src.read(0, &mut sig).map_err(|e| src.err(e))?;
        }
        if sig.starts_with(FLAT_SIGNATURE) && sig[FLAT_SIGNATURE.len()..].iter().all(|&b| b == 0) {
            Self::index_flat(&mut src)?;
        }
        Self::open_plain(src)
    }

    fn index_flat(src: &mut Source) -> Result<()> {
        let mut h = [0u8; size_of::<FlatHeader>()];
        src.read(0, &mut h).map_err(|e| src.err(e))?;
        let h = FlatHeader::read_from_bytes(&h).expect("size matches");
        if h.type_.get() != 1 || h.version.get() != 1 {
            return Err(src.err(format!(
                "flattened header type {} version {} (want 1 and 1)",
                h.type_.get(),
                h.version.get()
            )));
        }
        let mut idx = FlatIndex::default();
        let mut pos = FLAT_HEADER_SIZE as u64;
        let mut len = 0u64;
        loop {
            let mut rh = [0u8; size_of::<FlatRecordHeader>()];
            src.file.read_exact_at(&mut rh, pos).map_err(|_| {
                src.err(format!(
                    "flattened stream ends at {pos:#x} without its end record (truncated?)"
                ))
            })?;
            let rh = FlatRecordHeader::read_from_bytes(&rh).expect("size matches");
            let (off, size) = (rh.offset.get(), rh.size.get());
            if off == FLAT_END && size == FLAT_END {
                break;
            }
            pos += size_of::<FlatRecordHeader>() as u64;
            if off < 0 || size <= 0 {
                return Err(src.err(format!(
                    "flattened record at {pos:#x} has offset {off} and size {size}"
                )));
            }
            let (off, size) = (off as u64, size as u64);
            let end = off.checked_add(size).filter(|_| pos + size <= src.file_len);
            let Some(end) = end else {
                return Err(src.err(format!(
                    "flattened record at {pos:#x} ({size} bytes) runs past the end of the file"
                )));
            };
            idx.insert(off, end, pos);
            len = len.max(end);
            pos += size;
        }
        src.flat = Some(idx);
        src.len = len;
        Ok(())
    }

    fn open_plain(src: Source) -> Result<Self> {
        let (abi, KdumpHeaders { header, sub }, shift) = read_headers(&src)?;
        let version = header.header_version;
        let max_mapnr = if version >= 6 {
            sub.max_mapnr_64
        } else {
            u64::from(header.max_mapnr)
        };
        let bitmaps = Bitmaps::read(&src, &header, max_mapnr, shift)?;
        let (notes, vmcoreinfo) = read_notes(&src, version, &sub)?;
        let flattened = src.flat.is_some();
        Ok(KdumpFile {
            info: KdumpInfo {
                machine: NewUtsname::text(&header.utsname.machine),
                release: NewUtsname::text(&header.utsname.release),
                header_version: version,
                status: header.status,
                abi_64bit: abi.is_64bit(),
                block_size: 1 << shift,
                max_mapnr,
                nr_cpus: header.nr_cpus,
                dump_level: sub.dump_level,
                phys_base: sub.phys_base,
                flattened,
            },
            src,
            shift,
            dumped: bitmaps.dumped,
            rank: bitmaps.rank,
            desc_off: bitmaps.desc_off,
            ram: bitmaps.ram,
            present: bitmaps.present,
            notes,
            vmcoreinfo,
            cache: Mutex::new(PageCache {
                pfn: None,
                page: vec![0u8; 1 << shift].into_boxed_slice(),
                scratch: Vec::new(),
            }),
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.src.path
    }
    /// Header facts.
    pub fn info(&self) -> &KdumpInfo {
        &self.info
    }
    /// The notes (PRSTATUS, QEMU CPU state, VMCOREINFO…), in file order.
    pub fn notes(&self) -> &[ElfNote] {
        &self.notes
    }
    /// The guest's VMCOREINFO text, if the file has it.
    pub fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.vmcoreinfo.as_deref()
    }
    /// `utsname.machine`.
    pub fn machine(&self) -> &str {
        &self.info.machine
    }
    /// The guest's architecture: the one `utsname.machine` names, else the one whose
    /// `NT_PRSTATUS` size the first such note has (QEMU writes `Unknown` in the utsname of its
    /// aarch64 kdump files); `None` when neither tells.
    pub fn guest_machine(&self) -> Option<KdumpMachine> {
        KdumpMachine::from_utsname(&self.info.machine).or_else(|| {
            self.notes
                .iter()
                .find(|n| n.name == CORE_NOTE_NAME && n.n_type == NT_PRSTATUS)
                .and_then(|n| KdumpMachine::from_prstatus_size(n.desc.len()))
        })
    }
    /// The kernel's `phys_base` from the sub header (two's complement when negative).
    pub fn phys_base(&self) -> u64 {
        self.info.phys_base
    }
    /// The physical ranges the guest had (bitmap 1), dumped or not, computed as they are
    /// iterated (bitmap 1 can hold millions of runs that no data in the file backs).
    pub fn present_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let shift = self.shift;
        runs_of(&self.present).map(move |(s, e)| PhysRange::new(s << shift, (e - s) << shift))
    }

    /// Number of blocks ([`KdumpInfo::block_size`] bytes each: pages, where the file's blocks
    /// are the kernel's pages) the guest had (set bits of bitmap 1).
    pub fn present_pages(&self) -> u64 {
        self.present.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The physical ranges whose pages the file holds (bitmap 2): RAM less what a window or a
    /// dump level excluded.
    pub fn dumped_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let shift = self.shift;
        runs_of(&self.dumped).map(move |(s, e)| PhysRange::new(s << shift, (e - s) << shift))
    }

    /// Number of blocks the file holds (set bits of bitmap 2).
    pub fn dumped_pages(&self) -> u64 {
        self.dumped.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    fn is_dumped(&self, pfn: u64) -> bool {
        pfn < self.info.max_mapnr && self.dumped[(pfn / 64) as usize] >> (pfn % 64) & 1 != 0
    }

    /// Loads one dumped block into `out` (one block long).
    fn load_page(&self, pfn: u64, out: &mut [u8], scratch: &mut Vec<u8>) -> Result<()> {
        let err = |what: String| self.src.err(format!("pfn {pfn:#x}: {what}"));
        let w = (pfn / 64) as usize;
        let below = self.dumped[w] & ((1u64 << (pfn % 64)) - 1);
        let idx = self.rank[w] + below.count_ones() as u64;
        let at = self.desc_off + idx * size_of::<PageDesc>() as u64;
        let mut d = [0u8; size_of::<PageDesc>()];
        self.src
            .read(at, &mut d)
            .map_err(|e| err(format!("page descriptor: {e}")))?;
        let d = PageDesc::read_from_bytes(&d).expect("size matches");
        let (off, size, flags) = (d.offset.get(), d.size.get(), d.flags.get());
        let kind = Compression::from_page_flags(flags).map_err(err)?;
        if size == 0 || u64::from(size) > self.info.block_size {
            return Err(err(format!(
                "stored page size {size} (at most the block size, {})",
                self.info.block_size
            )));
        }
        scratch.resize(size as usize, 0);
        self.src
            .read(off, scratch)
            .map_err(|e| err(format!("page data: {e}")))?;
        decompress_page(kind, scratch, out).map_err(|e| err(e.to_string()))
    }
}

impl PhysMemory for KdumpFile {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        let not_in = || Error::NotInMemory { addr, len };
        let end = addr.checked_add(buf.len() as u64).ok_or_else(not_in)?;
        if !self.ram.contains(addr, buf.len() as u64) {
            return Err(not_in());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let PageCache {
            pfn: cached,
            page,
            scratch,
        } = &mut *cache;
        let block = self.info.block_size;
        let mut a = addr;
        while a < end {
            let pfn = a >> self.shift;
            let o = (a & (block - 1)) as usize;
            let n = (block as usize - o).min((end - a) as usize);
            if !self.is_dumped(pfn) {
                return Err(not_in());
            }
            if *cached != Some(pfn) {
                *cached = None;
                self.load_page(pfn, page, scratch)?;
                *cached = Some(pfn);
            }
            let d = (a - addr) as usize;
            buf[d..d + n].copy_from_slice(&page[o..o + n]);
            a += n as u64;
        }
        Ok(())
    }

    fn ram(&self) -> &RamMap {
        &self.ram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PAGE;

    #[test]
    fn flat_index_last_record_wins() {
        let mut f = FlatIndex::default();
        f.insert(0, 100, 1000);
        f.insert(50, 60, 5000);
        f.insert(90, 120, 7000);
        let v: Vec<_> = f.segs.iter().map(|(s, (e, a))| (*s, *e, *a)).collect();
        assert_eq!(
            v,
            vec![
                (0, 50, 1000),
                (50, 60, 5000),
                (60, 90, 1060),
                (90, 120, 7000)
            ]
        );
        f.insert(0, 200, 9000);
        assert_eq!(f.segs.len(), 1);
    }

    /// A kdump file of two dumped pages, one at 0 and one at 256 MiB (so each bitmap is 8 KiB),
    /// with `patch` applied to its bytes; and the offsets of its two bitmaps and their length.
    fn patched_kdump(patch: impl FnOnce(&mut [u8], usize, usize, usize)) -> Result<KdumpFile> {
        use crate::dump::kdump::{write_kdump, KdumpOptions, KdumpRequest};
        let mem = crate::phys::VecMemory::from_blocks(vec![
            (0, vec![1u8; PAGE]),
            (256 << 20, vec![2u8; PAGE]),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let req = KdumpRequest::new(&mem, Compression::None);
        write_kdump(
            &req,
            &out,
            &KdumpOptions::default(),
            &crate::progress::NoProgress,
        )
        .unwrap();
        let mut bytes = std::fs::read(&out).unwrap();
        let (_, h) = DiskDumpHeader::decode_any(&bytes).unwrap();
        let b1 = (1 + h.sub_hdr_size as usize) * PAGE;
        let half = h.bitmap_blocks as usize / 2 * PAGE;
        patch(&mut bytes, b1, b1 + half, half);
        std::fs::write(&out, &bytes).unwrap();
        KdumpFile::open(&out)
    }

    /// Hostile class 4, bitmap 2: alternating bits ask for 32,769 RAM ranges in a 48 KiB file,
    /// which could not hold a descriptor for each. Open fails before building any map.
    #[test]
    fn dumped_bits_without_descriptors_are_rejected() {
        let r = patched_kdump(|b, _, b2, half| b[b2..b2 + half].fill(0x55));
        match r {
            Err(Error::Format { what, .. }) => {
                assert!(what.contains("32769 runs of dumped pages"), "{what}")
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    /// Hostile class 4, bitmap 1: alternating bits are 32,769 present runs (max_mapnr is
    /// 65,537) that nothing in the
    /// file backs. They are kept as the bitmap (as big as the file's own bitmap), never as a
    /// range list; the RAM map has only the two dumped pages.
    #[test]
    fn present_bits_are_not_a_range_list() {
        let k = patched_kdump(|b, b1, _, half| b[b1..b1 + half].fill(0x55)).unwrap();
        assert_eq!(k.ram().ranges().len(), 2);
        let n = k.info().max_mapnr;
        assert_eq!(n, 65_537);
        assert_eq!(k.present_pages(), n.div_ceil(2));
        assert_eq!(
            k.present.len() as u64,
            n.div_ceil(64),
            "one word per 64 pfns"
        );
        assert_eq!(k.present_ranges().count() as u64, n.div_ceil(2));
        assert_eq!(
            k.present_ranges().nth(1),
            Some(PhysRange::new(2 * PAGE as u64, PAGE as u64))
        );
    }

    /// The bytes of block `pfn` of `block` bytes: zeros, random, text or sparse by `pfn % 4`.
    fn block_bytes(pfn: u64, block: usize) -> Vec<u8> {
        guestcore_testkit::pages::mixed_page(pfn, block)
    }

    /// Dumped frames of the generated files: RAM at frames 0–2 and 5–6 of 9, a hole between.
    const FRAMES: [u64; 5] = [0, 1, 2, 5, 6];

    /// A kdump file of `block`-byte blocks holding [`FRAMES`] compressed with `kind` (raw where
    /// that does not shrink them), utsname machine `Unknown` and one aarch64-sized PRSTATUS
    /// note, as QEMU writes for aarch64; and its bytes.
    fn blocks_file(dir: &Path, block: usize, kind: Compression) -> (PathBuf, Vec<u8>) {
        use crate::codec::PageCompressor;
        use crate::format::kdump_blocks::{KdumpBlocksFile, StoredBlock};
        use crate::format::prstatus::PRSTATUS_AARCH64_SIZE;
        let mut c = PageCompressor::for_block(kind, block);
        let stored: Vec<(u64, u32, Vec<u8>)> = FRAMES
            .iter()
            .map(|&pfn| {
                let raw = block_bytes(pfn, block);
                match c.compress(&raw) {
                    Some(z) => (pfn, kind.flag(), z.to_vec()),
                    None => (pfn, 0, raw),
                }
            })
            .collect();
        let blocks: Vec<StoredBlock<'_>> = stored
            .iter()
            .map(|(pfn, flags, data)| StoredBlock {
                pfn: *pfn,
                flags: *flags,
                data,
            })
            .collect();
        let notes = ElfNote::encode_all(&[
            ElfNote::new(CORE_NOTE_NAME, NT_PRSTATUS, vec![0; PRSTATUS_AARCH64_SIZE]),
            ElfNote::new(VMCOREINFO_NAME, 0, b"OSRELEASE=6.1.0-arm64\n".to_vec()),
        ]);
        let bytes = KdumpBlocksFile {
            block_size: block as u32,
            machine: "Unknown",
            release: "",
            status: kind.flag(),
            nr_cpus: 1,
            max_mapnr: 9,
            notes: &notes,
            blocks: &blocks,
        }
        .encode();
        let path = dir.join(format!("k-{block}-{kind}"));
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    /// 16 KiB and 64 KiB blocks (arm64 kernels' pages; QEMU's aarch64 dumps) in every
    /// compression: the RAM map is in blocks, every block reads back, reads straddle blocks,
    /// the hole is not RAM, and the machine comes from the PRSTATUS size.
    #[test]
    fn larger_blocks_in_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        for block in [16usize << 10, 64 << 10] {
            let b = block as u64;
            for kind in Compression::ALL {
                let what = format!("{block}-byte blocks, {kind}");
                let (path, _) = blocks_file(dir.path(), block, kind);
                let k = KdumpFile::open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(k.info().block_size, b, "{what}");
                assert_eq!(
                    k.ram().ranges(),
                    &[PhysRange::new(0, 3 * b), PhysRange::new(5 * b, 2 * b)],
                    "{what}"
                );
                assert_eq!((k.present_pages(), k.dumped_pages()), (5, 5), "{what}");
                assert_eq!(k.guest_machine(), Some(KdumpMachine::Aarch64), "{what}");
                assert_eq!(
                    k.vmcoreinfo(),
                    Some(&b"OSRELEASE=6.1.0-arm64\n"[..]),
                    "{what}"
                );
                let mut got = vec![0u8; block];
                for pfn in FRAMES {
                    k.read_at(pfn * b, &mut got).unwrap();
                    assert!(
                        got == block_bytes(pfn, block),
                        "{what}: block {pfn} differs"
                    );
                }
                // All of frames 0-2 in one read, and a read straddling 5 and 6 at odd offsets.
                let mut all = vec![0u8; 3 * block];
                k.read_at(0, &mut all).unwrap();
                let want: Vec<u8> = (0..3).flat_map(|p| block_bytes(p, block)).collect();
                assert!(all == want, "{what}: frames 0-2 in one read");
                let mut mid = vec![0u8; 1000];
                k.read_at(6 * b - 333, &mut mid).unwrap();
                assert_eq!(&mid[..333], &block_bytes(5, block)[block - 333..], "{what}");
                assert_eq!(&mid[333..], &block_bytes(6, block)[..667], "{what}");
                // The hole, and a read running into it.
                for at in [3 * b, 3 * b - 10, 7 * b - 1] {
                    let r = k.read_at(at, &mut mid[..20]);
                    assert!(
                        matches!(r, Err(Error::NotInMemory { .. })),
                        "{what}: read at {at:#x}: {r:?}"
                    );
                }
            }
        }
    }

    /// The header's offset of `block_size` (64-bit ABI) and of `max_mapnr_64` in the sub header.
    const BLOCK_SIZE_AT: usize = 428;

    /// Hostile headers of a 64 KiB-block file: a block size that is not a power of two from
    /// 4 KiB to 64 KiB is refused by name; bitmaps and frames past the 64-bit address space,
    /// a stored block larger than a block, and a raw block of the wrong size are clear errors.
    #[test]
    fn hostile_block_sizes_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = blocks_file(dir.path(), 64 << 10, Compression::Zlib);
        let bad = dir.path().join("bad");
        let open = |m: &[u8]| {
            std::fs::write(&bad, m).unwrap();
            KdumpFile::open(&bad)
        };
        fn format_err<T: std::fmt::Debug>(r: Result<T>) -> String {
            match r {
                Err(Error::Format { what, .. }) => what,
                other => panic!("want a format error, got {other:?}"),
            }
        }
        for bs in [
            0i32,
            -65536,
            2048,
            12288,
            65537,
            1 << 17,
            i32::MIN,
            i32::MAX,
        ] {
            let mut m = bytes.clone();
            m[BLOCK_SIZE_AT..BLOCK_SIZE_AT + 4].copy_from_slice(&bs.to_le_bytes());
            let e = format_err(open(&m));
            assert!(
                e.contains(&format!("block size {bs}")) && e.contains("power of two"),
                "block size {bs}: {e}"
            );
        }
        // A 4 KiB block size in a file laid out in 64 KiB blocks: the sub header read at 4 KiB
        // is block 0's zero padding, so the file covers no frames (an empty result, bounded).
        let mut m = bytes.clone();
        m[BLOCK_SIZE_AT..BLOCK_SIZE_AT + 4].copy_from_slice(&4096i32.to_le_bytes());
        if let Ok(k) = open(&m) {
            assert_eq!(k.info().max_mapnr, 0, "{:?}", k.info());
            assert!(k.ram().ranges().is_empty(), "{:?}", k.ram());
        }
        // 2^49 frames of 64 KiB (2^65 bytes), with bitmap blocks enough to cover them.
        let sub = 64 << 10;
        let mut m = bytes.clone();
        m[sub + 96..sub + 104].copy_from_slice(&(1u64 << 49).to_le_bytes());
        m[436..440].copy_from_slice(&(u32::MAX - 1).to_le_bytes()); // bitmap_blocks
        let e = format_err(open(&m));
        assert!(e.contains("64-bit address space"), "{e}");
        // Bitmaps far past the end of the file.
        let mut m = bytes.clone();
        m[432..436].copy_from_slice(&i32::MAX.to_le_bytes()); // sub_hdr_size
        let e = format_err(open(&m));
        assert!(e.contains("bitmap 1"), "{e}");
        // Descriptors: frame 1's stored size one more than a block; frame 0's raw block short.
        let (_, h) = DiskDumpHeader::decode_any(&bytes).unwrap();
        let desc = (1 + h.sub_hdr_size as usize + h.bitmap_blocks as usize) * sub;
        let mut m = bytes.clone();
        m[desc + 24 + 8..desc + 24 + 12].copy_from_slice(&(sub as u32 + 1).to_le_bytes());
        let k = open(&m).unwrap();
        let mut b = vec![0u8; 10];
        let e = format_err(k.read_at(sub as u64, &mut b));
        assert!(e.contains("pfn 0x1:") && e.contains("65537"), "{e}");
        let mut m = bytes.clone();
        m[desc + 12..desc + 16].copy_from_slice(&0u32.to_le_bytes()); // frame 0 raw
        m[desc + 8..desc + 12].copy_from_slice(&4096u32.to_le_bytes());
        let k = open(&m).unwrap();
        let e = format_err(k.read_at(0, &mut b));
        assert!(e.contains("pfn 0x0:") && e.contains("4096"), "{e}");
        drop(path);
    }

    #[test]
    fn runs_of_whole_and_partial_words() {
        let words = [u64::MAX, u64::MAX, 0, 0b1011 << 60, 1];
        let runs: Vec<_> = runs_of(&words).collect();
        assert_eq!(runs, vec![(0, 128), (252, 254), (255, 257)]);
        assert_eq!(runs_of(&[0x5555_5555_5555_5555; 4]).count(), 128);
        assert_eq!(runs_of(&[]).count(), 0);
    }

    #[test]
    fn bitmap_ranges() {
        let words = bits_to_words(&[0b0000_0110, 0xff, 0x01], 17);
        let m = ranges_of(&words, 12).unwrap();
        assert_eq!(
            m.ranges(),
            &[
                PhysRange::new(0x1000, 0x2000),
                PhysRange::new(0x8000, 0x9000)
            ]
        );
    }
}
