//! The host address of guest RAM, from HMP `gpa2hva`: where a block of anonymous guest RAM
//! sits in the QEMU process, for reading it through `/proc/PID/mem`.

use crate::{Error, Result};

/// Parses `Host virtual address for 0x100000 (pc.ram) is 0x7f1c000ff000`.
pub(super) fn parse_gpa2hva(text: &str) -> Result<u64> {
    let t = text.trim();
    t.rsplit_once(" is ")
        .and_then(|(_, v)| v.trim().strip_prefix("0x"))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| Error::parse("gpa2hva output", t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpa2hva_text() {
        assert_eq!(
            parse_gpa2hva("Host virtual address for 0x100000 (mem) is 0x7f1c000ff000\r\n").unwrap(),
            0x7f1c_000f_f000
        );
        assert!(parse_gpa2hva("No memory is mapped at address 0x0").is_err());
    }
}
