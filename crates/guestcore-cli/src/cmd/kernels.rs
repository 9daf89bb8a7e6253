//! `guestcore kernels`: the Linux kernels found in guest memory, their page-table roots and
//! roles (see the library's `kernel` module for how they are found).

use crate::output::listings::KernelJson;
use crate::output::{json, Context, Format};
use anyhow::Result;
use clap::Args;
use guestcore::KernelScan;
use std::io::Write;

#[derive(Args, Debug)]
pub struct KernelsArgs {
    #[command(flatten)]
    input: crate::source::InputArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// One JSON object per kernel and line (the fields of a `--json` element).
    #[arg(long, conflicts_with = "json")]
    json_lines: bool,
}

pub fn run(ctx: &Context, args: KernelsArgs) -> Result<()> {
    let mut guest = args.input.open(ctx)?;
    guest.kernels();
    crate::source::finish_live(ctx.quiet, &mut guest);
    let scan = guest.kernels();
    // A scan of a file cut meanwhile read zeros: no listing from it.
    guest.intact()?;
    if scan.truncated {
        ctx.warn(format_args!(
            "more than {} VMCOREINFO notes or core headers in RAM: only the first are listed",
            guestcore::limits::MAX_KERNELS_FOUND
        ));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match Format::of(args.json, args.json_lines) {
        Format::Text => write_text(&mut out, scan)?,
        Format::Json => json::write_array(
            &mut out,
            scan.kernels
                .iter()
                .map(|k| Ok::<_, std::io::Error>(KernelJson::new(k))),
        )?,
        Format::JsonLines => {
            for k in &scan.kernels {
                json::write_line(&mut out, &KernelJson::new(k))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn write_text(out: &mut impl Write, scan: &KernelScan) -> std::io::Result<()> {
    if scan.kernels.is_empty() {
        writeln!(out, "no Linux kernel found (no VMCOREINFO note at any page start of RAM, none in the input's notes)")?;
        return Ok(());
    }
    for k in &scan.kernels {
        let place = match k.vmcoreinfo_addr {
            Some(a) => format!("VMCOREINFO at {a:#x}"),
            None => "VMCOREINFO in the input's notes only".to_string(),
        };
        writeln!(
            out,
            "kernel {}: {} ({}), {place}",
            k.index,
            k.release,
            k.role.name()
        )?;
        match &k.layout {
            Ok(l) => writeln!(
                out,
                "  page tables at {:#x}, {}; phys_base {:#x}, KASLR offset {:#x}",
                l.root,
                l.mode.name(),
                l.phys_base,
                l.kaslr_offset
            )?,
            Err(e) => writeln!(out, "  no page-table root: {e}")?,
        }
        if let Some((first, rest)) = k.cpus.split_first() {
            write!(out, "  run by vCPU {first}")?;
            for c in rest {
                write!(out, ", {c}")?;
            }
            writeln!(out)?;
        }
        if let Some(c) = &k.crash {
            writeln!(
                out,
                "  crashed: kdump ELF core header at {:#x} holds {} CPUs' registers saved at the crash",
                c.addr,
                c.prstatus.len()
            )?;
        }
        if let Some(c) = k.capture_of {
            writeln!(
                out,
                "  kdump capture kernel of kernel {c}: it lies in the RAM kernel {c}'s core header leaves out (the crashkernel reservation)"
            )?;
        }
        if k.in_input_notes {
            writeln!(out, "  the input's own VMCOREINFO note is this kernel's")?;
        }
    }
    Ok(())
}
