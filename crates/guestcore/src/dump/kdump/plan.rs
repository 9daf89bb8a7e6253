//! Where everything of a kdump file goes, decided before a byte is written: the pfn ranges of
//! the two bitmaps, the offsets of the headers, bitmaps, page descriptors and page data, and
//! the header fields that follow from the request. Pure (no I/O), so the layout is checked
//! and testable on its own; [`super::encode`] turns it into bytes and [`super::writer`]
//! writes them.
//!
//! Everything is counted in blocks of the request's [`BlockSize`] (the dumped kernel's page):
//! a "pfn" here is a block number, `address / block size`, as readers number them. A block
//! holds RAM when any of its bytes is RAM.
//!
//! The bitmaps have one bit per pfn below the RAM top, however little RAM is present, so they
//! are bounded here before anything is created ([`check_bitmaps`]: one page at 2^51 would need
//! 64 GiB of them).

use super::blocks::{BlockSize, ExcludedBlocks};
use super::{Compression, KdumpMachine, KdumpRequest};
use crate::addr::PhysRange;
use crate::dump_level::FrameSet;
use crate::format::kdump::{NewUtsname, PageDesc};
use crate::format::kdump_header::HeaderAbi;
use crate::format::note::VMCOREINFO_NAME;
use crate::format::vmcoreinfo::{vmcoreinfo_get, vmcoreinfo_phys_base};
use crate::format::ElfNote;
use crate::phys::RamMap;
use crate::{Error, Result};

/// What a kdump file's layout and headers follow from: the RAM map and the request's header
/// fields. No memory: planning reads none, so a file whose pages arrive later (a stream) is
/// planned from its RAM map alone.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape<'a> {
    pub(super) ram: &'a RamMap,
    pub(super) notes: &'a [ElfNote],
    pub(super) vmcoreinfo: Option<&'a [u8]>,
    pub(super) utsname: Option<&'a NewUtsname>,
    pub(super) machine: KdumpMachine,
    pub(super) nr_cpus: u32,
    pub(super) compression: Compression,
    pub(super) filter: Option<PhysRange>,
    pub(super) excluded: Option<&'a FrameSet>,
    pub(super) dump_level: u8,
    pub(super) block: BlockSize,
}

impl<'a> Shape<'a> {
    /// The blocks the request's excluded frames leave out.
    pub(super) fn excluded_blocks(&self) -> Option<ExcludedBlocks<'a>> {
        self.excluded.map(|frames| ExcludedBlocks {
            frames,
            ram: self.ram,
            block: self.block,
        })
    }
}

impl KdumpRequest<'_> {
    /// The shape of the file this request asks for.
    pub(super) fn shape(&self) -> Shape<'_> {
        Shape {
            ram: self.memory.ram(),
            notes: self.notes,
            vmcoreinfo: self.vmcoreinfo,
            utsname: self.utsname,
            machine: self.machine,
            nr_cpus: self.nr_cpus,
            compression: self.compression,
            filter: self.filter,
            excluded: self.excluded,
            dump_level: self.dump_level,
            block: self.block_size,
        }
    }
}

/// Highest physical address we accept (MAXPHYADDR is at most 52 bits on x86).
const MAX_PHYS: u64 = 1 << 52;
/// Bitmap bytes (each of the two) always allowed: covers a RAM top of 512 GiB.
const BITMAP_FREE: u64 = 16 << 20;

/// Sorted, disjoint pfn ranges `[start, end)`.
pub(super) type PfnRanges = Vec<(u64, u64)>;

/// Everything about the file that the request decides.
#[derive(Debug)]
pub(super) struct KdumpPlan {
    /// The header ABI (the machine's).
    pub abi: HeaderAbi,
    /// The block: the unit of every offset and count below.
    pub block: BlockSize,
    /// Pfns (blocks) below the RAM top: the bitmaps' length in bits.
    pub max_mapnr: u64,
    /// Pfns of guest RAM (bitmap 1).
    pub ram: PfnRanges,
    /// Pfns within the filter window (bitmap 2, less the excluded frames).
    pub dumped: PfnRanges,
    /// Pfns with a descriptor: `dumped` less the excluded frames.
    pub dumped_pages: u64,
    /// Blocks of the sub header and the notes.
    pub sub_hdr_blocks: u64,
    /// Bytes of each bitmap (whole blocks).
    pub bitmap_bytes: u64,
    pub bitmap1_off: u64,
    pub bitmap2_off: u64,
    /// Start of the page descriptors.
    pub desc_off: u64,
    /// Start of the page data: the shared zero page, then the stored pages.
    pub data_off: u64,
    /// The notes as written, at [`Self::note_off`].
    pub notes: Vec<u8>,
    pub note_off: u64,
    /// File offset and size of the VMCOREINFO text (inside the notes), or zeros.
    pub vmcoreinfo: (u64, u64),
    /// `utsname.release`: the VMCOREINFO's OSRELEASE, or "unknown".
    pub release: String,
    /// The kernel's `phys_base` from the VMCOREINFO (0 without one).
    pub phys_base: u64,
}

impl KdumpPlan {
    /// The end of the descriptors (the data starts at the next block).
    pub(super) fn desc_end(&self) -> u64 {
        self.desc_off + self.dumped_pages * size_of::<PageDesc>() as u64
    }
    /// Where the shared zero page is.
    pub(super) fn zero_off(&self) -> u64 {
        self.data_off
    }
    /// Where the first stored non-zero page goes.
    pub(super) fn pages_off(&self) -> u64 {
        self.data_off + self.block.bytes()
    }
    /// Bytes of block 0 and the sub-header blocks.
    pub(super) fn head_len(&self) -> u64 {
        self.block.bytes() * (1 + self.sub_hdr_blocks)
    }
}

/// Fails when the RAM top needs bitmaps far larger than the RAM present: more than
/// [`BITMAP_FREE`] bytes each and more than the RAM itself. Such a guest (a stray page near the
/// top of the physical address space) is better written as an ELF core, whose size follows the
/// RAM present.
pub(super) fn check_bitmaps(req: &Shape<'_>) -> Result<()> {
    let ram = req.ram;
    let end = ram.end();
    let bs = req.block.bytes();
    let bitmap = end.div_ceil(bs).div_ceil(8).next_multiple_of(bs);
    if bitmap > BITMAP_FREE && bitmap > ram.total() {
        return Err(Error::Limit {
            bound: "kdump bitmaps",
            detail: format!(
                "RAM ends at {end:#x}: a kdump file needs two bitmaps of {bitmap} bytes each for \
             that, far more than the {} bytes of RAM present; write an ELF core instead",
                ram.total()
            ),
        });
    }
    Ok(())
}

/// Plans the file of `req`.
pub(super) fn plan(req: &Shape<'_>) -> Result<KdumpPlan> {
    plan_reserving(req, 0)
}

/// Plans the file of `req` with room for at least `notes_reserve` bytes of notes after the
/// sub-header, whatever `req.notes` holds now: a writer that learns its notes last (a
/// streamed dump) plans with the room first and with the notes at the end, and both plans put
/// the bitmaps, descriptors and data at the same offsets as long as the notes fit.
pub(super) fn plan_reserving(req: &Shape<'_>, notes_reserve: u64) -> Result<KdumpPlan> {
    let end = req.ram.end();
    if end == 0 {
        return Err(Error::Unsupported("the guest has no RAM to dump".into()));
    }
    if end > MAX_PHYS {
        return Err(Error::Limit {
            bound: "physical address space",
            detail: format!("RAM ends at {end:#x}, above the 52-bit physical address space"),
        });
    }
    check_bitmaps(req)?;
    let abi = HeaderAbi::from_64bit(req.machine.is_64bit());
    let bs = req.block.bytes();
    let max_mapnr = end.div_ceil(bs);
    let bitmap_bytes = max_mapnr.div_ceil(8).div_ceil(bs) * bs;
    let (notes, vmci) = notes_block(req);
    let sub_size = abi.sub_header_size() as u64;
    let note_off = bs + sub_size;
    let sub_hdr_blocks = (sub_size + notes_reserve.max(notes.len() as u64)).div_ceil(bs);
    let bitmap1_off = bs * (1 + sub_hdr_blocks);
    let bitmap2_off = bitmap1_off + bitmap_bytes;
    let desc_off = bitmap2_off + bitmap_bytes;
    let dumped = pfn_ranges(req, true);
    let dumped_pages = count_kept(&dumped, req.excluded_blocks());
    let data_off = (desc_off + dumped_pages * size_of::<PageDesc>() as u64).next_multiple_of(bs);
    let vmci_text = vmci.as_ref().map(|v| v.1.as_slice());
    let release = vmci_text
        .and_then(|v| vmcoreinfo_get(v, "OSRELEASE"))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("unknown")
        .to_string();
    let phys_base = vmci_text.and_then(vmcoreinfo_phys_base).unwrap_or(0);
    let vmcoreinfo = vmci
        .as_ref()
        .map_or((0, 0), |(at, d)| (note_off + *at as u64, d.len() as u64));
    Ok(KdumpPlan {
        abi,
        block: req.block,
        max_mapnr,
        ram: pfn_ranges(req, false),
        dumped,
        dumped_pages,
        sub_hdr_blocks,
        bitmap_bytes,
        bitmap1_off,
        bitmap2_off,
        desc_off,
        data_off,
        notes,
        note_off,
        vmcoreinfo,
        release,
        phys_base,
    })
}

/// The pfn ranges of the guest's RAM, or (`filtered`) of its RAM within the filter window: the
/// blocks holding any byte of it.
fn pfn_ranges(req: &Shape<'_>, filtered: bool) -> PfnRanges {
    let bs = req.block.bytes();
    let mut out: PfnRanges = Vec::new();
    for r in req.ram.ranges() {
        let mut r = *r;
        if filtered {
            match req.filter.and_then(|f| f.intersect(&r)) {
                Some(x) => r = x,
                None if req.filter.is_some() => continue,
                None => {}
            }
        }
        let (s, e) = (r.start / bs, r.end.div_ceil(bs));
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Pfns of `ranges`.
pub(super) fn count(ranges: &PfnRanges) -> u64 {
    ranges.iter().map(|(s, e)| e - s).sum()
}

/// Pfns of `ranges` that are dumped: not left out by `excluded`.
fn count_kept(ranges: &PfnRanges, excluded: Option<ExcludedBlocks<'_>>) -> u64 {
    let out = excluded.map_or(0, |x| ranges.iter().map(|&(s, e)| x.count_in(s, e)).sum());
    count(ranges) - out
}

/// The notes as written, with VMCOREINFO appended when given separately; plus the VMCOREINFO
/// text that applies (for release and phys_base) and where its descriptor is in the note bytes.
fn notes_block(req: &Shape<'_>) -> (Vec<u8>, Option<(usize, Vec<u8>)>) {
    let mut notes: Vec<ElfNote> = req.notes.to_vec();
    if let Some(v) = req.vmcoreinfo {
        if !notes.iter().any(|n| n.name == VMCOREINFO_NAME) {
            notes.push(ElfNote::new(VMCOREINFO_NAME, 0, v.to_vec()));
        }
    }
    let mut bytes = Vec::new();
    let mut vmci = None;
    for n in &notes {
        let start = bytes.len();
        n.encode_into(&mut bytes);
        if vmci.is_none() && n.name == VMCOREINFO_NAME {
            let desc_at = start + 12 + (n.name.len() + 1).div_ceil(4) * 4;
            vmci = Some((desc_at, n.desc.clone()));
        }
    }
    (bytes, vmci)
}

/// A plain x86_64 zlib request for `mem`, for tests of the writer's parts.
#[cfg(test)]
pub(super) fn test_request(mem: &crate::phys::VecMemory) -> KdumpRequest<'_> {
    KdumpRequest::new(mem, super::Compression::Zlib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PAGE;
    const PAGE_U64: u64 = PAGE as u64;

    fn request(mem: &crate::phys::VecMemory) -> KdumpRequest<'_> {
        KdumpRequest {
            vmcoreinfo: Some(b"OSRELEASE=6.1.0\nNUMBER(phys_base)=16777216\n"),
            ..test_request(mem)
        }
    }

    /// 1 MiB of RAM at 0 and 4 KiB at 1 GiB: 262,145 pfns, 32 KiB bitmaps (8 blocks each).
    #[test]
    fn offsets_follow_one_another() {
        let mem = crate::phys::VecMemory::from_blocks(vec![
            (0, vec![1u8; 1 << 20]),
            (1 << 30, vec![2u8; PAGE]),
        ])
        .unwrap();
        let p = plan(&request(&mem).shape()).unwrap();
        assert_eq!(p.max_mapnr, (1 << 18) + 1);
        assert_eq!(p.bitmap_bytes, 9 * PAGE_U64);
        assert_eq!(p.sub_hdr_blocks, 1);
        assert_eq!(p.bitmap1_off, 2 * PAGE_U64);
        assert_eq!(p.bitmap2_off, p.bitmap1_off + p.bitmap_bytes);
        assert_eq!(p.desc_off, p.bitmap2_off + p.bitmap_bytes);
        assert_eq!(p.dumped_pages, 257);
        assert_eq!(p.desc_end(), p.desc_off + 257 * 24);
        assert_eq!(p.data_off, p.desc_end().next_multiple_of(PAGE_U64));
        assert_eq!(p.ram, vec![(0, 256), (1 << 18, (1 << 18) + 1)]);
        assert_eq!(p.release, "6.1.0");
        assert_eq!(p.phys_base, 16 << 20);
        let (at, len) = p.vmcoreinfo;
        assert!(at > p.note_off && len == 43, "{at:#x} {len}");
    }

    #[test]
    fn no_ram_is_refused() {
        let mem = crate::phys::VecMemory::from_blocks(vec![]).unwrap();
        assert!(plan(&request(&mem).shape()).is_err());
    }
}
