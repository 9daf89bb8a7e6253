//! The stall bound: a background snapshot whose stream guestcore does not take is cut within
//! [`STREAM_STALL_LIMIT`], so the guest never waits on guestcore for longer.
//!
//! Why: during a background snapshot QEMU write-protects guest RAM; a guest write to a page
//! not yet sent waits until QEMU's migration thread has sent that page, and that thread waits
//! on the stream. So whenever guestcore does not read the stream — its output stalls on a
//! slow or full disk, a FIFO whose reader stopped, guestcore itself stopped — the guest
//! stalls, while QEMU's `query-status` says `running` and its own `downtime` stays a few
//! milliseconds. (Measured before this bound: a guestcore SIGSTOPped 0.3 s into the snapshot
//! of a 1 GiB guest froze the guest's jiffies for the 30 s it stayed stopped.)
//!
//! How, in two tiers:
//! * in-process: [`StallGuard`]'s thread looks every [`TICK`] at the pipe. When stream data
//!   has been waiting in it (`FIONREAD`) for [`STREAM_STALL_LIMIT`] and the reader took
//!   nothing meanwhile — whatever holds the reader: a write to a stalled disk, a debugger
//!   stopping its thread, even inside a read — it cuts the stream: the descriptor's pipe is replaced by
//!   `/dev/null` in place ([`crate::sys::detach_to_dev_null`]), which closes the pipe's only
//!   read end, so QEMU's next write fails with `EPIPE`, its migration fails, write protection
//!   ends and the guest runs on. The reader's next read gives end of file, and the snapshot
//!   ends with an error saying why ([`StallGuard::cut_error`]);
//! * when guestcore cannot run at all (SIGSTOP, a debugger, starved of CPU), neither can its
//!   thread: the thread sends the watchdog a heartbeat each tick while the guest waits on the
//!   stream, and the watchdog, after `watchdog::HEARTBEAT_LIMIT` without one, SIGKILLs
//!   guestcore and puts QEMU back.
//!
//! Why one second: a reader that keeps up comes back to the stream within milliseconds (a
//! 1 MiB read is parsed and written in a few); one second away is a stall, not a slow piece,
//! and one second is what an operator notices as a hiccup rather than a hang.
//!
//! What it reports ([`StallGuard::longest_away`]): the longest the stream waited on the
//! reader — between the reader taking a piece and asking for the next, and (at the tick's
//! resolution) data left waiting in the pipe. The guest can have waited on guestcore at most
//! about that long; that and QEMU's stop are what the guest saw of the snapshot, and the
//! report carries both.

use super::super::watchdog::Heartbeat;
use crate::{Error, Result};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long guestcore may be away from a snapshot's stream before it cuts the stream.
pub(crate) const STREAM_STALL_LIMIT: Duration = Duration::from_secs(1);
/// How often the guard looks, and beats.
const TICK: Duration = Duration::from_millis(100);
/// `away_since` while the reader is in a read (or has not taken anything yet).
const IN_READ: u64 = u64::MAX;

/// What the reader and the guard's thread share.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// Milliseconds after `epoch` when the reader last came back with data and has not asked
    /// for more since; [`IN_READ`] while it waits in a read.
    away_since: AtomicU64,
    /// When the reader last took data, in milliseconds after `epoch`.
    last_took: AtomicU64,
    /// The longest the stream waited on the reader, in milliseconds.
    longest_away: AtomicU64,
    /// How long the reader had been away when the guard cut the stream (0: not cut).
    cut_after: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Watches a snapshot's stream for a reader that stopped taking it; see the module docs.
/// Dropping it stops its thread.
#[derive(Debug)]
pub(crate) struct StallGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl StallGuard {
    /// Starts watching `stream` (the pipe QEMU writes into), beating `heartbeat` each tick
    /// until the stream ends or is cut, and cutting it once the reader has been away for
    /// `limit`.
    pub(crate) fn start(
        stream: Arc<File>,
        heartbeat: Option<Heartbeat>,
        limit: Duration,
    ) -> Result<StallGuard> {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            away_since: AtomicU64::new(IN_READ),
            last_took: AtomicU64::new(0),
            longest_away: AtomicU64::new(0),
            cut_after: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let limit_ms = limit.as_millis() as u64;
        let thread = std::thread::Builder::new()
            .name("snapshot-stall".into())
            .spawn(move || {
                // Since when data has been waiting in the pipe, as this thread saw it.
                let mut pending_since: Option<u64> = None;
                while !s.stop.load(Ordering::Acquire) {
                    if let Some(h) = &heartbeat {
                        h.beat();
                    }
                    let now = s.now_ms();
                    let pending = rustix::io::ioctl_fionread(&*stream).unwrap_or(0) > 0;
                    pending_since = match (pending, pending_since) {
                        (false, _) => None,
                        (true, None) => Some(now),
                        (true, Some(t)) => Some(t),
                    };
                    // Waiting unread since the later of: data arrived, the reader last took some.
                    let away = pending_since.map_or(0, |t| {
                        now.saturating_sub(t.max(s.last_took.load(Ordering::Acquire)))
                    });
                    s.longest_away.fetch_max(away, Ordering::AcqRel);
                    if away >= limit_ms {
                        // The guest waits on a reader that does not come back: cut the stream.
                        // If this fails (no /dev/null), the watchdog's bound still holds.
                        // Said before it is done, so whoever sees the cut finds the reason.
                        s.cut_after.store(away.max(1), Ordering::Release);
                        if crate::sys::detach_to_dev_null(&stream).is_err() {
                            s.cut_after.store(0, Ordering::Release);
                        }
                        break;
                    }
                    std::thread::park_timeout(TICK);
                }
                if let Some(h) = &heartbeat {
                    h.rest();
                }
            })
            .map_err(|e| Error::io("the snapshot's stall guard thread", e))?;
        Ok(StallGuard {
            shared,
            thread: Some(thread),
        })
    }

    /// The reader asks the stream for more.
    pub(crate) fn reading(&self) {
        let since = self.shared.away_since.swap(IN_READ, Ordering::AcqRel);
        if since != IN_READ {
            let away = self.shared.now_ms().saturating_sub(since);
            self.shared.longest_away.fetch_max(away, Ordering::AcqRel);
        }
    }

    /// The reader came back with data (and goes away to use it).
    pub(crate) fn took(&self) {
        let now = self.shared.now_ms();
        self.shared.last_took.store(now, Ordering::Release);
        self.shared.away_since.store(now, Ordering::Release);
    }

    /// The error that ends a snapshot whose stream this guard cut, if it did.
    pub(crate) fn cut_error(&self, socket: &str) -> Option<Error> {
        let ms = self.shared.cut_after.load(Ordering::Acquire);
        (ms != 0).then(|| Error::Qmp {
            socket: socket.to_string(),
            what: format!(
                "guestcore did not take the background snapshot's stream for {:.1} s (its output stalled: a slow or full disk, or a reader that stopped?), and the guest's writes wait on that stream: the snapshot was cut off and cancelled, and the guest runs on",
                ms as f64 / 1e3
            ),
        })
    }

    /// The longest the reader was away from the stream so far: the longest the guest can have
    /// waited on guestcore.
    pub(crate) fn longest_away(&self) -> Duration {
        Duration::from_millis(self.shared.longest_away.load(Ordering::Acquire))
    }

    /// Stops the thread (the stream ended, or is being cancelled); the watchdog's heartbeat
    /// rests. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pipe() -> (Arc<File>, File) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (Arc::new(File::from(r)), File::from(w))
    }

    #[test]
    fn a_reader_that_keeps_up_is_never_cut_and_its_longest_absence_is_reported() {
        let (r, mut w) = pipe();
        let mut g = StallGuard::start(Arc::clone(&r), None, Duration::from_millis(300)).unwrap();
        let mut buf = [0u8; 8];
        for i in 0..5u64 {
            w.write_all(&i.to_le_bytes()).unwrap();
            g.reading();
            (&*r).read_exact(&mut buf).unwrap();
            g.took();
            std::thread::sleep(Duration::from_millis(if i == 2 { 150 } else { 10 }));
        }
        g.reading();
        g.stop();
        assert!(g.cut_error("s").is_none());
        let away = g.longest_away();
        assert!(
            away >= Duration::from_millis(150) && away < Duration::from_millis(300),
            "{away:?}"
        );
    }

    #[test]
    fn a_reader_held_inside_a_read_still_gets_the_stream_cut() {
        let (r, mut w) = pipe();
        let g = StallGuard::start(Arc::clone(&r), None, Duration::from_millis(200)).unwrap();
        // Marked as reading, but takes nothing (a debugger holds its thread): data waits.
        g.reading();
        let t0 = Instant::now();
        let big = vec![0u8; 1 << 20];
        let e = loop {
            if let Err(e) = w.write_all(&big) {
                break e;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "never cut");
        };
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        assert!(g.cut_error("s").is_some());
        assert!(
            g.longest_away() >= Duration::from_millis(200),
            "{:?}",
            g.longest_away()
        );
    }

    #[test]
    fn a_reader_away_for_the_limit_gets_the_stream_cut_and_the_writer_epipe() {
        let (r, mut w) = pipe();
        let g = StallGuard::start(Arc::clone(&r), None, Duration::from_millis(200)).unwrap();
        w.write_all(b"x").unwrap();
        g.reading();
        let mut b = [0u8; 1];
        (&*r).read_exact(&mut b).unwrap();
        g.took();
        let t0 = Instant::now();
        // The writer (QEMU) blocks on a full pipe until the cut fails its write.
        let big = vec![0u8; 1 << 20];
        let mut failed = None;
        while t0.elapsed() < Duration::from_secs(5) {
            if let Err(e) = w.write_all(&big) {
                failed = Some(e);
                break;
            }
        }
        let took = t0.elapsed();
        let e = failed.expect("the writer was never failed");
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let err = g.cut_error("q.sock").expect("cut").to_string();
        assert!(
            err.contains("did not take") && err.contains("guest runs on"),
            "{err}"
        );
        // The reader's next read ends: the descriptor is /dev/null now.
        g.reading();
        assert_eq!((&*r).read(&mut b).unwrap(), 0);
    }
}
