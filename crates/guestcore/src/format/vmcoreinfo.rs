//! VMCOREINFO: the `KEY=VALUE` lines a Linux guest publishes about itself (release, page size,
//! symbol addresses, struct offsets, `phys_base`). It travels in a `VMCOREINFO` ELF note and in
//! kdump files; tools use it to find the kernel without debug info.
//!
//! Values are text; `NUMBER(x)` values are **decimal** and may be negative (the kernel prints them
//! with `%ld`) — QEMU parses `NUMBER(phys_base)` as hex, which is wrong for any non-trivial value;
//! arm64's `NUMBER(kimage_voffset)` and `NUMBER(PHYS_OFFSET)` are the exception, 0x-hex.
//! Addresses in `SYMBOL(x)` are hex without `0x`.
//!
//! The text is read out of guest memory in one place, [`read_vmcoreinfo_note`], whichever way
//! its note was found (a page-start scan, QEMU's `vmcoreinfo` device, a crashed kernel's core
//! header), with one cap, [`MAX_VMCOREINFO`]; [`vmcoreinfo_text`] takes the text out of a
//! note's descriptor. Lookups ([`vmcoreinfo_get`] and the typed ones) read the text.

/// The most bytes of VMCOREINFO text taken from guest memory. Linux writes the text into a
/// buffer of `VMCOREINFO_BYTES`, one page (`include/linux/vmcore_info.h`, `crash_core.h`
/// before 6.9): 4 KiB on x86, 64 KiB on the architectures with the largest pages. So 64 KiB
/// holds any kernel's text with room to spare, and a hostile note's length costs at most this
/// much memory per note read (a scan keeps at most 64 notes: 4 MiB).
pub const MAX_VMCOREINFO: u64 = 64 << 10;

/// The note name's bytes with its NUL (`namesz` 11), as Linux writes it.
const NOTE_NAME: &[u8] = b"VMCOREINFO\0";
/// Bytes of an ELF note header: `namesz`, `descsz`, `type`.
const NOTE_HEADER_LEN: u64 = 12;

/// True when `h` (at least 34 bytes) starts a VMCOREINFO note as Linux writes it at the
/// start of its page-aligned `vmcoreinfo_note` buffer: `namesz` 11, type 0, `VMCOREINFO\0`,
/// text starting `OSRELEASE=`.
pub fn is_vmcoreinfo_note(h: &[u8]) -> bool {
    h.len() >= 34
        && h[0..4] == 11u32.to_le_bytes()
        && h[8..12] == [0; 4]
        && &h[12..23] == NOTE_NAME
        && &h[24..34] == b"OSRELEASE="
}

/// The text in a VMCOREINFO note's descriptor: up to its first NUL (the kernel's buffer is
/// zero-padded, and [`vmcoreinfo_entries`] stops there too); `None` when the descriptor is
/// longer than [`MAX_VMCOREINFO`].
pub fn vmcoreinfo_text(desc: &[u8]) -> Option<&[u8]> {
    if desc.len() as u64 > MAX_VMCOREINFO {
        return None;
    }
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    Some(&desc[..end])
}

/// Reads the VMCOREINFO ELF note whose header is at guest address `addr` and returns its
/// text ([`vmcoreinfo_text`]). `read(addr, buf)` fills `buf` from guest memory, `false` when
/// it cannot (any memory: a source, a dump still being written). `limit`, when the note's size
/// is known (QEMU's `vmcoreinfo` device says it), is where the note must end.
///
/// `None` when a read fails, the name is not `VMCOREINFO` (with or without its NUL), the
/// text is empty or longer than [`MAX_VMCOREINFO`], or the note runs past `limit`. At most
/// [`MAX_VMCOREINFO`] bytes are allocated, whatever the note's header says.
pub fn read_vmcoreinfo_note(
    addr: u64,
    limit: Option<u64>,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut h = [0u8; NOTE_HEADER_LEN as usize];
    if !read(addr, &mut h) {
        return None;
    }
    let namesz = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
    let descsz = u64::from(u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")));
    if namesz != NOTE_NAME.len() && namesz != NOTE_NAME.len() - 1 {
        return None;
    }
    let mut name = [0u8; NOTE_NAME.len()];
    if !read(addr.checked_add(NOTE_HEADER_LEN)?, &mut name[..namesz]) || name != NOTE_NAME {
        return None;
    }
    let text_at = NOTE_HEADER_LEN + (namesz as u64).next_multiple_of(4);
    if descsz == 0 || descsz > MAX_VMCOREINFO || limit.is_some_and(|l| text_at + descsz > l) {
        return None;
    }
    let mut desc = vec![0u8; descsz as usize];
    if !read(addr.checked_add(text_at)?, &mut desc) {
        return None;
    }
    let len = vmcoreinfo_text(&desc)?.len();
    desc.truncate(len);
    is_kernel_vmcoreinfo(&desc).then_some(desc)
}

/// True when `text` is what a kernel writes as VMCOREINFO: printable ASCII lines, the first
/// `OSRELEASE=`, a `PAGESIZE=` line with a power of two, at most [`MAX_VMCOREINFO`] bytes.
/// Text read out of guest RAM is only believed (and put into a dump) when it passes: a page
/// that starts like the note but lies about its size or holds garbage after `OSRELEASE=` is
/// not a kernel's.
pub fn is_kernel_vmcoreinfo(text: &[u8]) -> bool {
    text.len() as u64 <= MAX_VMCOREINFO
        && text.starts_with(b"OSRELEASE=")
        && text
            .iter()
            .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b))
        && vmcoreinfo_get(text, "PAGESIZE")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|p| p.is_power_of_two() && (1 << 12..=1 << 16).contains(&p))
}

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

/// The `phys_base` of a kdump file's header for the kernel the text describes, as makedumpfile
/// and QEMU write it: x86_64's `NUMBER(phys_base)` as the kernel's `unsigned long` (signed
/// decimal; a negative value wraps, two's complement), else arm64's `NUMBER(PHYS_OFFSET)`
/// (`memstart_addr`, 0x-hex: where the linear map starts in physical memory). crash takes an
/// arm64 kdump file's `phys_offset` from this field, and with 0 there translates no linear-map
/// address of a kernel whose RAM starts elsewhere (QEMU `virt`: 1 GiB). `None` for neither (i386).
pub fn vmcoreinfo_phys_base(data: &[u8]) -> Option<u64> {
    if let Some(n) = vmcoreinfo_number(data, "phys_base") {
        return Some(n as u64);
    }
    if vmcoreinfo_get(data, "NUMBER(phys_base)").is_some() {
        return None;
    }
    let v = vmcoreinfo_get(data, "NUMBER(PHYS_OFFSET)")?.trim();
    u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-28-amd64\nPAGESIZE=4096\n\
        SYMBOL(swapper_pg_dir)=ffffffff9a20a000\nNUMBER(phys_base)=-1073741824\n\
        NUMBER(pgtable_l5_enabled)=0\ngarbage line\nKERNELOFFSET=18a00000\n\0\0\0OSRELEASE=x\nPAGESIZE=4096\n";

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

    /// `note` at guest address 0x100 of a small memory, read back.
    fn read_back(note: &[u8], limit: Option<u64>) -> Option<Vec<u8>> {
        let mut mem = vec![0u8; 0x100];
        mem.extend_from_slice(note);
        read_vmcoreinfo_note(0x100, limit, |a, buf| {
            let Some(src) = mem.get(a as usize..a as usize + buf.len()) else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        })
    }

    fn note(namesz: u32, name: &[u8], desc: &[u8]) -> Vec<u8> {
        let mut n = namesz.to_le_bytes().to_vec();
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&0u32.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n
    }

    #[test]
    fn notes_in_memory() {
        let text = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n";
        let mut padded = text.to_vec();
        padded.resize(64, 0);
        let n = note(11, b"VMCOREINFO\0", &padded);
        assert!(is_vmcoreinfo_note(&n));
        assert_eq!(read_back(&n, None).unwrap(), text, "up to the first NUL");
        assert_eq!(read_back(&n, Some(n.len() as u64)).unwrap(), text);
        assert_eq!(
            read_back(&n, Some(n.len() as u64 - 1)),
            None,
            "past the limit"
        );
        assert_eq!(
            read_back(&note(10, b"VMCOREINFO", text), None).unwrap(),
            text
        );
        assert_eq!(read_back(&note(5, b"CORE\0", text), None), None);
        assert_eq!(read_back(&note(11, b"VMCOREINFX\0", text), None), None);
        assert_eq!(read_back(&note(11, b"VMCOREINFO\0", b""), None), None);
        assert_eq!(read_back(&n[..40], None), None, "cut short");
        // The cap: a header claiming more is refused before anything is allocated.
        let mut huge = n.clone();
        huge[4..8].copy_from_slice(&(MAX_VMCOREINFO as u32 + 1).to_le_bytes());
        assert_eq!(read_back(&huge, None), None);
        let mut big = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n".to_vec();
        big.resize(MAX_VMCOREINFO as usize, b'x');
        assert_eq!(
            read_back(&note(11, b"VMCOREINFO\0", &big), None).unwrap(),
            big
        );
        assert_eq!(vmcoreinfo_text(&big), Some(&big[..]));
        assert_eq!(vmcoreinfo_text(&[big.as_slice(), b"y"].concat()), None);
        assert!(!is_vmcoreinfo_note(&note(
            11,
            b"VMCOREINFO\0",
            b"PAGESIZE=4096\n"
        )));
        // A page that starts like the note but is not a kernel's text: never believed.
        for bad in [
            &b"OSRELEASE=6.1.0\n"[..],
            b"OSRELEASE=6.1.0\nPAGESIZE=4000\n",
            b"OSRELEASE=6.1.0\nPAGESIZE=4096\n\xff\xfe garbage",
            b"OSRELEASE=6.1\tx\nPAGESIZE=4096\n",
            b"PAGESIZE=4096\nOSRELEASE=6.1.0\n",
        ] {
            let n = note(11, b"VMCOREINFO\0", bad);
            assert_eq!(
                read_back(&n, None),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
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
            vmcoreinfo_phys_base(
                b"OSRELEASE=6.1.0\nPAGESIZE=4096\nNUMBER(phys_base)=-2147483648\n"
            ),
            Some((-2147483648i64) as u64)
        );
        assert_eq!(vmcoreinfo_get(TEXT, "PAGESIZ"), None, "whole keys only");
        assert_eq!(vmcoreinfo_phys_base(&[0xff, 0xfe, b'\n']), None);
    }

    #[test]
    fn arm64_phys_base_is_phys_offset() {
        // A Debian 6.1 arm64 guest's lines (QEMU virt: RAM at 1 GiB).
        let arm64 = b"OSRELEASE=6.1.0-57-arm64\nPAGESIZE=4096\nNUMBER(VA_BITS)=48\n\
            NUMBER(kimage_voffset)=0xffffb40271c00000\nNUMBER(PHYS_OFFSET)=0x40000000\n";
        assert_eq!(vmcoreinfo_phys_base(arm64), Some(0x4000_0000));
        // The 16 KiB kernel without LPA2 publishes a wrapped memstart_addr; kept as is.
        assert_eq!(
            vmcoreinfo_phys_base(b"NUMBER(PHYS_OFFSET)=0xfff0800040000000\n"),
            Some(0xfff0_8000_4000_0000)
        );
        // x86_64's own number wins; a bad one is not replaced by PHYS_OFFSET.
        assert_eq!(
            vmcoreinfo_phys_base(b"NUMBER(phys_base)=16777216\nNUMBER(PHYS_OFFSET)=0x40000000\n"),
            Some(16 << 20)
        );
        assert_eq!(
            vmcoreinfo_phys_base(b"NUMBER(phys_base)=0x10\nNUMBER(PHYS_OFFSET)=0x40000000\n"),
            None
        );
        // The kernel prints PHYS_OFFSET with 0x; anything else is refused.
        assert_eq!(
            vmcoreinfo_phys_base(b"NUMBER(PHYS_OFFSET)=40000000\n"),
            None
        );
        assert_eq!(vmcoreinfo_phys_base(b"NUMBER(PHYS_OFFSET)=0xzz\n"), None);
        assert_eq!(vmcoreinfo_phys_base(b"OSRELEASE=6.1.0-686\n"), None, "i386");
    }
}
