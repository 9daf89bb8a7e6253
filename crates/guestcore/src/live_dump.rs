//! A consistent dump of a running QEMU guest with a pause of milliseconds: a QEMU background
//! snapshot ([`crate::qmp::snapshot`]) parsed as it streams ([`crate::phys::migration`]) into
//! a physical ELF core ([`crate::dump::streamed`]) or a kdump-compressed file
//! ([`crate::dump::kdump::StreamedKdump`]), either written page by page as pages arrive.
//!
//! Why this path: stopping the guest while RAM is copied costs ~0.2 s per GiB of downtime and
//! as much host memory as the guest has. Here QEMU stops the guest only to save its device
//! state, and every page in the file is the page as it was at that instant, whatever the guest
//! writes while the stream runs. The registers and VMCOREINFO come from the same stream, hence
//! the same instant: the vCPUs from its `cpu` sections, VMCOREINFO from the note the
//! `vmcoreinfo` device points at, read back from the pages already written.
//!
//! Guest-physical placement comes from QEMU's own flat view of the `memory` address space
//! (`info mtree -f`), read before the snapshot starts: the stream names RAM blocks and offsets
//! in them, the flat view says where each piece of a block sits. Pages of blocks that are not
//! guest RAM (ROMs, video memory) are skipped.
//!
//! Memory: the parser's buffers and one page, never a copy of guest RAM. A stream that ends
//! early, breaks a bound, or leaves a RAM page unsent leaves no file.

use crate::addr::PAGE_SIZE;
use crate::cpu::notes::{encode_prstatus_x86_64, encode_qemu_note};
use crate::cpu::vmstate::decode_cpu;
use crate::cpu::X86CpuState;
use crate::dump::kdump::{KdumpMachine, StreamedKdump, StreamedKdumpSpec};
use crate::dump::notes::{dump_notes, CpuNotes};
use crate::dump::streamed::StreamedElf;
use crate::dump::{ElfClass, ElfMachine, OutputOptions};
use crate::dump_level::DumpLevel;
use crate::format::ElfNote;
use crate::guest::{DumpFormat, DumpOutcome, KdumpOutcome};
use crate::mapping::MappingList;
use crate::paging::{PagingMode, WalkLimits};
use crate::phys::migration::devices::DeviceState;
use crate::phys::migration::ram::RamBlock;
use crate::phys::migration::vmcoreinfo::read_note_with;
use crate::phys::migration::{Event, PageContent, Parser};
use crate::phys::{PhysMemory, RamMap, RamPiece};
use crate::progress::Progress;
use crate::qmp::snapshot::{self, SnapshotReport, Start};
use crate::qmp::LiveSession;
use crate::{Error, Result};
use std::io::BufReader;
use std::path::Path;

/// The largest VMCOREINFO note a Linux kernel registers (one page), with its note header.
const VMCOREINFO_RESERVE: u64 = PAGE_SIZE + 64;
/// Read buffer on the stream.
const STREAM_BUFFER: usize = 1 << 20;

/// What [`dump_snapshot`] did.
#[derive(Debug)]
pub enum LiveDump {
    /// The dump is written.
    Written {
        /// What the dump writer wrote (bytes, pages), as for a dump of a file.
        outcome: DumpOutcome,
        /// QEMU's figures for the snapshot (its downtime).
        snapshot: SnapshotReport,
        /// The vCPUs at the snapshot's instant.
        cpus: Vec<X86CpuState>,
        /// Whether the guest's VMCOREINFO was found and put in the dump.
        vmcoreinfo: bool,
    },
    /// No background snapshot can be had here (the reason); nothing was written or changed.
    Unavailable(String),
}

/// The file being filled: either format takes pages in any order and reads them back.
#[allow(clippy::large_enum_variant)] // one per dump, on the stack of dump_snapshot
enum Sink {
    Elf(StreamedElf),
    Kdump(StreamedKdump),
}

impl Sink {
    fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        match self {
            Sink::Elf(e) => e.page(gpa, bytes),
            Sink::Kdump(k) => k.page(gpa, bytes),
        }
    }
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Sink::Elf(e) => e.read_phys(gpa, buf),
            Sink::Kdump(k) => k.read_phys(gpa, buf),
        }
    }
    fn finish(self, notes: &[ElfNote], nr_cpus: usize) -> Result<DumpOutcome> {
        Ok(match self {
            Sink::Elf(e) => DumpOutcome::Elf {
                summary: e.finish(notes)?,
                paging: false,
            },
            Sink::Kdump(k) => {
                let compression = k.compression();
                DumpOutcome::Kdump(KdumpOutcome {
                    summary: k.finish(notes, nr_cpus as u32)?,
                    compression,
                })
            }
        })
    }
}

/// The mapping list of the first vCPU of `cpus` with paging on (as for a dump of a file),
/// walked over `memory`; `None` when paging is off on every vCPU. `whose` names the tables in
/// an error.
fn first_paging_list(
    memory: &dyn PhysMemory,
    cpus: &[X86CpuState],
    limits: WalkLimits,
    whose: &str,
) -> Result<Option<MappingList>> {
    let Some(cpu) = cpus.iter().find(|c| c.paging_enabled()) else {
        return Ok(None);
    };
    let mode = PagingMode::from_cpu(cpu)?;
    let (list, _) = MappingList::from_walk(memory, &mode, limits)
        .map_err(|e| e.context(format!("{whose} vCPU {} page tables", cpu.index)))?;
    Ok(Some(list))
}

/// Program headers to reserve for a paging core of the running guest: its mapping list now,
/// plus a quarter and 4096 for what the tables gain before the snapshot's instant.
fn program_headers_now(
    session: &mut LiveSession,
    pieces: &[RamPiece],
    cpus: &[X86CpuState],
    limits: WalkLimits,
) -> Result<u64> {
    if !cpus.iter().any(X86CpuState::paging_enabled) {
        return Ok(0);
    }
    let memory = session.open_memory(pieces)?;
    let n = first_paging_list(&memory, cpus, limits, "the running guest's")?
        .map_or(0, |l| l.len() as u64)
        + 1;
    Ok(n + n / 4 + 4096)
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

/// Writes a dump of all RAM of the guest behind `session` at `out` from a background
/// snapshot, in `format`: a physical ELF core, or a kdump file at `level` 0 or 1 (the levels
/// that need no page array). The guest is never stopped by guestcore here; QEMU stops it for
/// its device state.
///
/// The ELF core is `ELF64` for guests in long mode (the vCPU state read before the snapshot
/// says which), `ELF32` for others, as QEMU's dump-guest-memory does; the kdump file is
/// `x86_64` or `i686` alike.
///
/// With `paging` (ELF only: the walk's bounds), the core is a paging one: its PT_LOADs come
/// from the snapshot's own page tables (the first vCPU with paging on, as for a dump of a
/// file), walked over the pages once they are all written. The room for its program headers
/// is reserved before the first page, from a walk of the running guest's tables just before
/// the snapshot, with a margin; tables that outgrow it by the end leave no file.
pub fn dump_snapshot(
    session: &mut LiveSession,
    out: &Path,
    opts: &OutputOptions,
    format: DumpFormat,
    level: DumpLevel,
    paging: Option<WalkLimits>,
    progress: &dyn Progress,
) -> Result<LiveDump> {
    let pieces = session.ram_layout()?;
    let ram = RamMap::new(pieces.iter().map(|p| p.phys).collect())?;
    // The mode decides the ELF class before the first page is written; it is read now, and
    // checked against the snapshot's own registers at the end.
    let before = session.registers()?;
    let long_mode = before.iter().any(X86CpuState::long_mode);
    let (class, machine) = if long_mode || ram.end() > u64::from(u32::MAX) {
        (ElfClass::Elf64, ElfMachine::X86_64)
    } else {
        (ElfClass::Elf32, ElfMachine::I386)
    };
    let per_cpu = {
        let c = X86CpuState::default();
        (encode_prstatus_x86_64(&c, 1).encoded_len() + encode_qemu_note(&c).encoded_len()) as u64
    };
    // Twice the vCPUs seen now: a vCPU hot-plugged before the snapshot still fits (the space
    // left over stays outside every header; finish refuses notes that do not fit).
    let reserve = per_cpu * before.len().max(1) as u64 * 2 + VMCOREINFO_RESERVE;
    let mut sink = match format {
        DumpFormat::Elf(_) => {
            if level.bits() != 0 {
                return Err(Error::Unsupported(
                    "a snapshot's ELF core holds all of RAM: dump level 0 only".into(),
                ));
            }
            let phnum = match paging {
                Some(limits) => program_headers_now(session, &pieces, &before, limits)?,
                None => 0,
            };
            Sink::Elf(StreamedElf::create(
                out, opts, &ram, class, machine, reserve, phnum,
            )?)
        }
        DumpFormat::Kdump(compression) => {
            let spec = StreamedKdumpSpec {
                machine: if class == ElfClass::Elf64 {
                    KdumpMachine::X86_64
                } else {
                    KdumpMachine::I686
                },
                compression,
                dump_level: level.bits(),
                notes_reserve: reserve,
            };
            Sink::Kdump(StreamedKdump::create(out, opts, &ram, spec)?)
        }
    };

    let mut snap = match snapshot::start(session.client())? {
        Start::Streaming(s) => s,
        Start::Unavailable(why) => return Ok(LiveDump::Unavailable(why)),
    };
    let streamed = (|| -> Result<DeviceState> {
        let name = format!("background snapshot of {}", session.socket().display());
        let mut parser = Parser::new(
            BufReader::with_capacity(STREAM_BUFFER, snap.stream()),
            name.clone(),
        );
        let mut places = Vec::new();
        let mut devices = DeviceState::default();
        let mut fill = vec![0u8; PAGE_SIZE as usize];
        let mut eof = false;
        progress.start("snapshot", ram.total());
        while let Some(ev) = parser.next()? {
            match ev {
                Event::RamBlocks(b) => places = placement(b, &pieces),
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
                            return Err(Error::Unsupported(format!("{name}: page bytes skipped")))
                        }
                    };
                    for &(start, len, gpa) in place {
                        if offset >= start && offset - start < len {
                            sink.page(gpa + (offset - start), bytes)?;
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
                return Err(Error::Cancelled);
            }
        }
        if !eof {
            return Err(Error::format(
                &name,
                "the stream ends before its EOF section",
            ));
        }
        Ok(devices)
    })();
    progress.finish();
    let devices = match streamed {
        Ok(d) => d,
        Err(e) => {
            snap.cancel(session.client());
            return Err(e);
        }
    };
    let report = snap.finish(session.client())?;
    let name = session.socket().display().to_string();
    let (sections, pointer) = devices.decode(Path::new(&name))?;
    let cpus = sections
        .iter()
        .map(|c| decode_cpu(&c.desc, &c.data, Path::new(&name)))
        .collect::<Result<Vec<_>>>()?;
    if cpus.is_empty() {
        return Err(Error::format(&name, "the snapshot holds no vCPU state"));
    }
    if cpus.iter().any(X86CpuState::long_mode) != long_mode && class == ElfClass::Elf32 {
        return Err(Error::Unsupported(
            "the guest entered long mode while the snapshot was taken: run the dump again".into(),
        ));
    }
    let vmcoreinfo = match pointer {
        Some(p) => read_note_with(p, |addr, buf| sink.read_phys(addr, buf)),
        None => None,
    };
    let notes = dump_notes(
        CpuNotes::Build {
            cpus: &cpus,
            long_mode: class == ElfClass::Elf64,
        },
        &[],
        vmcoreinfo.as_deref(),
    );
    let outcome = match (sink, paging) {
        (Sink::Elf(mut elf), Some(limits)) => {
            match first_paging_list(&elf.memory()?, &cpus, limits, "the snapshot's")? {
                Some(list) => {
                    let room = elf.program_header_room();
                    if list.len() as u64 + 1 > room {
                        return Err(Error::Unsupported(format!(
                            "the guest's page tables grew while the snapshot ran: {} program \
                             headers, room for {room} (run it again, or use --pause)",
                            list.len() + 1
                        )));
                    }
                    DumpOutcome::Elf {
                        summary: elf.finish_paging(&notes, &list)?,
                        paging: true,
                    }
                }
                None => Sink::Elf(elf).finish(&notes, cpus.len())?,
            }
        }
        (sink, _) => sink.finish(&notes, cpus.len())?,
    };
    Ok(LiveDump::Written {
        outcome,
        snapshot: report,
        cpus,
        vmcoreinfo: vmcoreinfo.is_some(),
    })
}
