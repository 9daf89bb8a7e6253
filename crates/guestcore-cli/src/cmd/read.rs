//! `guestcore read`: guest bytes through the page tables (or physical with --phys), as a
//! hexdump on a terminal and raw bytes when piped or written to a file.

use crate::output::Context;
use crate::source::{num, SourceArgs};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Reads larger than this are refused unless written to a file.
const MAX_TERMINAL: u64 = 1 << 20;

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Start address (virtual, or physical with --phys).
    #[arg(value_parser = num)]
    addr: u64,
    /// Number of bytes.
    #[arg(value_parser = num)]
    len: u64,
    /// ADDR is guest-physical.
    #[arg(long)]
    phys: bool,
    /// Write raw bytes to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    force: bool,
}

pub fn run(ctx: &Context, args: ReadArgs) -> Result<()> {
    let src = args.source.open_with(ctx, !args.phys)?;
    let stdout = std::io::stdout();
    let hexdump = args.output.is_none() && stdout.is_terminal();
    if hexdump && args.len > MAX_TERMINAL {
        bail!(
            "refusing to print {} bytes to a terminal; use -o FILE or a pipe",
            args.len
        );
    }
    let len = usize::try_from(args.len).context("length too large")?;
    let mut buf = vec![0u8; len];
    if args.phys {
        src.guest.read_phys(args.addr, &mut buf)?;
    } else {
        src.guest
            .read_virt(&src.view.selected[0], args.addr, &mut buf)?;
    }
    // The page tables and bytes came from the input as it was opened, or this is an error.
    src.guest.intact()?;
    if let Some(path) = &args.output {
        if path.as_os_str() != "-" && crate::stream_target::kind(path)?.is_some() {
            // A FIFO or a character device: the bytes go into it (it is never replaced).
            let mut out = crate::stream_target::open(path)?;
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .with_context(|| path.display().to_string())?;
            return Ok(());
        }
        let opts = guestcore::OutputOptions { force: args.force };
        let mut out = guestcore::create_output(path, &opts)
            .map_err(|e| crate::source::naming(e, &path.display()))?;
        out.write_all(&buf)
            .with_context(|| path.display().to_string())?;
        out.commit()
            .map_err(|e| crate::source::naming(e, &path.display()))?;
        return Ok(());
    }
    let mut out = stdout.lock();
    if hexdump {
        out.write_all(hexdump_text(args.addr, &buf).as_bytes())?;
    } else {
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(())
}

/// `hexdump -C` style lines, addressed from `base`.
pub fn hexdump_text(base: u64, bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(s, "{:016x}  ", base.wrapping_add(i as u64 * 16));
        for j in 0..16 {
            match line.get(j) {
                Some(b) => {
                    let _ = write!(s, "{b:02x} ");
                }
                None => s.push_str("   "),
            }
            if j == 7 {
                s.push(' ');
            }
        }
        s.push_str(" |");
        s.extend(line.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        s.push_str("|\n");
    }
    s
}
