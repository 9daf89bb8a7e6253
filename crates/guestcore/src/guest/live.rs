//! Dumps of any input through one call, and where a running guest's dump comes from: a QEMU
//! background snapshot (one instant, the guest stopped for milliseconds, no copy of its RAM)
//! when the dump is one a snapshot can give, else a pause.
//!
//! The choice is made here, once, for every caller ([`LiveCapture`]); a caller says what it
//! wants and renders the [`Notice`]s. A snapshot's dump is planned like any other
//! ([`Guest::plan_dump`] over the pages received, with the vCPUs of the snapshot's instant);
//! it only differs in how pages arrive: pushed by the stream into a [`PageSink`]
//! ([`crate::dump::from_stream`]) instead of pulled from an opened input.

use super::dump::{kdump_machine, PlanFor};
use super::page_heads::WatchHeads;
use super::{DumpLayoutSpec, DumpSpec, Guest, GuestOptions, LiveCapture, Notice, ViewSpec};
use super::{NoSnapshot, SnapshotBlocker};
use crate::addr::PAGE_SIZE;
use crate::cpu::notes::{encode_prstatus_x86_64, encode_qemu_note};
use crate::cpu::X86CpuState;
use crate::dump::from_stream::{stream_snapshot, Streamed};
use crate::dump::kdump::BlockSize;
use crate::dump::kdump::{StreamedKdump, StreamedKdumpSpec};
use crate::dump::streamed::StreamedElf;
use crate::dump::{DumpFormat, DumpOutcome, KdumpOutcome, OutputOptions, PageSink, SinkEnd};
use crate::image::{GuestImage, ImageFormat};
use crate::input::Input;
use crate::paging::ModeKind;
use crate::phys::migration::vmcoreinfo::read_note_with;
use crate::phys::{PhysMemory, RamMap};
use crate::progress::Progress;
use crate::qmp::LiveSession;
use crate::{Error, Result};
use std::path::PathBuf;

/// The largest VMCOREINFO note a Linux kernel registers (one page), with its note header.
const VMCOREINFO_RESERVE: u64 = PAGE_SIZE + 64;

/// `opts` whose notices leave out [`Notice::LibvirtTainted`] (already said).
fn untainted(opts: &GuestOptions) -> GuestOptions {
    let notices = opts.notices.clone().map(|sink| {
        std::sync::Arc::new(move |n: &Notice| {
            if !matches!(n, Notice::LibvirtTainted { .. }) {
                sink(n);
            }
        }) as super::NoticeSink
    });
    GuestOptions {
        notices,
        ..opts.clone()
    }
}

impl Guest {
    /// Opens `input` for `spec`'s dump: a running guest is paused while its RAM is copied
    /// unless `spec.live` says [`LiveCapture::NoPause`] (whatever `opts.live.pause` says).
    pub fn open_for_dump(input: &Input, opts: &GuestOptions, spec: &DumpSpec) -> Result<Guest> {
        let mut opts = opts.clone();
        opts.live.pause = spec.live != LiveCapture::NoPause;
        Guest::open(input, &opts)
    }

    /// Writes `spec`'s dump of `input`, looking through the tables `view` names (`root`
    /// replacing their root, as in [`Guest::select`]): the one call for files and running
    /// guests. A running guest is dumped from a QEMU background snapshot when `spec.live` is
    /// [`LiveCapture::Auto`], the dump is one a snapshot can give and QEMU can take one;
    /// otherwise it is paused while its RAM is copied ([`Notice::NoSnapshot`] says why).
    ///
    /// ```no_run
    /// use guestcore::NoProgress;
    /// use guestcore::{Compression, DumpFormat, DumpSpec, Guest, GuestOptions, Input, ViewSpec};
    ///
    /// # fn main() -> guestcore::Result<()> {
    /// let input = Input::Qmp("/run/qemu/vm1.qmp".into());
    /// let opts = GuestOptions::default().with_notices(|n| eprintln!("{n:?}"));
    /// let spec = DumpSpec::new("vm1.kdump", DumpFormat::Kdump(Compression::Zstd));
    /// Guest::dump_input(&input, &opts, &ViewSpec::FirstPaging, None, &spec, &NoProgress)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn dump_input(
        input: &Input,
        opts: &GuestOptions,
        view: &ViewSpec,
        root: Option<u64>,
        spec: &DumpSpec,
        progress: &dyn Progress,
    ) -> Result<DumpOutcome> {
        let mut quieter = None;
        if input.is_live() && spec.live == LiveCapture::Auto {
            let named = opts.cpus.any() || *view != ViewSpec::FirstPaging || root.is_some();
            let blocker = spec
                .snapshot_blocker()
                .or(named.then_some(SnapshotBlocker::Registers));
            match blocker {
                Some(b) => opts.notify(Notice::NoSnapshot(NoSnapshot::Blocked(b))),
                None => {
                    if let Some(outcome) = Self::dump_snapshot(input, opts, spec, progress)
                        .map_err(|e| e.context("dumping a background snapshot"))?
                    {
                        return Ok(outcome);
                    }
                    // The snapshot's attempt said the domain is tainted: once is enough.
                    if let Input::Libvirt(_) = input {
                        quieter = Some(untainted(opts));
                    }
                }
            }
        }
        let mut guest = Self::open_for_dump(input, quieter.as_ref().unwrap_or(opts), spec)?;
        let view = guest.select(view, root)?;
        guest.dump(&view, spec, progress)
    }

    /// [`dump_input`](Self::dump_input) as makedumpfile's flattened kdump stream into `out`
    /// (a pipe): written in pfn order, so a running guest is paused, never snapshotted.
    pub fn dump_input_stream(
        input: &Input,
        opts: &GuestOptions,
        view: &ViewSpec,
        root: Option<u64>,
        spec: &DumpSpec,
        out: &mut dyn std::io::Write,
        progress: &dyn Progress,
    ) -> Result<KdumpOutcome> {
        if input.is_live() && spec.live == LiveCapture::Auto {
            opts.notify(Notice::NoSnapshot(NoSnapshot::Blocked(
                SnapshotBlocker::Flattened,
            )));
        }
        let mut guest = Self::open_for_dump(input, opts, spec)?;
        let view = guest.select(view, root)?;
        guest.dump_kdump_stream(&view, spec, out, progress)
    }

    /// `spec`'s dump of the live guest `input` (`qmp:` or `libvirt:`) from a background snapshot;
    /// `None` (with a notice, nothing written, the guest untouched) when QEMU or the host
    /// cannot take one.
    ///
    /// What must be fixed before the first page arrives comes from the running guest just
    /// before: the machine (long mode or not: a core is `EM_X86_64` or `EM_386`, a kdump file
    /// `x86_64` or `i686`, as for a file), and for a paging core the room for its program
    /// headers (the running guest's mapping count, plus a quarter and 4096). Everything else
    /// is planned at the end, over the pages received, from the snapshot's own vCPUs and
    /// VMCOREINFO.
    fn dump_snapshot(
        input: &Input,
        opts: &GuestOptions,
        spec: &DumpSpec,
        progress: &dyn Progress,
    ) -> Result<Option<DumpOutcome>> {
        let name = PathBuf::from(input.to_string());
        let mut session = match input {
            Input::Libvirt(domain) => LiveSession::connect_libvirt_running(domain, &opts.live),
            _ => LiveSession::connect_running(input.path(), &opts.live),
        }
        .map_err(|e| e.context(format!("connecting to {input}")))?;
        if let Input::Libvirt(_) = input {
            let socket = session.socket().display().to_string();
            let domain = socket
                .strip_prefix(Input::LIBVIRT_PREFIX)
                .unwrap_or(&socket);
            opts.notify(Notice::LibvirtTainted {
                domain: domain.to_string(),
            });
        }
        let pieces = session.ram_layout()?;
        let ram = RamMap::new(pieces.iter().map(|p| p.phys).collect())?;
        let memory = session.open_memory(&pieces)?;
        let running = Guest::from_image(
            GuestImage {
                path: name.clone(),
                format: ImageFormat::Live {
                    access: memory.access(),
                    consistent: false,
                },
                memory: Box::new(memory),
                cpus: session.registers()?,
                notes: Vec::new(),
                vmcoreinfo: None,
                live: None,
                migration: None,
            },
            &GuestOptions {
                limits: opts.limits,
                ..GuestOptions::default()
            },
        );
        let view = running.select(&ViewSpec::FirstPaging, None)?;
        let machine = view.machine();
        // Room for each vCPU's notes: x86's PRSTATUS and QEMU note, the largest of any machine.
        let per_cpu = {
            let c = X86CpuState::default();
            (encode_prstatus_x86_64(&c, 1).encoded_len() + encode_qemu_note(&c).encoded_len())
                as u64
        };
        // Twice the vCPUs seen now: a vCPU hot-plugged before the snapshot still fits (the
        // space left over stays outside every header; finish refuses notes that do not fit).
        let reserve = per_cpu * running.cpus().len().max(1) as u64 * 2 + VMCOREINFO_RESERVE;
        let output = OutputOptions { force: spec.force };
        let kdump_block = match spec.format {
            DumpFormat::Kdump(_) => stream_block(&view)?,
            DumpFormat::Elf(_) => BlockSize::KIB_4,
        };
        let sink: Box<dyn PageSink> = match spec.format {
            DumpFormat::Elf(class) => {
                let paging = view.selected.first().filter(|s| {
                    spec.layout == DumpLayoutSpec::Paging && s.mode.kind != ModeKind::Off
                });
                let phnum = match paging {
                    Some(sel) => {
                        let n = running.mappings(sel)?.0.len() as u64 + 1;
                        n + n / 4 + 4096
                    }
                    None => 0,
                };
                Box::new(StreamedElf::create(
                    &spec.output,
                    &output,
                    &ram,
                    class,
                    machine,
                    reserve,
                    phnum,
                )?)
            }
            DumpFormat::Kdump(compression) => Box::new(StreamedKdump::create(
                &spec.output,
                &output,
                &ram,
                StreamedKdumpSpec {
                    machine: kdump_machine(machine),
                    compression,
                    dump_level: spec.level.bits(),
                    notes_reserve: reserve,
                    block_size: kdump_block,
                },
            )?),
        };
        drop(running);
        let mut sink = WatchHeads::new(sink);
        let (report, cpus, pointer) = match stream_snapshot(
            &mut session,
            &pieces,
            &mut sink,
            ram.total(),
            progress,
            &|repair| opts.notify(Notice::Warning(repair.to_string())),
        )? {
            Streamed::Unavailable(why) => {
                opts.notify(Notice::NoSnapshot(NoSnapshot::Refused(why)));
                return Ok(None);
            }
            Streamed::Done {
                report,
                cpus,
                vmcoreinfo,
            } => (report, cpus, vmcoreinfo),
        };
        opts.notify(Notice::Snapshot(report));
        let memory = sink.memory()?;
        let vmcoreinfo = pointer.and_then(|p| read_note_with(p, |a, buf| memory.read_at(a, buf)));
        let snapshot = Guest::from_image(
            GuestImage {
                path: name,
                format: ImageFormat::Migration {
                    mapped_ram: false,
                    libvirt: false,
                },
                memory,
                cpus,
                notes: Vec::new(),
                vmcoreinfo,
                live: None,
                migration: None,
            },
            opts,
        );
        // The kernels are those whose traces the pages showed as they streamed past: no
        // second pass over the file.
        snapshot.find_kernels_among(&sink.heads);
        let view = snapshot.select(&ViewSpec::FirstPaging, None)?;
        if view.machine() != machine {
            return Err(Error::Unsupported(
                "the guest entered or left long mode while the snapshot was taken: run the dump again"
                    .into(),
            ));
        }
        let plan = snapshot.plan_dump(&view, spec, PlanFor::Stream, progress)?;
        // The blocks were fixed by the vCPU's granule before the first page; the kernel's
        // VMCOREINFO, known only now, must have the same pages (else the file would be
        // misread: refused, nothing left).
        if matches!(spec.format, DumpFormat::Kdump(_))
            && plan.vmcoreinfo.is_some()
            && plan.block_size != kdump_block
        {
            return Err(Error::Unsupported(format!(
                "the kernel's pages are {}, but its vCPU used {} pages when the snapshot began: the kdump file's blocks would not be its pages; write an ELF core instead",
                plan.block_size, kdump_block
            )));
        }
        Box::new(sink)
            .finish(&SinkEnd {
                utsname: plan.utsname.as_ref(),
                notes: &plan.notes,
                nr_cpus: plan.nr_cpus,
                mappings: plan.mappings.as_ref(),
            })
            .map(Some)
    }
}

/// The block of a kdump file streamed from a guest whose first vCPU is in `view`'s state: the
/// page size of the view's kernel (its VMCOREINFO `PAGESIZE`: a live aarch64 vCPU's registers
/// from QEMU's monitor have no translation registers, so its view is the kernel's), else the
/// granule of the kernel's half of an aarch64 vCPU's regime (TCR_EL1.TG1); 4 KiB on x86 and
/// with the MMU off. The VMCOREINFO read at the stream's end must then agree.
fn stream_block(view: &super::View) -> Result<BlockSize> {
    if let Some(k) = &view.kernel {
        return super::dump::kdump_block_size(Some(&k.vmcoreinfo));
    }
    let half = view
        .selected
        .first()
        .and_then(|s| s.mode.aarch64.as_ref())
        .and_then(|r| r.high.as_ref());
    match half {
        Some(h) => BlockSize::new(h.granule.bytes()),
        None => Ok(BlockSize::KIB_4),
    }
}
