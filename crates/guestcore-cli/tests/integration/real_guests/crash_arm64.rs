//! crash for ARM64 (issue 28) on guestcore's outputs of the aarch64 guests, with the guest
//! kernel's debug vmlinux: `sys`, `bt -a` and `log`, checked against the guest (its release,
//! its vCPU count, its console's last kernel line) and against the same crash on QEMU's own
//! ELF of the same stopped guest, which must print the same (less the line naming the file).
//!
//! Debian has no crash that reads ARM64 dumps on x86_64: `scripts/guest/build-crash-arm64.sh`
//! builds crash 8.0.6 with `make target=ARM64` into the guest cache, and `scripts/test.sh` runs
//! it before the tests. The outputs are made from the capture's migration stream (the input that
//! carries every register) and from QEMU's ELF.
//!
//! What crash 8.0.6 reads of the three guests:
//! - `aarch64` (4 KiB pages, 48-bit VA): every output, ELF and kdump (it is built with lzo,
//!   snappy and zstd; the test reads kdump-zstd). A kdump file's header must carry arm64's
//!   `NUMBER(PHYS_OFFSET)` as `phys_base`, which crash takes as the kernel's `phys_offset`
//!   (`format::vmcoreinfo::vmcoreinfo_phys_base`).
//! - `aarch64-16k-47` (a kernel built for 52-bit VA running at 47 bits without LPA2): only with
//!   `--machdep phys_offset=RAM-START`. Its VMCOREINFO's `NUMBER(PHYS_OFFSET)`
//!   (0xfff0800040000000) is `memstart_addr` as the kernel offsets it for its 52-bit
//!   `PAGE_OFFSET`; crash uses it with the 47-bit `PAGE_OFFSET` and misses every linear-map
//!   address, on QEMU's ELF as on ours (`seek error: kernel virtual address: ffff80000ff38090
//!   type: "IRQ stack pointer"`). Its debug vmlinux is not fetched by `scripts/test.sh` (1 GB):
//!   the test runs where `scripts/guest/fetch.sh debug-arm64-16k` has put it in the cache.
//! - `aarch64-16k` (52-bit VA with LPA2): not at all. crash 8.0.6 stops with `Do not support
//!   52 bits, 4-level for 16K page now.` on QEMU's ELF as on ours; not tested.

use super::aarch64::{last_console_line, vmlinux};
use super::aarch64_capture::facts;
use super::capture::{cache_dir, capture};
use super::debuggers::{crash_with, first_difference, two_at_a_time};
use super::dump;
use guestcore::image::{GuestImage, OpenOptions};
use guestcore_testkit::tools::skip;
use std::path::{Path, PathBuf};

/// The crash release `build-crash-arm64.sh` builds.
const CRASH_VERSION: &str = "8.0.6";

/// The commands run, one session per file.
const COMMANDS: &str = "sys\nbt -a\nlog\nquit\n";

/// The ARM64 crash, when it has been built (`scripts/guest/build-crash-arm64.sh`).
fn crash_arm64() -> Option<PathBuf> {
    let bin = cache_dir().join(format!("tools/crash-arm64-{CRASH_VERSION}/crash"));
    if bin.is_file() {
        return Some(bin);
    }
    skip(format_args!(
        "no crash for ARM64 at {} (scripts/guest/build-crash-arm64.sh builds it; scripts/test.sh runs it)",
        bin.display()
    ));
    None
}

/// crash's answers, split by command.
struct Answers<'a> {
    sys: Vec<&'a str>,
    bt: Vec<&'a str>,
    log: Vec<&'a str>,
}

/// Splits crash's output where each command's answer starts: `sys` at its `KERNEL:` line,
/// `bt -a` at its first `PID:` line, `log` at the first line after that which starts with `[`
/// (a record's timestamp; no backtrace line does).
fn split(text: &str) -> Option<Answers<'_>> {
    let lines: Vec<&str> = text.lines().collect();
    let sys = lines
        .iter()
        .position(|l| l.trim_start().starts_with("KERNEL:"))?;
    let bt = sys + lines[sys..].iter().position(|l| l.starts_with("PID:"))?;
    let log = bt + lines[bt..].iter().position(|l| l.starts_with('['))?;
    Some(Answers {
        sys: lines[sys..bt].to_vec(),
        bt: lines[bt..log].to_vec(),
        log: lines[log..].to_vec(),
    })
}

/// The value of `sys`'s `KEY: value` line.
fn sys_field<'a>(sys: &[&'a str], key: &str) -> Option<&'a str> {
    sys.iter().find_map(|l| {
        let (k, v) = l.trim_start().split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// What crash must print for the guest.
struct Want<'a> {
    release: &'a str,
    cpus: usize,
    /// The console's last kernel line, less its timestamp.
    last_line: &'a str,
}

/// Checks crash's answers on one file against the guest: `sys` names its release and vCPU
/// count; `bt -a` has one backtrace per vCPU, each with a frame (`#N`) or, for a vCPU caught
/// in user space, its registers (`PC:`), whatever each vCPU ran; no error line anywhere
/// (crash's errors are not log records, which all start with `[`); `log` reaches the console's
/// last kernel line. `Err` says what is wrong, with all crash printed.
fn check(text: &str, want: &Want<'_>) -> Result<(), String> {
    let fail = |why: String| Err(format!("{why}; crash printed:\n{text}"));
    let Some(a) = split(text) else {
        return fail("no sys, bt -a and log answers".into());
    };
    if sys_field(&a.sys, "RELEASE") != Some(want.release) {
        return fail(format!("sys: RELEASE is not {}", want.release));
    }
    if sys_field(&a.sys, "CPUS") != Some(want.cpus.to_string().as_str()) {
        return fail(format!("sys: CPUS is not {}", want.cpus));
    }
    let starts: Vec<usize> = (0..a.bt.len())
        .filter(|&i| a.bt[i].starts_with("PID:"))
        .collect();
    if starts.len() != want.cpus {
        return fail(format!(
            "bt -a: {} backtraces for {} vCPUs",
            starts.len(),
            want.cpus
        ));
    }
    for cpu in 0..want.cpus {
        let tag = format!(" CPU: {cpu} ");
        let Some(k) = starts.iter().position(|&i| a.bt[i].contains(&tag)) else {
            return fail(format!("bt -a: no backtrace for CPU {cpu}"));
        };
        let end = starts.get(k + 1).copied().unwrap_or(a.bt.len());
        let framed = a.bt[starts[k] + 1..end].iter().any(|l| {
            let l = l.trim_start();
            l.starts_with('#') || l.starts_with("PC:")
        });
        if !framed {
            return fail(format!("bt -a: CPU {cpu}'s backtrace has no frame"));
        }
    }
    let error = text.lines().find(|l| {
        !l.starts_with('[')
            && ["cannot", "WARNING", "bt: ", "log: ", "crash: "]
                .iter()
                .any(|e| l.contains(e))
    });
    if let Some(l) = error {
        return fail(format!("an error: {l:?}"));
    }
    if !a.log.iter().any(|l| l.contains(want.last_line)) {
        return fail(format!("log: {:?} is missing", want.last_line));
    }
    Ok(())
}

/// crash with `options` on QEMU's ELF of `guest` and on guestcore's `outputs` of it (name,
/// `guestcore` arguments less `-o`, with `STREAM` and `QEMU` standing for the capture's
/// migration stream and ELF): each must pass [`check`] and print what it printed on QEMU's ELF.
fn check_guest(guest: &str, flavour: &str, options: &[&str], outputs: &[(&str, &[&str])]) {
    let Some(dir) = capture(guest) else { return };
    let Some(bin) = crash_arm64() else { return };
    let release = std::fs::read_to_string(dir.join("release.txt"))
        .unwrap()
        .trim()
        .to_string();
    let Some(vmlinux) = vmlinux(&release) else {
        skip(format_args!(
            "{guest}: no debug vmlinux for {release} (scripts/guest/fetch.sh debug-{flavour})"
        ));
        return;
    };
    let last_line = last_console_line(&dir);
    let want = Want {
        release: &release,
        cpus: facts(&dir)["cpus"].parse().unwrap(),
        last_line: &last_line,
    };
    let tmp = tempfile::tempdir().unwrap();
    let commands = tmp.path().join("crash.cmds");
    std::fs::write(&commands, COMMANDS).unwrap();
    let run = |core: &Path| crash_with(&bin, options, &vmlinux, core, &commands);

    let qemu = dir.join("phys.elf");
    let stream = dir.join("migration.bin");
    let mut files = vec![("QEMU's ELF".to_string(), qemu.clone())];
    for (i, (what, args)) in outputs.iter().enumerate() {
        let path = tmp.path().join(format!("out{i}"));
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "STREAM" => stream.to_str().unwrap(),
                "QEMU" => qemu.to_str().unwrap(),
                a => a,
            })
            .collect();
        dump(&args, &path);
        files.push((what.to_string(), path));
    }
    let results = two_at_a_time(&files, |(_, path)| run(path));
    let want_text = match &results[0] {
        Ok(t) => t.clone(),
        Err(e) => panic!("{guest}: crash on QEMU's ELF: {e}"),
    };
    check(&want_text, &want).unwrap_or_else(|e| panic!("{guest}: crash on QEMU's ELF: {e}"));
    let mut failures = Vec::new();
    for ((what, _), r) in files.iter().zip(&results).skip(1) {
        match r {
            Err(e) => failures.push(format!("crash on the {what}: {e}")),
            Ok(text) => {
                if let Err(e) = check(text, &want) {
                    failures.push(format!("crash on the {what}: {e}"));
                } else if *text != want_text {
                    failures.push(format!(
                        "crash on the {what} differs from crash on QEMU's ELF: {}",
                        first_difference(&want_text, text)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{guest}:\n{}", failures.join("\n\n"));
    eprintln!(
        "{guest}: crash {CRASH_VERSION} (ARM64) prints sys, bt -a and log on {} outputs as on QEMU's ELF",
        outputs.len()
    );
}

#[test]
fn crash_arm64_reads_the_4k_guest() {
    check_guest(
        "aarch64",
        "arm64",
        &[],
        &[
            ("physical ELF of the stream", &["dump", "STREAM"]),
            ("paging ELF of the stream", &["dump", "--paging", "STREAM"]),
            (
                "kdump-zstd of the stream",
                &["dump", "--format", "kdump-zstd", "STREAM"],
            ),
            ("paging ELF of QEMU's ELF", &["dump", "--paging", "QEMU"]),
        ],
    );
}

/// The 16 KiB kernel without LPA2: crash needs the physical start of RAM as `phys_offset` (see
/// the module doc), here the first RAM range of QEMU's ELF (1 GiB on `virt`). Runs only where
/// the 16 KiB kernel's debug vmlinux is in the cache.
#[test]
fn crash_arm64_reads_the_16k_47_bit_guest_given_phys_offset() {
    let guest = "aarch64-16k-47";
    let Some(dir) = capture(guest) else { return };
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    if vmlinux(release.trim()).is_none() {
        eprintln!(
            "{guest}: not run: no debug vmlinux for {} (scripts/guest/fetch.sh debug-arm64-16k, a 1 GB download scripts/test.sh leaves out)",
            release.trim()
        );
        return;
    }
    let image = GuestImage::open(dir.join("phys.elf"), &OpenOptions::default()).unwrap();
    let ram_start = image.memory.ram().ranges()[0].start;
    let machdep = format!("phys_offset={ram_start:#x}");
    check_guest(
        guest,
        "arm64-16k",
        &["--machdep", &machdep],
        &[
            ("physical ELF of the stream", &["dump", "STREAM"]),
            ("paging ELF of the stream", &["dump", "--paging", "STREAM"]),
        ],
    );
}
