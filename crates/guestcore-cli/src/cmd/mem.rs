//! `guestcore mem`: merged virtual→physical ranges, like HMP `info mem`.

use crate::output::{hex, Context};
use crate::source::SourceArgs;
use anyhow::Result;
use clap::Args;
use guestcore::mapping::render;
use serde_json::json;
use std::io::Write;

#[derive(Args, Debug)]
pub struct MemArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Machine-readable output (addresses as hex strings).
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: MemArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let many = src.selected.len() > 1;
    let mut json_cpus = Vec::new();
    for sel in &src.selected {
        let (list, report) = src.mappings(ctx, sel)?;
        if args.json {
            json_cpus.push(json!({
                "cpu": sel.cpu.index,
                "mode": sel.mode.kind.name(),
                "root": hex(sel.mode.root),
                "report": report,
                "mappings": list.iter().map(|m| json!({
                    "va": hex(m.va.0), "pa": hex(m.pa.0), "size": m.size,
                    "perms": m.flags.mem_string(), "ram": m.is_ram(),
                })).collect::<Vec<_>>(),
            }));
            continue;
        }
        if many {
            writeln!(
                out,
                "CPU#{} {} root {:#x}",
                sel.cpu.index,
                sel.mode.kind.name(),
                sel.mode.root
            )?;
        }
        out.write_all(render::mem_text(&list).as_bytes())?;
    }
    if args.json {
        let v = if many {
            json!(json_cpus)
        } else {
            json_cpus.pop().unwrap_or_default()
        };
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
