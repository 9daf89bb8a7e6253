//! `guestcore kernels`: the Linux kernels found in guest memory, their page-table roots and
//! roles (see the library's `kernel` module for how they are found).

use crate::output::{hex, Context};
use anyhow::Result;
use clap::Args;
use guestcore::kernel::{Kernel, KernelScan};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct KernelsArgs {
    /// Guest memory: ELF core, kdump file, raw image, or `qmp:SOCKET` (a running QEMU).
    input: PathBuf,
    #[command(flatten)]
    live: crate::source::LiveArgs,
    /// Layout of a raw image (see `guestcore mem --help`).
    #[arg(long)]
    layout: Option<guestcore::phys::layout::Layout>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: KernelsArgs) -> Result<()> {
    let opts = crate::source::plain_options(args.layout.clone(), &args.live);
    let mut guest = crate::source::open_guest(ctx, &args.input, &opts)?;
    guest.kernels();
    crate::source::finish_live(ctx.quiet, &mut guest);
    let scan = guest.kernels();
    if scan.truncated {
        ctx.warn(format_args!(
            "more than {} VMCOREINFO notes or core headers in RAM: only the first are listed",
            guestcore::kernel::scan::MAX_FOUND
        ));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let list: Vec<_> = scan.kernels.iter().map(kernel_json).collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, scan)?;
    }
    out.flush()?;
    Ok(())
}

fn kernel_json(k: &Kernel) -> serde_json::Value {
    let l = k.layout.as_ref().ok();
    let mut v = json!({
        "index": k.index,
        "release": k.release,
        "role": k.role.name(),
        "root": l.map(|l| hex(l.root)),
        "mode": l.map(|l| l.mode.name()),
        "phys_base": l.map(|l| hex(l.phys_base)),
        "kaslr_offset": l.map(|l| hex(l.kaslr_offset)),
        "cpus": k.cpus,
        "vmcoreinfo_addr": k.vmcoreinfo_addr.map(hex),
        "in_input_notes": k.in_input_notes,
    });
    if let Err(e) = &k.layout {
        v["layout_error"] = json!(e);
    }
    if let Some(c) = &k.crash {
        v["elfcorehdr"] = json!(hex(c.addr));
        v["crash_cpus"] = json!(c.prstatus.len());
    }
    v
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
        if !k.cpus.is_empty() {
            let cpus: Vec<String> = k.cpus.iter().map(u32::to_string).collect();
            writeln!(out, "  run by vCPU {}", cpus.join(", "))?;
        }
        if let Some(c) = &k.crash {
            writeln!(
                out,
                "  crashed: kdump ELF core header at {:#x} holds {} CPUs' registers saved at the crash",
                c.addr,
                c.prstatus.len()
            )?;
        }
        if k.in_input_notes {
            writeln!(out, "  the input's own VMCOREINFO note is this kernel's")?;
        }
    }
    Ok(())
}
