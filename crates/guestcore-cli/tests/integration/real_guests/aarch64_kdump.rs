//! QEMU's aarch64 kdump files (issue 28): QEMU writes them in 64 KiB blocks whatever the
//! guest's page size, with `Unknown` as the utsname's machine and no release in it. guestcore
//! reads every byte of RAM out of them equal to QEMU's physical ELF of the same instant, takes
//! their CPU notes as aarch64 ones, and `guestcore info` names the two vCPUs and the release.

use super::capture::capture;
use super::guestcore;
use guestcore::image::{GuestImage, OpenOptions};
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::PhysMemory;

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
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut bytes = 0u64;
    for r in k.ram().ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(a.len());
            k.read_at(at, &mut a[..n]).unwrap();
            elf.memory.read_at(at, &mut b[..n]).unwrap();
            if a[..n] != b[..n] {
                let i = a[..n]
                    .iter()
                    .zip(&b[..n])
                    .position(|(x, y)| x != y)
                    .unwrap();
                panic!(
                    "{guest}: QEMU's kdump differs from its ELF at {:#x}: {:#04x} against {:#04x}",
                    at + i as u64,
                    a[i],
                    b[i]
                );
            }
            at += n as u64;
            bytes += n as u64;
        }
    }
    assert_eq!(bytes, 256 << 20, "{guest}: bytes compared");
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
