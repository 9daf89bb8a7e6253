//! The raw system calls guestcore makes outside the watchdog (whose forked child has its own,
//! async-signal-safe set in `qmp::watchdog::sys`): each one a safe function here, so the
//! modules that use them hold no `unsafe`. The pipe and `SCM_RIGHTS` code uses rustix and
//! needs none; these are the calls rustix lacks or gets wrong for us (`SO_PEERCRED` of a peer
//! in another pid namespace reports pid 0, which rustix's non-zero `Pid` cannot hold).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// `SO_PEERCRED` of a connected Unix socket: the pid of the process that created the other
/// end (std's `UnixStream::peer_cred` is unstable). A peer whose pid is not visible from
/// here (0) is [`io::ErrorKind::NotFound`].
pub(crate) fn peer_pid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is a valid socket owned by `stream`; `cred` and `len` are valid for
    // writes of the sizes given, as getsockopt(SO_PEERCRED) requires.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if cred.pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the peer has no pid",
        ));
    }
    Ok(cred.pid as u32)
}

/// One `copy_file_range` of up to `len` bytes from `src` at `*off_in` to `dst` at `*off_out`;
/// the kernel advances both offsets (the files' positions are not used). Returns the bytes
/// copied (0 at the end of `src`) or the call's error.
pub(crate) fn copy_file_range(
    src: &File,
    off_in: &mut libc::loff_t,
    dst: &File,
    off_out: &mut libc::loff_t,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed `File`s);
    // the offset pointers come from live `&mut`s, so the kernel uses and updates them
    // instead of the files' positions; no memory of ours is read or written besides them.
    let n =
        unsafe { libc::copy_file_range(src.as_raw_fd(), off_in, dst.as_raw_fd(), off_out, len, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Starts writing `[offset, offset + len)` of `file` back to disk without waiting
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). A hint: failures are ignored.
pub(crate) fn start_writeback(file: &File, offset: libc::off64_t, len: libc::off64_t) {
    // SAFETY: `file` is an open descriptor for the duration of the call; sync_file_range reads
    // and writes no memory of ours.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// Where the next data at or after `offset` of `file` begins (`lseek` with `SEEK_DATA`):
/// `Ok(None)` when only a hole follows up to the end (`ENXIO`). Filesystems without hole
/// support report every offset as data. The call moves the file's position, which guestcore
/// never uses for the files it reads (they are read at explicit offsets only).
pub(crate) fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_DATA)
}

/// Where the hole at or after `offset` of `file` begins (`lseek` with `SEEK_HOLE`; the end of
/// the file counts as one). `Ok(None)` when `offset` is at or past the end (`ENXIO`).
pub(crate) fn seek_hole(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_HOLE)
}

fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let at = libc::off64_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off64_t"))?;
    // SAFETY: `file` is an open descriptor for the duration of the call; lseek reads and
    // writes no memory of ours.
    let r = unsafe { libc::lseek64(file.as_raw_fd(), at, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Makes `file`'s descriptor refer to `/dev/null` instead of what it was open on, in place
/// (`dup3`): the old open file loses this reference — for the only read end of a pipe, the
/// pipe's writer then gets `EPIPE` — while `file` keeps owning a valid descriptor, so a read
/// on it (from any thread) gives end of file and its eventual close is as before.
pub(crate) fn detach_to_dev_null(file: &File) -> io::Result<()> {
    let null = File::open("/dev/null")?;
    // SAFETY: both descriptors are open and owned by live `File`s for the whole call; dup3
    // atomically closes what `file`'s number referred to and makes the number refer to
    // /dev/null (close-on-exec kept), so `file` still owns exactly one valid descriptor.
    let rc = unsafe { libc::dup3(null.as_raw_fd(), file.as_raw_fd(), libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
