//! `guestcore dump`: write a core dump of the guest (ELF, physical or with the virtual view,
//! or kdump-compressed) from any input guestcore reads. The flags become a `DumpSpec`; the
//! library decides the rest (for a running guest: background snapshot or pause).

use crate::output::Context;
use crate::progress::Bar;
use crate::source::{naming, num, SourceArgs};
use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use guestcore::PhysRange;
use guestcore::{
    Compression, DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, ElfClass, Guest, KdumpOutcome,
};
use guestcore::{DumpLevel, FilterReport};
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
    /// `-` writes a flattened kdump stream to stdout, and an existing FIFO or character
    /// device is written into the same way (never replaced by a file).
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

impl DumpArgs {
    /// The library's dump request for these flags.
    fn spec(&self) -> Result<DumpSpec> {
        let format = match self.format {
            FormatArg::Elf => DumpFormat::Elf(match self.elf_class {
                ClassArg::Elf64 => ElfClass::Elf64,
                ClassArg::Elf32 => ElfClass::Elf32,
            }),
            FormatArg::KdumpZlib => DumpFormat::Kdump(Compression::Zlib),
            FormatArg::KdumpLzo => DumpFormat::Kdump(Compression::Lzo),
            FormatArg::KdumpSnappy => DumpFormat::Kdump(Compression::Snappy),
            FormatArg::KdumpZstd => DumpFormat::Kdump(Compression::Zstd),
            FormatArg::KdumpRaw => DumpFormat::Kdump(Compression::None),
        };
        let range = match (self.begin, self.length) {
            (None, None) => None,
            (b, l) => {
                let start = b.unwrap_or(0);
                let end = match l {
                    Some(l) => start
                        .checked_add(l)
                        .context("--begin + --length overflows")?,
                    None => u64::MAX,
                };
                Some(PhysRange { start, end })
            }
        };
        Ok(DumpSpec {
            output: self.output.clone().unwrap_or_default(),
            format,
            layout: if self.paging {
                DumpLayoutSpec::Paging
            } else {
                DumpLayoutSpec::Physical
            },
            range,
            level: self.dump_level,
            flatten: self.flatten || self.output.as_deref() == Some(std::path::Path::new("-")),
            force: self.force,
            live: self.source.input.live.capture(),
        })
    }
}

pub fn run(ctx: &Context, args: DumpArgs) -> Result<()> {
    let started = Instant::now();
    let spec = args.spec()?;
    let output = spec.output.clone();
    // `-`, a FIFO or a character device: written into, as a flattened kdump stream.
    let stream = if args.dry_run {
        None
    } else {
        crate::stream_target::kind(&output)?
    };
    let to_stdout = stream.is_some();
    let kdump = matches!(spec.format, DumpFormat::Kdump(_));
    match stream {
        Some(kind) if !kdump && kind != "stdout" => bail!(
            "{}: is {kind}: only a kdump format can be written into it (--format kdump-zlib …, as a flattened stream); an ELF core needs a seekable file",
            output.display()
        ),
        _ if !kdump && (to_stdout || args.flatten) => {
            bail!("--flatten and -o - are for kdump formats (--format kdump-zlib …); ELF cores need a seekable file")
        }
        _ => {}
    }
    if kdump && args.paging {
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
    let input = &args.source.input.input;
    let opts = crate::source::prepare(ctx, input, args.source.options()?);
    let view = args.source.view_spec();
    let bar = Bar::new(ctx.show_progress());
    if args.dry_run {
        let mut guest = Guest::open_for_dump(input, &opts, &spec).map_err(|e| naming(e, input))?;
        let view = guest.select(&view, args.source.cr3)?;
        let report = guest.dump_level_report(&view, &spec, &bar);
        crate::source::finish_live(ctx.quiet, &mut guest);
        return print_filter(&report?, kdump, args.json);
    }
    let outcome = if to_stdout {
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, crate::stream_target::open(&output)?);
        let o =
            Guest::dump_input_stream(input, &opts, &view, args.source.cr3, &spec, &mut out, &bar)
                .map_err(|e| naming(e, input))?;
        std::io::Write::flush(&mut out)?;
        DumpOutcome::Kdump(o)
    } else {
        Guest::dump_input(input, &opts, &view, args.source.cr3, &spec, &bar)
            .map_err(|e| naming(e, &output.display()))?
    };
    match outcome {
        DumpOutcome::Kdump(KdumpOutcome {
            summary,
            compression,
        }) => ctx.note(format_args!(
            "wrote {}: kdump-{} {} pages{} dumped ({} zero, {} compressed, {} raw), {} bytes, in {:.2} s",
            output.display(),
            compression.name(),
            summary.dumped_pages,
            match summary.block_size {
                0 | 4096 => String::new(),
                b => format!(" of {} KiB", b / 1024),
            },
            summary.zero_pages,
            summary.compressed_pages,
            summary.raw_pages,
            summary.bytes_written,
            started.elapsed().as_secs_f64()
        )),
        DumpOutcome::Elf { summary, paging } => {
            if summary.excluded_written > 0 {
                ctx.note(format_args!(
                    "{} left-out pages are written anyway: joining short gaps keeps the PT_LOADs within {}",
                    summary.excluded_written,
                    guestcore::limits::MAX_FILTERED_RUNS
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
        }
        _ => {}
    }
    Ok(())
}

/// `--dry-run`: the counts on stdout.
fn print_filter(r: &FilterReport, kdump: bool, json: bool) -> Result<()> {
    use std::io::Write;
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
    if r.page_size > 4096 {
        writeln!(
            out,
            "(pages are 4 KiB frames; the kernel's pages are {} KiB, each kept or left out whole)",
            r.page_size >> 10
        )?;
    }
    if kdump && r.level & DumpLevel::ZERO != 0 {
        writeln!(
            out,
            "(kdump output stores zero pages once and keeps them in its bitmap, as makedumpfile does)"
        )?;
    }
    Ok(())
}
