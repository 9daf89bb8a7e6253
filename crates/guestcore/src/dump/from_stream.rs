//! How a dump's pages arrive from a QEMU background snapshot: the migration stream
//! ([`crate::qmp::snapshot`]) parsed as it comes ([`crate::phys::migration`]), each RAM page
//! pushed into a [`PageSink`] at its guest-physical address, and the device state kept for
//! the end (the vCPUs' `cpu` sections, where the `vmcoreinfo` device points).
//!
//! Why this path: stopping the guest while RAM is copied costs ~0.2 s per GiB of downtime and
//! as much host memory as the guest has. Here QEMU stops the guest only to save its device
//! state, and every page pushed is the page as it was at that instant, whatever the guest
//! writes while the stream runs. What the dump is made of (its format, notes, kernel, paging
//! view) is not decided here: the facade plans it as for a dump of a file
//! (`guest/snapshot.rs`); this module only delivers the pages and the device state.
//!
//! Guest-physical placement comes from QEMU's own flat view of the `memory` address space
//! (`info mtree -f`), read before the snapshot starts: the stream names RAM blocks and offsets
//! in them, the flat view says where each piece of a block sits. Pages of blocks that are not
//! guest RAM (ROMs, video memory) are skipped.
//!
//! Memory: the parser's buffers and one page, never a copy of guest RAM. A stream that ends
//! early or breaks a bound is an error (the caller drops the sink, which leaves no file).

use super::sink::PageSink;
use crate::addr::PAGE_SIZE;
use crate::cpu::vmstate::decode_any;
use crate::cpu::CpuState;
use crate::phys::migration::devices::DeviceState;
use crate::phys::migration::ram::RamBlock;
use crate::phys::migration::vmcoreinfo::VmcoreinfoPointer;
use crate::phys::migration::{Event, PageContent, Parser};
use crate::phys::RamPiece;
use crate::progress::Progress;

use crate::qmp::snapshot::{self, SnapshotReport, Start};
use crate::qmp::LiveSession;
use crate::{Error, Result};
use std::io::BufReader;
use std::path::Path;

/// Read buffer on the stream.
const STREAM_BUFFER: usize = 1 << 20;

/// What a background snapshot delivered besides its pages.
#[derive(Debug)]
pub(crate) enum Streamed {
    /// Every page was pushed; the device state of the same instant.
    Done {
        /// QEMU's figures for the snapshot (its downtime).
        report: SnapshotReport,
        /// The vCPUs at the snapshot's instant.
        cpus: Vec<CpuState>,
        /// Where the guest registered its VMCOREINFO note, if it did.
        vmcoreinfo: Option<VmcoreinfoPointer>,
    },
    /// No background snapshot can be had here (the reason); nothing was pushed or changed.
    Unavailable(String),
}

/// Where the pieces of each stream block go: `(offset in block, length, guest-physical start)`.
fn placement(blocks: &[RamBlock], pieces: &[RamPiece]) -> Vec<Vec<(u64, u64, u64)>> {
    blocks
        .iter()
        .map(|b| {
            let mut v: Vec<(u64, u64, u64)> = pieces
                .iter()
                .filter(|p| p.block == b.name)
                .map(|p| (p.offset, p.phys.len(), p.phys.start))
                .collect();
            v.sort_unstable();
            v
        })
        .collect()
}

/// Why pushing the stream's pages stopped early.
enum Stop {
    /// The stream broke (ended early, malformed, or its bounded wait gave up).
    Stream(Error),
    /// Anything else: the sink, a cancel.
    Other(Error),
}

/// Takes a background snapshot of the guest behind `session` and pushes every RAM page of it
/// into `sink`, placed by `pieces` (the guest's RAM layout, read before). The guest is never
/// stopped by guestcore here; QEMU stops it for its device state. On error the migration is
/// cancelled and QEMU's capabilities put back. What `start` repaired (left by a killed
/// guestcore) goes to `repaired`, one sentence each, before the first page.
///
/// Waits on QEMU are bounded (`qmp::snapshot::STALL_LIMIT`), and a stream that ends early
/// says why when QEMU knows: QEMU gone, or its migration failed.
pub(crate) fn stream_snapshot(
    session: &mut LiveSession,
    pieces: &[RamPiece],
    sink: &mut dyn PageSink,
    total: u64,
    progress: &dyn Progress,
    repaired: &dyn Fn(&str),
) -> Result<Streamed> {
    let socket = session.socket().to_path_buf();
    // A libvirt domain's snapshot is put back through libvirt if this process dies; dropped
    // on any way out but success, it does so at once (each of its steps is harmless on a
    // QEMU already put back).
    if let Some(why) = session.snapshot_refusal()? {
        return Ok(Streamed::Unavailable(why));
    }
    let guard = session.libvirt_snapshot_guard()?;
    let snap = match snapshot::start(session.client(), &socket)? {
        Start::Streaming(s) => s,
        Start::Unavailable(why) => return Ok(Streamed::Unavailable(why)),
    };
    for r in snap.repairs() {
        repaired(r);
    }
    let name = format!("background snapshot of {}", socket.display());
    let mut cause = None;
    let (streamed, read) = {
        let watched = snap.watched(session.client(), &socket, &mut cause);
        let mut parser = Parser::new(
            BufReader::with_capacity(STREAM_BUFFER, watched),
            name.clone(),
        );
        progress.start("snapshot", total);
        let r = push_pages(&mut parser, pieces, sink, progress, &name);
        progress.finish();
        (r, parser.position())
    };
    let devices = match streamed {
        Ok(d) => d,
        Err(stop) => {
            let e = match stop {
                // The bounded wait gave up: its reason, not the parser's "stream ends".
                Stop::Stream(e) => match cause.take() {
                    Some(c) => c,
                    None => snapshot::explain_early_end(session.client(), &socket, read, &e)
                        .unwrap_or(e),
                },
                Stop::Other(e) => e,
            };
            snap.cancel(session.client());
            return Err(e);
        }
    };
    let report = snap.finish(session.client())?;
    if let Some(g) = guard {
        g.disarm();
    }
    let (sections, pointer) = devices.decode(Path::new(&name))?;
    let cpus = sections
        .iter()
        .map(|c| decode_any(&c.desc, &c.data, Path::new(&name)))
        .collect::<Result<Vec<_>>>()?;
    if cpus.is_empty() {
        return Err(Error::format(&name, "the snapshot holds no vCPU state"));
    }
    Ok(Streamed::Done {
        report,
        cpus,
        vmcoreinfo: pointer,
    })
}

/// Pushes every page the stream holds into `sink`; the device state for the end.
fn push_pages<R: std::io::Read>(
    parser: &mut Parser<R>,
    pieces: &[RamPiece],
    sink: &mut dyn PageSink,
    progress: &dyn Progress,
    name: &str,
) -> std::result::Result<DeviceState, Stop> {
    let mut places = Vec::new();
    let mut devices = DeviceState::default();
    let mut fill = vec![0u8; PAGE_SIZE as usize];
    let mut eof = false;
    while let Some(ev) = parser.next().map_err(Stop::Stream)? {
        match ev {
            Event::RamBlocks(b) => places = placement(b, pieces),
            Event::Page {
                block,
                offset,
                content,
                ..
            } => {
                let Some(place) = places.get(block) else {
                    continue;
                };
                let bytes = match content {
                    PageContent::Bytes(b) => Some(b),
                    PageContent::Fill(0) => None,
                    PageContent::Fill(f) => {
                        fill.fill(f);
                        Some(&fill[..])
                    }
                    PageContent::Skipped => {
                        return Err(Stop::Other(Error::Unsupported(format!(
                            "{name}: page bytes skipped"
                        ))))
                    }
                };
                for &(start, len, gpa) in place {
                    if offset >= start && offset - start < len {
                        sink.page(gpa + (offset - start), bytes)
                            .map_err(Stop::Other)?;
                        progress.advance(PAGE_SIZE);
                    }
                }
            }
            Event::Device { header, data, .. } => devices.add(header, data),
            Event::Vmdesc(json) => devices.set_vmdesc(json),
            Event::Eof => eof = true,
            Event::Configuration(_) | Event::Command { .. } => {}
        }
        if progress.cancelled() {
            return Err(Stop::Other(Error::Cancelled));
        }
    }
    if !eof {
        return Err(Stop::Stream(Error::format(
            name,
            "the stream ends before its EOF section",
        )));
    }
    Ok(devices)
}
