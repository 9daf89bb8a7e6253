//! `guestcore mem`: merged virtual→physical ranges, like HMP `info mem`.

use crate::output::{hex, Context};
use crate::source::{walk_warning, SourceArgs};
use anyhow::{Context as _, Result};
use clap::Args;
use guestcore::mapping::{render, MappingList};
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
        let (list, report) = MappingList::from_walk(&*src.image.memory, &sel.mode, src.limits)
            .with_context(|| {
                format!(
                    "{}: vCPU {} page tables at {:#x}",
                    args.source.input.display(),
                    sel.cpu.index,
                    sel.mode.root
                )
            })?;
        if let Some(w) = walk_warning(&report) {
            ctx.note(format_args!("vCPU {}: {w}", sel.cpu.index));
        }
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
