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
    // `read -o` writes atomically and, like `dump`, replaces a file only with --force.
    let out = dir.path().join("read.bin");
    std::fs::write(&out, b"old").unwrap();
    let read_to = |force: bool| {
        let mut c = guestcore();
        c.args(["read", "-q"])
            .arg(&elf)
            .args(["0xffffffff81001000", "9", "-o"])
            .arg(&out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let refused = read_to(false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert!(read_to(true).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"guestcore");
}

/// `--json-lines` writes `--json`'s elements, one compact object per line; `mem`'s carry their
/// vCPU (`--json` names it once per vCPU object).
#[test]
fn json_lines_are_the_json_elements() {
    let dir = tempfile::tempdir().unwrap();
    let (elf, ..) = guest(dir.path());
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&stdout(guestcore().args(args).arg(&elf))).unwrap()
    };
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let text = stdout(guestcore().args(args).arg(&elf));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut want = Vec::new();
    for cpu in json(&["mem", "-q", "--all-cpus", "--json"])
        .as_array()
        .unwrap()
    {
        for m in cpu["mappings"].as_array().unwrap() {
            let mut m = m.clone();
            m["cpu"] = cpu["cpu"].clone();
            want.push(m);
        }
    }
    assert!(want.len() > 10);
    assert_eq!(lines(&["mem", "-q", "--all-cpus", "--json-lines"]), want);
    assert_eq!(
        lines(&["tlb", "-q", "--all-cpus", "--json-lines"]),
        lines(&["tlb", "-q", "--all-cpus", "--json"])
    );
    let kernels = json(&["kernels", "-q", "--json"]);
    assert_eq!(
        &lines(&["kernels", "-q", "--json-lines"]),
        kernels.as_array().unwrap()
    );
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

/// A 4-level guest whose every PML4 entry points at the PML4 itself: 512^4 paths without a
/// limit.
fn looping_pml4() -> (guestcore::phys::VecMemory, guestcore::cpu::X86CpuState) {
    let mut b = GuestBuilder::new(ModeKind::Level4, 1 << 20);
    let root = b.root();
    for i in 0..512 {
        b.write_u64(root + i * 8, root | 0x7);
    }
    b.build_vec()
}

#[test]
fn corrupt_tables_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, cpu) = looping_pml4();
    let elf = dir.path().join("loop.elf");
    write_qemu_like_core(&elf, &mem, &[cpu], None).unwrap();
    let out = guestcore()
        .args(["mem", "--max-entries", "100000"])
        .arg(&elf)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: vCPU 0: walk stopped early (--max-entries limit)"),
        "{err}"
    );
}

/// stderr of a successful `guestcore -q ARGS…`.
fn quiet_stderr(args: &[&str], input: &Path, tail: &[&str]) -> String {
    let out = guestcore()
        .arg("-q")
        .args(args)
        .arg(input)
        .args(tail)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    err
}

#[test]
fn warnings_survive_quiet() {
    let dir = tempfile::tempdir().unwrap();
    // A walk cut by a limit.
    let (elf, ..) = guest(dir.path());
    let err = quiet_stderr(&["mem", "--max-leaves", "2"], &elf, &[]);
    assert!(
        err.contains("warning: vCPU 0: walk stopped early (--max-leaves limit)"),
        "{err}"
    );
    // --quiet hides notes: no "using vCPU 0" here.
    assert!(!err.contains("using vCPU"), "{err}");

    // A 32-bit root whose every entry points at itself: a million aliases of one page.
    let mut b = GuestBuilder::new(ModeKind::Bits32, 1 << 20);
    let root = b.root();
    for i in 0..1024 {
        b.write_phys(root + i * 4, &((root as u32) | 0x7).to_le_bytes());
    }
    let (mem, _) = b.build_vec();
    let raw = dir.path().join("selfmap.raw");
    write_raw_image(&raw, &mem).unwrap();
    let cr3 = format!("{root:#x}");
    let err = quiet_stderr(&["tlb", "--mode", "32", "--cr3", &cr3], &raw, &[]);
    assert!(
        err.contains("warning: vCPU 0: the page tables refer to themselves (1024 entries")
            && err.contains("1048576 leaves alias 1 physical pages"),
        "{err}"
    );

    // --paging on a vCPU with paging off.
    let out_file = dir.path().join("off.elf");
    let err = quiet_stderr(
        &["dump", "--paging", "--mode", "off", "--cr3", "0", "-o"],
        &out_file,
        &[raw.to_str().unwrap()],
    );
    assert!(
        err.contains("warning: vCPU 0 has paging off: writing the physical layout"),
        "{err}"
    );
    assert!(out_file.exists());
}

#[test]
fn all_cpus_union_keeps_one_view_per_page_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GuestBuilder::new(ModeKind::Level4, 16 << 20);
    b.map_page(0x40_0000, 0x30_0000, PageSize::Size4K, MapFlags::WRITE);
    b.write_phys(0x30_0000, b"vCPU 0's page");
    b.write_phys(0x30_2000, b"vCPU 1's page");
    // vCPU 1: its own tables map the same page elsewhere, and one more page.
    let chain: Vec<u64> = (0..4).map(|_| b.alloc_frame()).collect();
    b.write_u64(chain[0], chain[1] | 7);
    b.write_u64(chain[1], chain[2] | 7);
    b.write_u64(chain[2] + 2 * 8, chain[3] | 7);
    b.write_u64(chain[3], 0x30_2000 | 7);
    b.write_u64(chain[3] + 8, 0x30_3000 | 7);
    let (mem, cpu0) = b.build_vec();
    let mut cpu1 = cpu0.clone();
    cpu1.index = 1;
    cpu1.cr[3] = chain[0];
    let elf = dir.path().join("two.elf");
    write_qemu_like_core(&elf, &mem, &[cpu0, cpu1], None).unwrap();

    let out_file = dir.path().join("union.elf");
    let err = quiet_stderr(
        &["dump", "--paging", "--all-cpus", "-o"],
        &out_file,
        &[elf.to_str().unwrap()],
    );
    assert!(
        err.contains("warning: the vCPUs' page tables disagree on 1 virtual ranges (4 KiB)")
            && err.contains(
                "0x400000-0x400fff is 0x300000 on vCPU 0 (kept) but 0x302000 on vCPU 1 (dropped)"
            ),
        "{err}"
    );
    let core = guestcore::phys::elf::ElfCore::open(&out_file).unwrap();
    let covering = |va: u64| -> Vec<u64> {
        core.segments()
            .iter()
            .filter(|s| s.vaddr <= va && va < s.vaddr + s.memsz && s.vaddr != s.paddr)
            .map(|s| s.paddr + (va - s.vaddr))
            .collect()
    };
    assert_eq!(covering(0x40_0000), vec![0x30_0000], "one view of the page");
    assert_eq!(
        covering(0x40_1000),
        vec![0x30_3000],
        "vCPU 1 adds its new page"
    );
    // Without --quiet the summary says where each part came from.
    let out_file = dir.path().join("union2.elf");
    let out = guestcore()
        .args(["dump", "--paging", "--all-cpus", "-o"])
        .arg(&out_file)
        .arg(&elf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vCPU 0: 1 mappings") && err.contains("vCPU 1: 1 mappings"),
        "{err}"
    );
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
    // A dump level that needs a kernel's page array, on an input with no VMCOREINFO: a clear
    // error, never an unfiltered file. Level 32 does not exist.
    fails(
        guestcore()
            .args(["dump", "--dump-level", "31"])
            .arg(&elf)
            .arg("-o")
            .arg(&out),
        "needs the kernel's page array",
    );
    let out2 = guestcore()
        .args(["dump", "-q", "--dump-level", "32"])
        .arg(&elf)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!out2.status.success());
    assert!(String::from_utf8_lossy(&out2.stderr).contains("0-31"));
    assert_eq!(crate::dump_output::names_in(&out_dir), Vec::<String>::new());
    // Level 1 needs no kernel: --dry-run counts the zero pages and writes nothing.
    let dry = stdout(
        guestcore()
            .args(["dump", "-q", "--dump-level", "1", "--dry-run", "--json"])
            .arg(&elf),
    );
    let v: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(v["level"], 1);
    assert!(v["excluded"]["zero"].as_u64().unwrap() > 1000, "{dry}");
    assert_eq!(v["page_array"], false);
    assert!(v["page_array_skipped"].is_string());
    assert_eq!(
        v["kept"].as_u64().unwrap() + v["excluded"]["zero"].as_u64().unwrap(),
        v["ram_frames"].as_u64().unwrap()
    );
    assert_eq!(crate::dump_output::names_in(&out_dir), Vec::<String>::new());
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
    assert_eq!(
        crate::dump_output::names_in(&out_dir),
        vec!["x.elf".to_string()]
    );
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

/// A 4-level kernel whose VMCOREINFO note sits at a page start of RAM, as Linux keeps it:
/// returns the builder's memory, a vCPU with paging off, and the string's virtual address.
fn kernel_in_ram() -> (guestcore::phys::VecMemory, guestcore::cpu::X86CpuState, u64) {
    let k = 0xffff_ffff_8000_0000u64;
    let mut b = GuestBuilder::new(ModeKind::Level4, 8 << 20).tables_at(0x60_0000);
    b.map(k, 0, 4 << 20, MapFlags::WRITE);
    let root = b.root();
    b.write_phys(0x20_0000, b"Linux\0kernel in RAM\0");
    let text = format!(
        "OSRELEASE=6.1.0-ram\nPAGESIZE=4096\nSYMBOL(init_top_pgt)={:x}\nSYMBOL(init_uts_ns)={:x}\nNUMBER(phys_base)=0\n",
        k + root,
        k + 0x20_0000
    );
    let mut note = Vec::new();
    guestcore::format::ElfNote::new(b"VMCOREINFO", 0, text.into_bytes()).encode_into(&mut note);
    b.write_phys(0x5000, &note);
    let (mem, mut cpu) = b.build_vec();
    // Paging off: reset, firmware, real mode.
    (cpu.cr[0], cpu.cr[4], cpu.efer) = (0x11, 0, 0);
    (mem, cpu, k + 0x20_0006)
}

#[test]
fn kernel_tables_without_a_usable_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, cpu, va) = kernel_in_ram();
    let elf = dir.path().join("off.elf");
    write_qemu_like_core(&elf, &mem, &[cpu], None).unwrap();
    let p = elf.to_str().unwrap();
    let listed = stdout(guestcore().args(["kernels", p]));
    assert!(
        listed.contains("kernel 0: 6.1.0-ram (other), VMCOREINFO at 0x5000")
            && listed.contains("page tables at 0x600000, 4-level"),
        "{listed}"
    );
    // --paging on a vCPU with paging off: the one kernel's tables, said on stderr.
    let out_file = dir.path().join("paging.elf");
    let err = quiet_stderr(&["dump", "--paging", "-o"], &out_file, &[p]);
    assert!(
        err.contains("has paging off: using the page tables of kernel 0 (6.1.0-ram) at 0x600000"),
        "{err}"
    );
    let core = guestcore::phys::elf::ElfCore::open(&out_file).unwrap();
    assert!(core
        .segments()
        .iter()
        .any(|s| s.vaddr == 0xffff_ffff_8000_0000));
    assert!(core
        .notes()
        .iter()
        .any(|n| n.name == b"VMCOREINFO" && n.desc.starts_with(b"OSRELEASE=6.1.0-ram")));
    // A raw image with no CPU state: --kernel reads through the kernel's own tables.
    let raw = dir.path().join("k.raw");
    let layout = write_raw_image(&raw, &mem).unwrap();
    let got = stdout(
        guestcore()
            .args(["read", "-q", "--layout", &layout, "--kernel", "0"])
            .arg(&raw)
            .args([&format!("{va:#x}"), "14"]),
    );
    assert_eq!(got, "kernel in RAM\0");
    let e = guestcore()
        .args(["read", "-q", "--layout", &layout, "--kernel", "crashed"])
        .arg(&raw)
        .args([&format!("{va:#x}"), "14"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&e.stderr);
    assert!(
        e.contains("no crashed kernel") && e.contains("0 6.1.0-ram (other)"),
        "{e}"
    );
}

#[test]
fn all_cpus_share_one_walk_budget() {
    // 64 vCPUs, each on tables that point at themselves: one budget for the command, not 64.
    let dir = tempfile::tempdir().unwrap();
    let (mem, cpu) = looping_pml4();
    let cpus: Vec<_> = (0..64)
        .map(|i| {
            let mut c = cpu.clone();
            c.index = i;
            c
        })
        .collect();
    let elf = dir.path().join("many.elf");
    write_qemu_like_core(&elf, &mem, &cpus, None).unwrap();
    let out = guestcore()
        .args(["tlb", "-q", "--all-cpus", "--max-leaves", "5000"])
        .arg(&elf)
        .output()
        .unwrap();
    assert!(out.status.success());
    let leaves = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("CPU#") && !l.is_empty())
        .count();
    assert!(
        leaves <= 5000,
        "{leaves} leaves listed for a budget of 5000"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: vCPU 63: walk stopped early (--max-leaves limit)"),
        "{err:.500}"
    );
}

#[test]
fn a_page_that_fails_to_decode_is_named_not_skipped() {
    // The kernel's VMCOREINFO page (0x5000) in an AVML image whose first snappy chunk (RAM
    // 0..64 KiB) fails its CRC: `kernels` finds none, and says which pages it could not read.
    let dir = tempfile::tempdir().unwrap();
    let (mem, ..) = kernel_in_ram();
    let ram = {
        let mut v = vec![0u8; 1 << 20];
        guestcore::phys::PhysMemory::read_at(&mem, 0, &mut v).unwrap();
        v
    };
    let mut stream = guestcore::format::avml::frame(&ram);
    let first_crc = guestcore::format::avml::STREAM_IDENTIFIER.len() + 4;
    stream[first_crc] ^= 0xff;
    let avml = dir.path().join("bad-chunk.avml");
    std::fs::write(
        &avml,
        guestcore::format::avml::encode_range_framed(0, ram.len() as u64, &stream),
    )
    .unwrap();
    let out = guestcore()
        .args(["kernels", "-q"])
        .arg(&avml)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "16 pages of RAM could not be read while looking for kernels (the first at 0x0:"
        ),
        "status {:?}, stdout {}, stderr {err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    // The intact image lists the kernel and warns of nothing.
    let good = dir.path().join("good.avml");
    std::fs::write(&good, guestcore::format::avml::encode_range(0, &ram)).unwrap();
    let out = guestcore()
        .args(["kernels", "-q"])
        .arg(&good)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        o.contains("6.1.0-ram") && e.is_empty(),
        "stdout {o}\nstderr {e}"
    );
}

#[test]
fn every_dump_carries_the_vmcoreinfo_of_the_kernel_in_ram() {
    // An input with no VMCOREINFO note (QEMU without -device vmcoreinfo): every output kind
    // carries the note of the kernel found in RAM, and says so.
    let dir = tempfile::tempdir().unwrap();
    let (mem, cpu, _) = kernel_in_ram();
    let elf = dir.path().join("no-note.elf");
    write_qemu_like_core(&elf, &mem, &[cpu], None).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("phys.elf", &[]),
        ("elf32.elf", &["--elf-class", "32"]),
        (
            "window.elf",
            &["--begin", "0x100000", "--length", "0x100000"],
        ),
        ("zstd.kdump", &["--format", "kdump-zstd"]),
        (
            "zlib.kdump",
            &["--format", "kdump-zlib", "--dump-level", "1"],
        ),
        ("flat.kdump", &["--format", "kdump-lzo", "--flatten"]),
    ];
    for (name, args) in cases {
        let out_file = dir.path().join(name);
        let out = guestcore()
            .arg("dump")
            .args(*args)
            .arg(&elf)
            .arg("-o")
            .arg(&out_file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            err.contains("VMCOREINFO: kernel 0's (6.1.0-ram), found in RAM at 0x5000 (the input carries none)"),
            "{name}: {err}"
        );
        let img = guestcore::GuestImage::open(&out_file, &Default::default()).unwrap();
        let text = img.vmcoreinfo.as_deref().unwrap_or_default();
        assert!(
            text.starts_with(b"OSRELEASE=6.1.0-ram\nPAGESIZE=4096\n"),
            "{name}: VMCOREINFO {:?}",
            String::from_utf8_lossy(text)
        );
    }
    // Memory with no kernel in it: said once, as a warning that survives --quiet.
    let (mem, cpu) = GuestBuilder::new(ModeKind::Level4, 1 << 20).build_vec();
    let bare = dir.path().join("bare.elf");
    write_qemu_like_core(&bare, &mem, &[cpu], None).unwrap();
    let err = quiet_stderr(
        &["dump", "-o"],
        &dir.path().join("bare-out.elf"),
        &[bare.to_str().unwrap()],
    );
    assert_eq!(
        err.matches("no Linux kernel found in memory").count(),
        1,
        "{err}"
    );
}

#[test]
fn empty_and_tiny_inputs_are_errors_not_empty_guests() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, want) in [
        (
            "empty.dmp",
            &b""[..],
            "empty.dmp: empty file: no guest memory",
        ),
        (
            "tiny.bin",
            &[0u8; 100][..],
            "tiny.bin: 100 bytes, no known format's header and less than one page of memory",
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        for cmd in ["info", "kernels", "mem"] {
            fails(guestcore().arg(cmd).arg(&p), want);
        }
    }
}
