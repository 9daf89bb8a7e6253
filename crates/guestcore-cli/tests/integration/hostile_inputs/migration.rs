//! QEMU migration streams that claim far more than they hold (issue 29): RAM blocks declared
//! up to the 64 TiB cap and never filled, records spread over more RAM than the stream could
//! back, one page resent millions of times, a vmdesc without the vCPUs. Every command that
//! passes over RAM must cost what the file holds; what the stream lacks is a warning that
//! survives `--quiet`.
//!
//! The same streams are fuzz seeds (`fuzz/examples/fuzz_seeds.rs`, target `migration_stream`).

use guestcore::format::migration::StreamWriter;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TIB: u64 = 1 << 40;
/// The largest RAM a stream may declare (`phys::migration::ram::MAX_RAM`).
const CAP: u64 = 1 << 46;

/// A page whose bytes depend on `p` and are never zero.
fn page(p: u64) -> Vec<u8> {
    (0..4096u64).map(|i| (i ^ p) as u8 | 1).collect()
}

/// A `pc-i440fx` stream declaring `pc.ram` of `ram` bytes that holds its first `pages` pages.
pub(crate) fn declared(ram: u64, pages: u64) -> Vec<u8> {
    let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
    w.ram_start(&[("pc.ram", ram)]);
    w.part();
    for p in 0..pages {
        w.page((p == 0).then_some("pc.ram"), p * 4096, &page(p));
    }
    w.part_end();
    w.eof();
    w.out
}

/// One zero-page record of page 1 of a `ram`-byte `pc.ram`, `times` times.
pub(crate) fn repeated(ram: u64, times: u64) -> Vec<u8> {
    let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
    w.ram_start(&[("pc.ram", ram)]);
    w.part();
    for k in 0..times {
        w.zero((k == 0).then_some("pc.ram"), 0x1000, 0);
    }
    w.part_end();
    w.eof();
    w.out
}

/// A data page at the start of a `ram`-byte `pc.ram` and a zero page at its last page: two
/// records spanning all of it.
pub(crate) fn span(ram: u64) -> Vec<u8> {
    let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
    w.ram_start(&[("pc.ram", ram)]);
    w.part();
    w.page(Some("pc.ram"), 0, &page(0));
    w.zero(None, ram - 4096, 0);
    w.part_end();
    w.eof();
    w.out
}

/// A fully sent 64 KiB `pc.ram` with two `cpu` sections and a vmdesc (`Some`) that
/// describes none of them, or no vmdesc (`None`).
pub(crate) fn cpus_undescribed(vmdesc: Option<&str>) -> Vec<u8> {
    let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
    w.ram_start(&[("pc.ram", 0x10000)]);
    w.part();
    for p in 0..16 {
        w.page((p == 0).then_some("pc.ram"), p * 4096, &page(p));
    }
    w.part_end();
    w.device("cpu", 0, &[0u8; 64]);
    w.device("cpu", 1, &[0u8; 64]);
    w.eof();
    if let Some(j) = vmdesc {
        w.vmdesc(j);
    }
    w.out
}

/// What one run of the CLI cost and said.
struct Run {
    wall: Duration,
    /// Highest `VmHWM` of the child seen while it ran, KiB (polled: a lower bound of its peak).
    peak_kib: u64,
    out: Output,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
}

/// Runs `guestcore -q ARGS…`, killing it after 60 s (so a regression fails, not hangs).
fn run(args: &[OsString]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let t = Instant::now();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .arg("-q")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(kib);
        }
        if t.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("guestcore {args:?} ran past 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        wall: t.elapsed(),
        peak_kib,
        out: Output {
            status,
            stdout: std::fs::read(o).unwrap(),
            stderr: std::fs::read(e).unwrap(),
        },
    }
}

fn args(list: &[&str], input: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = list.iter().map(OsString::from).collect();
    v.push(input.into());
    v
}

/// A debug build on a loaded machine: generous, and still far below what a pass over the
/// declared RAM costs (minutes per TiB before the fix).
const FAST: Duration = Duration::from_secs(8);

/// `pc.ram` declared at the 64 TiB cap, 64 pages filled: listing, scanning and every dump
/// cost what the 64 pages cost; the block is clipped with a warning under `--quiet`; dumps
/// are small, and the output folder holds only them.
#[test]
fn ram_declared_at_the_cap_costs_what_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cap.mig");
    std::fs::write(&input, declared(CAP, 64)).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let clip = format!(
        "warning: {}: RAM block \"pc.ram\" is declared as 0x400000000000 bytes, but the stream \
         holds pages only in its first 0x40000: the rest is left out of guest RAM",
        input.display()
    );
    let no_cpu = "the stream has no `cpu` device sections: no vCPU state";
    let flat = ["--mode", "off", "--cr3", "0"];
    let mut cases: Vec<(Vec<String>, Option<&str>)> = vec![
        (vec!["info".into()], None),
        (vec!["kernels".into()], None),
        (
            ["mem"].iter().chain(&flat).map(|s| s.to_string()).collect(),
            None,
        ),
    ];
    let formats = [
        "elf",
        "kdump-zlib",
        "kdump-lzo",
        "kdump-snappy",
        "kdump-zstd",
        "kdump-raw",
    ];
    for (i, f) in formats.iter().enumerate() {
        for level in ["0", "1"] {
            let name = format!("d{i}-{level}");
            let mut a: Vec<String> = ["dump", "--format", f, "-d", level]
                .iter()
                .chain(&flat)
                .map(|s| s.to_string())
                .collect();
            a.extend(["-o".into(), out_dir.join(&name).display().to_string()]);
            cases.push((a, Some(f)));
        }
    }
    let mut paging: Vec<String> = ["dump", "--paging"]
        .iter()
        .chain(&flat)
        .map(|s| s.to_string())
        .collect();
    paging.extend(["-o".into(), out_dir.join("paging").display().to_string()]);
    cases.push((paging, Some("elf")));
    for (a, _) in &cases {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = run(&args(&a, &input));
        let err = r.stderr();
        assert!(r.out.status.success(), "{a:?}: {err}");
        assert!(r.wall < FAST, "{a:?} took {:?}", r.wall);
        assert!(err.contains(&clip), "{a:?}: {err}");
        assert!(err.contains(no_cpu), "{a:?}: {err}");
        if a[0] == "info" {
            let out = r.stdout();
            assert!(out.contains("RAM:      262144 bytes"), "{out}");
            assert!(out.contains("vCPUs:    0"), "{out}");
        }
    }
    // Each dump holds the 64 pages (256 KiB) and little else.
    let mut names = crate::dump_output::names_in(&out_dir);
    for n in &names {
        let m = std::fs::metadata(out_dir.join(n)).unwrap();
        assert!(m.len() < 1 << 20, "{n}: {} bytes", m.len());
        assert!(m.blocks() * 512 < 2 << 20, "{n}: {} blocks", m.blocks());
    }
    names.retain(|n| n != "paging");
    assert_eq!(names.len(), formats.len() * 2, "{names:?}");
}

/// Two records spanning 64 TiB (a page at 0, a zero page at the last page) are a claim the
/// 4 KiB stream cannot back: refused at once, by every command, with no file left.
#[test]
fn records_spread_past_what_the_stream_backs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("span.mig");
    std::fs::write(&input, span(CAP)).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.kdump").display().to_string();
    for a in [
        vec!["info"],
        vec!["kernels"],
        vec!["dump", "--mode", "off", "--cr3", "0", "-o", &out],
        vec![
            "dump",
            "--format",
            "kdump-zstd",
            "--mode",
            "off",
            "--cr3",
            "0",
            "-o",
            &out,
        ],
    ] {
        let r = run(&args(&a, &input));
        let err = r.stderr();
        assert_eq!(r.out.status.code(), Some(1), "{a:?}: {err}");
        assert!(r.wall < FAST, "{a:?} took {:?}", r.wall);
        assert!(
            err.contains("its records span 0x400000000000 bytes of RAM, but the stream is only"),
            "{a:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        crate::dump_output::names_in(&out_dir).is_empty(),
        "{:?}",
        crate::dump_output::names_in(&out_dir)
    );
}

/// One page record resent 3 million times (27 MB) against a 1 TiB block: the page index stays
/// a run, so `info` stays O(buffers) resident (it grew by 32 bytes a record before: 100+ MB).
#[test]
fn one_page_resent_millions_of_times_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rep.mig");
    std::fs::write(&input, repeated(TIB, 3_000_000)).unwrap();
    let r = run(&args(&["info"], &input));
    let err = r.stderr();
    assert!(r.out.status.success(), "{err}");
    assert!(r.peak_kib > 0, "no VmHWM read from /proc");
    assert!(r.peak_kib < 64 << 10, "peak RSS {} KiB", r.peak_kib);
    assert!(r.wall < FAST * 2, "took {:?}", r.wall);
    assert!(
        err.contains("holds pages only in its first 0x2000"),
        "{err}"
    );
    let out = r.stdout();
    assert!(out.contains("RAM:      8192 bytes"), "{out}");
}

/// `cpu` sections the vmdesc does not describe, or no vmdesc at all: "vCPUs: 0" comes with a
/// warning that survives `--quiet` and says what is missing.
#[test]
fn missing_vcpu_descriptions_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for (name, vmdesc, want) in [
        (
            "nodesc.mig",
            Some(r#"{"page_size": 4096, "devices": []}"#),
            "the stream's vmdesc describes none of its 2 `cpu` sections: \
             no vCPU state",
        ),
        (
            "novmdesc.mig",
            None,
            "the stream has 2 `cpu` sections but no vmdesc, which alone \
             says where their registers are: no vCPU state",
        ),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, cpus_undescribed(vmdesc)).unwrap();
        let r = run(&args(&["info"], &input));
        let err = r.stderr();
        assert!(r.out.status.success(), "{err}");
        let want = format!("warning: {}: {want}", input.display());
        assert!(err.contains(&want), "{err}");
        assert!(
            !err.contains("declared as"),
            "fully sent, not clipped: {err}"
        );
        assert!(r.stdout().contains("vCPUs:    0"), "{}", r.stdout());
    }
}

/// A `mapped-ram` file whose `pc.ram` of `ram` bytes has only its first `pages` pages
/// present: the file is as long as the block (QEMU's layout), sparse everywhere else.
fn sparse_mapped_ram(path: &Path, ram: u64, pages: u64) {
    use guestcore::format::migration::{
        MappedRamHeader, CAP_MAPPED_RAM, MAPPED_RAM_HEADER_LEN, MAPPED_RAM_VERSION, RAM_FLAG_EOS,
        RAM_FLAG_MEM_SIZE, RAM_SECTION, RAM_SECTION_VERSION, SECTION_START,
    };
    use std::os::unix::fs::FileExt;
    let mut w = StreamWriter::new("pc-i440fx-10.0", &[CAP_MAPPED_RAM]);
    w.section_header(
        SECTION_START,
        StreamWriter::RAM_ID,
        RAM_SECTION,
        0,
        RAM_SECTION_VERSION,
    );
    w.be64(ram | RAM_FLAG_MEM_SIZE);
    w.short_str("pc.ram");
    w.be64(ram);
    let bitmap_offset = (w.out.len() + MAPPED_RAM_HEADER_LEN) as u64;
    let h = MappedRamHeader {
        version: MAPPED_RAM_VERSION,
        page_size: 4096,
        bitmap_offset,
        pages_offset: (bitmap_offset + (ram / 4096).div_ceil(64) * 8).next_multiple_of(1 << 20),
    };
    w.out.extend_from_slice(&h.encode());
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(&w.out, 0).unwrap();
    let mut bits = vec![0u8; pages.div_ceil(8) as usize];
    for p in 0..pages {
        bits[(p / 8) as usize] |= 1 << (p % 8);
        f.write_all_at(&page(p), h.pages_offset + p * 4096).unwrap();
    }
    f.write_all_at(&bits, h.bitmap_offset).unwrap();
    let mut tail = StreamWriter::new("", &[]);
    tail.out.clear();
    tail.be64(RAM_FLAG_EOS);
    tail.footer(StreamWriter::RAM_ID);
    tail.part();
    tail.part_end();
    tail.eof();
    f.write_all_at(&tail.out, h.pages_offset + ram).unwrap();
}

/// A `mapped-ram` file of a 1 TiB guest with 64 pages present: its length backs the block
/// (not clipped, no warning), and listing, scanning and an ELF dump cost the 64 pages: the
/// bitmap is the data runs, the dump's 1 TiB PT_LOAD is a hole but for them.
#[test]
fn sparse_mapped_ram_costs_its_present_pages() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mapped.mig");
    sparse_mapped_ram(&input, TIB, 64);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let elf = out_dir.join("x.elf").display().to_string();
    for a in [
        vec!["info"],
        vec!["kernels"],
        vec!["dump", "--mode", "off", "--cr3", "0", "-o", &elf],
    ] {
        let r = run(&args(&a, &input));
        let err = r.stderr();
        assert!(r.out.status.success(), "{a:?}: {err}");
        assert!(r.wall < FAST, "{a:?} took {:?}", r.wall);
        assert!(!err.contains("declared as"), "{a:?}: {err}");
        if a[0] == "info" {
            assert!(
                r.stdout().contains("RAM:      1099511627776 bytes"),
                "{}",
                r.stdout()
            );
        }
    }
    let m = std::fs::metadata(&elf).unwrap();
    assert!(m.len() > TIB, "{} bytes", m.len());
    assert!(
        m.blocks() * 512 < 4 << 20,
        "{} blocks allocated",
        m.blocks()
    );
    assert_eq!(crate::dump_output::names_in(&out_dir), ["x.elf"]);
}
