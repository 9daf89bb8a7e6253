//! Independent readers of our kdump files: libkdumpfile (python3-libkdumpfile) reads sampled
//! pages in every compression (and in the 16 and 64 KiB blocks of arm64 kernels with larger
//! pages), and makedumpfile -R rebuilds our flattened stream into the same
//! bytes as our plain file. Each check is skipped, with the reason printed, when its tool is
//! not installed (scripts/install-deps.sh installs both).

use guestcore::dump::kdump::{
    write_kdump, BlockSize, Compression, KdumpMachine, KdumpOptions, KdumpRequest,
};
use guestcore::format::ElfNote;
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::{PhysMemory, VecMemory};
use guestcore::NoProgress;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PAGE: usize = 4096;
const VMCI: &[u8] = b"OSRELEASE=6.1.0-test-amd64\nPAGESIZE=4096\nNUMBER(phys_base)=-2147483648\n";

fn page(pfn: u64) -> Vec<u8> {
    guestcore_testkit::pages::mixed_page(pfn, PAGE)
}

fn memory() -> VecMemory {
    let block = |start: u64, pages: u64| -> (u64, Vec<u8>) {
        (
            start,
            (0..pages)
                .flat_map(|i| page(start / PAGE as u64 + i))
                .collect(),
        )
    };
    VecMemory::from_blocks(vec![block(0, 160), block(0x100000, 300)]).unwrap()
}

fn write(dir: &Path, c: Compression, flatten: bool) -> PathBuf {
    write_for(dir, c, flatten, KdumpMachine::X86_64)
}

fn write_for(dir: &Path, c: Compression, flatten: bool, machine: KdumpMachine) -> PathBuf {
    let mem = memory();
    let notes = [ElfNote::new(b"CORE", 1, vec![0; 336])];
    let out = dir.join(format!(
        "dump-{machine}-{c}{}",
        if flatten { ".flat" } else { "" }
    ));
    let req = KdumpRequest {
        notes: &notes,
        vmcoreinfo: Some(VMCI),
        machine,
        flatten,
        force: true,
        ..KdumpRequest::new(&mem, c)
    };
    let opts = KdumpOptions {
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    write_kdump(&req, &out, &opts, &NoProgress).unwrap();
    out
}

/// A python3 that can import kdumpfile (Debian's lives in /usr/bin, not in a pyenv).
fn python_with_kdumpfile() -> Option<String> {
    ["/usr/bin/python3", "python3"].into_iter().find_map(|p| {
        Command::new(p)
            .args(["-c", "import kdumpfile"])
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| p.to_string())
    })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kdump-read.py")
}

#[test]
fn libkdumpfile_reads_every_compression() {
    let Some(py) = python_with_kdumpfile() else {
        guestcore_testkit::tools::skip("python3-libkdumpfile is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mem = memory();
    let mut addrs: Vec<u64> = (0..160u64).step_by(7).map(|p| p * PAGE as u64).collect();
    addrs.extend((0x100u64..0x100 + 300).step_by(11).map(|p| p * PAGE as u64));
    addrs.push(0x100000 + 299 * PAGE as u64);
    let cases = Compression::ALL
        .into_iter()
        .map(|c| (c, KdumpMachine::X86_64))
        .chain([(Compression::Zlib, KdumpMachine::I686)]);
    for (c, machine) in cases {
        let f = write_for(dir.path(), c, false, machine);
        let out = Command::new(&py)
            .arg(script())
            .arg(&f)
            .args(addrs.iter().map(|a| format!("{a:#x}")))
            .output()
            .unwrap();
        let facts = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{c}: libkdumpfile failed: {facts}");
        println!("{machine} {c}: libkdumpfile says {}", facts.trim());
        let arch = if machine == KdumpMachine::X86_64 {
            "x86_64"
        } else {
            "ia32"
        };
        assert!(
            facts.contains(&format!("\"arch.name\": \"{arch}\"")),
            "{c}: {facts}"
        );
        assert!(
            facts.contains("\"linux.uts.release\": \"6.1.0-test-amd64\""),
            "{c}: {facts}"
        );
        assert!(facts.contains("\"max_pfn\": 556"), "{c}: {facts}");
        assert_eq!(out.stdout.len(), addrs.len() * PAGE);
        for (i, a) in addrs.iter().enumerate() {
            let mut want = vec![0u8; PAGE];
            mem.read_at(*a, &mut want).unwrap();
            assert!(
                out.stdout[i * PAGE..(i + 1) * PAGE] == want[..],
                "{c}: libkdumpfile read different bytes at {a:#x}"
            );
        }
    }
}

fn has_makedumpfile() -> bool {
    Command::new("makedumpfile")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn makedumpfile_reassembles_our_flattened_stream() {
    if !has_makedumpfile() {
        guestcore_testkit::tools::skip("makedumpfile is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::Zlib, Compression::Lzo, Compression::Zstd] {
        let plain = write(dir.path(), c, false);
        let flat = write(dir.path(), c, true);
        let rebuilt = dir.path().join(format!("rebuilt-{c}"));
        let out = Command::new("makedumpfile")
            .arg("-R")
            .arg(&rebuilt)
            .stdin(std::fs::File::open(&flat).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{c}: makedumpfile -R failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&rebuilt).unwrap() == std::fs::read(&plain).unwrap(),
            "{c}: makedumpfile -R output differs from our plain file"
        );
        KdumpFile::open(&rebuilt).unwrap();
    }
}

/// Files of an arm64 kernel with 16 or 64 KiB pages: blocks of that size (the last one partly
/// RAM), read by libkdumpfile, which takes the block size for the kernel's page size.
#[test]
fn libkdumpfile_reads_larger_blocks() {
    let Some(py) = python_with_kdumpfile() else {
        guestcore_testkit::tools::skip("python3-libkdumpfile is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mem = memory();
    let notes = [ElfNote::new(b"CORE", 1, vec![0; 392])];
    let mut addrs: Vec<u64> = (0..160u64).step_by(7).map(|p| p * PAGE as u64).collect();
    addrs.extend((0x100u64..0x100 + 300).step_by(11).map(|p| p * PAGE as u64));
    addrs.push(0x100000 + 299 * PAGE as u64);
    for bs in [16384u64, 65536] {
        let vmci = format!("OSRELEASE=6.12.0-arm64-16k\nPAGESIZE={bs}\nNUMBER(VA_BITS)=48\n");
        for c in Compression::ALL {
            let what = format!("{} KiB {c}", bs / 1024);
            let out = dir.path().join(format!("{bs}.{c}"));
            let req = KdumpRequest {
                notes: &notes,
                vmcoreinfo: Some(vmci.as_bytes()),
                machine: KdumpMachine::Aarch64,
                block_size: BlockSize::new(bs).unwrap(),
                ..KdumpRequest::new(&mem, c)
            };
            write_kdump(&req, &out, &KdumpOptions::default(), &NoProgress).unwrap();
            let r = Command::new(&py)
                .arg(script())
                .arg(&out)
                .args(addrs.iter().map(|a| format!("{a:#x}")))
                .output()
                .unwrap();
            let facts = String::from_utf8_lossy(&r.stderr);
            assert!(r.status.success(), "{what}: libkdumpfile failed: {facts}");
            assert!(
                facts.contains("\"arch.name\": \"aarch64\"")
                    && facts.contains(&format!("\"arch.page_size\": {bs}"))
                    && facts.contains(&format!("\"max_pfn\": {}", 0x22c000u64.div_ceil(bs))),
                "{what}: {facts}"
            );
            assert_eq!(r.stdout.len(), addrs.len() * PAGE, "{what}");
            for (i, a) in addrs.iter().enumerate() {
                let mut want = vec![0u8; PAGE];
                mem.read_at(*a, &mut want).unwrap();
                assert!(
                    r.stdout[i * PAGE..(i + 1) * PAGE] == want[..],
                    "{what}: libkdumpfile read different bytes at {a:#x}"
                );
            }
        }
    }
}
