//! `guestcore-bench`: runs guestcore and its peers side by side on the same inputs and prints
//! Markdown tables of medians and ratios. See the crate README ("Performance") and
//! `scripts/bench.sh`.

use clap::{Parser, Subcommand};
use guestcore::dump::DumpLayout;
use guestcore::image::{GuestImage, OpenOptions};
use guestcore::mapping::MappingList;
use guestcore::paging::{PagingMode, WalkLimits};
use guestcore::phys::PhysMemory;
use guestcore_bench::inputs::{linux_guest, mapping_guest, write_core, FilledMemory};
use guestcore_bench::measure::{
    median, mib, ms, proc_status_kib, ratio, reset_peak_rss, run_child, time_reps,
};
use guestcore_bench::table::Table;

mod arches_bench;
mod kernels_bench;
mod levels_bench;
mod listings_bench;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// The x86_64 capture of the real-guest harness: `$GUESTCORE_CACHE/captures/x86_64`, the
/// cache defaulting to `~/.cache/guestcore/guests` as in `scripts/guest/fetch.sh`.
fn default_capture() -> PathBuf {
    let cache = std::env::var_os("GUESTCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("guestcore/guests")
        });
    cache.join("captures/x86_64")
}

#[derive(Parser, Debug)]
#[command(name = "guestcore-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Walk + mapping list: guestcore vs memflow (with feature `peers`) on Linux-like guests and
    /// a real QEMU capture; the walk share of QEMU's paging dump.
    Walk {
        /// Guest RAM sizes in MiB.
        #[arg(long, value_delimiter = ',', default_value = "256,4096,16384")]
        sizes: Vec<u64>,
        /// Repetitions per measurement (fewer for slow peers: at most ~10 s each).
        #[arg(long, default_value_t = 11)]
        reps: usize,
        /// A capture directory with phys.elf (and timings.txt from QEMU).
        #[arg(long, default_value_os_t = default_capture())]
        capture: PathBuf,
    },
    /// How walk time and memory grow: one child process per input, peak RSS of each.
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "256,4096,16384")]
        sizes: Vec<u64>,
        #[arg(long, value_delimiter = ',', default_value = "1000,100000,10000000")]
        maps: Vec<u64>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// ELF dumps: `guestcore dump` (physical, --paging) vs `cp` of the same file vs QEMU, and the
    /// peak RSS of dumping a 16 GiB sparse guest.
    Dump {
        /// The `guestcore` CLI binary (release build).
        #[arg(long, default_value = "target/release/guestcore")]
        cli: PathBuf,
        #[arg(long, default_value_os_t = default_capture())]
        capture: PathBuf,
        /// Scratch directory for outputs and the generated image (same file system as inputs
        /// is best).
        #[arg(long, default_value = "target/bench-work")]
        workdir: PathBuf,
        /// Size of the generated, filled image in MiB.
        #[arg(long, default_value_t = 1024)]
        gen_mib: u64,
        /// RAM of the sparse guest whose dump RSS is measured, MiB.
        #[arg(long, default_value_t = 16384)]
        sparse_mib: u64,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// `guestcore kernels` and `dmesg` on real captures vs reading the dump once and
    /// makedumpfile --dump-dmesg.
    Kernels {
        /// The `guestcore` CLI binary (release build).
        #[arg(long, default_value = "target/release/guestcore")]
        cli: PathBuf,
        /// Capture directories (default: the x86_64 and kdump captures of the harness).
        #[arg(long, value_delimiter = ',')]
        captures: Vec<PathBuf>,
        #[arg(long, default_value_t = 7)]
        reps: usize,
        #[arg(long, default_value = "target/bench-work")]
        workdir: PathBuf,
    },
    /// `dump --dump-level 31` to kdump-zlib/LZO vs `makedumpfile -c/-l -d 31` on real captures.
    Levels {
        /// The `guestcore` CLI binary (release build).
        #[arg(long, default_value = "target/release/guestcore")]
        cli: PathBuf,
        /// Capture directories (default: the x86_64 and x86_64-4g captures of the harness).
        #[arg(long, value_delimiter = ',')]
        captures: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long, default_value = "target/bench-work")]
        workdir: PathBuf,
    },
    /// `guestcore mem` as text vs `--json` vs `--json-lines` on real captures (time, peak RSS).
    Listings {
        /// The `guestcore` CLI binary (release build).
        #[arg(long, default_value = "target/release/guestcore")]
        cli: PathBuf,
        /// Capture directories (default: the x86_64 and x86_64-kdump captures of the harness).
        #[arg(long, value_delimiter = ',')]
        captures: Vec<PathBuf>,
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// The same jobs (`cp`, physical and paging dump, `mem`) on an x86_64 and an aarch64 guest
    /// of the same size, each against `cp` and QEMU's physical dump, and the aarch64 ratios
    /// divided by the x86_64 ones.
    Arches {
        /// The `guestcore` CLI binary (release build).
        #[arg(long, default_value = "target/release/guestcore")]
        cli: PathBuf,
        /// Capture directories, the reference first (default: the harness's x86_64 and
        /// aarch64 captures).
        #[arg(long, value_delimiter = ',')]
        captures: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long, default_value = "target/bench-work")]
        workdir: PathBuf,
    },
    /// Internal: one measurement in a fresh process (prints `key=value` lines).
    #[command(hide = true)]
    Probe {
        /// walk-linux | walk-maps | dump-sparse
        what: String,
        /// MiB of RAM, or number of mappings.
        n: u64,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `captures`, or when none were given the harness's capture directories of `guests`.
fn or_harness(captures: Vec<PathBuf>, guests: &[&str]) -> Vec<PathBuf> {
    if !captures.is_empty() {
        return captures;
    }
    let base = default_capture();
    let dir = base.parent().map(Path::to_path_buf).unwrap_or_default();
    guests.iter().map(|g| dir.join(g)).collect()
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Walk {
            sizes,
            reps,
            capture,
        } => walk_table(&sizes, reps, &capture),
        Cmd::Scale { sizes, maps, reps } => scale_table(&sizes, &maps, reps),
        Cmd::Dump {
            cli,
            capture,
            workdir,
            gen_mib,
            sparse_mib,
            reps,
        } => dump_tables(&cli, &capture, &workdir, gen_mib, sparse_mib, reps),
        Cmd::Kernels {
            cli,
            captures,
            reps,
            workdir,
        } => {
            let captures = or_harness(captures, &["x86_64", "x86_64-la57", "x86_64-kdump"]);
            kernels_bench::kernels_table(&cli, &captures, reps, &workdir)
        }
        Cmd::Levels {
            cli,
            captures,
            reps,
            workdir,
        } => {
            let captures = or_harness(captures, &["x86_64", "x86_64-4g"]);
            levels_bench::levels_table(&cli, &captures, reps, &workdir)
        }
        Cmd::Listings {
            cli,
            captures,
            reps,
        } => {
            let captures = or_harness(captures, &["x86_64", "x86_64-kdump"]);
            listings_bench::listings_table(&cli, &captures, reps)
        }
        Cmd::Arches {
            cli,
            captures,
            reps,
            workdir,
        } => {
            let captures = or_harness(captures, &["x86_64", "aarch64"]);
            arches_bench::arches_table(&cli, &captures, reps, &workdir)
        }
        Cmd::Probe { what, n, reps, out } => probe(&what, n, reps, out.as_deref()),
    };
    if let Err(e) = r {
        eprintln!("guestcore-bench: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Repeats `f` at least 3 and at most `reps` times, stopping early after ~10 s.
fn time_bounded<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, usize, T) {
    let start = Instant::now();
    let mut times = Vec::new();
    let mut last;
    loop {
        let (t, r) = time_reps(1, &mut f);
        times.extend(t);
        last = r;
        if times.len() >= reps || (times.len() >= 3 && start.elapsed() > Duration::from_secs(10)) {
            break;
        }
    }
    (median(&times), times.len(), last)
}

/// guestcore's walk + merged mapping list: (leaves, mappings).
fn guestcore_walk(mem: &dyn PhysMemory, mode: &PagingMode) -> (u64, usize) {
    let (list, report) = MappingList::from_walk(mem, mode, WalkLimits::default()).expect("walk");
    (report.leaves, list.len())
}

/// QEMU's dump durations from a capture's timings.txt (`name seconds` lines; medians of
/// repeated `name-N` lines when present).
fn qemu_timings(capture: &Path) -> BTreeMap<String, Duration> {
    let mut all: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let text = std::fs::read_to_string(capture.join("timings.txt")).unwrap_or_default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(secs) = v.parse::<f64>() else { continue };
        // "dump-paging-3" → "dump-paging"
        let key = match k.rsplit_once('-') {
            Some((base, n)) if n.chars().all(|c| c.is_ascii_digit()) => base,
            _ => k,
        };
        all.entry(key.to_string())
            .or_default()
            .push(Duration::from_secs_f64(secs));
    }
    all.into_iter().map(|(k, v)| (k, median(&v))).collect()
}

fn open_capture(capture: &Path) -> Res<(GuestImage, PagingMode)> {
    let img = GuestImage::open(capture.join("phys.elf"), &OpenOptions::default())?;
    let cpu = img
        .cpus
        .iter()
        .find(|c| c.paging_enabled())
        .ok_or("no vCPU with paging on in the capture")?;
    let mode = PagingMode::from_state(cpu)?;
    Ok((img, mode))
}

fn walk_table(sizes: &[u64], reps: usize, capture: &Path) -> Res<()> {
    println!("## Walk + mapping list (same input, same run; medians)\n");
    let mut t = Table::new(&[
        "input",
        "guestcore walk+list ms",
        "leaves",
        "guestcore mappings",
        "memflow translation_map ms",
        "memflow translations",
        "memflow page_map ms",
        "memflow ranges",
        "memflow tm / guestcore",
    ]);
    let mut rows: Vec<(String, Box<dyn PhysMemory>, PagingMode)> = Vec::new();
    for &s in sizes {
        let g = linux_guest(s * MIB);
        let mode = PagingMode::from_cpu(&g.cpu)?;
        rows.push((
            format!("linux-like {}", size_name(s)),
            Box::new(g.memory),
            mode,
        ));
    }
    let mut real_walk = None;
    match open_capture(capture) {
        Ok((img, mode)) => rows.push((
            format!("real guest ({})", capture.display()),
            img.memory,
            mode,
        )),
        Err(e) => eprintln!("skipping the real guest: {e}"),
    }
    for (name, mem, mode) in &rows {
        let (gt, gn, (leaves, maps)) = time_bounded(reps, || guestcore_walk(mem.as_ref(), mode));
        let mut cells = vec![
            name.clone(),
            format!("{} (n={gn})", ms(gt)),
            leaves.to_string(),
            maps.to_string(),
        ];
        if name.starts_with("real") {
            real_walk = Some(gt);
        }
        peer_cells(&mut cells, mem.as_ref(), mode, reps, gt);
        t.row(cells);
    }
    println!("{}", t.render());
    if let Some(gt) = real_walk {
        let q = qemu_timings(capture);
        if let (Some(p), Some(f)) = (q.get("dump-paging"), q.get("dump-phys")) {
            let share = p.saturating_sub(*f);
            println!(
                "QEMU walk share on the real guest (dump-guest-memory paging=true − paging=false, \
                 {}): {} ms − {} ms = {} ms; guestcore walk+list {} ms → guestcore is {} faster.\n",
                capture.join("timings.txt").display(),
                ms(*p),
                ms(*f),
                ms(share),
                ms(gt),
                ratio(share, gt)
            );
        }
    }
    Ok(())
}

#[cfg(feature = "peers")]
fn peer_cells(
    cells: &mut Vec<String>,
    mem: &dyn PhysMemory,
    mode: &PagingMode,
    reps: usize,
    guestcore: Duration,
) {
    use guestcore::paging::ModeKind;
    use guestcore_bench::peers;
    if mode.kind != ModeKind::Level4 {
        cells.extend([
            "(4-level only)".to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        return;
    }
    let cr3 = mode.root;
    let (tt, tn, tc) = time_bounded(reps, || peers::translation_map(mem, cr3));
    let (pt, pn, pc) = time_bounded(reps, || peers::page_map(mem, cr3));
    cells.extend([
        format!("{} (n={tn})", ms(tt)),
        tc.entries.to_string(),
        format!("{} (n={pn})", ms(pt)),
        pc.entries.to_string(),
        ratio(tt, guestcore),
    ]);
}

#[cfg(not(feature = "peers"))]
fn peer_cells(cells: &mut Vec<String>, _: &dyn PhysMemory, _: &PagingMode, _: usize, _: Duration) {
    cells.push("(build with --features peers)".into());
}

fn size_name(mib_: u64) -> String {
    if mib_ >= 1024 && mib_ % 1024 == 0 {
        format!("{} GiB", mib_ / 1024)
    } else {
        format!("{mib_} MiB")
    }
}

/// Runs this binary's `probe` in a fresh process and parses its `key=value` lines.
fn run_probe(args: &[String]) -> Res<(BTreeMap<String, String>, u64)> {
    let exe = std::env::current_exe()?;
    let out_path =
        std::env::temp_dir().join(format!("guestcore-bench-probe-{}", std::process::id()));
    let file = std::fs::File::create(&out_path)?;
    let run = run_child(Command::new(exe).arg("probe").args(args).stdout(file))?;
    let text = std::fs::read_to_string(&out_path)?;
    let _ = std::fs::remove_file(&out_path);
    if !run.status.success() {
        return Err(format!("probe {args:?} failed: {}", run.status).into());
    }
    let kv = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok((kv, run.max_rss_kib))
}

fn scale_table(sizes: &[u64], maps: &[u64], reps: usize) -> Res<()> {
    println!("## Scaling: walk + mapping list, one fresh process per input (medians)\n");
    let mut t = Table::new(&[
        "input",
        "leaves",
        "mappings",
        "walk+list ms",
        "ns/leaf",
        "input RSS MiB",
        "peak RSS during walk MiB",
        "walk's own peak MiB",
    ]);
    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    for &s in sizes {
        jobs.push((
            format!("linux-like {}", size_name(s)),
            vec!["walk-linux".into(), s.to_string()],
        ));
    }
    for &n in maps {
        jobs.push((
            format!("{n} 4K mappings"),
            vec!["walk-maps".into(), n.to_string()],
        ));
    }
    for (name, mut args) in jobs {
        args.extend(["--reps".into(), reps.to_string()]);
        let (kv, _) = run_probe(&args)?;
        let g = |k: &str| kv.get(k).cloned().unwrap_or_default();
        let num = |k: &str| g(k).parse::<u64>().unwrap_or(0);
        let walk = Duration::from_nanos(num("walk_ns"));
        let leaves = num("leaves").max(1);
        t.row(vec![
            name,
            g("leaves"),
            g("mappings"),
            ms(walk),
            format!("{:.1}", walk.as_nanos() as f64 / leaves as f64),
            mib(num("input_rss_kib")),
            mib(num("walk_peak_kib")),
            mib(num("walk_peak_kib").saturating_sub(num("input_rss_kib"))),
        ]);
    }
    println!("{}", t.render());
    Ok(())
}

/// Internal probe: one input, one measurement, fresh process.
fn probe(what: &str, n: u64, reps: usize, out: Option<&Path>) -> Res<()> {
    match what {
        "walk-linux" | "walk-maps" => {
            let (mem, cpu) = if what == "walk-linux" {
                let g = linux_guest(n * MIB);
                (g.memory, g.cpu)
            } else {
                mapping_guest(n)
            };
            let mode = PagingMode::from_cpu(&cpu)?;
            let input = proc_status_kib("VmRSS").unwrap_or(0);
            let reset = reset_peak_rss();
            let (times, (leaves, maps)) = time_reps(reps, || guestcore_walk(&mem, &mode));
            println!("leaves={leaves}\nmappings={maps}");
            println!("walk_ns={}", median(&times).as_nanos());
            println!("input_rss_kib={input}\npeak_reset={reset}");
            println!("walk_peak_kib={}", proc_status_kib("VmHWM").unwrap_or(0));
        }
        "dump-sparse" => {
            let dir = out.ok_or("--out DIR needed")?;
            std::fs::create_dir_all(dir)?;
            let g = linux_guest(n * MIB);
            let mode = PagingMode::from_cpu(&g.cpu)?;
            println!("input_rss_kib={}", proc_status_kib("VmRSS").unwrap_or(0));
            reset_peak_rss();
            let t = Instant::now();
            let s = write_core(
                &g.memory,
                &g.cpu,
                DumpLayout::Physical,
                &dir.join("phys.elf"),
            )?;
            println!(
                "phys_ns={}\nphys_file={}",
                t.elapsed().as_nanos(),
                s.file_size
            );
            println!("phys_peak_kib={}", proc_status_kib("VmHWM").unwrap_or(0));
            reset_peak_rss();
            let t = Instant::now();
            let (list, _) = MappingList::from_walk(&g.memory, &mode, WalkLimits::default())?;
            let s = write_core(
                &g.memory,
                &g.cpu,
                DumpLayout::Paging(&list),
                &dir.join("paging.elf"),
            )?;
            println!(
                "paging_ns={}\npaging_loads={}",
                t.elapsed().as_nanos(),
                s.segments
            );
            println!("paging_peak_kib={}", proc_status_kib("VmHWM").unwrap_or(0));
            let _ = std::fs::remove_file(dir.join("paging.elf"));
        }
        _ => return Err(format!("unknown probe {what}").into()),
    }
    Ok(())
}

/// Builds the command of one operation from (input, output).
type MakeCommand = Box<dyn Fn(&Path, &Path) -> Command>;

/// One timed operation of the dump table.
struct Op {
    name: &'static str,
    cmd: MakeCommand,
}

fn dump_tables(
    cli: &Path,
    capture: &Path,
    workdir: &Path,
    gen_mib: u64,
    sparse_mib: u64,
    reps: usize,
) -> Res<()> {
    if !cli.exists() {
        return Err(format!(
            "{}: no such CLI binary (cargo build --release)",
            cli.display()
        )
        .into());
    }
    std::fs::create_dir_all(workdir)?;
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    if capture.join("phys.elf").exists() {
        inputs.push((
            format!("real guest phys.elf ({})", capture.display()),
            capture.join("phys.elf"),
        ));
    }
    let gen = workdir.join(format!("filled-{gen_mib}M.elf"));
    if !gen.exists() {
        eprintln!("generating {} …", gen.display());
        let g = linux_guest(gen_mib * MIB);
        write_core(
            &FilledMemory { inner: &g.memory },
            &g.cpu,
            DumpLayout::Physical,
            &gen,
        )?;
    }
    inputs.push((format!("generated {} (filled)", size_name(gen_mib)), gen));

    let cli_ = cli.to_path_buf();
    let cli2 = cli.to_path_buf();
    let ops = [
        Op {
            name: "cp",
            cmd: Box::new(|i, o| {
                let mut c = Command::new("cp");
                c.arg(i).arg(o);
                c
            }),
        },
        Op {
            name: "cp + sync FILE",
            cmd: Box::new(|i, o| {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("cp \"$1\" \"$2\" && sync \"$2\"")
                    .arg("sh")
                    .arg(i)
                    .arg(o);
                c
            }),
        },
        Op {
            name: "guestcore dump",
            cmd: Box::new(move |i, o| {
                let mut c = Command::new(&cli_);
                c.args(["--quiet", "dump", "--force"])
                    .arg(i)
                    .arg("-o")
                    .arg(o);
                c
            }),
        },
        Op {
            name: "guestcore dump --paging",
            cmd: Box::new(move |i, o| {
                let mut c = Command::new(&cli2);
                c.args(["--quiet", "dump", "--force", "--paging"])
                    .arg(i)
                    .arg("-o")
                    .arg(o);
                c
            }),
        },
    ];
    let q = qemu_timings(capture);
    println!("## ELF dump (same input file, same run, hot page cache; medians of {reps}, ops interleaved; \
              \"median (min)\" ms; ratios of medians)\n");
    let mut t = Table::new(&[
        "input",
        "size MiB",
        "cp ms",
        "cp+sync ms",
        "guestcore dump ms",
        "dump --paging ms",
        "dump / cp",
        "dump / (cp+sync)",
        "paging / dump",
        "peak RSS MiB (dump, paging)",
    ]);
    for (name, input) in &inputs {
        let size = std::fs::metadata(input)?.len();
        let out = workdir.join("out.elf");
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
        let mut rss = vec![0u64; ops.len()];
        for _ in 0..reps {
            for (k, op) in ops.iter().enumerate() {
                let _ = std::fs::remove_file(&out);
                let r = run_child(&mut (op.cmd)(input, &out))?;
                if !r.status.success() {
                    return Err(
                        format!("{} on {} failed: {}", op.name, input.display(), r.status).into(),
                    );
                }
                times[k].push(r.wall);
                rss[k] = rss[k].max(r.max_rss_kib);
            }
        }
        let _ = std::fs::remove_file(&out);
        let m: Vec<Duration> = times.iter().map(|v| median(v)).collect();
        let mn: Vec<Duration> = times
            .iter()
            .map(|v| v.iter().copied().min().unwrap_or_default())
            .collect();
        let cell = |k: usize| format!("{} ({})", ms(m[k]), ms(mn[k]));
        t.row(vec![
            name.clone(),
            format!("{:.0}", size as f64 / MIB as f64),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            ratio(m[2], m[0]),
            ratio(m[2], m[1]),
            ratio(m[3], m[2]),
            format!("{}, {}", mib(rss[2]), mib(rss[3])),
        ]);
        if name.starts_with("real") {
            if let (Some(qp), Some(qf)) = (q.get("dump-paging"), q.get("dump-phys")) {
                println!(
                    "QEMU dump-guest-memory on the same stopped guest ({}): paging=false {} ms, \
                     paging=true {} ms. guestcore dump is {} faster than QEMU's physical dump, \
                     guestcore dump --paging {} faster than QEMU's paging dump.\n",
                    capture.join("timings.txt").display(),
                    ms(*qf),
                    ms(*qp),
                    ratio(*qf, m[2]),
                    ratio(*qp, m[3])
                );
            }
        }
    }
    println!("{}", t.render());

    println!(
        "## Dumping a sparse {} Linux-like guest\n",
        size_name(sparse_mib)
    );
    let dir = workdir.join("sparse");
    let (kv, child_rss) = run_probe(&[
        "dump-sparse".into(),
        sparse_mib.to_string(),
        "--out".into(),
        dir.display().to_string(),
    ])?;
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut t = Table::new(&["what", "time ms", "peak RSS MiB", "notes"]);
    t.row(vec![
        "library: physical ELF from SparseMemory".into(),
        ms(Duration::from_nanos(num("phys_ns"))),
        mib(num("phys_peak_kib")),
        format!(
            "input (tables) RSS {} MiB; process peak {} MiB",
            mib(num("input_rss_kib")),
            mib(child_rss)
        ),
    ]);
    t.row(vec![
        "library: walk + paging ELF from SparseMemory".into(),
        ms(Duration::from_nanos(num("paging_ns"))),
        mib(num("paging_peak_kib")),
        format!("{} PT_LOADs", num("paging_loads")),
    ]);
    let phys = dir.join("phys.elf");
    let out = dir.join("cli-paging.elf");
    for (label, paging) in [
        ("CLI: guestcore dump of that phys.elf (sparse file)", false),
        ("CLI: guestcore dump --paging of that phys.elf", true),
    ] {
        let mut c = Command::new(cli);
        c.args(["--quiet", "dump", "--force"])
            .arg(&phys)
            .arg("-o")
            .arg(&out);
        if paging {
            c.arg("--paging");
        }
        let r = run_child(&mut c)?;
        t.row(vec![
            label.into(),
            ms(r.wall),
            mib(r.max_rss_kib),
            if r.status.success() {
                String::new()
            } else {
                format!("FAILED: {}", r.status)
            },
        ]);
        let _ = std::fs::remove_file(&out);
    }
    let _ = std::fs::remove_file(&phys);
    println!("{}", t.render());
    Ok(())
}
