//! The kdump case on an aarch64 guest (issue 28): Debian's arm64 kernel crashed (sysrq-c)
//! into its capture kernel, loaded by kexec-tools (`scripts/guest/capture-kdump.sh` with
//! `GUESTCORE_ARCH=aarch64`), caught while the capture kernel runs, and dumped by QEMU as a
//! physical ELF. QEMU's aarch64 notes carry no TTBR/TCR, so every answer comes from memory:
//! the crashed kernel through kexec-tools' ELF core header, the capture kernel as the one in
//! the RAM that header leaves out. The migration stream of the same instant (whose vCPUs carry
//! TTBR1_EL1) names the vCPU in each kernel as well. Checked against what the guest printed
//! (`facts.txt`) and QEMU's `gva2gpa` through the vCPU in each kernel (`symbols.txt`,
//! `capture-symbols.txt`).
//! Nothing here depends on which vCPU crashed.

use super::aarch64::{gdb_multiarch_reads_release, translate, vmlinux};
use super::capture::capture;
use super::debuggers::{drgn, drgn_run, libkdumpfile_reads_release, DRGN_SCRIPT};
use super::dump;
use super::kdump_guest::{crashed_kernel_is_the_guests, elf_notes, ends, guestcore, Facts};
use guestcore::cpu::notes::cpus_of_machine;
use guestcore::format::vmcoreinfo::vmcoreinfo_symbol;
use guestcore::phys::elf::ElfCore;
use guestcore::{Guest, GuestOptions};
use std::path::Path;

/// `init_uts_ns.name.release`: after `sysname` and `nodename`, 65 bytes each.
const RELEASE_IN_UTS_NS: u64 = 65 * 2;

/// `name 0xVADDR 0xPADDR` lines of a symbols file (those QEMU could translate).
fn qemu_symbols(dir: &Path, file: &str) -> Vec<(String, u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let [name, va, pa] = l.split_whitespace().collect::<Vec<_>>()[..] else {
                return None;
            };
            Some((name.to_string(), hex(va)?, hex(pa)?))
        })
        .collect()
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn aarch64_kdump_capture_kernel() {
    let guest = "aarch64-kdump";
    let Some(dir) = capture(guest) else { return };
    let f = Facts::read(&dir);
    let phys = dir.join("phys.elf");
    let p = phys.to_str().unwrap();
    let release = f.get("release").to_string();
    let reserved = f.hex("crashkernel-start")..=f.hex("crashkernel-end");

    // 1. Two kernels: the crashed one through the core header at elfcorehdr, and its capture
    //    kernel, the one in the reservation the header leaves out.
    let (out, _) = guestcore(&["kernels", "--json", p]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{guest}: {list:?}");
    let crashed: Vec<_> = list.iter().filter(|k| k["role"] == "crashed").collect();
    assert_eq!(crashed.len(), 1, "{guest}: {list:?}");
    let c = crashed[0];
    let r = list.iter().find(|k| k["role"] != "crashed").unwrap();
    crashed_kernel_is_the_guests(guest, c, &release, &f);
    assert_eq!(c["mode"], "aarch64", "{guest}: {c}");
    assert!(c.get("capture_of").is_none(), "{guest}: {c}");
    assert_eq!(
        r["capture_of"], c["index"],
        "{guest}: the capture kernel: {r}"
    );
    assert_eq!(r["release"], f.get("capture-release"), "{guest}: {r}");
    assert!(
        reserved.contains(&hex(&r["root"])) && reserved.contains(&hex(&r["vmcoreinfo_addr"])),
        "{guest}: the capture kernel's tables and VMCOREINFO lie outside the reservation {}-{}: {r}",
        f.get("crashkernel-start"),
        f.get("crashkernel-end")
    );
    assert!(
        !reserved.contains(&hex(&c["root"])),
        "{guest}: the crashed kernel's tables lie in the reservation: {c}"
    );
    // Each kernel's root is what the vCPU still in it has in TTBR1_EL1 (ASID and CnP masked).
    for (k, role) in [(c, "crashed"), (r, "capture")] {
        for cpu in f.cpus_running(role) {
            let ttbr1 = f.hex(&format!("cpu{cpu}-ttbr1")) & 0x0000_ffff_ffff_fffe;
            assert_eq!(hex(&k["root"]), ttbr1, "{guest}: vCPU {cpu} ({role}): {k}");
        }
    }
    let (text, _) = guestcore(&["kernels", p]);
    assert!(
        text.contains(&format!("kdump capture kernel of kernel {}", c["index"])),
        "{guest}: {text}"
    );

    // Every kallsyms symbol QEMU translated through the vCPU in each kernel, translated through
    // that kernel's own tables; and init_uts_ns of each kernel's VMCOREINFO, translated and
    // read, holds its release.
    let index = |k: &serde_json::Value| k["index"].as_u64().unwrap().to_string();
    for (k, file) in [(c, "symbols.txt"), (r, "capture-symbols.txt")] {
        let syms = qemu_symbols(&dir, file);
        assert!(syms.len() >= 4, "{guest}: {file}: {syms:?}");
        for (name, va, pa) in &syms {
            let got = translate(&phys, &["--kernel", &index(k)], *va);
            assert_eq!(
                got,
                Some(*pa),
                "{guest}: {name} {va:#x} through kernel {}'s tables, against QEMU's gva2gpa",
                index(k)
            );
        }
    }
    let g = Guest::open(&phys, &GuestOptions::default()).unwrap();
    let kernels = &g.kernels().kernels;
    let uts = |k: &serde_json::Value| {
        let i = k["index"].as_u64().unwrap() as usize;
        vmcoreinfo_symbol(&kernels[i].vmcoreinfo, "init_uts_ns").expect("SYMBOL(init_uts_ns)")
    };
    for k in [c, r] {
        let at = format!("{:#x}", uts(k) + RELEASE_IN_UTS_NS);
        let (out, _) = guestcore(&["read", "--kernel", &index(k), p, &at, "65"]);
        assert!(
            out.trim_end_matches('\0').starts_with(&release),
            "{guest}: init_uts_ns.name.release of kernel {} at {at}: {out:?}",
            index(k)
        );
    }

    // 2. dmesg: the crashed kernel's log holds the marker written before the crash, then the
    //    crash and panic lines (with the console's timestamps), not the capture kernel's marker;
    //    the capture kernel's log (its index, and the default) the other way round.
    let (log, _) = guestcore(&["dmesg", "--kernel", "crashed", p]);
    let marker_at = log.find(f.get("crash-marker"));
    let crash_at = log.find(f.get("crash-line"));
    assert!(
        marker_at.is_some()
            && crash_at.is_some()
            && marker_at < crash_at
            && log.contains(f.get("panic-line"))
            && !log.contains(f.get("capture-marker")),
        "{guest}: dmesg --kernel crashed should hold {:?}, then {:?} and {:?}, and not {:?}:\n{}",
        f.get("crash-marker"),
        f.get("crash-line"),
        f.get("panic-line"),
        f.get("capture-marker"),
        ends(&log, 20)
    );
    // It reaches the crashed kernel's last console lines: the one before the panic, and its
    // very last ("Bye!" on arm64).
    for key in ["pre-panic-line", "crashed-last-line"] {
        assert!(
            log.contains(f.get(key)),
            "{guest}: dmesg --kernel crashed lacks {key} {:?}:\n{}",
            f.get(key),
            ends(&log, 20)
        );
    }
    assert!(
        log.trim_end().ends_with(f.get("crashed-last-line")),
        "{guest}: dmesg --kernel crashed goes on after {:?}:\n{}",
        f.get("crashed-last-line"),
        ends(&log, 20)
    );
    let (capture_log, _) = guestcore(&["dmesg", "--kernel", &index(r), p]);
    assert!(
        capture_log.contains(f.get("capture-marker-line"))
            && !capture_log.contains(f.get("crash-marker")),
        "{guest}: dmesg of the capture kernel:\n{}",
        ends(&capture_log, 20)
    );
    // ... and it holds the capture kernel's first console line and the command line the crash
    // kexec gave it.
    let console = std::fs::read_to_string(dir.join("capture-console.txt")).unwrap();
    let banner = console
        .lines()
        .next()
        .expect("capture-console.txt is empty");
    assert!(
        capture_log.contains(banner) && capture_log.contains(f.get("capture-cmdline")),
        "{guest}: the capture kernel's log lacks its banner {banner:?} or its command line {:?}:\n{}",
        f.get("capture-cmdline"),
        ends(&capture_log, 20)
    );
    let (default_log, err) = guestcore(&["dmesg", p]);
    assert!(
        default_log == capture_log,
        "{guest}: dmesg with no --kernel is not the capture kernel's log ({err}):\n{}",
        ends(&default_log, 20)
    );

    // 2b. The migration stream of the same instant carries the vCPUs' translation registers:
    //     the capture kernel is `running` on the vCPU that crashed, the crashed kernel names the
    //     vCPU its crash stopped, and each vCPU translates its kernel's symbols as gva2gpa did.
    let stream = dir.join("migration.bin");
    let s = stream.to_str().unwrap();
    let (out, _) = guestcore(&["kernels", "--json", s]);
    let slist: serde_json::Value = serde_json::from_str(&out).unwrap();
    let by_index = |i: &serde_json::Value| {
        slist
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["index"] == *i)
            .unwrap_or_else(|| panic!("{guest}: no kernel {i} in the stream: {slist}"))
            .clone()
    };
    let (sc, sr) = (by_index(&c["index"]), by_index(&r["index"]));
    let cpus = |k: &serde_json::Value| -> Vec<u64> {
        k["cpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect()
    };
    assert!(
        sc["role"] == "crashed"
            && sc["root"] == c["root"]
            && cpus(&sc) == f.cpus_running("crashed"),
        "{guest}: the crashed kernel in the stream: {sc}"
    );
    assert!(
        sr["role"] == "running"
            && sr["capture_of"] == c["index"]
            && cpus(&sr) == f.cpus_running("capture"),
        "{guest}: the capture kernel in the stream: {sr}"
    );
    for (role, file) in [
        ("crashed", "symbols.txt"),
        ("capture", "capture-symbols.txt"),
    ] {
        for cpu in f.cpus_running(role) {
            for (name, va, pa) in qemu_symbols(&dir, file) {
                let got = translate(&stream, &["--cpu", &cpu.to_string()], va);
                assert_eq!(
                    got,
                    Some(pa),
                    "{guest}: {name} {va:#x} on vCPU {cpu} ({role})"
                );
            }
        }
    }
    let (stream_log, _) = guestcore(&["dmesg", "--kernel", "crashed", s]);
    assert!(
        stream_log == log,
        "{guest}: the stream's crashed log differs"
    );

    // 3. Cores of the crashed kernel: its VMCOREINFO, and its CPUs' registers as saved at the
    //    crash, in AArch64's NT_PRSTATUS layout, each with a pc and sp in the kernel (pc in its
    //    text); read by gdb-multiarch, libkdumpfile and drgn.
    let tmp = tempfile::tempdir().unwrap();
    let paging = tmp.path().join("crashed-paging.elf");
    dump(&["dump", "--paging", "--kernel", "crashed", p], &paging);
    let (vmci, prstatus) = elf_notes(&paging);
    assert!(
        vmci.contains(&format!("OSRELEASE={release}")) && vmci == elf_notes(&phys).0,
        "{guest}: the crashed kernel's core carries {vmci:.200}"
    );
    assert_eq!(
        prstatus.to_string(),
        f.get("elfcorehdr-prstatus"),
        "{guest}"
    );
    let core = ElfCore::open(&paging).unwrap();
    let cpus = cpus_of_machine(core.notes(), core.machine())
        .unwrap()
        .into_states();
    let text = f.hex("sym-_stext")..f.hex("sym-_stext") + (64 << 20);
    assert_eq!(cpus.len(), prstatus, "{guest}: {cpus:?}");
    for cpu in &cpus {
        let a = cpu
            .as_aarch64()
            .unwrap_or_else(|| panic!("{guest}: not an AArch64 register set: {cpu:?}"));
        assert!(
            text.contains(&a.pc) && a.sp >> 48 == 0xffff && a.pstate & 0xc == 4,
            "{guest}: crash registers of CPU {} (pc {:#x}, sp {:#x}, pstate {:#x}) are not EL1 in the crashed kernel's text from {:#x}",
            a.index,
            a.pc,
            a.sp,
            a.pstate,
            text.start
        );
    }
    let release_at = uts(c) + RELEASE_IN_UTS_NS;
    gdb_multiarch_reads_release(&paging, release_at, &release, guest);
    let physical = tmp.path().join("crashed-phys.elf");
    dump(&["dump", "--kernel", "crashed", p], &physical);
    let kdump = tmp.path().join("crashed.kdump");
    dump(
        &["dump", "--format", "kdump-zstd", "--kernel", "crashed", p],
        &kdump,
    );
    let files = [
        ("paging ELF", &paging),
        ("physical ELF", &physical),
        ("kdump-zstd", &kdump),
    ];
    for (what, path) in files {
        assert_eq!(
            elf_or_kdump_prstatus(path),
            prstatus,
            "{guest}: {what}: the crashed kernel's registers"
        );
        libkdumpfile_reads_release(path, release_at, &release, &format!("{guest} {what}"));
    }
    match (drgn(), vmlinux(&release)) {
        (Some(drgn), Some(vmlinux)) => {
            let script = tmp.path().join("drgn.py");
            std::fs::write(&script, DRGN_SCRIPT).unwrap();
            for (what, path) in files {
                let out = drgn_run(&drgn, &vmlinux, path, &script)
                    .unwrap_or_else(|e| panic!("{guest}: drgn on the {what}: {e}"));
                assert!(
                    out.starts_with(&format!("release {release}")),
                    "{guest}: drgn on the {what}: {out}"
                );
            }
        }
        _ => guestcore_testkit::tools::skip(format_args!(
            "{guest}: no drgn or no debug vmlinux for {release} (fetch.sh debug-arm64)"
        )),
    }
    eprintln!(
        "{guest}: crashed kernel (root {}) behind its capture kernel (root {}) found, dumped and read",
        c["root"], r["root"]
    );
}

/// The NT_PRSTATUS notes of a core guestcore wrote, ELF or kdump, as `guestcore info` lists
/// them.
fn elf_or_kdump_prstatus(path: &Path) -> usize {
    let (info, _) = guestcore(&["info", path.to_str().unwrap()]);
    info.lines()
        .filter(|l| l.trim_start().starts_with("CORE") && l.contains("type 1 "))
        .count()
}
