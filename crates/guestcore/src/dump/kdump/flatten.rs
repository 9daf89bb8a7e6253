//! Where the kdump writer's bytes go: a seekable file (positioned writes) or makedumpfile's
//! flattened stream, where every positioned write becomes a record `{offset, size, data}` so
//! the file can be produced on a pipe and rebuilt later (`makedumpfile -R`).

use crate::format::kdump::{
    FlatHeader, FlatRecordHeader, FLAT_END, FLAT_HEADER_SIZE, FLAT_SIGNATURE, FLAT_TYPE,
    FLAT_VERSION,
};
use std::io::{self, Seek, SeekFrom, Write};
use zerocopy::IntoBytes;

/// A destination that accepts writes at absolute offsets of the plain kdump file.
pub(crate) trait PositionedSink {
    /// Writes `data` at offset `off` of the (plain) file.
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()>;
    /// Ends the output (flushes; the flattened form writes its end marker).
    fn finish(&mut self) -> io::Result<()>;
    /// Bytes that went to the underlying writer so far.
    fn bytes_out(&self) -> u64;
}

/// Positioned writes on a seekable writer; seeks only when the position changes.
#[derive(Debug)]
pub(crate) struct SeekSink<W: Write + Seek> {
    inner: W,
    pos: Option<u64>,
    end: u64,
}

impl<W: Write + Seek> SeekSink<W> {
    /// Wraps `inner` (its current position is not trusted).
    pub(crate) fn new(inner: W) -> Self {
        SeekSink {
            inner,
            pos: None,
            end: 0,
        }
    }
    /// The writer back.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + Seek> PositionedSink for SeekSink<W> {
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        if self.pos != Some(off) {
            self.inner.seek(SeekFrom::Start(off))?;
        }
        self.inner.write_all(data)?;
        let p = off + data.len() as u64;
        self.pos = Some(p);
        self.end = self.end.max(p);
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
    fn bytes_out(&self) -> u64 {
        self.end
    }
}

/// makedumpfile's flattened stream on any writer (a pipe, stdout).
#[derive(Debug)]
pub(crate) struct FlatSink<W: Write> {
    inner: W,
    out: u64,
}

impl<W: Write> FlatSink<W> {
    /// Writes the 4096-byte flattened header.
    pub(crate) fn new(mut inner: W) -> io::Result<Self> {
        let mut sig = [0u8; 16];
        sig[..FLAT_SIGNATURE.len()].copy_from_slice(FLAT_SIGNATURE);
        let h = FlatHeader {
            signature: sig,
            type_: FLAT_TYPE.into(),
            version: FLAT_VERSION.into(),
        };
        let mut block = vec![0u8; FLAT_HEADER_SIZE];
        block[..size_of::<FlatHeader>()].copy_from_slice(h.as_bytes());
        inner.write_all(&block)?;
        Ok(FlatSink {
            inner,
            out: FLAT_HEADER_SIZE as u64,
        })
    }
    /// The writer back.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> PositionedSink for FlatSink<W> {
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(()); // readers reject records of size 0
        }
        let h = FlatRecordHeader {
            offset: (off as i64).into(),
            size: (data.len() as i64).into(),
        };
        self.inner.write_all(h.as_bytes())?;
        self.inner.write_all(data)?;
        self.out += (size_of::<FlatRecordHeader>() + data.len()) as u64;
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        let h = FlatRecordHeader {
            offset: FLAT_END.into(),
            size: FLAT_END.into(),
        };
        self.inner.write_all(h.as_bytes())?;
        self.out += size_of::<FlatRecordHeader>() as u64;
        self.inner.flush()
    }
    fn bytes_out(&self) -> u64 {
        self.out
    }
}
