//! Per-page compression for kdump files, and the matching decompression used by the reader.
//!
//! Every page is compressed on its own (readers decompress one page at a time). A "page" here
//! is one kdump block: 4 KiB in what guestcore writes, up to [`MAX_BLOCK`] (64 KiB) in files of
//! arm64 kernels with larger pages and in QEMU's aarch64 dumps; [`decompress_page`] takes any
//! length, and [`PageCompressor::for_block`] makes a compressor for larger blocks. A compressor
//! keeps its state (zlib stream, LZO hash table, zstd context) and is reused for every page a
//! thread handles. Levels: zstd 1 (as makedumpfile); zlib 2, because zlib-rs (like zlib-ng)
//! runs level 1 as "deflate_quick" (static Huffman codes only: 10% bigger than makedumpfile's
//! level 1 with classic zlib), while its level 2 is classic zlib's level-1 algorithm
//! (deflate_fast): a little smaller than makedumpfile's output, at about 2.4x the CPU of
//! zlib-rs level 1.
//!
//! LZO pages are compressed by our own greedy LZO1X encoder ([`super::lzo1x`]); lzokay only
//! decompresses them (and checks the encoder in its tests, as an independent decoder). On the
//! 32k pages a `-d 31` dump of the 4 GiB real guest keeps, one thread, it takes 89 ms where
//! liblzo2's LZO1X-1 (makedumpfile `-l`) takes 116 ms, for 12% smaller output (32.2 MB
//! against 36.6 MB).

pub use crate::format::kdump::Compression;

/// The kdump page size this crate writes and reads: [`crate::addr::PAGE_SIZE`], as a length.
pub const PAGE: usize = crate::addr::PAGE_SIZE as usize;

/// The largest kdump block the codecs take (64 KiB pages; LZO1X's 16-bit positions).
pub const MAX_BLOCK: usize = super::lzo1x::MAX_INPUT;

impl Compression {
    /// The most bytes one page takes as stored: its compressed form's bound, or the raw page.
    pub fn page_bound(self) -> usize {
        self.block_bound(PAGE)
    }

    /// The most bytes one block of `len` bytes takes as stored: its compressed form's bound,
    /// or the raw block.
    pub fn block_bound(self, len: usize) -> usize {
        match self {
            Compression::None | Compression::Zlib | Compression::Zstd => len,
            Compression::Lzo => super::lzo1x::worst_case(len),
            Compression::Snappy => snap::raw::max_compress_len(len),
        }
    }
}

/// See the module doc: zlib-rs level 2 = classic zlib level 1 (makedumpfile's `Z_BEST_SPEED`).
const ZLIB_LEVEL: flate2::Compression = flate2::Compression::new(2);

enum Engine {
    None,
    Zlib(flate2::Compress),
    Lzo(super::lzo1x::Encoder),
    Snappy(Box<snap::raw::Encoder>),
    Zstd(Option<zstd::bulk::Compressor<'static>>),
}

/// One thread's page compressor (state reused from page to page).
pub struct PageCompressor {
    kind: Compression,
    engine: Engine,
    out: Vec<u8>,
}

/// Shows the kind and the output buffer's size, not the engine's state or the bytes.
impl std::fmt::Debug for PageCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCompressor")
            .field("kind", &self.kind)
            .field("out_len", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl PageCompressor {
    /// A compressor for `kind`, of pages of at most [`PAGE`] bytes.
    pub fn new(kind: Compression) -> Self {
        Self::for_block(kind, PAGE)
    }

    /// A compressor for `kind`, of blocks of at most `block` bytes (the 16 KiB and 64 KiB
    /// pages of arm64 kernels).
    ///
    /// # Panics
    /// When `block` is over [`MAX_BLOCK`].
    pub fn for_block(kind: Compression, block: usize) -> Self {
        assert!(
            block <= MAX_BLOCK,
            "kdump block of {block} bytes (max {MAX_BLOCK})"
        );
        let engine = match kind {
            Compression::None => Engine::None,
            Compression::Zlib => Engine::Zlib(flate2::Compress::new(ZLIB_LEVEL, true)),
            Compression::Lzo => Engine::Lzo(super::lzo1x::Encoder::new()),
            Compression::Snappy => Engine::Snappy(Box::new(snap::raw::Encoder::new())),
            // A context that cannot be created leaves pages raw, which is always correct.
            Compression::Zstd => Engine::Zstd(zstd::bulk::Compressor::new(1).ok()),
        };
        let cap = if kind == Compression::None {
            0
        } else {
            kind.block_bound(block)
        };
        PageCompressor {
            kind,
            engine,
            out: vec![0; cap],
        }
    }

    /// The compression this compressor does.
    pub fn kind(&self) -> Compression {
        self.kind
    }

    /// Compresses one page (at most the block this compressor was made for); `None` when the
    /// method does not make it strictly smaller (the page is then stored raw, as makedumpfile
    /// does).
    pub fn compress(&mut self, page: &[u8]) -> Option<&[u8]> {
        let n = compress_with(&mut self.engine, page, &mut self.out)?;
        Some(&self.out[..n])
    }

    /// [`Self::compress`] straight into `dst`, which must hold at least
    /// [`Compression::page_bound`] bytes; returns the compressed length.
    pub fn compress_into(&mut self, page: &[u8], dst: &mut [u8]) -> Option<usize> {
        compress_with(&mut self.engine, page, dst)
    }
}

fn compress_with(engine: &mut Engine, page: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = match engine {
        Engine::None => return None,
        Engine::Zlib(z) => {
            z.reset();
            // At most one page of output: a stream that does not end in it did not shrink.
            let lim = page.len().min(out.len());
            let out = &mut out[..lim];
            match z.compress(page, out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => z.total_out() as usize,
                _ => return None,
            }
        }
        Engine::Lzo(e) => e.compress(page, out),
        Engine::Snappy(e) => e.compress(page, out).ok()?,
        Engine::Zstd(c) => c.as_mut()?.compress_to_buffer(page, out).ok()?,
    };
    (n < page.len()).then_some(n)
}

/// A stored page that does not decompress to one page.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BadPage {
    /// The page's compression.
    pub method: Compression,
    /// What was wrong, in the codec's words.
    pub detail: String,
}

/// Decompresses one stored page into `out`, which is one page (one block of the file: 4 KiB to
/// 64 KiB) long: anything that does not decompress to exactly `out.len()` bytes is an error.
pub fn decompress_page(kind: Compression, src: &[u8], out: &mut [u8]) -> Result<(), BadPage> {
    let bad = |detail: String| BadPage {
        method: kind,
        detail,
    };
    let n = match kind {
        Compression::None => {
            if src.len() != out.len() {
                return Err(bad(format!(
                    "raw page has size {} (want {})",
                    src.len(),
                    out.len()
                )));
            }
            out.copy_from_slice(src);
            return Ok(());
        }
        Compression::Zlib => {
            let mut d = flate2::Decompress::new(true);
            match d.decompress(src, out, flate2::FlushDecompress::Finish) {
                Ok(flate2::Status::StreamEnd) => d.total_out() as usize,
                Ok(_) => return Err(bad("zlib data does not end within one page".into())),
                Err(e) => return Err(bad(format!("zlib: {e}"))),
            }
        }
        Compression::Lzo => {
            lzokay::decompress::decompress(src, out).map_err(|e| bad(format!("lzo: {e:?}")))?
        }
        Compression::Snappy => {
            let len = snap::raw::decompress_len(src).map_err(|e| bad(format!("snappy: {e}")))?;
            if len != out.len() {
                return Err(bad(format!("snappy data decompresses to {len} bytes")));
            }
            snap::raw::Decoder::new()
                .decompress(src, out)
                .map_err(|e| bad(format!("snappy: {e}")))?
        }
        Compression::Zstd => {
            zstd::bulk::decompress_to_buffer(src, out).map_err(|e| bad(format!("zstd: {e}")))?
        }
    };
    if n != out.len() {
        return Err(bad(format!(
            "{kind} data decompresses to {n} bytes (want {})",
            out.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_and_random_stays_raw() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog. "
            .iter()
            .copied()
            .cycle()
            .take(PAGE)
            .collect();
        let mut x = 0x1234_5678_9abc_def0u64;
        let random: Vec<u8> = (0..PAGE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for kind in Compression::ALL {
            let mut c = PageCompressor::new(kind);
            if kind == Compression::None {
                assert!(c.compress(&text).is_none());
                continue;
            }
            let z = c.compress(&text).expect("text compresses").to_vec();
            assert!(z.len() < PAGE / 4, "{kind}: {}", z.len());
            let mut out = vec![0u8; PAGE];
            decompress_page(kind, &z, &mut out).unwrap();
            assert_eq!(out, text, "{kind}");
            // Second use of the same compressor gives the same result.
            assert_eq!(c.compress(&text).unwrap(), &z[..], "{kind}");
            assert!(c.compress(&random).is_none(), "{kind}: random page shrank");
            // Garbage and truncated data are errors, not panics.
            assert!(
                decompress_page(kind, &z[..z.len() / 2], &mut out).is_err(),
                "{kind}"
            );
            assert!(
                decompress_page(kind, &random[..100], &mut out).is_err(),
                "{kind}"
            );
        }
    }

    /// 16 KiB and 64 KiB blocks round trip in every method; a block decompressed into a
    /// buffer of another size is an error.
    #[test]
    fn larger_blocks_round_trip() {
        for block in [16 << 10, MAX_BLOCK] {
            let text: Vec<u8> = (0..block).map(|i| b"kdump blocks "[i % 13]).collect();
            for kind in Compression::ALL {
                let mut c = PageCompressor::for_block(kind, block);
                if kind == Compression::None {
                    assert!(c.compress(&text).is_none());
                    continue;
                }
                let z = c.compress(&text).expect("text compresses").to_vec();
                assert!(z.len() < block / 8, "{kind} {block}: {}", z.len());
                assert!(z.len() <= kind.block_bound(block));
                let mut out = vec![0u8; block];
                decompress_page(kind, &z, &mut out).unwrap();
                assert!(out == text, "{kind} {block}: bytes differ");
                let mut small = vec![0u8; block / 2];
                let e = decompress_page(kind, &z, &mut small);
                assert!(e.is_err(), "{kind} {block}: into half a block: {e:?}");
            }
        }
    }
}
