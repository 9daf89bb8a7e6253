//! Measures kdump write throughput on synthetic guest memory with realistic content
//! (40 % zero pages, 40 % text-like pages, 20 % random pages), and can write the same memory as
//! a minimal ELF core (one PT_LOAD) for comparing with `makedumpfile -c/-l -d 1`.
//!
//! ```text
//! cargo run --release -p guestcore --example kdump_throughput -- DIR [MIB] [RUNS]
//! ```
//!
//! `BLOCK=16384` (or 65536) writes blocks of an arm64 kernel's larger pages instead of 4 KiB.

use guestcore::dump::kdump::{write_kdump, BlockSize, Compression, KdumpOptions, KdumpRequest};
use guestcore::phys::VecMemory;
use guestcore::NoProgress;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const PAGE: usize = guestcore::codec::PAGE;

fn fill(mib: usize) -> Vec<u8> {
    let words = b"kernel memory page struct task list_head spinlock inode dentry buffer cache \
                  0xffff888000000000 sched rq cfs_rq vma mm_struct file ops socket skb ";
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut mem = vec![0u8; mib << 20];
    for (i, p) in mem.chunks_exact_mut(PAGE).enumerate() {
        match i % 10 {
            0..=3 => {}
            4..=7 => {
                let mut o = 0;
                while o < PAGE {
                    let start = (rnd() as usize) % (words.len() - 16);
                    let n = (8 + rnd() as usize % 32)
                        .min(words.len() - start)
                        .min(PAGE - o);
                    p[o..o + n].copy_from_slice(&words[start..start + n]);
                    o += n;
                    if o + 8 <= PAGE && rnd() % 4 == 0 {
                        p[o..o + 8].copy_from_slice(&(rnd() & 0xffff_ffff).to_le_bytes());
                        o += 8;
                    }
                }
            }
            _ => p
                .chunks_exact_mut(8)
                .for_each(|w| w.copy_from_slice(&rnd().to_le_bytes())),
        }
    }
    mem
}

/// ELF64 ET_CORE, EM_X86_64, one PT_LOAD at file offset 4096 covering all of `mem` at paddr 0.
fn write_elf(path: &Path, mem: &[u8]) -> std::io::Result<()> {
    let mut h = Vec::new();
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // entry
    h.extend_from_slice(&64u64.to_le_bytes()); // phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // shoff
    h.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    h.extend_from_slice(&7u32.to_le_bytes()); // RWX
    for v in [
        4096u64,
        0xffff_8880_0000_0000,
        0,
        mem.len() as u64,
        mem.len() as u64,
        4096,
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.resize(4096, 0);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&h)?;
    f.write_all(mem)?;
    f.flush()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map_or("/tmp", String::as_str)).to_path_buf();
    let mib: usize = args.get(2).map_or(1024, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(3, |s| s.parse().unwrap());
    let t = Instant::now();
    let mem = VecMemory::flat(fill(mib));
    eprintln!("filled {mib} MiB in {:.2?}", t.elapsed());
    if std::env::var_os("WRITE_ELF").is_some() {
        let p = dir.join("synthetic.elf");
        let mut m = vec![0u8; mib << 20];
        guestcore::phys::PhysMemory::read_at(&mem, 0, &mut m).unwrap();
        write_elf(&p, &m).unwrap();
        eprintln!("wrote {}", p.display());
    }
    let block_size = std::env::var("BLOCK")
        .ok()
        .map(|b| BlockSize::new(b.parse().expect("BLOCK: bytes")).expect("BLOCK"))
        .unwrap_or_default();
    for c in [
        Compression::Zlib,
        Compression::Lzo,
        Compression::Snappy,
        Compression::Zstd,
    ] {
        let out = dir.join(format!("bench.kdump-{c}"));
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let req = KdumpRequest {
                force: true,
                block_size,
                ..KdumpRequest::new(&mem, c)
            };
            let t = Instant::now();
            let s = write_kdump(&req, &out, &KdumpOptions::default(), &NoProgress).unwrap();
            times.push(t.elapsed().as_secs_f64());
            size = s.bytes_written;
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{c:>6}: median {med:.2} s of {runs} ({:.0} MiB/s), output {:.1} MiB, runs {times:.2?}",
            mib as f64 / med,
            size as f64 / (1 << 20) as f64
        );
    }
}
