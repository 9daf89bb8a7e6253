//! A live AArch64 guest: `guestcore … qmp:SOCKET` on a running `qemu-system-aarch64 -M virt`.
//!
//! QEMU's HMP register text of an aarch64 vCPU has no system registers, so every view of the
//! live guest goes through the kernel's own page tables found in its RAM. Checked against
//! QEMU itself: `translate` equals HMP `gva2gpa` (over the second monitor), reads give the
//! release the guest printed, and a background snapshot stops the guest for milliseconds (by
//! guestcore's own count of QEMU's stop) and yields cores that read back and say aarch64. On
//! the 16 KiB-page kernel, the snapshot's kdump files have 16 KiB blocks, built from the
//! stream's 4 KiB pages, and libkdumpfile reads them.
//!
//! Needs `qemu-system-aarch64` and the harness's arm64 kernel and busybox under
//! `$GUESTCORE_CACHE` or `~/.cache/guestcore/guests` (`scripts/guest/fetch.sh arm64`); the
//! initramfs is the cached one, or built here when no capture has made it yet. Skips, saying
//! why, otherwise (fails instead under `CI=true`). QEMU is killed by PID when the guard drops.

use super::*;

/// The guest files of the arm64 kernel `flavour` (`arm64`, `arm64-16k`), or the reason to
/// skip.
fn aarch64_files(flavour: &str) -> Result<GuestFiles, String> {
    if !which("qemu-system-aarch64") {
        return Err("qemu-system-aarch64 is not installed".into());
    }
    let cache = guestcore_testkit::tools::guest_cache();
    let kernel = cache.join(format!("kernels/{flavour}/vmlinuz"));
    let initrd = cache.join(format!("initramfs/{flavour}.cpio.gz"));
    if !kernel.is_file() {
        return Err(format!(
            "no {} (run scripts/guest/fetch.sh {flavour}, or set GUESTCORE_CACHE)",
            kernel.display()
        ));
    }
    if initrd.is_file() {
        return Ok(GuestFiles {
            kernel,
            initrd,
            _tmp: None,
        });
    }
    let (initrd, tmp) = build_initramfs(flavour, "arm64", None)?;
    Ok(GuestFiles {
        kernel,
        initrd,
        _tmp: Some(tmp),
    })
}

/// `guestcore ARGS…`, which must succeed: (stdout, stderr).
fn run(args: &[&str]) -> (String, String) {
    let out = succeed(guestcore().args(args));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The guest's state as the second monitor sees it.
fn running_b(g: &Guest) -> bool {
    g.qmp_b().execute("query-status", None).unwrap()["running"] == true
}

/// A background-snapshot dump of the running guest into `out`: guestcore's own count of the
/// stop (its "guest stopped N ms" line), which must be there.
fn snapshot(g: &Guest, args: &[&str], out: &Path) -> (u64, String) {
    let o = out.to_str().unwrap();
    let mut all = vec!["dump", &g.input];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", o]);
    let (_, stderr) = run(&all);
    let ms = stderr
        .split_once("background snapshot: guest stopped ")
        .and_then(|(_, rest)| rest.split_once(" ms"))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no \"guest stopped N ms\" line: {stderr}"));
    (ms, stderr)
}

/// `init_uts_ns` from the VMCOREINFO note of a core (the kernel's own `SYMBOL(init_uts_ns)`:
/// the arm64 kernel's kallsyms has no data symbols for the console to print).
fn init_uts_ns(core: &Path) -> u64 {
    let bytes = std::fs::read(core).unwrap();
    let key = b"SYMBOL(init_uts_ns)=";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .unwrap_or_else(|| panic!("no SYMBOL(init_uts_ns) in {}", core.display()))
        + key.len();
    let hex: String = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .map(|&b| b as char)
        .collect();
    u64::from_str_radix(&hex, 16).unwrap()
}

/// The release through `guestcore read INPUT init_uts_ns+130 65` (and any extra args).
fn read_release(input: &str, extra: &[&str], uts: u64) -> String {
    let at = format!("{:#x}", uts + 130);
    let mut args = vec!["read"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[input, &at, "65"]);
    run(&args).0.trim_end_matches(['\0', ' ']).to_string()
}

#[test]
fn aarch64_live_guest_reads_translates_and_snapshots() {
    let files = guest_or_skip!(aarch64_files("arm64"));
    let g = Guest::boot_on(&files, "256M", Board::Virt);
    let release = g.line("GUESTCORE-RELEASE");
    const STOP_BOUND_MS: u64 = 50;

    // info: aarch64 vCPUs from HMP, the kernel found in live RAM; the guest runs on.
    let (out, err) = run(&["info", &g.input]);
    assert!(
        out.contains("live QEMU guest") && out.contains("CPU#1 PC=") && out.contains(&release),
        "info:\n{out}\n{err}"
    );
    assert!(running_b(&g), "info resumed the guest");
    let (out, _) = run(&["kernels", &g.input]);
    assert!(
        out.contains(&release) && out.contains("aarch64"),
        "kernels: {out}"
    );

    // A background snapshot, ELF: the guest stays running, the stop is short, the core
    // reads back and says aarch64.
    let elf = g.path("snap.elf");
    let (ms, stderr) = snapshot(&g, &[], &elf);
    eprintln!("ELF snapshot: guest stopped {ms} ms");
    assert!(ms <= STOP_BOUND_MS, "stopped {ms} ms: {stderr}");
    assert!(running_b(&g), "the guest runs after the snapshot");
    let uts = init_uts_ns(&elf);
    let elf_in = elf.to_str().unwrap();
    assert_eq!(read_release(elf_in, &[], uts), release, "read of the ELF");
    let (out, _) = run(&["info", elf_in]);
    assert!(
        out.contains("ELF64 core, aarch64"),
        "info of the ELF: {out}"
    );
    let j = info_json(&elf);
    assert_eq!(j["osrelease"], release.as_str(), "{j}");

    // translate equals QEMU's own gva2gpa of the same address.
    let (out, _) = run(&["translate", &g.input, &format!("{uts:#x}")]);
    let ours = out.trim().to_string();
    let theirs = g.qmp_b().hmp(&format!("gva2gpa {uts:#x}")).unwrap();
    assert!(ours.starts_with("gpa: 0x"), "translate: {ours}");
    assert_eq!(ours, theirs.trim(), "translate vs HMP gva2gpa of {uts:#x}");

    // read, paused and not; mem lists the kernel's linear map.
    assert_eq!(read_release(&g.input, &[], uts), release, "read (paused)");
    assert_eq!(
        read_release(&g.input, &["--no-pause"], uts),
        release,
        "read --no-pause"
    );
    let (out, _) = run(&["mem", &g.input]);
    assert!(out.lines().count() > 3, "mem: {out}");
    assert!(running_b(&g));

    // dmesg of the running guest: its banner.
    let (log, _) = run(&["dmesg", "--no-pause", &g.input]);
    assert!(
        log.contains(&format!("Linux version {release}")),
        "dmesg --no-pause: {log:.400}"
    );

    // A background snapshot as kdump-zstd.
    let kd = g.path("snap.kdump");
    let (ms, stderr) = snapshot(&g, &["--format", "kdump-zstd"], &kd);
    eprintln!("kdump-zstd snapshot: guest stopped {ms} ms");
    assert!(ms <= STOP_BOUND_MS, "stopped {ms} ms: {stderr}");
    assert!(stderr.contains("kdump-zstd"), "{stderr}");
    assert!(running_b(&g));
    let kd_in = kd.to_str().unwrap();
    assert_eq!(read_release(kd_in, &[], uts), release, "read of the kdump");
    let j = info_json(&kd);
    assert_eq!(j["osrelease"], release.as_str(), "{j}");
    let (out, _) = run(&["info", kd_in]);
    assert!(out.contains("aarch64"), "info of the kdump: {out}");

    // A --pause dump: paused for the copy, running after.
    let paused = g.path("paused.elf");
    let (_, stderr) = run(&["dump", "--pause", &g.input, "-o", paused.to_str().unwrap()]);
    assert!(stderr.contains("guest paused for"), "{stderr}");
    assert!(running_b(&g), "the --pause dump resumed the guest");
    let p_in = paused.to_str().unwrap();
    assert_eq!(
        read_release(p_in, &[], uts),
        release,
        "read of the --pause dump"
    );
    let (out, _) = run(&["info", p_in]);
    assert!(
        out.contains("ELF64 core, aarch64"),
        "info of the --pause dump: {out}"
    );
}

/// A live 16 KiB-page guest (bookworm-backports' arm64-16k kernel; `-cpu max`: 52-bit VA with
/// LPA2): its background snapshot as a kdump file has 16 KiB blocks, assembled from the
/// stream's 4 KiB pages as they arrive (the pages the running guest writes come early and out
/// of order); guestcore and libkdumpfile read the release out of it, and the guest runs on.
#[test]
fn aarch64_16k_live_guest_snapshots_kdump_in_its_pages() {
    let files = guest_or_skip!(aarch64_files("arm64-16k"));
    let g = Guest::boot_on(&files, "256M", Board::Virt);
    let release = g.line("GUESTCORE-RELEASE");
    for c in ["zstd", "lzo"] {
        let kd = g.path(&format!("snap16.kdump-{c}"));
        let (ms, stderr) = snapshot(&g, &["--format", &format!("kdump-{c}")], &kd);
        eprintln!("16k kdump-{c} snapshot: guest stopped {ms} ms");
        assert!(stderr.contains("pages of 16 KiB dumped"), "{stderr}");
        assert!(running_b(&g), "the snapshot left the guest running");
        let k = guestcore::phys::kdump::KdumpFile::open(&kd).unwrap();
        assert_eq!(k.info().block_size, 16384, "kdump-{c}: {:?}", k.info());
        assert_eq!(k.info().machine, "aarch64", "kdump-{c}");
        let uts = init_uts_ns(&kd);
        let kd_in = kd.to_str().unwrap();
        assert_eq!(read_release(kd_in, &[], uts), release, "kdump-{c}: read");
        crate::real_guests::debuggers::libkdumpfile_reads_release(
            &kd,
            uts + 130,
            &release,
            &format!("16k live kdump-{c} snapshot"),
        );
        // drgn walks the task list, which the guest changes while the snapshot streams: its
        // pages come early and out of order, and their blocks are put together all the same.
        let vmlinux = guestcore_testkit::tools::guest_cache().join("kernels/arm64-16k/vmlinux");
        let have = std::fs::read_to_string(vmlinux.with_file_name("vmlinux.release"));
        match crate::real_guests::debuggers::drgn() {
            Some(drgn) if have.is_ok_and(|r| r.trim() == release) => {
                let script = g.path("drgn.py");
                std::fs::write(&script, crate::real_guests::debuggers::DRGN_SCRIPT).unwrap();
                let text = crate::real_guests::debuggers::drgn_run(&drgn, &vmlinux, &kd, &script)
                    .unwrap_or_else(|e| panic!("drgn on the 16k kdump-{c} snapshot: {e}"));
                assert!(
                    text.starts_with(&format!("release {release}"))
                        && text.lines().filter(|l| l.starts_with("task ")).count() > 10,
                    "drgn on the 16k kdump-{c} snapshot: {text}"
                );
            }
            _ => guestcore_testkit::tools::skip(format_args!(
                "no drgn or no debug vmlinux for {release} (fetch.sh debug-arm64-16k)"
            )),
        }
    }
}
