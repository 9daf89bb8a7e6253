//! `guestcore mem` as text, `--json` and `--json-lines` on real captures: what the JSON
//! renderings cost over the text listing of the same mappings (goal: `--json` ≤ 1.5× the
//! text's time, peak RSS close to the text's). Output goes to `/dev/null`, so the table times
//! open + walk + merge + rendering, not a terminal.
//!
//! One process per run, the three formats alternating run by run so drift hits every column
//! alike; medians of the wall times, and each format's largest peak RSS (`wait4`) of its runs.

use guestcore_bench::measure::{median, mib, ms, ratio, run_child};
use guestcore_bench::table::Table;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The formats compared, as `mem` flags.
const FORMATS: [(&str, &[&str]); 3] = [
    ("text", &[]),
    ("--json", &["--json"]),
    ("--json-lines", &["--json-lines"]),
];

/// The table for each capture directory (those without phys.elf are skipped).
pub fn listings_table(cli: &Path, captures: &[PathBuf], reps: usize) -> Res<()> {
    let mut t = Table::new(&[
        "capture",
        "mappings",
        "mem (text)",
        "mem --json",
        "json / text",
        "mem --json-lines",
        "lines / text",
        "peak RSS MiB (text, json, lines)",
    ]);
    for dir in captures {
        let phys = dir.join("phys.elf");
        if !phys.exists() {
            eprintln!("skipping {}: no phys.elf", dir.display());
            continue;
        }
        let mem = |flags: &[&str]| {
            let mut c = Command::new(cli);
            c.args(["mem", "-q"]).args(flags).arg(&phys);
            c
        };
        let listing = mem(&[]).stderr(Stdio::null()).output()?;
        if !listing.status.success() {
            return Err(format!("guestcore mem {} failed", phys.display()).into());
        }
        let mappings = listing.stdout.iter().filter(|&&b| b == b'\n').count();
        let mut walls = [vec![], vec![], vec![]];
        let mut rss = [0u64; 3];
        for _ in 0..reps.max(1) {
            for (i, (_, flags)) in FORMATS.iter().enumerate() {
                let r = run_child(mem(flags).stdout(Stdio::null()).stderr(Stdio::null()))?;
                if !r.status.success() {
                    return Err(format!("guestcore mem {flags:?} failed: {}", r.status).into());
                }
                walls[i].push(r.wall);
                rss[i] = rss[i].max(r.max_rss_kib);
            }
        }
        let m: Vec<Duration> = walls.iter().map(|w| median(w)).collect();
        t.row(vec![
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            mappings.to_string(),
            format!("{} ms", ms(m[0])),
            format!("{} ms", ms(m[1])),
            ratio(m[1], m[0]),
            format!("{} ms", ms(m[2])),
            ratio(m[2], m[0]),
            format!("{}, {}, {}", mib(rss[0]), mib(rss[1]), mib(rss[2])),
        ]);
    }
    println!("{}", t.render());
    Ok(())
}
