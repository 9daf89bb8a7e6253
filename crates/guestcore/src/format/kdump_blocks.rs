//! A whole kdump-compressed file at any block size, from blocks already stored (compressed or
//! raw): the write side that tests and fuzz seeds use for files guestcore's own writer
//! ([`crate::dump::kdump`], which writes blocks of the dumped kernel's page) does not write —
//! the 64 KiB blocks of QEMU's aarch64 dumps whatever the kernel's pages, with the `Unknown`
//! machine QEMU writes there — and for layouts made by hand in fuzz seeds.
//!
//! The layout is the one every kdump file has, counted in blocks of `block_size` bytes:
//! block 0 the header, block 1 the sub header and the notes after it (`sub_hdr_size` blocks in
//! all), the two bitmaps (one bit per block frame, `bitmap_blocks` in all, half each), the
//! page descriptors (24 bytes per dumped frame, in frame order) and the stored blocks.
//! Bitmap 1 (present) is bitmap 2 (dumped): every block given is RAM and dumped.
//!
//! Pages are compressed by the caller (with [`crate::codec::PageCompressor::for_block`]), as
//! this layer imports nothing of the crate.

use super::kdump::{KdumpMachine, NewUtsname, PageDesc, KDUMP_HEADER_VERSION, KDUMP_SIGNATURE};
use super::kdump_header::{DiskDumpHeader, HeaderAbi, KdumpHeaders, KdumpSubHeader};
use zerocopy::IntoBytes;

/// One dumped block as stored.
#[derive(Clone, Copy, Debug)]
pub struct StoredBlock<'a> {
    /// Its frame number: its address divided by the block size.
    pub pfn: u64,
    /// Its descriptor's `flags`: a `DUMP_DH_COMPRESSED_*` flag, or 0 for a raw block.
    pub flags: u32,
    /// The stored bytes (a raw block is `block_size` bytes).
    pub data: &'a [u8],
}

/// What goes into the file.
#[derive(Clone, Copy, Debug)]
pub struct KdumpBlocksFile<'a> {
    /// `block_size`: a power of two, at least the header's size (4 KiB to 64 KiB for readers).
    pub block_size: u32,
    /// `utsname.machine` as text (`aarch64`, or `Unknown` as QEMU writes it for aarch64); the
    /// header ABI is 32-bit only for the machines [`KdumpMachine`] knows as 32-bit.
    pub machine: &'a str,
    /// `utsname.release`.
    pub release: &'a str,
    /// The header's `status`: the compression flag of the file.
    pub status: u32,
    /// `nr_cpus`.
    pub nr_cpus: i32,
    /// Frames the bitmaps cover; every block's `pfn` is below it.
    pub max_mapnr: u64,
    /// The ELF notes, encoded ([`super::ElfNote::encode_all`]).
    pub notes: &'a [u8],
    /// The dumped blocks, in increasing `pfn` order.
    pub blocks: &'a [StoredBlock<'a>],
}

impl KdumpBlocksFile<'_> {
    /// The file's bytes.
    ///
    /// # Panics
    /// When the blocks are not in increasing frame order below `max_mapnr`, or the block size
    /// is not a power of two that holds the header.
    pub fn encode(&self) -> Vec<u8> {
        let bs = u64::from(self.block_size);
        let abi = HeaderAbi::from_64bit(
            KdumpMachine::from_utsname(self.machine).map_or(true, KdumpMachine::is_64bit),
        );
        assert!(
            bs.is_power_of_two() && bs >= abi.header_size() as u64,
            "block size {bs}"
        );
        for w in self.blocks.windows(2) {
            assert!(w[0].pfn < w[1].pfn, "blocks out of order");
        }
        if let Some(last) = self.blocks.last() {
            assert!(last.pfn < self.max_mapnr, "pfn {} past max_mapnr", last.pfn);
        }
        let blocks_of = |bytes: u64| bytes.div_ceil(bs);
        let note_off = bs + abi.sub_header_size() as u64;
        let sub_hdr_blocks = blocks_of(abi.sub_header_size() as u64 + self.notes.len() as u64);
        let half = blocks_of(self.max_mapnr.div_ceil(8)).max(1);
        let bitmap1 = (1 + sub_hdr_blocks) * bs;
        let bitmap2 = bitmap1 + half * bs;
        let desc_off = bitmap2 + half * bs;
        let data_off = desc_off + (self.blocks.len() * size_of::<PageDesc>()) as u64;
        let header = DiskDumpHeader {
            signature: *KDUMP_SIGNATURE,
            header_version: KDUMP_HEADER_VERSION,
            utsname: NewUtsname {
                sysname: NewUtsname::field("Linux"),
                nodename: NewUtsname::field("(none)"),
                release: NewUtsname::field(self.release),
                version: NewUtsname::field("#1"),
                machine: NewUtsname::field(self.machine),
                domainname: NewUtsname::field("(none)"),
            },
            timestamp_sec: 0,
            timestamp_usec: 0,
            status: self.status,
            block_size: self.block_size as i32,
            sub_hdr_size: sub_hdr_blocks as i32,
            bitmap_blocks: (2 * half) as u32,
            max_mapnr: self.max_mapnr.min(u64::from(u32::MAX)) as u32,
            total_ram_blocks: 0,
            device_blocks: 0,
            written_blocks: 0,
            current_cpu: 0,
            nr_cpus: self.nr_cpus,
        };
        let sub = KdumpSubHeader {
            offset_note: note_off,
            size_note: self.notes.len() as u64,
            max_mapnr_64: self.max_mapnr,
            ..KdumpSubHeader::default()
        };
        let mut out = KdumpHeaders { header, sub }.encode(abi);
        out.extend_from_slice(self.notes);
        out.resize(bitmap1 as usize, 0);
        let mut bitmap = vec![0u8; (half * bs) as usize];
        for b in self.blocks {
            bitmap[(b.pfn / 8) as usize] |= 1 << (b.pfn % 8);
        }
        out.extend_from_slice(&bitmap);
        out.extend_from_slice(&bitmap);
        let mut at = data_off;
        for b in self.blocks {
            let d = PageDesc {
                offset: at.into(),
                size: (b.data.len() as u32).into(),
                flags: b.flags.into(),
                page_flags: 0.into(),
            };
            out.extend_from_slice(d.as_bytes());
            at += b.data.len() as u64;
        }
        for b in self.blocks {
            out.extend_from_slice(b.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    /// The layout in blocks: headers decode, the bitmaps sit after `1 + sub_hdr_size` blocks,
    /// the descriptors after them point at the data.
    #[test]
    fn layout_is_counted_in_blocks() {
        let data = [7u8; 100];
        let blocks = [StoredBlock {
            pfn: 3,
            flags: 1,
            data: &data,
        }];
        let f = KdumpBlocksFile {
            block_size: 65536,
            machine: "Unknown",
            release: "6.1.0",
            status: 1,
            nr_cpus: 2,
            max_mapnr: 10,
            notes: &[0u8; 12],
            blocks: &blocks,
        };
        let b = f.encode();
        let (abi, h) = KdumpHeaders::decode(&b).unwrap();
        assert!(abi.is_64bit(), "Unknown machines take the 64-bit ABI");
        assert_eq!(h.header.block_size, 65536);
        assert_eq!(h.header.sub_hdr_size, 1);
        assert_eq!(h.header.bitmap_blocks, 2);
        assert_eq!(h.sub.offset_note, 65536 + 104);
        assert_eq!(b[2 * 65536], 0b1000, "bitmap 1");
        assert_eq!(b[3 * 65536], 0b1000, "bitmap 2");
        let d = PageDesc::read_from_bytes(&b[4 * 65536..4 * 65536 + 24]).unwrap();
        assert_eq!(d.offset.get(), 4 * 65536 + 24);
        assert_eq!(d.size.get(), 100);
        assert_eq!(b.len(), 4 * 65536 + 24 + 100);
    }
}
