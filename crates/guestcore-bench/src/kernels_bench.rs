//! `guestcore kernels` and `guestcore dmesg` on real captures, side by side with reading the
//! whole dump once (`cat FILE > /dev/null`, the floor for anything that looks at all of RAM)
//! and with `makedumpfile --dump-dmesg` on the same memory. One process per run, alternating
//! tools run by run so drift hits every column alike; medians.

use guestcore_bench::measure::{median, ms, ratio, run_child};
use guestcore_bench::table::Table;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn timed(cmd: &mut Command) -> Res<Duration> {
    let r = run_child(cmd.stdout(Stdio::null()).stderr(Stdio::null()))?;
    if !r.status.success() {
        return Err(format!("{cmd:?} failed: {}", r.status).into());
    }
    Ok(r.wall)
}

/// The table for each capture directory in `captures` (those without phys.elf are skipped).
pub fn kernels_table(cli: &Path, captures: &[PathBuf], reps: usize, work: &Path) -> Res<()> {
    std::fs::create_dir_all(work)?;
    let mut t = Table::new(&[
        "capture",
        "RAM",
        "read dump once (cat)",
        "guestcore kernels",
        "kernels / read once",
        "guestcore dmesg",
        "makedumpfile --dump-dmesg",
        "dmesg ratio",
    ]);
    let have_md = Command::new("makedumpfile").arg("-v").output().is_ok();
    for dir in captures {
        let phys = dir.join("phys.elf");
        if !phys.exists() {
            eprintln!("skipping {}: no phys.elf", dir.display());
            continue;
        }
        // makedumpfile reads guestcore's ELF (program headers at 64), not QEMU 10's.
        let ours = work.join("kernels-bench.elf");
        let _ = std::fs::remove_file(&ours);
        timed(
            Command::new(cli)
                .args(["dump", "-q"])
                .arg(&phys)
                .arg("-o")
                .arg(&ours),
        )?;
        let (mut cat, mut kern, mut dm, mut md) = (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            cat.push(timed(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("cat '{}' > /dev/null", phys.display())),
            )?);
            kern.push(timed(Command::new(cli).args(["kernels", "-q"]).arg(&phys))?);
            dm.push(timed(Command::new(cli).args(["dmesg", "-q"]).arg(&phys))?);
            if have_md {
                let log = work.join("kernels-bench.log");
                let _ = std::fs::remove_file(&log);
                md.push(timed(
                    Command::new("makedumpfile")
                        .arg("--dump-dmesg")
                        .arg(&ours)
                        .arg(&log),
                )?);
            }
        }
        let size = std::fs::metadata(&phys)?.len();
        let (c, k, d, m) = (median(&cat), median(&kern), median(&dm), median(&md));
        t.row(vec![
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            format!("{} MiB", size >> 20),
            format!("{} ms", ms(c)),
            format!("{} ms", ms(k)),
            ratio(k, c),
            format!("{} ms", ms(d)),
            if have_md {
                format!("{} ms", ms(m))
            } else {
                "–".into()
            },
            if have_md {
                format!("{} faster", ratio(m, d))
            } else {
                "–".into()
            },
        ]);
        let _ = std::fs::remove_file(&ours);
    }
    println!("{}", t.render());
    Ok(())
}
