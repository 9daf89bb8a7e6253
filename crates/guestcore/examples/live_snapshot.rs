//! An outside program's view of guestcore: a consistent dump of a running QEMU guest with the
//! guest stopped for milliseconds. guestcore asks QEMU for a background snapshot over its QMP
//! socket and writes each page as it streams, so no copy of the guest's RAM is held; where QEMU
//! cannot take one, the guest is paused while its RAM is copied instead, and a notice says why.
//!
//! ```text
//! qemu-system-x86_64 ... -qmp unix:/tmp/vm.qmp,server=on,wait=off &
//! cargo run -p guestcore --example live_snapshot -- /tmp/vm.qmp vm.elf
//! ```

use guestcore::{
    DumpFormat, DumpOutcome, DumpSpec, ElfClass, Guest, GuestOptions, Input, Notice, ViewSpec,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(socket), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: live_snapshot QMP_SOCKET OUT.elf".into());
    };
    let input = Input::Qmp(socket.into());
    let opts = GuestOptions::default().with_notices(|n| match n {
        Notice::Snapshot(r) => eprintln!(
            "background snapshot: guest stopped {:?} ms, streamed in {:?}",
            r.downtime_ms, r.total
        ),
        Notice::NoSnapshot(why) => eprintln!("no background snapshot ({why:?}): pausing instead"),
        Notice::Warning(w) => eprintln!("warning: {w}"),
        _ => {}
    });
    // A physical ELF core of all RAM; `DumpSpec::live` stays `LiveCapture::Auto`.
    let spec = DumpSpec::new(output, DumpFormat::Elf(ElfClass::Elf64));
    let outcome = Guest::dump_input(
        &input,
        &opts,
        &ViewSpec::FirstPaging,
        None,
        &spec,
        &guestcore::NoProgress,
    )?;
    if let DumpOutcome::Elf { summary, .. } = outcome {
        println!(
            "wrote {}: {} PT_LOADs, {} bytes",
            spec.output.display(),
            summary.segments,
            summary.file_size
        );
    }
    Ok(())
}
