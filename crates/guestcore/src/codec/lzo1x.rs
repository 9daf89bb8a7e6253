//! A fast greedy LZO1X encoder for small blocks (one kdump page), written from the stream
//! format (the Linux kernel's `Documentation/staging/lzo.rst`), not from any LZO compressor.
//!
//! Its output is a standard LZO1X stream: liblzo2's `lzo1x_decompress_safe` (makedumpfile,
//! crash, libkdumpfile), the Linux kernel's decompressor and lzokay's all decode it.
//!
//! # The instructions it emits
//!
//! ```text
//! first byte 17+n        n = 1..=238 literals at the stream start (state = min(n, 4))
//! 0000LLLL [ext]         4.. literals, after a match whose S bits are 0 (state 0);
//!                        length 3+L, or for L = 0: 18 + ext (also used at the start for > 238)
//! 01LDDDSS HHHHHHHH      M2: length 3+L (3..4), distance 1 + (H<<3 | D)      (<= 2048)
//! 1LLDDDSS HHHHHHHH      M2: length 5+LL (5..8), distance 1 + (H<<3 | D)     (<= 2048)
//! 001LLLLL [ext] DS DS   M3: length 2+L, or for L = 0: 33 + ext; 16-bit LE word W:
//!                        distance 1 + (W>>2) (<= 16384), S = W & 3
//! 0001HLLL [ext] DS DS   M4: length 2+L, or for L = 0: 9 + ext; distance
//!                        16384 + (H<<14 | W>>2) (16385..=49151)
//! 0x11 0x00 0x00         end of stream (an M4 with distance 16384)
//! ```
//!
//! `ext` is the zero-byte length extension: k zero bytes then one non-zero byte b add
//! `255*k + b`. The 2 low bits S of a match are the number (0..=3) of literals that follow it
//! directly, with no instruction of their own; a run of 4 or more literals after a match gets
//! its own `0000LLLL` instruction (the match then has S = 0).
//!
//! # The search
//!
//! Greedy, LZ4-like: a 4096-entry table maps a hash of the next 4 bytes to the last position
//! that had it (16-bit positions, so blocks are at most 64 KiB; the table is cleared per block,
//! 8 KiB of memset); a candidate is verified, extended backwards over pending literals and
//! forwards 8 bytes at a time. Minimum match is 4 bytes. Over data that does not match, the
//! probe step grows with the length of the pending literal run (1 + run / 16), so
//! incompressible pages cost a few hundred probes.
//!
//! That step trades ratio for speed. Growing it by run / 32 (liblzo2's LZO1X-1 rule) costs
//! about 10% more time on the pages a `-d 31` dump keeps, for 2.7% smaller output; by run / 8,
//! 17% less time for 5.6% more output, but a repeat that follows more than ~300 unmatched
//! bytes (a page of identical 300-byte records) is then often missed altogether, as the
//! sparse probes of the second copy no longer line up with those of the first. Run / 16
//! finds repeats of periods up to 551 bytes (the `periods` test checks up to 300).

/// The largest block [`Encoder::compress`] takes.
pub(super) const MAX_INPUT: usize = 64 * 1024;

/// The most bytes [`Encoder::compress`] writes for `n` input bytes (the usual LZO1X bound).
pub(super) const fn worst_case(n: usize) -> usize {
    n + n / 16 + 64 + 3
}

const HASH_BITS: u32 = 12;
/// Over data that does not match, the probe step is 1 + (pending literals >> this).
const SKIP_SHIFT: usize = 4;
const MIN_MATCH: usize = 4;
const M2_MAX_LEN: usize = 8;
const M2_MAX_DIST: usize = 2048;
const M3_MAX_DIST: usize = 16384;
const M4_MAX_DIST: usize = 49151;
const M3_MAX_SHORT_LEN: usize = 33;
const M4_MAX_SHORT_LEN: usize = 9;
/// The end-of-stream instruction.
const END: [u8; 3] = [0x11, 0, 0];

/// An LZO1X block compressor; keep one per thread and reuse it (the output depends only on the
/// input, never on earlier blocks).
pub(super) struct Encoder {
    /// Hash of 4 bytes -> the last position that had it (0 after the per-block clear: position
    /// 0 is a candidate like any other, verified before use).
    table: Box<[u16; 1 << HASH_BITS]>,
}

/// Shows only the table's size: its contents are scratch state.
impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("table_entries", &self.table.len())
            .finish()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn read_u32(s: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(s[i..i + 4].try_into().unwrap())
}

#[inline(always)]
fn read_u64(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().unwrap())
}

#[inline(always)]
fn hash(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// Bytes equal at `a..` and `b..` (a < b), up to the end of `s`.
#[inline(always)]
fn common(s: &[u8], mut a: usize, mut b: usize) -> usize {
    let start = b;
    while b + 8 <= s.len() {
        let x = read_u64(s, a) ^ read_u64(s, b);
        if x != 0 {
            return b - start + (x.trailing_zeros() / 8) as usize;
        }
        a += 8;
        b += 8;
    }
    while b < s.len() && s[a] == s[b] {
        a += 1;
        b += 1;
    }
    b - start
}

/// Output cursor.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
    /// Where the S bits of the last match are (the byte whose 2 low bits count the literals
    /// that follow it); `None` before the first match.
    s_at: Option<usize>,
}

impl Out<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    /// Zero-byte length extension of `r` (>= 1).
    #[inline(always)]
    fn ext(&mut self, mut r: usize) {
        debug_assert!(r >= 1);
        while r > 255 {
            self.byte(0);
            r -= 255;
        }
        self.byte(r as u8);
    }

    /// The literals `lit` (any length, 0 included), encoded for where the stream is.
    #[inline(always)]
    fn literals(&mut self, src: &[u8], from: usize, to: usize) {
        let lit = &src[from..to];
        let n = lit.len();
        if n == 0 {
            return;
        }
        match self.s_at {
            // Stream start: state 0, and the special first bytes 18..=255.
            None if n <= 238 => self.byte(17 + n as u8),
            // 1..=3 literals after a match ride in its S bits.
            Some(s) if n <= 3 => self.buf[s] |= n as u8,
            _ if n <= 18 => self.byte((n - 3) as u8),
            _ => {
                self.byte(0);
                self.ext(n - 18);
            }
        }
        // A short run is copied as one 16-byte move (the bytes past it are overwritten by
        // what comes next, or lie past the stream's end), not by a call to memcpy.
        if n <= 16 && from + 16 <= src.len() && self.pos + 16 <= self.buf.len() {
            self.buf[self.pos..self.pos + 16].copy_from_slice(&src[from..from + 16]);
        } else {
            self.buf[self.pos..self.pos + n].copy_from_slice(lit);
        }
        self.pos += n;
    }

    /// A match of `len` (>= 3) bytes at `dist` (1..=49151) back, with S = 0 for now.
    #[inline(always)]
    fn matched(&mut self, len: usize, dist: usize) {
        debug_assert!(len >= 3 && (1..=M4_MAX_DIST).contains(&dist));
        if len <= M2_MAX_LEN && dist <= M2_MAX_DIST {
            let d = dist - 1;
            self.s_at = Some(self.pos);
            self.byte((((len - 1) << 5) | ((d & 7) << 2)) as u8);
            self.byte((d >> 3) as u8);
            return;
        }
        let (w, short_max) = if dist <= M3_MAX_DIST {
            let l = if len <= M3_MAX_SHORT_LEN { len - 2 } else { 0 };
            self.byte(0x20 | l as u8);
            (dist - 1, M3_MAX_SHORT_LEN)
        } else {
            let d = dist - M3_MAX_DIST;
            let h = ((d >> 11) & 8) as u8;
            let l = if len <= M4_MAX_SHORT_LEN { len - 2 } else { 0 };
            self.byte(0x10 | h | l as u8);
            (d & 0x3fff, M4_MAX_SHORT_LEN)
        };
        if len > short_max {
            self.ext(len - short_max);
        }
        self.s_at = Some(self.pos);
        let w = ((w << 2) as u16).to_le_bytes();
        self.byte(w[0]);
        self.byte(w[1]);
    }
}

impl Encoder {
    /// A fresh encoder (8 KiB of hash table).
    pub(super) fn new() -> Self {
        Encoder {
            table: Box::new([0; 1 << HASH_BITS]),
        }
    }

    /// Compresses `src` (at most [`MAX_INPUT`] bytes) into `dst`, which must hold at least
    /// [`worst_case`]`(src.len())` bytes; returns the length of the LZO1X stream written.
    ///
    /// # Panics
    /// When `src` is too long or `dst` too short.
    pub(super) fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> usize {
        let n = src.len();
        assert!(n <= MAX_INPUT, "LZO block of {n} bytes (max {MAX_INPUT})");
        assert!(dst.len() >= worst_case(n), "LZO output buffer too small");
        let mut out = Out {
            buf: dst,
            pos: 0,
            s_at: None,
        };
        let mut anchor = 0; // first pending literal
        if n > MIN_MATCH {
            // 8 KiB: as cheap as tagging entries with a per-block generation (measured).
            self.table.fill(0);
            let table = &mut *self.table;
            // Matches start at most here (4 bytes are read at the start).
            let last = n - MIN_MATCH;
            // No candidate is out of reach in a block shorter than the M4 distance (a page).
            let far = n > M4_MAX_DIST;
            let mut ip = 1;
            while ip <= last {
                let v = read_u32(src, ip);
                let h = hash(v);
                let cand = table[h] as usize;
                table[h] = ip as u16;
                // Every slot holds a position before ip (0 after the reset), so a candidate
                // is valid when its bytes match and it is near enough.
                if read_u32(src, cand) != v || (far && ip - cand > M4_MAX_DIST) {
                    ip += 1 + ((ip - anchor) >> SKIP_SHIFT);
                    continue;
                }
                let (mut start, mut from) = (ip, cand);
                while start > anchor && from > 0 && src[start - 1] == src[from - 1] {
                    start -= 1;
                    from -= 1;
                }
                let end = ip + MIN_MATCH + common(src, cand + MIN_MATCH, ip + MIN_MATCH);
                out.literals(src, anchor, start);
                out.matched(end - start, start - from);
                anchor = end;
                ip = end;
                // Positions inside the match that later data may repeat.
                if end - 2 <= last {
                    table[hash(read_u32(src, end - 2))] = (end - 2) as u16;
                }
            }
        }
        out.literals(src, anchor, n);
        out.buf[out.pos..out.pos + 3].copy_from_slice(&END);
        out.pos + 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Compresses and decompresses with lzokay's (independent) decoder; returns the size.
    fn round_trip(e: &mut Encoder, src: &[u8]) -> usize {
        let mut z = vec![0u8; worst_case(src.len())];
        let n = e.compress(src, &mut z);
        assert!(n <= worst_case(src.len()));
        let mut back = vec![0u8; src.len()];
        let got = lzokay::decompress::decompress(&z[..n], &mut back).unwrap_or_else(|err| {
            panic!("lzokay rejects our stream ({} bytes): {err:?}", src.len())
        });
        assert_eq!(got, src.len());
        assert!(back == src, "round trip differs ({} bytes)", src.len());
        // Same input, same output, whatever came before.
        let mut z2 = vec![0u8; worst_case(src.len())];
        assert_eq!(e.compress(src, &mut z2), n);
        assert_eq!(z[..n], z2[..n]);
        n
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let words = [
            "kernel ",
            "page ",
            "the ",
            "memory ",
            "struct ",
            "of ",
            "task_struct ",
            "mm ",
            "vmalloc ",
            "0x",
            "ffff8880",
            "\n",
            "irq ",
            "scheduler ",
            "a ",
            "lzo ",
        ];
        let r = random(len, 7);
        let mut out = Vec::with_capacity(len + 16);
        let mut i = 0;
        while out.len() < len {
            out.extend_from_slice(words[(r[i % len] as usize) % words.len()].as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn zeros_and_one_byte() {
        let mut e = Encoder::new();
        let n = round_trip(&mut e, &[0u8; 4096]);
        assert!(n <= 24, "zero page -> {n} bytes");
        for b in [1u8, 0x55, 0xff] {
            assert!(round_trip(&mut e, &[b; 4096]) <= 24);
        }
        // Tiny inputs, empty included.
        for len in 0..=12 {
            round_trip(&mut e, &vec![0u8; len]);
            round_trip(&mut e, &random(len, len as u64 + 1));
        }
    }

    #[test]
    fn random_stays_within_bound() {
        let mut e = Encoder::new();
        for seed in 1..20 {
            let r = random(4096, seed);
            let n = round_trip(&mut e, &r);
            assert!(n > 4096 && n <= worst_case(4096), "{n}");
        }
    }

    #[test]
    fn text_shrinks_twofold() {
        let mut e = Encoder::new();
        let t = text(4096);
        let n = round_trip(&mut e, &t);
        assert!(n * 2 <= t.len(), "text page -> {n} bytes");
    }

    #[test]
    fn periods() {
        let mut e = Encoder::new();
        for period in 1..=300 {
            let unit = random(period, period as u64 * 31);
            let page: Vec<u8> = unit.iter().copied().cycle().take(4096).collect();
            let n = round_trip(&mut e, &page);
            assert!(n < 4096 / 2, "period {period} -> {n}");
            // The same after a literal prefix, and with a random tail.
            let mut p = random(300, 99);
            p.extend_from_slice(&page[..3000]);
            p.extend_from_slice(&random(period % 7, 5));
            round_trip(&mut e, &p);
        }
    }

    #[test]
    fn literal_runs_around_matches() {
        let mut e = Encoder::new();
        // Long literal runs at the start (around the 238 first-byte limit and the 255 steps of
        // the length extension), then matches, then every short trailing run.
        for lit in [
            1, 2, 3, 4, 5, 17, 18, 19, 237, 238, 239, 240, 272, 273, 274, 528, 529, 4000,
        ] {
            for tail in 0..6 {
                let mut p = random(lit, lit as u64);
                p.extend_from_slice(&[7u8; 40]);
                p.extend_from_slice(&random(tail, 3));
                round_trip(&mut e, &p);
                // Runs of 1..=3 literals between matches.
                let mut q = p.clone();
                for k in 0..20 {
                    q.extend_from_slice(&random(k % 5, k as u64 + 11));
                    q.extend_from_slice(&p[..p.len().min(50)]);
                }
                round_trip(&mut e, &q);
            }
        }
        // Long matches at every distance class: M2 (<= 2048), M3 (<= 16384), M4.
        for dist in [
            1, 2, 8, 9, 2047, 2048, 2049, 16383, 16384, 16385, 20000, 49151,
        ] {
            for len in [4, 5, 8, 9, 10, 33, 34, 35, 288, 289, 1000] {
                let mut p = random(dist, dist as u64 + len as u64);
                let head = p[..len.min(dist)].to_vec();
                let mut k = 0;
                while k < len {
                    p.push(head[k % head.len()]);
                    k += 1;
                }
                p.extend_from_slice(&random(5, 1));
                if p.len() <= MAX_INPUT {
                    round_trip(&mut e, &p);
                }
            }
        }
    }

    #[test]
    fn every_length_of_a_mixed_page() {
        let mut mixed = text(1500);
        mixed.extend_from_slice(&random(700, 42));
        mixed.extend_from_slice(&[0u8; 900]);
        mixed.extend_from_slice(&text(1000)[..996]);
        assert_eq!(mixed.len(), 4096);
        let mut e = Encoder::new();
        for len in 0..=4096 {
            round_trip(&mut e, &mixed[..len]);
            round_trip(&mut e, &mixed[4096 - len..]);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            round_trip(&mut Encoder::new(), &data);
        }

        #[test]
        fn small_alphabet_round_trip(
            data in proptest::collection::vec(0u8..4, 0..4096),
            cut in 0usize..4096,
        ) {
            let mut e = Encoder::new();
            round_trip(&mut e, &data);
            round_trip(&mut e, &data[..cut.min(data.len())]);
        }
    }
}
