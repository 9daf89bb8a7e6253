//! `guestcore tlb`: every leaf with its flags, like HMP `info tlb`, streamed as the walk goes.

use crate::output::listings::LeafJson;
use crate::output::{self, json, Context, Format};
use crate::source::SourceArgs;
use anyhow::Result;
use clap::Args;
use guestcore::render;
use std::io::Write;

#[derive(Args, Debug)]
pub struct TlbArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// One JSON object per line (addresses as hex strings).
    #[arg(long)]
    json: bool,
    /// The same as --json (the name the other listings use for one object per line).
    #[arg(long, conflicts_with = "json")]
    json_lines: bool,
}

pub fn run(ctx: &Context, args: TlbArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let text = Format::of(args.json, args.json_lines) == Format::Text;
    let many = src.view.selected.len() > 1;
    for sel in &src.view.selected {
        if many && text {
            output::write_cpu_heading(&mut out, sel.cpu.index(), &sel.mode)?;
        }
        let mut line = String::with_capacity(64);
        let mut io_err = None;
        src.walk(ctx, sel, |leaf| {
            if io_err.is_some() {
                return;
            }
            let written = if text {
                line.clear();
                render::tlb_line(&mut line, leaf);
                out.write_all(line.as_bytes())
            } else {
                json::write_line(&mut out, &LeafJson::new(sel.cpu.index(), leaf))
            };
            if let Err(e) = written {
                io_err = Some(e);
            }
        })?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
    }
    // Tables read from a file cut meanwhile were zeros: the listing is not the guest's.
    src.guest.intact()?;
    out.flush()?;
    Ok(())
}
