//! libvirt's save image (`virsh save`, `virsh managedsave`): a header, the domain XML, then
//! the QEMU migration stream ([`super::migration`]) the domain was saved as. guestcore reads
//! the stream inside as it reads a `migrate file:` one.
//!
//! The header is libvirt's `virQEMUSaveHeader` (`src/qemu/qemu_saveimage.h`): the magic
//! [`LIBVIRT_MAGIC`], then little-endian `u32`s `version`, `data_len` (bytes of XML, cookie
//! and padding that follow the header), `was_running`, `compressed` (the image format: 0 raw,
//! then gzip, bzip2, xz, lzop, zstd), `cookieOffset`, and 14 unused; 92 bytes, as libvirt 9.0
//! writes it. The QEMU stream starts `data_len` bytes after the header. A compressed image
//! pipes the stream through the compressor, so only a raw one can be read in place.
//!
//! [`SaveHeader::decode`] is the read side; [`SaveHeader::encode`] the write side, for tests.

/// libvirt's save-image magic (`QEMU_SAVE_MAGIC`).
pub const LIBVIRT_MAGIC: &[u8; 16] = b"LibvirtQemudSave";
/// The header version libvirt writes (`QEMU_SAVE_VERSION`).
pub const SAVE_VERSION: u32 = 2;
/// Bytes of the header: the magic, five `u32` fields and 14 unused `u32`s.
pub const HEADER_LEN: u64 = 16 + 4 * 5 + 4 * 14;
/// The names of the `compressed` values libvirt knows (`virQEMUSaveFormat`), by value.
pub const COMPRESSION_NAMES: [&str; 6] = ["raw", "gzip", "bzip2", "xz", "lzop", "zstd"];

/// A save image's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveHeader {
    /// `version`.
    pub version: u32,
    /// `data_len`: bytes of XML, cookie and padding between the header and the QEMU stream.
    pub data_len: u32,
    /// `was_running`: the domain ran when it was saved.
    pub was_running: u32,
    /// `compressed`: the image format, 0 for raw ([`COMPRESSION_NAMES`]).
    pub compressed: u32,
    /// `cookieOffset`: where the cookie starts inside the data.
    pub cookie_offset: u32,
}

impl SaveHeader {
    /// The header at the start of `bytes`: `None` without the magic or when too short for
    /// the fields (the unused words after them are not looked at).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..LIBVIRT_MAGIC.len() + 4 * 5)?;
        if !h.starts_with(LIBVIRT_MAGIC) {
            return None;
        }
        let word = |i: usize| {
            let at = LIBVIRT_MAGIC.len() + 4 * i;
            u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"))
        };
        Some(SaveHeader {
            version: word(0),
            data_len: word(1),
            was_running: word(2),
            compressed: word(3),
            cookie_offset: word(4),
        })
    }

    /// The header's [`HEADER_LEN`] bytes (the unused words zero).
    pub fn encode(&self) -> Vec<u8> {
        let mut h = LIBVIRT_MAGIC.to_vec();
        for w in [
            self.version,
            self.data_len,
            self.was_running,
            self.compressed,
            self.cookie_offset,
        ] {
            h.extend_from_slice(&w.to_le_bytes());
        }
        h.resize(HEADER_LEN as usize, 0);
        h
    }

    /// File offset of the QEMU stream.
    pub fn stream_offset(&self) -> u64 {
        HEADER_LEN + u64::from(self.data_len)
    }

    /// The name of the image format [`compressed`](Self::compressed) says (`unknown` for a
    /// value libvirt does not define).
    pub fn compression_name(&self) -> &'static str {
        COMPRESSION_NAMES
            .get(self.compressed as usize)
            .copied()
            .unwrap_or("unknown")
    }
}

/// A save image holding `xml` (NUL-padded to `data_len` bytes, at least its length) around
/// `stream`, as `virsh save` of a running domain writes it uncompressed.
pub fn encode_image(xml: &str, data_len: u32, stream: &[u8]) -> Vec<u8> {
    let mut v = SaveHeader {
        version: SAVE_VERSION,
        data_len,
        was_running: 1,
        ..SaveHeader::default()
    }
    .encode();
    let data_start = v.len();
    v.extend_from_slice(xml.as_bytes());
    v.resize(data_start + data_len as usize, 0);
    v.extend_from_slice(stream);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let image = encode_image("<domain/>", 64, b"QEVM");
        let h = SaveHeader::decode(&image).unwrap();
        assert_eq!((h.version, h.data_len, h.compressed), (SAVE_VERSION, 64, 0));
        assert_eq!(h.stream_offset(), 92 + 64);
        assert_eq!(&image[h.stream_offset() as usize..], b"QEVM");
        assert_eq!(h.compression_name(), "raw");
        let zstd = SaveHeader { compressed: 5, ..h };
        assert_eq!(SaveHeader::decode(&zstd.encode()), Some(zstd));
        assert_eq!(zstd.compression_name(), "zstd");
        assert_eq!(
            SaveHeader { compressed: 9, ..h }.compression_name(),
            "unknown"
        );
        assert_eq!(SaveHeader::decode(&image[..35]), None);
        assert_eq!(SaveHeader::decode(b"QEVM"), None);
    }
}
