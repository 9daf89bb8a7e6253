//! The two headers at the start of a kdump file, `disk_dump_header` (block 0) and
//! `kdump_sub_header` (block 1), as one ABI-neutral structure ([`KdumpHeaders`]) with two
//! encodings: the 64-bit ABI (x86_64) and the 32-bit ABI (i686).
//!
//! The writer fills the neutral fields and encodes them in the guest's ABI; the reader finds
//! the ABI ([`HeaderAbi::detect`]) and decodes. Both encodings are spelled out once, as the
//! `#[repr(C)]` wire structs below; the conversions between them and the neutral fields are
//! generated from one field list, so nothing here (or in the reader or writer) is written
//! twice for the two ABIs.
//!
//! The layouts (checked against libkdumpfile's `diskdump.c` and makedumpfile's
//! `diskdump_mod.h`):
//!
//! * `disk_dump_header`: the 64-bit one has a 16-byte `struct timeval` aligned to 8, so 6
//!   padding bytes follow the 390-byte utsname; 464 bytes. The 32-bit one has an 8-byte
//!   timeval aligned to 4: 2 padding bytes; 452 bytes.
//! * `kdump_sub_header` has `unsigned long` fields: 104 bytes on x86_64; on i686 the 64-bit
//!   fields are 4-aligned ("32pack" in libkdumpfile): 80 bytes.
//!
//! Fields that are `unsigned long` are truncated to 32 bits in the 32-bit encoding.

use super::kdump::{KdumpMachine, NewUtsname, DISKDUMP_SIGNATURE, KDUMP_SIGNATURE};
use zerocopy::byteorder::little_endian as le;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Which C ABI the headers were laid out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderAbi {
    /// x86_64: 464-byte header, 104-byte sub header.
    Bits64,
    /// i686: 452-byte header, 80-byte sub header.
    Bits32,
}

impl HeaderAbi {
    /// The ABI of `machine`'s headers (`true`: 64-bit).
    pub fn from_64bit(is_64bit: bool) -> Self {
        if is_64bit {
            HeaderAbi::Bits64
        } else {
            HeaderAbi::Bits32
        }
    }

    /// True for the 64-bit ABI.
    pub fn is_64bit(self) -> bool {
        self == HeaderAbi::Bits64
    }

    /// Bytes of `disk_dump_header`.
    pub fn header_size(self) -> usize {
        match self {
            HeaderAbi::Bits64 => size_of::<DiskDumpHeader64>(),
            HeaderAbi::Bits32 => size_of::<DiskDumpHeader32>(),
        }
    }

    /// Bytes of `kdump_sub_header`.
    pub fn sub_header_size(self) -> usize {
        match self {
            HeaderAbi::Bits64 => size_of::<KdumpSubHeader64>(),
            HeaderAbi::Bits32 => size_of::<KdumpSubHeader32>(),
        }
    }

    /// The ABI of the header in `block0` (at least [`HEADER_PROBE`] bytes): from
    /// `utsname.machine` when it names x86_64 or a 32-bit x86, else from whichever ABI puts a
    /// plausible block size (a power of two from 4 KiB to 64 KiB) in `block_size`, 64-bit
    /// when both or neither do.
    pub fn detect(block0: &[u8]) -> Result<Self, BadHeader> {
        let h64 = decode_wire::<DiskDumpHeader64>(block0, "header")?;
        let h32 = decode_wire::<DiskDumpHeader32>(block0, "header")?;
        let machine = NewUtsname::text(&h64.utsname.machine);
        let plausible = |bs: i32| (4096..=65536).contains(&bs) && (bs as u32).is_power_of_two();
        let is_64bit = match KdumpMachine::from_utsname(&machine) {
            Some(m) => m.is_64bit(),
            None => plausible(h64.block_size.get()) || !plausible(h32.block_size.get()),
        };
        Ok(HeaderAbi::from_64bit(is_64bit))
    }
}

/// Bytes of block 0 that [`HeaderAbi::detect`] and [`DiskDumpHeader::decode_any`] need: the
/// larger (64-bit) header.
pub const HEADER_PROBE: usize = size_of::<DiskDumpHeader64>();

/// `struct disk_dump_header`, whatever the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskDumpHeader {
    /// `KDUMP   ` or `DISKDUMP`.
    pub signature: [u8; 8],
    /// `header_version`: the format's revision
    /// ([`KDUMP_HEADER_VERSION`](crate::format::kdump::KDUMP_HEADER_VERSION) when written here).
    pub header_version: i32,
    /// `utsname`: the dumped kernel's `uname` strings.
    pub utsname: NewUtsname,
    /// `timestamp.tv_sec`: when the dump was taken, seconds since the Unix epoch.
    pub timestamp_sec: u64,
    /// `timestamp.tv_usec`: microseconds within that second.
    pub timestamp_usec: u64,
    /// Compression flag of the file (`DUMP_DH_COMPRESSED_*`).
    pub status: u32,
    /// `block_size`: bytes per block, the file's unit: the kernel's page size where makedumpfile
    /// wrote it (4096 on x86, 16 or 64 KiB on some arm64 kernels), 64 KiB from QEMU on aarch64.
    pub block_size: i32,
    /// Blocks of the sub header and the notes after it.
    pub sub_hdr_size: i32,
    /// Blocks of both bitmaps together.
    pub bitmap_blocks: u32,
    /// `max_mapnr`: one past the highest page frame number the bitmaps cover (32-bit; see
    /// [`KdumpSubHeader::max_mapnr_64`]).
    pub max_mapnr: u32,
    /// `total_ram_blocks`: unused by kdump-compressed files (0).
    pub total_ram_blocks: u32,
    /// `device_blocks`: unused by kdump-compressed files (0).
    pub device_blocks: u32,
    /// `written_blocks`: unused by kdump-compressed files (0).
    pub written_blocks: u32,
    /// `current_cpu`: the CPU that took the dump (0 when unknown).
    pub current_cpu: u32,
    /// `nr_cpus`: how many CPUs the dumped machine has.
    pub nr_cpus: i32,
}

/// `struct kdump_sub_header`, whatever the ABI (`unsigned long` fields widened to 64 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KdumpSubHeader {
    /// `phys_base`: the physical address the kernel was loaded at minus its link-time one.
    pub phys_base: u64,
    /// `dump_level`: makedumpfile's bit mask of the page kinds left out (0: none).
    pub dump_level: i32,
    /// `split`: 1 when the file holds only `start_pfn..end_pfn` of a split dump.
    pub split: i32,
    /// `start_pfn`: first frame of a split dump's part (32-bit).
    pub start_pfn: u64,
    /// `end_pfn`: one past the last frame of a split dump's part (32-bit).
    pub end_pfn: u64,
    /// `offset_vmcoreinfo`: file offset of the VMCOREINFO text (0: none).
    pub offset_vmcoreinfo: u64,
    /// `size_vmcoreinfo`: bytes of VMCOREINFO text.
    pub size_vmcoreinfo: u64,
    /// `offset_note`: file offset of the ELF notes (PRSTATUS and the rest).
    pub offset_note: u64,
    /// `size_note`: bytes of ELF notes.
    pub size_note: u64,
    /// `offset_eraseinfo`: file offset of makedumpfile's erase records (0: none).
    pub offset_eraseinfo: u64,
    /// `size_eraseinfo`: bytes of erase records.
    pub size_eraseinfo: u64,
    /// `start_pfn_64`: `start_pfn` without the 32-bit limit (header version 6).
    pub start_pfn_64: u64,
    /// `end_pfn_64`: `end_pfn` without the 32-bit limit (header version 6).
    pub end_pfn_64: u64,
    /// `max_mapnr_64`: `max_mapnr` without the 32-bit limit (header version 6).
    pub max_mapnr_64: u64,
}

/// Both headers of a file: the header in block 0, the sub header at `block_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdumpHeaders {
    /// The `disk_dump_header` in block 0.
    pub header: DiskDumpHeader,
    /// The `kdump_sub_header` in block 1.
    pub sub: KdumpSubHeader,
}

impl DiskDumpHeader {
    /// The header in `abi`'s layout.
    pub fn encode(&self, abi: HeaderAbi) -> Vec<u8> {
        match abi {
            HeaderAbi::Bits64 => DiskDumpHeader64::from_neutral(self).as_bytes().to_vec(),
            HeaderAbi::Bits32 => DiskDumpHeader32::from_neutral(self).as_bytes().to_vec(),
        }
    }

    /// The header in `abi`'s layout at the start of `bytes`; an error when `bytes` is too
    /// short or has no kdump signature.
    pub fn decode(bytes: &[u8], abi: HeaderAbi) -> Result<Self, BadHeader> {
        let h = match abi {
            HeaderAbi::Bits64 => decode_wire::<DiskDumpHeader64>(bytes, "header")?.to_neutral(),
            HeaderAbi::Bits32 => decode_wire::<DiskDumpHeader32>(bytes, "header")?.to_neutral(),
        };
        if &h.signature != KDUMP_SIGNATURE && &h.signature != DISKDUMP_SIGNATURE {
            return Err(BadHeader("not a kdump file (no KDUMP signature)".into()));
        }
        Ok(h)
    }

    /// The header at the start of `bytes` (at least [`HEADER_PROBE`] bytes) and its ABI.
    pub fn decode_any(bytes: &[u8]) -> Result<(HeaderAbi, Self), BadHeader> {
        // The signature first: garbage is "not a kdump file", whatever its block size says.
        Self::decode(bytes, HeaderAbi::Bits64)?;
        let abi = HeaderAbi::detect(bytes)?;
        Ok((abi, Self::decode(bytes, abi)?))
    }
}

impl KdumpSubHeader {
    /// The sub header in `abi`'s layout.
    pub fn encode(&self, abi: HeaderAbi) -> Vec<u8> {
        match abi {
            HeaderAbi::Bits64 => KdumpSubHeader64::from_neutral(self).as_bytes().to_vec(),
            HeaderAbi::Bits32 => KdumpSubHeader32::from_neutral(self).as_bytes().to_vec(),
        }
    }

    /// The sub header in `abi`'s layout at the start of `bytes`.
    pub fn decode(bytes: &[u8], abi: HeaderAbi) -> Result<Self, BadHeader> {
        Ok(match abi {
            HeaderAbi::Bits64 => decode_wire::<KdumpSubHeader64>(bytes, "sub header")?.to_neutral(),
            HeaderAbi::Bits32 => decode_wire::<KdumpSubHeader32>(bytes, "sub header")?.to_neutral(),
        })
    }
}

impl KdumpHeaders {
    /// Block 0 up to the end of the sub header: the header at 0, zeros, the sub header at
    /// `header.block_size` (which must be at least the header's size).
    pub fn encode(&self, abi: HeaderAbi) -> Vec<u8> {
        let at = usize::try_from(self.header.block_size).unwrap_or(0);
        let head = self.header.encode(abi);
        assert!(at >= head.len(), "block size {at} below the header's size");
        let mut out = vec![0u8; at];
        out[..head.len()].copy_from_slice(&head);
        out.extend_from_slice(&self.sub.encode(abi));
        out
    }

    /// Both headers from the start of a file (its first `block_size` + sub header bytes).
    pub fn decode(bytes: &[u8]) -> Result<(HeaderAbi, Self), BadHeader> {
        let (abi, header) = DiskDumpHeader::decode_any(bytes)?;
        let at = usize::try_from(header.block_size)
            .ok()
            .filter(|&b| b >= abi.header_size())
            .ok_or_else(|| BadHeader(format!("block size {}", header.block_size)))?;
        let sub = KdumpSubHeader::decode(bytes.get(at..).unwrap_or_default(), abi)?;
        Ok((abi, KdumpHeaders { header, sub }))
    }
}

/// A kdump header that does not decode: too short, no signature, an impossible block size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHeader(pub String);

fn decode_wire<T: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    what: &str,
) -> Result<T, BadHeader> {
    T::read_from_prefix(bytes).map(|(t, _)| t).map_err(|_| {
        BadHeader(format!(
            "{what} needs {} bytes, found {}",
            size_of::<T>(),
            bytes.len()
        ))
    })
}

/// A value as one wire field, and back (a 32-bit field of a 64-bit value truncates).
trait Wire<T> {
    fn wire(v: T) -> Self;
    fn host(&self) -> T;
}

impl<T: Copy> Wire<T> for T {
    fn wire(v: T) -> Self {
        v
    }
    fn host(&self) -> T {
        *self
    }
}
impl Wire<u64> for le::U64 {
    fn wire(v: u64) -> Self {
        v.into()
    }
    fn host(&self) -> u64 {
        self.get()
    }
}
impl Wire<u64> for le::U32 {
    fn wire(v: u64) -> Self {
        (v as u32).into()
    }
    fn host(&self) -> u64 {
        self.get().into()
    }
}
impl Wire<u32> for le::U32 {
    fn wire(v: u32) -> Self {
        v.into()
    }
    fn host(&self) -> u32 {
        self.get()
    }
}
impl Wire<i32> for le::I32 {
    fn wire(v: i32) -> Self {
        v.into()
    }
    fn host(&self) -> i32 {
        self.get()
    }
}

/// The conversions between a neutral struct and one ABI's wire struct, from the field list.
macro_rules! wire_conversions {
    ($wire:ident <=> $neutral:ident { $($field:ident),* $(,)? } padding { $($pad:ident),* }) => {
        impl $wire {
            fn from_neutral(n: &$neutral) -> Self {
                $wire {
                    $($field: Wire::wire(n.$field),)*
                    $($pad: FromZeros::new_zeroed(),)*
                }
            }
            fn to_neutral(self) -> $neutral {
                $neutral {
                    $($field: Wire::host(&self.$field),)*
                }
            }
        }
    };
}

macro_rules! header_conversions {
    ($($wire:ident),*) => {$(
        wire_conversions!($wire <=> DiskDumpHeader {
            signature, header_version, utsname, timestamp_sec, timestamp_usec, status,
            block_size, sub_hdr_size, bitmap_blocks, max_mapnr, total_ram_blocks,
            device_blocks, written_blocks, current_cpu, nr_cpus,
        } padding { pad1 });
    )*};
}

macro_rules! sub_header_conversions {
    ($($wire:ident),*) => {$(
        wire_conversions!($wire <=> KdumpSubHeader {
            phys_base, dump_level, split, start_pfn, end_pfn, offset_vmcoreinfo,
            size_vmcoreinfo, offset_note, size_note, offset_eraseinfo, size_eraseinfo,
            start_pfn_64, end_pfn_64, max_mapnr_64,
        } padding {});
    )*};
}

header_conversions!(DiskDumpHeader64, DiskDumpHeader32);
sub_header_conversions!(KdumpSubHeader64, KdumpSubHeader32);

/// `struct disk_dump_header` as written by a 64-bit (x86_64) makedumpfile: 464 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct DiskDumpHeader64 {
    signature: [u8; 8],
    header_version: le::I32,
    utsname: NewUtsname,
    pad1: [u8; 6],
    timestamp_sec: le::U64,
    timestamp_usec: le::U64,
    status: le::U32,
    block_size: le::I32,
    sub_hdr_size: le::I32,
    bitmap_blocks: le::U32,
    max_mapnr: le::U32,
    total_ram_blocks: le::U32,
    device_blocks: le::U32,
    written_blocks: le::U32,
    current_cpu: le::U32,
    nr_cpus: le::I32,
}

/// `struct disk_dump_header` as written by a 32-bit (i686) makedumpfile: 452 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct DiskDumpHeader32 {
    signature: [u8; 8],
    header_version: le::I32,
    utsname: NewUtsname,
    pad1: [u8; 2],
    timestamp_sec: le::U32,
    timestamp_usec: le::U32,
    status: le::U32,
    block_size: le::I32,
    sub_hdr_size: le::I32,
    bitmap_blocks: le::U32,
    max_mapnr: le::U32,
    total_ram_blocks: le::U32,
    device_blocks: le::U32,
    written_blocks: le::U32,
    current_cpu: le::U32,
    nr_cpus: le::I32,
}

/// `struct kdump_sub_header` of a 64-bit dump: 104 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct KdumpSubHeader64 {
    phys_base: le::U64,
    dump_level: le::I32,
    split: le::I32,
    start_pfn: le::U64,
    end_pfn: le::U64,
    offset_vmcoreinfo: le::U64,
    size_vmcoreinfo: le::U64,
    offset_note: le::U64,
    size_note: le::U64,
    offset_eraseinfo: le::U64,
    size_eraseinfo: le::U64,
    start_pfn_64: le::U64,
    end_pfn_64: le::U64,
    max_mapnr_64: le::U64,
}

/// `struct kdump_sub_header` of an i686 dump (64-bit fields 4-aligned): 80 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct KdumpSubHeader32 {
    phys_base: le::U32,
    dump_level: le::I32,
    split: le::I32,
    start_pfn: le::U32,
    end_pfn: le::U32,
    offset_vmcoreinfo: le::U64,
    size_vmcoreinfo: le::U32,
    offset_note: le::U64,
    size_note: le::U32,
    offset_eraseinfo: le::U64,
    size_eraseinfo: le::U32,
    start_pfn_64: le::U64,
    end_pfn_64: le::U64,
    max_mapnr_64: le::U64,
}

const _: () = {
    assert!(size_of::<DiskDumpHeader64>() == 464);
    assert!(size_of::<DiskDumpHeader32>() == 452);
    assert!(size_of::<KdumpSubHeader64>() == 104);
    assert!(size_of::<KdumpSubHeader32>() == 80);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KdumpHeaders {
        KdumpHeaders {
            header: DiskDumpHeader {
                signature: *KDUMP_SIGNATURE,
                header_version: 6,
                utsname: NewUtsname {
                    sysname: NewUtsname::field("Linux"),
                    nodename: NewUtsname::field("(none)"),
                    release: NewUtsname::field("6.1.0"),
                    version: NewUtsname::field("unknown"),
                    machine: NewUtsname::field("x86_64"),
                    domainname: NewUtsname::field("(none)"),
                },
                timestamp_sec: 1_700_000_000,
                timestamp_usec: 0,
                status: 1,
                block_size: 4096,
                sub_hdr_size: 1,
                bitmap_blocks: 2,
                max_mapnr: 0x4_0000,
                total_ram_blocks: 0,
                device_blocks: 0,
                written_blocks: 0,
                current_cpu: 0,
                nr_cpus: 2,
            },
            sub: KdumpSubHeader {
                phys_base: 0x100_0000,
                dump_level: 31,
                offset_vmcoreinfo: 0x1100,
                size_vmcoreinfo: 0x800,
                offset_note: 0x1068,
                size_note: 0x1000,
                max_mapnr_64: 0x4_0000,
                ..Default::default()
            },
        }
    }

    #[test]
    fn both_abis_round_trip() {
        for (abi, machine, head, sub) in [
            (HeaderAbi::Bits64, "x86_64", 464, 104),
            (HeaderAbi::Bits32, "i686", 452, 80),
            // aarch64 is LP64: the x86_64 layout, told by its machine name.
            (HeaderAbi::Bits64, "aarch64", 464, 104),
        ] {
            let mut h = sample();
            h.header.utsname.machine = NewUtsname::field(machine);
            assert_eq!(h.header.encode(abi).len(), head);
            assert_eq!(h.sub.encode(abi).len(), sub);
            let bytes = h.encode(abi);
            assert_eq!(bytes.len(), 4096 + sub);
            assert_eq!(KdumpHeaders::decode(&bytes), Ok((abi, h)), "{machine}");
        }
    }

    /// The ABI of an unknown machine comes from where a plausible block size is.
    #[test]
    fn abi_from_block_size_when_machine_is_unknown() {
        for abi in [HeaderAbi::Bits64, HeaderAbi::Bits32] {
            let mut h = sample();
            h.header.utsname.machine = NewUtsname::field("mystery");
            let mut bytes = h.header.encode(abi);
            bytes.resize(HEADER_PROBE, 0);
            assert_eq!(HeaderAbi::detect(&bytes), Ok(abi));
        }
    }

    /// The 32-bit encoding keeps the 64-bit offsets, and its 32-bit fields truncate.
    #[test]
    fn the_32bit_sub_header_layout() {
        let s = sample().sub;
        let b = s.encode(HeaderAbi::Bits32);
        assert_eq!(b[0..4], 0x100_0000u32.to_le_bytes());
        assert_eq!(b[20..28], 0x1100u64.to_le_bytes()); // offset_vmcoreinfo, 4-aligned
        assert_eq!(b[72..80], 0x4_0000u64.to_le_bytes()); // max_mapnr_64
        let big = KdumpSubHeader {
            phys_base: 0x1_0000_0001,
            ..s
        };
        let back = KdumpSubHeader::decode(&big.encode(HeaderAbi::Bits32), HeaderAbi::Bits32);
        assert_eq!(back.unwrap().phys_base, 1);
    }

    #[test]
    fn truncated_or_garbage_headers_are_clear_errors() {
        let bytes = sample().encode(HeaderAbi::Bits64);
        let e = DiskDumpHeader::decode_any(&bytes[..100]).unwrap_err().0;
        assert!(e.contains("needs 464 bytes, found 100"), "{e}");
        let e = KdumpHeaders::decode(&bytes[..4096 + 50]).unwrap_err().0;
        assert!(e.contains("sub header needs 104 bytes, found 50"), "{e}");
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        let e = KdumpHeaders::decode(&garbage).unwrap_err().0;
        assert!(e.contains("no KDUMP signature"), "{e}");
        let mut bad = bytes.clone();
        bad[428..432].copy_from_slice(&12i32.to_le_bytes()); // block_size of the 64-bit ABI
        let e = KdumpHeaders::decode(&bad).unwrap_err().0;
        assert!(e.contains("block size"), "{e}");
    }
}
