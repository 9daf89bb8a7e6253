#![no_main]
//! Page decompression (zlib, LZO, snappy, zstd, raw) of hostile stored pages; the first byte
//! picks the codec. Also: what the compressor stores decompresses to the same page.
use guestcore::codec::{decompress_page, Compression, PageCompressor, PAGE};
use libfuzzer_sys::fuzz_target;

const KINDS: [Compression; 5] = [
    Compression::None,
    Compression::Zlib,
    Compression::Lzo,
    Compression::Snappy,
    Compression::Zstd,
];

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let kind = KINDS[k as usize % KINDS.len()];
    let mut out = vec![0u8; PAGE];
    let _ = decompress_page(kind, rest, &mut out);
    // Round trip of a page made from the input.
    let mut page = vec![0u8; PAGE];
    for (i, b) in page.iter_mut().enumerate() {
        *b = rest.get(i % rest.len().max(1)).copied().unwrap_or(0);
    }
    let mut comp = PageCompressor::new(kind);
    let mut stored = vec![0u8; kind.page_bound()];
    if let Some(n) = comp.compress_into(&page, &mut stored) {
        decompress_page(kind, &stored[..n], &mut out).expect("own output decompresses");
        assert_eq!(out, page);
    }
});
