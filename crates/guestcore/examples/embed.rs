//! How a third-party tool uses guestcore as a library: open any input, name its vCPUs and
//! kernels, walk one vCPU's tables, translate and read virtual memory, and write a dump.
//!
//! ```text
//! cargo run --example embed -p guestcore -- GUEST.elf [OUT.kdump]
//! ```

use guestcore::{Compression, DumpFormat, DumpSpec, Guest, GuestOptions, Input, Notice, ViewSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let input = args.next().ok_or("usage: embed INPUT [OUT.kdump]")?;
    let output = args.next();

    let mut guest = Guest::open(Input::parse(&input), &GuestOptions::default())?;
    // The facade never prints; its choices and warnings arrive here.
    guest.on_notice(|n| match n {
        Notice::Warning(w) => eprintln!("warning: {w}"),
        other => eprintln!("note: {other:?}"),
    });

    println!("format: {:?}", guest.image().format);
    println!("RAM: {} bytes", guest.memory().ram().total());
    for cpu in guest.cpus() {
        println!(
            "vCPU {} ({:?}): paging {}",
            cpu.index(),
            cpu.arch(),
            cpu.paging_enabled()
        );
    }
    for k in &guest.kernels().kernels {
        println!("kernel {}: {} ({})", k.index, k.release, k.role.name());
    }

    let view = guest.select(&ViewSpec::FirstPaging, None)?;
    if let Ok(sel) = view.first() {
        let (mappings, report) = guest.mappings(sel)?;
        println!(
            "vCPU {}: {} mappings from {} page-table entries",
            sel.cpu.index(),
            mappings.len(),
            report.entries_visited
        );
        if let Some(m) = mappings.iter().find(|m| m.is_ram()) {
            let t = guest.translate(sel, m.va.0)?;
            let mut first = [0u8; 16];
            guest.read_virt(sel, m.va.0, &mut first)?;
            println!("{:#x} -> {:#x}: {:02x?}", m.va.0, t.paddr, first);
        }
    }

    if let Some(out) = output {
        let spec = DumpSpec::new(out, DumpFormat::Kdump(Compression::Zstd));
        let outcome = guest.dump(&view, &spec, &guestcore::NoProgress)?;
        println!("wrote {outcome:?}");
    }
    Ok(())
}
