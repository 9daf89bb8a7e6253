//! LiME memory images: what the Linux Memory Extractor kernel module writes, and what AVML
//! (Microsoft's acquisition tool) writes uncompressed. Incident responders take a Linux
//! machine's RAM this way without a hypervisor; crash, volatility and drgn users get their
//! memory as these files. AVML's snappy-compressed variant shares the range header and is in
//! [`super::avml`]. The facts are from AVML's MIT-licensed reader and writer (`src/image.rs`,
//! `src/bin/avml/convert.rs`), which reads and writes both variants:
//!
//! - A file is a sequence of ranges, each a 32-byte header then its data, with nothing between
//!   ranges and nothing after the last. The header, little-endian: `u32` magic, `u32` version,
//!   `u64` first guest-physical address, `u64` last address (**inclusive**: a range holds
//!   `last - first + 1` bytes), 8 reserved bytes (written as zero).
//! - LiME ranges: magic [`LIME_MAGIC`] (the bytes `EMiL`), version [`LIME_VERSION`], then the
//!   range's bytes, raw.
//! - A file may mix LiME and AVML ranges; AVML's converter handles each range by its own
//!   header.
//!
//! The read side is [`RangeHeader::decode`] (the reader that maps a file and indexes its
//! ranges is [`crate::phys::lime`]); the write side, [`RangeHeader::encode`] and
//! [`encode_range`], makes files for tests and fuzz seeds.

use super::avml::{AVML_MAGIC, AVML_VERSION};

/// Magic of an uncompressed LiME range header (the bytes `EMiL`).
pub const LIME_MAGIC: u32 = 0x4C69_4D45;
/// The version of an uncompressed LiME range header.
pub const LIME_VERSION: u32 = 1;
/// Bytes of one range header.
pub const HEADER_LEN: u64 = 32;

/// True when `head` starts like a LiME or AVML file.
pub fn is_lime(head: &[u8]) -> bool {
    head.starts_with(&LIME_MAGIC.to_le_bytes()) || head.starts_with(&AVML_MAGIC.to_le_bytes())
}

/// One range header, LiME or AVML, as the file holds it (nothing checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeHeader {
    /// [`LIME_MAGIC`] or [`AVML_MAGIC`].
    pub magic: u32,
    /// [`LIME_VERSION`] or [`AVML_VERSION`].
    pub version: u32,
    /// Guest-physical address of the range's first byte.
    pub first: u64,
    /// Guest-physical address of its last byte (inclusive).
    pub last: u64,
}

impl RangeHeader {
    /// The header of an uncompressed range of `len` (at least 1) bytes from `first`.
    pub fn lime(first: u64, len: u64) -> Self {
        RangeHeader {
            magic: LIME_MAGIC,
            version: LIME_VERSION,
            first,
            last: first + len - 1,
        }
    }

    /// The header of an AVML-compressed range of `len` (at least 1) uncompressed bytes from
    /// `first`.
    pub fn avml(first: u64, len: u64) -> Self {
        RangeHeader {
            magic: AVML_MAGIC,
            version: AVML_VERSION,
            ..Self::lime(first, len)
        }
    }

    /// The header at the start of `bytes`; `None` when fewer than [`HEADER_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..HEADER_LEN as usize)?;
        let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let quad = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        Some(RangeHeader {
            magic: word(0),
            version: word(4),
            first: quad(8),
            last: quad(16),
        })
    }

    /// The 32 header bytes (the reserved ones zero).
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..4].copy_from_slice(&self.magic.to_le_bytes());
        h[4..8].copy_from_slice(&self.version.to_le_bytes());
        h[8..16].copy_from_slice(&self.first.to_le_bytes());
        h[16..24].copy_from_slice(&self.last.to_le_bytes());
        h
    }
}

/// One uncompressed LiME range: its header, then `data` (not empty) at guest-physical
/// `first`.
pub fn encode_range(first: u64, data: &[u8]) -> Vec<u8> {
    let mut v = RangeHeader::lime(first, data.len() as u64)
        .encode()
        .to_vec();
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = RangeHeader::lime(0x1000, 0x2000);
        assert_eq!(h.last, 0x2fff);
        let bytes = h.encode();
        assert_eq!(&bytes[..4], b"EMiL");
        assert_eq!(bytes[24..], [0; 8]);
        assert_eq!(RangeHeader::decode(&bytes), Some(h));
        assert_eq!(RangeHeader::decode(&bytes[..31]), None);
        assert!(is_lime(&bytes) && is_lime(&RangeHeader::avml(0, 1).encode()));
        assert!(!is_lime(b"EMi"));
        let r = encode_range(0x1000, &[7; 5]);
        assert_eq!(r.len(), 32 + 5);
        assert_eq!(RangeHeader::decode(&r).unwrap().last, 0x1004);
    }
}
