//! `guestcore`: read the memory of an x86 or AArch64 virtual machine the way a debugger wants it.
//!
//! One module per subcommand under `cmd/`; `source` turns the common arguments into guest
//! memory plus the chosen vCPU(s) and paging mode; `progress` adapts the library's progress
//! events to an indicatif bar. Errors print as one line and exit with status 1.

mod cmd;
mod notices;
mod output;
mod progress;
mod source;
mod stream_target;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Turn the memory of an x86 or AArch64 virtual machine into something a debugger can read.
///
/// INPUT is any of:
///   a QEMU `dump-guest-memory` ELF core, or a kdump /proc/vmcore ELF file;
///   a kdump-compressed file (QEMU's or makedumpfile's, plain or flattened);
///   a QEMU migration stream (`migrate file:`, mapped-ram, background snapshots) or a
///   `virsh save` image around one;
///   a LiME or AVML (snappy) memory image;
///   a raw guest-physical memory image (`--layout` places it);
///   `qmp:SOCKET`, a running QEMU reached through its QMP socket (see --pause/--no-pause);
///   `libvirt:DOMAIN`, a running QEMU started by libvirt, through libvirt's own monitor
///   (a name, UUID or id; --connect URI, default LIBVIRT_DEFAULT_URI, else qemu:///system).
/// LiME, AVML and raw images carry no CPU state: give it with --registers or --mode/--cr3,
/// or use a kernel found in RAM (--kernel).
/// Addresses and sizes accept decimal, 0x hex and K/M/G/T suffixes (powers of 1024).
#[derive(Parser, Debug)]
#[command(
    name = "guestcore",
    version,
    propagate_version = true,
    verbatim_doc_comment
)]
struct Cli {
    /// No progress bars or notes on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe an input: format, RAM ranges, vCPUs and their paging modes, notes.
    Info(cmd::info::InfoArgs),
    /// List merged virtual→physical ranges with permissions, like QEMU's `info mem`.
    Mem(cmd::mem::MemArgs),
    /// List every page-table leaf with its flags, like QEMU's `info tlb`.
    Tlb(cmd::tlb::TlbArgs),
    /// Translate a virtual address to a physical one, like QEMU's `gva2gpa`.
    Translate(cmd::translate::TranslateArgs),
    /// Read guest memory through the page tables (or physically with --phys).
    Read(cmd::read::ReadArgs),
    /// Write a core dump (ELF physical or --paging, or kdump); a live QEMU from a background snapshot
    Dump(cmd::dump::DumpArgs),
    /// List the Linux kernels in guest memory (VMCOREINFO, kdump core headers) and their roles.
    Kernels(cmd::kernels::KernelsArgs),
    /// Print a kernel's log from its printk ring buffer (as makedumpfile --dump-dmesg does).
    Dmesg(cmd::dmesg::DmesgArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = output::Context::new(cli.quiet);
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(&ctx, a),
        Command::Mem(a) => cmd::mem::run(&ctx, a),
        Command::Tlb(a) => cmd::tlb::run(&ctx, a),
        Command::Translate(a) => cmd::translate::run(&ctx, a),
        Command::Read(a) => cmd::read::run(&ctx, a),
        Command::Dump(a) => cmd::dump::run(&ctx, a),
        Command::Kernels(a) => cmd::kernels::run(&ctx, a),
        Command::Dmesg(a) => cmd::dmesg::run(&ctx, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            match output::hint(&e) {
                Some(hint) => eprintln!("guestcore: {e:#}; {hint}"),
                None => eprintln!("guestcore: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
