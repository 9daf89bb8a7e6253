//! LiME and AVML files written by the format's write side ([`crate::format::lime`],
//! [`crate::format::avml`]: headers, and `snap`'s own frame encoder for AVML's compressed
//! data), including every malformed shape the reader must refuse.

use super::*;
use crate::image::{GuestImage, ImageFormat, OpenOptions};
use std::io::Write;

fn temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

fn header(magic: u32, version: u32, first: u64, last: u64) -> Vec<u8> {
    RangeHeader {
        magic,
        version,
        first,
        last,
    }
    .encode()
    .to_vec()
}

/// One uncompressed LiME range.
fn lime(first: u64, data: &[u8]) -> Vec<u8> {
    crate::format::lime::encode_range(first, data)
}

/// `data` as one snappy framed stream, the way AVML writes it.
fn frames(data: &[u8]) -> Vec<u8> {
    crate::format::avml::frame(data)
}

/// An AVML range around an already framed stream: header, stream, `u64` stream length.
fn avml_framed(first: u64, size: u64, stream: &[u8]) -> Vec<u8> {
    crate::format::avml::encode_range_framed(first, size, stream)
}

/// One AVML-compressed range.
fn avml(first: u64, data: &[u8]) -> Vec<u8> {
    crate::format::avml::encode_range(first, data)
}

/// Compressible bytes (snappy writes compressed chunks).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 64) as u8).wrapping_mul(3) ^ seed)
        .collect()
}

/// Incompressible bytes (snappy writes uncompressed chunks).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    guestcore_testkit::random::Rng::new(seed).bytes(len)
}

fn open(bytes: &[u8]) -> Result<LimeImage> {
    let f = temp(bytes);
    LimeImage::open(f.path())
}

/// The message of the format error `bytes` must give.
fn refused(bytes: &[u8]) -> String {
    match open(bytes) {
        Err(Error::Format { what, .. }) => what,
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(img) => panic!("expected a format error, got {:?}", img.ram()),
    }
}

/// Checks that reading `img` at `addr` gives `want`, in one read and in odd-sized pieces.
fn reads_as(img: &LimeImage, addr: u64, want: &[u8]) {
    let mut buf = vec![0u8; want.len()];
    img.read_at(addr, &mut buf).unwrap();
    assert!(buf == want, "read at {addr:#x}");
    for step in [1usize, 4093, 65536, 70000] {
        let mut at = 0;
        while at < want.len() {
            let n = step.min(want.len() - at);
            img.read_at(addr + at as u64, &mut buf[..n]).unwrap();
            assert!(buf[..n] == want[at..at + n], "at {:#x}", addr + at as u64);
            at += n;
        }
    }
}

#[test]
fn lime_ranges_are_lent_in_place() {
    let low = pattern(0x3000, 1);
    let high = noise(0x5000, 2);
    // File order differs from address order; a hole between the ranges.
    let mut file = lime(0x100000, &high);
    file.extend(lime(0x1000, &low));
    let f = temp(&file);
    let img = LimeImage::open(f.path()).unwrap();
    assert!(!img.compressed());
    assert_eq!(img.range_count(), 2);
    assert_eq!(
        img.ram().ranges(),
        &[
            PhysRange::new(0x1000, 0x3000),
            PhysRange::new(0x100000, 0x5000)
        ]
    );
    reads_as(&img, 0x1000, &low);
    reads_as(&img, 0x100000, &high);
    assert_eq!(img.slice(0x1010, 4).unwrap(), &low[0x10..0x14]);
    assert!(img.slice(0x3ffe, 4).is_none(), "past the range");
    assert!(img.slice(u64::MAX, 2).is_none());
    // The file offset of a range's bytes: right after its header.
    let (file_ref, off) = img.file_extent(0x100010, 0x100).unwrap();
    assert_eq!(off, 32 + 0x10);
    let mut b = vec![0u8; 0x100];
    std::os::unix::fs::FileExt::read_exact_at(file_ref, &mut b, off).unwrap();
    assert_eq!(b, &high[0x10..0x110]);
    assert_eq!(img.file_extent(0x1000, 0x10).unwrap().1, 32 + 0x5000 + 32);
    assert!(img.file_extent(0x3ff0, 0x20).is_none());
    // Holes.
    let mut b = [0u8; 8];
    assert!(matches!(
        img.read_at(0x3ffc, &mut b),
        Err(Error::NotInMemory { .. })
    ));
    assert!(matches!(
        img.read_at(0, &mut b),
        Err(Error::NotInMemory { .. })
    ));
    assert!(img.read_at(u64::MAX - 2, &mut b).is_err());
    // Released pages read back the same.
    let view = img.slice(0x100000, 0x5000).unwrap();
    img.release(0, u64::MAX);
    img.release(0x100800, 0x3000);
    assert_eq!(view, &high[..]);
    reads_as(&img, 0x100000, &high);
}

#[test]
fn adjacent_ranges_read_across() {
    let a = pattern(0x1000, 3);
    let b = pattern(0x1000, 4);
    let mut file = lime(0x1000, &b);
    file.extend(avml(0, &a));
    let img = open(&file).unwrap();
    assert!(img.compressed(), "one range is compressed");
    let mut both = a.clone();
    both.extend_from_slice(&b);
    reads_as(&img, 0, &both);
    assert!(img.slice(0xffc, 8).is_none());
    assert!(img.slice(0, 8).is_none(), "compressed ranges lend nothing");
    assert!(img.file_extent(0, 8).is_none());
    assert!(img.ram().contains(0, 0x2000));
}

#[test]
fn avml_ranges_decompress_on_demand() {
    // Compressible and incompressible data, neither a multiple of the 64 KiB chunk.
    let a = pattern(5 * MAX_CHUNK + 0x1234, 5);
    let b = noise(3 * MAX_CHUNK + 17, 6);
    let mut file = avml(0x200000, &b);
    file.extend(avml(0, &a));
    let stream = frames(&a);
    assert!(stream.len() < a.len() / 4, "the pattern compresses");
    let img = open(&file).unwrap();
    assert!(img.compressed());
    assert_eq!(
        img.ram().ranges(),
        &[
            PhysRange::new(0, a.len() as u64),
            PhysRange::new(0x200000, b.len() as u64)
        ]
    );
    assert_eq!(img.chunks.len(), 6 + 4);
    reads_as(&img, 0, &a);
    reads_as(&img, 0x200000, &b);
    // Across a chunk boundary, into the last short chunk, to the last byte.
    reads_as(&img, 0xfff0, &a[0xfff0..0x10010]);
    reads_as(&img, 0x200000 + b.len() as u64 - 3, &b[b.len() - 3..]);
    let mut x = [0u8; 4];
    assert!(matches!(
        img.read_at(0x200000 + b.len() as u64 - 2, &mut x),
        Err(Error::NotInMemory { .. })
    ));
    img.release(0, u64::MAX);
    reads_as(&img, 0x10000, &a[0x10000..0x30000]);
}

#[test]
fn reads_from_many_threads() {
    let a = pattern(8 * MAX_CHUNK, 7);
    let img = open(&avml(0x1000, &a)).unwrap();
    let img2 = open(&avml(0x1000, &noise(8 * MAX_CHUNK, 8))).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (img, img2, a) = (&img, &img2, &a);
            s.spawn(move || {
                let mut buf = [0u8; 333];
                for i in 0..200u64 {
                    let off = (i * 7919 + t * 104729) % (a.len() as u64 - 333);
                    img.read_at(0x1000 + off, &mut buf).unwrap();
                    assert!(buf[..] == a[off as usize..off as usize + 333]);
                    // Another source on the same thread: the cache tells them apart.
                    img2.read_at(0x1000 + off, &mut buf).unwrap();
                }
            });
        }
    });
}

#[test]
fn guest_image_opens_lime_and_avml() {
    let data = pattern(0x4000, 9);
    for (bytes, compressed, text) in [
        (lime(0x1000, &data), false, "LiME image"),
        (avml(0x1000, &data), true, "AVML (snappy) image"),
    ] {
        let f = temp(&bytes);
        let img = GuestImage::open(f.path(), &OpenOptions::default()).unwrap();
        assert_eq!(img.format, ImageFormat::Lime { compressed });
        assert_eq!(img.format.to_string(), text);
        assert_eq!(
            serde_json::to_value(img.format).unwrap(),
            serde_json::json!({ "lime": { "compressed": compressed } })
        );
        assert!(img.cpus.is_empty() && img.notes.is_empty() && img.vmcoreinfo.is_none());
        assert_eq!(img.memory.read_u64(0x1008).unwrap(), {
            u64::from_le_bytes(data[8..16].try_into().unwrap())
        });
        let opts = OpenOptions {
            layout: Some(crate::phys::layout::Layout::parse("0@").unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            GuestImage::open(f.path(), &opts),
            Err(Error::Unsupported(_))
        ));
    }
    // A broken LiME file is a format error, not a raw image.
    let f = temp(&lime(0, &data)[..40]);
    assert!(matches!(
        GuestImage::open(f.path(), &OpenOptions::default()),
        Err(Error::Format { .. })
    ));
}

#[test]
fn refuses_bad_headers() {
    let good = lime(0x1000, &pattern(0x1000, 1));
    assert!(refused(&[]).contains("empty file"));
    assert!(refused(&good[..20]).contains("too short for a range header"));
    // Trailing garbage: too short for a header, or a header-sized run with a bad magic.
    let mut v = good.clone();
    v.extend_from_slice(b"junk");
    assert!(refused(&v).contains("trailing garbage"), "{}", refused(&v));
    let mut v = good.clone();
    v.extend_from_slice(&[0x55; 64]);
    assert!(refused(&v).contains("bad magic 0x55555555 at offset 0x1020"));
    // A bad magic in the middle.
    let mut v = good.clone();
    let mut second = lime(0x8000, &[1; 16]);
    second[0] = b'X';
    v.extend(second);
    v.extend(lime(0x9000, &[2; 16]));
    assert!(refused(&v).contains("bad magic"));
    // Unknown versions, for each magic.
    let mut v = good.clone();
    v[4] = 2;
    assert!(refused(&v).contains("version 2"));
    let mut v = avml(0, &[1; 64]);
    v[4] = 1;
    assert!(refused(&v).contains("AVML header at offset 0x0 has version 1"));
    // Last below first; past 2^52.
    let mut v = header(LIME_MAGIC, 1, 0x2000, 0x1fff);
    v.extend_from_slice(&[0; 64]);
    assert!(refused(&v).contains("below the first"));
    let mut v = header(LIME_MAGIC, 1, PHYS_LIMIT - 4, PHYS_LIMIT + 3);
    v.extend_from_slice(&[0; 8]);
    assert!(refused(&v).contains("past 2^52"));
    let v = header(LIME_MAGIC, 1, 0, u64::MAX);
    assert!(refused(&v).contains("past 2^52"));
    // Data past the end of the file.
    assert!(refused(&good[..good.len() - 1]).contains("file ends"));
    let v = header(LIME_MAGIC, 1, 0, (1 << 40) - 1);
    assert!(refused(&v).contains("file ends"));
    // Overlap, in either file order.
    let mut v = lime(0x1000, &[1; 0x1000]);
    v.extend(lime(0x1fff, &[2; 2]));
    assert!(refused(&v).contains("ranges overlap"));
    let mut v = avml(0x1800, &[2; 0x1000]);
    v.extend(lime(0x1000, &[1; 0x1000]));
    assert!(refused(&v).contains("ranges overlap"));
}

#[test]
fn refuses_too_many_ranges() {
    let one = lime(0, &[7]);
    let mut v = Vec::with_capacity(one.len() * (MAX_RANGES + 1));
    for i in 0..=MAX_RANGES as u64 {
        v.extend(lime(i * 2, &[7]));
    }
    assert!(refused(&v).contains(&format!("more than {MAX_RANGES} ranges")));
    v.truncate(one.len() * MAX_RANGES);
    assert_eq!(open(&v).unwrap().ram().ranges().len(), MAX_RANGES);
}

/// A framed stream built chunk by chunk: `(type, body)`.
fn stream_of(chunks: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut v = STREAM_IDENTIFIER.to_vec();
    for (ty, body) in chunks {
        v.extend(crate::format::avml::chunk(*ty, body));
    }
    v
}

#[test]
fn refuses_bad_snappy_streams() {
    let data = pattern(3 * MAX_CHUNK, 2);
    let good = avml(0, &data);
    let stream = frames(&data);
    // Truncated: inside the stream, and before the trailer.
    assert!(refused(&good[..good.len() - 8 - 100]).contains("past the end of the file"));
    assert!(refused(&good[..good.len() - 3]).contains("compressed-size trailer"));
    // A trailer that disagrees with the stream.
    let mut v = good.clone();
    let n = v.len();
    v[n - 8] ^= 1;
    assert!(refused(&v).contains("its trailer says"));
    // More data than the header's range.
    let v = avml_framed(0, data.len() as u64 - 1, &stream);
    assert!(refused(&v).contains("more than the range's"));
    // Less data than the header's range: the stream runs into the trailer.
    let v = avml_framed(0, data.len() as u64 + 1, &stream);
    refused(&v);
    // No stream identifier.
    let v = avml_framed(0, data.len() as u64, &stream[10..]);
    assert!(refused(&v).contains("stream identifier"));
    // A reserved unskippable chunk type; skippable ones and padding are skipped.
    let v = avml_framed(0, 4, &stream_of(&[(0x02, vec![0; 8])]));
    assert!(refused(&v).contains("unskippable chunk type 0x02"));
    let raw = frames(&[9; 4]);
    let mut s = stream_of(&[(0xfe, vec![0; 5]), (0x80, vec![1; 3])]);
    s.extend_from_slice(&raw[10..]);
    let img = open(&avml_framed(0, 4, &s)).unwrap();
    assert_eq!(img.read_u32(0).unwrap(), 0x0909_0909);
    // A compressed chunk claiming more than 64 KiB (varint 65537), and an uncompressed one
    // holding more.
    let v = avml_framed(
        0,
        0x20000,
        &stream_of(&[(0x00, vec![0, 0, 0, 0, 0x81, 0x80, 0x04, 0])]),
    );
    assert!(refused(&v).contains("claims 65537 uncompressed bytes"));
    let v = avml_framed(0, 0x20000, &stream_of(&[(0x01, vec![0; 4 + 65537])]));
    assert!(refused(&v).contains("claims 65537"));
    // A compressed chunk longer than any 64 KiB chunk compresses to.
    let v = avml_framed(0, 0x20000, &stream_of(&[(0x00, vec![0; 80000])]));
    assert!(refused(&v).contains("more than a 64 KiB chunk can take"));
    // A bad length varint.
    let v = avml_framed(0, 4, &stream_of(&[(0x00, vec![0, 0, 0, 0, 0xff])]));
    assert!(refused(&v).contains("bad uncompressed length"));
    // Chunks too short for their CRC.
    let v = avml_framed(0, 4, &stream_of(&[(0x01, vec![0; 3])]));
    assert!(refused(&v).contains("too short"));
}

#[test]
fn corrupt_chunks_fail_when_read() {
    // One compressible range and one stored range: flip a byte inside the second chunk's
    // payload of each; the CRC (or the decoder) catches it on the read, not at open.
    for data in [pattern(3 * MAX_CHUNK, 3), noise(3 * MAX_CHUNK, 4)] {
        let good = avml(0, &data);
        let img = open(&good).unwrap();
        let c = img.chunks[1];
        let mut v = good.clone();
        v[(c.offset + 4 + 4 + u64::from(c.len) / 2) as usize] ^= 0x40;
        let img = open(&v).unwrap();
        reads_as(&img, 0, &data[..MAX_CHUNK]);
        let mut buf = vec![0u8; 16];
        let err = img.read_at(MAX_CHUNK as u64 + 8, &mut buf).unwrap_err();
        assert!(
            matches!(&err, Error::Format { what, .. } if what.contains("corrupt snappy chunk")),
            "{err}"
        );
        // The failure is not cached: it fails again, and good chunks still read.
        assert!(img.read_at(MAX_CHUNK as u64, &mut buf).is_err());
        reads_as(&img, 2 * MAX_CHUNK as u64, &data[2 * MAX_CHUNK..]);
    }
    // A CRC that disagrees with correct data.
    let data = pattern(MAX_CHUNK, 5);
    let mut v = avml(0, &data);
    v[32 + 10 + 4] ^= 1;
    let img = open(&v).unwrap();
    let err = img.read_u64(0).unwrap_err();
    assert!(err.to_string().contains("corrupt snappy chunk"), "{err}");
}
