//! On-disk structures of the kdump-compressed ("diskdump") format and of makedumpfile's
//! flattened stream.
//!
//! Layouts (checked against libkdumpfile's `diskdump.c` and makedumpfile's `diskdump_mod.h`):
//!
//! * `disk_dump_header` comes in two ABIs. The 64-bit one (x86_64) has a 16-byte
//!   `struct timeval` aligned to 8, so 6 padding bytes follow the 390-byte utsname; total 464
//!   bytes. The 32-bit one (i686) has an 8-byte timeval aligned to 4: 2 padding bytes; 452 bytes.
//! * `kdump_sub_header` has `unsigned long` fields: 104 bytes on x86_64; on i686 the 64-bit
//!   fields are 4-aligned ("32pack" in libkdumpfile): 80 bytes.
//! * `page_desc` is 24 bytes everywhere (`off_t` is 64-bit in makedumpfile builds).
//! * The flattened header and record headers are **big-endian**.
//!
//! All multi-byte fields of the plain format are little-endian (x86 guests only).

use zerocopy::byteorder::{big_endian, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Signature of a kdump-compressed file.
pub const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// Signature of the older diskdump format (same structures).
pub const DISKDUMP_SIGNATURE: &[u8; 8] = b"DISKDUMP";
/// The header version this crate writes (v6 adds the 64-bit pfn fields).
pub const KDUMP_HEADER_VERSION: i32 = 6;
/// Page flag / header status: page compressed with zlib.
pub const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
/// Page compressed with LZO1X.
pub const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
/// Page compressed with snappy (raw format).
pub const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// Header status: the dump is incomplete.
pub const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
/// Page compressed with zstd.
pub const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;
/// Any page compression flag.
pub const DUMP_DH_COMPRESSED_ANY: u32 = DUMP_DH_COMPRESSED_ZLIB
    | DUMP_DH_COMPRESSED_LZO
    | DUMP_DH_COMPRESSED_SNAPPY
    | DUMP_DH_COMPRESSED_ZSTD;

/// Length of one utsname field (`__NEW_UTS_LEN + 1`).
pub const UTS_FIELD_LEN: usize = 65;

/// Signature of makedumpfile's flattened stream (NUL-padded to 16 bytes).
pub const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
/// `type` of the flattened header.
pub const FLAT_TYPE: i64 = 1;
/// `version` of the flattened header.
pub const FLAT_VERSION: i64 = 1;
/// The flattened header occupies this many bytes before the first record.
pub const FLAT_HEADER_SIZE: usize = 4096;
/// Offset and size of the record that ends a flattened stream.
pub const FLAT_END: i64 = -1;

/// `struct new_utsname`: six NUL-terminated 65-byte strings.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct NewUtsname {
    pub sysname: [u8; UTS_FIELD_LEN],
    pub nodename: [u8; UTS_FIELD_LEN],
    pub release: [u8; UTS_FIELD_LEN],
    pub version: [u8; UTS_FIELD_LEN],
    pub machine: [u8; UTS_FIELD_LEN],
    pub domainname: [u8; UTS_FIELD_LEN],
}

impl NewUtsname {
    /// A field from text, truncated to 64 bytes so a NUL always ends it.
    pub fn field(text: &str) -> [u8; UTS_FIELD_LEN] {
        let mut f = [0u8; UTS_FIELD_LEN];
        let b = text.as_bytes();
        let n = b.len().min(UTS_FIELD_LEN - 1);
        f[..n].copy_from_slice(&b[..n]);
        f
    }

    /// A field as text, up to its first NUL (lossy).
    pub fn text(field: &[u8; UTS_FIELD_LEN]) -> String {
        let end = field.iter().position(|&b| b == 0).unwrap_or(UTS_FIELD_LEN);
        String::from_utf8_lossy(&field[..end]).into_owned()
    }
}

/// `struct disk_dump_header` as written by a 64-bit (x86_64) makedumpfile: 464 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DiskDumpHeader64 {
    pub signature: [u8; 8],
    pub header_version: le::I32,
    pub utsname: NewUtsname,
    pub pad1: [u8; 6],
    pub timestamp_sec: le::U64,
    pub timestamp_usec: le::U64,
    pub status: le::U32,
    pub block_size: le::I32,
    pub sub_hdr_size: le::I32,
    pub bitmap_blocks: le::U32,
    pub max_mapnr: le::U32,
    pub total_ram_blocks: le::U32,
    pub device_blocks: le::U32,
    pub written_blocks: le::U32,
    pub current_cpu: le::U32,
    pub nr_cpus: le::I32,
}

/// `struct disk_dump_header` as written by a 32-bit (i686) makedumpfile: 452 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DiskDumpHeader32 {
    pub signature: [u8; 8],
    pub header_version: le::I32,
    pub utsname: NewUtsname,
    pub pad1: [u8; 2],
    pub timestamp_sec: le::U32,
    pub timestamp_usec: le::U32,
    pub status: le::U32,
    pub block_size: le::I32,
    pub sub_hdr_size: le::I32,
    pub bitmap_blocks: le::U32,
    pub max_mapnr: le::U32,
    pub total_ram_blocks: le::U32,
    pub device_blocks: le::U32,
    pub written_blocks: le::U32,
    pub current_cpu: le::U32,
    pub nr_cpus: le::I32,
}

/// `struct kdump_sub_header` of a 64-bit dump: 104 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct KdumpSubHeader64 {
    pub phys_base: le::U64,
    pub dump_level: le::I32,
    pub split: le::I32,
    pub start_pfn: le::U64,
    pub end_pfn: le::U64,
    pub offset_vmcoreinfo: le::U64,
    pub size_vmcoreinfo: le::U64,
    pub offset_note: le::U64,
    pub size_note: le::U64,
    pub offset_eraseinfo: le::U64,
    pub size_eraseinfo: le::U64,
    pub start_pfn_64: le::U64,
    pub end_pfn_64: le::U64,
    pub max_mapnr_64: le::U64,
}

/// `struct kdump_sub_header` of an i686 dump (64-bit fields 4-aligned): 80 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct KdumpSubHeader32 {
    pub phys_base: le::U32,
    pub dump_level: le::I32,
    pub split: le::I32,
    pub start_pfn: le::U32,
    pub end_pfn: le::U32,
    pub offset_vmcoreinfo: le::U64,
    pub size_vmcoreinfo: le::U32,
    pub offset_note: le::U64,
    pub size_note: le::U32,
    pub offset_eraseinfo: le::U64,
    pub size_eraseinfo: le::U32,
    pub start_pfn_64: le::U64,
    pub end_pfn_64: le::U64,
    pub max_mapnr_64: le::U64,
}

/// `struct page_desc`: where one dumped page's data is. 24 bytes.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct PageDesc {
    /// File offset of the page data.
    pub offset: le::U64,
    /// Stored size (compressed, or the block size when raw).
    pub size: le::U32,
    /// One `DUMP_DH_COMPRESSED_*` flag, or 0 for a raw page.
    pub flags: le::U32,
    /// The kernel's page flags (0: unknown).
    pub page_flags: le::U64,
}

/// The start of makedumpfile's flattened header (the rest of its 4096 bytes is zero).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FlatHeader {
    pub signature: [u8; 16],
    pub type_: big_endian::I64,
    pub version: big_endian::I64,
}

/// Header of one flattened record: write `size` bytes at `offset` of the plain file.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FlatRecordHeader {
    pub offset: big_endian::I64,
    pub size: big_endian::I64,
}

const _: () = {
    assert!(core::mem::size_of::<NewUtsname>() == 390);
    assert!(core::mem::size_of::<DiskDumpHeader64>() == 464);
    assert!(core::mem::size_of::<DiskDumpHeader32>() == 452);
    assert!(core::mem::size_of::<KdumpSubHeader64>() == 104);
    assert!(core::mem::size_of::<KdumpSubHeader32>() == 80);
    assert!(core::mem::size_of::<PageDesc>() == 24);
    assert!(core::mem::size_of::<FlatHeader>() == 32);
    assert!(core::mem::size_of::<FlatRecordHeader>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utsname_fields() {
        let f = NewUtsname::field(&"x".repeat(100));
        assert_eq!(f[64], 0);
        assert_eq!(NewUtsname::text(&NewUtsname::field("x86_64")), "x86_64");
    }
}
