//! `guestcore dmesg`: the kernel log from the printk ring buffer, through the kernel's own
//! page tables, printed as `makedumpfile --dump-dmesg` prints it.

use crate::output::Context;
use crate::source::SourceArgs;
use anyhow::{Context as _, Result};
use clap::Args;
use guestcore::kernel::{find_kernels, kernel_log};
use std::io::Write;

#[derive(Args, Debug)]
pub struct DmesgArgs {
    /// Without --kernel: the kernel the first vCPU with paging on runs, or the only kernel
    /// found. A live guest keeps running unless --pause is given.
    #[command(flatten)]
    source: SourceArgs,
}

pub fn run(ctx: &Context, mut args: DmesgArgs) -> Result<()> {
    if !args.source.live.pause {
        args.source.live.no_pause = true;
    }
    if args.source.kernel.is_none() && args.source.mode.is_none() && args.source.cpu.is_none() {
        args.source.kernel = Some("running".into());
    }
    let src = args.source.open_with(ctx, false)?;
    let input = args.source.input.display();
    let vmcoreinfo = match &src.kernel {
        Some(k) => k.vmcoreinfo.clone(),
        None => {
            // An explicit vCPU or --mode/--cr3: the kernel those tables run, else the input's.
            let scan = find_kernels(
                &*src.image.memory,
                &src.all_cpus,
                src.image.vmcoreinfo.as_deref(),
            );
            let cpu = src.selected.first().map(|s| s.cpu.index);
            scan.kernels
                .iter()
                .find(|k| cpu.is_some_and(|c| k.cpus.contains(&c)))
                .map(|k| k.vmcoreinfo.clone())
                .or_else(|| src.image.vmcoreinfo.clone())
                .with_context(|| format!("{input}: no VMCOREINFO for the selected tables"))?
        }
    };
    let sel = src
        .selected
        .first()
        .with_context(|| format!("{input}: no page tables to read the log through"))?;
    let log = kernel_log(&*src.image.memory, &sel.mode, &vmcoreinfo)
        .with_context(|| format!("{input}: reading the kernel log"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(log.as_bytes())?;
    out.flush()?;
    Ok(())
}
