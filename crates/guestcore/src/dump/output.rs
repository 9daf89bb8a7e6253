//! Atomic output files: a dump is written to a temporary file in the target's directory and
//! linked or renamed over the target only once it is complete and on disk. An error, a cancel
//! or a panic drops the temporary file, so a failed dump never leaves a truncated core behind,
//! and an existing file is never half-overwritten.
//!
//! The temporary file has no name at all where Linux allows it: it is opened with `O_TMPFILE`
//! in the target's directory and given its name by `linkat` at commit (through
//! `/proc/self/fd/N`), so even a SIGKILL, which no handler sees, leaves nothing behind: the
//! kernel frees an unnamed file with its last descriptor. `--force` links it to a temporary
//! name and renames that over the target (`linkat` never replaces a name), so the target is
//! replaced in one step. A filesystem that refuses `O_TMPFILE` (or a system without `/proc`)
//! gets the named fallback: `.NAME.guestcore-XXXXXX` beside the target, renamed at commit,
//! removed on every ending a handler sees (error, Ctrl-C, SIGTERM, SIGHUP) but not on SIGKILL.
//!
//! Every file writer goes through here (ELF, streamed ELF, kdump), and so can any other
//! command that writes a file ([`create_output`]: write into it, then
//! [`commit`](AtomicOutput::commit)).
//!
//! Only a regular file (or nothing) is ever replaced, `force` or not: a FIFO, a device or a
//! socket at the target (or at the end of a symbolic link there) is refused, since renaming a
//! file over it would silently send the dump somewhere its reader never looks. A caller that
//! means to write *into* one streams a flattened kdump into it instead
//! ([`crate::dump::kdump::write_kdump_to`], `Guest::dump_input_stream`).

use crate::{Error, Result};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// How to treat the output path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Replace an existing file. Without it an existing file is an error, raised before any work.
    pub force: bool,
}

/// Opens an atomic output for `path`: checks the target (an existing file is an error unless
/// `opts.force`; a directory always is) and creates the temporary file beside it. Write into
/// it (it is [`std::io::Write`]), then [`commit`](AtomicOutput::commit); dropping it instead removes
/// the temporary file and leaves `path` as it was.
pub fn create_output(path: &Path, opts: &OutputOptions) -> Result<AtomicOutput> {
    AtomicOutput::create(path, opts)
}

/// A temporary file that becomes `path` on [`commit`](Self::commit).
#[derive(Debug)]
pub struct AtomicOutput {
    tmp: Temporary,
    path: PathBuf,
    force: bool,
}

/// The file being written: unnamed (`O_TMPFILE`) where the filesystem allows it, else named.
#[derive(Debug)]
enum Temporary {
    /// No directory entry until commit; freed by the kernel however the process ends.
    Unnamed(File),
    /// `.NAME.guestcore-XXXXXX`, removed on drop.
    Named(tempfile::NamedTempFile),
}

/// How the temporary file is made (tests force the fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum Kind {
    /// `O_TMPFILE`, falling back to a named file where it is refused.
    Unnamed,
    /// A named temporary file only.
    Named,
}

/// Opens an unnamed file in `dir`, or `None` where the filesystem or kernel refuses
/// `O_TMPFILE` (or `/proc/self/fd`, which the commit needs, is missing) so the caller falls back.
fn open_unnamed(dir: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    if !Path::new("/proc/self/fd").is_dir() {
        return Ok(None);
    }
    match rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // What kernels and filesystems without O_TMPFILE answer.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives the unnamed `file` the name `to`; fails with `AlreadyExists` where `to` exists.
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc.as_str(),
        rustix::fs::CWD,
        to,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// Links the unnamed `file` to a fresh `.NAME.guestcore-XXXXXX` in `dir` and renames that over
/// `to`, for a commit that replaces an existing target in one step (the name is removed again
/// if the rename fails).
fn replace_with_unnamed(file: &File, dir: &Path, name: &str, to: &Path) -> io::Result<()> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}.guestcore-"))
        .make_in(dir, |p| link_unnamed(file, p))?
        .persist(to)
        .map_err(|e| e.error)
}

fn already_exists(path: &Path) -> Error {
    Error::OutputExists {
        path: path.to_path_buf(),
    }
}

/// What a file that is not a regular file is, for messages; `None` for a regular file.
pub(crate) fn special_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = file_type;
    Some(if t.is_file() || t.is_symlink() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Fails when `path` cannot be an output: it exists and `force` is off, or it is (or links to)
/// a directory, a FIFO, a device or a socket, which a file renamed over it would replace.
pub(crate) fn check_target(path: &Path, opts: &OutputOptions) -> Result<()> {
    if let Some(kind) = std::fs::metadata(path)
        .ok()
        .and_then(|m| special_kind(m.file_type()))
    {
        return Err(Error::io(
            format!(
                "{}: is {kind}, not a regular file: it is never replaced",
                path.display()
            ),
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::io(
            format!("{}: is a directory", path.display()),
            io::Error::from(io::ErrorKind::InvalidInput),
        )),
        Ok(_) if !opts.force => Err(already_exists(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("{}", path.display()), e)),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl AtomicOutput {
    /// Checks the target and creates an unnamed file in its directory (or, where the
    /// filesystem refuses one, `.NAME.guestcore-XXXXXX` beside it).
    pub(crate) fn create(path: &Path, opts: &OutputOptions) -> Result<Self> {
        Self::create_as(path, opts, Kind::Unnamed)
    }

    fn create_as(path: &Path, opts: &OutputOptions, kind: Kind) -> Result<Self> {
        check_target(path, opts)?;
        let dir = parent_dir(path);
        let name = path
            .file_name()
            .ok_or_else(|| {
                Error::io(
                    format!("{}: not a file name", path.display()),
                    io::Error::from(io::ErrorKind::InvalidInput),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let cannot = |e| {
            Error::io(
                format!(
                    "cannot create {}: cannot create a temporary file in {}",
                    path.display(),
                    dir.display()
                ),
                e,
            )
        };
        let unnamed = match kind {
            Kind::Unnamed => open_unnamed(dir).map_err(cannot)?,
            Kind::Named => None,
        };
        let tmp = match unnamed {
            Some(f) => Temporary::Unnamed(f),
            None => Temporary::Named(
                tempfile::Builder::new()
                    .prefix(&format!(".{name}.guestcore-"))
                    .tempfile_in(dir)
                    .map_err(cannot)?,
            ),
        };
        Ok(AtomicOutput {
            tmp,
            path: path.to_path_buf(),
            force: opts.force,
        })
    }

    /// The temporary file, for positioned writes.
    pub fn file(&self) -> &File {
        match &self.tmp {
            Temporary::Unnamed(f) => f,
            Temporary::Named(t) => t.as_file(),
        }
    }

    /// A second handle on the temporary file, for reading back what was written while the
    /// writer keeps its own (a streamed dump's pages, read by the plan of its end).
    pub(crate) fn reader(&self) -> Result<File> {
        self.file()
            .try_clone()
            .map_err(|e| Error::io(format!("reading back {}", self.path.display()), e))
    }

    /// The temporary file, for writers that need it mutably.
    pub(crate) fn file_mut(&mut self) -> &mut File {
        match &mut self.tmp {
            Temporary::Unnamed(f) => f,
            Temporary::Named(t) => t.as_file_mut(),
        }
    }

    /// The final path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the data to disk and gives the file its final name.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        // A FIFO or device made at the target while the dump ran is not replaced either.
        check_target(&path, &OutputOptions { force: true })?;
        let named = |e: io::Error| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                already_exists(&path)
            } else {
                Error::io(
                    format!("renaming the finished dump to {}", path.display()),
                    e,
                )
            }
        };
        match self.tmp {
            Temporary::Unnamed(file) => {
                file.sync_all()
                    .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
                if self.force {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    replace_with_unnamed(&file, parent_dir(&path), &name, &path).map_err(named)?;
                } else {
                    link_unnamed(&file, &path).map_err(named)?;
                }
            }
            Temporary::Named(tmp) => {
                tmp.as_file()
                    .sync_all()
                    .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
                let persisted = if self.force {
                    tmp.persist(&path)
                } else {
                    tmp.persist_noclobber(&path)
                };
                persisted.map_err(|e| named(e.error))?;
            }
        }
        // Make the rename itself durable; a failure here does not undo a complete file.
        if let Ok(d) = File::open(parent_dir(&path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl io::Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Both ways of making the file: the unnamed one (where this filesystem takes O_TMPFILE)
    /// and the named fallback.
    const KINDS: [Kind; 2] = [Kind::Unnamed, Kind::Named];

    fn is_unnamed(o: &AtomicOutput) -> bool {
        matches!(o.tmp, Temporary::Unnamed(_))
    }

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("core");
            let o = AtomicOutput::create_as(&out, &OutputOptions::default(), kind).unwrap();
            o.file().write_all(b"abc").unwrap();
            if is_unnamed(&o) {
                assert_eq!(entries(dir.path()), Vec::<String>::new(), "{kind:?}");
            } else {
                assert_eq!(entries(dir.path()).len(), 1, "{kind:?}");
                assert!(entries(dir.path())[0].starts_with(".core.guestcore-"));
            }
            o.commit().unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), b"abc");
            assert_eq!(entries(dir.path()), vec!["core"], "{kind:?}");

            let err = AtomicOutput::create_as(&out, &OutputOptions::default(), kind).unwrap_err();
            assert!(err.to_string().contains("exists"), "{err}");

            let o = AtomicOutput::create_as(&out, &OutputOptions { force: true }, kind).unwrap();
            o.file().write_all(b"x").unwrap();
            drop(o);
            assert_eq!(
                entries(dir.path()),
                vec!["core"],
                "{kind:?}: dropped temp file removed"
            );
            assert_eq!(std::fs::read(&out).unwrap(), b"abc");

            let o = AtomicOutput::create_as(&out, &OutputOptions { force: true }, kind).unwrap();
            o.file().write_all(b"new").unwrap();
            o.commit().unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), b"new");
            assert_eq!(
                entries(dir.path()),
                vec!["core"],
                "{kind:?}: nothing beside it"
            );
        }
    }

    /// Where the filesystem takes O_TMPFILE (the test's temporary directory is on one that
    /// does on every Linux filesystem this runs on: ext4, xfs, btrfs, tmpfs), the directory
    /// holds no entry of any name until commit, so a SIGKILL mid-write leaves nothing; the
    /// committed file is readable and private (0600).
    #[test]
    fn unnamed_output_has_no_entry_until_commit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("core.elf");
        let mut o = create_output(&out, &OutputOptions::default()).unwrap();
        assert!(
            is_unnamed(&o),
            "{}: O_TMPFILE refused here; the fallback was taken",
            dir.path().display()
        );
        o.write_all(&[7u8; 1 << 16]).unwrap();
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "mid-write");
        o.commit().unwrap();
        assert_eq!(entries(dir.path()), vec!["core.elf"]);
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 1 << 16]);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }

    #[test]
    fn noclobber_race_is_an_error() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("core");
            let o = AtomicOutput::create_as(&out, &OutputOptions::default(), kind).unwrap();
            std::fs::write(&out, b"other").unwrap(); // appeared while dumping
            let e = o.commit().unwrap_err();
            assert!(e.to_string().contains("exists"), "{kind:?}: {e}");
            assert_eq!(std::fs::read(&out).unwrap(), b"other");
            assert_eq!(entries(dir.path()), vec!["core"], "{kind:?}");
        }
    }

    /// The public way in: write through `Write`, then commit; an existing file needs force.
    #[test]
    fn create_output_writes_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mem.bin");
        let mut o = create_output(&out, &OutputOptions::default()).unwrap();
        o.write_all(b"hello ").unwrap();
        o.write_all(b"world").unwrap();
        assert_eq!(o.path(), out);
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello world");
        assert!(create_output(&out, &OutputOptions::default()).is_err());
        let mut o = create_output(&out, &OutputOptions { force: true }).unwrap();
        o.write_all(b"again").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"again");
    }

    #[test]
    fn directory_target_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AtomicOutput::create(dir.path(), &OutputOptions { force: true }).is_err());
    }

    /// A FIFO, a device, or a link to one is never replaced by a file, `force` or not (a
    /// reader of the FIFO would wait forever while the dump went to a new file).
    #[test]
    fn special_files_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.as_ref().is_ok_and(|s| s.success()), "mkfifo: {made:?}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/null"), "a character device"),
            (link.as_path(), "a character device"),
        ] {
            let e = AtomicOutput::create(path, &OutputOptions { force: true }).unwrap_err();
            assert!(e.to_string().contains(kind), "{}: {e}", path.display());
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(
            entries(dir.path()),
            vec!["link", "pipe"],
            "no temporary file left"
        );
    }
}
