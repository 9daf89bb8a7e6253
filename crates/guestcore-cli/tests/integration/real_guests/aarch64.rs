//! guestcore on real aarch64 guests (issue 28), against the ground truth their captures hold
//! (`aarch64_capture` checks that truth against itself): QEMU's `gva2gpa` of kernel symbols
//! on every vCPU, the TTBR1_EL1 QEMU's gdbstub reported, the guest's own VMCOREINFO and
//! console.
//!
//! Inputs: QEMU's physical ELF dump and its kdump file (their aarch64 notes carry no
//! translation registers, so the kernel's own tables are used) and the migration stream (whose `cpu` sections carry all of
//! them). Outputs made from the stream — a physical and a paging ELF, a kdump-zstd file (in
//! blocks of the kernel's pages: 4 or 16 KiB) — are read by gdb-multiarch (the paging core),
//! libkdumpfile and drgn (on the 4 KiB guest; `aarch64_kdump` has drgn read the 16 KiB
//! kernels' kdump files).

use super::aarch64_capture::{sysregs, translations};
use super::capture::{cache_dir, capture};
use super::debuggers::{drgn, drgn_run, libkdumpfile_reads_release, DRGN_SCRIPT};
use super::{dump, guestcore};
use std::path::{Path, PathBuf};

/// The physical address `guestcore translate` prints for `va` (`None` when it says the
/// address is not mapped).
pub(super) fn translate(input: &Path, view: &[&str], va: u64) -> Option<u64> {
    let out = assert_cmd::Command::cargo_bin("guestcore")
        .unwrap()
        .args(["translate", "-q"])
        .args(view)
        .arg(input)
        .arg(format!("{va:#x}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            stderr.contains("not mapped"),
            "translate {view:?} {va:#x} of {}: {stderr}",
            input.display()
        );
        return None;
    }
    let pa = stdout
        .lines()
        .find_map(|l| l.strip_prefix("gpa: "))
        .unwrap_or_else(|| panic!("translate {va:#x}: {stdout}"));
    Some(u64::from_str_radix(pa.trim().trim_start_matches("0x"), 16).unwrap())
}

/// The debug vmlinux of an aarch64 guest's kernel, when the cache has it for `release`
/// (`scripts/guest/fetch.sh debug-arm64 debug-arm64-16k`, which `scripts/test.sh` runs).
pub(super) fn vmlinux(release: &str) -> Option<PathBuf> {
    ["kernels/arm64", "kernels/arm64-16k"]
        .iter()
        .map(|d| cache_dir().join(d))
        .find(|dir| {
            let have = std::fs::read_to_string(dir.join("vmlinux.release")).unwrap_or_default();
            have.trim() == release
        })
        .map(|dir| dir.join("vmlinux"))
}

/// The text of the last kernel line on the capture's console (`[ T] text`, less the
/// timestamp): the log of a dump of that instant must reach it.
pub(super) fn last_console_line(dir: &Path) -> String {
    let console = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    console
        .lines()
        .rev()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix('[')?
                .split_once("] ")
                .map(|x| x.1.to_string())
        })
        .expect("no kernel line on the console")
}

fn check_aarch64_guest(guest: &str) {
    let Some(dir) = capture(guest) else {
        return;
    };
    let release = std::fs::read_to_string(dir.join("release.txt"))
        .unwrap()
        .trim()
        .to_string();
    let phys = dir.join("phys.elf");
    let stream = dir.join("migration.bin");
    // QEMU's own kdump file (64 KiB blocks whatever the guest's pages, no machine name).
    let qemu_kdump = dir.join("kdump-zlib.dump");
    let truth = translations(&dir);
    let regs = sysregs(&dir);

    // The kernel's tables are where the vCPUs' TTBR1_EL1 points (ASID and CnP masked).
    let ttbr1 = regs[&(0, "TTBR1_EL1".to_string())];
    let root = ttbr1 & 0x0000_ffff_ffff_fffe & !0x3f;
    for input in [&phys, &stream, &qemu_kdump] {
        let out = guestcore(&["kernels"], input, &[]);
        assert!(
            out.contains(&release) && out.contains(&format!("page tables at {root:#x}, aarch64")),
            "{guest}: kernels of {}: {out}; TTBR1_EL1 {ttbr1:#x}",
            input.display()
        );
    }

    // Every symbol QEMU translated, on every vCPU: the stream's vCPU view, the same vCPU of
    // QEMU's ELF and the kernel view give what gva2gpa gave (or both say unmapped).
    let mut checked = 0;
    for (cpu, name, va, pa) in &truth {
        let cpu_arg = cpu.to_string();
        let got = translate(&stream, &["--cpu", &cpu_arg], *va);
        assert_eq!(got, *pa, "{guest}: vCPU {cpu} {name} {va:#x} in the stream");
        // A named vCPU of QEMU's ELF (no translation registers) takes the kernel's tables too.
        let got = translate(&phys, &["--cpu", &cpu_arg], *va);
        assert_eq!(got, *pa, "{guest}: vCPU {cpu} {name} {va:#x} in QEMU's ELF");
        if *cpu == 0 {
            let got = translate(&phys, &["--kernel", "0"], *va);
            assert_eq!(got, *pa, "{guest}: {name} {va:#x} by the kernel's tables");
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "{guest}: only {checked} translations to check"
    );
    let uts = truth
        .iter()
        .find(|t| t.1 == "init_uts_ns")
        .map(|t| t.2)
        .expect("no init_uts_ns in translations.txt");
    let release_at = uts + 130;

    // Reads with the default view: the stream's vCPU, and QEMU's ELF through the kernel's
    // tables (its vCPUs carry no translation registers).
    for input in [&phys, &stream, &qemu_kdump] {
        let out = guestcore(&["read"], input, &[&format!("{release_at:#x}"), "65"]);
        assert!(
            out.trim_end_matches('\0').starts_with(&release),
            "{guest}: read of {}: {out:?}",
            input.display()
        );
    }

    // The log reaches the console's last kernel line.
    let log = guestcore(&["dmesg"], &phys, &[]);
    let last = last_console_line(&dir);
    assert!(
        log.contains(&last),
        "{guest}: {last:?} not in the log:\n{log}"
    );

    // Dumps of the stream, read by the readers users use.
    let out = tempfile::tempdir().unwrap();
    let p = stream.to_str().unwrap();
    let mut files = vec![
        ("physical ELF", out.path().join("p.elf"), vec!["dump", p]),
        (
            "paging ELF",
            out.path().join("pg.elf"),
            vec!["dump", "--paging", p],
        ),
    ];
    // A kdump file's blocks are the kernel's pages (16 KiB on the 16 KiB guests):
    // `aarch64_kdump` checks every compression, from the ELF and the stream.
    files.push((
        "kdump-zstd",
        out.path().join("k.kdump"),
        vec!["dump", "--format", "kdump-zstd", p],
    ));
    for (what, path, args) in &files {
        dump(args, path);
        let info = guestcore(&["info"], path, &[]);
        assert!(
            info.contains("aarch64") && info.contains(&release),
            "{guest}: {what}: info says {info}"
        );
        libkdumpfile_reads_release(path, release_at, &release, &format!("{guest} {what}"));
    }
    gdb_multiarch_reads_release(&files[1].1, release_at, &release, guest);
    // drgn reads these files on the 4 KiB guest; on the 16 KiB guests `aarch64_kdump` has it
    // read guestcore's kdump files in every compression.
    if guest != "aarch64" {
        return;
    }
    match (drgn(), vmlinux(&release)) {
        (Some(drgn), Some(vmlinux)) => {
            let script = out.path().join("drgn.py");
            std::fs::write(&script, DRGN_SCRIPT).unwrap();
            for (what, path, _) in &files {
                let text = drgn_run(&drgn, &vmlinux, path, &script)
                    .unwrap_or_else(|e| panic!("{guest}: drgn on the {what}: {e}"));
                assert!(
                    text.starts_with(&format!("release {release}")),
                    "{guest}: drgn on the {what}: {text}"
                );
            }
        }
        _ => guestcore_testkit::tools::skip(format_args!(
            "{guest}: no drgn or no debug vmlinux for {release} (fetch.sh debug-arm64)"
        )),
    }
}

/// Asserts that gdb-multiarch, opening the paging core `core`, prints `release` at `addr`.
pub(super) fn gdb_multiarch_reads_release(core: &Path, addr: u64, release: &str, guest: &str) {
    let gdb = std::process::Command::new("gdb-multiarch")
        .args(["-batch", "-nx", "-ex", "set architecture aarch64", "-ex"])
        .arg(format!("core-file {}", core.display()))
        .arg("-ex")
        .arg(format!("x/s {addr:#x}"))
        .output();
    let Ok(gdb) = gdb else {
        guestcore_testkit::tools::skip(
            "gdb-multiarch is not installed (scripts/install-deps.sh test installs it)",
        );
        return;
    };
    let text = String::from_utf8_lossy(&gdb.stdout);
    assert!(
        text.contains(&format!("\"{release}\"")),
        "{guest}: gdb-multiarch x/s {addr:#x} printed {text:?}, stderr {:?}",
        String::from_utf8_lossy(&gdb.stderr)
    );
}

#[test]
fn aarch64_4k_48_bit_guest() {
    check_aarch64_guest("aarch64");
}

#[test]
fn aarch64_16k_52_bit_lpa2_guest() {
    check_aarch64_guest("aarch64-16k");
}

#[test]
fn aarch64_16k_47_bit_guest() {
    check_aarch64_guest("aarch64-16k-47");
}
