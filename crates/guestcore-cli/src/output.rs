//! What every subcommand shares about output: quiet mode, notes and warnings on stderr, stdout
//! handling.
//!
//! Two kinds of message go to stderr. A *note* is information (which vCPU was chosen, how long
//! a dump took) and `--quiet` hides it. A *warning* says the output is not what was asked for
//! (a walk cut by a limit, `--paging` written as physical layout, page tables that refer to
//! themselves, vCPUs that disagree in an `--all-cpus` union): it always prints.
//!
//! Listings (`mem`, `tlb`, `kernels`) are written in one of three [`Format`]s straight to
//! stdout: [`json`] holds the streaming JSON writers, [`listings`] the JSON shape of each
//! listing's elements.

pub mod json;
pub mod listings;

use std::io::IsTerminal;

/// How a listing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Lines as QEMU's monitor prints them.
    Text,
    /// One pretty-printed JSON document (`--json`).
    Json,
    /// One compact JSON object per line (`--json-lines`).
    JsonLines,
}

impl Format {
    /// The format the `--json` / `--json-lines` flags ask for (clap keeps them exclusive).
    pub fn of(json: bool, json_lines: bool) -> Self {
        if json_lines {
            Format::JsonLines
        } else if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// Run-wide output settings.
pub struct Context {
    /// `--quiet`: no notes, no progress.
    pub quiet: bool,
}

impl Context {
    pub fn new(quiet: bool) -> Self {
        Context { quiet }
    }

    /// A one-line note on stderr ("using vCPU 0 …"), suppressed by --quiet.
    pub fn note(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("guestcore: {msg}");
        }
    }

    /// A one-line warning on stderr: the output is not what was asked for. Never suppressed.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        eprintln!("guestcore: warning: {msg}");
    }

    /// True when progress bars may be drawn.
    pub fn show_progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }
}

/// The line that opens each vCPU's part of a text listing of several vCPUs
/// (`CPU#1 4-level root 0x1000`).
pub fn write_cpu_heading(
    out: &mut impl std::io::Write,
    cpu: u32,
    mode: &guestcore::PagingMode,
) -> std::io::Result<()> {
    writeln!(out, "CPU#{cpu} {} root {:#x}", mode.kind.name(), mode.root)
}

/// True when the error is a closed stdout (`guestcore tlb … | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What the CLI adds to a library error, in its own flag names: how to give what was missing.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<guestcore::Error>() {
            Some(guestcore::Error::NoCpuState) => Some(NO_CPU_HINT),
            Some(guestcore::Error::OutputExists { .. }) => Some("use --force to overwrite it"),
            Some(guestcore::Error::NoPageArray { .. }) => {
                Some("--kernel N names the kernel whose page array filters the dump")
            }
            _ => None,
        })
}

/// How to give CPU state to an input that has none.
pub const NO_CPU_HINT: &str =
    "give --registers FILE (HMP `info registers -a`) or --mode MODE --cr3 ADDR, or --kernel N";

/// Formats an address as JSON-safe hex text (`"0xffffffff81000000"`): JSON numbers lose
/// precision above 2^53 in most readers (jq, JavaScript). Listings use [`json::Hex`], which
/// writes the same text without allocating.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}
