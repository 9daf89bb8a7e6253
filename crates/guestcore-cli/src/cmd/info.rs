//! `guestcore info`: what an input holds.

use crate::output::{hex, Context};
use anyhow::Result;
use clap::Args;
use guestcore::PagingMode;
use guestcore::RamMap;
use guestcore::{CpuState, Guest};
use serde::{Serialize, Serializer};
use serde_json::json;
use std::io::Write;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    input: crate::source::InputArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Also describe this kernel's own page tables (`crashed`, `running` or an index from
    /// `guestcore kernels`).
    #[arg(long, value_name = "SELECTOR")]
    kernel: Option<guestcore::KernelSelector>,
}

/// `info --json`, keys in alphabetical order (the order of the JSON so far). The RAM ranges
/// are serialized one by one from the map (an input can have hundreds of thousands).
#[derive(Serialize)]
struct InfoJson<'a> {
    cpus: serde_json::Value,
    file: String,
    format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<serde_json::Value>,
    kernels: serde_json::Value,
    /// Machine type and RAM blocks of a migration stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    migration: Option<serde_json::Value>,
    notes: serde_json::Value,
    osrelease: Option<&'a str>,
    ram: RamJson<'a>,
}

#[derive(Serialize)]
struct RamJson<'a> {
    ranges: RangesJson<'a>,
    total: u64,
}

struct RangesJson<'a>(&'a RamMap);

impl Serialize for RangesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item {
            end: String,
            start: String,
        }
        s.collect_seq(self.0.ranges().iter().map(|r| Item {
            end: hex(r.end),
            start: hex(r.start),
        }))
    }
}

pub fn run(ctx: &Context, args: InfoArgs) -> Result<()> {
    let mut guest = args.input.open(ctx)?;
    let r = print_info(&args, &guest).and_then(|()| guest.intact().map_err(Into::into));
    crate::source::finish_live(ctx.quiet, &mut guest);
    r
}

/// One vCPU's registers that decide translation, and its paging mode (or why it has none).
fn cpu_json(c: &CpuState, m: &guestcore::Result<PagingMode>) -> serde_json::Value {
    let paging = match m {
        Ok(m) => json!(m.kind.name()),
        Err(e) => json!(format!("invalid: {e}")),
    };
    match c {
        CpuState::X86(c) => json!({
            "index": c.index,
            "cr0": hex(c.cr[0]), "cr2": hex(c.cr[2]), "cr3": hex(c.cr[3]), "cr4": hex(c.cr[4]),
            "efer": hex(c.efer), "efer_inferred": c.efer_inferred, "a20": c.a20_enabled,
            "rip": hex(c.rip), "rsp": hex(c.gpr[7]),
            "paging": paging,
        }),
        CpuState::Aarch64(c) => json!({
            "index": c.index, "arch": "aarch64",
            "pc": hex(c.pc), "sp": hex(c.sp), "pstate": hex(c.pstate),
            "ttbr0_el1": c.ttbr0_el1.map(hex), "ttbr1_el1": c.ttbr1_el1.map(hex),
            "tcr_el1": c.tcr_el1.map(hex), "sctlr_el1": c.sctlr_el1.map(hex),
            "id_aa64mmfr0_el1": c.id_aa64mmfr0_el1.map(hex),
            "paging": paging,
        }),
    }
}

/// [`cpu_json`] as one line of `info`'s text.
fn cpu_line(c: &CpuState, m: &guestcore::Result<PagingMode>) -> String {
    let mode = match m {
        Ok(m) => m.kind.name().to_string(),
        Err(e) => format!("invalid ({e})"),
    };
    match c {
        CpuState::X86(c) => format!(
            "CPU#{} CR0={:08x} CR3={:016x} CR4={:08x} EFER={:016x}{} A20={} RIP={:016x} paging={mode}",
            c.index,
            c.cr[0],
            c.cr[3],
            c.cr[4],
            c.efer,
            if c.efer_inferred { " (inferred)" } else { "" },
            u8::from(c.a20_enabled),
            c.rip,
        ),
        CpuState::Aarch64(c) => {
            let reg = |v: Option<u64>| v.map_or("?".to_string(), |v| format!("{v:016x}"));
            format!(
                "CPU#{} PC={:016x} SP={:016x} TTBR0_EL1={} TTBR1_EL1={} TCR_EL1={} SCTLR_EL1={} paging={mode}",
                c.index,
                c.pc,
                c.sp,
                reg(c.ttbr0_el1),
                reg(c.ttbr1_el1),
                reg(c.tcr_el1),
                reg(c.sctlr_el1),
            )
        }
    }
}

fn print_info(args: &InfoArgs, guest: &Guest) -> Result<()> {
    let image = guest.image();
    let ram = image.memory.ram();
    let cpus: Vec<_> = image
        .cpus
        .iter()
        .map(|c| {
            let mode = PagingMode::from_state(c);
            (c, mode)
        })
        .collect();
    let osrelease = image.vmcoreinfo_get("OSRELEASE");
    let scan = guest.kernels();
    let selected = match &args.kernel {
        Some(sel) => Some(
            scan.select(*sel, &image.cpus)
                .map_err(|e| crate::source::naming(e, &args.input.input))?,
        ),
        None => None,
    };
    let layout_of = |k: &guestcore::Kernel| match &k.layout {
        Ok(l) => json!({"index": k.index, "release": k.release, "role": k.role.name(),
            "root": hex(l.root), "mode": l.mode.name(), "phys_base": hex(l.phys_base),
            "kaslr_offset": hex(l.kaslr_offset)}),
        Err(e) => {
            json!({"index": k.index, "release": k.release, "role": k.role.name(), "layout_error": e.to_string()})
        }
    };
    let kernels = &scan.kernels;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = InfoJson {
            file: args.input.input.to_string(),
            format: image.format.to_string(),
            ram: RamJson {
                ranges: RangesJson(ram),
                total: ram.total(),
            },
            cpus: json!(cpus.iter().map(|(c, m)| cpu_json(c, m)).collect::<Vec<_>>()),
            notes: json!(image.notes.iter().map(|n| json!({"name": n.name_str(), "type": n.n_type, "size": n.desc.len()})).collect::<Vec<_>>()),
            osrelease,
            kernels: json!(kernels.iter().map(|k| json!({
                "index": k.index, "release": k.release, "role": k.role.name(), "cpus": k.cpus,
            })).collect::<Vec<_>>()),
            kernel: selected.map(layout_of),
            migration: image.migration.as_ref().map(|m| json!({
                "machine": m.machine,
                "capabilities": m.capabilities,
                "vmdesc": m.vmdesc,
                "vmcoreinfo_paddr": m.vmcoreinfo_paddr.map(hex),
                "data_pages": m.stats.data_pages,
                "zero_pages": m.stats.zero_pages,
                "index_runs": m.stats.runs,
                "blocks": m.blocks.iter().map(|b| json!({
                    "name": b.block.name,
                    "length": b.block.length,
                    "phys": b.phys.iter().map(|r| json!({"start": hex(r.start), "end": hex(r.end)})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })),
        };
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "file:     {}", args.input.input)?;
    writeln!(out, "format:   {}", image.format)?;
    if let Some(m) = &image.migration {
        writeln!(out, "machine:  {}", m.machine)?;
        writeln!(out, "blocks:   {} RAM blocks", m.blocks.len())?;
        for b in &m.blocks {
            let at = if b.phys.is_empty() {
                "not placed".to_string()
            } else {
                b.phys
                    .iter()
                    .map(|r| format!("{:#x}-{:#x}", r.start, r.end))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(out, "  {:<32} {:>#12x}  {at}", b.block.name, b.block.length)?;
        }
        if !m.vmdesc {
            writeln!(out, "  (no vmdesc in the stream: no CPU state)")?;
        }
    }
    writeln!(
        out,
        "RAM:      {} bytes ({} MiB) in {} ranges",
        ram.total(),
        ram.total() >> 20,
        ram.ranges().len()
    )?;
    for r in ram.ranges() {
        writeln!(out, "  {:016x}-{:016x} {:016x}", r.start, r.end, r.len())?;
    }
    writeln!(out, "vCPUs:    {}", cpus.len())?;
    for (c, m) in &cpus {
        writeln!(out, "  {}", cpu_line(c, m))?;
    }
    writeln!(out, "notes:    {}", image.notes.len())?;
    for n in &image.notes {
        writeln!(
            out,
            "  {:<12} type {:<3} {} bytes",
            n.name_str(),
            n.n_type,
            n.desc.len()
        )?;
    }
    if let Some(rel) = osrelease {
        writeln!(out, "OSRELEASE: {rel}")?;
    }
    writeln!(
        out,
        "kernels:  {} (guestcore kernels INPUT for their page tables)",
        kernels.len()
    )?;
    for k in kernels {
        let cpus: Vec<String> = k.cpus.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "  kernel {}: {} ({}){}",
            k.index,
            k.release,
            k.role.name(),
            match (cpus.is_empty(), k.role) {
                (true, _) => String::new(),
                // The CPUs a crash stopped keep the crashed kernel's tables; the capture
                // kernel runs on the one that crashed.
                (false, guestcore::KernelRole::Crashed) => format!(
                    ", vCPU {} parked in it since the crash (not running it)",
                    cpus.join(", ")
                ),
                (false, _) => format!(", run by vCPU {}", cpus.join(", ")),
            }
        )?;
    }
    if let Some(k) = selected {
        match &k.layout {
            Ok(l) => writeln!(
                out,
                "kernel {} ({}, {}): page tables at {:#x}, {}; phys_base {:#x}, KASLR offset {:#x}",
                k.index,
                k.release,
                k.role.name(),
                l.root,
                l.mode.name(),
                l.phys_base,
                l.kaslr_offset
            )?,
            Err(e) => writeln!(
                out,
                "kernel {} ({}): no page-table root: {e}",
                k.index, k.release
            )?,
        }
    }
    for k in kernels
        .iter()
        .filter(|k| k.role == guestcore::KernelRole::Crashed)
    {
        writeln!(
            out,
            "A crashed kernel is in memory: kernel {} ({}), described by the kdump core header at {:#x}. `--kernel crashed` walks its page tables; `dump --paging --kernel crashed` writes a core of it.",
            k.index,
            k.release,
            k.crash.as_ref().map_or(0, |c| c.addr)
        )?;
    }
    Ok(())
}
