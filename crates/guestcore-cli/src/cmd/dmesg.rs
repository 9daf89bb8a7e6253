//! `guestcore dmesg`: the kernel log from the printk ring buffer, through the kernel's own
//! page tables, printed as `makedumpfile --dump-dmesg` prints it.

use crate::output::Context;
use crate::source::SourceArgs;
use anyhow::{anyhow, Context as _, Result};
use clap::Args;
use guestcore::kernel::{find_kernels, kernel_log, tables_run};
use std::io::Write;

#[derive(Args, Debug)]
pub struct DmesgArgs {
    /// Without --kernel: the kernel the chosen vCPU (by default the first with paging on)
    /// runs, else the only kernel found. A live guest keeps running unless --pause is given.
    #[command(flatten)]
    source: SourceArgs,
}

pub fn run(ctx: &Context, mut args: DmesgArgs) -> Result<()> {
    if !args.source.live.pause {
        args.source.live.no_pause = true;
    }
    let src = args.source.open_with(ctx, false)?;
    let input = args.source.input.display();
    let mem = &*src.image.memory;
    // --kernel: that kernel. Otherwise the input's own VMCOREINFO when the chosen tables run
    // it (no scan of RAM: the common case costs a few page reads), else the kernel the scan
    // finds those tables run, else the only kernel found.
    let (vmcoreinfo, mode) = if let Some(k) = &src.kernel {
        (k.vmcoreinfo.clone(), src.selected[0].mode.clone())
    } else {
        let sel = src.selected.iter().find(|s| s.cpu.paging_enabled());
        match (sel, src.image.vmcoreinfo.as_deref()) {
            (Some(s), Some(v)) if tables_run(mem, &s.mode, v) => (v.to_vec(), s.mode.clone()),
            _ => {
                let scan = find_kernels(mem, &src.all_cpus, src.image.vmcoreinfo.as_deref());
                let k = match sel
                    .and_then(|s| scan.kernels.iter().find(|k| k.cpus.contains(&s.cpu.index)))
                {
                    Some(k) => k,
                    None => scan
                        .select("running", &src.all_cpus)
                        .map_err(|e| anyhow!("{input}: {e}"))?,
                };
                let mode = k.paging_mode().with_context(|| {
                    format!("{input}: kernel {} has no usable page-table root", k.index)
                })?;
                (k.vmcoreinfo.clone(), mode)
            }
        }
    };
    let log = kernel_log(mem, &mode, &vmcoreinfo)
        .with_context(|| format!("{input}: reading the kernel log"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(log.as_bytes())?;
    out.flush()?;
    Ok(())
}
