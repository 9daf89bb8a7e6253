//! `guestcore mem`: merged virtual→physical ranges, like HMP `info mem`.
//!
//! Text and JSON are streamed to stdout from the mapping list (serde's `collect_seq` over the
//! list), never built as one string or one JSON tree: that tree costs hundreds of bytes per
//! mapping, and a hostile guest has millions of them.

use crate::output::{hex, Context};
use crate::source::SourceArgs;
use anyhow::Result;
use clap::Args;
use guestcore::mapping::{render, MappingList};
use guestcore::paging::WalkReport;
use serde::{Serialize, Serializer};
use std::io::Write;

#[derive(Args, Debug)]
pub struct MemArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Machine-readable output (addresses as hex strings).
    #[arg(long)]
    json: bool,
}

/// One vCPU's JSON object; fields in alphabetical order (the order of the JSON so far).
#[derive(Serialize)]
struct CpuJson {
    cpu: u32,
    mappings: MappingsJson,
    mode: &'static str,
    /// Through `serde_json::Value`, so its keys stay sorted too.
    report: serde_json::Value,
    root: String,
}

/// The mapping list, serialized element by element.
struct MappingsJson(MappingList);

impl Serialize for MappingsJson {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item {
            pa: String,
            perms: String,
            ram: bool,
            size: u64,
            va: String,
        }
        s.collect_seq(self.0.iter().map(|m| Item {
            pa: hex(m.pa.0),
            perms: m.flags.mem_string(),
            ram: m.is_ram(),
            size: m.size,
            va: hex(m.va.0),
        }))
    }
}

fn report_json(report: &WalkReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_default()
}

pub fn run(ctx: &Context, args: MemArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let many = src.selected.len() > 1;
    let mut json_cpus = Vec::new();
    for sel in &src.selected {
        let (list, report) = src.mappings(ctx, sel)?;
        if args.json {
            json_cpus.push(CpuJson {
                cpu: sel.cpu.index,
                mappings: MappingsJson(list),
                mode: sel.mode.kind.name(),
                report: report_json(&report),
                root: hex(sel.mode.root),
            });
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
        render::write_mem(&mut out, &list)?;
    }
    if args.json {
        if many {
            serde_json::to_writer_pretty(&mut out, &json_cpus)?;
        } else {
            serde_json::to_writer_pretty(&mut out, &json_cpus.pop())?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
