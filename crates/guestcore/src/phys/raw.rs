//! A raw memory image: guest RAM bytes with no header, mapped read-only.
//!
//! Mapping (rather than reading) keeps a many-GiB image cheap to open and lets the walker and the
//! writers borrow page tables and pages straight from the page cache ([`PhysMemory::slice`]).
//! Without a [`Layout`] the file is guest-physical `0..len`; with one, each piece of the file is
//! placed where the layout says and everything else is a hole
//! ([`Error::NotInMemory`](crate::Error::NotInMemory)).

use super::layout::Layout;
use super::{map_file, read_via_slice, InputMap, PhysMemory, RamMap};
use crate::addr::PhysRange;
use crate::Result;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A raw guest-memory image file.
#[derive(Debug)]
pub struct RawImage {
    path: PathBuf,
    /// `None` for an empty file: mapping zero bytes is an error on most systems.
    map: Option<InputMap>,
    /// The open file behind `map`, for [`PhysMemory::file_extent`].
    file: File,
    ram: RamMap,
    /// File offset of each RAM range, in the order of `ram.ranges()`.
    offsets: Vec<u64>,
}

impl RawImage {
    /// Maps `path` read-only and places it in guest-physical memory per `layout` (default: the
    /// whole file at physical 0). Layout pieces past the end of the file are an
    /// [`Error::Format`](crate::Error::Format).
    pub fn open(path: impl AsRef<Path>, layout: Option<&Layout>) -> Result<Self> {
        let path = path.as_ref();
        let (file, map) = map_file(path)?;
        let mapped_len = map.as_ref().map_or(0, |m| m.len() as u64);

        let mut pieces: Vec<(PhysRange, u64)> = match layout {
            None if mapped_len == 0 => Vec::new(),
            None => vec![(PhysRange::new(0, mapped_len), 0)],
            Some(layout) => layout
                .resolve(mapped_len, path)?
                .into_iter()
                .map(|p| (PhysRange::new(p.phys, p.len), p.file_offset))
                .collect(),
        };
        pieces.sort_by_key(|p| p.0.start);
        let ram = RamMap::new(pieces.iter().map(|p| p.0).collect())?;
        Ok(RawImage {
            path: path.to_path_buf(),
            map,
            file,
            ram,
            offsets: pieces.into_iter().map(|p| p.1).collect(),
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }
}

impl PhysMemory for RawImage {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        read_via_slice(self, addr, buf)?;
        self.map.as_ref().map_or(Ok(()), |m| m.intact())
    }

    fn intact(&self) -> Result<()> {
        self.map.as_ref().map_or(Ok(()), |m| m.whole())
    }

    fn ram(&self) -> &RamMap {
        &self.ram
    }

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let (i, off) = self.ram.locate(addr, len)?;
        let start = usize::try_from(self.offsets[i] + off).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.map.as_ref()?.get(start..end)
    }

    fn file_extent(&self, addr: u64, len: u64) -> Option<(&File, u64)> {
        let (i, off) = self.ram.locate(addr, len)?;
        let offset = self.offsets[i] + off;
        (offset.checked_add(len)? <= self.file_len()).then_some((&self.file, offset))
    }

    fn release(&self, addr: u64, len: u64) {
        let (Some(map), Some(i)) = (self.map.as_ref(), self.ram.index_of(addr)) else {
            return;
        };
        let r = self.ram.ranges()[i];
        let n = r.end.min(addr.saturating_add(len)) - addr;
        super::release_mapped(map, self.offsets[i] + (addr - r.start), n);
    }
}

/// Why the raw image at `path` is unlikely to be guest RAM ([`unlikely_ram`] of its first
/// 4 KiB), or `None`; a file that cannot be read is left to the reader to report.
pub(crate) fn doubt(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut head).ok()?;
    unlikely_ram(&head, len)
}

/// Why the bytes at the start of a file with no known header, `len` bytes long, are unlikely
/// to be guest RAM, or `None`. Guest RAM is whole pages, and its first page (the real-mode
/// interrupt table, firmware data) is not text; a file that is text or a compressed archive
/// was almost certainly named by mistake, and reading it as RAM would mislead.
pub(crate) fn unlikely_ram(head: &[u8], len: u64) -> Option<&'static str> {
    const ARCHIVES: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "a gzip file"),
        (b"\xfd7zXZ\0", "an xz file"),
        (b"\x28\xb5\x2f\xfd", "a zstd file"),
        (b"BZh", "a bzip2 file"),
        (b"PK\x03\x04", "a zip archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
        (b"\x04\x22\x4d\x18", "an lz4 file"),
    ];
    if let Some((_, what)) = ARCHIVES.iter().find(|(m, _)| head.starts_with(m)) {
        return Some(what);
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return Some("a tar archive");
    }
    let text = |b: &u8| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80;
    if !head.is_empty() && head.iter().all(text) && std::str::from_utf8(head).is_ok() {
        return Some("text");
    }
    if len % 4096 != 0 {
        return Some("not a whole number of 4 KiB pages");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_archives_are_unlikely_ram() {
        assert_eq!(
            unlikely_ram(b"root:x:0:0:root:/root:/bin/bash\n", 973),
            Some("text")
        );
        assert_eq!(
            unlikely_ram(b"\x1f\x8b\x08\0\0\0", 8192),
            Some("a gzip file")
        );
        assert_eq!(
            unlikely_ram(&[0u8; 16], 1000),
            Some("not a whole number of 4 KiB pages")
        );
        let mut ram = vec![0u8; 4096];
        ram[0x20..0x24].copy_from_slice(&[0x53, 0xff, 0x00, 0xf0]);
        assert_eq!(unlikely_ram(&ram, 1 << 20), None);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(unlikely_ram(&tar, 10240), Some("a tar archive"));
    }
    use crate::Error;
    use std::io::Write;

    fn image(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn released_pages_read_back_the_same() {
        let data = pattern(0x5000);
        let f = image(&data);
        let img = RawImage::open(f.path(), None).unwrap();
        let view = img.slice(0, 0x5000).unwrap();
        img.release(0x800, 0x3000);
        img.release(0x4000, u64::MAX);
        img.release(0x9000, 0x1000);
        assert_eq!(view, &data[..]);
        let mut b = vec![0u8; 0x10];
        img.read_at(0x1ff8, &mut b).unwrap();
        assert_eq!(b, &data[0x1ff8..0x2008]);
    }

    #[test]
    fn flat_image() {
        let data = pattern(0x3000);
        let f = image(&data);
        let img = RawImage::open(f.path(), None).unwrap();
        assert_eq!(img.file_len(), 0x3000);
        assert_eq!(img.ram().ranges(), &[PhysRange::new(0, 0x3000)]);
        let mut buf = [0u8; 16];
        img.read_at(0x1ff8, &mut buf).unwrap();
        assert_eq!(&buf, &data[0x1ff8..0x2008]);
        assert_eq!(img.slice(0x100, 4).unwrap(), &data[0x100..0x104]);
        assert!(matches!(
            img.read_at(0x2ff8, &mut buf),
            Err(Error::NotInMemory { .. })
        ));
        assert!(img.read_at(u64::MAX - 4, &mut buf).is_err());
        assert!(img.slice(u64::MAX, 2).is_none());
    }

    #[test]
    fn empty_file_is_not_mapped() {
        let f = image(&[]);
        let img = RawImage::open(f.path(), None).unwrap();
        assert_eq!(img.ram().total(), 0);
        assert!(matches!(
            img.read_u64(0),
            Err(Error::NotInMemory { addr: 0, len: 8 })
        ));
        let l = Layout::parse("0x1000@").unwrap();
        assert!(matches!(
            RawImage::open(f.path(), Some(&l)),
            Err(Error::Format { .. })
        ));
    }

    #[test]
    fn layout_with_hole() {
        let data = pattern(0x3000);
        let f = image(&data);
        let l = Layout::parse("0:0x1000,0x100000:*").unwrap();
        let img = RawImage::open(f.path(), Some(&l)).unwrap();
        assert_eq!(
            img.ram().ranges(),
            &[PhysRange::new(0, 0x1000), PhysRange::new(0x100000, 0x2000)]
        );
        let mut buf = [0u8; 8];
        img.read_at(0x100010, &mut buf).unwrap();
        assert_eq!(&buf, &data[0x1010..0x1018]);
        assert!(matches!(
            img.read_at(0xffc, &mut buf),
            Err(Error::NotInMemory { .. })
        ));
        assert!(matches!(
            img.read_at(0x5000, &mut buf),
            Err(Error::NotInMemory { .. })
        ));
    }

    #[test]
    fn adjacent_pieces_read_across() {
        let data = pattern(0x2000);
        let f = image(&data);
        // File order reversed relative to physical order.
        let l = Layout::parse("0x1000:0x1000,0:0x1000").unwrap();
        let img = RawImage::open(f.path(), Some(&l)).unwrap();
        let mut buf = [0u8; 8];
        img.read_at(0xffc, &mut buf).unwrap();
        assert_eq!(&buf[..4], &data[0x1ffc..0x2000]);
        assert_eq!(&buf[4..], &data[0..4]);
        assert!(img.slice(0xffc, 8).is_none(), "crosses two pieces");
    }

    #[test]
    fn base_form_and_past_end() {
        let data = pattern(0x1000);
        let f = image(&data);
        let img = RawImage::open(f.path(), Some(&Layout::parse("4G@").unwrap())).unwrap();
        assert_eq!(
            img.read_u32(1 << 32).unwrap(),
            u32::from_le_bytes([0, 7, 14, 21])
        );
        assert!(img.read_u32(0).is_err());
        let l = Layout::parse("0:0x800,0x1000:0x1000").unwrap();
        assert!(matches!(
            RawImage::open(f.path(), Some(&l)),
            Err(Error::Format { .. })
        ));
    }

    #[test]
    fn missing_file_is_io_error() {
        assert!(matches!(
            RawImage::open("/nonexistent/guestcore/raw", None),
            Err(Error::Io { .. })
        ));
    }
}
