//! Real Linux guests under QEMU (TCG), checked against QEMU's own answers taken in the same
//! stopped state: `info tlb`, `gva2gpa`, `dump-guest-memory` with paging, and gdb and libkdumpfile reading the
//! kernel's release string from guestcore's paging dump; ([`debuggers`]) crash and drgn
//! on every kind of file guestcore writes, against the same debuggers on QEMU's dump;
//! ([`dump_levels`]) `--dump-level` against makedumpfile's `-d` on the same memory; and
//! ([`lime`]) LiME and AVML images of the same memory, made with AVML's own converter; and
//! ([`no_vmcoreinfo`]) guests started without `-device vmcoreinfo`, whose dumps by guestcore
//! carry the VMCOREINFO of the kernel found in RAM; ([`crash_arm64`]) crash built for ARM64 on
//! the aarch64 guests' outputs.
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
use guestcore_testkit::tools::which;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

mod aarch64;
mod aarch64_capture;
mod aarch64_kdump;
mod aarch64_kdump_guest;
mod aarch64_levels;
mod capture;
mod crash_arm64;
pub(crate) mod debuggers;
mod dump_levels;
mod kdump_guest;
mod kernels;
mod lime;
mod migration;
mod no_vmcoreinfo;

use capture::capture;

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

/// Runs `guestcore -q ARGS… -o OUT`, which must succeed, and returns its stderr (warnings).
fn dump(args: &[&str], out: &Path) -> String {
    let r = Command::cargo_bin("guestcore")
        .unwrap()
        .arg("-q")
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(r.status.success(), "guestcore {args:?}: {stderr}");
    stderr
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
/// Asserts that gdb, opening `core`, prints the kernel release string `release` at `addr`
/// (`init_uts_ns.name.release`). `what` names the case in the failure message.
pub(crate) fn gdb_reads_release(core: &Path, addr: u64, release: &str, what: &str) {
    assert!(
        which("gdb").is_some(),
        "gdb is not installed (scripts/install-deps.sh installs it)"
    );
    let gdb = std::process::Command::new("gdb")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("x/s {addr:#x}"))
        .arg("-core")
        .arg(core)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&gdb.stdout);
    assert!(
        text.contains(&format!("\"{release}\"")),
        "{what}: gdb x/s {addr:#x} printed {text:?}, stderr {:?}; wanted {release:?}",
        String::from_utf8_lossy(&gdb.stderr)
    );
}

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
    assert!(!qemu.is_empty(), "{guest}: QEMU's tlb.txt lists no leaves");
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
    //    paging dump walks every vCPU with paging on, so ours uses --all-cpus. Where two vCPUs
    //    map one VA to different PAs (two processes' user halves) QEMU writes both; ours keeps
    //    the first vCPU's page and says so: such a VA must map one of QEMU's PAs for it, or,
    //    where QEMU's list merged one vCPU's page into another's neighbouring run (QEMU merges
    //    by physical adjacency across vCPUs, which can give a VA a PA no vCPU maps it to), the
    //    PA QEMU's own `info tlb` of vCPU 0 gives it.
    let tmp = tempfile::tempdir().unwrap();
    let ours_path = tmp.path().join("paging.elf");
    let phys_arg = phys.to_str().unwrap();
    let stderr = dump(&["dump", "--paging", "--all-cpus", phys_arg], &ours_path);
    let union_warned = stderr.contains("disagree on");
    let ours_core = ElfCore::open(&ours_path).unwrap();
    let mut ours_segs: Vec<_> = ours_core.segments().to_vec();
    ours_segs.sort_by_key(|s| s.vaddr);
    let mut ours_pages: HashMap<u64, (u64, &[u8])> = HashMap::new();
    for s in ours_core.segments().iter().filter(|s| s.filesz > 0) {
        let data = ours_core.segment_data(s).unwrap();
        for (k, page) in data.chunks(4096).enumerate() {
            let k = k as u64 * 4096;
            let old = ours_pages.insert(s.vaddr + k, (s.paddr + k, page));
            assert!(
                old.is_none(),
                "{guest}: {:#x} is in two PT_LOADs",
                s.vaddr + k
            );
        }
    }
    let qemu_core = ElfCore::open(dir.join("paging.elf")).unwrap();
    let mut qemu_pas: HashMap<u64, Vec<u64>> = HashMap::new();
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
            qemu_pas.entry(va).or_default().push(pa);
            let Some(&(my_pa, mine)) = ours_pages.get(&va) else {
                panic!(
                    "{guest}: {va:#x} -> {pa:#x} (QEMU's {raw_va:#x}) is not in guestcore's dump"
                );
            };
            if my_pa == pa {
                assert!(mine == page, "{guest}: bytes differ at {va:#x} -> {pa:#x}");
                pages += 1;
            }
        }
    }
    let mut conflicts = 0u64;
    // vCPU 0's leaves as QEMU's monitor walks them: VA of the leaf -> its PA.
    let vcpu0: HashMap<u64, u64> = qemu.iter().map(|&(va, pa, _)| (va, pa)).collect();
    let vcpu0_pa = |va: u64| {
        [0xfffu64, 0x1f_ffff, 0x3fff_ffff].iter().find_map(|&mask| {
            let base = va & !mask;
            vcpu0.get(&base).map(|pa| pa + (va & mask))
        })
    };
    let mut merged_wrong = Vec::new();
    for (va, pas) in &mut qemu_pas {
        let my_pa = ours_pages[va].0;
        if !pas.contains(&my_pa) {
            assert_eq!(
                vcpu0_pa(*va),
                Some(my_pa),
                "{guest}: {va:#x} maps {my_pa:#x} in ours, {pas:x?} in QEMU's"
            );
            merged_wrong.push(*va);
            continue;
        }
        pas.sort_unstable();
        pas.dedup();
        conflicts += u64::from(pas.len() > 1);
    }
    assert!(
        conflicts == 0 || union_warned,
        "{guest}: {conflicts} VAs QEMU maps twice, and guestcore did not warn"
    );
    assert!(
        merged_wrong.len() <= 64,
        "{guest}: {} VAs where QEMU's paging dump and its own `info tlb` disagree",
        merged_wrong.len()
    );
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

    // 5. gdb reads the same string from guestcore's paging dump, and so does libkdumpfile,
    //    through its own translation, from that dump and from vCPU 0's (as from QEMU's own
    //    paging dump, whose PT_LOADs a 32-bit guest's translation depends on).
    let rel_va = uts + sysname as u64 + 130;
    gdb_reads_release(&ours_path, rel_va, &release, guest);
    let cpu0_path = tmp.path().join("paging-cpu0.elf");
    dump(&["dump", "--paging", "--cpu", "0", phys_arg], &cpu0_path);
    for (core, what) in [
        (dir.join("paging.elf"), "QEMU's paging ELF"),
        (ours_path.clone(), "guestcore's paging ELF (--all-cpus)"),
        (cpu0_path, "guestcore's paging ELF (--cpu 0)"),
    ] {
        debuggers::libkdumpfile_reads_release(&core, rel_va, &release, &format!("{guest}: {what}"));
    }
    // 6. QEMU's own kdump-compressed file (flattened, zlib) of the same stopped guest reads
    //    back equal to QEMU's physical ELF dump, page for page.
    let kdump = GuestImage::open(dir.join("kdump-zlib.dump"), &OpenOptions::default()).unwrap();
    assert_eq!(
        kdump.cpus.len(),
        image.cpus.len(),
        "{guest}: CPU notes in QEMU's kdump"
    );
    assert_eq!(
        kdump.cpus[0].as_x86().unwrap().cr[3],
        image.cpus[0].as_x86().unwrap().cr[3],
        "{guest}: vCPU 0's CR3 in QEMU's kdump and its ELF dump"
    );
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
            dump(&["dump", "--format", format, phys_arg], &out_file);
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

    // 8. The kernel found in RAM, its log, and a raw image read through its tables.
    kernels::check_kernels(guest, &phys, &image, &release, tmp.path());

    eprintln!(
        "{guest}: {} tlb leaves, {n} symbols, {pages} pages equal, {conflicts} VAs two vCPUs map apart, release {release}",
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

/// crash and drgn on every output, for a 64-bit guest.
fn check_debuggers(guest: &str) {
    let Some(dir) = capture(guest) else { return };
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    debuggers::check_debuggers(guest, &dir, release.trim());
}

#[test]
fn x86_64_four_level_crash_and_drgn() {
    check_debuggers("x86_64");
}

#[test]
fn x86_64_five_level_crash_and_drgn() {
    check_debuggers("x86_64-la57");
}

#[test]
fn i386_32_bit() {
    check_guest("i386", 32);
}

#[test]
fn i386_pae() {
    check_guest("i386-pae", 32);
}

/// `--dump-level` against makedumpfile, on a 64-bit guest (x86_64 makedumpfile).
fn check_dump_levels(guest: &str) {
    dump_levels::check_dump_levels(guest);
}

#[test]
fn x86_64_four_level_dump_levels() {
    check_dump_levels("x86_64");
}

#[test]
fn x86_64_five_level_dump_levels() {
    check_dump_levels("x86_64-la57");
}

/// 4 GiB of RAM: 3 GiB below the PCI hole, 1 GiB above 4 GiB.
#[test]
fn x86_64_4g_dump_levels() {
    check_dump_levels("x86_64-4g");
}
