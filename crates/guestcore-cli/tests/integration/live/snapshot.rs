//! Background snapshots of a running guest: a consistent dump, ELF or kdump, with the guest
//! stopped for milliseconds. Checked from outside (a second QMP monitor records QEMU's STOP and
//! RESUME events), against QEMU's own dump of a stopped guest (page for page, and crash's
//! answers on both), and with a guest process that keeps writing a pattern while the snapshot
//! streams (`scripts/guest/pattern_writer.c`): the dump holds one instant of it.

use super::*;
use crate::real_guests::debuggers::{crash, first_difference, vmlinux, CRASH_COMMANDS};
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::PhysMemory;

/// QEMU's timestamp of an event, in seconds.
fn event_time(e: &Value) -> f64 {
    let t = &e["timestamp"];
    t["seconds"].as_f64().unwrap() + t["microseconds"].as_f64().unwrap() / 1e6
}

/// Every stop seen in `events` (STOP to the next RESUME), in milliseconds.
fn pauses_ms(events: &[Value]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stopped = None;
    for e in events {
        match e["event"].as_str() {
            Some("STOP") => stopped = Some(event_time(e)),
            Some("RESUME") => {
                if let Some(t) = stopped.take() {
                    out.push((event_time(e) - t) * 1e3);
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn background_snapshot_dump_stops_the_guest_for_milliseconds() {
    let files = guest_or_skip!();
    // Anonymous and shmem RAM: userfaultfd write protection works on both. (File-backed
    // shared RAM on a disk filesystem it does not: see the fallback test below.)
    for (ram, bound_ms) in [(Ram::Anonymous, 50.0), (Ram::Memfd, 250.0)] {
        let g = Guest::boot(&files, "1G", ram);
        let release = g.line("GUESTCORE-RELEASE");
        let mut b = g.qmp_b();
        running_via(&mut b);
        b.take_events();
        let out = g.path("snap.elf");
        let stderr = snapshot_dump(&g, &[], &out);
        assert!(!stderr.contains("guest paused for"), "{stderr}");
        assert!(running_via(&mut b), "the guest runs after the snapshot");
        let events = b.take_events();
        let pauses = pauses_ms(&events);
        eprintln!("{ram:?}: stops seen from the second monitor: {pauses:?} ms");
        assert_eq!(pauses.len(), 1, "one stop: {events:?}");
        assert!(
            pauses[0] <= bound_ms,
            "{ram:?}: the guest was stopped {} ms",
            pauses[0]
        );
        // Registers and VMCOREINFO of the snapshot's instant: the kernel reads back through
        // the dump's own page tables, from its own registers.
        let j = info_json(&out);
        assert_eq!(j["osrelease"], release.as_str());
        assert_eq!(j["cpus"].as_array().map(Vec::len), Some(2), "{j}");
        assert!(release_via_paging_dump(&out, &g).starts_with(&release));
        if ram != Ram::Anonymous {
            continue;
        }
        // A paging core from a snapshot of the running guest: gdb reads the release through
        // its PT_LOADs' virtual addresses.
        let paging = g.path("snap-paging.elf");
        let stderr = snapshot_dump(&g, &["--paging"], &paging);
        assert!(stderr.contains("paging PT_LOADs"), "{stderr}");
        let uts = u64::from_str_radix(&g.sym("init_uts_ns"), 16).unwrap();
        crate::real_guests::gdb_reads_release(&paging, uts + 130, &release, "snapshot paging core");
        // One instant: with the guest stopped (by us, so it stays stopped), the snapshot's
        // pages and registers equal QEMU's own dump of the same moment, page for page.
        b.execute("stop", None).unwrap();
        let regs = b.hmp("info registers -a").unwrap();
        let cpus = guestcore::cpu::hmp::parse_info_registers(&regs).unwrap();
        let ours = g.path("stopped.elf");
        snapshot_dump(&g, &[], &ours);
        assert!(!running_via(&mut b), "a guest stopped before stays stopped");
        let theirs = g.path("qemu.elf");
        b.execute(
            "dump-guest-memory",
            Some(json!({"paging": false, "protocol": format!("file:{}", theirs.display())})),
        )
        .unwrap();
        // The same instant as a kdump file, streamed from a snapshot too.
        let kdump = g.path("stopped.kdump");
        let stderr = snapshot_dump(&g, &["--format", "kdump-lzo"], &kdump);
        assert!(stderr.contains("kdump-lzo"), "{stderr}");
        // And as a paging core: the snapshot's PT_LOADs are those of a --pause paging dump of
        // the same instant (same virtual and physical addresses, sizes, flags and bytes).
        let paging = g.path("stopped-paging.elf");
        snapshot_dump(&g, &["--paging"], &paging);
        let paused = g.path("paused-paging.elf");
        succeed(
            guestcore()
                .args(["dump", "--pause", &g.input, "--paging", "-o"])
                .arg(&paused),
        );
        same_loads(&paging, &paused);
        // Both paths honour --elf-class: an ELF32 core of the same stopped guest, from a
        // snapshot and from a pause, has the same class, machine and PT_LOADs.
        let snap32 = g.path("stopped-32.elf");
        snapshot_dump(&g, &["--elf-class", "32"], &snap32);
        let paused32 = g.path("paused-32.elf");
        succeed(
            guestcore()
                .args(["dump", "--pause", &g.input, "--elf-class", "32", "-o"])
                .arg(&paused32),
        );
        same_elf32_headers(&snap32, &paused32);
        b.execute("cont", None).unwrap();
        for file in [&ours, &kdump] {
            let j = info_json(file);
            assert_eq!(j["osrelease"], release.as_str(), "{j}");
            let got = j["cpus"].as_array().unwrap();
            assert_eq!(got.len(), cpus.len(), "{j}");
            for (c, want) in got.iter().zip(&cpus) {
                assert_eq!(c["cr3"], format!("{:#x}", want.cr3()));
                assert_eq!(c["rip"], format!("{:#x}", want.rip));
                assert_eq!(c["rsp"], format!("{:#x}", want.gpr[7]));
            }
        }
        let k = KdumpFile::open(&kdump).unwrap();
        let (ours_elf, theirs_elf) = (ours, theirs);
        let (ours, theirs) = (loads(&ours_elf), loads(&theirs_elf));
        let mut pages = 0;
        let mut page_k = vec![0u8; 4096];
        for (pa, d) in &ours {
            for (i, page) in d.chunks(4096).enumerate() {
                let a = pa + (i * 4096) as u64;
                let q = phys(&theirs, a, page.len())
                    .unwrap_or_else(|| panic!("{a:#x} not in QEMU's dump"));
                assert!(q == page, "page {a:#x} differs from QEMU's dump");
                k.read_at(a, &mut page_k[..page.len()]).unwrap();
                assert!(
                    page_k[..page.len()] == *page,
                    "page {a:#x} of the kdump file differs"
                );
                pages += 1;
            }
        }
        assert!(pages >= 260_000, "compared {pages} pages");
        assert_eq!(k.dumped_pages(), pages as u64);
        drop((ours, theirs, k));
        // crash answers the same on QEMU's dump and on both snapshot files.
        crash_agrees(&release, &theirs_elf, &[&ours_elf, &kdump, &paging]);
    }
}

/// `guestcore dump qmp: ARGS -o OUT`, which must succeed from a background snapshot; its stderr.
fn snapshot_dump(g: &Guest, args: &[&str], out: &Path) -> String {
    let o = succeed(
        guestcore()
            .args(["dump", &g.input])
            .args(args)
            .arg("-o")
            .arg(out),
    );
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr.contains("background snapshot: guest stopped"),
        "{stderr}"
    );
    stderr
}

/// The PT_LOADs of two paging cores, as (vaddr, paddr, memsz, flags, bytes): equal.
fn same_loads(a: &Path, b: &Path) {
    use object::read::elf::{FileHeader, ProgramHeader};
    let (da, db) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    type Load<'a> = (u64, u64, u64, u32, &'a [u8]);
    fn loads(data: &[u8]) -> Vec<Load<'_>> {
        let hdr = object::elf::FileHeader64::<object::Endianness>::parse(data).unwrap();
        let e = hdr.endian().unwrap();
        let mut out = Vec::new();
        for p in hdr.program_headers(e, data).unwrap() {
            if p.p_type(e) == object::elf::PT_LOAD {
                let bytes = p.data(e, data).unwrap();
                out.push((
                    p.p_vaddr(e),
                    p.p_paddr(e),
                    p.p_memsz(e),
                    p.p_flags(e),
                    bytes,
                ));
            }
        }
        out
    }
    let (la, lb) = (loads(&da), loads(&db));
    assert!(la.len() > 1000, "{} PT_LOADs", la.len());
    assert_eq!(la.len(), lb.len(), "PT_LOAD counts");
    for (x, y) in la.iter().zip(&lb) {
        assert!(x == y, "PT_LOAD at {:#x} differs", x.0);
    }
}

/// Two ELF32 cores with the same class, machine, program header types and PT_LOADs (`p_vaddr`,
/// `p_paddr`, sizes, flags; offsets may differ: a snapshot reserves room for its notes).
fn same_elf32_headers(a: &Path, b: &Path) {
    use object::read::elf::{FileHeader, ProgramHeader};
    type Phdr = (u32, u32, u32, u32, u32, u32);
    fn headers(path: &Path) -> (u8, u16, Vec<Phdr>) {
        let data = std::fs::read(path).unwrap();
        assert_eq!(data.get(4), Some(&1), "{}: not ELFCLASS32", path.display());
        let hdr = object::elf::FileHeader32::<object::Endianness>::parse(&*data)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let e = hdr.endian().unwrap();
        let phdrs = hdr
            .program_headers(e, &*data)
            .unwrap()
            .iter()
            .map(|p| {
                let load = p.p_type(e) == object::elf::PT_LOAD;
                (
                    p.p_type(e),
                    p.p_vaddr(e),
                    p.p_paddr(e),
                    if load { p.p_filesz(e) } else { 0 },
                    if load { p.p_memsz(e) } else { 0 },
                    p.p_flags(e),
                )
            })
            .collect();
        (data[4], hdr.e_machine(e), phdrs)
    }
    let (ha, hb) = (headers(a), headers(b));
    assert_eq!(
        (ha.0, ha.1),
        (hb.0, hb.1),
        "class and machine: snapshot vs pause"
    );
    assert!(ha.2.len() > 1, "{} program headers", ha.2.len());
    assert_eq!(ha.2, hb.2, "program headers: snapshot vs pause");
}

/// crash (`sys`, `bt -a`, `log`, `ps`, `kmem -i`) prints on each of `ours` what it prints on
/// `qemu`, with the guest kernel's debug vmlinux.
fn crash_agrees(release: &str, qemu: &Path, ours: &[&Path]) {
    if guestcore_testkit::tools::require("crash").is_none() {
        return;
    }
    let Some(vmlinux) = vmlinux(release) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("crash.cmds");
    std::fs::write(&commands, CRASH_COMMANDS).unwrap();
    let want =
        crash(&vmlinux, qemu, &commands).unwrap_or_else(|e| panic!("crash on QEMU's dump: {e}"));
    assert!(
        want.contains(&format!("RELEASE: {release}")) && want.contains("PID: 0 "),
        "crash on QEMU's dump printed too little:\n{want}"
    );
    for p in ours {
        let got = crash(&vmlinux, p, &commands)
            .unwrap_or_else(|e| panic!("crash on {}: {e}", p.display()));
        assert!(
            got == want,
            "crash on {} differs from QEMU's dump: {}",
            p.display(),
            first_difference(&want, &got)
        );
    }
    eprintln!(
        "crash agrees with QEMU's dump on {} snapshot files",
        ours.len()
    );
}

// --- A guest that keeps writing while the snapshot streams ---------------------------------

/// The harness guest with the pattern writer in its initramfs (built here: `gcc -static`).
fn pattern_guest_files() -> Result<GuestFiles, String> {
    let base = guest_files()?;
    let Some(gcc) = guestcore_testkit::tools::which("gcc") else {
        return Err("gcc is not installed (the pattern writer is built with gcc -static)".into());
    };
    let (initrd, tmp) = {
        let build = tempfile::tempdir().unwrap();
        let bin = build.path().join("pattern_writer");
        let ok = std::process::Command::new(gcc)
            .args(["-static", "-O2", "-s", "-Wall", "-o"])
            .arg(&bin)
            .arg(repo().join("scripts/guest/pattern_writer.c"))
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("gcc -static failed on pattern_writer.c (on Debian: libc6-dev)".into());
        }
        build_initramfs("amd64", "amd64", Some(&bin))?
    };
    Ok(GuestFiles {
        kernel: base.kernel,
        initrd,
        _tmp: Some(tmp),
    })
}

/// The pattern writer's sweep counter of each of its `pages` pages in `mem`, found by their
/// `magic` at offset 0 and index at 8; `None` for an index no page (or more than one) holds.
fn sweeps(mem: &dyn PhysMemory, pages: usize, magic: u64) -> Vec<Option<u64>> {
    let mut out = vec![None; pages];
    let mut seen = vec![0u32; pages];
    let mut head = [0u8; 24];
    for r in mem.ram().ranges() {
        let mut a = r.start.next_multiple_of(4096);
        while a + 4096 <= r.end {
            mem.read_at(a, &mut head).unwrap();
            let word = |i: usize| u64::from_le_bytes(head[8 * i..8 * i + 8].try_into().unwrap());
            if word(0) == magic && (word(1) as usize) < pages {
                let i = word(1) as usize;
                seen[i] += 1;
                out[i] = Some(word(2));
            }
            a += 4096;
        }
    }
    for (o, n) in out.iter_mut().zip(seen) {
        if n != 1 {
            *o = None;
        }
    }
    out
}

/// Whether `sweeps` is one instant of the writer: sweep k in pages 0..j, k - 1 in the rest.
/// `Err` says how it is not.
fn one_instant(sweeps: &[Option<u64>]) -> Result<u64, String> {
    let got: Vec<u64> = sweeps
        .iter()
        .enumerate()
        .map(|(i, s)| s.ok_or(format!("page {i} of the pattern is missing or twice")))
        .collect::<Result<_, _>>()?;
    let k = got[0];
    let j = got.iter().position(|&s| s != k).unwrap_or(got.len());
    match got[j..].iter().position(|&s| s + 1 != k) {
        None => Ok(k),
        Some(bad) => Err(format!(
            "pages 0..{j} hold sweep {k}, then page {} holds sweep {} (one instant holds only {k} and {})",
            j + bad,
            got[j + bad],
            k.saturating_sub(1)
        )),
    }
}

#[test]
fn background_snapshot_holds_one_instant_of_a_guest_that_keeps_writing() {
    let files = guest_or_skip!(pattern_guest_files());
    let g = Guest::boot(&files, "1G", Ram::Anonymous);
    let line = g.line("GUESTCORE-PATTERN pages ");
    let mut it = line.split_whitespace();
    let pages: usize = it.next().unwrap().parse().unwrap();
    assert_eq!(it.next(), Some("magic"));
    let magic = u64::from_str_radix(it.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    let mut b = g.qmp_b();
    running_via(&mut b);
    b.take_events();

    let elf = g.path("pattern.elf");
    let kdump = g.path("pattern.kdump");
    for (out, format) in [(&elf, "elf"), (&kdump, "kdump-lzo")] {
        snapshot_dump(&g, &["--format", format], out);
    }
    assert!(running_via(&mut b));
    let pauses = pauses_ms(&b.take_events());
    eprintln!("stops seen from the second monitor: {pauses:?} ms");
    assert_eq!(pauses.len(), 2, "one stop per snapshot");
    assert!(pauses.iter().all(|&p| p <= 50.0), "{pauses:?} ms");

    let in_elf = one_instant(&sweeps(
        &guestcore::phys::elf::ElfCore::open(&elf).unwrap(),
        pages,
        magic,
    ))
    .unwrap_or_else(|e| panic!("the ELF snapshot is not one instant: {e}"));
    let in_kdump = one_instant(&sweeps(&KdumpFile::open(&kdump).unwrap(), pages, magic))
        .unwrap_or_else(|e| panic!("the kdump snapshot is not one instant: {e}"));
    eprintln!("snapshots at sweeps {in_elf} (ELF) and {in_kdump} (kdump)");
    // The writer ran: between the snapshots (and while they streamed, since the guest was only
    // ever stopped for the milliseconds above), it made more sweeps.
    assert!(in_elf > 0 && in_kdump > in_elf, "{in_elf} then {in_kdump}");

    // The control: a copy made while the guest runs (--no-pause) is not one instant; it is
    // reported, not asserted (a writer that happened not to run during the copy would pass).
    let racy = g.path("racy.elf");
    succeed(
        guestcore()
            .args(["dump", "--no-pause", &g.input, "-o"])
            .arg(&racy),
    );
    let control = one_instant(&sweeps(
        &guestcore::phys::elf::ElfCore::open(&racy).unwrap(),
        pages,
        magic,
    ));
    eprintln!("control, a --no-pause copy of the running guest: {control:?}");
}

#[test]
fn background_snapshot_falls_back_to_a_pause_with_the_reason() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::SharedFile);
    let out = g.path("fallback.elf");
    let o = succeed(guestcore().args(["dump", &g.input, "-o"]).arg(&out));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no background snapshot: QEMU refuses background-snapshot")
            && stderr.contains("guest paused for"),
        "{stderr}"
    );
    // Dumps that need more than physical memory say so, and pause.
    let o = succeed(
        guestcore()
            .args(["dump", &g.input, "--format", "kdump-lzo", "-d", "31", "-o"])
            .arg(g.path("d31.kdump")),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no background snapshot: --dump-level above 1"),
        "{stderr}"
    );
    assert!(g.running());
}
