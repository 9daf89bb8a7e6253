//! `guestcore translate`: one virtual address to physical, like HMP `gva2gpa`, optionally with
//! every entry read on the way.

use crate::output::{hex, Context};
use crate::source::{num, SourceArgs};
use anyhow::Result;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct TranslateArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The virtual address.
    #[arg(value_parser = num)]
    vaddr: u64,
    /// Show the table entry read at each level.
    #[arg(long)]
    trace: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: TranslateArgs) -> Result<()> {
    let src = args.source.open(ctx)?;
    for sel in &src.view.selected {
        let t = src.guest.translate(sel, args.vaddr)?;
        src.guest.intact()?;
        if args.json {
            let v = json!({
                "cpu": sel.cpu.index(), "vaddr": hex(t.vaddr), "paddr": hex(t.paddr),
                "page_size": t.page_size, "flags": t.flags.tlb_string(),
                "ram": !t.flags.contains(guestcore::PageFlags::IO),
                "steps": t.steps.iter().map(|s| json!({
                    "level": s.level, "table": hex(s.table), "index": s.index,
                    "entry_addr": hex(s.entry_addr), "entry": hex(s.entry),
                })).collect::<Vec<_>>(),
            });
            println!("{v}");
            continue;
        }
        if args.trace {
            for s in &t.steps {
                println!(
                    "{:<5} {:#014x}[{:>3}] @ {:#014x} = {:#018x}",
                    s.level, s.table, s.index, s.entry_addr, s.entry
                );
            }
            println!(
                "page  {} {} at {:#x}",
                guestcore::render::size_name(t.page_size),
                t.flags.tlb_string(),
                t.paddr & !(t.page_size - 1)
            );
        }
        println!(
            "gpa: {:#x}{}",
            t.paddr,
            if t.flags.contains(guestcore::PageFlags::IO) {
                " (not RAM)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
