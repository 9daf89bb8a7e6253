//! The library's one error type. Every variant carries enough context (file, address,
//! what was expected) for the CLI to print a one-line message without guessing.

use std::path::PathBuf;

/// Errors from reading guest memory, decoding CPU state, walking page tables and writing dumps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file or stream. Its text is the context only: the OS error is
    /// its [`source`](std::error::Error::source), so a chain printer (anyhow's `{:#}`) names
    /// each cause once. [`Error::io_message`] gives both in one string.
    #[error("{context}")]
    Io {
        /// What was being done, on what (`reading /path at offset 0x1000`).
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A guest-physical range that is not (entirely) backed by guest memory in this source.
    #[error("physical range {addr:#x}..{end:#x} is not in guest memory", end = addr.saturating_add(*len))]
    NotInMemory {
        /// The range's first guest-physical address.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// An input file whose structure is wrong (truncated, bad magic, inconsistent headers).
    #[error("{path}: {what}", path = path.display())]
    Format {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Registers that describe no valid x86 state.
    #[error("invalid CPU state: {0}")]
    CpuState(String),
    /// Text that could not be parsed (an address, a size, HMP output, a layout).
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// The kind of text (`address`, `size`, `HMP registers` …).
        what: &'static str,
        /// Why it was refused, quoting the text.
        detail: String,
    },
    /// A virtual address that the page tables do not map.
    #[error("virtual address {vaddr:#x} is not mapped: {why}")]
    NotMapped {
        /// The address.
        vaddr: u64,
        /// Where the walk stopped (the non-present entry, or a reserved bit).
        why: String,
    },
    /// The request cannot be satisfied by this input or this output format.
    #[error("{0}")]
    Unsupported(String),
    /// A structure the guest keeps in its memory (the printk ring, a kdump core header) whose
    /// fields contradict each other: the guest's data is corrupt or not what VMCOREINFO says.
    #[error("the {structure} is corrupt: {detail}")]
    CorruptGuestData {
        /// Which structure (`printk ring buffer`, …).
        structure: &'static str,
        /// What contradicts what, with the values read.
        detail: String,
    },
    /// QEMU answered a QMP command with an error reply.
    #[error("QMP command {command} failed: {class}: {desc}")]
    QmpCommand {
        /// The command sent (`stop`, `query-status`, …).
        command: String,
        /// The reply's `error.class` (`GenericError`, `CommandNotFound`, …).
        class: String,
        /// The reply's `error.desc`: QEMU's message.
        desc: String,
    },
    /// The QMP conversation itself failed: no connection, closed socket, timeout, bad message.
    #[error("QMP {socket}: {what}")]
    Qmp {
        /// The QMP socket's path.
        socket: String,
        /// What went wrong on it.
        what: String,
    },
    /// The operation was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// A bound guestcore keeps, or a field of an output format, that this input or request
    /// would break: the program headers an ELF file can hold, 32-bit ELF fields, the room
    /// reserved for a streamed dump's notes, the bitmaps of a kdump file, the physical
    /// address space.
    #[error("{detail}")]
    Limit {
        /// Which bound.
        bound: &'static str,
        /// What would break it, with the numbers.
        detail: String,
    },
    /// The output file exists and the caller did not ask to replace it.
    #[error("{}: the file exists", path.display())]
    OutputExists {
        /// The output's path.
        path: PathBuf,
    },
    /// A dump level that reads the kernel's page array, and no usable page array.
    #[error("dump level {level} needs the kernel's page array, but {why}; level 1 (zero pages) works without it")]
    NoPageArray {
        /// The dump level asked for.
        level: u8,
        /// Why there is none.
        why: String,
    },
    /// No kernel found in guest memory is the one a selector names.
    #[error("kernel {selector}: {why}; {}", if found.is_empty() {
        "no Linux kernel (VMCOREINFO) was found in this input".to_string()
    } else {
        format!("kernels found: {}", found.join(", "))
    })]
    NoKernel {
        /// What was asked for (`crashed`, `running` or an index), as a selector prints.
        selector: String,
        /// Why no kernel matches.
        why: String,
        /// The kernels found, as `INDEX RELEASE (ROLE)`.
        found: Vec<String>,
    },
    /// The input carries no CPU state (a raw, LiME or AVML image) and the caller gave none:
    /// registers, a paging mode and root, or a kernel found in RAM would do.
    #[error("no CPU state in this input")]
    NoCpuState,
    /// An input file that was cut while it was read through its mapping: truncated (or,
    /// rarely, its storage failed) after it was opened. The bytes read from it since are not
    /// the file's, so the command fails rather than use them (see `phys::mmap`).
    #[error("{}", input_cut_message(path, *len, *now, *offset))]
    InputCut {
        /// The input file.
        path: PathBuf,
        /// Its size when it was opened (what was mapped).
        len: u64,
        /// Its size when the cut was noticed; `None` when it could not be read.
        now: Option<u64>,
        /// The first offset in it whose read faulted, when one did (a parser that failed on
        /// the zeros of a cut file, or a `pread` that read short, saw no fault).
        offset: Option<u64>,
    },
    /// Another error, with what was being done when it happened (the input, the vCPU): its
    /// text is the context only, the error is its [`source`](std::error::Error::source).
    #[error("{context}")]
    Context {
        /// What was being done (`guest.elf: vCPU 0 page tables at 0x1000`).
        context: String,
        /// The error it led to.
        #[source]
        source: Box<Error>,
    },
}

fn input_cut_message(
    path: &std::path::Path,
    len: u64,
    now: Option<u64>,
    offset: Option<u64>,
) -> String {
    let path = path.display();
    let at = offset.map_or(String::new(), |o| format!(" (offset {o:#x} was gone)"));
    match now {
        Some(now) if now < len => {
            format!("{path}: the file shrank from {len} to {now} bytes while it was read{at}")
        }
        _ => format!(
            "{path}: a read through its mapping failed{at}: the file was cut and grown again, \
             or its storage failed"
        ),
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with a context string, usually the file name and the operation.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The whole message with every cause, for callers that print one error without its
    /// chain (`context: OS error` for I/O errors).
    pub fn io_message(&self) -> String {
        match self {
            Error::Io { context, source } => format!("{context}: {source}"),
            e => e.to_string(),
        }
    }

    /// This error, with what was being done when it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// A malformed-input error for `path`.
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            what: what.into(),
        }
    }

    /// A parse error for `what` (e.g. "address").
    pub fn parse(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Parse {
            what,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cause appears once when the chain is printed: the I/O error's text is not repeated
    /// in the context's.
    #[test]
    fn io_error_names_its_cause_once() {
        let e = Error::io("/x", std::io::Error::from(std::io::ErrorKind::NotFound));
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain += &format!(": {s}");
            src = s.source();
        }
        assert_eq!(chain, e.io_message());
        assert_eq!(chain.matches("/x").count(), 1);
        assert_eq!(chain.matches("not found").count(), 1, "{chain}");
    }
}
