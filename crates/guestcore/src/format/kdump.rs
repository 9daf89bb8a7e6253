//! On-disk structures of the kdump-compressed ("diskdump") format and of makedumpfile's
//! flattened stream.
//!
//! Layouts (checked against libkdumpfile's `diskdump.c` and makedumpfile's `diskdump_mod.h`):
//!
//! * `disk_dump_header` and `kdump_sub_header` come in two ABIs: see [`super::kdump_header`].
//! * The compression flags (`DUMP_DH_COMPRESSED_*`) and the method each names
//!   ([`Compression`]), mapped here once for the reader, the writer and the image probe.
//! * The machine names of `utsname.machine` ([`KdumpMachine`]): the one the writer records,
//!   the ones the reader takes to tell the header's ABI.
//! * `page_desc` is 24 bytes everywhere (`off_t` is 64-bit in makedumpfile builds).
//! * The flattened header and record headers are **big-endian**.
//!
//! All multi-byte fields of the plain format are little-endian (x86 and little-endian aarch64
//! guests; aarch64 is LP64, so its headers take the same 64-bit ABI as x86_64).

use super::elf::ElfMachine;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
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

/// Page compression of a kdump file: the method a `DUMP_DH_COMPRESSED_*` flag names (in a
/// page descriptor's `flags` and in the header's `status`). The codecs are in
/// [`crate::codec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Pages stored raw.
    None,
    /// zlib (makedumpfile `-c`).
    #[default]
    Zlib,
    /// LZO1X (makedumpfile `-l`).
    Lzo,
    /// snappy raw format (makedumpfile `-p`).
    Snappy,
    /// zstd (makedumpfile `-z`).
    Zstd,
}

impl Compression {
    /// All variants.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Zlib,
        Compression::Lzo,
        Compression::Snappy,
        Compression::Zstd,
    ];

    /// The `DUMP_DH_COMPRESSED_*` flag (0 for none).
    pub fn flag(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Zlib => DUMP_DH_COMPRESSED_ZLIB,
            Compression::Lzo => DUMP_DH_COMPRESSED_LZO,
            Compression::Snappy => DUMP_DH_COMPRESSED_SNAPPY,
            Compression::Zstd => DUMP_DH_COMPRESSED_ZSTD,
        }
    }

    /// The compression named by one page flag; `None` for raw pages, `Err` for a flag word
    /// naming no or several methods.
    pub(crate) fn from_page_flags(flags: u32) -> Result<Compression, String> {
        let method = flags & DUMP_DH_COMPRESSED_ANY;
        Compression::ALL
            .into_iter()
            .find(|c| c.flag() == method)
            .ok_or_else(|| format!("page flags {method:#x} name several compressions"))
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Lzo => "lzo",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                crate::Error::parse(
                    "compression",
                    format!("{s:?} (want none, zlib, lzo, snappy or zstd)"),
                )
            })
    }
}

/// The guest architecture a kdump file records in `utsname.machine`: crash and libkdumpfile
/// take the architecture from it, and it tells which ABI the headers were laid out for
/// ([`super::kdump_header::HeaderAbi`]). The writer names one of these; the reader knows
/// the names a 32-bit x86 makedumpfile may write besides `i686`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KdumpMachine {
    /// `x86_64`: 64-bit header ABI.
    X86_64,
    /// `i686`: 32-bit header ABI.
    I686,
    /// `aarch64`: 64-bit header ABI (makedumpfile and the kernel write it for arm64).
    Aarch64,
}

impl KdumpMachine {
    /// The utsname string written.
    pub fn as_str(self) -> &'static str {
        match self {
            KdumpMachine::X86_64 => "x86_64",
            KdumpMachine::I686 => "i686",
            KdumpMachine::Aarch64 => "aarch64",
        }
    }

    /// The machine a utsname string names: `x86_64`, or a 32-bit x86 (`i386` to `i686`,
    /// all read as [`KdumpMachine::I686`]); `None` for anything else.
    pub fn from_utsname(machine: &str) -> Option<Self> {
        match machine {
            "x86_64" => Some(KdumpMachine::X86_64),
            "i386" | "i486" | "i586" | "i686" => Some(KdumpMachine::I686),
            "aarch64" => Some(KdumpMachine::Aarch64),
            _ => None,
        }
    }

    /// The machine whose `NT_PRSTATUS` descriptor is `size` bytes long (x86_64 336, i686 144,
    /// aarch64 392): how a file whose utsname names no machine (QEMU's aarch64 kdump files
    /// say `Unknown`) still tells which CPU notes it holds. `None` for another size.
    pub fn from_prstatus_size(size: usize) -> Option<Self> {
        use super::prstatus::{PRSTATUS_AARCH64_SIZE, PRSTATUS_I386_SIZE, PRSTATUS_X86_64_SIZE};
        match size {
            PRSTATUS_X86_64_SIZE => Some(KdumpMachine::X86_64),
            PRSTATUS_I386_SIZE => Some(KdumpMachine::I686),
            PRSTATUS_AARCH64_SIZE => Some(KdumpMachine::Aarch64),
            _ => None,
        }
    }

    /// True for the 64-bit header ABI.
    pub fn is_64bit(self) -> bool {
        matches!(self, KdumpMachine::X86_64 | KdumpMachine::Aarch64)
    }

    /// The ELF machine of a core of the same guest (what its CPU notes are decoded as).
    pub fn elf_machine(self) -> ElfMachine {
        match self {
            KdumpMachine::X86_64 => ElfMachine::X86_64,
            KdumpMachine::I686 => ElfMachine::I386,
            KdumpMachine::Aarch64 => ElfMachine::Aarch64,
        }
    }
}

impl fmt::Display for KdumpMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// `sysname`: the kernel's name (`Linux`).
    pub sysname: [u8; UTS_FIELD_LEN],
    /// `nodename`: the host name.
    pub nodename: [u8; UTS_FIELD_LEN],
    /// `release`: the kernel release (`6.1.0-18-amd64`); crash matches it against vmlinux.
    pub release: [u8; UTS_FIELD_LEN],
    /// `version`: the kernel's build string (`#1 SMP PREEMPT_DYNAMIC …`).
    pub version: [u8; UTS_FIELD_LEN],
    /// `machine`: the architecture (`x86_64`, `i686`); it tells the header's ABI.
    pub machine: [u8; UTS_FIELD_LEN],
    /// `domainname`: the NIS domain name (`(none)` on most systems).
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
    /// [`FLAT_SIGNATURE`], NUL-padded to 16 bytes.
    pub signature: [u8; 16],
    /// The stream type, [`FLAT_TYPE`] (big-endian).
    pub type_: big_endian::I64,
    /// The stream version, [`FLAT_VERSION`] (big-endian).
    pub version: big_endian::I64,
}

/// Header of one flattened record: write `size` bytes at `offset` of the plain file.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FlatRecordHeader {
    /// Offset in the plain file of the bytes that follow ([`FLAT_END`] in the end record).
    pub offset: big_endian::I64,
    /// Bytes of data after this header ([`FLAT_END`] in the end record).
    pub size: big_endian::I64,
}

const _: () = {
    assert!(core::mem::size_of::<NewUtsname>() == 390);
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

    #[test]
    fn machine_names() {
        for m in [
            KdumpMachine::X86_64,
            KdumpMachine::I686,
            KdumpMachine::Aarch64,
        ] {
            assert_eq!(KdumpMachine::from_utsname(m.as_str()), Some(m));
        }
        assert_eq!(KdumpMachine::from_utsname("i386"), Some(KdumpMachine::I686));
        assert_eq!(KdumpMachine::from_utsname("armv7l"), None);
        assert!(KdumpMachine::Aarch64.is_64bit());
        assert!(!KdumpMachine::I686.is_64bit());
        assert_eq!(KdumpMachine::Aarch64.elf_machine(), ElfMachine::Aarch64);
        assert_eq!(KdumpMachine::I686.elf_machine(), ElfMachine::I386);
        assert_eq!(
            KdumpMachine::from_prstatus_size(392),
            Some(KdumpMachine::Aarch64)
        );
        assert_eq!(
            KdumpMachine::from_prstatus_size(336),
            Some(KdumpMachine::X86_64)
        );
        assert_eq!(
            KdumpMachine::from_prstatus_size(144),
            Some(KdumpMachine::I686)
        );
        assert_eq!(KdumpMachine::from_prstatus_size(100), None);
    }

    #[test]
    fn compression_flags_and_names() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_page_flags(c.flag()), Ok(c));
            // The incomplete bit is not a method.
            let with = c.flag() | DUMP_DH_COMPRESSED_INCOMPLETE;
            assert_eq!(Compression::from_page_flags(with), Ok(c));
        }
        let two = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO;
        assert!(Compression::from_page_flags(two).is_err());
        assert_eq!("LZO".parse::<Compression>().unwrap(), Compression::Lzo);
        assert!("lz4".parse::<Compression>().is_err());
    }
}
