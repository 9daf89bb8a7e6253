//! An outside program's view of guestcore: open a saved guest (a QEMU migration file, a
//! `virsh save` image, or any other input), list the Linux kernels in its memory, and write a
//! kdump-zstd file of the kernel that crashed (the one a kdump capture kernel was started
//! for), with that kernel's VMCOREINFO and the registers it saved at the crash, so crash and
//! drgn open it as that kernel's vmcore.
//!
//! ```text
//! cargo run -p guestcore --example crashed_kernel_kdump -- guest.mig crashed.kdump
//! ```

use guestcore::{
    Compression, DumpFormat, DumpOutcome, DumpSpec, Guest, GuestOptions, KernelSelector, Notice,
    ViewSpec,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: crashed_kernel_kdump INPUT OUT.kdump".into());
    };
    // A file path is always a file: `Guest::open` takes a `Path` as `Input::File`.
    let opts = GuestOptions::default().with_notices(|n| {
        if let Notice::Warning(w) = n {
            eprintln!("warning: {w}");
        }
    });
    let mut guest = Guest::open(std::path::Path::new(&input), &opts)?;
    println!("{}: {}", input.to_string_lossy(), guest.image().format);

    let scan = guest.kernels();
    for k in &scan.kernels {
        println!("kernel {}: {} ({})", k.index, k.release, k.role.name());
    }
    // The crashed kernel's own page tables; an error names the kernels found when there is
    // no crashed one (a guest that never crashed).
    let view = guest.select(&ViewSpec::Kernel(KernelSelector::Crashed), None)?;

    let spec = DumpSpec::new(output, DumpFormat::Kdump(Compression::Zstd));
    match guest.dump(&view, &spec, &guestcore::NoProgress)? {
        DumpOutcome::Kdump(k) => println!(
            "wrote {}: {} pages, {} bytes",
            spec.output.display(),
            k.summary.dumped_pages,
            k.summary.bytes_written
        ),
        other => println!("wrote {other:?}"),
    }
    Ok(())
}
