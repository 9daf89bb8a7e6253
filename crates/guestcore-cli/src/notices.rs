//! The library's notices, rendered as the CLI's stderr lines: notes (hidden by `--quiet`) and
//! warnings (always shown). Where a notice carries data, this is where it gets the CLI's
//! words, flag names included.

use guestcore::FilterReport;
use guestcore::WalkReport;
use guestcore::{NoSnapshot, Notice, SnapshotBlocker, VmcoreinfoFrom};

/// Prints one notice.
/// A background snapshot whose stream waited this long on guestcore is reported as a warning:
/// the guest may have been held up that long, which QEMU's count of its stop does not show.
const SNAPSHOT_WAIT_WARNED: std::time::Duration = std::time::Duration::from_millis(250);

pub fn render(quiet: bool, n: &Notice) {
    let note = |msg: &dyn std::fmt::Display| {
        if !quiet {
            eprintln!("guestcore: {msg}");
        }
    };
    let warn = |msg: &dyn std::fmt::Display| eprintln!("guestcore: warning: {msg}");
    match n {
        Notice::Note(s) => note(s),
        Notice::Warning(s) => warn(s),
        Notice::ChoseCpu { cpu, parked, .. } if !parked.is_empty() => note(&format_args!(
            "using vCPU {cpu}, the first with paging on that runs the running kernel ({}; --kernel crashed for that kernel, --cpu N or --all-cpus to choose)",
            parked
                .iter()
                .map(|(c, k)| format!("vCPU {c} is parked in crashed kernel {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Notice::ChoseCpu { cpu, .. } => note(&format_args!(
            "using vCPU {cpu} (the first with paging on; --cpu N or --all-cpus to choose)"
        )),
        Notice::Walk { cpu, report } => {
            for w in walk_warnings(report) {
                warn(&format_args!("vCPU {cpu}: {w}"));
            }
            if let Some(n) = walk_notes(report) {
                note(&format_args!("vCPU {cpu}: {n}"));
            }
        }
        Notice::Union {
            parts,
            conflicts,
            conflict_bytes,
            first_conflict,
        } => {
            let parts: Vec<String> = parts
                .iter()
                .map(|p| {
                    format!(
                        "vCPU {}: {} mappings, {} MiB",
                        p.cpu,
                        p.mappings,
                        p.bytes >> 20
                    )
                })
                .collect();
            note(&format_args!(
                "paging view from every vCPU, each adding what the ones before it do not map: {}",
                parts.join("; ")
            ));
            if let Some(c) = first_conflict {
                warn(&format_args!(
                    "the vCPUs' page tables disagree on {} virtual ranges ({} KiB): the first vCPU that maps a page wins. First: {:#x}-{:#x} is {:#x} on vCPU {} (kept) but {:#x} on vCPU {} (dropped). Use --cpu N for one vCPU's view",
                    conflicts,
                    conflict_bytes >> 10,
                    c.va,
                    c.va.wrapping_add(c.size - 1),
                    c.kept_pa,
                    c.kept_cpu,
                    c.dropped_pa,
                    c.dropped_cpu
                ));
            }
        }
        Notice::Filter { report, kernel } => render_filter(&note, &warn, report, kernel.as_ref()),
        Notice::ForeignVmcoreinfo { kernel, release } => warn(&format_args!(
            "the input's VMCOREINFO describes kernel {kernel} ({release}), whose tables the walked vCPU does not run: the dump carries no VMCOREINFO (--kernel {kernel} walks that kernel's tables)"
        )),
        Notice::PagingOff { cpu } => warn(&format_args!(
            "vCPU {cpu} has paging off: writing the physical layout, not the --paging view asked for"
        )),
        Notice::NoFilterKernel { kernels } => warn(&format_args!(
            "{kernels} kernels are in memory and no vCPU runs one: name the one to filter by with --kernel N"
        )),
        Notice::UnreadablePages(u) => warn(&format_args!(
            "{} page{} of RAM could not be read while looking for kernels{}: a kernel whose VMCOREINFO is there is not found",
            u.pages,
            if u.pages == 1 { "" } else { "s" },
            u.first
                .as_ref()
                .map(|(a, e)| format!(" (the first at {a:#x}: {e})"))
                .unwrap_or_default()
        )),
        Notice::DumpVmcoreinfo(from) => match from {
            VmcoreinfoFrom::Input => note(&format_args!("VMCOREINFO: the input's own")),
            VmcoreinfoFrom::Ram {
                kernel,
                release,
                addr,
                replaced_input,
            } => note(&format_args!(
                "VMCOREINFO: kernel {kernel}'s ({release}), found in RAM at {addr:#x}{}",
                if *replaced_input {
                    ", not the input's own (another kernel's)"
                } else {
                    " (the input carries none)"
                }
            )),
            VmcoreinfoFrom::None => warn(&format_args!(
                "no Linux kernel found in memory and the input carries no VMCOREINFO: the dump has none (drgn and libkdumpfile need it; --kernel N names one)"
            )),
            _ => {}
        },
        Notice::NoSnapshot(why) => note(&format_args!(
            "no background snapshot: {}; pausing the guest instead (--pause)",
            no_snapshot(why)
        )),
        Notice::Snapshot(report) => {
            // QEMU's count is only its stop: the guest also waits whenever guestcore is away
            // from the stream, so both are said, and a long wait is a warning.
            let away = report.longest_away.as_millis();
            let stop = report
                .downtime_ms
                .map_or("an unreported time".to_string(), |ms| format!("{ms} ms"));
            let line = format_args!(
                "background snapshot: guest stopped {stop} (QEMU's count), and its writes waited on guestcore's reading at most {away} ms; streamed in {:.2} s",
                report.total.as_secs_f64()
            );
            if report.longest_away >= SNAPSHOT_WAIT_WARNED {
                warn(&line);
            } else {
                note(&line);
            }
        }
        Notice::LibvirtTainted { domain } => note(&format_args!(
            "libvirt marks domain {domain} tainted (\"custom monitor control commands issued\", see `virsh dominfo`): guestcore reads it through libvirt's own QEMU monitor; nothing else about the domain changes"
        )),
        other => note(&format_args!("{other:?}")),
    }
}

/// Why a live dump is not taken from a background snapshot, in the CLI's flag names.
fn no_snapshot(why: &NoSnapshot) -> String {
    match why {
        NoSnapshot::Blocked(b) => match b {
            SnapshotBlocker::Flattened => "a flattened kdump stream is written in pfn order",
            SnapshotBlocker::DumpLevel { elf: false } => {
                "--dump-level above 1 reads the page array first"
            }
            SnapshotBlocker::DumpLevel { elf: true } => {
                "--dump-level on an ELF core reads the page array first"
            }
            SnapshotBlocker::PagingKdump => "--paging is for ELF cores",
            SnapshotBlocker::Range => "--begin/--length dump a window, a snapshot all of RAM",
            SnapshotBlocker::Registers => "its registers come from the snapshot itself",
            _ => "the dump asked for is not one a snapshot gives",
        }
        .to_string(),
        NoSnapshot::Refused(why) => why.clone(),
        _ => format!("{why:?}"),
    }
}

/// What a filter leaves out, and what it could not or would not leave out.
fn render_filter(
    note: &dyn Fn(&dyn std::fmt::Display),
    warn: &dyn Fn(&dyn std::fmt::Display),
    r: &FilterReport,
    kernel: Option<&(usize, String)>,
) {
    if let Some(why) = &r.page_array_skipped {
        note(&format_args!(
            "dump level {}: zero pages only, without the kernel's page array ({why})",
            r.level
        ));
    }
    if r.page_array {
        if let Some((index, release)) = kernel {
            note(&format_args!(
                "dump level {}: page array of kernel {index} ({release})",
                r.level
            ));
        }
    }
    let x = &r.excluded;
    let frames = if r.page_size > 4096 {
        format!(
            "4 KiB frames of RAM (the kernel's {} KiB pages kept or left out whole)",
            r.page_size >> 10
        )
    } else {
        "RAM pages".to_string()
    };
    note(&format_args!(
        "dump level {}: leaves out {} of {} {frames} (zero {}, cache {}, cache with private data {}, user data {}, free {}, hwpoison {}, offline {}, past the page array {}); keeps {}",
        r.level,
        x.total(),
        r.ram_frames,
        if r.zero_scanned { x.zero.to_string() } else { "stored once".into() },
        x.cache,
        x.cache_private,
        x.user,
        x.free,
        x.hwpoison,
        x.offline,
        x.beyond_page_array,
        r.kept()
    ));
    if r.outside_page_array > 0 {
        note(&format_args!(
            "{} pages of the input are memory the kernel has no struct page for (firmware, devices): kept",
            r.outside_page_array
        ));
    }
    // Pages kept against what the level asked for, each with why.
    let kept_anyway = [
        (
            r.unclassified,
            "RAM pages have a struct page that cannot be read from the kernel's page array: kept, unclassified",
        ),
        (
            r.protected,
            "pages the kernel needs (page tables, data VMCOREINFO names, notes) are marked excludable by the page array: kept",
        ),
        (
            r.bad_free_orders,
            "free-page heads claim an order past the allocator's: kept",
        ),
    ];
    for (n, why) in kept_anyway {
        if n > 0 {
            warn(&format_args!("{n} {why}"));
        }
    }
}

/// What makes a walk's output differ from what was asked for: a limit cut it short, or the
/// tables refer to themselves (their leaves map page tables, often one page many times).
fn walk_warnings(r: &WalkReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stop) = r.stopped {
        use guestcore::StopReason;
        let flag = match stop {
            StopReason::EntryLimit => "--max-entries",
            StopReason::LeafLimit => "--max-leaves",
            StopReason::MappingLimit => "--max-mappings",
        };
        out.push(format!(
            "walk stopped early ({flag} limit) after {} entries and {} leaves: everything above the last address listed is left out (raise {flag})",
            r.entries_visited, r.leaves
        ));
    }
    if r.self_references > 0 {
        let frames = if r.loop_frames >= guestcore::limits::LOOP_FRAMES_COUNTED {
            format!("at least {}", r.loop_frames)
        } else {
            r.loop_frames.to_string()
        };
        out.push(format!(
            "the page tables refer to themselves ({} entries point at the root or at a table above them): {} leaves alias {frames} physical pages (page tables mapped as memory)",
            r.self_references, r.loop_leaves
        ));
    }
    out
}

/// Facts about a walk worth a note: entries the CPU would not follow either.
fn walk_notes(r: &WalkReport) -> Option<String> {
    let mut parts = Vec::new();
    if r.tables_outside_ram > 0 {
        parts.push(format!(
            "{} table pointers outside guest RAM skipped",
            r.tables_outside_ram
        ));
    }
    if r.reserved_entries > 0 {
        parts.push(format!(
            "{} entries with reserved bits skipped",
            r.reserved_entries
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
