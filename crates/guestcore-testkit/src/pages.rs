//! Page contents for dump and reader tests: four kinds that exercise every path of a writer
//! (zero pages left out or shared, random bytes that do not compress, text that does, and
//! sparse pages with a few non-zero bytes), chosen by the page number so any test can say
//! what a page must hold without storing it.

/// The `len` bytes of page (or block) `pfn`, by `pfn % 4`: 0 zeros, 1 random (xorshift seeded
/// by `pfn`), 2 repeated text naming `pfn`, 3 zeros but `pfn` in the first 8 bytes and `0xaa`
/// in the last.
///
/// # Panics
/// When `len` is under 9 bytes (test-support code).
pub fn mixed_page(pfn: u64, len: usize) -> Vec<u8> {
    assert!(len > 8, "a page of {len} bytes");
    match pfn % 4 {
        0 => vec![0; len],
        1 => {
            let mut x = pfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
        2 => format!("page {pfn} of {len} bytes, text that compresses well. ")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(len)
            .collect(),
        _ => {
            let mut p = vec![0u8; len];
            p[..8].copy_from_slice(&pfn.to_le_bytes());
            p[len - 1] = 0xaa;
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_kinds_by_page_number() {
        assert!(mixed_page(8, 4096).iter().all(|&b| b == 0));
        let random = mixed_page(9, 4096);
        assert!(random.iter().filter(|&&b| b == 0).count() < 100, "random");
        assert_ne!(random, mixed_page(13, 4096), "seeded by the page number");
        assert!(mixed_page(10, 4096).starts_with(b"page 10 of 4096 bytes"));
        let sparse = mixed_page(11, 16384);
        assert_eq!(
            (&sparse[..8], sparse[16383]),
            (&11u64.to_le_bytes()[..], 0xaa)
        );
        assert_eq!(sparse.iter().filter(|&&b| b != 0).count(), 2);
    }
}
