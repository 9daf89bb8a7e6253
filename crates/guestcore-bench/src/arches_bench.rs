//! The same jobs on guests of two architectures: is guestcore as fast, relative to its peers, on
//! an aarch64 guest as on an x86_64 guest of the same size?
//!
//! Each capture directory holds QEMU's physical dump of a stopped harness guest (`phys.elf`) and
//! QEMU's own `dump-guest-memory` durations on that guest (`timings.txt`, from
//! `scripts/bench_qemu_dump.py OUT REPS GUEST`). For each capture, one process per run, the
//! tools alternating run by run so drift hits every column alike:
//! - `cp` of phys.elf (the floor for writing that much), and `cp` then `sync` of the copy (the
//!   same floor with guestcore's promise that the output is on disk);
//! - `guestcore dump` (physical ELF) and `guestcore dump --paging` (walk + paging ELF);
//! - `guestcore mem` to /dev/null (find the view, walk, list every mapping): the walk.
//!
//! Each guestcore time is divided by each peer's: `cp`, `cp + sync` and QEMU's physical dump
//! (`paging=false`; QEMU 10's
//! `paging=true` is x86-only and writes the physical dump again on aarch64, so it is no peer
//! there; QEMU writes from guest RAM without `fsync`, guestcore from a file with it). The last
//! table divides each aarch64 ratio by the same x86_64 ratio: 1.00 means
//! guestcore keeps the same pace against its peers on both.
//!
//! An aarch64 core from QEMU carries no translation registers, so on it `--paging` and `mem`
//! first find the kernel and use its tables (`swapper_pg_dir`): that scan is part of what they
//! cost there, as it is for any user of such a core.

use guestcore_bench::measure::{median, mib, ms, ratio, run_child};
use guestcore_bench::table::Table;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The timed tools, in run order.
const TOOLS: [&str; 5] = [
    "cp",
    "cp + sync",
    "guestcore dump",
    "guestcore dump --paging",
    "guestcore mem",
];
/// The first of guestcore's tools in [`TOOLS`]; the ones before it are the peers.
const FIRST_OURS: usize = 2;

/// What one capture measured: medians per tool, QEMU's physical dump, peak RSS per tool.
struct Measured {
    name: String,
    size: u64,
    median: Vec<Duration>,
    qemu_phys: Option<Duration>,
    rss_kib: Vec<u64>,
}

impl Measured {
    /// guestcore's tools against each peer: `cp`, `cp + sync` and QEMU's physical dump.
    fn ratios(&self) -> Vec<(String, Option<f64>)> {
        let ours = || TOOLS.iter().zip(&self.median).skip(FIRST_OURS);
        let mut v = Vec::new();
        for (peer, peer_time) in TOOLS.iter().zip(&self.median).take(FIRST_OURS) {
            for (tool, t) in ours() {
                v.push((
                    format!("{tool} / {peer}"),
                    Some(secs(*t) / secs(*peer_time)),
                ));
            }
        }
        for (tool, t) in ours() {
            v.push((
                format!("{tool} / QEMU physical dump"),
                self.qemu_phys.map(|q| secs(*t) / secs(q)),
            ));
        }
        v
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

fn command(tool: &str, cli: &Path, input: &Path, out: &Path) -> Command {
    let mut c = match tool {
        "cp" => {
            let mut c = Command::new("cp");
            c.arg(input).arg(out);
            c
        }
        // guestcore's dumps end with fsync (an output is whole on disk before it is renamed
        // into place); this is cp with the same promise.
        "cp + sync" => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("cp \"$1\" \"$2\" && sync \"$2\"")
                .arg("sh")
                .arg(input)
                .arg(out);
            c
        }
        "guestcore dump" | "guestcore dump --paging" => {
            let mut c = Command::new(cli);
            c.args(["--quiet", "dump", "--force"])
                .arg(input)
                .arg("-o")
                .arg(out);
            if tool.ends_with("--paging") {
                c.arg("--paging");
            }
            c
        }
        _ => {
            let mut c = Command::new(cli);
            c.args(["--quiet", "mem"]).arg(input);
            c
        }
    };
    c.stdout(Stdio::null());
    c
}

fn measure(cli: &Path, dir: &Path, reps: usize, work: &Path) -> Res<Measured> {
    let input = dir.join("phys.elf");
    let size = std::fs::metadata(&input)
        .map_err(|e| format!("{}: {e}", input.display()))?
        .len();
    let out = work.join("arches-out.elf");
    let mut times = vec![Vec::new(); TOOLS.len()];
    let mut rss = vec![0u64; TOOLS.len()];
    for _ in 0..reps {
        for (k, tool) in TOOLS.iter().enumerate() {
            let _ = std::fs::remove_file(&out);
            let r = run_child(&mut command(tool, cli, &input, &out))?;
            if !r.status.success() {
                return Err(format!("{tool} on {} failed: {}", input.display(), r.status).into());
            }
            times[k].push(r.wall);
            rss[k] = rss[k].max(r.max_rss_kib);
        }
    }
    let _ = std::fs::remove_file(&out);
    Ok(Measured {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        median: times.iter().map(|v| median(v)).collect(),
        qemu_phys: qemu_phys(dir),
        rss_kib: rss,
    })
}

/// The median of QEMU's `dump-phys-N` lines in the capture's timings.txt.
fn qemu_phys(dir: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(dir.join("timings.txt")).ok()?;
    let v: Vec<Duration> = text
        .lines()
        .filter_map(|l| l.strip_prefix("dump-phys-"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    (!v.is_empty()).then(|| median(&v))
}

/// The tables for `captures`: the first is the reference (x86_64), every other is compared
/// with it.
pub fn arches_table(cli: &Path, captures: &[PathBuf], reps: usize, work: &Path) -> Res<()> {
    std::fs::create_dir_all(work)?;
    let measured = captures
        .iter()
        .map(|d| measure(cli, d, reps, work))
        .collect::<Res<Vec<_>>>()?;
    println!(
        "## The same jobs on each architecture (same run, one process per run, tools \
         alternating; medians of {reps} ms)\n"
    );
    let mut head = vec!["capture", "phys.elf MiB", "QEMU physical dump"];
    head.extend(TOOLS);
    head.push("peak RSS MiB (dump, paging, mem)");
    let mut t = Table::new(&head);
    for m in &measured {
        let mut row = vec![
            m.name.clone(),
            format!("{:.0}", m.size as f64 / (1u64 << 20) as f64),
            m.qemu_phys.map(ms).unwrap_or_else(|| "–".into()),
        ];
        row.extend(m.median.iter().map(|d| ms(*d)));
        row.push(format!(
            "{}, {}, {}",
            mib(m.rss_kib[FIRST_OURS]),
            mib(m.rss_kib[FIRST_OURS + 1]),
            mib(m.rss_kib[FIRST_OURS + 2])
        ));
        t.row(row);
    }
    println!("{}", t.render());

    let Some((base, others)) = measured.split_first() else {
        return Ok(());
    };
    // Every capture's ratios come in the same order (one per peer and tool).
    let other_ratios: Vec<Vec<(String, Option<f64>)>> =
        others.iter().map(Measured::ratios).collect();
    let mut head = vec!["ratio".to_string(), base.name.clone()];
    for m in others {
        head.push(m.name.clone());
        head.push(format!("{} ÷ {}", m.name, base.name));
    }
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_ref);
    let cell = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into());
    for (k, (name, b)) in base.ratios().into_iter().enumerate() {
        let mut row = vec![name, cell(b)];
        for ratios in &other_ratios {
            let r = ratios[k].1;
            row.push(cell(r));
            row.push(match (r, b) {
                (Some(r), Some(b)) => format!("{:.2}", r / b),
                _ => "–".into(),
            });
        }
        t.row(row);
    }
    println!("{}", t.render());
    println!(
        "(QEMU's timings: each capture's timings.txt, QEMU dump-guest-memory paging=false on the \
         same stopped guest, just before; {} vs {}: {})\n",
        base.name,
        others
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        others
            .iter()
            .map(|m| match (m.qemu_phys, base.qemu_phys) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "–".into(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
