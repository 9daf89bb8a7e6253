//! QEMU migration streams as input, against QEMU's own view of the same stopped guest.
//!
//! Boots the harness's x86_64 guest (`kernels/amd64`, `initramfs/amd64.cpio.gz` in the guest
//! cache), and three times: stops it, takes `info registers -a` and `dump-guest-memory`
//! (ELF), then writes one stream with `migrate file:` — plain, with `mapped-ram`, and with
//! `background-snapshot` (taken while stopped, so it equals the dump exactly) — and lets it
//! run a little before the next. Then, for every stream: each page guestcore reads equals
//! QEMU's ELF, the registers equal `info registers`, VMCOREINFO is found; gdb reads the
//! kernel release from `guestcore dump --paging` of a stream; and a truncated or corrupted
//! stream is an error, not a dump.

use super::gdb_reads_release;
use guestcore::cpu::hmp::parse_info_registers;
use guestcore::image::{GuestImage, ImageFormat, OpenOptions};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::PhysMemory;
use guestcore::qmp::QmpClient;
use guestcore_testkit::tools::{guest_cache, skip, which};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// QEMU, killed by PID when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stream {
    name: &'static str,
    mig: PathBuf,
    elf: PathBuf,
    registers: String,
}

fn boot(dir: &Path) -> Option<(Qemu, QmpClient, String)> {
    if !guestcore_testkit::tools::real_guests_wanted() {
        return None;
    }
    if which("qemu-system-x86_64").is_none() {
        skip("qemu-system-x86_64 is not installed");
        return None;
    }
    let cache = guest_cache();
    let kernel = cache.join("kernels/amd64/vmlinuz");
    let initrd = cache.join("initramfs/amd64.cpio.gz");
    if !kernel.is_file() || !initrd.is_file() {
        skip(format!(
            "no amd64 guest in {} (run scripts/guest/capture.sh x86_64)",
            cache.display()
        ));
        return None;
    }
    let sock = dir.join("qmp.sock");
    let serial = dir.join("serial.log");
    let child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64", "-m", "256M",
        ])
        .args([
            "-smp",
            "2",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .args(["-monitor", "none", "-device", "vmcoreinfo"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 printk.time=1"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64");
    let mut qemu = Qemu(child);
    let t0 = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("GUESTCORE-READY") {
            break text;
        }
        if let Ok(Some(st)) = qemu.0.try_wait() {
            panic!("QEMU exited ({st}) before the guest was ready:\n{text}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "guest not ready:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let qmp = QmpClient::connect(&sock, Duration::from_secs(120)).unwrap();
    Some((qemu, qmp, text))
}

fn serial_value(serial: &str, key: &str) -> String {
    serial
        .lines()
        .find_map(|l| l.trim_end().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the serial log"))
        .trim()
        .to_string()
}

fn migrate(qmp: &mut QmpClient, path: &Path, caps: &[(&str, bool)]) {
    let caps: Vec<_> = caps
        .iter()
        .map(|(c, on)| json!({"capability": c, "state": on}))
        .collect();
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({ "capabilities": caps })),
    )
    .unwrap();
    qmp.execute(
        "migrate",
        Some(json!({"uri": format!("file:{}", path.display())})),
    )
    .unwrap();
    let t0 = Instant::now();
    loop {
        let st = qmp.execute("query-migrate", None).unwrap();
        match st["status"].as_str() {
            Some("completed") => return,
            Some("failed") | Some("cancelled") => panic!("migration to {path:?}: {st}"),
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "migration hangs: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every byte of the stream's RAM equals QEMU's ELF; QEMU's ELF has nothing else but the
/// video RAM at its PCI BAR (placed by the guest's firmware, so not placed offline).
fn check_pages(s: &Stream, img: &GuestImage) {
    let elf = ElfCore::open(&s.elf).unwrap();
    let ram = img.memory.ram();
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    let mut pages = 0u64;
    for r in ram.ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(1 << 20) as usize;
            img.memory.read_at(at, &mut a[..n]).unwrap();
            elf.read_at(at, &mut b[..n])
                .unwrap_or_else(|e| panic!("{}: QEMU's ELF lacks {at:#x}: {e}", s.name));
            if a[..n] != b[..n] {
                let i = (0..n).find(|&i| a[i] != b[i]).unwrap();
                panic!(
                    "{}: byte {:#x} differs from QEMU's dump",
                    s.name,
                    at + i as u64
                );
            }
            pages += n as u64 / 4096;
            at += n as u64;
        }
    }
    let vram = img
        .migration
        .as_ref()
        .unwrap()
        .blocks
        .iter()
        .find(|b| b.block.name.ends_with("vga.vram"))
        .map_or(0, |b| b.block.length);
    assert_eq!(
        elf.ram().total(),
        ram.total() + vram,
        "{}: QEMU's ELF holds RAM the stream does not place",
        s.name
    );
    assert!(pages > 60_000, "{}: {pages} pages compared", s.name);
}

fn check_cpus(s: &Stream, img: &GuestImage) {
    let want = parse_info_registers(&s.registers).unwrap();
    assert_eq!(img.cpus.len(), want.len(), "{}", s.name);
    for (got, want) in img.cpus.iter().zip(&want) {
        let ctx = format!("{} vCPU {}", s.name, want.index);
        let got = got
            .as_x86()
            .unwrap_or_else(|| panic!("{ctx}: not an x86 vCPU: {got:?}"));
        assert_eq!(got.index, want.index, "{ctx}");
        assert_eq!(got.gpr, want.gpr, "{ctx}");
        assert_eq!((got.rip, got.rflags), (want.rip, want.rflags), "{ctx}");
        assert_eq!(got.cr, want.cr, "{ctx}");
        assert_eq!(got.efer, want.efer, "{ctx}");
        assert_eq!(got.a20_enabled, want.a20_enabled, "{ctx}");
        for (g, w, n) in [
            (got.cs, want.cs, "cs"),
            (got.ds, want.ds, "ds"),
            (got.es, want.es, "es"),
            (got.fs, want.fs, "fs"),
            (got.gs, want.gs, "gs"),
            (got.ss, want.ss, "ss"),
            (got.ldt, want.ldt, "ldt"),
            (got.tr, want.tr, "tr"),
        ] {
            // HMP prints flags & 0x00ffff00; the vmstate (like QEMU's ELF note) keeps the
            // descriptor's base bits 23:16 and 31:24 in the rest.
            let key =
                |s: guestcore::cpu::Segment| (s.selector, s.base, s.limit, s.flags & 0x00ff_ff00);
            assert_eq!(key(g), key(w), "{ctx} {n}");
        }
        for (g, w, n) in [(got.gdt, want.gdt, "gdt"), (got.idt, want.idt, "idt")] {
            assert_eq!((g.base, g.limit), (w.base, w.limit), "{ctx} {n}");
        }
    }
}

/// A stream cut short or with a lying vmdesc is refused, by the library and the CLI.
fn check_bad_copies(s: &Stream, dir: &Path) {
    let bytes = std::fs::read(&s.mig).unwrap();
    let vmdesc = bytes
        .windows(8)
        .rposition(|w| w == b"\"env.eip")
        .expect("the vmdesc names env.eip");
    // The last section header of cpu instance 0, version 12, before the vmdesc (guest RAM
    // may hold the same bytes, but the device sections come after all RAM).
    let cpu = bytes[..vmdesc]
        .windows(12)
        .rposition(|w| w == b"\x03cpu\0\0\0\0\0\0\0\x0c")
        .expect("a cpu section");
    let mut lying = bytes.clone();
    let size_at = vmdesc
        + lying[vmdesc..]
            .windows(9)
            .position(|w| w == b"\"size\": 8")
            .unwrap();
    lying[size_at + 8] = b'4';
    let cuts: Vec<(String, Vec<u8>)> = vec![
        ("cut in the pages".into(), bytes[..bytes.len() / 2].to_vec()),
        ("cut in the cpu section".into(), bytes[..cpu + 50].to_vec()),
        (
            "cut in the vmdesc".into(),
            bytes[..bytes.len() - 100].to_vec(),
        ),
        ("a vmdesc that lies about eip".into(), lying),
    ];
    for (what, data) in cuts {
        let p = dir.join("bad.mig");
        std::fs::write(&p, &data).unwrap();
        let err = GuestImage::open(&p, &OpenOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        let out = assert_cmd::Command::cargo_bin("guestcore")
            .unwrap()
            .args(["-q", "dump"])
            .arg(&p)
            .arg("-o")
            .arg(dir.join("bad.elf"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: guestcore dump succeeded");
        assert!(!dir.join("bad.elf").exists(), "{what}: a dump was written");
        eprintln!("{what}: {err}");
    }
}

#[test]
fn x86_64_migration_streams() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some((qemu, mut qmp, serial)) = boot(dir) else {
        return;
    };
    let release = serial_value(&serial, "GUESTCORE-RELEASE");
    let uts =
        u64::from_str_radix(&serial_value(&serial, "GUESTCORE-SYM init_uts_ns "), 16).unwrap();
    let mut streams = Vec::new();
    let variants: [(&str, &[(&str, bool)]); 3] = [
        (
            "plain",
            &[("mapped-ram", false), ("background-snapshot", false)],
        ),
        (
            "mapped-ram",
            &[("mapped-ram", true), ("background-snapshot", false)],
        ),
        (
            "background-snapshot",
            &[("mapped-ram", false), ("background-snapshot", true)],
        ),
    ];
    for (i, (name, caps)) in variants.into_iter().enumerate() {
        if i > 0 {
            qmp.execute("cont", None).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        qmp.execute("stop", None).unwrap();
        let registers = qmp.hmp("info registers -a").unwrap();
        let elf = dir.join(format!("{name}.elf"));
        qmp.execute(
            "dump-guest-memory",
            Some(json!({"paging": false, "protocol": format!("file:{}", elf.display())})),
        )
        .unwrap();
        let mig = dir.join(format!("{name}.mig"));
        migrate(&mut qmp, &mig, caps);
        streams.push(Stream {
            name,
            mig,
            elf,
            registers,
        });
    }
    let _ = qmp.execute("quit", None);
    drop(qemu);
    eprintln!(
        "migration: guest and streams in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    for s in &streams {
        let t = Instant::now();
        let img = GuestImage::open(&s.mig, &OpenOptions::default()).unwrap();
        eprintln!("{}: opened in {:.2} s", s.name, t.elapsed().as_secs_f64());
        assert_eq!(
            img.format,
            ImageFormat::Migration {
                mapped_ram: s.name == "mapped-ram",
                libvirt: false
            }
        );
        let m = img.migration.as_ref().unwrap();
        assert!(m.machine.starts_with("pc-i440fx-"), "{}", m.machine);
        assert!(m
            .blocks
            .iter()
            .any(|b| b.block.name == "pc.ram" && b.block.length == 256 << 20));
        // QEMU sends every page of every block: nothing is clipped (no warning).
        let clipped: Vec<_> = m
            .blocks
            .iter()
            .filter(|b| b.held.is_some_and(|h| h < b.block.length))
            .map(|b| (&b.block.name, b.block.length, b.held))
            .collect();
        assert!(clipped.is_empty(), "{}: clipped {clipped:?}", s.name);
        assert!(
            m.shortfalls(img.cpus.len()).is_empty(),
            "{}: {:?}",
            s.name,
            m.shortfalls(img.cpus.len())
        );
        check_pages(s, &img);
        check_cpus(s, &img);
        assert_eq!(
            img.vmcoreinfo_get("OSRELEASE"),
            Some(release.as_str()),
            "{}",
            s.name
        );
        assert!(
            m.vmcoreinfo_paddr.is_some(),
            "{}: vmcoreinfo device",
            s.name
        );
        let info = super::guestcore(&["info"], &s.mig, &[]);
        assert!(
            info.contains("machine:  pc-i440fx-") && info.contains("pc.ram"),
            "{info}"
        );
    }

    // gdb reads the kernel release from a paging dump of a stream.
    let paging = dir.join("paging.elf");
    let t = Instant::now();
    super::dump(
        &["dump", "--paging", streams[1].mig.to_str().unwrap()],
        &paging,
    );
    eprintln!(
        "mapped-ram: paging dump in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    gdb_reads_release(&paging, uts + 130, &release, "mapped-ram paging dump");

    check_bad_copies(&streams[0], dir);
    eprintln!("migration: all in {:.1} s", t0.elapsed().as_secs_f64());
}

/// A `virsh save` image written by a real libvirt (`scripts/guest/capture-virsh.sh`: libvirt's
/// header, the domain XML and its padding, then QEMU's stream), against QEMU's own dump and
/// registers of the same suspended guest: the same pages, registers and VMCOREINFO, and crash
/// prints on a dump of it what it prints on QEMU's dump.
#[test]
fn virsh_save_image() {
    let Some(dir) = super::capture::capture("x86_64-virsh") else {
        return;
    };
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release = release.trim();
    let s = Stream {
        name: "virsh save",
        mig: dir.join("virsh.save"),
        elf: dir.join("phys.elf"),
        registers: std::fs::read_to_string(dir.join("registers.txt")).unwrap(),
    };
    let img = GuestImage::open(&s.mig, &OpenOptions::default()).unwrap();
    assert_eq!(
        img.format,
        ImageFormat::Migration {
            mapped_ram: false,
            libvirt: true
        }
    );
    check_pages(&s, &img);
    check_cpus(&s, &img);
    assert_eq!(img.vmcoreinfo_get("OSRELEASE"), Some(release));
    let info = super::guestcore(&["info"], &s.mig, &[]);
    assert!(
        info.contains("in a libvirt save image") && info.contains("machine:  pc-i440fx-"),
        "{info}"
    );
    // crash on a dump of the save image, as on QEMU's dump of the same instant.
    if guestcore_testkit::tools::require("crash").is_none() {
        return;
    }
    let Some(vmlinux) = super::debuggers::vmlinux(release) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("save.elf");
    super::dump(&["dump", s.mig.to_str().unwrap()], &out);
    let commands = tmp.path().join("crash.cmds");
    std::fs::write(&commands, super::debuggers::CRASH_COMMANDS).unwrap();
    let want = super::debuggers::crash(&vmlinux, &s.elf, &commands).unwrap();
    assert!(want.contains(&format!("RELEASE: {release}")), "{want}");
    let got = super::debuggers::crash(&vmlinux, &out, &commands).unwrap();
    assert!(
        got == want,
        "crash on the save image's dump: {}",
        super::debuggers::first_difference(&want, &got)
    );
}
