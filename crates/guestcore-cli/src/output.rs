//! What every subcommand shares about output: quiet mode, notes and warnings on stderr, stdout
//! handling.
//!
//! Two kinds of message go to stderr. A *note* is information (which vCPU was chosen, how long
//! a dump took) and `--quiet` hides it. A *warning* says the output is not what was asked for
//! (a walk cut by a limit, `--paging` written as physical layout, page tables that refer to
//! themselves, vCPUs that disagree in an `--all-cpus` union): it always prints.

use std::io::IsTerminal;

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

/// True when the error is a closed stdout (`guestcore tlb … | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Formats an address as JSON-safe hex text (`"0xffffffff81000000"`): JSON numbers lose
/// precision above 2^53 in most readers (jq, JavaScript).
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}
