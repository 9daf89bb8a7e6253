//! `guestcore dmesg`: the kernel log from the printk ring buffer, through the kernel's own
//! page tables, printed as `makedumpfile --dump-dmesg` prints it.

use crate::output::Context;
use crate::source::SourceArgs;
use anyhow::Result;
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct DmesgArgs {
    /// Without --kernel: the kernel the chosen vCPU (by default the first with paging on)
    /// runs, else the only kernel found. A live guest keeps running unless --pause is given.
    #[command(flatten)]
    source: SourceArgs,
}

pub fn run(ctx: &Context, mut args: DmesgArgs) -> Result<()> {
    if !args.source.input.live.pause {
        args.source.input.live.no_pause = true;
    }
    let src = args.source.open_with(ctx, false)?;
    let log = src.guest.kernel_log(&src.view)?;
    src.guest.intact()?;
    let mut out = std::io::stdout().lock();
    out.write_all(log.as_bytes())?;
    out.flush()?;
    Ok(())
}
