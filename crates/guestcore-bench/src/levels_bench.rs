//! Filtered kdump dumps: `guestcore dump --format kdump-zlib|kdump-lzo --dump-level 31` against
//! `makedumpfile -c|-l -d 31` (serial, and with `--num-threads 2`) on the same input: a
//! guestcore physical ELF of a real capture (makedumpfile 1.7 cannot read QEMU 10's ELF).
//!
//! One process per run, tools alternating run by run; medians; peak RSS of each tool. guestcore
//! syncs its output before renaming it into place and makedumpfile does not, so the table also
//! times makedumpfile followed by `sync FILE` (the same durability).

use guestcore_bench::measure::{median, mib, ms, ratio, run_child};
use guestcore_bench::table::Table;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Wall time and peak RSS (KiB) of one run, which must succeed.
fn timed(cmd: &mut Command) -> Res<(Duration, u64)> {
    let r = run_child(cmd.stdout(Stdio::null()).stderr(Stdio::null()))?;
    if !r.status.success() {
        return Err(format!("{cmd:?} failed: {}", r.status).into());
    }
    Ok((r.wall, r.max_rss_kib))
}

/// Runs that may fail before one succeeds: makedumpfile 1.7.2 with `--num-threads` now and
/// then aborts (SIGABRT) on the same input it dumps fine the next time.
const TRIES: usize = 3;

/// [`timed`], retried up to [`TRIES`] times; also returns how many runs failed.
fn timed_retrying(make: &dyn Fn() -> Command) -> Res<(Duration, u64, usize)> {
    let mut failed = 0;
    loop {
        match timed(&mut make()) {
            Ok((wall, rss)) => return Ok((wall, rss, failed)),
            Err(e) if failed + 1 < TRIES => {
                eprintln!("{e}; retrying");
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

struct Tool {
    name: String,
    /// Command that writes `out` (removed before each run).
    cmd: Box<dyn Fn(&Path) -> Command>,
    /// Also time `sync out` after it.
    sync: bool,
    walls: Vec<Duration>,
    synced: Vec<Duration>,
    rss: u64,
    size: u64,
    /// Runs that failed and were retried.
    failed: usize,
}

/// The table for each capture directory (those without phys.elf are skipped).
pub fn levels_table(cli: &Path, captures: &[PathBuf], reps: usize, work: &Path) -> Res<()> {
    std::fs::create_dir_all(work)?;
    let mut t = Table::new(&[
        "capture",
        "tool",
        "median",
        "with sync",
        "output MiB",
        "peak RSS MiB",
        "guestcore faster by",
        "size vs guestcore",
    ]);
    for dir in captures {
        let phys = dir.join("phys.elf");
        if !phys.exists() {
            eprintln!("skipping {}: no phys.elf", dir.display());
            continue;
        }
        let input = work.join("levels-input.elf");
        let _ = std::fs::remove_file(&input);
        timed(
            Command::new(cli)
                .args(["dump", "-q"])
                .arg(&phys)
                .arg("-o")
                .arg(&input),
        )?;
        let mut tools: Vec<Tool> = Vec::new();
        for (fmt, flag) in [("zlib", "-c"), ("lzo", "-l")] {
            let (i, c) = (input.clone(), cli.to_path_buf());
            tools.push(Tool {
                name: format!("guestcore kdump-{fmt} -d 31"),
                cmd: Box::new(move |out| {
                    let mut k = Command::new(&c);
                    k.args(["dump", "-q", "--force", "--dump-level", "31", "--format"])
                        .arg(format!("kdump-{fmt}"))
                        .arg(&i)
                        .arg("-o")
                        .arg(out);
                    k
                }),
                sync: false,
                walls: vec![],
                synced: vec![],
                rss: 0,
                size: 0,
                failed: 0,
            });
            for threads in [0, 2] {
                let i = input.clone();
                tools.push(Tool {
                    name: if threads == 0 {
                        format!("makedumpfile {flag} -d 31")
                    } else {
                        format!("makedumpfile {flag} -d 31 --num-threads {threads}")
                    },
                    cmd: Box::new(move |out| {
                        let mut k = Command::new("makedumpfile");
                        k.args([flag, "-d", "31"]);
                        if threads > 0 {
                            k.args(["--num-threads", &threads.to_string()]);
                        }
                        k.arg(&i).arg(out);
                        k
                    }),
                    sync: true,
                    walls: vec![],
                    synced: vec![],
                    rss: 0,
                    size: 0,
                    failed: 0,
                });
            }
        }
        let out = work.join("levels-out.kdump");
        for _ in 0..reps {
            for tool in &mut tools {
                let (wall, rss, failed) = timed_retrying(&|| {
                    let _ = std::fs::remove_file(&out);
                    (tool.cmd)(&out)
                })?;
                tool.failed += failed;
                let mut synced = wall;
                if tool.sync {
                    let (s, _) = timed(Command::new("sync").arg(&out))?;
                    synced += s;
                }
                tool.walls.push(wall);
                tool.synced.push(synced);
                tool.rss = tool.rss.max(rss);
                tool.size = std::fs::metadata(&out)?.len();
            }
        }
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&input);
        // Each guestcore row is followed by its two makedumpfile rows.
        for group in tools.chunks(3) {
            let ours = median(&group[0].walls);
            for tool in group {
                let m = median(&tool.walls);
                let s = median(&tool.synced);
                let is_ours = std::ptr::eq(tool, &group[0]);
                t.row(vec![
                    dir.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    if tool.failed > 0 {
                        format!("{} ({} failed runs retried)", tool.name, tool.failed)
                    } else {
                        tool.name.clone()
                    },
                    format!("{} ms", ms(m)),
                    if tool.sync {
                        format!("{} ms", ms(s))
                    } else {
                        "(synced)".into()
                    },
                    format!("{:.1}", tool.size as f64 / (1 << 20) as f64),
                    mib(tool.rss),
                    if is_ours {
                        "–".into()
                    } else {
                        format!("{} ({} with sync)", ratio(m, ours), ratio(s, ours))
                    },
                    if is_ours {
                        "–".into()
                    } else {
                        format!("{:.2}×", tool.size as f64 / group[0].size.max(1) as f64)
                    },
                ]);
            }
        }
    }
    println!("{}", t.render());
    Ok(())
}
