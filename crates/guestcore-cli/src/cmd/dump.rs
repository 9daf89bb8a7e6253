//! `guestcore dump`: write an ELF core of the guest, physical (non-paging) or with the
//! virtual view (paging), from any input guestcore reads.

use crate::output::Context;
use crate::progress::Bar;
use crate::source::{num, SourceArgs};
use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use guestcore::addr::PhysRange;
use guestcore::dump::kdump::{
    write_kdump, write_kdump_to, Compression, KdumpMachine, KdumpOptions, KdumpRequest,
};
use guestcore::dump::notes::{dump_notes, CpuNotes};
use guestcore::dump::{
    write_elf_core, DumpLayout, ElfClass, ElfDumpRequest, ElfMachine, OutputOptions,
};
use guestcore::kernel::{find_kernels, Kernel, KernelRole};
use guestcore::mapping::{union_of_views, MappingList, ViewUnion};
use guestcore::paging::ModeKind;
use std::path::PathBuf;
use std::time::Instant;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// ELF core (gdb, crash, drgn).
    Elf,
    /// kdump-compressed, pages compressed with zlib (crash, makedumpfile).
    KdumpZlib,
    /// kdump-compressed, LZO.
    KdumpLzo,
    /// kdump-compressed, snappy.
    KdumpSnappy,
    /// kdump-compressed, zstd.
    KdumpZstd,
    /// kdump-compressed, pages stored uncompressed.
    KdumpRaw,
}

/// ELF class of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClassArg {
    #[value(name = "64")]
    Elf64,
    #[value(name = "32")]
    Elf32,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The core file to write (written to a temporary file beside it, renamed at the end);
    /// `-` writes a flattened kdump stream to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Output format. kdump files hold physical memory only (crash translates through the
    /// guest's own tables); every RAM page is kept — all-zero pages share one stored zero
    /// page — and nothing else is excluded (dump level 0).
    #[arg(long, value_enum, default_value = "elf")]
    format: FormatArg,
    /// kdump only: write makedumpfile's flattened stream (for pipes; `makedumpfile -R`
    /// turns it back into a plain file). Implied by `-o -`.
    #[arg(long)]
    flatten: bool,
    /// Paging mode: one PT_LOAD per mapped virtual range (p_vaddr and p_paddr), so gdb reads
    /// virtual memory. Without it: one PT_LOAD per physical RAM range (p_vaddr = p_paddr),
    /// safe when the page tables are corrupt or belong to another kernel.
    #[arg(long)]
    paging: bool,
    /// Only physical memory from ADDR on (both modes; paging mappings are trimmed).
    #[arg(long, value_parser = num, value_name = "ADDR")]
    begin: Option<u64>,
    /// Only LENGTH bytes of physical memory (from --begin, or from 0).
    #[arg(long, value_parser = num, value_name = "SIZE")]
    length: Option<u64>,
    /// ELF class; 32 only when every address, size and offset fits.
    #[arg(long, value_enum, default_value = "64")]
    elf_class: ClassArg,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Context, args: DumpArgs) -> Result<()> {
    let started = Instant::now();
    let to_stdout = args.output.as_os_str() == "-";
    let compression = match args.format {
        FormatArg::Elf => None,
        FormatArg::KdumpZlib => Some(Compression::Zlib),
        FormatArg::KdumpLzo => Some(Compression::Lzo),
        FormatArg::KdumpSnappy => Some(Compression::Snappy),
        FormatArg::KdumpZstd => Some(Compression::Zstd),
        FormatArg::KdumpRaw => Some(Compression::None),
    };
    if compression.is_none() && (to_stdout || args.flatten) {
        bail!("--flatten and -o - are for kdump formats (--format kdump-zlib …); ELF cores need a seekable file");
    }
    if compression.is_some() && args.paging {
        bail!("kdump files hold physical memory only: drop --paging (crash and libkdumpfile translate through the guest's own page tables)");
    }
    // The writers check this too; checking here first fails before the input is opened (a live
    // guest would be paused for nothing).
    if !to_stdout && args.output.exists() && !args.force {
        bail!(
            "{}: the file exists (use --force to overwrite it)",
            args.output.display()
        );
    }
    let mut src = args.source.open(ctx)?;
    // Live input: copy RAM and let the guest run before the long part (walk + write).
    let paused = src
        .image
        .detach_live(&Bar::new(ctx.show_progress()))
        .context("capturing the live guest's memory")?;
    if let Some(d) = paused {
        ctx.note(format_args!("guest paused for {:.3} s", d.as_secs_f64()));
    }
    let image = &src.image;
    let first = &src.selected[0];
    let long_mode = src.selected.iter().any(|s| s.cpu.long_mode());

    let filter = match (args.begin, args.length) {
        (None, None) => None,
        (b, l) => {
            let start = b.unwrap_or(0);
            let end = match l {
                Some(l) => start
                    .checked_add(l)
                    .context("--begin + --length overflows")?,
                None => image.memory.ram().end(),
            };
            Some(PhysRange { start, end })
        }
    };

    // Paging: the chosen vCPU's mappings, or with --all-cpus their union, one physical page
    // per virtual page (the first vCPU that maps a page wins; conflicts are warned about).
    // Paging dumps know which kernel's tables they walk, and carry that kernel's VMCOREINFO.
    let mut kernel = src.kernel.clone();
    let mut vmcoreinfo = image.vmcoreinfo.clone();
    let mut walked: Vec<(u32, guestcore::paging::PagingMode)> = src
        .selected
        .iter()
        .filter(|s| s.mode.kind != ModeKind::Off)
        .map(|s| (s.cpu.index, s.mode.clone()))
        .collect();
    if args.paging && kernel.is_none() {
        let scan = find_kernels(&*image.memory, &src.all_cpus, image.vmcoreinfo.as_deref());
        if walked.is_empty() {
            // Paging off: the tables of the one kernel VMCOREINFO describes, if there is one.
            let usable: Vec<_> = scan
                .kernels
                .iter()
                .filter(|k| k.paging_mode().is_some())
                .collect();
            if let ([k], Some(mode)) = (&usable[..], usable.first().and_then(|k| k.paging_mode())) {
                ctx.warn(format_args!(
                    "vCPU {} has paging off: using the page tables of kernel {} ({}) at {:#x} from its VMCOREINFO",
                    first.cpu.index, k.index, k.release, mode.root
                ));
                walked.push((first.cpu.index, mode));
                kernel = Some((*k).clone());
            }
        } else {
            let runs = |k: &&Kernel| walked.iter().any(|(i, _)| k.cpus.contains(i));
            if let Some(k) = scan.kernels.iter().find(runs) {
                kernel = Some(k.clone());
            } else if let Some(k) = scan
                .kernels
                .iter()
                .find(|k| k.in_input_notes && k.layout.is_ok())
            {
                ctx.warn(format_args!(
                    "the input's VMCOREINFO describes kernel {} ({}), whose tables the walked vCPU does not run: the dump carries no VMCOREINFO (--kernel {} walks that kernel's tables)",
                    k.index, k.release, k.index
                ));
                vmcoreinfo = None;
            }
        }
    }
    if let Some(k) = &kernel {
        vmcoreinfo = Some(k.vmcoreinfo.clone());
    }
    let paging = args.paging && !walked.is_empty();
    if args.paging && !paging {
        ctx.warn(format_args!(
            "vCPU {} has paging off: writing the physical layout, not the --paging view asked for",
            first.cpu.index
        ));
    }
    let mut mappings = MappingList::new();
    if paging {
        let mut views = Vec::with_capacity(walked.len());
        for (cpu, mode) in &walked {
            let (list, report) = MappingList::from_walk(&*image.memory, mode, src.budget())
                .with_context(|| {
                    format!("{}: page tables at {:#x}", image.path.display(), mode.root)
                })?;
            src.spend(&report, list.len() as u64);
            src.note_walk_of(ctx, *cpu, &report);
            views.push((*cpu, list));
        }
        if views.len() == 1 {
            mappings = views.pop().map(|(_, l)| l).unwrap_or_default();
        } else {
            let union = union_of_views(views.iter().map(|(cpu, l)| (*cpu, l)));
            report_union(ctx, &union);
            mappings = union.list;
        }
    }
    if let Some(k) = &kernel {
        ctx.note(format_args!(
            "the dump describes kernel {} ({}, {}): its VMCOREINFO{}",
            k.index,
            k.release,
            k.role.name(),
            if k.role == KernelRole::Crashed {
                format!(
                    " and the {} CPUs' registers saved at the crash",
                    k.crash_notes().len()
                )
            } else {
                String::new()
            }
        ));
    }

    // Notes: keep the source's CPU notes when the CPU state came from them; a crashed kernel's
    // are the registers its CPUs saved at the crash.
    let overridden = args.source.registers.is_some()
        || args.source.mode.is_some()
        || args.source.cr0.is_some()
        || args.source.cr4.is_some()
        || args.source.efer.is_some();
    let cpus: Vec<_> = if overridden {
        src.selected.iter().map(|s| s.cpu.clone()).collect()
    } else {
        src.all_cpus.clone()
    };
    let has_cpu_notes = image
        .notes
        .iter()
        .any(|n| n.name == b"QEMU" || n.name == b"CORE");
    let crash_notes = kernel
        .as_ref()
        .map(|k| k.crash_notes())
        .filter(|n| !n.is_empty());
    let cpu_notes = if let Some(n) = crash_notes {
        CpuNotes::FromSource(n)
    } else if has_cpu_notes && !overridden {
        CpuNotes::FromSource(&image.notes)
    } else {
        CpuNotes::Build {
            cpus: &cpus,
            long_mode,
        }
    };
    let nr_cpus = crash_notes.map_or(cpus.len(), <[_]>::len);
    let notes = dump_notes(cpu_notes, &image.notes, vmcoreinfo.as_deref());

    if let Some(compression) = compression {
        let req = KdumpRequest {
            memory: &*image.memory,
            notes: &notes,
            vmcoreinfo: vmcoreinfo.as_deref(),
            machine: if long_mode {
                KdumpMachine::X86_64
            } else {
                KdumpMachine::I686
            },
            nr_cpus: nr_cpus.max(1) as u32,
            compression,
            filter,
            flatten: args.flatten || to_stdout,
            force: args.force,
        };
        let bar = Bar::new(ctx.show_progress());
        let summary = if to_stdout {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let s = write_kdump_to(&req, &mut out, &KdumpOptions::default(), &bar)?;
            std::io::Write::flush(&mut out)?;
            s
        } else {
            write_kdump(&req, &args.output, &KdumpOptions::default(), &bar)
                .map_err(|e| crate::source::naming(e, &args.output))?
        };
        ctx.note(format_args!(
            "wrote {}: kdump-{} {} pages dumped ({} zero, {} compressed, {} raw), {} bytes, in {:.2} s",
            args.output.display(),
            compression.name(),
            summary.dumped_pages,
            summary.zero_pages,
            summary.compressed_pages,
            summary.raw_pages,
            summary.bytes_written,
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    }

    let req = ElfDumpRequest {
        memory: &*image.memory,
        notes: &notes,
        machine: if long_mode {
            ElfMachine::X86_64
        } else {
            ElfMachine::I386
        },
        class: match args.elf_class {
            ClassArg::Elf64 => ElfClass::Elf64,
            ClassArg::Elf32 => ElfClass::Elf32,
        },
        layout: if paging {
            DumpLayout::Paging(&mappings)
        } else {
            DumpLayout::Physical
        },
        filter,
    };
    let bar = Bar::new(ctx.show_progress());
    let summary = write_elf_core(
        &req,
        &args.output,
        &OutputOptions { force: args.force },
        &bar,
    )
    .map_err(|e| crate::source::naming(e, &args.output))?;
    ctx.note(format_args!(
        "wrote {}: {} {} PT_LOADs{}, {} MiB of guest memory, {} bytes, in {:.2} s",
        args.output.display(),
        summary.segments,
        if paging { "paging" } else { "physical" },
        if summary.pn_xnum { " (PN_XNUM)" } else { "" },
        summary.data_bytes >> 20,
        summary.file_size,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Says which vCPU each part of an `--all-cpus` union came from (a note), and warns about
/// virtual ranges the vCPUs map to different physical memory (only the first vCPU's view of
/// them is in the dump).
fn report_union(ctx: &Context, u: &ViewUnion) {
    let parts: Vec<String> = u
        .parts
        .iter()
        .map(|p| {
            format!(
                "vCPU {}: {} mappings, {} MiB",
                p.cpu,
                p.mappings,
                p.bytes >> 20
            )
        })
        .collect();
    ctx.note(format_args!(
        "paging view from every vCPU, each adding what the ones before it do not map: {}",
        parts.join("; ")
    ));
    if let Some(c) = u.first_conflict {
        ctx.warn(format_args!(
            "the vCPUs' page tables disagree on {} virtual ranges ({} KiB): the first vCPU that maps a page wins. First: {:#x}-{:#x} is {:#x} on vCPU {} (kept) but {:#x} on vCPU {} (dropped). Use --cpu N for one vCPU's view",
            u.conflicts,
            u.conflict_bytes >> 10,
            c.va,
            c.va.wrapping_add(c.size - 1),
            c.kept_pa,
            c.kept_cpu,
            c.dropped_pa,
            c.dropped_cpu
        ));
    }
}
