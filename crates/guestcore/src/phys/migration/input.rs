//! A forward-only byte source for the stream parser: a buffer over any [`Read`], with the
//! look-ahead the section framing needs, the stream position of every byte, and skipping.
//!
//! A migration stream may arrive through a pipe, so nothing here seeks backwards. Skipping
//! forwards seeks when the source can ([`Input::seekable`]: a file or an in-memory map, so the
//! offline reader never copies page bytes it only indexes) and reads and drops bytes otherwise.

use crate::{Error, Result};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Seeks `n` bytes forward from the reader's current position.
type SkipFn<R> = fn(&mut R, u64) -> io::Result<()>;

/// Bytes read ahead per `read` call from a pipe or file.
const CHUNK: usize = 256 << 10;

pub(crate) struct Input<R> {
    r: R,
    buf: Vec<u8>,
    /// `buf[lo..hi]` holds the bytes not yet consumed.
    lo: usize,
    hi: usize,
    /// Stream offset of `buf[lo]`.
    pos: u64,
    /// Bytes to ask for per read beyond what the caller needs.
    chunk: usize,
    skip: Option<SkipFn<R>>,
    eof: bool,
    /// Names the stream in errors.
    pub(crate) name: PathBuf,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(r: R, name: PathBuf) -> Self {
        Input {
            r,
            buf: Vec::new(),
            lo: 0,
            hi: 0,
            pos: 0,
            chunk: CHUNK,
            skip: None,
            eof: false,
            name,
        }
    }

    /// Stream offset of the next byte.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// A format error at the current position.
    pub(crate) fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::format(
            self.name.clone(),
            format!("at offset {:#x}: {what}", self.pos),
        )
    }

    fn io_err(&self, e: io::Error) -> Error {
        Error::io(format!("{}: read", self.name.display()), e)
    }

    /// Buffers at least `n` bytes unless the stream ends first; returns what is buffered.
    pub(crate) fn peek(&mut self, n: usize) -> Result<&[u8]> {
        while self.hi - self.lo < n && !self.eof {
            if self.lo > 0 {
                self.buf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            // Grow towards `chunk` as the stream proves long: a short stream never pays
            // for a large buffer.
            if self.hi == self.buf.len() || self.buf.len() < n {
                let grown = (self.buf.len() * 2).clamp(4096, self.chunk.max(4096));
                self.buf.resize(n.max(grown), 0);
            }
            match self.r.read(&mut self.buf[self.hi..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.hi += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        Ok(&self.buf[self.lo..self.hi])
    }

    /// True when no byte is left.
    pub(crate) fn at_end(&mut self) -> Result<bool> {
        Ok(self.peek(1)?.is_empty())
    }

    /// Consumes exactly `n` bytes; `what` names them in the truncation error.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let have = self.peek(n)?.len();
        if have < n {
            return Err(self.err(format!(
                "stream ends inside {what} ({have} of {n} bytes there)"
            )));
        }
        let s = self.lo;
        self.lo += n;
        self.pos += n as u64;
        Ok(&self.buf[s..s + n])
    }

    /// Consumes `n` already-buffered bytes (after a [`peek`](Self::peek) that showed them).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.hi - self.lo);
        self.lo += n;
        self.pos += n as u64;
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn be16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    pub(crate) fn be32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    pub(crate) fn be64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }

    /// A string of one length byte and that many bytes (QEMU's idstr encoding).
    pub(crate) fn short_str(&mut self, what: &str) -> Result<String> {
        let n = self.u8(what)? as usize;
        let b = self.take(n, what)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// Skips `n` bytes: seeks when the source can, reads and drops them otherwise. A seek
    /// past the end is noticed by the next read.
    pub(crate) fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        let buffered = (self.hi - self.lo) as u64;
        if n <= buffered {
            self.consume(n as usize);
            return Ok(());
        }
        self.consume(buffered as usize);
        let rest = n - buffered;
        match self.skip {
            Some(f) => f(&mut self.r, rest).map_err(|e| self.io_err(e))?,
            None => {
                let got = io::copy(&mut (&mut self.r).take(rest), &mut io::sink())
                    .map_err(|e| self.io_err(e))?;
                if got < rest {
                    self.pos += got;
                    return Err(self.err(format!("stream ends inside {what}")));
                }
            }
        }
        self.pos += rest;
        Ok(())
    }
}

impl<R: Read + Seek> Input<R> {
    /// An input that skips by seeking; `chunk` bytes are read ahead per read (small for an
    /// in-memory source, so page bytes that are only indexed are never copied).
    pub(crate) fn seekable(r: R, name: PathBuf, chunk: usize) -> Self {
        let mut i = Input::new(r, name);
        i.chunk = chunk.max(64);
        i.skip = Some(|r, n| {
            let n = i64::try_from(n).map_err(|_| io::Error::other("skip too large"))?;
            r.seek(SeekFrom::Current(n)).map(|_| ())
        });
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(out)) => {
                    *out = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn peek_take_skip_and_positions() {
        let data: Vec<u8> = (0..=255).collect();
        let mut i = Input::new(Trickle(&data), "t".into());
        assert_eq!(i.peek(4).unwrap(), &[0, 1, 2, 3]);
        assert_eq!(i.be16("x").unwrap(), 0x0001);
        assert_eq!(i.pos(), 2);
        i.skip(100, "x").unwrap();
        assert_eq!(i.pos(), 102);
        assert_eq!(i.u8("x").unwrap(), 102);
        let e = i.take(1000, "a page").unwrap_err().to_string();
        assert!(e.contains("stream ends inside a page"), "{e}");
        let mut s = Input::seekable(io::Cursor::new(&data[..]), "s".into(), 8);
        s.skip(254, "x").unwrap();
        assert_eq!(s.pos(), 254);
        let e = s.be32("x").unwrap_err().to_string();
        assert!(e.contains("2 of 4"), "{e}");
        let mut s = Input::new(&data[..], "s".into());
        assert!(s.skip(300, "pages").is_err());
    }
}
