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
//! If guestcore dies while QEMU streams, QEMU's write fails (broken pipe), the migration fails
//! and the guest keeps running: a background snapshot never leaves it stopped.

use super::client::QmpClient;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The name the pipe's write end gets in QEMU's monitor.
const FD_NAME: &str = "guestcore-snapshot";
const CAPABILITY: &str = "background-snapshot";
/// How long to wait for QEMU to report the migration's end once the stream has ended.
const END_TIMEOUT: Duration = Duration::from_secs(30);
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

/// A background snapshot in progress.
#[derive(Debug)]
pub(crate) struct Snapshot {
    stream: File,
    /// The capability's state before we set it, put back by [`Snapshot::finish`].
    was_on: bool,
    started: Instant,
}

/// What QEMU reported at the end of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotReport {
    /// How long QEMU kept the guest stopped, by its own count (`downtime`, ms).
    pub downtime_ms: Option<u64>,
    /// From `migrate` to the end of the stream, as seen here.
    pub total: Duration,
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

/// Starts a background snapshot of the guest behind `client`, streamed into a pipe.
///
/// Errors are failures of the QMP connection itself; every reason QEMU has for not doing a
/// background snapshot is [`Start::Unavailable`].
pub(crate) fn start(client: &mut QmpClient) -> Result<Start> {
    let caps = capabilities(client)?;
    let Some(&(_, was_on)) = caps.iter().find(|(c, _)| c == CAPABILITY) else {
        return Ok(Start::Unavailable(
            "this QEMU has no background-snapshot migration capability (QEMU 6.0 or later has it)"
                .into(),
        ));
    };
    let status = migration_status(client)?;
    if let Some(s) = status.get("status").and_then(Value::as_str) {
        if matches!(
            s,
            "setup" | "active" | "postcopy-active" | "cancelling" | "device" | "wait-unplug"
        ) {
            return Ok(Start::Unavailable(format!(
                "a migration is already running (status {s})"
            )));
        }
    }
    wait_for_cleanup(client)?;
    if !was_on {
        match set_capability(client, true) {
            Ok(()) => {}
            Err(Error::QmpCommand { desc, .. }) => {
                return Ok(Start::Unavailable(format!(
                    "QEMU refuses background-snapshot: {desc}"
                )))
            }
            Err(e) => return Err(e),
        }
    }
    let undo = |client: &mut QmpClient| {
        if !was_on {
            let _ = set_capability(client, false);
        }
    };
    let (read, write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            undo(client);
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
        undo(client);
        return match e {
            Error::QmpCommand { desc, .. } => Ok(Start::Unavailable(format!(
                "QEMU did not take the stream's descriptor: {desc}"
            ))),
            e => Err(e),
        };
    }
    let started = Instant::now();
    match client.execute("migrate", Some(json!({ "uri": format!("fd:{FD_NAME}") }))) {
        Ok(_) => {}
        Err(e) => {
            let _ = client.execute("closefd", Some(json!({ "fdname": FD_NAME })));
            undo(client);
            return match e {
                Error::QmpCommand { desc, .. } => Ok(Start::Unavailable(format!(
                    "QEMU cannot start the snapshot: {desc}"
                ))),
                e => Err(e),
            };
        }
    }
    Ok(Start::Streaming(Snapshot {
        stream: File::from(read),
        was_on,
        started,
    }))
}

impl Snapshot {
    /// The stream QEMU writes (`QEVM`…): read it to its end, then call
    /// [`finish`](Self::finish).
    pub(crate) fn stream(&mut self) -> &mut File {
        &mut self.stream
    }

    /// After the stream's end: waits for QEMU to report the migration's outcome, puts the
    /// capability back, and returns QEMU's figures. A failed migration is an error with QEMU's
    /// reason: the stream it wrote is not a complete snapshot.
    pub(crate) fn finish(self, client: &mut QmpClient) -> Result<SnapshotReport> {
        let total = self.started.elapsed();
        let deadline = Instant::now() + END_TIMEOUT;
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
                        "QEMU did not finish the background snapshot within {}s of its stream's end",
                        END_TIMEOUT.as_secs()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if !self.was_on {
            let _ = set_capability(client, false);
        }
        let s = outcome?;
        Ok(SnapshotReport {
            downtime_ms: s.get("downtime").and_then(Value::as_u64),
            total,
        })
    }

    /// Stops a snapshot whose stream is not wanted any more (an error while reading it):
    /// `migrate_cancel`, the stream closed, the capability put back. The guest runs on.
    pub(crate) fn cancel(self, client: &mut QmpClient) {
        let _ = client.execute("migrate_cancel", None);
        let was_on = self.was_on;
        drop(self);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match migration_status(client) {
                Ok(s) => match s.get("status").and_then(Value::as_str) {
                    Some("cancelling") | Some("active") | Some("setup") | Some("device") => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => break,
                },
                Err(_) => break,
            }
        }
        if !was_on {
            let _ = set_capability(client, false);
        }
    }
}
