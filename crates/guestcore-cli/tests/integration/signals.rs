//! A dump stopped by SIGTERM or SIGINT (what `kill`, systemd, `timeout` and Ctrl-C send)
//! leaves neither its temporary file nor an output file behind. And an error names each
//! cause once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("guestcore")
}

/// Text-like pseudo-random bytes: zlib has real work on every page.
fn busy_input(path: &Path, len: usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// A dense input quick to make: one 1 MiB block of [`busy_input`] bytes, repeated. No page is
/// zero, so an ELF dump copies every byte (a sparse file would be done at once: its holes are
/// skipped unread).
fn repeated_input(path: &Path, len: usize) {
    use std::io::Write;
    let block = path.with_extension("block");
    busy_input(&block, 1 << 20);
    let bytes = std::fs::read(&block).unwrap();
    std::fs::remove_file(&block).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..len >> 20 {
        f.write_all(&bytes).unwrap();
    }
    f.flush().unwrap();
}

/// How the input of [`interrupted`] is made.
#[derive(Clone, Copy)]
enum Input {
    /// Pseudo-random text throughout (compression has work on every page).
    Busy,
    /// [`repeated_input`].
    Repeated,
}

/// Starts the dump, waits until it writes its (unnamed) output file, sends `signal`, and checks what is left.
fn interrupted(signal: &str, input_len: usize, kind: Input, format: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("guest.raw");
    match kind {
        Input::Busy => busy_input(&input, input_len),
        Input::Repeated => repeated_input(&input, input_len),
    }
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
    let started = Instant::now();
    while !crate::dump_output::writing_into(child.id(), dir.path()) {
        assert!(child.try_wait().unwrap().is_none(), "the dump ended first");
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
    }
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a cancelled dump fails");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(
        crate::dump_output::names_in(dir.path()),
        vec!["guest.raw".to_string()],
        "{signal}"
    );
}

#[test]
fn sigterm_during_a_kdump_leaves_nothing() {
    interrupted("-TERM", 64 << 20, Input::Busy, &["--format", "kdump-zlib"]);
}

#[test]
fn sigint_during_a_kdump_leaves_nothing() {
    interrupted("-INT", 64 << 20, Input::Busy, &["--format", "kdump-zlib"]);
}

#[test]
fn sigterm_during_an_elf_dump_leaves_nothing() {
    interrupted("-TERM", 1 << 30, Input::Repeated, &[]);
}

#[test]
fn a_missing_input_is_named_once() {
    let out = Command::new(bin())
        .args(["info", "/nonexistent/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "guestcore: /nonexistent/x: No such file or directory (os error 2)"
    );
}
