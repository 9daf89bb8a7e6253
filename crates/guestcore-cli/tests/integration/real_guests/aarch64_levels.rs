//! Dump levels on arm64 guests (issue 28): the page array read from the vmemmap through the
//! kernel's TTBR1 tables, with 4 KiB and 16 KiB kernel pages.
//!
//! makedumpfile for an arm64 target is not at hand here (the host's is x86-only), so the
//! reference on the 4 KiB guest is drgn with the kernel's debug vmlinux on QEMU's physical
//! dump ([`TRUTH_SCRIPT`]): it walks every zone's buddy free lists (the allocator's own
//! view, where guestcore reads the page-type mark in `_mapcount`) and classifies every page
//! from its `struct page` through the debug info's types and flag numbers (where guestcore
//! reads VMCOREINFO's offsets and numbers), a compound head for its tails, by makedumpfile's
//! rules: cache is on the LRU or in the swap cache and not anonymous (with private data:
//! level 4 only), user data is anonymous (`mapping & 1`) and not slab. For each level the
//! frames guestcore's physical ELF leaves out must be exactly the ones those rules name (at
//! level 31, plus pages that are all zero in QEMU's dump); its `-d 31` kdump file must leave
//! out what the ELF at level 30 does, say 31 in its header, and both must be read by drgn
//! (release and task list as on QEMU's dump) and libkdumpfile, and a `-d 31` paging ELF by
//! gdb-multiarch.
//!
//! On every aarch64 guest each level must leave out at least what the guest's /init made
//! (`workload.txt`: an 8 MiB tmpfs file, dd's 16 MiB of anonymous memory, MemFree). On the
//! 16 KiB guests (no debug vmlinux is fetched for their kernel) every frame set is whole
//! 16 KiB kernel pages, and the `-d 31` ELF is less than half of QEMU's and still read by
//! libkdumpfile and gdb-multiarch.

use super::aarch64::{gdb_multiarch_reads_release, vmlinux};
use super::aarch64_capture::translations;
use super::capture::capture;
use super::debuggers::{drgn, drgn_run, libkdumpfile_reads_release, DRGN_SCRIPT};
use super::dump;
use super::dump_levels::{workload, Pfns};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::PhysMemory;
use std::collections::BTreeSet;
use std::path::Path;

/// 4 KiB: the frames guestcore's sets and ELF layouts count in.
const FRAME: u64 = 4096;

/// drgn's classification of every page of QEMU's dump (run with the debug vmlinux). Lines:
/// `release R`; `ram FIRST END` (pfns with a `struct page`); `free PFN ORDER` (a block on a
/// free list); `head PFN ORDER KIND` (a page, its compound tails with it: `cache`, `private`
/// (cache with private data), `anon` or `slab`; other pages are not printed).
const TRUTH_SCRIPT: &str = r#"
from drgn import cast
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import (for_each_valid_pfn_and_page, PageTail, compound_order,
    PageLRU, PageSwapBacked, PagePrivate, PageSlab, page_to_pfn)
print("release", prog["init_uts_ns"].name.release.string_().decode())
out = []
orders = prog.type("struct zone").member("free_area").type.length
pgdat = prog["node_data"][0]
for z in range(int(pgdat.nr_zones)):
    zone = pgdat.node_zones[z]
    for order in range(orders):
        for head in zone.free_area[order].free_list:  # one list per migrate type
            for page in list_for_each_entry("struct page", head.address_of_(), "lru"):
                out.append(f"free {int(page_to_pfn(page))} {order}")
swapcache = 1 << int(prog["PG_swapcache"])
head_bit = 1 << int(prog["PG_head"])
lo = hi = None
for pfn, page in for_each_valid_pfn_and_page(prog):
    lo = pfn if lo is None else lo
    hi = pfn + 1
    if PageTail(page):
        continue
    flags = int(page.flags)
    slab = PageSlab(page)
    anon = int(cast("unsigned long", page.mapping)) & 1 != 0 and not slab
    cache = (PageLRU(page) or PageSwapBacked(page) and flags & swapcache != 0) and not anon
    kind = ("private" if PagePrivate(page) else "cache") if cache else "anon" if anon \
        else "slab" if slab else None
    if kind:
        order = int(compound_order(page)) if flags & head_bit else 0
        out.append(f"head {pfn} {order} {kind}")
print("ram", lo, hi)
print("\n".join(out))
"#;

/// drgn's answer: pfn ranges by what they hold.
#[derive(Default)]
struct Truth {
    release: String,
    ram: (u64, u64),
    free: Vec<(u64, u64)>,
    /// (first, end, kind)
    pages: Vec<(u64, u64, String)>,
}

impl Truth {
    fn parse(text: &str) -> Truth {
        let mut t = Truth::default();
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| -> u64 {
                w.get(i)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("drgn's line {line:?}"))
            };
            match w.first() {
                Some(&"release") => t.release = w.get(1).unwrap_or(&"").to_string(),
                Some(&"ram") => t.ram = (n(1), n(2)),
                Some(&"free") => t.free.push((n(1), n(1) + (1 << n(2)))),
                Some(&"head") => t.pages.push((n(1), n(1) + (1 << n(2)), w[3].to_string())),
                _ => {}
            }
        }
        t
    }

    /// Frames of `kind` (`free` for free blocks).
    fn count(&self, kind: &str) -> u64 {
        if kind == "free" {
            return self.free.iter().map(|(s, e)| e - s).sum();
        }
        self.pages
            .iter()
            .filter(|p| p.2 == kind)
            .map(|(s, e, _)| e - s)
            .sum()
    }

    /// The pfns makedumpfile's rules leave out at `level` (bit 1 aside).
    fn excluded(&self, level: u32) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        if level & 16 != 0 {
            for &(s, e) in &self.free {
                out.extend(s..e);
            }
        }
        for (s, e, kind) in &self.pages {
            let left_out = match kind.as_str() {
                "cache" => level & (2 | 4) != 0,
                "private" => level & 4 != 0,
                "anon" => level & 8 != 0,
                _ => false,
            };
            if left_out {
                out.extend(*s..*e);
            }
        }
        out
    }
}

/// The RAM frames of `qemu`'s dump (QEMU's physical ELF) that `ours` (a physical ELF of it)
/// does not hold.
fn left_out(qemu: &ElfCore, ours: &Path) -> BTreeSet<u64> {
    let ours = ElfCore::open(ours).unwrap_or_else(|e| panic!("{}: {e}", ours.display()));
    let mut held = BTreeSet::new();
    for s in ours.segments() {
        held.extend(s.paddr / FRAME..(s.paddr + s.filesz) / FRAME);
    }
    let mut out = BTreeSet::new();
    for s in qemu.segments() {
        out.extend((s.paddr / FRAME..(s.paddr + s.memsz) / FRAME).filter(|f| !held.contains(f)));
    }
    out
}

/// "N pfns only in A (first: …), M only in B (first: …)", or `None` when `a == b`.
fn differences(a_name: &str, a: &BTreeSet<u64>, b_name: &str, b: &BTreeSet<u64>) -> Option<String> {
    if a == b {
        return None;
    }
    let first = |s: &mut dyn Iterator<Item = &u64>| {
        s.take(8)
            .map(|p| format!("{p:#x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(format!(
        "{} pfns only in {a_name} (first: {}), {} only in {b_name} (first: {})",
        a.difference(b).count(),
        first(&mut a.difference(b)),
        b.difference(a).count(),
        first(&mut b.difference(a)),
    ))
}

/// `guestcore dump --dry-run --json` at `level`: the report's `excluded` counts.
fn dry_run(input: &Path, level: u32) -> serde_json::Value {
    let out = assert_cmd::Command::cargo_bin("guestcore")
        .unwrap()
        .args([
            "-q",
            "dump",
            "--dry-run",
            "--json",
            "--dump-level",
            &level.to_string(),
        ])
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump --dry-run -d {level} of {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// Each level leaves out at least what the workload made, counted in 4 KiB frames; returns
/// the kernel's page size the reports give.
fn workload_is_left_out(guest: &str, dir: &Path, failures: &mut Vec<String>) -> u64 {
    let w = workload(guest, dir);
    let (tmpfs, anon, free) = (w.tmpfs, w.anon, w.free);
    assert!(
        tmpfs >= 2048 && anon >= 4000 && free > 0,
        "{guest}: the workload made too little: {w:?}"
    );
    let phys = dir.join("phys.elf");
    let mut page_size = 0;
    for (level, field, min, what) in [
        (2, "cache", tmpfs, "the tmpfs file's page cache"),
        (8, "user", anon, "dd's anonymous memory"),
        (16, "free", free * 3 / 4, "3/4 of MemFree"),
    ] {
        let r = dry_run(&phys, level);
        let got = r["excluded"][field].as_u64().unwrap_or(0);
        eprintln!(
            "{guest}: -d {level:2} leaves out {got} frames of {field} (workload: {min} at least)"
        );
        if got < min {
            failures.push(format!(
                "{guest}: -d {level} leaves out {got} frames of {field}, fewer than {what} ({min}): {r}"
            ));
        }
        if r["unclassified"].as_u64() != Some(0) || r["page_array"].as_bool() != Some(true) {
            failures.push(format!(
                "{guest}: -d {level}: the page array was not all read: {r}"
            ));
        }
        page_size = r["page_size"].as_u64().unwrap_or(0);
    }
    page_size
}

fn check_levels(guest: &str) {
    let Some(dir) = capture(guest) else { return };
    let mut failures = Vec::new();
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release = release.trim().to_string();
    let page_size = workload_is_left_out(guest, &dir, &mut failures);
    let want_page = if guest.starts_with("aarch64-16k") {
        16384
    } else {
        4096
    };
    assert_eq!(
        page_size, want_page,
        "{guest}: the reports' kernel page size"
    );

    let phys = dir.join("phys.elf");
    let p = phys.to_str().unwrap();
    let qemu = ElfCore::open(&phys).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let elf = |level: u32| {
        let path = tmp.path().join(format!("d{level}.elf"));
        dump(&["dump", "--dump-level", &level.to_string(), p], &path);
        path
    };
    let uts = translations(&dir)
        .into_iter()
        .find(|t| t.1 == "init_uts_ns")
        .map(|t| t.2)
        .expect("no init_uts_ns in translations.txt");
    let release_at = uts + 130;

    // Level 31: less than half of QEMU's dump, in whole kernel pages, of frames that are
    // zero or that the page array names; read by libkdumpfile, and as a paging ELF by
    // gdb-multiarch.
    let d31 = elf(31);
    let bytes = |c: &ElfCore| -> u64 { c.segments().iter().map(|s| s.filesz).sum() };
    let (ours, whole) = (bytes(&ElfCore::open(&d31).unwrap()), bytes(&qemu));
    eprintln!("{guest}: -d 31 ELF holds {ours} bytes of memory, QEMU's dump {whole}");
    if ours > whole / 2 {
        failures.push(format!(
            "{guest}: the -d 31 ELF holds {ours} bytes of memory, QEMU's {whole}"
        ));
    }
    let out31 = left_out(&qemu, &d31);
    let unit = want_page / FRAME;
    let mut split = out31
        .iter()
        .filter(|&&f| (f - f % unit..f - f % unit + unit).any(|g| !out31.contains(&g)));
    if let Some(f) = split.next() {
        failures.push(format!(
            "{guest}: frame {f:#x} is left out of the -d 31 ELF without the rest of its {} KiB page",
            want_page >> 10
        ));
    }
    libkdumpfile_reads_release(&d31, release_at, &release, &format!("{guest} -d 31 ELF"));
    let paging31 = tmp.path().join("paging-d31.elf");
    dump(&["dump", "--paging", "--dump-level", "31", p], &paging31);
    gdb_multiarch_reads_release(&paging31, release_at, &release, guest);

    // The -d 31 kdump file, in blocks of the kernel's page size: 31 in its header, and its
    // bitmap leaves out the kernel pages the -d 30 ELF leaves out (zero pages keep their bit
    // in a kdump file and share one stored page, as makedumpfile does); read by libkdumpfile.
    let kdump = tmp.path().join("d31.kdump");
    dump(
        &["dump", "--format", "kdump-zstd", "--dump-level", "31", p],
        &kdump,
    );
    let kdump31 = match Pfns::read(&kdump, false) {
        Err(e) => {
            failures.push(format!("{guest}: the -d 31 kdump file: {e}"));
            None
        }
        Ok(k) => {
            if k.dump_level != 31 {
                failures.push(format!(
                    "{guest}: the -d 31 kdump file says dump_level {}",
                    k.dump_level
                ));
            }
            let d30 = tmp.path().join("d30-pages.elf");
            dump(&["dump", "--dump-level", "30", p], &d30);
            let elf_out: BTreeSet<u64> = left_out(&qemu, &d30)
                .iter()
                .map(|f| f / unit)
                .filter(|&b| k.present(b))
                .collect();
            let kdump_out: BTreeSet<u64> = (0..k.max_mapnr())
                .filter(|&b| k.present(b) && !k.dumped(b))
                .collect();
            failures.extend(
                differences(
                    "the -d 30 ELF's pages",
                    &elf_out,
                    "the -d 31 kdump's",
                    &kdump_out,
                )
                .map(|d| format!("{guest}: {d}")),
            );
            Some(k)
        }
    };
    libkdumpfile_reads_release(
        &kdump,
        release_at,
        &release,
        &format!("{guest} -d 31 kdump"),
    );

    // The 4 KiB guest against drgn's classification of QEMU's dump.
    if guest != "aarch64" {
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        return;
    }
    let (Some(drgn), Some(vmlinux)) = (drgn(), vmlinux(&release)) else {
        guestcore_testkit::tools::skip(format_args!(
            "{guest}: no drgn or no debug vmlinux for {release} (fetch.sh debug-arm64)"
        ));
        return;
    };
    let script = tmp.path().join("truth.py");
    std::fs::write(&script, TRUTH_SCRIPT).unwrap();
    let t = std::time::Instant::now();
    let truth = drgn_run(&drgn, &vmlinux, &phys, &script)
        .unwrap_or_else(|e| panic!("{guest}: drgn's classification: {e}"));
    let truth = Truth::parse(&truth);
    eprintln!(
        "{guest}: drgn classified pfns {:#x}..{:#x} in {:.1} s: free {}, cache {}, cache with private data {}, anon {}, slab {}",
        truth.ram.0,
        truth.ram.1,
        t.elapsed().as_secs_f64(),
        truth.count("free"),
        truth.count("cache"),
        truth.count("private"),
        truth.count("anon"),
        truth.count("slab"),
    );
    assert_eq!(truth.release, release, "{guest}: drgn's release");
    let tmpfs = workload(guest, &dir).tmpfs;
    assert!(
        truth.count("cache") >= tmpfs && truth.count("anon") >= 4000 && truth.count("slab") > 0,
        "{guest}: drgn sees too little of the workload"
    );
    for level in [2, 4, 8, 16, 30] {
        let got = left_out(&qemu, &elf(level));
        let want = truth.excluded(level);
        eprintln!(
            "{guest}: -d {level:2}: guestcore leaves out {} frames, drgn's rules {}",
            got.len(),
            want.len()
        );
        failures.extend(
            differences("drgn's rules", &want, "guestcore's ELF", &got)
                .map(|d| format!("{guest}: -d {level}: {d}")),
        );
    }
    // Level 31: level 30's frames and zero pages.
    let want30 = truth.excluded(30);
    let extra: Vec<u64> = out31.difference(&want30).copied().collect();
    let mut page = vec![0u8; FRAME as usize];
    let nonzero: Vec<u64> = extra
        .iter()
        .copied()
        .filter(|&f| {
            qemu.read_at(f * FRAME, &mut page).unwrap();
            page.iter().any(|&b| b != 0)
        })
        .collect();
    let missing = want30.difference(&out31).count();
    eprintln!(
        "{guest}: -d 31 leaves out {} zero frames more than -d 30",
        extra.len()
    );
    if extra.is_empty() || !nonzero.is_empty() || missing > 0 {
        failures.push(format!(
            "{guest}: -d 31 leaves out {} frames beyond drgn's level 30 ({} not zero, first {:x?}), \
             and keeps {missing} of them",
            extra.len(),
            nonzero.len(),
            &nonzero[..nonzero.len().min(8)]
        ));
    }

    // The -d 31 kdump file against drgn: level 30's frames left out.
    if let Some(k) = &kdump31 {
        let got: BTreeSet<u64> = (truth.ram.0..truth.ram.1)
            .filter(|&p| k.present(p) && !k.dumped(p))
            .collect();
        failures.extend(
            differences("drgn's level 30", &want30, "guestcore's -d 31 kdump", &got)
                .map(|d| format!("{guest}: {d}")),
        );
    }

    // drgn reads the filtered files as it reads QEMU's dump: release and every task.
    let script = tmp.path().join("drgn.py");
    std::fs::write(&script, DRGN_SCRIPT).unwrap();
    let want = drgn_run(&drgn, &vmlinux, &phys, &script)
        .unwrap_or_else(|e| panic!("{guest}: drgn on QEMU's dump: {e}"));
    assert!(
        want.lines().count() > 3,
        "{guest}: drgn on QEMU's dump: {want}"
    );
    for (what, path) in [("-d 31 ELF", &d31), ("-d 31 kdump", &kdump)] {
        match drgn_run(&drgn, &vmlinux, path, &script) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{guest}: drgn on the {what} printed {got:?}, on QEMU's dump {want:?}"
            )),
            Err(e) => failures.push(format!("{guest}: drgn on the {what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn aarch64_4k_levels_against_drgn() {
    check_levels("aarch64");
}

#[test]
fn aarch64_16k_52_bit_levels() {
    check_levels("aarch64-16k");
}

#[test]
fn aarch64_16k_47_bit_levels() {
    check_levels("aarch64-16k-47");
}
