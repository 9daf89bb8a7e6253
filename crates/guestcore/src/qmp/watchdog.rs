//! The watchdog that puts QEMU back as guestcore found it when guestcore dies: resumes a guest
//! it paused, ends a background snapshot it started and turns the migration capability it set
//! off again.
//!
//! Why: a session that stops the guest ([`LiveSession::pause`](super::LiveSession::pause)) or
//! starts a background snapshot ([`super::snapshot::start`]) undoes it on every path *inside*
//! the process — `resume`, `finish`/`cancel`, `Drop`, unwinding, the CLI's SIGINT/SIGTERM/SIGHUP
//! handling. None of those runs when the process is SIGKILLed, aborts, or crashes: the guest
//! would stay paused for good, or QEMU's `background-snapshot` capability would stay on, and
//! every later `migrate` of that guest would silently be a snapshot (and postcopy refused). So
//! each of them arms a [`Watchdog`] with the list of what to put back ([`Restore`]) before it
//! changes anything, and disarms it once everything is back: every program that embeds the
//! library gets it.
//!
//! Design: [`Watchdog::arm`] forks a small process (raw system calls only, in its `sys` module) that holds
//! the read end of a pipe whose write end only this process holds (close-on-exec). Disarming
//! writes one byte. EOF without that byte means every holder of the write end is gone — the
//! process died, however — and the watchdog then connects to the QMP socket, negotiates
//! capabilities and sends its commands in order, each after the reply to the one before,
//! retrying for [`FIRE_WINDOW`] (a QEMU that is stopped — SIGSTOP, a debugger — still listens:
//! the connection waits and is served when it runs again; a socket nobody listens on means
//! QEMU exited, and the watchdog ends at once).
//!
//! The trigger and the actions are separate: what fires it is the death of every holder of
//! the write end (or [`Watchdog::fire`]), or a stopped heartbeat. While a background
//! snapshot streams, the guest's writes to pages not yet sent wait on the stream, so a
//! guestcore that stops reading it stalls the guest. guestcore cuts a stream it cannot take
//! itself (`snapshot::stall`), but not when it cannot run at all (SIGSTOP, a debugger): so
//! while the guest waits on it, a thread of it sends a [`Heartbeat`], and when none comes for
//! [`HEARTBEAT_LIMIT`] the watchdog SIGKILLs it — its QMP connection and the stream's read
//! end close, QEMU's next write fails and the migration with it, the guest runs on — and
//! fires. (It cannot talk to QEMU instead: guestcore holds the one QMP connection.)
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
//!   reach QEMU (the process died between `cont` and the disarm byte) is harmless. Likewise
//!   `migrate_cancel` with no migration running, `migrate-set-capabilities` to the state a
//!   capability already has, and `closefd` of a name QEMU does not hold (an error reply,
//!   ignored). While a cancelled migration is still ending QEMU refuses to change a
//!   capability ("There's a migration process in progress"): that step is sent again until
//!   QEMU takes it.
//! * a descriptor passed with `getfd` stays in the monitor under its name, across clients,
//!   until `closefd` or a `migrate fd:NAME` takes it.
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
//!   serves it (QEMU wedged for that long, or another client holding the monitor). QEMU refusing `cont` with
//!   an error reply is final: the watchdog would get the same answer, so it is disarmed;
//! * a guestcore that hangs without dying: its QMP waits are bounded by the client's timeout,
//!   its own work is not; any signal or SIGKILL then resumes the guest;
//! * a host program that forks (without exec) while paused: its child holds the write end too,
//!   and the watchdog fires only when both are gone;
//! * a migration someone else started on another monitor in the milliseconds between
//!   guestcore's death (its snapshot's migration fails at QEMU's next write into the closed
//!   pipe) and the watchdog's `migrate_cancel`: that one is cancelled too. QEMU runs one
//!   migration at a time, so none can start while guestcore's still runs;
//! * a QEMU that stays stopped for longer than [`FIRE_WINDOW`] after guestcore died: the
//!   watchdog gives up, and the next background snapshot repairs what it finds
//!   (`snapshot::start`).

mod sys;

use crate::{Error, Result};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// How long a fired watchdog keeps trying to reach QEMU: long enough for a QEMU stopped for
/// a while (SIGSTOP, a debugger) to run again and be put back.
pub(crate) const FIRE_WINDOW: Duration = Duration::from_secs(60);

/// How long the watchdog waits for the next heartbeat of a process whose stream the guest
/// waits on ([`Heartbeat`]) before it SIGKILLs that process and fires. The process itself
/// cuts a stream it cannot take within `snapshot::stall::STREAM_STALL_LIMIT` (1 s); this is
/// the backstop for when it cannot act at all (stopped by SIGSTOP or a debugger, starved of
/// CPU), so it is longer, and it bounds how long such a process stalls the guest.
pub(crate) const HEARTBEAT_LIMIT: Duration = Duration::from_secs(2);

/// The prefix of the `id` of each watchdog command, which QEMU echoes in its reply.
const ID_PREFIX: &str = "guestcore-watchdog";

/// One thing a fired watchdog puts back, as one QMP command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Restore {
    /// `cont`: the guest this process stopped runs again.
    Cont,
    /// `migrate_cancel`: the migration this process started ends (the guest runs on).
    MigrateCancel,
    /// `migrate-set-capabilities`: the capability goes back to `state` (sent again while QEMU
    /// refuses it because the migration is still ending).
    Capability {
        /// The capability's QMP name.
        name: &'static str,
        /// The state it had before.
        state: bool,
    },
    /// `closefd`: QEMU drops the descriptor this process gave it under this name.
    CloseFd(&'static str),
}

impl Restore {
    /// The command, with `id`, and whether to retry it on an error reply.
    fn command(&self, id: &str) -> (serde_json::Value, bool) {
        use serde_json::json;
        match self {
            Restore::Cont => (json!({"execute": "cont", "id": id}), false),
            Restore::MigrateCancel => (json!({"execute": "migrate_cancel", "id": id}), false),
            Restore::Capability { name, state } => (
                json!({"execute": "migrate-set-capabilities", "id": id,
                       "arguments": {"capabilities": [{"capability": name, "state": state}]}}),
                true,
            ),
            Restore::CloseFd(name) => (
                json!({"execute": "closefd", "id": id, "arguments": {"fdname": name}}),
                false,
            ),
        }
    }
}

/// An armed watchdog for one QMP socket. [`disarm`](Self::disarm) when everything was put
/// back; [`fire`](Self::fire) or drop it to have the watchdog put it back itself.
#[derive(Debug)]
pub(super) struct Watchdog {
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    /// Starts a watchdog that sends `restore`'s commands, in order, to the QEMU at `socket`
    /// once this process is gone (or [`fire`](Self::fire)s it) without having disarmed it.
    pub(super) fn arm(socket: &Path, restore: &[Restore]) -> Result<Watchdog> {
        let prepared =
            sys::Prepared::new(socket, Self::steps(restore), FIRE_WINDOW, HEARTBEAT_LIMIT)
                .ok_or_else(|| Error::Qmp {
                    socket: socket.display().to_string(),
                    what: "the socket path is too long for a Unix socket address; no watchdog, so not changing the guest".into(),
                })?;
        let pipe = sys::spawn(&prepared).map_err(|e| {
            Error::io(
                format!(
                    "{}: cannot start the watchdog that puts QEMU back if guestcore dies; not changing the guest",
                    socket.display()
                ),
                e,
            )
        })?;
        Ok(Watchdog { pipe: Some(pipe) })
    }

    /// The QMP commands for `restore`, each with its own `id` to find its reply by.
    fn steps(restore: &[Restore]) -> Vec<sys::Step> {
        restore
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id = format!("{ID_PREFIX}-{i}");
                let (cmd, retry_on_error) = r.command(&id);
                let mut line = serde_json::to_vec(&cmd).expect("a JSON value serializes");
                line.push(b'\n');
                sys::Step {
                    line,
                    marker: format!("\"{id}\"").into_bytes(),
                    retry_on_error,
                }
            })
            .collect()
    }

    /// Stands the watchdog down: the guest was resumed (or must not be).
    pub(super) fn disarm(mut self) {
        if let Some(fd) = self.pipe.take() {
            let mut f = std::fs::File::from(fd);
            // If this write fails the watchdog sees EOF and puts back what is back already,
            // which is harmless (see the module docs).
            let _ = f.write_all(&[sys::DISARM]);
        }
    }

    /// A second handle on the pipe for a thread that reports this process alive while the
    /// guest waits on it ([`Heartbeat`]). It holds the write end too: drop it before
    /// [`fire`](Self::fire), or the watchdog sees no end of file.
    pub(super) fn heartbeat(&self) -> Result<Heartbeat> {
        let fd = self
            .pipe
            .as_ref()
            .map(|fd| fd.try_clone())
            .transpose()
            .map_err(|e| Error::io("the watchdog's pipe", e))?;
        Ok(Heartbeat { pipe: fd })
    }

    /// Has the watchdog put QEMU back now (over its own connection, once QEMU serves it).
    pub(super) fn fire(mut self) {
        self.pipe.take();
    }
}

/// Reports to the [`Watchdog`] that this process is alive and reading a stream the guest waits
/// on: after a [`beat`](Self::beat), the next one (or a [`rest`](Self::rest)) is due within
/// [`HEARTBEAT_LIMIT`], or the watchdog SIGKILLs this process and fires.
#[derive(Debug)]
pub(super) struct Heartbeat {
    pipe: Option<OwnedFd>,
}

impl Heartbeat {
    /// Alive, and the guest waits on this process's stream.
    pub(super) fn beat(&self) {
        self.send(sys::HEARTBEAT);
    }

    /// Nothing waits on this process any more: no heartbeat is due.
    pub(super) fn rest(&self) {
        self.send(sys::REST);
    }

    fn send(&self, byte: u8) {
        if let Some(fd) = &self.pipe {
            // The watchdog reads each byte at once, so the pipe never fills; a failed write
            // (the watchdog gone) changes nothing it would do.
            let _ = rustix::io::write(fd, &[byte]);
        }
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
