//! AVML's snappy-compressed memory images: LiME's range header ([`super::lime`]) with its
//! own magic, and the range's bytes as one snappy *framed* stream. AVML (Microsoft's Linux
//! memory acquisition tool) writes these by default. The facts are from AVML's MIT-licensed
//! `src/image.rs`, `src/io/snappy.rs` and `src/bin/avml/convert.rs`, and from the snappy
//! framing format (`framing_format.txt` of google/snappy):
//!
//! - A compressed range: header with magic [`AVML_MAGIC`] (the bytes `AVML`) and version
//!   [`AVML_VERSION`], then the snappy framed stream of the range's bytes, then a `u64`
//!   (little-endian) holding the stream's length in bytes ([`TRAILER_LEN`]).
//! - The framed stream: a stream identifier chunk ([`STREAM_IDENTIFIER`]), then chunks, each
//!   a type byte and a 24-bit little-endian length, then that many bytes. Data chunks
//!   ([`CHUNK_COMPRESSED`], [`CHUNK_UNCOMPRESSED`]) start with the masked CRC-32C of their
//!   uncompressed bytes and hold at most [`MAX_CHUNK`] uncompressed bytes; a compressed
//!   chunk's payload is raw snappy, whose first varint is its uncompressed length. Types
//!   `0x02..=0x7f` are reserved and unskippable; `0x80..=0xfe` (padding is `0xfe`) are
//!   skipped.
//! - AVML leaves out all-zero blocks (its ranges are cut at 16 MiB and an all-zero block gets
//!   no header), so RAM that was zero can be a hole in the file.
//!
//! The reader ([`crate::phys::lime`]) indexes these chunks; the write side here
//! ([`encode_range`], [`encode_range_framed`], [`frame`], [`chunk`]) makes files, well-formed
//! or not, for tests and fuzz seeds.

use super::lime::RangeHeader;
use std::io::Write;

/// Magic of an AVML snappy-compressed range header (the bytes `AVML`).
pub const AVML_MAGIC: u32 = 0x4C4D_5641;
/// The version of an AVML-compressed range header.
pub const AVML_VERSION: u32 = 2;
/// Bytes after a compressed range's stream: its length, a `u64`.
pub const TRAILER_LEN: u64 = 8;
/// Most uncompressed bytes of one snappy frame chunk (the framing format's limit).
pub const MAX_CHUNK: usize = 1 << 16;
/// The snappy framing format's stream identifier chunk.
pub const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Chunk type of the stream identifier.
pub const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;
/// Chunk type of a snappy-compressed data chunk.
pub const CHUNK_COMPRESSED: u8 = 0x00;
/// Chunk type of an uncompressed (stored) data chunk.
pub const CHUNK_UNCOMPRESSED: u8 = 0x01;
/// Bytes of a chunk header: the type and a 24-bit length.
pub const CHUNK_HEADER_LEN: u64 = 4;
/// Bytes of a data chunk's masked CRC-32C, at the start of its body.
pub const CRC_LEN: u64 = 4;

/// `data` as one snappy framed stream, the way AVML writes it (`snap::write::FrameEncoder`).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut enc = snap::write::FrameEncoder::new(Vec::new());
    enc.write_all(data).expect("writing to a Vec");
    enc.into_inner().expect("writing to a Vec")
}

/// One chunk: the type byte, the 24-bit length of `body`, `body` (a data chunk's body starts
/// with its CRC: the caller writes it). For streams built chunk by chunk.
pub fn chunk(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty];
    v.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    v.extend_from_slice(body);
    v
}

/// An AVML range around an already framed `stream` said to hold `size` (at least 1) bytes
/// from `first`: header, stream, trailer. The stream and the size need not agree (for files
/// a reader must refuse).
pub fn encode_range_framed(first: u64, size: u64, stream: &[u8]) -> Vec<u8> {
    let mut v = RangeHeader::avml(first, size).encode().to_vec();
    v.extend_from_slice(stream);
    v.extend_from_slice(&(stream.len() as u64).to_le_bytes());
    v
}

/// One AVML-compressed range of `data` (not empty) at guest-physical `first`.
pub fn encode_range(first: u64, data: &[u8]) -> Vec<u8> {
    encode_range_framed(first, data.len() as u64, &frame(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_header_stream_trailer() {
        let data = [5u8; 100];
        let r = encode_range(0x2000, &data);
        let h = RangeHeader::decode(&r).unwrap();
        assert_eq!(h, RangeHeader::avml(0x2000, 100));
        assert_eq!(&r[..4], b"AVML");
        assert!(r[32..].starts_with(STREAM_IDENTIFIER));
        let stream_len = r.len() as u64 - 32 - TRAILER_LEN;
        assert_eq!(r[r.len() - 8..], stream_len.to_le_bytes());
        assert_eq!(chunk(CHUNK_UNCOMPRESSED, &[1, 2]), [1, 2, 0, 0, 1, 2]);
    }
}
