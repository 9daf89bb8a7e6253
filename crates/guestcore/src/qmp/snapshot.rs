//! QEMU background snapshots: one consistent instant of a running guest, streamed to us.
//!
//! Why: pausing a guest while all of its RAM is copied costs ~0.2 s per GiB of downtime and, in
//! the copy's form, as much host memory as the guest has. With the migration capability
//! `background-snapshot`, QEMU stops the guest only to save its device state (milliseconds),
//! write-protects guest RAM with userfaultfd, resumes it, and then sends every page once, as it
//! was at the stop: a page the guest is about to write is sent first. (Facts from QEMU's
//! `migration/ram.c` write-tracking and `migration/options.c`, read for facts only.)
//!
//! How it is driven here, all over the session's own QMP connection:
//! 1. `query-migrate-capabilities` must list `background-snapshot` (QEMU 6.0 and later) and no
//!    migration may be running;
//! 2. `migrate-set-capabilities background-snapshot=on`: QEMU refuses it when the host kernel
//!    has no usable userfaultfd write protection or guest RAM is of an unsupported kind
//!    (hugetlbfs, shared memory without uffd-wp), and when an incompatible capability is on —
//!    each refusal is reported as [`Start::Unavailable`] with QEMU's reason, for a fallback;
//! 3. a pipe: its write end goes to QEMU with `getfd` (`SCM_RIGHTS`), and `migrate fd:NAME`
//!    makes QEMU write the stream into it. No intermediate file, nothing copied to host memory:
//!    the caller reads the stream as it is produced;
//! 4. at end of stream, `query-migrate` reports `completed` (with its `downtime`) or `failed`,
//!    and the capability is put back as it was.
//!
//! The stream itself (device state after RAM, then the vmdesc JSON) is parsed elsewhere.
//!
//! QEMU is left as it was found, on every way out:
//! * in-process (success, an error, Ctrl-C): `finish` or `cancel` put the capability back;
//! * guestcore killed (SIGKILL, a crash): before it changes anything, `start` arms the
//!   [`Watchdog`] with what to put back — `migrate_cancel` (a migration whose reader is gone
//!   fails by itself, but only when QEMU next writes), the capability's old state, `closefd`
//!   of the stream's descriptor name — and disarms it only once all of it is back;
//! * a predecessor killed when no watchdog could help (an older guestcore, a QEMU stopped for
//!   longer than the watchdog's window): `start` first repairs what it finds — the capability
//!   on with no migration running, the descriptor name still held — and says so
//!   ([`Snapshot::repairs`]).
//!
//! The guest never waits on guestcore for long: a stream guestcore does not take for
//! [`STREAM_STALL_LIMIT`] is cut, by guestcore or, when it cannot run, by its watchdog
//! (`stall`), and the report says the longest the stream waited on guestcore.
//!
//! Every wait on QEMU is bounded ([`STALL_LIMIT`]): QMP replies by the client's timeout, and
//! the stream by [`Watched`], which asks QEMU what is going on after [`IDLE_CHECK`] without
//! data and gives up with an error naming QEMU when it does not answer, reports the
//! migration failed, or sends nothing for [`STALL_LIMIT`]. A stream that ends early is
//! explained by QEMU's state ([`explain_early_end`]): QEMU gone (its monitor closed), or the
//! migration failed with QEMU's reason. A migration already running (another guestcore's
//! snapshot) is an error at once, not a fallback to a pause (`stop` would wait on it).

mod stall;

use super::client::QmpClient;
use super::watchdog::{Restore, Watchdog};
use crate::{Error, Result};
use serde_json::{json, Value};
use stall::StallGuard;
pub(crate) use stall::STREAM_STALL_LIMIT;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name the pipe's write end gets in QEMU's monitor.
pub(super) const FD_NAME: &str = "guestcore-snapshot";
pub(super) const CAPABILITY: &str = "background-snapshot";
/// The longest guestcore waits on QEMU during a snapshot: for the stream's next bytes, and
/// for QEMU to report the migration's end once the stream has ended. A QEMU streams a
/// running guest's RAM without pause (hundreds of MiB/s on TCG), so this much silence means
/// it is stopped, wedged, or its migration stuck.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(10);
/// Without stream data for this long, QEMU is asked for the migration's state.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The migration states in which a migration is running (QEMU's `MigrationStatus`).
const RUNNING: &[&str] = &[
    "setup",
    "active",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
    "pre-switchover",
    "device",
    "wait-unplug",
    "cancelling",
    "colo",
];
/// The pipe's capacity asked for (Linux's default `pipe-max-size`).
const PIPE_SIZE: usize = 1 << 20;

/// The outcome of [`start`].
#[derive(Debug)]
pub(crate) enum Start {
    /// QEMU is streaming: read it from [`Snapshot::stream`].
    Streaming(Snapshot),
    /// A background snapshot cannot be had here; the text says why (QEMU's words where it gave
    /// them). Nothing was changed in QEMU.
    Unavailable(String),
}

/// A background snapshot in progress. Dropped without [`finish`](Self::finish) or
/// [`cancel`](Self::cancel), its watchdog fires and puts QEMU back.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The pipe's read end, shared with the stall guard, which can cut it.
    stream: Arc<File>,
    /// Cuts the stream when guestcore stops taking it; beats the watchdog's heartbeat. Before
    /// `watchdog`, so that it (and its handle on the watchdog's pipe) drops first.
    guard: StallGuard,
    /// The capability's state to put back by [`Snapshot::finish`].
    was_on: bool,
    started: Instant,
    /// Puts QEMU back if this process dies first.
    watchdog: Option<Watchdog>,
    /// What a killed predecessor had left and `start` repaired.
    repairs: Vec<String>,
}

/// What QEMU reported at the end of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotReport {
    /// How long QEMU kept the guest stopped, by its own count (`downtime`, ms).
    pub downtime_ms: Option<u64>,
    /// From `migrate` to the end of the stream, as seen here.
    pub total: Duration,
    /// The longest guestcore was away from the stream (between taking one piece and asking
    /// for the next): the longest the guest can have waited on guestcore for a page write,
    /// besides QEMU's stop. A stream left for `STREAM_STALL_LIMIT` is cut instead.
    pub longest_away: Duration,
}

fn capabilities(client: &mut QmpClient) -> Result<Vec<(String, bool)>> {
    let caps = client.execute("query-migrate-capabilities", None)?;
    Ok(caps
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some((
                        c.get("capability")?.as_str()?.to_string(),
                        c.get("state")?.as_bool()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

fn set_capability(client: &mut QmpClient, on: bool) -> Result<()> {
    client
        .execute(
            "migrate-set-capabilities",
            Some(json!({ "capabilities": [{ "capability": CAPABILITY, "state": on }] })),
        )
        .map(|_| ())
}

fn migration_status(client: &mut QmpClient) -> Result<Value> {
    client.execute("query-migrate", None)
}

/// The status of the migration QEMU is running, if one runs.
pub(crate) fn migration_running(client: &mut QmpClient) -> Result<Option<String>> {
    let status = migration_status(client)?;
    Ok(status
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| RUNNING.contains(s))
        .map(str::to_string))
}

/// Waits (at most 2 s) until QEMU has cleaned up a migration that ended just now: it reports
/// `completed` before it unregisters the migration's yank instance, and a migration started in
/// between fails with "duplicate yank instance". A QEMU without `query-yank` (before 6.0) has
/// no such instance.
fn wait_for_cleanup(client: &mut QmpClient) -> Result<()> {
    for _ in 0..40 {
        match client.execute("query-yank", None) {
            Ok(v)
                if v.as_array()
                    .is_some_and(|a| a.iter().any(|i| i["type"] == "migration")) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(_) | Err(Error::QmpCommand { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Starts a background snapshot of the guest behind `client` (connected to `socket`),
/// streamed into a pipe.
///
/// Errors are failures of the QMP connection itself, and a migration already running (a
/// pause would wait on it, so no fallback is offered); every other reason QEMU has for not
/// doing a background snapshot is [`Start::Unavailable`].
pub(crate) fn start(client: &mut QmpClient, socket: &Path) -> Result<Start> {
    let caps = capabilities(client)?;
    let Some(&(_, mut was_on)) = caps.iter().find(|(c, _)| c == CAPABILITY) else {
        return Ok(Start::Unavailable(
            "this QEMU has no background-snapshot migration capability (QEMU 6.0 or later has it)"
                .into(),
        ));
    };
    if let Some(s) = migration_running(client)? {
        let whose = if was_on {
            " with background-snapshot on: another guestcore's snapshot?"
        } else {
            ""
        };
        return Err(Error::Qmp {
            socket: socket.display().to_string(),
            what: format!(
                "QEMU is already migrating (status {s}{whose}): no background snapshot, and no pause either (`stop` would wait on that migration); try again when it has ended"
            ),
        });
    }
    let mut repairs = Vec::new();
    if was_on {
        // No migration runs, so nothing uses it: a guestcore killed mid-snapshot left it on
        // (or someone set it and never migrated). Every later `migrate` would be a snapshot.
        repairs.push(format!(
            "QEMU's {CAPABILITY} migration capability was on with no migration running (left by a killed guestcore?): it is turned off after this snapshot"
        ));
        was_on = false;
    }
    match client.execute("closefd", Some(json!({ "fdname": FD_NAME }))) {
        Ok(_) => repairs.push(format!(
            "QEMU still held the descriptor {FD_NAME:?} of an earlier snapshot (left by a killed guestcore?): closed"
        )),
        Err(Error::QmpCommand { .. }) => {}
        Err(e) => return Err(e),
    }
    wait_for_cleanup(client)?;
    let mut restore = vec![Restore::MigrateCancel];
    if !was_on {
        restore.push(Restore::Capability {
            name: CAPABILITY,
            state: false,
        });
    }
    restore.push(Restore::CloseFd(FD_NAME));
    // Armed before anything changes: from here on, a SIGKILL puts QEMU back.
    let watchdog = Watchdog::arm(socket, &restore)?;
    // Puts the capability back on a way out before streaming; the watchdog stands down only
    // when that worked.
    let undo = |client: &mut QmpClient, watchdog: Watchdog| {
        if was_on || set_capability(client, false).is_ok() {
            watchdog.disarm();
        }
    };
    if !was_on {
        match set_capability(client, true) {
            Ok(()) => {}
            Err(Error::QmpCommand { desc, .. }) => {
                watchdog.disarm();
                return Ok(Start::Unavailable(format!(
                    "QEMU refuses background-snapshot: {desc}"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let (read, write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            undo(client, watchdog);
            return Err(Error::io("pipe for the snapshot stream", e.into()));
        }
    };
    // QEMU writes the stream in pieces of its own buffer size; a pipe of the default 64 KiB
    // makes it wait on us every few pages. Ask for the largest an unprivileged pipe may have
    // (a hint: the stream works at any size).
    let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
    let passed = client.execute_with_fd("getfd", Some(json!({ "fdname": FD_NAME })), write.as_fd());
    // QEMU holds its own copy now; ours must go, or the stream would never end.
    drop(write);
    if let Err(e) = passed {
        return match e {
            Error::QmpCommand { desc, .. } => {
                undo(client, watchdog);
                Ok(Start::Unavailable(format!(
                    "QEMU did not take the stream's descriptor: {desc}"
                )))
            }
            // The connection is lost: the watchdog (dropped here) puts QEMU back.
            e => Err(e),
        };
    }
    let started = Instant::now();
    match client.execute("migrate", Some(json!({ "uri": format!("fd:{FD_NAME}") }))) {
        Ok(_) => {}
        Err(Error::QmpCommand { desc, .. }) => {
            let _ = client.execute("closefd", Some(json!({ "fdname": FD_NAME })));
            undo(client, watchdog);
            return Ok(Start::Unavailable(format!(
                "QEMU cannot start the snapshot: {desc}"
            )));
        }
        Err(e) => return Err(e),
    }
    let stream = Arc::new(File::from(read));
    let guard = watchdog
        .heartbeat()
        .and_then(|h| StallGuard::start(Arc::clone(&stream), Some(h), STREAM_STALL_LIMIT));
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            // No guard, no bound on how long the guest may wait on us: not streaming.
            let _ = client.execute("migrate_cancel", None);
            drop(stream);
            put_back(client, was_on, Some(watchdog));
            return Err(e);
        }
    };
    Ok(Start::Streaming(Snapshot {
        stream,
        guard,
        was_on,
        started,
        watchdog: Some(watchdog),
        repairs,
    }))
}

/// What a stream that ended early (before its EOF section) says about QEMU: `Some` error
/// naming the cause when QEMU closed its monitor (it exited or was killed) or reports the
/// migration failed; `None` when QEMU says nothing of the kind (the stream itself is at
/// fault, and the caller's error stands). `read` is how many bytes had arrived; `ended` is
/// what the stream's parser said.
pub(crate) fn explain_early_end(
    client: &mut QmpClient,
    socket: &Path,
    read: u64,
    ended: &Error,
) -> Option<Error> {
    let socket = socket.display().to_string();
    match migration_status(client) {
        Err(Error::Qmp { what, .. }) => Some(Error::Qmp {
            socket,
            what: format!(
                "QEMU went away during the background snapshot: the stream broke off after {read} bytes ({ended}), and {what}"
            ),
        }),
        Err(_) => None,
        Ok(s) => match s.get("status").and_then(Value::as_str) {
            Some("failed") | Some("cancelled") => Some(Error::Qmp {
                socket,
                what: format!(
                    "QEMU's background snapshot failed after {read} bytes of stream: {}",
                    s.get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                ),
            }),
            _ => None,
        },
    }
}

/// The stream of a [`Snapshot`] with every wait bounded: a `Read` that, after [`IDLE_CHECK`]
/// without data, asks QEMU for the migration's state, and fails (the cause kept in the slot
/// given to [`Snapshot::watched`], for the caller to report instead of the parser's "stream
/// ends" error) when QEMU does not answer within the client's timeout, reports the migration
/// failed, or has sent nothing for [`STALL_LIMIT`].
pub(crate) struct Watched<'a> {
    stream: &'a File,
    /// Told when the reader asks for data and when it takes some; cuts a stream left alone.
    guard: &'a StallGuard,
    client: &'a mut QmpClient,
    socket: &'a Path,
    cause: &'a mut Option<Error>,
    last_data: Instant,
    /// [`STALL_LIMIT`] (shorter in tests).
    stall_limit: Duration,
}

impl Watched<'_> {
    /// Why the stream gives nothing: `Err` ends the snapshot.
    fn check(&mut self) -> Result<()> {
        let socket = self.socket.display().to_string();
        let idle = self.last_data.elapsed();
        let status = migration_status(self.client).map_err(|e| match e {
            Error::Qmp { what, .. } => Error::Qmp {
                socket: socket.clone(),
                what: format!(
                    "QEMU stopped answering during the background snapshot: no stream data for {:.0} s, and {what}",
                    idle.as_secs_f64()
                ),
            },
            e => e,
        })?;
        let s = status.get("status").and_then(Value::as_str).unwrap_or("?");
        match s {
            "failed" | "cancelled" => Err(Error::Qmp {
                socket,
                what: format!(
                    "QEMU's background snapshot ended: {}",
                    status
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("the migration failed, no reason given")
                ),
            }),
            _ if idle >= self.stall_limit => Err(Error::Qmp {
                socket,
                what: format!(
                    "QEMU sent no background-snapshot data for {} s (migration status {s}): giving up",
                    self.stall_limit.as_secs_f64()
                ),
            }),
            _ => Ok(()),
        }
    }
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let tick = Timespec {
            tv_sec: IDLE_CHECK.as_secs() as _,
            tv_nsec: IDLE_CHECK.subsec_nanos() as _,
        };
        self.guard.reading();
        loop {
            if let Some(e) = self.guard.cut_error(&self.socket.display().to_string()) {
                let text = e.to_string();
                *self.cause = Some(e);
                return Err(std::io::Error::other(text));
            }
            let mut fds = [PollFd::new(self.stream, PollFlags::IN)];
            match poll(&mut fds, Some(&tick)) {
                Ok(0) => {
                    if let Err(e) = self.check() {
                        let text = e.to_string();
                        *self.cause = Some(e);
                        return Err(std::io::Error::other(text));
                    }
                }
                Ok(_) => match (&*self.stream).read(buf) {
                    // End of file from a stream the guard cut: its error, at the loop's top.
                    Ok(0) if self.guard.cut_error("").is_some() => {}
                    Ok(n) => {
                        self.last_data = Instant::now();
                        if n > 0 {
                            self.guard.took();
                        }
                        return Ok(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                },
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Snapshot {
    /// What a killed predecessor had left in QEMU and [`start`] repaired, one sentence each.
    pub(crate) fn repairs(&self) -> &[String] {
        &self.repairs
    }

    /// The stream QEMU writes (`QEVM`…), its waits bounded (see [`Watched`]); `cause` receives
    /// the reason when it gives up. Read it to its end, then call [`finish`](Self::finish).
    pub(crate) fn watched<'a>(
        &'a self,
        client: &'a mut QmpClient,
        socket: &'a Path,
        cause: &'a mut Option<Error>,
    ) -> Watched<'a> {
        Watched {
            stream: &self.stream,
            guard: &self.guard,
            client,
            socket,
            cause,
            last_data: Instant::now(),
            stall_limit: STALL_LIMIT,
        }
    }

    /// After the stream's end: waits (at most [`STALL_LIMIT`]) for QEMU to report the
    /// migration's outcome, puts the capability back, and returns QEMU's figures. A failed
    /// migration is an error with QEMU's reason: the stream it wrote is not a complete
    /// snapshot.
    pub(crate) fn finish(mut self, client: &mut QmpClient) -> Result<SnapshotReport> {
        let total = self.started.elapsed();
        // Nothing waits on the stream any more.
        self.guard.stop();
        let longest_away = self.guard.longest_away();
        let deadline = Instant::now() + STALL_LIMIT;
        let outcome = loop {
            let s = migration_status(client)?;
            match s.get("status").and_then(Value::as_str) {
                Some("completed") => break Ok(s),
                Some("failed") | Some("cancelled") => {
                    let why = s
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    break Err(Error::Unsupported(format!(
                        "QEMU's background snapshot failed: {why}"
                    )));
                }
                _ if Instant::now() >= deadline => {
                    let _ = client.execute("migrate_cancel", None);
                    break Err(Error::Unsupported(format!(
                        "QEMU did not finish the background snapshot within {} s of its stream's end",
                        STALL_LIMIT.as_secs()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        put_back(client, self.was_on, self.watchdog.take());
        let s = outcome?;
        Ok(SnapshotReport {
            downtime_ms: s.get("downtime").and_then(Value::as_u64),
            total,
            longest_away,
        })
    }

    /// Stops a snapshot whose stream is not wanted any more (an error while reading it):
    /// `migrate_cancel`, the stream closed, the capability put back. The guest runs on. On a
    /// lost connection (QEMU stopped answering) nothing more is waited for: the stream is
    /// closed, and the watchdog puts QEMU back once it answers again.
    pub(crate) fn cancel(self, client: &mut QmpClient) {
        let Snapshot {
            stream,
            mut guard,
            was_on,
            watchdog,
            ..
        } = self;
        // Its thread holds the stream and a handle on the watchdog's pipe: both go first.
        guard.stop();
        drop(guard);
        if client.lost() {
            return; // the stream closes, and the watchdog fires as it drops
        }
        let _ = client.execute("migrate_cancel", None);
        // Closing our end fails QEMU's next write, should it be blocked on a full pipe.
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !client.lost() {
            match migration_running(client) {
                Ok(Some(_)) => std::thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
        put_back(client, was_on, watchdog);
    }
}

/// Puts the capability back (off, unless it was on); `watchdog` stands down when that
/// worked, and fires when it did not (it keeps trying).
fn put_back(client: &mut QmpClient, was_on: bool, watchdog: Option<Watchdog>) {
    let back = was_on || (!client.lost() && set_capability(client, false).is_ok());
    if let Some(w) = watchdog {
        if back {
            w.disarm();
        } else {
            w.fire();
        }
    }
}

#[cfg(test)]
mod tests;
