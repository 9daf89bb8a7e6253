//! `guestcore tlb`: every leaf with its flags, like HMP `info tlb`, streamed as the walk goes.

use crate::output::{hex, Context};
use crate::source::SourceArgs;
use anyhow::Result;
use clap::Args;
use guestcore::mapping::render;
use serde_json::json;
use std::io::Write;

#[derive(Args, Debug)]
pub struct TlbArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// One JSON object per line (addresses as hex strings).
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: TlbArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let many = src.selected.len() > 1;
    for sel in &src.selected {
        if many && !args.json {
            writeln!(
                out,
                "CPU#{} {} root {:#x}",
                sel.cpu.index,
                sel.mode.kind.name(),
                sel.mode.root
            )?;
        }
        let mut line = String::with_capacity(64);
        let mut io_err = None;
        src.walk(ctx, sel, |leaf| {
            if io_err.is_some() {
                return;
            }
            line.clear();
            if args.json {
                line = json!({
                    "cpu": sel.cpu.index, "va": hex(leaf.va), "pa": hex(leaf.pa), "size": leaf.size,
                    "flags": leaf.flags.tlb_string(), "ram": !leaf.flags.contains(guestcore::paging::PageFlags::IO),
                })
                .to_string();
                line.push('\n');
            } else {
                render::tlb_line(&mut line, leaf);
            }
            if let Err(e) = out.write_all(line.as_bytes()) {
                io_err = Some(e);
            }
        })?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
    }
    out.flush()?;
    Ok(())
}
