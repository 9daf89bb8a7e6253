//! VMCOREINFO: the `KEY=VALUE` lines a Linux guest publishes about itself (release, page size,
//! symbol addresses, struct offsets, `phys_base`). It travels in a `VMCOREINFO` ELF note and in
//! kdump files; tools use it to find the kernel without debug info.
//!
//! Values are text; `NUMBER(x)` values are **decimal** and may be negative (the kernel prints them
//! with `%ld`) — QEMU parses `NUMBER(phys_base)` as hex, which is wrong for any non-trivial value.
//! Addresses in `SYMBOL(x)` are hex without `0x`.

/// The `KEY=VALUE` pairs in order. Reading stops at the first NUL (the kernel's buffer is
/// zero-padded); lines without `=` or not valid UTF-8 are skipped.
pub fn vmcoreinfo_entries(data: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    data[..end]
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|line| line.trim_end_matches('\r').split_once('='))
}

/// The value of `key` (e.g. `OSRELEASE`, `SYMBOL(swapper_pg_dir)`, `NUMBER(phys_base)`).
pub fn vmcoreinfo_get<'a>(data: &'a [u8], key: &str) -> Option<&'a str> {
    vmcoreinfo_entries(data)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `NUMBER(name)` as a signed decimal.
pub fn vmcoreinfo_number(data: &[u8], name: &str) -> Option<i64> {
    let key = format!("NUMBER({name})");
    vmcoreinfo_get(data, &key)?.trim().parse().ok()
}

/// `SYMBOL(name)`: a hex address (no `0x` prefix in the kernel's output; accepted with one).
pub fn vmcoreinfo_symbol(data: &[u8], name: &str) -> Option<u64> {
    let key = format!("SYMBOL({name})");
    let v = vmcoreinfo_get(data, &key)?.trim();
    let v = v.strip_prefix("0x").unwrap_or(v);
    u64::from_str_radix(v, 16).ok()
}

/// `KIND(name)` (`OFFSET`, `SIZE`, `LENGTH`) as an unsigned decimal below `limit`: the
/// struct layout values, bounded because they come from the guest.
pub fn vmcoreinfo_field(data: &[u8], kind: &str, name: &str, limit: u64) -> Option<u64> {
    let key = format!("{kind}({name})");
    vmcoreinfo_get(data, &key)?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v < limit)
}

/// `NUMBER(phys_base)` as the kernel's `unsigned long`: a negative value wraps (two's complement).
pub fn vmcoreinfo_phys_base(data: &[u8]) -> Option<u64> {
    vmcoreinfo_number(data, "phys_base").map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-28-amd64\nPAGESIZE=4096\n\
        SYMBOL(swapper_pg_dir)=ffffffff9a20a000\nNUMBER(phys_base)=-1073741824\n\
        NUMBER(pgtable_l5_enabled)=0\ngarbage line\nKERNELOFFSET=18a00000\n\0\0\0OSRELEASE=x\n";

    #[test]
    fn lookups() {
        assert_eq!(vmcoreinfo_get(TEXT, "OSRELEASE"), Some("6.1.0-28-amd64"));
        assert_eq!(vmcoreinfo_get(TEXT, "KERNELOFFSET"), Some("18a00000"));
        assert_eq!(vmcoreinfo_get(TEXT, "MISSING"), None);
        assert_eq!(vmcoreinfo_number(TEXT, "pgtable_l5_enabled"), Some(0));
        assert_eq!(
            vmcoreinfo_symbol(TEXT, "swapper_pg_dir"),
            Some(0xffff_ffff_9a20_a000)
        );
        assert_eq!(vmcoreinfo_entries(TEXT).count(), 6, "stops at NUL");
    }

    #[test]
    fn phys_base_is_signed_decimal() {
        assert_eq!(vmcoreinfo_number(TEXT, "phys_base"), Some(-1073741824));
        assert_eq!(vmcoreinfo_phys_base(TEXT), Some(0xffff_ffff_c000_0000));
        assert_eq!(
            vmcoreinfo_phys_base(b"NUMBER(phys_base)=16777216\n"),
            Some(0x100_0000),
            "decimal, not hex"
        );
        assert_eq!(vmcoreinfo_phys_base(b"NUMBER(phys_base)=0x10\n"), None);
        assert_eq!(vmcoreinfo_phys_base(b"NUMBER(phys_base)=1000000x\n"), None);
        assert_eq!(
            vmcoreinfo_phys_base(b"OSRELEASE=6.1.0\nNUMBER(phys_base)=-2147483648\n"),
            Some((-2147483648i64) as u64)
        );
        assert_eq!(vmcoreinfo_get(TEXT, "PAGESIZ"), None, "whole keys only");
        assert_eq!(vmcoreinfo_phys_base(&[0xff, 0xfe, b'\n']), None);
    }
}
