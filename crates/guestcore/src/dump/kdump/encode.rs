//! The bytes of a planned kdump file ([`super::plan`]): block 0 with the headers and notes,
//! the bitmaps one piece at a time, and the page descriptors of a window of stored pages.
//! No I/O: [`super::writer`] writes what these return.

use super::blocks::ExcludedBlocks;
use super::plan::Shape;
use super::plan::{KdumpPlan, PfnRanges};
use super::KdumpSummary;
use crate::format::kdump::{
    NewUtsname, PageDesc, KDUMP_HEADER_VERSION, KDUMP_SIGNATURE, UTS_FIELD_LEN,
};
use crate::format::kdump_header::{DiskDumpHeader, KdumpHeaders, KdumpSubHeader};
use crate::{Error, Result};
use zerocopy::IntoBytes;

/// Block 0 and the sub-header blocks: the headers of `req` as planned, then the notes.
/// `timestamp` is the header's `tv_sec` (`tv_usec` stays 0, see [`super::KdumpOptions`]).
pub(super) fn head_blocks(req: &Shape<'_>, plan: &KdumpPlan, timestamp: u64) -> Result<Vec<u8>> {
    let headers = headers(req, plan, timestamp)?;
    let mut out = headers.encode(plan.abi);
    out.resize(plan.head_len() as usize, 0);
    let at = plan.note_off as usize;
    out[at..at + plan.notes.len()].copy_from_slice(&plan.notes);
    Ok(out)
}

/// The header fields of `req` as planned.
fn headers(req: &Shape<'_>, plan: &KdumpPlan, timestamp: u64) -> Result<KdumpHeaders> {
    let bitmap_blocks =
        u32::try_from(2 * plan.bitmap_bytes / plan.block.bytes()).map_err(|_| Error::Limit {
            bound: "kdump bitmaps",
            detail: "bitmap too large for the kdump header".into(),
        })?;
    // libkdumpfile ignores a utsname whose release, version or machine is empty (and some
    // versions also an empty nodename), and then cannot tell the architecture. VMCOREINFO has
    // only the release: the rest come from the kernel's own `init_uts_ns` when it was found,
    // else are the kernel's defaults ("(none)") or "unknown". The machine is always the one
    // the header's ABI follows.
    let or = |f: Option<&[u8; UTS_FIELD_LEN]>, default: &str| {
        f.filter(|f| f[0] != 0)
            .copied()
            .unwrap_or_else(|| NewUtsname::field(default))
    };
    let k = req.utsname;
    let utsname = NewUtsname {
        sysname: NewUtsname::field("Linux"),
        nodename: or(k.map(|u| &u.nodename), "(none)"),
        release: NewUtsname::field(&plan.release),
        version: or(k.map(|u| &u.version), "unknown"),
        machine: NewUtsname::field(req.machine.as_str()),
        domainname: or(k.map(|u| &u.domainname), "(none)"),
    };
    let header = DiskDumpHeader {
        signature: *KDUMP_SIGNATURE,
        header_version: KDUMP_HEADER_VERSION,
        utsname,
        timestamp_sec: timestamp,
        timestamp_usec: 0,
        status: req.compression.flag(),
        block_size: plan.block.bytes() as i32,
        sub_hdr_size: plan.sub_hdr_blocks as i32,
        bitmap_blocks,
        max_mapnr: plan.max_mapnr.min(u32::MAX as u64) as u32,
        total_ram_blocks: 0,
        device_blocks: 0,
        written_blocks: 0,
        current_cpu: 0,
        nr_cpus: req.nr_cpus as i32,
    };
    let sub = KdumpSubHeader {
        phys_base: plan.phys_base,
        dump_level: i32::from(req.dump_level),
        offset_vmcoreinfo: plan.vmcoreinfo.0,
        size_vmcoreinfo: plan.vmcoreinfo.1,
        offset_note: plan.note_off,
        size_note: plan.notes.len() as u64,
        max_mapnr_64: plan.max_mapnr,
        ..KdumpSubHeader::default()
    };
    Ok(KdumpHeaders { header, sub })
}

/// One piece of a bitmap: the bits of pfns `lo..lo + 8 * piece.len()` of `ranges` less the
/// blocks `excluded` leaves out. `first` is the index of the first range that may touch the
/// piece; it moves on so consecutive pieces scan `ranges` once.
pub(super) fn bitmap_piece(
    piece: &mut [u8],
    lo: u64,
    ranges: &PfnRanges,
    first: &mut usize,
    excluded: Option<ExcludedBlocks<'_>>,
) {
    piece.fill(0);
    let hi = lo + piece.len() as u64 * 8;
    while *first < ranges.len() && ranges[*first].1 <= lo {
        *first += 1;
    }
    // The ranges that touch the piece, shifted to it.
    let here: PfnRanges = ranges[*first..]
        .iter()
        .take_while(|r| r.0 < hi)
        .map(|&(s, e)| (s.max(lo) - lo, e.min(hi) - lo))
        .collect();
    set_bits(piece, &here);
    if let Some(x) = excluded {
        for (s, e) in x.runs_in(lo, hi) {
            put_bits(piece, s - lo, e - lo, false);
        }
    }
}

/// Sets the bits of `ranges` (LSB first).
pub(super) fn set_bits(bitmap: &mut [u8], ranges: &PfnRanges) {
    for &(s, e) in ranges {
        put_bits(bitmap, s, e, true);
    }
}

/// Sets (`on`) or clears bits `[s, e)` (LSB first): whole bytes at once, the ends bit by bit
/// (a `-d 31` dump of a 4 GiB guest clears a million bits of free frames).
fn put_bits(bitmap: &mut [u8], s: u64, e: u64, on: bool) {
    let mut p = s;
    while p < e {
        if p % 8 == 0 && e - p >= 8 {
            let n = ((e - p) / 8) as usize;
            let i = (p / 8) as usize;
            bitmap[i..i + n].fill(if on { 0xff } else { 0 });
            p += 8 * n as u64;
        } else {
            let bit = 1 << (p % 8);
            let b = &mut bitmap[(p / 8) as usize];
            *b = if on { *b | bit } else { *b & !bit };
            p += 1;
        }
    }
}

/// Appends to `out` the descriptors of stored pages, given per page as (stored size, flags),
/// size 0 meaning the shared zero page (one block of `block` bytes) at `zero_off`; the others'
/// data lies back to back from `*data_pos`, which moves past them. Counts each kind of page in
/// `summary`.
pub(super) fn descriptors(
    entries: &[(u32, u32)],
    (zero_off, block): (u64, u32),
    data_pos: &mut u64,
    summary: &mut KdumpSummary,
    out: &mut Vec<u8>,
) {
    for &(size, flags) in entries {
        let d = if size == 0 {
            summary.zero_pages += 1;
            PageDesc {
                offset: zero_off.into(),
                size: block.into(),
                flags: 0.into(),
                page_flags: 0.into(),
            }
        } else {
            if flags == 0 {
                summary.raw_pages += 1;
            } else {
                summary.compressed_pages += 1;
            }
            let d = PageDesc {
                offset: (*data_pos).into(),
                size: size.into(),
                flags: flags.into(),
                page_flags: 0.into(),
            };
            *data_pos += u64::from(size);
            d
        };
        out.extend_from_slice(d.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitmap built in pieces equals the one built whole, across piece boundaries.
    #[test]
    fn bitmap_in_pieces() {
        let piece_len = 4096u64;
        let ranges: PfnRanges = vec![
            (3, 9),
            (piece_len * 8 - 5, piece_len * 8 + 7),
            (2 * piece_len * 8, 3 * piece_len * 8),
        ];
        let mut whole = vec![0u8; 3 * piece_len as usize];
        set_bits(&mut whole, &ranges);
        let mut pieces = Vec::new();
        let mut first = 0;
        let mut piece = vec![0u8; piece_len as usize];
        for i in 0..3 {
            bitmap_piece(&mut piece, i * piece_len * 8, &ranges, &mut first, None);
            pieces.extend_from_slice(&piece);
        }
        assert_eq!(pieces, whole);
    }

    /// Excluded frames clear their bits, whole bytes and partial ones, across pieces.
    #[test]
    fn excluded_frames_clear_their_bits() {
        use crate::addr::PhysRange;
        use crate::dump_level::FrameSet;
        use crate::phys::RamMap;
        let piece_len = 64u64;
        let frames = 3 * piece_len * 8;
        let ram = RamMap::new(vec![PhysRange::new(0, frames * 4096)]).unwrap();
        let mut excluded = FrameSet::for_ram(&ram);
        for (s, e) in [
            (1, 2),
            (5, 21),
            (piece_len * 8 - 3, piece_len * 8 + 70),
            (1000, 1536),
        ] {
            excluded.insert(s, e);
        }
        let ranges: PfnRanges = vec![(0, frames - 4)];
        let mut pieces = Vec::new();
        let mut first = 0;
        let mut piece = vec![0u8; piece_len as usize];
        for i in 0..3 {
            let lo = i * piece_len * 8;
            let x = ExcludedBlocks {
                frames: &excluded,
                ram: &ram,
                block: super::super::BlockSize::KIB_4,
            };
            bitmap_piece(&mut piece, lo, &ranges, &mut first, Some(x));
            pieces.extend_from_slice(&piece);
        }
        for pfn in 0..frames {
            let want = pfn < frames - 4 && !excluded.contains(pfn);
            let got = pieces[(pfn / 8) as usize] >> (pfn % 8) & 1 == 1;
            assert_eq!(got, want, "pfn {pfn}");
        }
    }

    #[test]
    fn bit_ranges() {
        let mut b = vec![0u8; 4];
        set_bits(&mut b, &vec![(1, 3), (7, 25)]);
        assert_eq!(b, vec![0b1000_0110, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn descriptors_share_the_zero_page() {
        let mut s = KdumpSummary::default();
        let mut out = Vec::new();
        let mut pos = 0x10_000;
        descriptors(
            &[(0, 0), (100, 1), (4096, 0)],
            (0x8000, 4096),
            &mut pos,
            &mut s,
            &mut out,
        );
        assert_eq!(out.len(), 3 * 24);
        assert_eq!(pos, 0x10_000 + 4196);
        assert_eq!((s.zero_pages, s.compressed_pages, s.raw_pages), (1, 1, 1));
        assert_eq!(out[..8], 0x8000u64.to_le_bytes());
        assert_eq!(out[24..32], 0x10_000u64.to_le_bytes());
        assert_eq!(out[48..56], (0x10_000u64 + 100).to_le_bytes());
    }
}
