//! Parsing of addresses and sizes as users type them: decimal, `0x` hex, and binary
//! suffixes (`K`/`M`/`G`/`T` = 2^10/2^20/2^30/2^40, as QEMU users mean them).

use crate::{Error, Result};

/// Parses an address or size: `4096`, `0x1000`, `4K`, `0x10M`, `1G`, hex needs `0x`. Underscores are allowed as separators.
pub fn parse_u64(text: &str) -> Result<u64> {
    let t: String = text.trim().chars().filter(|c| *c != '_').collect();
    if t.is_empty() {
        return Err(Error::parse("number", "empty string"));
    }
    let upper = t.to_ascii_uppercase();
    let mut digits = t.as_str();
    let mut mult = 1u64;
    for (suffix, shift) in SUFFIXES {
        if upper.ends_with(suffix) {
            digits = &t[..t.len() - suffix.len()];
            mult = 1 << shift;
            break;
        }
    }
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16)
    } else {
        digits.parse::<u64>()
    }
    .map_err(|e| Error::parse("number", format!("{text:?}: {e}")))?;
    value
        .checked_mul(mult)
        .ok_or_else(|| Error::parse("number", format!("{text:?} overflows 64 bits")))
}

/// Binary suffixes, longest first. None of their letters is a hex digit, so `0x…` stays unambiguous.
const SUFFIXES: [(&str, u32); 12] = [
    ("KIB", 10),
    ("MIB", 20),
    ("GIB", 30),
    ("TIB", 40),
    ("KB", 10),
    ("MB", 20),
    ("GB", 30),
    ("TB", 40),
    ("K", 10),
    ("M", 20),
    ("G", 30),
    ("T", 40),
];

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn forms() {
        assert_eq!(parse_u64("4096").unwrap(), 4096);
        assert_eq!(parse_u64("0x1000").unwrap(), 4096);
        assert_eq!(parse_u64("4K").unwrap(), 4096);
        assert_eq!(parse_u64("4k").unwrap(), 4096);
        assert_eq!(parse_u64("1G").unwrap(), 1 << 30);
        assert_eq!(parse_u64("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_u64("0x10M").unwrap(), 16 << 20);
        assert_eq!(
            parse_u64("0xffff_ffff_8100_0000").unwrap(),
            0xffff_ffff_8100_0000
        );
        assert!(parse_u64("").is_err());
        assert!(parse_u64("12x").is_err());
        assert!(parse_u64("0xffffffffffffffffK").is_err());
    }
}
