//! The case guestcore was born from: a guest whose kernel crashed into its kdump capture
//! kernel, caught while the capture kernel runs (`scripts/guest/capture-kdump.sh`). The
//! capture's `facts.txt` holds what the guest itself printed before and after the crash; every
//! check compares guestcore's answers with it, and crash, gdb and dmesg read the crashed
//! kernel out of the dumps `--kernel crashed` writes.

use super::capture::capture;
use super::debuggers;
use super::{dump, gdb_reads_release};
use assert_cmd::Command;
use guestcore::phys::elf::ElfCore;
use std::collections::HashMap;
use std::path::Path;

const START_KERNEL_MAP_TEXT: u64 = 0xffff_ffff_8100_0000;

pub(super) struct Facts(HashMap<String, String>);

impl Facts {
    pub(super) fn read(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join("facts.txt")).unwrap();
        Facts(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
    pub(super) fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("facts.txt has no {k}"))
    }
    pub(super) fn hex(&self, k: &str) -> u64 {
        u64::from_str_radix(self.get(k).trim_start_matches("0x"), 16).unwrap()
    }
    /// The vCPUs `facts.txt` says run `kernel` ("crashed" or "capture").
    pub(super) fn cpus_running(&self, kernel: &str) -> Vec<u64> {
        (0..self.get("cpus").parse().unwrap())
            .filter(|i| self.0.get(&format!("cpu{i}-kernel")).map(String::as_str) == Some(kernel))
            .collect()
    }
    /// The text of a serial line after its `[ timestamp] `.
    pub(super) fn line_text(&self, k: &str) -> &str {
        let l = self.get(k);
        l.split_once("] ").map_or(l, |(_, t)| t)
    }
}

/// Runs `guestcore ARGS…`, which must succeed: (stdout, stderr).
pub(super) fn guestcore(args: &[&str]) -> (String, String) {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "guestcore {args:?} failed ({}):\nstdout:\n{o:.3000}\nstderr:\n{e}",
        out.status
    );
    (o, e)
}

/// The first `n` and last `n` lines of a log, for failure messages.
pub(super) fn ends(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if lines.len() <= 2 * n {
        return log.to_string();
    }
    format!(
        "{}\n[… {} lines …]\n{}",
        lines[..n].join("\n"),
        lines.len() - 2 * n,
        lines[lines.len() - n..].join("\n")
    )
}

/// The VMCOREINFO text and the number of NT_PRSTATUS notes of an ELF core.
pub(super) fn elf_notes(path: &Path) -> (String, usize) {
    let core = ElfCore::open(path).unwrap();
    let vmci = core
        .notes()
        .iter()
        .find(|n| n.name == b"VMCOREINFO")
        .map(|n| String::from_utf8_lossy(&n.desc).into_owned())
        .unwrap_or_default();
    let prstatus = core
        .notes()
        .iter()
        .filter(|n| n.name == b"CORE" && n.n_type == 1)
        .count();
    (vmci, prstatus)
}

/// The crashed kernel of `guestcore kernels --json` (`c`) is the one the guest's facts name:
/// its release, the core header's address, its CPU count and the VMCOREINFO it points at.
pub(super) fn crashed_kernel_is_the_guests(
    guest: &str,
    c: &serde_json::Value,
    release: &str,
    f: &Facts,
) {
    assert_eq!(c["release"], release, "{guest}: {c}");
    assert_eq!(c["elfcorehdr"], f.get("elfcorehdr"), "{guest}: {c}");
    assert_eq!(
        c["crash_cpus"],
        f.get("elfcorehdr-prstatus").parse::<u64>().unwrap(),
        "{guest}: {c}"
    );
    assert_eq!(
        c["vmcoreinfo_addr"],
        f.get("elfcorehdr-vmcoreinfo"),
        "{guest}: {c}"
    );
}

fn kaslr_of(stext: u64) -> String {
    format!("{:#x}", stext - START_KERNEL_MAP_TEXT)
}

fn check_kdump_guest(guest: &str, with_debuggers: bool) {
    let Some(dir) = capture(guest) else { return };
    let f = Facts::read(&dir);
    let phys = dir.join("phys.elf");
    let p = phys.to_str().unwrap();
    let release = f.get("release").to_string();
    let crashed_kaslr = kaslr_of(f.hex("sym-_stext"));
    let capture_kaslr = kaslr_of(f.hex("capture-sym-_stext"));

    // 1. kernels: the crashed kernel through the core header, the capture kernel by its vCPU.
    let (out, _) = guestcore(&["kernels", "--json", p]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    let crashed: Vec<_> = list.iter().filter(|k| k["role"] == "crashed").collect();
    let running: Vec<_> = list.iter().filter(|k| k["role"] == "running").collect();
    assert_eq!((crashed.len(), running.len()), (1, 1), "{guest}: {list:?}");
    let (c, r) = (crashed[0], running[0]);
    crashed_kernel_is_the_guests(guest, c, &release, &f);
    assert_eq!(c["kaslr_offset"], crashed_kaslr.as_str(), "{guest}: {c}");
    assert_eq!(c["mode"], "4-level", "{guest}: {c}");
    assert_eq!(r["kaslr_offset"], capture_kaslr.as_str(), "{guest}: {r}");
    // The capture kernel is also named from memory alone: it lies in the reservation.
    assert_eq!(r["capture_of"], c["index"], "{guest}: {r}");
    assert!(c.get("capture_of").is_none(), "{guest}: {c}");
    let ecore = f.hex("elfcorehdr");
    assert!(
        (f.hex("crashkernel-start")..=f.hex("crashkernel-end")).contains(&ecore),
        "{guest}: elfcorehdr {ecore:#x} outside the reservation {}-{}",
        f.get("crashkernel-start"),
        f.get("crashkernel-end")
    );
    let root_of = |k: &serde_json::Value| {
        u64::from_str_radix(k["root"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    // Each kernel's root is its init_top_pgt, where QEMU's gva2gpa (through a vCPU in that
    // kernel) puts it: symbols.txt for the crashed kernel, capture-symbols.txt for the capture
    // kernel. Without a vCPU in the crashed kernel (-smp 1) symbols.txt has no addresses.
    let qemu_syms = |file: &str| -> Vec<(String, String, u64)> {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .filter_map(|l| {
                let [name, va, pa] = l.split_whitespace().collect::<Vec<_>>()[..] else {
                    return None;
                };
                let pa = u64::from_str_radix(pa.strip_prefix("0x")?, 16).ok()?;
                Some((name.to_string(), va.to_string(), pa))
            })
            .collect()
    };
    let crashed_syms = qemu_syms("symbols.txt");
    let capture_syms = qemu_syms("capture-symbols.txt");
    for (k, syms, file) in [
        (c, &crashed_syms, "symbols.txt"),
        (r, &capture_syms, "capture-symbols.txt"),
    ] {
        if let Some((_, _, pa)) = syms.iter().find(|(n, _, _)| n == "init_top_pgt") {
            assert_eq!(
                root_of(k),
                *pa,
                "{guest}: kernel {} root vs init_top_pgt in {file}: {k}",
                k["index"]
            );
        }
    }
    assert!(
        f.cpus_running("crashed").is_empty() || !crashed_syms.is_empty(),
        "{guest}: a vCPU sits in the crashed kernel, but symbols.txt has no addresses"
    );
    assert!(!capture_syms.is_empty(), "{guest}: capture-symbols.txt");
    // A vCPU parked in the crashed kernel (its NMI stop loop) keeps the tables it had when the
    // crash stopped it: init_top_pgt when it was idle, a process's tables (which share the
    // kernel half) when not. Either way the listing names it, and its CR3 lies outside the
    // reservation the capture kernel runs in.
    let reserved = f.hex("crashkernel-start")..=f.hex("crashkernel-end");
    for cpu in f.cpus_running("crashed") {
        let cr3 = f.hex(&format!("cpu{cpu}-cr3"));
        assert!(
            !reserved.contains(&cr3),
            "{guest}: vCPU {cpu} in the crashed kernel has CR3 {cr3:#x} in the reservation"
        );
        assert!(
            c["cpus"].as_array().unwrap().contains(&cpu.into()),
            "{guest}: vCPU {cpu} (CR3 {cr3:#x}, root {:#x}) sits in the crashed kernel: {c}",
            root_of(c)
        );
    }
    for cpu in f.cpus_running("capture") {
        assert!(
            r["cpus"].as_array().unwrap().contains(&cpu.into()),
            "{guest}: vCPU {cpu} runs the capture kernel: {r}"
        );
    }
    // Every symbol QEMU translated, translated again through each kernel's own tables.
    for (k, syms) in [(c, &crashed_syms), (r, &capture_syms)] {
        let index = k["index"].to_string();
        for (name, va, pa) in syms {
            let (out, _) = guestcore(&["translate", "-q", "--kernel", &index, p, va]);
            assert_eq!(
                out.trim(),
                format!("gpa: {pa:#x}"),
                "{guest}: {name} ({va}) through kernel {index}'s tables, against QEMU's gva2gpa"
            );
        }
    }
    let (selected, _) = guestcore(&["info", "--kernel", "crashed", p]);
    assert!(
        selected.contains(&format!(
            "crashed): page tables at {:#x}, 4-level",
            root_of(c)
        )),
        "{guest}: {selected}"
    );
    let (info, _) = guestcore(&["info", p]);
    assert!(
        info.contains("A crashed kernel is in memory") && info.contains("--kernel crashed"),
        "{guest}: info says nothing of the crashed kernel:\n{info}"
    );

    // 2. dmesg, whichever vCPU crashed. The crashed kernel's log ends with the crash; the
    //    capture kernel's has its own marker and not the crashed kernel's. Both are reached by
    //    role and by index. Which vCPU runs the capture kernel is the one that ran sysrq-c,
    //    which differs from boot to boot (facts.txt's cpuN-kernel), and the default log and
    //    `--kernel running` follow the first vCPU (vCPU 0): it may sit parked in the crashed
    //    kernel's stop loop. So they must be one of the two logs, the same one, and the
    //    crashed kernel's only when vCPU 0 is parked there.
    let (log, _) = guestcore(&["dmesg", "--kernel", "crashed", p]);
    let crash_at = log.find(f.line_text("crash-line")).unwrap_or_else(|| {
        panic!(
            "{guest}: no crash line {:?} in dmesg --kernel crashed:\n{}",
            f.line_text("crash-line"),
            ends(&log, 20)
        )
    });
    let marker_at = log.find(f.get("crash-marker")).unwrap_or_else(|| {
        panic!(
            "{guest}: no marker {:?} (written before the crash) in dmesg --kernel crashed:\n{}",
            f.get("crash-marker"),
            ends(&log, 20)
        )
    });
    assert!(
        marker_at < crash_at
            && log.contains(f.line_text("panic-line"))
            && !log.contains(f.get("capture-marker")),
        "{guest}: dmesg --kernel crashed should hold the marker, then the crash line and {:?}, and not {:?}:\n{}",
        f.line_text("panic-line"),
        f.get("capture-marker"),
        ends(&log, 20)
    );
    assert!(
        log.contains(f.get("crash-line")),
        "{guest}: the crash line should carry the serial console's timestamp, {:?}:\n{}",
        f.get("crash-line"),
        ends(&log, 20)
    );
    let index = |k: &serde_json::Value| k["index"].as_u64().unwrap().to_string();
    let (by_index, _) = guestcore(&["dmesg", "--kernel", &index(c), p]);
    assert!(
        by_index == log,
        "{guest}: dmesg --kernel {} (the crashed kernel's index) differs from --kernel crashed:\n{}",
        index(c),
        ends(&by_index, 20)
    );
    let (capture_log, _) = guestcore(&["dmesg", "--kernel", &index(r), p]);
    assert!(
        capture_log.contains(f.get("capture-marker"))
            && !capture_log.contains(f.get("crash-marker")),
        "{guest}: dmesg --kernel {} (the capture kernel) should hold {:?} and not {:?}:\n{}",
        index(r),
        f.get("capture-marker"),
        f.get("crash-marker"),
        ends(&capture_log, 20)
    );
    // Roles are the same whichever vCPU crashed, and so is the default view: the capture
    // kernel's (the running one), even when vCPU 0 is the one parked in the crashed kernel.
    let (default_log, default_err) = guestcore(&["dmesg", p]);
    let (running_log, _) = guestcore(&["dmesg", "--kernel", "running", p]);
    let which = |l: &str| {
        if l == log {
            "the crashed kernel's"
        } else if l == capture_log {
            "the capture kernel's"
        } else {
            "neither kernel's"
        }
    };
    let vcpu0 = f.get("cpu0-kernel");
    assert!(
        default_log == capture_log && running_log == capture_log,
        "{guest}: dmesg with no --kernel printed {} log and --kernel running {} (vCPU 0 runs the {vcpu0} kernel); stderr: {default_err}\n{}",
        which(&default_log),
        which(&running_log),
        ends(&default_log, 20)
    );
    let parked = f.cpus_running("crashed");
    if parked.contains(&0) {
        assert!(
            default_err.contains("vCPU 0 is parked in crashed kernel"),
            "{guest}: vCPU 0 sits in the crashed kernel and dmesg does not say it chose another: {default_err}"
        );
    }
    for cpu in &parked {
        assert!(
            info.contains(&format!("vCPU {cpu} parked in it since the crash")),
            "{guest}: info does not say vCPU {cpu} is parked in the crashed kernel:\n{info}"
        );
    }

    // 3. Cores of the crashed kernel: its VMCOREINFO and its crash registers, never the capture
    //    kernel's; gdb reads its release through the paging core.
    let tmp = tempfile::tempdir().unwrap();
    let paging = tmp.path().join("crashed-paging.elf");
    dump(&["dump", "--paging", "--kernel", "crashed", p], &paging);
    let (vmci, prstatus) = elf_notes(&paging);
    assert!(
        vmci.contains(&format!(
            "KERNELOFFSET={}",
            crashed_kaslr.trim_start_matches("0x")
        )),
        "{guest}: {vmci:.200}"
    );
    assert_eq!(
        prstatus.to_string(),
        f.get("elfcorehdr-prstatus"),
        "{guest}: NT_PRSTATUS notes of dump --paging --kernel crashed"
    );
    let uts = f.hex("sym-init_uts_ns") + 130;
    gdb_reads_release(&paging, uts, &release, guest);
    let physical = tmp.path().join("crashed-phys.elf");
    dump(&["dump", "--kernel", "crashed", p], &physical);
    assert_eq!(
        elf_notes(&physical).1.to_string(),
        f.get("elfcorehdr-prstatus"),
        "{guest}: NT_PRSTATUS notes of dump --kernel crashed"
    );
    let kdump = tmp.path().join("crashed.kdump");
    dump(
        &["dump", "--format", "kdump-zlib", "--kernel", "crashed", p],
        &kdump,
    );

    // 4. A paging dump through the capture kernel's tables never carries the crashed kernel's
    //    VMCOREINFO (QEMU's note, which the input has).
    let capture_core = tmp.path().join("capture-paging.elf");
    let cpu = f.cpus_running("capture")[0].to_string();
    dump(&["dump", "--paging", "--cpu", &cpu, p], &capture_core);
    let (vmci, _) = elf_notes(&capture_core);
    assert!(
        vmci.is_empty()
            || vmci.contains(&format!(
                "KERNELOFFSET={}",
                capture_kaslr.trim_start_matches("0x")
            )),
        "{guest}: the capture kernel's dump carries {vmci:.300}"
    );
    assert!(
        !vmci.contains(&format!(
            "KERNELOFFSET={}",
            crashed_kaslr.trim_start_matches("0x")
        )),
        "{guest}: the capture kernel's dump (vCPU {cpu}) carries the crashed kernel's VMCOREINFO: {vmci:.300}"
    );

    // crash with the debug vmlinux: the panic in sys, the sysrq handler in bt, the crash in log.
    if with_debuggers {
        let Some(vmlinux) = debuggers::vmlinux(&release) else {
            return;
        };
        let cmds = tmp.path().join("crash.cmds");
        std::fs::write(&cmds, "sys\nbt\nlog\nquit\n").unwrap();
        for core in [&paging, &physical, &kdump] {
            let out = debuggers::crash(&vmlinux, core, &cmds)
                .unwrap_or_else(|e| panic!("{guest}: crash on {}: {e}", core.display()));
            assert!(
                out.contains(&format!("PANIC: \"{}\"", f.line_text("panic-line"))),
                "{guest} {}: {out:.2000}",
                core.display()
            );
            assert!(
                out.contains("sysrq_handle_crash"),
                "{guest} {}: no sysrq handler in bt:\n{out:.4000}",
                core.display()
            );
            assert!(
                out.contains(f.line_text("crash-line")),
                "{guest} {}: no crash line {:?} in log:\n{out:.4000}",
                core.display(),
                f.line_text("crash-line")
            );
        }
    }
    eprintln!("{guest}: crashed kernel (KASLR {crashed_kaslr}) behind the capture kernel (KASLR {capture_kaslr}) found, dumped and read");
}

/// The crash on vCPU 0: the capture kernel runs there, vCPU 1 stays parked in the crashed one.
#[test]
fn kdump_capture_kernel_two_vcpus() {
    check_kdump_guest("x86_64-kdump", true);
}

/// The crash on vCPU 1: vCPU 0 is the one parked in the crashed kernel. Roles and every
/// default are the same as with the crash on vCPU 0.
#[test]
fn kdump_capture_kernel_crash_on_vcpu1() {
    check_kdump_guest("x86_64-kdump-cpu1", false);
}

#[test]
fn kdump_capture_kernel_one_vcpu() {
    check_kdump_guest("x86_64-kdump-smp1", false);
}
