//! LiME, AVML and raw inputs, from the real x86_64 and aarch64 (4 KiB) captures: a LiME file
//! written here around the PT_LOAD data of QEMU's physical dump (LiME's format is a 32-byte
//! header before each range), AVML's own `avml convert` turning it into AVML's
//! snappy-compressed format and back; and on aarch64, whose `virt` RAM starts at 1 GiB, the two
//! raw images one meets: the RAM block alone, as QEMU's `pmemsave 0x40000000 SIZE` or a
//! `memory-backend-file` holds it (placed with `--layout 0x40000000@`), and a flat image from
//! physical 0 with the hole below RAM left sparse, as LiME's `format=padded` writes it (read as
//! it is). guestcore must read from each exactly the bytes QEMU's dump holds (AVML leaves
//! all-zero 16 MiB blocks out: those must be zero in the dump), find the same kernel, print the
//! same log, and write ELF dumps that hold the same memory. The checks are the same for both
//! architectures.

use super::capture::capture;
use super::dump;
use assert_cmd::Command;
use guestcore::format::lime::RangeHeader;
use guestcore::image::{GuestImage, ImageFormat, OpenOptions};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::PhysMemory;
use guestcore_testkit::tools::require;
use std::io::{Read, Write};
use std::path::Path;

/// Writes one LiME range per PT_LOAD of `elf` (its `p_memsz`, the zero tail included).
fn write_lime(elf: &Path, out: &Path) {
    let core = ElfCore::open(elf).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    for seg in core.segments().iter().filter(|s| s.memsz > 0) {
        let data = core.segment_data(seg).unwrap();
        f.write_all(&RangeHeader::lime(seg.paddr, seg.memsz).encode())
            .unwrap();
        f.write_all(data).unwrap();
        std::io::copy(
            &mut std::io::repeat(0).take(seg.memsz - data.len() as u64),
            &mut f,
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// Writes the PT_LOADs of `elf` as one raw image that starts at physical `base` (at most the
/// lowest PT_LOAD's address): each at its offset, gaps left as holes (sparse, zero to a
/// reader). Returns the image's length.
fn write_raw(elf: &Path, base: u64, out: &Path) -> u64 {
    let core = ElfCore::open(elf).unwrap();
    let mut f = std::fs::File::create(out).unwrap();
    let mut end = 0;
    for seg in core.segments().iter().filter(|s| s.memsz > 0) {
        let data = core.segment_data(seg).unwrap();
        let at = seg
            .paddr
            .checked_sub(base)
            .expect("a PT_LOAD below the base");
        std::os::unix::fs::FileExt::write_all_at(&f, data, at).unwrap();
        end = end.max(at + seg.memsz);
    }
    f.set_len(end).unwrap();
    f.flush().unwrap();
    end
}

/// Checks that every RAM byte of `other` is the same byte of `want`, and that whatever of
/// `want`'s RAM `other` lacks is zero. Returns the bytes `other` holds.
fn same_memory(want: &dyn PhysMemory, other: &dyn PhysMemory, what: &str) -> u64 {
    for r in other.ram().ranges() {
        assert!(
            want.ram().contains(r.start, r.len()),
            "{what}: {r} is not RAM in QEMU's dump"
        );
    }
    const STEP: u64 = 1 << 20;
    let mut expect = vec![0u8; STEP as usize];
    let mut got = vec![0u8; STEP as usize];
    let mut held = 0;
    for r in want.ram().ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(STEP);
            let (expect, got) = (&mut expect[..n as usize], &mut got[..n as usize]);
            want.read_at(at, expect).unwrap();
            got.fill(0);
            for part in other.ram().ram_parts(at, n) {
                let o = (part.start - at) as usize;
                other
                    .read_at(part.start, &mut got[o..o + part.len() as usize])
                    .unwrap();
                held += part.len();
            }
            if expect != got {
                let i = expect.iter().zip(&*got).position(|(a, b)| a != b).unwrap();
                panic!("{what}: differs from QEMU's dump at {:#x}", at + i as u64);
            }
            at += n;
        }
    }
    assert_eq!(held, other.ram().total(), "{what}");
    held
}

fn avml_convert(avml: &Path, from: &str, to: &str, src: &Path, dst: &Path) {
    let out = std::process::Command::new(avml)
        .args(["convert", "--source-format", from, "--format", to])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "avml convert {from} → {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(args: &[&str], input: &Path) -> String {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .arg("-q")
        .args(args)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "guestcore {args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The facts of the one kernel `guestcore kernels` finds that do not depend on vCPUs.
fn kernel_facts(input: &Path) -> Vec<serde_json::Value> {
    kernel_facts_args(input, &[])
}

/// [`kernel_facts`], with more options (a raw image's `--layout`).
fn kernel_facts_args(input: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = vec!["kernels", "--json"];
    cmd.extend(args);
    let list: serde_json::Value = serde_json::from_str(&stdout(&cmd, input)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{}: {list:?}", input.display());
    [
        "release",
        "mode",
        "root",
        "phys_base",
        "kaslr_offset",
        "vmcoreinfo_addr",
    ]
    .iter()
    .map(|k| list[0][k].clone())
    .collect()
}

/// The kernel-virtual address of the release string (`init_uts_ns.name.release`, the third
/// 65-byte field of struct new_utsname), from the capture's symbols.txt.
fn release_addr(dir: &Path) -> u64 {
    let uts = std::fs::read_to_string(dir.join("symbols.txt"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("init_uts_ns")).then(|| f.next().unwrap().to_string())
        })
        .expect("init_uts_ns in symbols.txt");
    u64::from_str_radix(uts.trim_start_matches("0x"), 16).unwrap() + 130
}

/// `guestcore read ARGS… INPUT --kernel 0 ADDR 65` starts with `release`.
fn reads_release(input: &Path, args: &[&str], at: u64, release: &str) {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .arg("read")
        .args(args)
        .arg(input)
        .args(["--kernel", "0", &format!("{at:#x}"), "65"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(release.trim()),
        "{}: {text:?} {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn x86_64_lime_and_avml() {
    lime_and_avml("x86_64", 1000);
}

#[test]
fn aarch64_lime_and_avml() {
    lime_and_avml("aarch64", 100);
}

/// `min_mappings`: how many lines `mem --kernel 0` prints at least (the kernel's mappings).
fn lime_and_avml(guest: &str, min_mappings: usize) {
    let Some(dir) = capture(guest) else { return };
    let Some(avml) = require("avml") else { return };
    let phys = dir.join("phys.elf");
    let tmp = tempfile::tempdir().unwrap();
    let lime = tmp.path().join("guest.lime");
    let compressed = tmp.path().join("guest.avml");
    let back = tmp.path().join("guest-back.lime");
    write_lime(&phys, &lime);
    avml_convert(&avml, "lime", "lime_compressed", &lime, &compressed);
    avml_convert(&avml, "lime_compressed", "lime", &compressed, &back);

    let qemu = GuestImage::open(&phys, &OpenOptions::default()).unwrap();
    let open = |p: &Path| GuestImage::open(p, &OpenOptions::default()).unwrap();
    let (l, c, b) = (open(&lime), open(&compressed), open(&back));
    assert_eq!(l.format, ImageFormat::Lime { compressed: false });
    assert_eq!(c.format, ImageFormat::Lime { compressed: true });
    assert_eq!(b.format, ImageFormat::Lime { compressed: false });
    assert!(l.cpus.is_empty() && l.vmcoreinfo.is_none());

    // 1. The same bytes: all of them from LiME; from AVML all but all-zero blocks, and the
    //    LiME file AVML converts it back to holds AVML's ranges.
    let total = qemu.memory.ram().total();
    assert_eq!(same_memory(&*qemu.memory, &*l.memory, "LiME"), total);
    assert_eq!(l.memory.ram().ranges(), qemu.memory.ram().ranges());
    let held = same_memory(&*qemu.memory, &*c.memory, "AVML");
    // (The blocks it left out were checked to be zero; a freshly booted aarch64 guest's 256 MiB
    // is half zero blocks: 128 MiB held.)
    assert!(
        held >= total / 4,
        "{guest}: AVML holds {held} of {total} bytes"
    );
    assert!(
        std::fs::metadata(&compressed).unwrap().len() < total / 2,
        "AVML compresses"
    );
    same_memory(&*qemu.memory, &*b.memory, "AVML back to LiME");
    assert_eq!(b.memory.ram(), c.memory.ram());

    // 2. The same kernel and log, found in RAM with no CPU state.
    let want = kernel_facts(&phys);
    let log = stdout(&["dmesg"], &phys);
    for (input, text) in [
        (&lime, "LiME image"),
        (&compressed, "AVML (snappy) image"),
        (&back, "LiME image"),
    ] {
        assert_eq!(kernel_facts(input), want, "{guest}: {}", input.display());
        assert!(
            stdout(&["dmesg"], input) == log,
            "{}: dmesg",
            input.display()
        );
        let info = stdout(&["info"], input);
        assert!(info.contains(&format!("format:   {text}")), "{info}");
    }

    // 3. ELF dumps through the kernel found in RAM hold the same memory.
    for (input, what) in [(&lime, "LiME"), (&compressed, "AVML")] {
        let out = tmp.path().join(format!("{what}.elf"));
        dump(&["dump", input.to_str().unwrap(), "--kernel", "0"], &out);
        let elf = open(&out);
        let src = open(input);
        assert_eq!(elf.memory.ram().total(), src.memory.ram().total());
        same_memory(&*qemu.memory, &*elf.memory, &format!("ELF dump of {what}"));
        std::fs::remove_file(&out).unwrap();
    }

    // 4. Virtual memory through the page tables of the kernel found in RAM (no CPU state):
    //    the same mapping list as on QEMU's dump (for AVML, as on the LiME file with AVML's
    //    ranges: the zero blocks AVML leaves out are not RAM to a reader, so mappings onto
    //    them are listed as I/O), and the kernel's release read at its init_uts_ns (struct
    //    new_utsname: release is the third 65-byte field).
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release_at = release_addr(&dir);
    let mem = |p: &Path| stdout(&["mem", "--kernel", "0"], p);
    let (want, avml_want) = (mem(&phys), mem(&back));
    assert!(want.lines().count() > min_mappings, "{guest}: {want}");
    for (input, want) in [(&lime, &want), (&compressed, &avml_want)] {
        let got = mem(input);
        assert!(
            &got == want,
            "{guest}: {}: mem --kernel 0 differs",
            input.display()
        );
        reads_release(input, &[], release_at, &release);
    }
}

/// Raw images of the aarch64 `virt` guest's RAM (at 1 GiB): the RAM block alone, placed with
/// `--layout BASE@`, and a flat image from physical 0 whose first GiB is a hole.
#[test]
fn aarch64_raw() {
    let guest = "aarch64";
    let Some(dir) = capture(guest) else { return };
    let phys = dir.join("phys.elf");
    let tmp = tempfile::tempdir().unwrap();
    let qemu = GuestImage::open(&phys, &OpenOptions::default()).unwrap();
    let base = qemu.memory.ram().ranges()[0].start;
    assert_eq!(base, 0x4000_0000, "{guest}: virt's RAM base");
    let block = tmp.path().join("ram.raw");
    let padded = tmp.path().join("padded.raw");
    let len = write_raw(&phys, base, &block);
    assert_eq!(len, qemu.memory.ram().total(), "{guest}: one RAM block");
    write_raw(&phys, 0, &padded);
    let layout = format!("{base:#x}@");

    // 1. The same bytes at the same physical addresses.
    let at_base = OpenOptions {
        layout: Some(guestcore::Layout::at_base(base)),
        ..OpenOptions::default()
    };
    let b = GuestImage::open(&block, &at_base).unwrap();
    let p = GuestImage::open(&padded, &OpenOptions::default()).unwrap();
    assert_eq!(b.format, ImageFormat::Raw, "{guest}");
    assert_eq!(p.format, ImageFormat::Raw, "{guest}");
    assert!(b.cpus.is_empty() && b.vmcoreinfo.is_none());
    assert_eq!(b.memory.ram().ranges(), qemu.memory.ram().ranges());
    let total = qemu.memory.ram().total();
    assert_eq!(
        same_memory(&*qemu.memory, &*b.memory, "raw RAM block"),
        total
    );
    // The padded image calls everything from 0 RAM: QEMU's RAM must read the same from it.
    assert_eq!(
        same_memory(
            &*p.memory,
            &*qemu.memory,
            "raw image from 0 (QEMU's RAM in it)"
        ),
        total
    );
    // 2. The same kernel, log and release through its tables; 3. ELF dumps of the same memory.
    //    Without its layout the RAM block is read from physical 0: not the same kernel facts
    //    (its VMCOREINFO is 1 GiB lower than the kernel says).
    let want = kernel_facts(&phys);
    assert_ne!(
        kernel_facts_args(&block, &[]),
        want,
        "{guest}: unplaced RAM block"
    );
    let log = stdout(&["dmesg"], &phys);
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release_at = release_addr(&dir);
    for (input, args, what) in [
        (&block, vec!["--layout", layout.as_str()], "RAM block"),
        (&padded, vec![], "padded"),
    ] {
        assert_eq!(
            kernel_facts_args(input, &args),
            want,
            "{guest}: raw {what} {args:?}"
        );
        let mut dmesg = vec!["dmesg"];
        dmesg.extend(&args);
        assert!(stdout(&dmesg, input) == log, "{guest}: raw {what}: dmesg");
        reads_release(input, &args, release_at, &release);
        let out = tmp.path().join(format!("{what}.elf"));
        let mut d = vec!["dump", input.to_str().unwrap(), "--kernel", "0"];
        d.extend(&args);
        dump(&d, &out);
        let elf = GuestImage::open(&out, &OpenOptions::default()).unwrap();
        if args.is_empty() {
            // A flat image calls its hole below 1 GiB RAM too (nothing in it says otherwise):
            // QEMU's RAM must read the same from the dump.
            same_memory(
                &*elf.memory,
                &*qemu.memory,
                &format!("ELF dump of raw {what}"),
            );
        } else {
            same_memory(
                &*qemu.memory,
                &*elf.memory,
                &format!("ELF dump of raw {what}"),
            );
        }
        std::fs::remove_file(&out).unwrap();
    }
}
