//! Dump levels (`guestcore dump --dump-level N`) against makedumpfile's `-d N` on the same
//! memory: QEMU's physical dump of a guest whose /init left page cache (an 8 MiB tmpfs file),
//! anonymous memory (dd's 16 MiB buffer) and free memory behind (`workload.txt`).
//!
//! For every level both tools write an LZO kdump file, and the pfns each dumped (bitmap 2) must
//! be the same; where the level excludes zero pages, so must the pfns stored as the one shared
//! zero page. Each level must also really exclude what the workload made, and guestcore's
//! header must say which level it applied. guestcore's ELF at `-d 31` must hold far less than
//! QEMU's dump, and crash must read guestcore's `-d 31` kdump and ELF files as it reads QEMU's
//! unfiltered dump.
//!
//! What makedumpfile 1.7.2 does, found on these captures and relied on here:
//! - It cannot read QEMU 10's ELF: it reads program header i at `sizeof(Elf64_Ehdr) + i *
//!   sizeof(Elf64_Phdr)` whatever e_phoff says, and QEMU puts its section headers there ("Can't
//!   get the number of PT_LOAD"); no option changes that. It reads a copy that differs only in
//!   the header layout ([`makedumpfile_input`]).
//! - Its `max_mapnr` ends with the last memory section that has a mem_map: a 256 MiB guest's
//!   file stops at pfn 0x10000, without QEMU's VGA RAM and BIOS ROM below 4 GiB, which a 4 GiB
//!   guest's file (RAM on both sides of the PCI hole) holds. Bitmaps are compared below
//!   makedumpfile's `max_mapnr`; what guestcore dumps above it (no struct page there, so no
//!   level could exclude it) is only counted.
//! - Zero pages excluded by `-d 1` keep their bit in bitmap 2 and all get one shared page
//!   descriptor (its statistics still count them as excluded). Without bit 1 every page has its
//!   own descriptor; guestcore shares zero pages at every level, so the shared sets are compared
//!   only where bit 1 is set.
//! - It prints "The kernel version is not supported." for Debian's 6.1 and works.

use super::capture::capture;
use super::debuggers::{self, CRASH_COMMANDS};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::kdump::KdumpFile;
use guestcore_testkit::tools::{skip, which};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The levels compared. 0 is the baseline both tools must agree on before any filtering
/// (guestcore runs without `--dump-level` for it).
const LEVELS: [u32; 7] = [0, 1, 2, 4, 8, 16, 31];

const PAGE: u64 = 4096;

/// Writes `out`, a copy of QEMU's ELF dump `qemu` that makedumpfile reads: the program headers
/// moved right after the ELF header, the section headers after them (e_phoff, e_shoff set to
/// match), every other byte as it was — the PT_LOADs keep their offsets, so the pages are
/// QEMU's. All-zero 4 KiB blocks are left as holes (a 4 GiB guest's copy takes ~170 MiB).
fn makedumpfile_input(qemu: &Path, out: &Path) -> Result<(), String> {
    let mut src = File::open(qemu).map_err(|e| format!("{}: {e}", qemu.display()))?;
    let len = src.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 64];
    src.read_exact_at(&mut head, 0).map_err(|e| e.to_string())?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([head[o], head[o + 1]]));
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap());
    let (phoff, shoff) = (u64_at(32), u64_at(40));
    let (phsize, shsize) = (u16_at(54) * u16_at(56), u16_at(58) * u16_at(60));
    // The headers are moved only in QEMU's layout: section headers right after the ELF header,
    // program headers right after them (or already makedumpfile's: nothing to move).
    let moved = if phoff == 64 {
        None
    } else if shoff == 64 && phoff == 64 + shsize && phoff + phsize <= PAGE {
        Some((phoff, phsize, shsize))
    } else {
        return Err(format!(
            "header layout makedumpfile cannot read and this copy does not fix: e_phoff {phoff}, \
             e_shoff {shoff}"
        ));
    };
    let mut dst = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let zero = [0u8; PAGE as usize];
    let mut at = 0u64;
    src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        src.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
        if at == 0 {
            if let Some((phoff, phsize, shsize)) = moved {
                let (phoff, phsize, shsize) = (phoff as usize, phsize as usize, shsize as usize);
                let phdrs = buf[phoff..phoff + phsize].to_vec();
                let shdrs = buf[64..64 + shsize].to_vec();
                buf[64..64 + phsize].copy_from_slice(&phdrs);
                buf[64 + phsize..64 + phsize + shsize].copy_from_slice(&shdrs);
                buf[32..40].copy_from_slice(&64u64.to_le_bytes());
                buf[40..48].copy_from_slice(&(64 + phsize as u64).to_le_bytes());
            }
        }
        // Write the runs of blocks that are not all zero; seek over the rest.
        let mut run: Option<usize> = None;
        for (i, block) in buf[..n].chunks(PAGE as usize).enumerate() {
            let is_zero = block == &zero[..block.len()];
            match (run, is_zero) {
                (None, false) => run = Some(i * PAGE as usize),
                (Some(s), true) => {
                    let e = i * PAGE as usize;
                    dst.write_all_at(&buf[s..e], at + s as u64)
                        .map_err(|e| e.to_string())?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run {
            dst.write_all_at(&buf[s..n], at + s as u64)
                .map_err(|e| e.to_string())?;
        }
        at += n as u64;
    }
    dst.set_len(len).map_err(|e| e.to_string())?;
    dst.flush().map_err(|e| e.to_string())
}

/// What a kdump file says about its pfns, parsed from the 64-bit disk_dump_header layout
/// (`header_version`, `block_size`, `sub_hdr_size`, `bitmap_blocks`, `max_mapnr`; version 6's
/// `max_mapnr_64` in the sub header), cross-checked with guestcore's reader.
pub(super) struct Pfns {
    max_mapnr: u64,
    pub(super) dump_level: i32,
    /// Bitmap 1 (pfns the guest had) and bitmap 2 (pfns dumped), LSB first.
    present: Vec<u8>,
    dumped: Vec<u8>,
    /// One bit per pfn: dumped, and its page descriptor's data is another pfn's too (makedumpfile
    /// stores every zero page excluded by `-d 1` as one shared page). All clear unless read
    /// `with_shared`.
    shared: Vec<u8>,
}

fn bit(bits: &[u8], pfn: u64) -> bool {
    bits.get((pfn / 8) as usize)
        .is_some_and(|b| b >> (pfn % 8) & 1 != 0)
}

fn count(bits: &[u8], below: u64) -> u64 {
    (0..below).filter(|&p| bit(bits, p)).count() as u64
}

impl Pfns {
    /// Reads `path`'s header and bitmaps, and with `with_shared` its page descriptors too.
    pub(super) fn read(path: &Path, with_shared: bool) -> Result<Pfns, String> {
        let info = KdumpFile::open(path)
            .map_err(|e| format!("guestcore's reader: {e}"))?
            .info()
            .clone();
        let f = File::open(path).map_err(|e| e.to_string())?;
        let read = |off: u64, len: u64| -> Result<Vec<u8>, String> {
            let mut v = vec![0u8; len as usize];
            f.read_exact_at(&mut v, off)
                .map_err(|e| format!("{len} bytes at {off:#x}: {e}"))?;
            Ok(v)
        };
        let h = read(0, 448)?;
        let i32_at = |b: &[u8], o: usize| i32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let version = i32_at(&h, 8);
        let block_size = i32_at(&h, 428) as u64;
        let sub_hdr_size = i32_at(&h, 432) as u64;
        let bitmap_blocks = i32_at(&h, 436) as u32 as u64;
        let max_mapnr = if version >= 6 {
            u64_at(&read(block_size, 104)?, 96)
        } else {
            i32_at(&h, 440) as u32 as u64
        };
        // Blocks are the kernel's pages: 4 KiB on x86, 4, 16 or 64 KiB on arm64.
        let block_ok = block_size.is_power_of_two() && (PAGE..=16 * PAGE).contains(&block_size);
        if &h[..8] != b"KDUMP   " || !block_ok || max_mapnr != info.max_mapnr {
            return Err(format!(
                "header: signature {:?}, block size {block_size}, max_mapnr {max_mapnr} \
                 (guestcore's reader: {})",
                String::from_utf8_lossy(&h[..8]),
                info.max_mapnr
            ));
        }
        let half = bitmap_blocks / 2 * block_size;
        let bitmap1 = (1 + sub_hdr_size) * block_size;
        let used = max_mapnr.div_ceil(8);
        let present = read(bitmap1, used)?;
        let dumped = read(bitmap1 + half, used)?;
        let n = count(&dumped, max_mapnr);
        let descs = read(bitmap1 + 2 * half, n * 24)?;
        let offsets: Vec<u64> = descs.chunks(24).map(|d| u64_at(d, 0)).collect();
        // Which descriptors share their data, only where asked (a debug build hashes a million
        // descriptors slowly). Runs of one offset (the zero page over free memory) cost one
        // lookup per run.
        let mut shared = vec![0u8; used as usize];
        if with_shared {
            let mut uses: HashMap<u64, u32> = HashMap::new();
            let mut k = 0;
            while k < offsets.len() {
                let run = offsets[k..]
                    .iter()
                    .take_while(|&&o| o == offsets[k])
                    .count();
                *uses.entry(offsets[k]).or_default() += run as u32;
                k += run;
            }
            let mut many: Vec<u64> = uses
                .into_iter()
                .filter(|&(_, n)| n > 1)
                .map(|(o, _)| o)
                .collect();
            many.sort_unstable();
            let mut last: Option<(u64, bool)> = None;
            // Descriptor k belongs to the k-th dumped pfn.
            for (k, pfn) in (0..max_mapnr).filter(|&p| bit(&dumped, p)).enumerate() {
                let o = offsets[k];
                let is_shared = match last {
                    Some((lo, s)) if lo == o => s,
                    _ => many.binary_search(&o).is_ok(),
                };
                last = Some((o, is_shared));
                if is_shared {
                    shared[(pfn / 8) as usize] |= 1 << (pfn % 8);
                }
            }
        }
        Ok(Pfns {
            max_mapnr,
            dump_level: info.dump_level,
            present,
            dumped,
            shared,
        })
    }

    /// True when the guest had `pfn` (bitmap 1).
    pub(super) fn present(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && bit(&self.present, pfn)
    }

    /// The pfns the bitmaps cover.
    pub(super) fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }

    /// True when the file dumps `pfn` (bitmap 2).
    pub(super) fn dumped(&self, pfn: u64) -> bool {
        pfn < self.max_mapnr && bit(&self.dumped, pfn)
    }

    /// Pfns below `below` the guest had and this file does not dump.
    fn excluded(&self, below: u64) -> u64 {
        (0..below.min(self.max_mapnr))
            .filter(|&p| bit(&self.present, p) && !bit(&self.dumped, p))
            .count() as u64
    }
}

/// Where two bitmaps differ below `below`: empty when they agree, else counts and first pfns.
fn differences(what: &str, mdf: &[u8], gc: &[u8], below: u64) -> Option<String> {
    let (mut only_mdf, mut only_gc) = (Vec::new(), Vec::new());
    for pfn in 0..below {
        match (bit(mdf, pfn), bit(gc, pfn)) {
            (true, false) => only_mdf.push(pfn),
            (false, true) => only_gc.push(pfn),
            _ => {}
        }
    }
    if only_mdf.is_empty() && only_gc.is_empty() {
        return None;
    }
    let first = |v: &[u64]| {
        if v.is_empty() {
            return "none".to_string();
        }
        v.iter()
            .take(8)
            .map(|p| format!("{p:#x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(format!(
        "{what}: {} pfns only in makedumpfile's (first: {}), {} only in guestcore's (first: {})",
        only_mdf.len(),
        first(&only_mdf),
        only_gc.len(),
        first(&only_gc)
    ))
}

/// What the guest's /init workload left behind, in 4 KiB frames (`workload.txt`: `KEY VALUE`
/// pairs on one line, `tmpfs-file PATH BYTES` with two values).
#[derive(Debug)]
pub(super) struct Workload {
    /// The tmpfs file's page cache.
    pub(super) tmpfs: u64,
    /// dd's anonymous memory.
    pub(super) anon: u64,
    /// MemFree.
    pub(super) free: u64,
}

/// The workload of the capture in `dir`; panics, naming `guest`, when a fact is missing.
pub(super) fn workload(guest: &str, dir: &Path) -> Workload {
    let text = std::fs::read_to_string(dir.join("workload.txt")).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut facts = HashMap::new();
    let mut i = 0;
    while i + 1 < words.len() {
        if words[i] == "tmpfs-file" && i + 2 < words.len() {
            facts.insert("tmpfs-bytes", words[i + 2]);
            i += 3;
        } else {
            facts.insert(words[i], words[i + 1]);
            i += 2;
        }
    }
    let fact = |k: &str| -> u64 {
        facts
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{guest}: workload.txt has no {k}: {text:?}"))
    };
    Workload {
        tmpfs: fact("tmpfs-bytes") / PAGE,
        anon: fact("anon-kb") / 4,
        free: fact("memfree-kb") / 4,
    }
}

/// One program run of the test.
struct Job {
    what: String,
    cmd: std::process::Command,
    out: PathBuf,
}

/// Runs `job`; its time in seconds, or why it failed.
fn run(job: &mut Job) -> Result<f64, String> {
    let t = Instant::now();
    let r = job.cmd.output().map_err(|e| format!("{}: {e}", job.what))?;
    if !r.status.success() || !job.out.exists() {
        return Err(format!(
            "{} failed ({}): {}{}",
            job.what,
            r.status,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn check_dump_levels(guest: &str) {
    let Some(dir) = capture(guest) else { return };
    if which("makedumpfile").is_none() {
        skip("makedumpfile is not installed");
        return;
    }
    let started = Instant::now();
    let w = workload(guest, &dir);
    let (tmpfs_pages, anon_pages, free_pages) = (w.tmpfs, w.anon, w.free);
    assert!(
        tmpfs_pages >= 2048 && anon_pages >= 4000,
        "{guest}: the workload made too little: {w:?}"
    );
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release = release.trim();
    let qemu = dir.join("phys.elf");
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mdf_input = tmp.path().join("qemu-for-makedumpfile.elf");
    makedumpfile_input(&qemu, &mdf_input).unwrap_or_else(|e| panic!("{guest}: {e}"));
    eprintln!(
        "{guest}: makedumpfile's copy of QEMU's dump: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Every level by both tools, and the ELF at level 31, two programs at a time.
    let mdf = |n: u32| tmp.path().join(format!("mdf-{n}.kdump"));
    let gc = |n: u32| tmp.path().join(format!("gc-{n}.kdump"));
    let gc_elf = tmp.path().join("gc-31.elf");
    let guestcore = |args: &[&str], out: &Path| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("guestcore"));
        c.arg("-q")
            .arg("dump")
            .arg(&qemu)
            .args(args)
            .arg("-o")
            .arg(out);
        c
    };
    let mut jobs = Vec::new();
    for n in LEVELS {
        let mut c = std::process::Command::new("makedumpfile");
        c.args(["-l", "-d", &n.to_string()])
            .arg(&mdf_input)
            .arg(mdf(n));
        jobs.push(Job {
            what: format!("makedumpfile -l -d {n}"),
            cmd: c,
            out: mdf(n),
        });
    }
    for n in LEVELS {
        let level = n.to_string();
        let args: &[&str] = if n == 0 {
            &["--format", "kdump-lzo"]
        } else {
            &["--format", "kdump-lzo", "--dump-level", &level]
        };
        jobs.push(Job {
            what: format!("guestcore dump {}", args.join(" ")),
            cmd: guestcore(args, &gc(n)),
            out: gc(n),
        });
    }
    jobs.push(Job {
        what: "guestcore dump --format elf --dump-level 31".into(),
        cmd: guestcore(&["--format", "elf", "--dump-level", "31"], &gc_elf),
        out: gc_elf.clone(),
    });
    let jobs: Vec<_> = jobs.into_iter().map(std::sync::Mutex::new).collect();
    let times = debuggers::two_at_a_time(&jobs, |j| run(&mut j.lock().unwrap()));
    let mut failures = Vec::new();
    for (j, t) in jobs.iter().zip(&times) {
        let j = j.lock().unwrap();
        match t {
            Ok(s) => eprintln!(
                "{guest}: {:<50} {s:6.1} s {:>12} bytes",
                j.what,
                std::fs::metadata(&j.out).map_or(0, |m| m.len())
            ),
            Err(e) => failures.push(format!("{guest}: {e}")),
        }
    }
    // makedumpfile's files, the reference, must be there; a guestcore run that failed is in
    // `failures` already, and what needs its file is skipped.
    assert!(
        times[..LEVELS.len()].iter().all(Result::is_ok),
        "{}",
        failures.join("\n")
    );
    let gc_ok = |n: u32| {
        let i = LEVELS.iter().position(|&l| l == n).unwrap();
        times[LEVELS.len() + i].is_ok()
    };
    let gc_elf_ok = times.last().unwrap().is_ok();

    // The pfns each level dumps, and what it excludes.
    let t = Instant::now();
    let mut mdf_max = 0;
    for n in LEVELS {
        let m = Pfns::read(&mdf(n), n & 1 != 0)
            .unwrap_or_else(|e| panic!("{guest}: makedumpfile -d {n}: {e}"));
        assert_eq!(m.dump_level, n as i32, "{guest}: makedumpfile -d {n}");
        mdf_max = m.max_mapnr;
        let g = match Pfns::read(&gc(n), n & 1 != 0) {
            _ if !gc_ok(n) => None,
            Ok(g) => Some(g),
            Err(e) => {
                failures.push(format!("{guest}: guestcore's level {n}: {e}"));
                None
            }
        };
        let below = m.max_mapnr;
        let lower_bounds = [
            (2 | 4 | 8 | 16, 0, "nothing"),
            (2 | 4, tmpfs_pages, "the tmpfs file's page cache"),
            (8, anon_pages, "dd's anonymous memory"),
            (16, free_pages * 3 / 4, "3/4 of MemFree"),
        ];
        let mut row = format!(
            "{guest}: -d {n:2}: makedumpfile dumps {}",
            count(&m.dumped, below)
        );
        for (name, f) in [("makedumpfile", Some(&m)), ("guestcore", g.as_ref())] {
            let Some(f) = f else { continue };
            let excluded = f.excluded(below);
            for (bits, min, what) in lower_bounds {
                if n & bits != 0 && excluded < min.max(1) {
                    failures.push(format!(
                        "{guest}: {name} -d {n} excludes {excluded} pages, fewer than {what} \
                         ({min})"
                    ));
                }
            }
            // Most free pages were never written since boot: zero, unless bit 16 excludes them.
            let zero = count(&f.shared, below);
            let min_zero = if n & 16 == 0 { free_pages / 2 } else { 1 };
            if n & 1 != 0 && zero < min_zero {
                failures.push(format!(
                    "{guest}: {name} -d {n} stores {zero} pages as the shared zero page, fewer \
                     than {min_zero} (MemFree: {free_pages} pages)"
                ));
            }
            if name == "makedumpfile" {
                row += &format!(", excludes {excluded}");
                if n & 1 != 0 {
                    row += &format!(", stores {zero} as the shared zero page");
                }
            }
        }
        eprintln!("{row}");
        let Some(g) = g else { continue };
        if g.dump_level != n as i32 {
            failures.push(format!(
                "{guest}: guestcore's level {n} file says dump_level {}",
                g.dump_level
            ));
        }
        let what = format!("{guest}: level {n}");
        failures.extend(differences(
            &format!("{what}, bitmap 1 (pfns present)"),
            &m.present,
            &g.present,
            below,
        ));
        failures.extend(differences(
            &format!("{what}, bitmap 2 (pfns dumped)"),
            &m.dumped,
            &g.dumped,
            below,
        ));
        if n & 1 != 0 {
            failures.extend(differences(
                &format!("{what}, pfns stored as the shared zero page"),
                &m.shared,
                &g.shared,
                below,
            ));
        }
        let above = (below..g.max_mapnr).filter(|&p| bit(&g.dumped, p)).count();
        if above > 0 {
            eprintln!(
                "{guest}: level {n}: guestcore also dumps {above} pfns from makedumpfile's \
                 max_mapnr {below:#x} to its own {:#x} (not compared)",
                g.max_mapnr
            );
        }
    }

    // The ELF at level 31 leaves out what the kdump file does, and its zero pages too: far less
    // than QEMU's dump holds.
    if gc_elf_ok {
        let bytes = |p: &Path| -> u64 {
            ElfCore::open(p)
                .unwrap_or_else(|e| panic!("{guest}: {}: {e}", p.display()))
                .segments()
                .iter()
                .map(|s| s.filesz)
                .sum()
        };
        let (ours, whole) = (bytes(&gc_elf), bytes(&qemu));
        if ours > whole / 2 {
            failures.push(format!(
                "{guest}: guestcore's ELF at -d 31 holds {ours} bytes of memory, QEMU's {whole}"
            ));
        }
    }
    eprintln!(
        "{guest}: bitmaps compared in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // crash on guestcore's -d 31 files (and, as the reference's own check, on makedumpfile's)
    // prints what it prints on QEMU's unfiltered dump: sys (less DUMPFILE, where a filtered
    // kdump says [PARTIAL DUMP]), bt -a, log, ps and kmem -i. (kmem -i reads counters, not free
    // pages: makedumpfile's -d 31 file gives the same answer.)
    if which("crash").is_none() {
        skip("crash is not installed");
    } else if let Some(vmlinux) = debuggers::vmlinux(release) {
        let commands = tmp.path().join("crash.cmds");
        std::fs::write(&commands, CRASH_COMMANDS).unwrap();
        let mut cores = vec![
            ("QEMU's dump".to_string(), qemu.clone()),
            ("makedumpfile -d 31".to_string(), mdf(31)),
        ];
        if gc_ok(31) {
            cores.push(("guestcore's kdump-lzo -d 31".to_string(), gc(31)));
        }
        if gc_elf_ok {
            cores.push(("guestcore's ELF -d 31".to_string(), gc_elf.clone()));
        }
        let t = Instant::now();
        let answers =
            debuggers::two_at_a_time(&cores, |(_, p)| debuggers::crash(&vmlinux, p, &commands));
        let want = answers[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("{guest}: crash on QEMU's dump: {e}"));
        assert!(
            want.contains(&format!("RELEASE: {release}")) && want.contains("Linux version"),
            "{guest}: crash on QEMU's dump printed too little:\n{want}"
        );
        for ((what, _), got) in cores.iter().zip(&answers).skip(1) {
            match got {
                Err(e) => failures.push(format!("{guest}: crash on {what}: {e}")),
                Ok(text) if text != want => failures.push(format!(
                    "{guest}: crash on {what} differs from QEMU's dump:\n{}",
                    debuggers::first_difference(want, text)
                )),
                Ok(_) => {}
            }
        }
        eprintln!(
            "{guest}: crash on {} files: {:.1} s",
            cores.len(),
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "{guest}: dump levels checked in {:.1} s (makedumpfile's max_mapnr {mdf_max:#x})",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
