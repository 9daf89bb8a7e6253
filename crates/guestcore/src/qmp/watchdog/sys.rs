//! The watchdog process itself: every `unsafe` call of the watchdog lives here.
//!
//! [`spawn`] forks from a process that may run many threads. POSIX allows the child of such a
//! fork only async-signal-safe calls until it exits or execs: no allocation, no locks, no std
//! I/O, no panics. So everything the child needs — the socket address, the QMP commands, their
//! reply markers — is built by the parent beforehand ([`Prepared`]), and the child's code below
//! uses only raw system calls (`sigaction`, `sigprocmask`, `close_range`/`close`, `setsid`,
//! `fork`, `poll`, `read`, `socket`, `connect`, `send`, `recv`, `clock_gettime`, `nanosleep`,
//! `_exit`) on stack buffers and on that memory, which it only reads.
//!
//! Double fork: the parent forks an intermediate child that forks the watchdog and exits at
//! once; the parent reaps the intermediate. The watchdog is then nobody's child in the host
//! program (init or a subreaper reaps it), so a host that waits for "any child" never sees it
//! and no zombie is left while the host runs on.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// The byte the parent writes to stand the watchdog down.
pub(super) const DISARM: u8 = b'D';
/// The byte the parent writes while it reads a snapshot stream the guest waits on: from now on
/// the next byte (this or [`REST`]) is due within the heartbeat limit, or the watchdog
/// SIGKILLs the parent and fires.
pub(super) const HEARTBEAT: u8 = b'H';
/// The byte the parent writes when nothing waits on it any more (the stream ended, or was
/// cut): no heartbeat is due until the next [`HEARTBEAT`].
pub(super) const REST: u8 = b'R';

/// One QMP command the watchdog sends when it fires, built before the fork.
pub(super) struct Step {
    /// The command, one newline-terminated line, with `"id": marker`.
    pub(super) line: Vec<u8>,
    /// The command's id as it appears in QEMU's reply (quoted, so that no other id contains
    /// it): the reply line holding it is this command's, success or error.
    pub(super) marker: Vec<u8>,
    /// Send the command again (every 50 ms, until the window closes) while QEMU answers it
    /// with an error: for a command QEMU refuses only for a moment (the migration capability
    /// while a cancelled migration is still ending).
    pub(super) retry_on_error: bool,
}

/// Everything the watchdog child touches, built before the fork.
pub(super) struct Prepared {
    addr: libc::sockaddr_un,
    addr_len: libc::socklen_t,
    /// The commands, sent one at a time, each after the reply to the one before.
    steps: Vec<Step>,
    /// How long the watchdog keeps trying once it fires.
    window: Duration,
    /// The process that arms it, SIGKILLed when its heartbeat stops (see [`HEARTBEAT`]).
    owner: libc::pid_t,
    /// How long after a [`HEARTBEAT`] the next byte must come.
    heartbeat_limit: Duration,
}

impl Prepared {
    /// The address of `socket`, or `None` when it does not fit a `sockaddr_un`.
    pub(super) fn new(
        socket: &Path,
        steps: Vec<Step>,
        window: Duration,
        heartbeat_limit: Duration,
    ) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt;
        let path = socket.as_os_str().as_bytes();
        // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        // Keep a terminating NUL: sun_path must hold the path and one zero byte.
        if path.is_empty() || path.contains(&0) || path.len() >= addr.sun_path.len() {
            return None;
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path) {
            *d = *s as libc::c_char;
        }
        let addr_len = (std::mem::size_of::<libc::sa_family_t>() + path.len() + 1) as u32;
        assert!(steps.iter().all(|s| !s.marker.is_empty()
            && s.marker.len() <= MARKER_MAX
            && s.line.ends_with(b"\n")));
        Some(Prepared {
            addr,
            addr_len,
            steps,
            window,
            owner: std::process::id() as libc::pid_t,
            heartbeat_limit,
        })
    }

    /// The same, watching process `owner` instead of this one (tests: a child to stall).
    #[cfg(test)]
    pub(super) fn with_owner(mut self, owner: u32) -> Self {
        self.owner = owner as libc::pid_t;
        self
    }
}

/// The longest reply marker a step may have.
const MARKER_MAX: usize = 64;

/// Starts the watchdog for `p`; returns the write end of its pipe (close-on-exec), which only
/// this process holds. Writing [`DISARM`] stands it down; EOF without it (this process died, or
/// dropped the fd) makes it send its steps.
pub(super) fn spawn(p: &Prepared) -> io::Result<OwnedFd> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is valid for two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let r = std::os::fd::AsRawFd::as_raw_fd(&read_end);

    // Block every signal across the fork, so that no handler of the host program (ctrlc's,
    // say) runs in a child before the child has reset the dispositions.
    // SAFETY: sigset_t is plain old data; sigfillset/pthread_sigmask get valid pointers.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, plain old data.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid, initialised locals.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child runs only `intermediate`, which makes async-signal-safe calls on
    // memory prepared before the fork and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see `intermediate`.
        unsafe { intermediate(p, r) }
    }
    let fork_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above for this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(read_end);
    if pid < 0 {
        return Err(fork_err);
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is valid for writes.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // The host ignores SIGCHLD: the kernel reaped it; its status is lost.
            Some(libc::ECHILD) => return Ok(write_end),
            _ => return Err(e),
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(write_end)
    } else {
        Err(io::Error::other(
            "the watchdog process could not be started",
        ))
    }
}

/// The intermediate child: forks the watchdog and exits (0 when the fork worked).
///
/// # Safety
/// Only in the child of `fork`, with every signal blocked; `p` and `r` as in [`spawn`].
unsafe fn intermediate(p: &Prepared, r: RawFd) -> ! {
    // SAFETY: fork and _exit are async-signal-safe; the grandchild runs `watchdog`.
    unsafe {
        match libc::fork() {
            0 => watchdog(p, r),
            n if n > 0 => libc::_exit(0),
            _ => libc::_exit(1),
        }
    }
}

/// The watchdog: waits for the disarm byte or EOF on `r`; on EOF sends its steps.
///
/// # Safety
/// Only in a forked child, with every signal blocked; makes async-signal-safe calls only.
unsafe fn watchdog(p: &Prepared, r: RawFd) -> ! {
    // SAFETY: (the whole body) raw system calls on descriptors this process owns and on stack
    // or pre-fork memory that nothing else in this single-threaded child can touch.
    unsafe {
        // 1. Signals: default dispositions (no host handler runs here), except that a terminal's
        //    SIGINT/SIGHUP and a closed socket's SIGPIPE are ignored; then unblock.
        for sig in 1..libc::SIGRTMAX() {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = if sig == libc::SIGINT || sig == libc::SIGHUP || sig == libc::SIGPIPE
            {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // 2. Own session: Ctrl-C or a hangup of guestcore's terminal does not reach us.
        libc::setsid();
        // 3. Close every inherited descriptor but the pipe's read end. Above all guestcore's
        //    own QMP connection: while any process holds it open, QEMU never serves the next
        //    client. And the pipe's write end, or EOF would never come.
        close_all_but(r);

        // 4. Wait: for the disarm byte, EOF, or (after a heartbeat) the heartbeat limit.
        let limit = p.heartbeat_limit.as_millis() as i64;
        let mut due: Option<i64> = None;
        loop {
            let mut pfd = libc::pollfd {
                fd: r,
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = match due {
                Some(t) => (t - now_ms()).clamp(0, i32::MAX as i64) as libc::c_int,
                None => -1,
            };
            let n = libc::poll(&mut pfd, 1, timeout);
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                libc::_exit(2);
            }
            if n == 0 {
                // The owner's heartbeat stopped while the guest waits on its stream: it is
                // stopped (SIGSTOP, a debugger) or starved. Kill it (which closes its QMP
                // connection and the stream's read end, so QEMU's next write fails and the
                // guest runs on), then fire. The owner still holds the write end (no EOF), so
                // the pid is still the owner's, not a recycled one.
                libc::kill(p.owner, libc::SIGKILL);
                break;
            }
            let mut b = 0u8;
            let n = libc::read(r, (&mut b as *mut u8).cast(), 1);
            match (n, b) {
                (1, DISARM) => libc::_exit(0),
                (1, HEARTBEAT) => due = Some(now_ms() + limit),
                (1, REST) => due = None,
                (0 | 1, _) => break, // EOF (or any other byte): fire
                _ if errno() == libc::EINTR => {}
                _ => break,
            }
        }
        libc::close(r);

        // 5. Fire: connect (queued behind guestcore's dying connection until QEMU notices it
        //    closed), negotiate capabilities and send each step, waiting for its reply. A
        //    connection lost midway starts over on a new one: every step is harmless twice.
        let deadline = now_ms() + p.window.as_millis() as i64;
        while now_ms() < deadline {
            match try_restore(p, deadline) {
                Attempt::Done => libc::_exit(0),
                Attempt::NoQemu => libc::_exit(4),
                Attempt::Again => sleep_ms(20),
            }
        }
        libc::_exit(3)
    }
}

/// How one attempt ended.
enum Attempt {
    /// QEMU replied to every step.
    Done,
    /// Nothing listens on the socket (QEMU exited): nothing left to restore.
    NoQemu,
    /// Try again on a new connection.
    Again,
}

/// One attempt over one connection.
///
/// # Safety
/// As [`watchdog`].
unsafe fn try_restore(p: &Prepared, deadline: i64) -> Attempt {
    // SAFETY: as `watchdog`; `p.addr` is a complete sockaddr_un of `p.addr_len` bytes.
    unsafe {
        let s = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if s < 0 {
            return Attempt::Again;
        }
        let rc = libc::connect(s, (&p.addr as *const libc::sockaddr_un).cast(), p.addr_len);
        // A Unix stream connect either completes or fails at once: EAGAIN means QEMU's listen
        // backlog is full (other clients queued), retry later; no socket file, or no listener
        // on it, means QEMU is gone. A stopped QEMU still listens: the connection queues and
        // is served when it runs again, within the window.
        let out = if rc != 0 {
            match errno() {
                libc::ENOENT | libc::ECONNREFUSED => Attempt::NoQemu,
                _ => Attempt::Again,
            }
        } else if talk(p, s, deadline) {
            Attempt::Done
        } else {
            Attempt::Again
        };
        libc::close(s);
        out
    }
}

/// The longest line the reply reader holds; a longer one (no reply of ours is) is skipped.
const LINE_MAX: usize = 4096;

/// QEMU's replies, one line at a time, on stack memory.
struct Lines {
    buf: [u8; LINE_MAX],
    len: usize,
    /// Inside a line longer than `buf`: skip to its end.
    skipping: bool,
}

/// Sends `qmp_capabilities` and every step over the connected socket `s`; true when every
/// step got its reply (a step that retries on error: a success, or the window's end).
///
/// # Safety
/// As [`watchdog`]; `s` is a non-blocking stream socket this process owns.
unsafe fn talk(p: &Prepared, s: RawFd, deadline: i64) -> bool {
    // SAFETY: as `watchdog`.
    unsafe {
        // QEMU buffers it until it serves this connection; its reply carries no id of ours.
        if !send_all(s, b"{\"execute\":\"qmp_capabilities\"}\n", deadline) {
            return false;
        }
        let mut lines = Lines {
            buf: [0; LINE_MAX],
            len: 0,
            skipping: false,
        };
        for step in &p.steps {
            loop {
                if !send_all(s, &step.line, deadline) {
                    return false;
                }
                match reply(s, &mut lines, &step.marker, deadline) {
                    None => return false,
                    Some(true) if step.retry_on_error && now_ms() + 50 < deadline => sleep_ms(50),
                    Some(_) => break,
                }
            }
        }
        true
    }
}

/// Writes all of `data` to `s` before `deadline`.
///
/// # Safety
/// As [`talk`].
unsafe fn send_all(s: RawFd, data: &[u8], deadline: i64) -> bool {
    // SAFETY: as `watchdog`; `data` is valid for reads of its length.
    unsafe {
        let mut sent = 0;
        while sent < data.len() {
            if !wait(s, libc::POLLOUT, deadline) {
                return false;
            }
            let n = libc::send(
                s,
                data[sent..].as_ptr().cast(),
                data.len() - sent,
                libc::MSG_NOSIGNAL,
            );
            if n < 0 {
                if errno() == libc::EAGAIN || errno() == libc::EINTR {
                    continue;
                }
                return false;
            }
            sent += n as usize;
        }
        true
    }
}

/// Reads QEMU's lines until the one holding `marker` (the reply to the step sent last):
/// `Some(true)` when it is an error reply, `Some(false)` for a success, `None` when the
/// connection closed or the deadline passed first. Events and other lines are skipped.
///
/// # Safety
/// As [`talk`].
unsafe fn reply(s: RawFd, lines: &mut Lines, marker: &[u8], deadline: i64) -> Option<bool> {
    // SAFETY: as `watchdog`; `lines.buf[lines.len..]` is valid for writes.
    unsafe {
        loop {
            while let Some(nl) = lines.buf[..lines.len].iter().position(|&b| b == b'\n') {
                let line = &lines.buf[..nl];
                let ours = !lines.skipping && contains(line, marker);
                let error = ours && contains(line, b"\"error\"");
                lines.skipping = false;
                lines.buf.copy_within(nl + 1..lines.len, 0);
                lines.len -= nl + 1;
                if ours {
                    return Some(error);
                }
            }
            if lines.len == LINE_MAX {
                lines.len = 0;
                lines.skipping = true;
            }
            if !wait(s, libc::POLLIN, deadline) {
                return None;
            }
            let n = libc::recv(
                s,
                lines.buf[lines.len..].as_mut_ptr().cast(),
                LINE_MAX - lines.len,
                0,
            );
            if n == 0 {
                return None; // QEMU closed this connection: try a new one
            }
            if n < 0 {
                if errno() == libc::EAGAIN || errno() == libc::EINTR {
                    continue;
                }
                return None;
            }
            lines.len += n as usize;
        }
    }
}

/// Whether `hay` holds `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Sleeps `ms` milliseconds (less than a second).
fn sleep_ms(ms: i64) {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: (ms * 1_000_000) as libc::c_long,
    };
    // SAFETY: `pause` is a valid timespec; nanosleep is async-signal-safe.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

/// Polls `s` for `events` until `deadline`; true when ready.
///
/// # Safety
/// As [`watchdog`].
unsafe fn wait(s: RawFd, events: libc::c_short, deadline: i64) -> bool {
    // SAFETY: as `watchdog`.
    unsafe {
        loop {
            let left = deadline - now_ms();
            if left <= 0 {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: s,
                events,
                revents: 0,
            };
            let n = libc::poll(&mut pfd, 1, left.min(i32::MAX as i64) as libc::c_int);
            if n > 0 {
                return true; // ready, or an error/hangup the next call reports
            }
            if n < 0 && errno() != libc::EINTR {
                return false;
            }
        }
    }
}

/// Closes every descriptor except `keep`.
///
/// # Safety
/// As [`watchdog`]: no other code in this process uses the descriptors it closes.
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: as `watchdog`.
    unsafe {
        let k = keep as libc::c_uint;
        let lo = if k > 0 {
            libc::syscall(
                libc::SYS_close_range,
                0 as libc::c_uint,
                k - 1,
                0 as libc::c_uint,
            )
        } else {
            0
        };
        let hi = libc::syscall(
            libc::SYS_close_range,
            k + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        if lo == 0 && hi == 0 {
            return;
        }
        // Kernels before 5.9: close one by one, up to the descriptor limit.
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0
            && lim.rlim_cur != libc::RLIM_INFINITY
        {
            lim.rlim_cur.min(1 << 20) as libc::c_int
        } else {
            1 << 16
        };
        for fd in 0..max {
            if fd != keep {
                libc::close(fd);
            }
        }
    }
}

/// Milliseconds on the monotonic clock.
// `time_t` and `c_long` are i64 on x86_64 only: keep the casts for other hosts.
#[allow(clippy::unnecessary_cast)]
fn now_ms() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is valid for writes; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as i64 * 1000 + t.tv_nsec as i64 / 1_000_000
}

/// This thread's errno.
fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot (async-signal-safe).
    unsafe { *libc::__errno_location() }
}
