//! The watchdog that resumes a guest whose pauser died.
//!
//! Why: a session that stops the guest ([`LiveSession::pause`](super::LiveSession::pause))
//! resumes it on every path *inside* the process — `resume`, `Drop`, unwinding, the CLI's
//! SIGINT/SIGTERM/SIGHUP handling. None of those runs when the process is SIGKILLed, aborts, or
//! crashes, and the guest would stay paused for good. So `pause` arms a [`Watchdog`] before it
//! sends `stop`, and `resume` disarms it once `cont` succeeded: every program that embeds the
//! library gets it.
//!
//! Design: [`Watchdog::arm`] forks a small process (raw system calls only, in its `sys` module) that holds
//! the read end of a pipe whose write end only this process holds (close-on-exec). Disarming
//! writes one byte. EOF without that byte means every holder of the write end is gone — the
//! process died, however — and the watchdog then connects to the QMP socket, negotiates
//! capabilities and sends `cont`, retrying for [`FIRE_WINDOW`].
//!
//! Facts this relies on (checked with QEMU 10.0.2):
//!
//! * a `-qmp unix:PATH,server=on,wait=off` monitor serves one client at a time. A second
//!   client's `connect` succeeds (the listen backlog), but QEMU greets it and reads its input
//!   only once the first one disconnected; what it wrote meanwhile stays buffered and is then
//!   executed. So the watchdog cannot talk while guestcore holds the socket, and must not hold
//!   a connection itself while armed (it would be served as soon as guestcore closes its own,
//!   at every normal end). It connects only when it fires; guestcore's connection is closed by
//!   the kernel when guestcore dies, and QEMU serves the watchdog some milliseconds later.
//! * `cont` on a running guest does nothing and succeeds, so firing after a `cont` that did
//!   reach QEMU (the process died between `cont` and the disarm byte) is harmless.
//! * the child must close every descriptor it inherited, guestcore's QMP connection above all:
//!   while any process holds that socket open, QEMU serves no next client.
//!
//! Choices: a fork rather than a helper binary, because a library cannot assume its host
//! binary has a hidden subcommand, nor that a separate executable is installed beside it.
//! Double fork (the watchdog is reparented to init): no zombie, and a host that waits for
//! any child never meets it. `setsid` and ignored SIGINT/SIGHUP: Ctrl-C or a hangup of
//! guestcore's terminal reaches its process group, and the watchdog must outlive guestcore
//! (guestcore's own handler resumes the guest then; the watchdog only stands down after it).
//! No `prctl(PR_SET_PDEATHSIG)`: it fires when the *thread* that forked exits, not the process,
//! so a session paused from a worker thread would be resumed while still in use — and after
//! the double fork the watchdog's parent is the short-lived intermediate anyway. Pipe EOF is
//! exactly "no process holds the write end any more".
//!
//! What it does not cover:
//!
//! * a guest that was already paused when the session came: the session never stops it, arms
//!   nothing, and it stays paused, whatever happens to guestcore;
//! * the session's QMP connection lost while guestcore lives (a reply timed out, QEMU closed
//!   it): `resume`'s `cont` fails; the session then shuts its connection down and fires the
//!   watchdog, which tries a fresh connection for [`FIRE_WINDOW`] and gives up if QEMU never
//!   serves it (QEMU wedged, or another client holding the monitor). QEMU refusing `cont` with
//!   an error reply is final: the watchdog would get the same answer, so it is disarmed;
//! * a guestcore that hangs without dying: its QMP waits are bounded by the client's timeout,
//!   its own work is not; any signal or SIGKILL then resumes the guest;
//! * a host program that forks (without exec) while paused: its child holds the write end too,
//!   and the watchdog fires only when both are gone;
//! * a SIGKILL during a QEMU `background-snapshot` migration: nothing to do — the guest is not
//!   stopped by guestcore then (beyond QEMU's own millisecond stop), and QEMU itself fails and
//!   cleans up the migration when its stream's reader goes away.

mod sys;

use crate::{Error, Result};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// How long a fired watchdog keeps trying to reach QEMU.
pub(super) const FIRE_WINDOW: Duration = Duration::from_secs(5);

/// The `id` of the watchdog's `cont`, which QEMU echoes in its reply.
const CONT_ID: &str = "guestcore-watchdog";

/// An armed watchdog for one QMP socket. [`disarm`](Self::disarm) when the guest was resumed;
/// [`fire`](Self::fire) or drop it to have the watchdog send `cont` itself.
#[derive(Debug)]
pub(super) struct Watchdog {
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    /// Starts a watchdog that sends `cont` to the QEMU at `socket` once this process is gone
    /// (or [`fire`](Self::fire)s it) without having disarmed it.
    pub(super) fn arm(socket: &Path) -> Result<Watchdog> {
        let request = format!(
            "{{\"execute\":\"qmp_capabilities\"}}\n{{\"execute\":\"cont\",\"id\":\"{CONT_ID}\"}}\n"
        )
        .into_bytes();
        let prepared = sys::Prepared::new(socket, request, CONT_ID.as_bytes(), FIRE_WINDOW)
            .ok_or_else(|| Error::Qmp {
                socket: socket.display().to_string(),
                what: "the socket path is too long for a Unix socket address; no watchdog, so not pausing".into(),
            })?;
        let pipe = sys::spawn(&prepared).map_err(|e| {
            Error::io(
                format!(
                    "{}: cannot start the watchdog that resumes the guest if guestcore dies; not pausing",
                    socket.display()
                ),
                e,
            )
        })?;
        Ok(Watchdog { pipe: Some(pipe) })
    }

    /// Stands the watchdog down: the guest was resumed (or must not be).
    pub(super) fn disarm(mut self) {
        if let Some(fd) = self.pipe.take() {
            let mut f = std::fs::File::from(fd);
            // If this write fails the watchdog sees EOF and sends a `cont` of its own, which
            // is harmless on a guest that runs.
            let _ = f.write_all(&[sys::DISARM]);
        }
    }

    /// Has the watchdog send `cont` now (over its own connection, once QEMU serves it).
    pub(super) fn fire(mut self) {
        self.pipe.take();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the write end without the disarm byte fires, like the process dying.
        self.pipe.take();
    }
}

#[cfg(test)]
mod tests;
