//! Dumps of a running QEMU guest from a background snapshot: one instant, with the guest
//! stopped for milliseconds, and no copy of its RAM (see [`crate::live_dump`]).
//!
//! This is the one dump that does not start from an opened [`Guest`]: opening a live guest
//! reads its registers (and pauses it, with `pause`), while a snapshot takes registers, memory
//! and VMCOREINFO from the snapshot's own instant.

use super::{DumpLayoutSpec, DumpSpec, Guest, GuestOptions};
use crate::dump::OutputOptions;
use crate::live_dump::{dump_snapshot, LiveDump};
use crate::progress::Progress;
use crate::qmp::LiveSession;
use crate::Result;
use std::path::Path;

impl Guest {
    /// Writes `spec`'s dump of the guest behind the QMP socket `socket` from a QEMU background
    /// snapshot. [`LiveDump::Unavailable`] (nothing written, the guest untouched) says why when
    /// the spec needs more than a snapshot gives ([`DumpSpec::snapshot_blocker`]) or QEMU or
    /// the host cannot take one; a caller then opens the guest with a pause instead.
    ///
    /// ```no_run
    /// use guestcore::live_dump::LiveDump;
    /// use guestcore::progress::NoProgress;
    /// use guestcore::{DumpFormat, DumpSpec, ElfClass, Guest, GuestOptions, ViewSpec};
    /// use std::path::Path;
    ///
    /// # fn main() -> guestcore::Result<()> {
    /// let socket = Path::new("/run/qemu/vm1.qmp");
    /// let spec = DumpSpec::new("vm1.elf", DumpFormat::Elf(ElfClass::Elf64));
    /// let opts = GuestOptions::default();
    /// match Guest::dump_running(socket, &opts, &spec, &NoProgress)? {
    ///     LiveDump::Written { snapshot, .. } => println!("written: {snapshot:?}"),
    ///     LiveDump::Unavailable(why) => {
    ///         // No snapshot: pause the guest, copy its RAM, resume it, then dump.
    ///         eprintln!("no background snapshot ({why}): pausing the guest instead");
    ///         let mut guest = Guest::open(format!("qmp:{}", socket.display()), &opts)?;
    ///         let view = guest.select(&ViewSpec::FirstPaging, None)?;
    ///         guest.dump(&view, &spec, &NoProgress)?;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn dump_running(
        socket: &Path,
        opts: &GuestOptions,
        spec: &DumpSpec,
        progress: &dyn Progress,
    ) -> Result<LiveDump> {
        if let Some(why) = spec.snapshot_blocker() {
            return Ok(LiveDump::Unavailable(why.into()));
        }
        let mut session = LiveSession::connect_running(socket, &opts.live)
            .map_err(|e| e.context(format!("connecting to {}", socket.display())))?;
        let output = OutputOptions { force: spec.force };
        dump_snapshot(
            &mut session,
            &spec.output,
            &output,
            spec.format,
            spec.level,
            (spec.layout == DumpLayoutSpec::Paging).then_some(opts.limits),
            progress,
        )
        .map_err(|e| e.context("dumping a background snapshot"))
    }
}
