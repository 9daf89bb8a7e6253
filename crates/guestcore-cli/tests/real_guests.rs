//! Real Linux guests under QEMU (TCG), checked against QEMU's own answers taken in the same
//! stopped state: `info tlb`, `gva2gpa`, `dump-guest-memory` with paging, and gdb reading the
//! kernel's release string from guestcore's paging dump.
//!
//! The guests come from `scripts/guest/capture.sh` (boots, stops, captures; kernels and busybox
//! from Debian packages, cached under `$GUESTCORE_CACHE` or `~/.cache/guestcore/guests`). A
//! capture already in the cache is reused when it was taken of the kernel now in the cache;
//! delete it to take a fresh one. A test skips, saying why, only when QEMU is not installed or
//! the guest's packages cannot be had (exit 77), and under `CI=true` even that fails; any other
//! harness failure fails the test with the harness output.

use assert_cmd::Command;
use guestcore::addr::canonical;
use guestcore::image::{GuestImage, OpenOptions};
use guestcore::phys::elf::{ElfCore, ElfSegment};
use guestcore_testkit::tools::{skip, which};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Captures run one at a time: two TCG guests on a 2-core machine would slow each other's boot.
static CAPTURE: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn cache_dir() -> PathBuf {
    guestcore_testkit::tools::guest_cache()
}

/// The kernel flavour (`kernels/FLAVOUR` in the cache) a guest boots.
fn flavour(guest: &str) -> &'static str {
    match guest {
        "i386" => "686",
        "i386-pae" => "686-pae",
        _ => "amd64",
    }
}

/// True when the capture in `dir` was taken of the kernel the cache holds now (a new Debian
/// kernel, and so a new debug vmlinux, makes an older capture useless for crash and drgn).
fn capture_matches_kernel(guest: &str, dir: &Path) -> bool {
    let read = |p: PathBuf| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    match (
        read(dir.join("release.txt")),
        read(
            cache_dir()
                .join("kernels")
                .join(flavour(guest))
                .join("release"),
        ),
    ) {
        (Ok(taken), Ok(now)) => taken == now,
        // No kernel in the cache (yet): capture.sh fetches it, and a fresh capture follows.
        _ => false,
    }
}

/// The capture directory of `guest`, taking the capture when the cache lacks it.
fn capture(guest: &str) -> Option<PathBuf> {
    let _one_at_a_time = CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir().join("captures").join(guest);
    let complete = [
        "phys.elf",
        "paging.elf",
        "tlb.txt",
        "symbols.txt",
        "timings.txt",
    ]
    .iter()
    .all(|f| dir.join(f).exists());
    if complete && capture_matches_kernel(guest, &dir) {
        return Some(dir);
    }
    if which("qemu-system-x86_64").is_none() {
        skip(format_args!("{guest}: qemu-system-x86_64 is not installed"));
        return None;
    }
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/guest/capture.sh"))
        .arg(guest)
        .env("GUESTCORE_CACHE", cache_dir())
        .output()
        .expect("run capture.sh");
    if out.status.code() == Some(77) {
        skip(format_args!(
            "{guest}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("guest unavailable")
        ));
        return None;
    }
    assert!(
        out.status.success(),
        "capture.sh {guest} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

/// Runs `guestcore ARGS… INPUT TAIL…` and returns its stdout.
fn guestcore(args: &[&str], input: &Path, tail: &[&str]) -> String {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .args(args)
        .arg(input)
        .args(tail)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "guestcore {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// QEMU's `info tlb` as (VA, PA, large) — QEMU prints NX inside the PA in PAE mode: masked.
fn qemu_tlb(dir: &Path) -> BTreeSet<(u64, u64, bool)> {
    let text = std::fs::read_to_string(dir.join("tlb.txt")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let va = u64::from_str_radix(f.next()?.trim_end_matches(':'), 16).ok()?;
            let pa = u64::from_str_radix(f.next()?, 16).ok()? & !(1 << 63);
            let flags = f.next()?;
            Some((va, pa, flags.as_bytes().get(2) == Some(&b'P')))
        })
        .collect()
}

fn our_tlb(text: &str) -> BTreeSet<(u64, u64, bool)> {
    text.lines()
        .map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            let va = u64::from_str_radix(f[0].trim_end_matches(':'), 16).unwrap();
            let pa = u64::from_str_radix(f[1], 16).unwrap();
            (va, pa, f[2].as_bytes()[2] == b'P')
        })
        .collect()
}

/// The PT_LOAD of `segs` (sorted by vaddr, non-overlapping) holding `va`.
fn find_load(segs: &[ElfSegment], va: u64) -> Option<&ElfSegment> {
    let i = segs.partition_point(|s| s.vaddr <= va);
    let s = segs.get(i.checked_sub(1)?)?;
    (va < s.vaddr + s.memsz && s.filesz > 0).then_some(s)
}

/// Reads `len` bytes at virtual `va` from a paging ELF core.
fn read_virt(core: &ElfCore, segs: &[ElfSegment], va: u64, len: usize) -> Vec<u8> {
    let s = find_load(segs, va).unwrap_or_else(|| panic!("{va:#x} is in no PT_LOAD"));
    let data = core.segment_data(s).unwrap();
    let off = (va - s.vaddr) as usize;
    data[off..off + len].to_vec()
}

fn check_guest(guest: &str, va_bits: u32) {
    let Some(dir) = capture(guest) else { return };
    let phys = dir.join("phys.elf");
    let image = GuestImage::open(&phys, &OpenOptions::default()).unwrap();
    let release = image
        .vmcoreinfo_get("OSRELEASE")
        .expect("VMCOREINFO OSRELEASE")
        .to_string();
    let uname = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    assert_eq!(release, uname.trim(), "VMCOREINFO and the guest's uname -r");

    // 1. Every leaf of QEMU's `info tlb` (vCPU 0, the monitor's CPU), and nothing else.
    let ours = our_tlb(&guestcore(&["tlb", "-q", "--cpu", "0"], &phys, &[]));
    let qemu = qemu_tlb(&dir);
    assert!(!qemu.is_empty());
    let missing: Vec<_> = qemu.difference(&ours).take(5).collect();
    let extra: Vec<_> = ours.difference(&qemu).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{guest}: missing {missing:x?}, extra {extra:x?}"
    );

    // 2. gva2gpa for every symbol the guest printed.
    let symbols = std::fs::read_to_string(dir.join("symbols.txt")).unwrap();
    let mut n = 0;
    for line in symbols.lines() {
        let f: Vec<_> = line.split_whitespace().collect();
        let [name, va, pa] = f[..] else { continue };
        let got = guestcore(&["translate", "-q", "--cpu", "0"], &phys, &[va]);
        let want = u64::from_str_radix(pa.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(
            got.trim(),
            format!("gpa: {want:#x}"),
            "{guest}: {name} at {va}"
        );
        n += 1;
    }
    assert!(n >= 4, "{guest}: only {n} symbols captured");

    // 3. guestcore's paging dump of QEMU's physical dump covers every page of QEMU's own
    //    paging dump with the same bytes (QEMU's user-space VAs made canonical first). QEMU's
    //    paging dump walks every vCPU with paging on, so ours uses --all-cpus; the same VA can
    //    then map different PAs (two processes), so pages are matched on (VA, PA).
    let tmp = tempfile::tempdir().unwrap();
    let ours_path = tmp.path().join("paging.elf");
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .args(["dump", "-q", "--paging", "--all-cpus", "-o"])
        .arg(&ours_path)
        .arg(&phys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours_core = ElfCore::open(&ours_path).unwrap();
    let mut ours_segs: Vec<_> = ours_core.segments().to_vec();
    ours_segs.sort_by_key(|s| s.vaddr);
    let mut ours_pages: HashMap<(u64, u64), &[u8]> = HashMap::new();
    for s in ours_core.segments().iter().filter(|s| s.filesz > 0) {
        let data = ours_core.segment_data(s).unwrap();
        for (k, page) in data.chunks(4096).enumerate() {
            let k = k as u64 * 4096;
            ours_pages.insert((s.vaddr + k, s.paddr + k), page);
        }
    }
    let qemu_core = ElfCore::open(dir.join("paging.elf")).unwrap();
    let mut pages = 0u64;
    for s in qemu_core.segments().iter().filter(|s| s.filesz > 0) {
        let data = qemu_core.segment_data(s).unwrap();
        for (k, page) in data.chunks(4096).enumerate() {
            let k = k as u64 * 4096;
            let raw_va = s.vaddr + k;
            let va = if va_bits > 32 {
                canonical(raw_va & ((1 << va_bits) - 1), va_bits)
            } else {
                raw_va
            };
            let pa = s.paddr + k;
            let Some(mine) = ours_pages.get(&(va, pa)) else {
                panic!(
                    "{guest}: {va:#x} -> {pa:#x} (QEMU's {raw_va:#x}) is not in guestcore's dump"
                );
            };
            assert!(*mine == page, "{guest}: bytes differ at {va:#x} -> {pa:#x}");
            pages += 1;
        }
    }
    assert!(pages > 10_000, "{guest}: only {pages} pages compared");

    // 4. The kernel's release string at init_uts_ns, read through the page tables.
    let uts =
        u64::from_str_radix(image.vmcoreinfo_get("SYMBOL(init_uts_ns)").unwrap(), 16).unwrap();
    let bytes = read_virt(&ours_core, &ours_segs, uts, 512);
    let sysname = bytes
        .windows(6)
        .position(|w| w == b"Linux\0")
        .expect("utsname.sysname");
    let rel = &bytes[sysname + 130..];
    let rel = &rel[..rel.iter().position(|&b| b == 0).unwrap()];
    assert_eq!(
        std::str::from_utf8(rel).unwrap(),
        release,
        "{guest}: release at init_uts_ns"
    );

    // 5. gdb reads the same string from guestcore's paging dump.
    if which("gdb").is_none() {
        panic!("gdb is not installed (scripts/install-deps.sh installs it)");
    }
    let gdb = std::process::Command::new("gdb")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("x/s {:#x}", uts + sysname as u64 + 130))
        .arg("-core")
        .arg(&ours_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&gdb.stdout);
    assert!(
        text.contains(&format!("\"{release}\"")),
        "{guest}: gdb printed {text:?}"
    );
    // 6. QEMU's own kdump-compressed file (flattened, zlib) of the same stopped guest reads
    //    back equal to QEMU's physical ELF dump, page for page.
    let kdump = GuestImage::open(dir.join("kdump-zlib.dump"), &OpenOptions::default()).unwrap();
    assert_eq!(
        kdump.cpus.len(),
        image.cpus.len(),
        "{guest}: CPU notes in QEMU's kdump"
    );
    assert_eq!(kdump.cpus[0].cr[3], image.cpus[0].cr[3]);
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut kdump_bytes = 0u64;
    for r in kdump.memory.ram().ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(a.len());
            kdump.memory.read_at(at, &mut a[..n]).unwrap();
            image.memory.read_at(at, &mut b[..n]).unwrap();
            assert!(
                a[..n] == b[..n],
                "{guest}: QEMU's kdump differs from its ELF dump near {at:#x}"
            );
            at += n as u64;
            kdump_bytes += n as u64;
        }
    }
    assert!(
        kdump_bytes > 200 << 20,
        "{guest}: only {kdump_bytes} bytes in QEMU's kdump"
    );

    // 7. makedumpfile (an x86_64 build: 64-bit guests only) reads the guest's kernel log out of
    //    guestcore's physical ELF and its kdump files, through VMCOREINFO and the page tables.
    //    (It cannot read QEMU 10's ELF: QEMU puts a section header where the program headers
    //    belong.)
    if va_bits > 32 {
        assert!(
            which("makedumpfile").is_some(),
            "makedumpfile is not installed (scripts/install-deps.sh installs it)"
        );
        for format in ["elf", "kdump-zlib", "kdump-lzo"] {
            let out_file = tmp.path().join(format!("phys.{format}"));
            let out = Command::cargo_bin("guestcore")
                .unwrap()
                .args(["dump", "-q", "--format", format, "-o"])
                .arg(&out_file)
                .arg(&phys)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let log = tmp.path().join(format!("dmesg.{format}"));
            let md = std::process::Command::new("makedumpfile")
                .arg("--dump-dmesg")
                .arg(&out_file)
                .arg(&log)
                .output()
                .unwrap();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains(&format!("Linux version {release} ")),
                "{guest}: makedumpfile --dump-dmesg on guestcore's {format}: {}{}",
                String::from_utf8_lossy(&md.stdout),
                String::from_utf8_lossy(&md.stderr)
            );
        }
    }

    eprintln!(
        "{guest}: {} tlb leaves, {n} symbols, {pages} pages equal, release {release}",
        qemu.len()
    );
}

#[test]
fn x86_64_four_level() {
    check_guest("x86_64", 48);
}

#[test]
fn x86_64_five_level() {
    check_guest("x86_64-la57", 57);
}

#[test]
fn i386_32_bit() {
    check_guest("i386", 32);
}

#[test]
fn i386_pae() {
    check_guest("i386-pae", 32);
}
