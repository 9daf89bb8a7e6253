//! Where the bytes of a raw memory image sit in guest-physical memory.
//!
//! A raw image (`-object memory-backend-file`, `pmemsave`, a `dd` of `/dev/mem`) carries no
//! header, so its placement has to be told: a PC guest with more than ~3 GiB has a hole below
//! 4 GiB and its RAM above 4 GiB is stored right after the low part in the file. The layout string
//! says this once, in the same words as the rest of the CLI (numbers via
//! [`crate::units::parse_u64`]):
//!
//! * `PHYS:LEN,PHYS:LEN,…` — pieces stored one after the other in the file, e.g.
//!   `0:0xa0000,0x100000:0x7ff00000`. The last `LEN` may be `*`: the rest of the file.
//! * `BASE@` — the whole file is one block starting at guest-physical `BASE`.
//!
//! Parsing checks what it can without the file (zero lengths, overlaps, overflow);
//! [`Layout::resolve`] checks the rest once the file length is known.

use crate::units::parse_u64;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// One piece of a layout: `len` bytes at `file_offset` in the image are guest-physical
/// `phys..phys + len`. `len == None` means "to the end of the file".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutPiece {
    /// Guest-physical address of the piece's first byte.
    pub phys: u64,
    /// Byte offset in the image where the piece starts.
    pub file_offset: u64,
    /// Length in bytes; `None` runs to the end of the file.
    pub len: Option<u64>,
}

/// A piece with its length known (after [`Layout::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedPiece {
    /// Guest-physical address of the piece's first byte.
    pub phys: u64,
    /// Byte offset in the image where the piece starts.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl ResolvedPiece {
    fn phys_end(&self) -> u64 {
        self.phys.saturating_add(self.len)
    }
}

/// A parsed layout string: pieces in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pieces: Vec<LayoutPiece>,
}

impl Layout {
    /// The whole file at guest-physical `base` (the `BASE@` form).
    pub fn at_base(base: u64) -> Self {
        Layout {
            pieces: vec![LayoutPiece {
                phys: base,
                file_offset: 0,
                len: None,
            }],
        }
    }

    /// Parses `PHYS:LEN,…` or `BASE@`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::parse("layout", "empty layout"));
        }
        if let Some(base) = text.strip_suffix('@') {
            return Ok(Layout::at_base(parse_u64(base)?));
        }
        if text.contains('@') {
            return Err(Error::parse(
                "layout",
                format!("{text:?}: the BASE@ form takes a base address and nothing after '@'"),
            ));
        }
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let mut pieces = Vec::with_capacity(parts.len());
        let mut file_offset = 0u64;
        for (i, part) in parts.iter().enumerate() {
            let (phys, len) = part
                .split_once(':')
                .ok_or_else(|| Error::parse("layout", format!("piece {part:?} is not PHYS:LEN")))?;
            let phys = parse_u64(phys)?;
            let len = if len.trim() == "*" {
                if i + 1 != parts.len() {
                    return Err(Error::parse(
                        "layout",
                        format!("piece {part:?}: only the last piece may have length '*'"),
                    ));
                }
                None
            } else {
                let len = parse_u64(len)?;
                if len == 0 {
                    return Err(Error::parse(
                        "layout",
                        format!("piece {part:?} has length zero"),
                    ));
                }
                if phys.checked_add(len).is_none() {
                    return Err(Error::parse(
                        "layout",
                        format!("piece {part:?} runs past the 64-bit address space"),
                    ));
                }
                Some(len)
            };
            pieces.push(LayoutPiece {
                phys,
                file_offset,
                len,
            });
            if let Some(len) = len {
                file_offset = file_offset.checked_add(len).ok_or_else(|| {
                    Error::parse("layout", "the pieces add up to more than 2^64 bytes")
                })?;
            }
        }
        // Overlaps among the pieces whose length is known; `*` is checked by `resolve`.
        let known: Vec<ResolvedPiece> = pieces
            .iter()
            .filter_map(|p| {
                p.len.map(|len| ResolvedPiece {
                    phys: p.phys,
                    file_offset: p.file_offset,
                    len,
                })
            })
            .collect();
        check_overlaps(known)?;
        Ok(Layout { pieces })
    }

    /// The pieces in file order.
    pub fn pieces(&self) -> &[LayoutPiece] {
        &self.pieces
    }

    /// Resolves `*` against a file of `file_len` bytes and checks that every piece lies inside
    /// the file. A piece past the end is an [`Error::Format`] for `path`; an overlap that appears
    /// only once `*` is known is an [`Error::Parse`].
    pub fn resolve(&self, file_len: u64, path: &std::path::Path) -> Result<Vec<ResolvedPiece>> {
        let mut out = Vec::with_capacity(self.pieces.len());
        for (i, p) in self.pieces.iter().enumerate() {
            let len = match p.len {
                Some(len) => len,
                None => file_len.saturating_sub(p.file_offset),
            };
            let end = p.file_offset.checked_add(len);
            if len == 0 || !matches!(end, Some(e) if e <= file_len) {
                return Err(Error::format(
                    path,
                    format!(
                        "layout piece {} ({:#x} bytes at file offset {:#x}) is past the end of \
                         the file ({file_len:#x} bytes)",
                        i + 1,
                        len,
                        p.file_offset
                    ),
                ));
            }
            if p.phys.checked_add(len).is_none() {
                return Err(Error::parse(
                    "layout",
                    format!("piece {} runs past the 64-bit address space", i + 1),
                ));
            }
            out.push(ResolvedPiece {
                phys: p.phys,
                file_offset: p.file_offset,
                len,
            });
        }
        check_overlaps(out.clone())?;
        Ok(out)
    }
}

fn check_overlaps(mut pieces: Vec<ResolvedPiece>) -> Result<()> {
    pieces.sort_by_key(|p| p.phys);
    for w in pieces.windows(2) {
        if w[1].phys < w[0].phys_end() {
            return Err(Error::parse(
                "layout",
                format!(
                    "pieces at {:#x} (+{:#x}) and {:#x} (+{:#x}) overlap",
                    w[0].phys, w[0].len, w[1].phys, w[1].len
                ),
            ));
        }
    }
    Ok(())
}

impl FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Layout::parse(s)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [LayoutPiece {
            phys,
            file_offset: 0,
            len: None,
        }] = self.pieces.as_slice()
        {
            return write!(f, "{phys:#x}@");
        }
        for (i, p) in self.pieces.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match p.len {
                Some(len) => write!(f, "{:#x}:{len:#x}", p.phys)?,
                None => write!(f, "{:#x}:*", p.phys)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn piece(phys: u64, file_offset: u64, len: Option<u64>) -> LayoutPiece {
        LayoutPiece {
            phys,
            file_offset,
            len,
        }
    }

    #[test]
    fn consecutive_pieces() {
        let l = Layout::parse("0:0xa0000, 0x100000:0x7ff00000").unwrap();
        assert_eq!(
            l.pieces(),
            &[
                piece(0, 0, Some(0xa0000)),
                piece(0x100000, 0xa0000, Some(0x7ff00000))
            ]
        );
        assert_eq!(l.to_string(), "0x0:0xa0000,0x100000:0x7ff00000");
        assert_eq!(Layout::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn suffixes_and_star() {
        let l: Layout = "0:640K,1M:*".parse().unwrap();
        assert_eq!(
            l.pieces(),
            &[
                piece(0, 0, Some(640 << 10)),
                piece(1 << 20, 640 << 10, None)
            ]
        );
        let r = l.resolve(1 << 20, Path::new("img")).unwrap();
        assert_eq!(r[1].len, (1 << 20) - (640 << 10));
    }

    #[test]
    fn base_form() {
        let l = Layout::parse("0x100000000@").unwrap();
        assert_eq!(l, Layout::at_base(1 << 32));
        assert_eq!(l.to_string(), "0x100000000@");
        let r = l.resolve(4096, Path::new("img")).unwrap();
        assert_eq!(
            r,
            vec![ResolvedPiece {
                phys: 1 << 32,
                file_offset: 0,
                len: 4096
            }]
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "0:0",
            "0:0x1000,0x800:0x1000",
            "0:*,0x1000:0x1000",
            "0x1000",
            "0:0x1000:5",
            "x:1",
            "0:zz",
            "1@2",
            "@",
            "0xffffffffffffffff:2",
            "0:0xffffffffffffffff,0x10000000000000000:1",
        ] {
            assert!(
                matches!(Layout::parse(bad), Err(Error::Parse { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn resolve_checks_file_length() {
        let l = Layout::parse("0:0x1000,0x2000:0x1000").unwrap();
        assert!(l.resolve(0x2000, Path::new("img")).is_ok());
        assert!(matches!(
            l.resolve(0x1fff, Path::new("img")),
            Err(Error::Format { .. })
        ));
        // `*` with nothing left in the file.
        let l = Layout::parse("0:0x1000,0x2000:*").unwrap();
        assert!(matches!(
            l.resolve(0x1000, Path::new("img")),
            Err(Error::Format { .. })
        ));
        // An overlap that only `*` creates.
        let l = Layout::parse("0x10000:0x1000,0:*").unwrap();
        assert!(l.resolve(0x2000, Path::new("img")).is_ok());
        assert!(matches!(
            l.resolve(0x100000, Path::new("img")),
            Err(Error::Parse { .. })
        ));
    }
}
