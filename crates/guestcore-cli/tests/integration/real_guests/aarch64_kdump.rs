//! aarch64 kdump files (issue 28).
//!
//! QEMU's: QEMU writes them in 64 KiB blocks whatever the guest's page size, with `Unknown` as
//! the utsname's machine and no release in it. guestcore reads every byte of RAM out of them
//! equal to QEMU's physical ELF of the same instant, takes their CPU notes as aarch64 ones, and
//! `guestcore info` names the two vCPUs and the release.
//!
//! guestcore's: in blocks of the kernel's pages (4 or 16 KiB here), in every compression, from
//! QEMU's ELF and from the migration stream; read back by guestcore, libkdumpfile and drgn.

use super::aarch64::vmlinux;
use super::aarch64_capture::{facts, translations};
use super::capture::capture;
use super::debuggers::{drgn, drgn_run, first_difference, libkdumpfile_reads_release, DRGN_SCRIPT};
use super::{dump, guestcore};
use guestcore::image::{GuestImage, OpenOptions};
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::PhysMemory;
use std::path::Path;

fn kdump_matches_elf(guest: &str) {
    let Some(dir) = capture(guest) else { return };
    let path = dir.join("kdump-zlib.dump");
    let k = KdumpFile::open(&path).unwrap();
    assert_eq!(
        k.info().block_size,
        65536,
        "{guest}: QEMU's aarch64 kdump blocks: {:?}",
        k.info()
    );
    assert!(k.info().flattened, "{guest}: {:?}", k.info());
    let elf = GuestImage::open(dir.join("phys.elf"), &OpenOptions::default()).unwrap();
    assert_eq!(
        k.ram().ranges(),
        elf.memory.ram().ranges(),
        "{guest}: RAM of QEMU's kdump and of its ELF"
    );
    // All RAM, 1 MiB at a time (16 blocks a read)...
    same_bytes(&k, &*elf.memory, &format!("{guest}: QEMU's kdump"));
    // ...and reads that straddle blocks at odd offsets, 4 KiB and 100 KiB long.
    let start = k.ram().ranges()[0].start;
    for (off, len) in [
        (0x1_0000 - 7, 4096),
        (0x23_4567, 100 << 10),
        (0xff_fff1, 33),
    ] {
        let (mut x, mut y) = (vec![0u8; len], vec![0u8; len]);
        k.read_at(start + off, &mut x).unwrap();
        elf.memory.read_at(start + off, &mut y).unwrap();
        assert!(x == y, "{guest}: {len} bytes at {:#x}", start + off);
    }
    // The CPU notes are aarch64 ones, the same as the ELF's.
    let image = GuestImage::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(image.cpus.len(), 2, "{guest}: vCPUs of QEMU's kdump");
    for (i, (kc, ec)) in image.cpus.iter().zip(&elf.cpus).enumerate() {
        let (kc, ec) = (kc.as_aarch64(), ec.as_aarch64());
        assert!(
            kc.is_some(),
            "{guest}: vCPU {i} of the kdump is not aarch64"
        );
        assert_eq!(kc, ec, "{guest}: vCPU {i} in QEMU's kdump and its ELF");
    }
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let info = guestcore(&["info"], &path, &[]);
    assert!(
        info.contains("vCPUs:    2") && info.contains(&format!("OSRELEASE: {}", release.trim())),
        "{guest}: guestcore info of QEMU's kdump:\n{info}"
    );
}

#[test]
fn aarch64_4k_qemu_kdump_reads_like_its_elf() {
    kdump_matches_elf("aarch64");
}

#[test]
fn aarch64_16k_qemu_kdump_reads_like_its_elf() {
    kdump_matches_elf("aarch64-16k");
}

/// What drgn prints of the kernel in `core`: the release and every task (pid and name).
fn drgn_tasks(drgn: &Path, vmlinux: &Path, core: &Path, script: &Path, what: &str) -> String {
    let text = drgn_run(drgn, vmlinux, core, script).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        text.lines().filter(|l| l.starts_with("task ")).count() > 10,
        "{what}: drgn found too few tasks:\n{text}"
    );
    text
}

/// guestcore's kdump files of an aarch64 guest, in every compression, from QEMU's physical ELF
/// and from the migration stream: their blocks are the kernel's pages (`PAGESIZE`), and
/// guestcore reads every byte of RAM out of them equal to QEMU's ELF; libkdumpfile translates
/// `init_uts_ns.name.release` through the kernel's tables and reads the release; drgn (with
/// the kernel's debug vmlinux) prints the release and the same tasks as on QEMU's ELF.
fn guestcore_kdump_reads_like_qemu_elf(guest: &str) {
    let Some(dir) = capture(guest) else { return };
    let release = std::fs::read_to_string(dir.join("release.txt"))
        .unwrap()
        .trim()
        .to_string();
    // The kernel's page size, as the guest itself reported it.
    let page: u64 = facts(&dir)
        .get("page-size")
        .unwrap_or_else(|| panic!("{guest}: no page-size in facts.txt"))
        .parse()
        .unwrap();
    let release_at = translations(&dir)
        .iter()
        .find(|t| t.1 == "init_uts_ns")
        .map(|t| t.2 + 130)
        .expect("no init_uts_ns in translations.txt");
    let phys = dir.join("phys.elf");
    let elf = GuestImage::open(&phys, &OpenOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("drgn.py");
    std::fs::write(&script, DRGN_SCRIPT).unwrap();
    let drgn_with = match (drgn(), vmlinux(&release)) {
        (Some(d), Some(v)) => {
            let want = drgn_tasks(&d, &v, &phys, &script, &format!("{guest}: QEMU's ELF"));
            Some((d, v, want))
        }
        _ => {
            guestcore_testkit::tools::skip(format_args!(
                "{guest}: no drgn or no debug vmlinux for {release} (fetch.sh debug-arm64 debug-arm64-16k)"
            ));
            None
        }
    };
    let mut files = 0;
    for input in ["phys.elf", "migration.bin"] {
        let from = dir.join(input);
        for c in ["zlib", "lzo", "snappy", "zstd"] {
            let what = format!("{guest}: kdump-{c} of {input}");
            let out = tmp.path().join(format!("{input}.{c}.kdump"));
            dump(
                &[
                    "dump",
                    "--format",
                    &format!("kdump-{c}"),
                    from.to_str().unwrap(),
                ],
                &out,
            );
            let k = KdumpFile::open(&out).unwrap();
            assert_eq!(k.info().block_size, page, "{what}: blocks, {:?}", k.info());
            assert_eq!(k.info().machine, "aarch64", "{what}");
            assert_eq!(k.info().release, release, "{what}");
            same_bytes(&k, &*elf.memory, &what);
            libkdumpfile_reads_release(&out, release_at, &release, &what);
            if let Some((d, v, want)) = &drgn_with {
                let got = drgn_tasks(d, v, &out, &script, &what);
                assert!(
                    got == *want,
                    "{what}: drgn printed other tasks than on QEMU's ELF: {}",
                    first_difference(want, &got)
                );
            }
            std::fs::remove_file(&out).unwrap();
            files += 1;
        }
    }
    assert_eq!(files, 8, "{guest}: files checked");
}

/// Every byte of `elf`'s RAM (256 MiB) read from `k` equals the ELF's, 1 MiB at a time.
fn same_bytes(k: &KdumpFile, elf: &dyn PhysMemory, what: &str) {
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut bytes = 0u64;
    for r in elf.ram().ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(a.len());
            k.read_at(at, &mut a[..n]).unwrap();
            elf.read_at(at, &mut b[..n]).unwrap();
            if a[..n] != b[..n] {
                let i = a[..n]
                    .iter()
                    .zip(&b[..n])
                    .position(|(x, y)| x != y)
                    .unwrap();
                panic!(
                    "{what}: differs from QEMU's ELF at {:#x}: {:#04x} against {:#04x}",
                    at + i as u64,
                    a[i],
                    b[i]
                );
            }
            at += n as u64;
            bytes += n as u64;
        }
    }
    assert_eq!(bytes, 256 << 20, "{what}: bytes compared");
}

#[test]
fn aarch64_4k_guestcore_kdump_reads_like_qemu_elf() {
    guestcore_kdump_reads_like_qemu_elf("aarch64");
}

#[test]
fn aarch64_16k_guestcore_kdump_reads_like_qemu_elf() {
    guestcore_kdump_reads_like_qemu_elf("aarch64-16k");
}

#[test]
fn aarch64_16k_47_bit_guestcore_kdump_reads_like_qemu_elf() {
    guestcore_kdump_reads_like_qemu_elf("aarch64-16k-47");
}
