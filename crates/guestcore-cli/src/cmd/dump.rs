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
use guestcore::dump_level::{DumpLevel, KernelPages, PageFilter};
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
    #[arg(short, long, value_name = "FILE", required_unless_present = "dry_run")]
    output: Option<PathBuf>,
    /// Output format. kdump files hold physical memory only (crash translates through the
    /// guest's own tables); all-zero pages share one stored zero page, and at dump level 0
    /// nothing is excluded.
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
    /// Leave pages out as `makedumpfile -d N` does (0-31, a bitmask): 1 zero pages, 2 page
    /// cache, 4 page cache with private data, 8 user-process data, 16 free pages (31: all).
    /// Levels above 1 read the kernel's page array through its VMCOREINFO and page tables
    /// (`--kernel` picks the kernel). kdump output records the level and clears the frames in
    /// its dumpable bitmap; ELF output leaves them out of its PT_LOADs.
    #[arg(short = 'd', long, value_name = "N", default_value = "0")]
    dump_level: DumpLevel,
    /// Write nothing: say how many pages each part of the dump level leaves out.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: the counts as JSON.
    #[arg(long, requires = "dry_run")]
    json: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Context, args: DumpArgs) -> Result<()> {
    let started = Instant::now();
    let output = args.output.clone().unwrap_or_default();
    let to_stdout = output.as_os_str() == "-";
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
    if !args.dry_run && !to_stdout && output.exists() && !args.force {
        bail!(
            "{}: the file exists (use --force to overwrite it)",
            output.display()
        );
    }
    if crate::source::is_live(&args.source.input) && args.source.live.unspecified() && !args.dry_run
    {
        match snapshot_plan(&args, compression.is_some(), to_stdout) {
            Ok(()) => {
                if let Some(done) = try_snapshot(ctx, &args, &output, started)? {
                    return Ok(done);
                }
            }
            Err(why) => ctx.note(format_args!(
                "no background snapshot: {why}; pausing the guest instead (--pause)"
            )),
        }
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
    let level = args.dump_level;
    if level.bits() > 0 && kernel.is_none() && !paging_walks_a_kernel(args.paging, &walked) {
        kernel = kernel_for_page_array(ctx, &src, level);
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

    let mut page_filter = None;
    if level.bits() > 0 {
        let mode = kernel.as_ref().and_then(|k| k.paging_mode());
        let pages = match (&kernel, &mode) {
            (Some(k), Some(m)) => Some(KernelPages {
                mode: m,
                vmcoreinfo: &k.vmcoreinfo,
            }),
            _ => None,
        };
        let keep = kernel.as_ref().map(kept_ranges).unwrap_or_default();
        let bar = Bar::new(ctx.show_progress());
        let mut f = guestcore::dump_level::page_filter(&*image.memory, level, pages, &keep, &bar)
            .context("filtering")?;
        if compression.is_none() || args.dry_run {
            f.exclude_zero_pages(&*image.memory, &bar)?;
        }
        report_filter(ctx, &f, kernel.as_ref());
        if args.dry_run {
            print_filter(&f, compression.is_some(), args.json)?;
            return Ok(());
        }
        page_filter = Some(f);
    } else if args.dry_run {
        let f = guestcore::dump_level::page_filter(
            &*image.memory,
            level,
            None,
            &[],
            &guestcore::progress::NoProgress,
        )?;
        print_filter(&f, compression.is_some(), args.json)?;
        return Ok(());
    }
    let excluded = page_filter.as_ref().map(|f| f.excluded());

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
            excluded,
            dump_level: level.bits(),
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
            write_kdump(&req, &output, &KdumpOptions::default(), &bar)
                .map_err(|e| crate::source::naming(e, &output))?
        };
        ctx.note(format_args!(
            "wrote {}: kdump-{} {} pages dumped ({} zero, {} compressed, {} raw), {} bytes, in {:.2} s",
            output.display(),
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
        excluded,
    };
    let bar = Bar::new(ctx.show_progress());
    let summary = write_elf_core(&req, &output, &OutputOptions { force: args.force }, &bar)
        .map_err(|e| crate::source::naming(e, &output))?;
    if summary.excluded_written > 0 {
        ctx.note(format_args!(
            "{} left-out pages are written anyway: joining short gaps keeps the PT_LOADs within {}",
            summary.excluded_written,
            guestcore::dump::elf_layout::MAX_FILTERED_RUNS
        ));
    }
    ctx.note(format_args!(
        "wrote {}: {} {} PT_LOADs{}, {} MiB of guest memory, {} bytes, in {:.2} s",
        output.display(),
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

/// True when a `--paging` dump will walk some vCPU's tables (and so find their kernel itself).
fn paging_walks_a_kernel(paging: bool, walked: &[(u32, guestcore::paging::PagingMode)]) -> bool {
    paging && !walked.is_empty()
}

/// The kernel whose page array filters a dump when none was named: the one whose VMCOREINFO the
/// dump carries (the input's, as makedumpfile filters by the VMCOREINFO in its input), found
/// without a scan of RAM; else, from a scan, the one a vCPU runs or the only one with usable
/// tables.
fn kernel_for_page_array(
    ctx: &Context,
    src: &crate::source::Source,
    level: DumpLevel,
) -> Option<Kernel> {
    let image = &src.image;
    if let Some(text) = image.vmcoreinfo.as_ref().filter(|t| !t.is_empty()) {
        let mut k =
            guestcore::kernel::describe(&*image.memory, &src.all_cpus, text.clone(), None, None);
        if k.layout.is_ok() {
            k.in_input_notes = true;
            return Some(k);
        }
    }
    let scan = find_kernels(&*image.memory, &src.all_cpus, image.vmcoreinfo.as_deref());
    let usable: Vec<&Kernel> = scan.kernels.iter().filter(|k| k.layout.is_ok()).collect();
    let chosen = usable
        .iter()
        .find(|k| !k.cpus.is_empty())
        .or_else(|| (usable.len() == 1).then(|| &usable[0]))
        .map(|k| (*k).clone());
    if chosen.is_none() && level.needs_page_array() && usable.len() > 1 {
        ctx.warn(format_args!(
            "{} kernels are in memory and no vCPU runs one: name the one to filter by with --kernel N",
            usable.len()
        ));
    }
    chosen
}

/// Physical ranges a filtered dump keeps whatever the page array says: the kernel's
/// VMCOREINFO note and, for a crashed kernel, its core header and crash notes.
fn kept_ranges(k: &Kernel) -> Vec<PhysRange> {
    let page = |a: u64| PhysRange {
        start: a & !0xfff,
        end: (a & !0xfff).saturating_add(0x2000),
    };
    let mut v: Vec<PhysRange> = k.vmcoreinfo_addr.into_iter().map(page).collect();
    if let Some(c) = &k.crash {
        v.push(page(c.addr));
        v.extend(c.note_addrs.iter().map(|&a| page(a)));
    }
    v
}

/// Notes what a filter leaves out, and warns about what it could not or would not leave out.
fn report_filter(ctx: &Context, f: &PageFilter, kernel: Option<&Kernel>) {
    let r = f.report();
    if let Some(why) = &r.page_array_skipped {
        ctx.note(format_args!(
            "dump level {}: zero pages only, without the kernel's page array ({why})",
            r.level
        ));
    }
    if r.page_array {
        if let Some(k) = kernel {
            ctx.note(format_args!(
                "dump level {}: page array of kernel {} ({})",
                r.level, k.index, k.release
            ));
        }
    }
    let x = &r.excluded;
    ctx.note(format_args!(
        "dump level {}: leaves out {} of {} RAM pages (zero {}, cache {}, cache with private data {}, user data {}, free {}, hwpoison {}, offline {}, past the page array {}); keeps {}",
        r.level,
        x.total(),
        r.ram_frames,
        if r.zero_scanned { x.zero.to_string() } else { "stored once".into() },
        x.cache,
        x.cache_private,
        x.user,
        x.free,
        x.hwpoison,
        x.offline,
        x.beyond_page_array,
        r.kept()
    ));
    if r.outside_page_array > 0 {
        ctx.note(format_args!(
            "{} pages of the input are memory the kernel has no struct page for (firmware, devices): kept",
            r.outside_page_array
        ));
    }
    if r.unclassified > 0 {
        ctx.warn(format_args!(
            "{} RAM pages have a struct page that cannot be read from the kernel's page array: kept, unclassified",
            r.unclassified
        ));
    }
    if r.protected > 0 {
        ctx.warn(format_args!(
            "the page array marks {} pages the kernel needs (page tables, data VMCOREINFO names, notes) as excludable: kept",
            r.protected
        ));
    }
    if r.bad_free_orders > 0 {
        ctx.warn(format_args!(
            "{} free-page heads claim an order past the allocator's: kept",
            r.bad_free_orders
        ));
    }
}

/// `--dry-run`: the counts on stdout.
fn print_filter(f: &PageFilter, kdump: bool, json: bool) -> Result<()> {
    use std::io::Write;
    let r = f.report();
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(r)?;
        v["kept"] = r.kept().into();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    let x = &r.excluded;
    writeln!(out, "dump level {}", r.level)?;
    writeln!(out, "{:<24}{:>12}", "RAM pages", r.ram_frames)?;
    let rows = [
        ("zero (1)", x.zero),
        ("cache (2)", x.cache),
        ("cache, private (4)", x.cache_private),
        ("user data (8)", x.user),
        ("free (16)", x.free),
        ("hwpoison", x.hwpoison),
        ("offline", x.offline),
        ("past the page array", x.beyond_page_array),
    ];
    for (name, n) in rows {
        writeln!(out, "{name:<24}{n:>12}")?;
    }
    writeln!(out, "{:<24}{:>12}", "kept", r.kept())?;
    writeln!(out, "{:<24}{:>12}", "unclassified (kept)", r.unclassified)?;
    writeln!(
        out,
        "{:<24}{:>12}",
        "no struct page (kept)", r.outside_page_array
    )?;
    writeln!(out, "{:<24}{:>12}", "protected (kept)", r.protected)?;
    if kdump && r.level & DumpLevel::ZERO != 0 {
        writeln!(
            out,
            "(kdump output stores zero pages once and keeps them in its bitmap, as makedumpfile does)"
        )?;
    }
    Ok(())
}

/// Why a live dump with these arguments cannot come from a background snapshot, which writes a
/// physical ELF core of all RAM with every vCPU's registers.
fn snapshot_plan(
    args: &DumpArgs,
    kdump: bool,
    to_stdout: bool,
) -> std::result::Result<(), &'static str> {
    let s = &args.source;
    if kdump || to_stdout {
        return Err("it writes ELF cores only");
    }
    if args.paging {
        return Err("--paging walks the page tables first");
    }
    if args.dump_level.bits() > 0 {
        return Err("--dump-level reads the page array first");
    }
    if args.begin.is_some() || args.length.is_some() || args.elf_class == ClassArg::Elf32 {
        return Err("it dumps all of RAM as QEMU's class");
    }
    if s.kernel.is_some()
        || s.registers.is_some()
        || s.cr3.is_some()
        || s.cr0.is_some()
        || s.cr4.is_some()
        || s.efer.is_some()
        || s.mode.is_some()
        || s.cpu.is_some()
    {
        return Err("its registers come from the snapshot itself");
    }
    Ok(())
}

/// A physical ELF core from a QEMU background snapshot; `None` when QEMU cannot take one (the
/// reason is noted, and the caller pauses instead).
fn try_snapshot(
    ctx: &Context,
    args: &DumpArgs,
    output: &std::path::Path,
    started: Instant,
) -> Result<Option<()>> {
    use guestcore::live_dump::{dump_snapshot, LiveDump};
    let socket = args
        .source
        .input
        .to_str()
        .and_then(|s| s.strip_prefix("qmp:"))
        .unwrap_or_default();
    let mut session =
        guestcore::qmp::LiveSession::connect_running(socket, &args.source.live.options())
            .with_context(|| format!("connecting to {socket}"))?;
    let opts = OutputOptions { force: args.force };
    match dump_snapshot(&mut session, output, &opts, &Bar::new(ctx.show_progress()))
        .context("dumping a background snapshot")?
    {
        LiveDump::Unavailable(why) => {
            ctx.note(format_args!(
                "no background snapshot: {why}; pausing the guest instead (--pause)"
            ));
            Ok(None)
        }
        LiveDump::Written {
            summary,
            snapshot,
            cpus,
            vmcoreinfo,
        } => {
            if let Some(ms) = snapshot.downtime_ms {
                ctx.note(format_args!("background snapshot: guest stopped {ms} ms (QEMU's count), streamed in {:.2} s", snapshot.total.as_secs_f64()));
            }
            if !vmcoreinfo {
                ctx.warn("the guest registered no VMCOREINFO (no `-device vmcoreinfo`, or a kernel without the fw_cfg driver): the dump carries none");
            }
            ctx.note(format_args!(
                "wrote {}: {} PT_LOADs, {} vCPUs, {:.1} MiB of data in {:.2} s",
                output.display(),
                summary.segments,
                cpus.len(),
                summary.bytes_written as f64 / (1 << 20) as f64,
                started.elapsed().as_secs_f64()
            ));
            Ok(Some(()))
        }
    }
}
