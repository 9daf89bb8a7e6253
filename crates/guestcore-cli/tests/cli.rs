//! The CLI on generated guests: snapshots of every listing (text and JSON) and the one-line
//! errors of bad input. The guests are built with the testkit and written as ELF cores or raw
//! images at test time, so the snapshots show exactly what a user would see.

use assert_cmd::Command;
use guestcore::paging::ModeKind;
use guestcore_testkit::fixture::{write_qemu_like_core, write_raw_image};
use guestcore_testkit::{GuestBuilder, MapFlags, PageSize};
use std::path::{Path, PathBuf};

fn guestcore() -> Command {
    Command::cargo_bin("guestcore").expect("binary built")
}

/// A small PC-like 4-level guest: user pages, kernel text, a 2 MiB direct-map page over the
/// VGA hole (split into RAM and I/O parts), an alias, an MMIO leaf, a known string.
fn guest(dir: &Path) -> (PathBuf, PathBuf, u64, String) {
    let mut b = GuestBuilder::pc(ModeKind::Level4, 16 << 20).tables_at(0x800000);
    let user = MapFlags::USER | MapFlags::WRITE | MapFlags::NX | MapFlags::ACCESSED;
    b.map_pages(0x400000, 0x300000, 0x3000, PageSize::Size4K, user);
    b.map_pages(
        0xffff_ffff_8100_0000,
        0x100000,
        0x4000,
        PageSize::Size4K,
        MapFlags::GLOBAL,
    );
    b.map_page(
        0xffff_8880_0000_0000,
        0,
        PageSize::Size2M,
        MapFlags::WRITE | MapFlags::NX,
    );
    b.map_page(
        0xffff_8880_0020_0000,
        0x200000,
        PageSize::Size2M,
        MapFlags::WRITE | MapFlags::NX,
    );
    b.map_page(
        0xffff_ff00_0000_0000,
        0x301000,
        PageSize::Size4K,
        MapFlags::NX,
    );
    b.map_page(
        0xffff_ff00_0001_0000,
        0x301000,
        PageSize::Size4K,
        MapFlags::NX,
    );
    b.map_page(
        0xffff_ffff_ff5f_c000,
        0xfee0_0000,
        PageSize::Size4K,
        MapFlags::WRITE | MapFlags::PCD,
    );
    b.write_phys(0x101000, b"guestcore knows this string\0");
    let (mem, mut cpu) = b.build_vec();
    cpu.rip = 0xffff_ffff_8100_1000;
    let mut cpu1 = cpu.clone();
    cpu1.index = 1;
    let elf = dir.join("guest.elf");
    write_qemu_like_core(
        &elf,
        &mem,
        &[cpu.clone(), cpu1],
        Some(b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n"),
    )
    .unwrap();
    let raw = dir.join("guest.raw");
    let layout = write_raw_image(&raw, &mem).unwrap();
    (elf, raw, cpu.cr[3], layout)
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn listings() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, raw, cr3, layout) = guest(dir.path());
    let info =
        stdout(guestcore().arg("info").arg(&elf)).replace(&elf.display().to_string(), "GUEST");
    insta::assert_snapshot!("info", info);
    insta::assert_snapshot!("mem", stdout(guestcore().args(["mem", "-q"]).arg(&elf)));
    insta::assert_snapshot!("tlb", stdout(guestcore().args(["tlb", "-q"]).arg(&elf)));
    insta::assert_snapshot!(
        "mem_json",
        stdout(guestcore().args(["mem", "-q", "--json"]).arg(&elf))
    );
    insta::assert_snapshot!(
        "translate_trace",
        stdout(
            guestcore()
                .args(["translate", "-q", "--trace"])
                .arg(&elf)
                .arg("0xffffffff81001008")
        )
    );
    insta::assert_snapshot!(
        "translate_json",
        stdout(
            guestcore()
                .args(["translate", "-q", "--json"])
                .arg(&elf)
                .arg("0xffffffff81001000")
        )
    );
    // The raw image with the registers given on the command line lists the same mappings.
    let from_raw = stdout(
        guestcore()
            .args(["mem", "-q", "--mode", "4level", "--cr3"])
            .arg(format!("{cr3:#x}"))
            .arg("--layout")
            .arg(&layout)
            .arg(&raw),
    );
    assert_eq!(from_raw, stdout(guestcore().args(["mem", "-q"]).arg(&elf)));
    // Bytes through the page tables, raw when piped.
    let bytes = guestcore()
        .args(["read", "-q"])
        .arg(&elf)
        .args(["0xffffffff81001000", "27"])
        .output()
        .unwrap();
    assert_eq!(bytes.stdout, b"guestcore knows this string");
    let bytes = guestcore()
        .args(["read", "-q", "--phys", "--layout", &layout])
        .arg(&raw)
        .args(["0x101000", "9"])
        .output()
        .unwrap();
    assert_eq!(bytes.stdout, b"guestcore");
}

#[test]
fn default_cpu_is_stated() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, ..) = guest(dir.path());
    let out = guestcore().arg("mem").arg(&elf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("using vCPU 0"), "{err}");
    let out = guestcore()
        .args(["mem", "--all-cpus"])
        .arg(&elf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CPU#0") && text.contains("CPU#1"), "{text}");
}

/// Runs a command that must fail with exit status 1 and a one-line message containing `want`.
fn fails(cmd: &mut Command, want: &str) {
    let out = cmd.arg("-q").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        out.stdout.is_empty(),
        "no partial output: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(want), "{err:?} should mention {want:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, raw, _, _) = guest(dir.path());
    let bytes = std::fs::read(&elf).unwrap();
    for cut in [10usize, 64, 200, 5000] {
        let t = dir.path().join(format!("cut{cut}.elf"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        fails(guestcore().args(["mem"]).arg(&t), &t.display().to_string());
    }
    fails(
        guestcore().arg("mem").arg(dir.path().join("missing")),
        "missing",
    );
    fails(guestcore().arg("mem").arg(&raw), "no CPU state");
    fails(
        guestcore()
            .args(["mem", "--mode", "4level", "--cr3", "0x40000000"])
            .arg(&raw),
        "not in guest memory",
    );
    fails(
        guestcore()
            .args(["mem", "--mode", "pae", "--cr3", "0x1000", "--cr4", "0x1020"])
            .arg(&raw),
        "LA57",
    );
    fails(
        guestcore()
            .args(["translate"])
            .arg(&elf)
            .arg("0x0000800000000000"),
        "not canonical",
    );
    fails(
        guestcore().args(["translate"]).arg(&elf).arg("0x1234000"),
        "not present",
    );
    fails(
        guestcore()
            .args(["read", "--phys"])
            .arg(&raw)
            .args(["0xff0000", "0x100000"]),
        "not in guest memory",
    );
    fails(
        guestcore().args(["mem", "--cpu", "7"]).arg(&elf),
        "no vCPU 7",
    );
    // Usage errors are clap's: exit status 2 and the offending value named.
    let out = guestcore()
        .args(["mem", "--cr3", "12x"])
        .arg(&elf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"12x\""));
}

#[test]
fn corrupt_tables_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Every PML4 entry points at the PML4 itself: 512^4 paths without a limit.
    let mut b = GuestBuilder::new(ModeKind::Level4, 1 << 20);
    let root = b.root();
    for i in 0..512 {
        b.write_u64(root + i * 8, root | 0x7);
    }
    let (mem, cpu) = b.build_vec();
    let elf = dir.path().join("loop.elf");
    write_qemu_like_core(&elf, &mem, &[cpu], None).unwrap();
    let out = guestcore()
        .args(["mem", "--max-entries", "100000"])
        .arg(&elf)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("walk stopped early (entry limit)"), "{err}");
}

/// Files in `dir` (temporary files left behind would show here).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dump_bad_requests_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, ..) = guest(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.elf");
    // Filter outside RAM, ELF32 that cannot hold the MMIO page's physical address at 4 GiB-…
    fails(
        guestcore()
            .arg("dump")
            .arg(&elf)
            .arg("-o")
            .arg(&out)
            .args(["--begin", "8G", "--length", "1M"]),
        "not in guest memory",
    );
    fails(
        guestcore()
            .args(["dump", "--format", "kdump-zlib", "--paging"])
            .arg(&elf)
            .arg("-o")
            .arg(&out),
        "physical memory only",
    );
    assert_eq!(files_in(&out_dir), Vec::<String>::new());
    // An existing file is kept without --force.
    std::fs::write(&out, b"precious").unwrap();
    fails(
        guestcore().arg("dump").arg(&elf).arg("-o").arg(&out),
        "--force",
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // Unwritable target directory.
    fails(
        guestcore()
            .arg("dump")
            .arg(&elf)
            .arg("-o")
            .arg("/proc/guestcore-test.elf"),
        "/proc/guestcore-test.elf",
    );
    // With --force it is replaced, and only the output is left.
    let ok = guestcore()
        .args(["dump", "-q", "--paging", "--force"])
        .arg(&elf)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(files_in(&out_dir), vec!["x.elf".to_string()]);
    // It opens again: the notes came through (its page tables are not in it — a paging dump
    // holds only memory some mapping reaches, and this guest does not map its tables).
    let text = stdout(guestcore().args(["info"]).arg(&out));
    assert!(
        text.contains("CPU#1") && text.contains("OSRELEASE: 6.1.0-test"),
        "{text}"
    );
}

#[test]
fn dump_kdump_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, ..) = guest(dir.path());
    for fmt in [
        "kdump-zlib",
        "kdump-lzo",
        "kdump-snappy",
        "kdump-zstd",
        "kdump-raw",
    ] {
        let k = dir.path().join(format!("{fmt}.dump"));
        let out = guestcore()
            .args(["dump", "-q", "--format", fmt])
            .arg(&elf)
            .arg("-o")
            .arg(&k)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{fmt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Same listing and same bytes through the page tables as from the ELF source.
        assert_eq!(
            stdout(guestcore().args(["mem", "-q"]).arg(&k)),
            stdout(guestcore().args(["mem", "-q"]).arg(&elf)),
            "{fmt}"
        );
        let bytes = guestcore()
            .args(["read", "-q"])
            .arg(&k)
            .args(["0xffffffff81001000", "27"])
            .output()
            .unwrap();
        assert_eq!(bytes.stdout, b"guestcore knows this string", "{fmt}");
    }
    // A flattened stream on stdout reads back too.
    let flat = guestcore()
        .args(["dump", "-q", "--format", "kdump-zstd", "-o", "-"])
        .arg(&elf)
        .output()
        .unwrap();
    assert!(flat.status.success());
    assert!(flat.stdout.starts_with(b"makedumpfile"));
    let f = dir.path().join("flat.dump");
    std::fs::write(&f, &flat.stdout).unwrap();
    assert_eq!(
        stdout(guestcore().args(["mem", "-q"]).arg(&f)),
        stdout(guestcore().args(["mem", "-q"]).arg(&elf))
    );
}
