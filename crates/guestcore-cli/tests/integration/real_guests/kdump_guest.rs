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

struct Facts(HashMap<String, String>);

impl Facts {
    fn read(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join("facts.txt")).unwrap();
        Facts(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("facts.txt has no {k}"))
    }
    fn hex(&self, k: &str) -> u64 {
        u64::from_str_radix(self.get(k).trim_start_matches("0x"), 16).unwrap()
    }
    /// The vCPUs `facts.txt` says run `kernel` ("crashed" or "capture").
    fn cpus_running(&self, kernel: &str) -> Vec<u64> {
        (0..self.get("cpus").parse().unwrap())
            .filter(|i| self.0.get(&format!("cpu{i}-kernel")).map(String::as_str) == Some(kernel))
            .collect()
    }
    /// The text of a serial line after its `[ timestamp] `.
    fn line_text(&self, k: &str) -> &str {
        let l = self.get(k);
        l.split_once("] ").map_or(l, |(_, t)| t)
    }
}

fn guestcore(args: &[&str]) -> (String, String) {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "guestcore {args:?}: {e}");
    (o, e)
}

/// The VMCOREINFO text and the number of NT_PRSTATUS notes of an ELF core.
fn elf_notes(path: &Path) -> (String, usize) {
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
    assert_eq!(c["release"], release.as_str());
    assert_eq!(c["elfcorehdr"], f.get("elfcorehdr"), "{guest}: {c}");
    assert_eq!(
        c["crash_cpus"],
        f.get("elfcorehdr-prstatus").parse::<u64>().unwrap()
    );
    assert_eq!(
        c["vmcoreinfo_addr"],
        f.get("elfcorehdr-vmcoreinfo"),
        "{guest}: {c}"
    );
    assert_eq!(c["kaslr_offset"], crashed_kaslr.as_str(), "{guest}: {c}");
    assert_eq!(c["mode"], "4-level");
    assert_eq!(r["kaslr_offset"], capture_kaslr.as_str(), "{guest}: {r}");
    let ecore = f.hex("elfcorehdr");
    assert!((f.hex("crashkernel-start")..=f.hex("crashkernel-end")).contains(&ecore));
    let root_of = |k: &serde_json::Value| {
        u64::from_str_radix(k["root"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    for cpu in f.cpus_running("crashed") {
        assert_eq!(
            root_of(c),
            f.hex(&format!("cpu{cpu}-cr3")),
            "{guest}: vCPU {cpu} sits in the crashed kernel's tables"
        );
        assert!(
            c["cpus"].as_array().unwrap().contains(&cpu.into()),
            "{guest}: {c}"
        );
    }
    for cpu in f.cpus_running("capture") {
        assert!(
            r["cpus"].as_array().unwrap().contains(&cpu.into()),
            "{guest}: {r}"
        );
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
        "{info}"
    );

    // 7. dmesg: the crashed kernel's ends with the crash; the capture kernel's is the default.
    let (log, _) = guestcore(&["dmesg", "--kernel", "crashed", p]);
    let crash_at = log
        .find(f.line_text("crash-line"))
        .unwrap_or_else(|| panic!("{guest}: no crash line in\n{log}"));
    let marker_at = log
        .find(f.get("crash-marker"))
        .expect("the marker written before the crash");
    assert!(
        marker_at < crash_at && log.contains(f.line_text("panic-line")),
        "{guest}"
    );
    assert!(
        log.contains(f.get("crash-line")),
        "{guest}: same timestamp as the serial console"
    );
    let (capture_log, _) = guestcore(&["dmesg", p]);
    assert!(
        capture_log.contains(f.get("capture-marker"))
            && !capture_log.contains(f.get("crash-marker"))
    );

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
    assert_eq!(prstatus.to_string(), f.get("elfcorehdr-prstatus"));
    let uts = f.hex("sym-init_uts_ns") + 130;
    gdb_reads_release(&paging, uts, &release, guest);
    let physical = tmp.path().join("crashed-phys.elf");
    dump(&["dump", "--kernel", "crashed", p], &physical);
    assert_eq!(
        elf_notes(&physical).1.to_string(),
        f.get("elfcorehdr-prstatus")
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
    assert!(!vmci.contains(&format!(
        "KERNELOFFSET={}",
        crashed_kaslr.trim_start_matches("0x")
    )));

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
                "{guest} {}: no sysrq handler in bt",
                core.display()
            );
            assert!(
                out.contains(f.line_text("crash-line")),
                "{guest} {}: no crash line in log",
                core.display()
            );
        }
    }
    eprintln!("{guest}: crashed kernel (KASLR {crashed_kaslr}) behind the capture kernel (KASLR {capture_kaslr}) found, dumped and read");
}

#[test]
fn kdump_capture_kernel_two_vcpus() {
    check_kdump_guest("x86_64-kdump", true);
}

#[test]
fn kdump_capture_kernel_one_vcpu() {
    check_kdump_guest("x86_64-kdump-smp1", false);
}
