//! Outputs that are written into rather than replaced: `-o -` (stdout), and an existing FIFO
//! or character device at the output path (a named pipe read by `ssh` or `zstd`, `/dev/null`).
//!
//! The library never renames a file over those (that would silently send the dump where no
//! reader looks, and leave the pipe's reader waiting), `--force` or not. Writing into one is
//! what the user asked for, as with a shell's `>`, so it needs no `--force`: the bytes go
//! straight into the open path, in order, once — a flattened kdump stream for `dump`, the
//! bytes for `read`. A format that must seek back (an ELF core's headers are planned first and
//! its data written at offsets; a plain kdump file) cannot be written into a pipe and is
//! refused. Block devices and sockets are refused too: a dump is never written over a disk.

use anyhow::{bail, Context as _, Result};
use std::io::Write;
use std::path::Path;

/// What kind of stream `path` is: `None` for a path to create or replace as a file.
pub fn kind(path: &Path) -> Result<Option<&'static str>> {
    use std::os::unix::fs::FileTypeExt;
    if path.as_os_str() == "-" {
        return Ok(Some("stdout"));
    }
    let Ok(m) = std::fs::metadata(path) else {
        return Ok(None);
    };
    let t = m.file_type();
    if t.is_fifo() {
        Ok(Some("a FIFO"))
    } else if t.is_char_device() {
        Ok(Some("a character device"))
    } else if t.is_block_device() || t.is_socket() {
        let what = if t.is_socket() {
            "a socket"
        } else {
            "a block device"
        };
        bail!(
            "{}: is {what}: guestcore writes files, FIFOs and character devices only",
            path.display()
        )
    } else {
        Ok(None)
    }
}

/// Opens the stream `path` ([`kind`] said it is one) for writing: stdout for `-`, else the
/// FIFO or device itself (no truncation, no creation; a FIFO's open waits for its reader).
pub fn open(path: &Path) -> Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("{}: opening it for writing", path.display()))?;
    Ok(Box::new(f))
}
