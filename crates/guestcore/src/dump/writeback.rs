//! Early writeback: start writing the output to disk while the dump is still being made.
//!
//! Every writer syncs its file before renaming it into place (atomic output). Left to the
//! final `fsync`, the disk writes would all happen after the last byte is produced: for a
//! 30 MiB kdump file that is ~50 ms of waiting at the end here. `sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE` queues the writeback of a range without waiting, so the disk works
//! while the next pages are compressed and the final `fsync` has little left. It is only a
//! hint: the `fsync` still makes the data durable and reports errors.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Starts writing `[offset, offset + len)` of `file` back to disk without waiting for it
/// (`SYNC_FILE_RANGE_WRITE`). Failures are ignored (see the module doc).
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    crate::sys::start_writeback(file, offset, len);
}

/// Bytes written contiguously before their writeback is started.
const STEP: u64 = 8 << 20;
/// A contiguous run at least this long gets its writeback started when the writer moves away
/// from it (the kdump writer alternates descriptor and page-data runs of a few MiB).
const MIN_RUN: u64 = 1 << 20;

/// The contiguous run of a file written since its last writeback hint: every [`STEP`] bytes
/// written one after another start their writeback, and so does a run of at least [`MIN_RUN`]
/// bytes when a write elsewhere ends it. Shorter runs are left to the final `fsync`.
#[derive(Debug, Default)]
pub(crate) struct WritebackRuns {
    /// `[start, end)` of the run not yet hinted.
    run: (u64, u64),
}

impl WritebackRuns {
    /// Records that `[at, at + len)` of `file` was just written.
    pub(crate) fn wrote(&mut self, file: &File, at: u64, len: u64) {
        let (start, end) = self.run;
        if at != end {
            if end - start >= MIN_RUN {
                start_writeback(file, start, end - start);
            }
            self.run = (at, at);
        }
        self.run.1 = at + len;
        let (start, end) = self.run;
        if end - start >= STEP {
            start_writeback(file, start, end - start);
            self.run = (end, end);
        }
    }
}

/// A file writer (for `BufWriter` and the kdump sinks) whose writes start their own writeback
/// as [`WritebackRuns`] says.
pub(crate) struct WritebackFile<'a> {
    file: &'a mut File,
    pos: u64,
    runs: WritebackRuns,
}

impl<'a> WritebackFile<'a> {
    /// Wraps `file`, positioned at its start.
    pub(crate) fn new(file: &'a mut File) -> Self {
        WritebackFile {
            file,
            pos: 0,
            runs: WritebackRuns::default(),
        }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.runs.wrote(self.file, self.pos, n as u64);
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for WritebackFile<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_and_seeks_land_where_asked() {
        let mut f = tempfile::tempfile().unwrap();
        {
            let mut w = WritebackFile::new(&mut f);
            let big = vec![7u8; (STEP + 5) as usize];
            w.write_all(&big).unwrap();
            w.seek(SeekFrom::Start(3)).unwrap();
            w.write_all(b"abc").unwrap();
            w.seek(SeekFrom::Start(STEP + 5)).unwrap();
            w.write_all(b"end").unwrap();
            w.flush().unwrap();
        }
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, STEP + 8);
        assert_eq!(&back[..9], b"\x07\x07\x07abc\x07\x07\x07");
        assert_eq!(&back[back.len() - 3..], b"end");
    }
}
