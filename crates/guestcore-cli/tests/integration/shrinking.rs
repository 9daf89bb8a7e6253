//! An input cut (truncated) while guestcore reads it — a copy restarted, a cleanup script — is
//! an error naming the file, never a SIGBUS, and leaves no file behind: raw, LiME and QEMU
//! migration inputs, which are all read through a mapping (`phys::mmap` in the library).
//!
//! Deterministic without a test hook: the command is stopped (SIGSTOP) once it has mapped its
//! input — its temporary output file exists, or `/proc/PID/maps` names the input — the input is
//! truncated, and the command continued. Whatever it had read by then, the rest of its pass
//! faults, and what it read before is checked again (the file's size) before a dump is kept
//! or a listing printed.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("guestcore")
}

/// `len` bytes of pseudo-random letters (no zero page, compression has work on every page).
fn busy(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// The input kinds that are mapped.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Raw,
    Lime,
    Migration,
}

const RAM: usize = 64 << 20;

/// Writes an input of `kind` holding [`RAM`] bytes of guest memory at physical 0: 1 MiB of
/// [`busy`] bytes, repeated (quick to make; zlib still compresses every page on its own).
fn make_input(kind: Kind, path: &Path) {
    let ram = busy(1 << 20).repeat(RAM >> 20);
    let bytes = match kind {
        Kind::Raw => ram,
        Kind::Lime => guestcore::format::lime::encode_range(0, &ram),
        Kind::Migration => {
            use guestcore::format::migration::StreamWriter;
            let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
            w.ram_start(&[("pc.ram", RAM as u64)]);
            w.part();
            for (i, page) in ram.chunks_exact(4096).enumerate() {
                w.page((i == 0).then_some("pc.ram"), (i * 4096) as u64, page);
            }
            w.part_end();
            w.eof();
            w.out
        }
    };
    std::fs::write(path, bytes).unwrap();
}

/// Polls `ready` every 2 ms until it holds; fails if `child` ended first.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the command ended ({status}) before {what}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {what} in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: a signal to our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Stops `child`, cuts `input` to 1 MiB, continues it, and checks the command failed with an
/// exit status (not a signal) and a message naming the input as cut.
fn cut_and_check(mut child: Child, input: &Path, what: &str) {
    signal(&child, libc::SIGSTOP);
    std::fs::OpenOptions::new()
        .write(true)
        .open(input)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    signal(&child, libc::SIGCONT);
    let started = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: no end"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "{what}: killed by a signal, stderr: {err}"
    );
    assert!(!out.status.success(), "{what}: succeeded, stderr: {err}");
    assert!(
        err.contains(&input.display().to_string()) && err.contains("shrank from"),
        "{what}: the message should name the input and say it shrank: {err}"
    );
}

/// `guestcore dump` of a `kind` input, cut once the dump writes its output file.
fn dump_cut(kind: Kind, format: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("guest.in");
    make_input(kind, &input);
    let mut child = Command::new(bin())
        .args(["dump", "-q", "--mode", "off", "--cr3", "0"])
        .args(format)
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(&mut child, "its output file", || {
        crate::dump_output::writing_into(pid, dir.path())
    });
    cut_and_check(child, &input, &format!("dump {kind:?} {format:?}"));
    assert_eq!(
        crate::dump_output::names_in(dir.path()),
        vec!["guest.in".to_string()],
        "dump {kind:?} {format:?}: no output and no temporary file may be left"
    );
}

#[test]
fn raw_cut_during_a_kdump_is_an_error() {
    dump_cut(Kind::Raw, &["--format", "kdump-zlib"]);
}

#[test]
fn raw_cut_during_an_elf_dump_is_an_error() {
    dump_cut(Kind::Raw, &[]);
}

#[test]
fn lime_cut_during_a_kdump_is_an_error() {
    dump_cut(Kind::Lime, &["--format", "kdump-zlib"]);
}

#[test]
fn migration_cut_during_a_kdump_is_an_error() {
    dump_cut(Kind::Migration, &["--format", "kdump-zlib"]);
}

/// `guestcore kernels` (a scan of all RAM, then a listing), cut once the input is mapped.
fn kernels_cut(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("guest.in");
    make_input(kind, &input);
    let mut child = Command::new(bin())
        .args(["kernels"])
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let maps = format!("/proc/{}/maps", child.id());
    let name = input.display().to_string();
    wait_until(&mut child, "its input mapped", || {
        std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(&name))
    });
    cut_and_check(child, &input, &format!("kernels {kind:?}"));
}

#[test]
fn raw_cut_during_kernels_is_an_error() {
    kernels_cut(Kind::Raw);
}

#[test]
fn migration_cut_during_kernels_is_an_error() {
    kernels_cut(Kind::Migration);
}
