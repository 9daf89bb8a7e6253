//! `guestcore mem`: merged virtual→physical ranges, like HMP `info mem`.
//!
//! Text and JSON are streamed to stdout from each vCPU's mapping list (`output::json`), never
//! built as one string or one JSON tree: that tree costs hundreds of bytes per mapping, and a
//! hostile guest has millions of them. One vCPU's list is held at a time.

use crate::output::listings::{CpuMappingsJson, MappingJson};
use crate::output::{self, json, Context, Format};
use crate::source::{Source, SourceArgs};
use anyhow::Result;
use clap::Args;
use guestcore::render;
use guestcore::Selected;
use std::io::Write;

#[derive(Args, Debug)]
pub struct MemArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Machine-readable output (addresses as hex strings).
    #[arg(long)]
    json: bool,
    /// One JSON object per mapping and line, with its vCPU (`cpu`) and the fields of a
    /// `--json` mapping.
    #[arg(long, conflicts_with = "json")]
    json_lines: bool,
}

pub fn run(ctx: &Context, args: MemArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let many = src.view.selected.len() > 1;
    match Format::of(args.json, args.json_lines) {
        Format::Text => {
            for sel in &src.view.selected {
                if many {
                    output::write_cpu_heading(&mut out, sel.cpu.index(), &sel.mode)?;
                }
                render::write_mem(&mut out, &src.mappings(ctx, sel)?.0)?;
            }
        }
        Format::JsonLines => {
            for sel in &src.view.selected {
                for m in &src.mappings(ctx, sel)?.0 {
                    json::write_line(&mut out, &MappingJson::new(Some(sel.cpu.index()), m))?;
                }
            }
        }
        // One vCPU: its object; several: an array of them.
        Format::Json if many => json::write_array(
            &mut out,
            src.view.selected.iter().map(|s| cpu_json(ctx, &src, s)),
        )?,
        Format::Json => {
            let one = src.view.selected.first().map(|s| cpu_json(ctx, &src, s));
            json::write_document(&mut out, &one.transpose()?)?;
        }
    }
    // Tables read from a file cut meanwhile were zeros: the listing is not the guest's.
    src.guest.intact()?;
    out.flush()?;
    Ok(())
}

fn cpu_json(ctx: &Context, src: &Source, sel: &Selected) -> Result<CpuMappingsJson> {
    let (list, report) = src.mappings(ctx, sel)?;
    Ok(CpuMappingsJson {
        cpu: sel.cpu.index(),
        mode: sel.mode.kind.name(),
        root: sel.mode.root,
        list,
        report,
    })
}
