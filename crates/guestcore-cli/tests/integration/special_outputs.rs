//! An output path that is a FIFO or a character device is written into, never replaced by a
//! file (`--force` or not): a kdump format streams into it flattened, an ELF core (which must
//! seek) is refused and the FIFO left as it was.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("guestcore")
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status();
    assert!(made.as_ref().is_ok_and(|s| s.success()), "mkfifo: {made:?}");
}

/// 1 MiB of guest RAM, every page different.
fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("guest.raw");
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i / 4096 + i % 251) as u8)
        .collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// Reads everything written into `fifo` on a thread (a FIFO's writer waits for its reader).
fn drain(fifo: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || std::fs::read(fifo).unwrap())
}

#[test]
fn a_kdump_streams_into_a_fifo_and_the_fifo_stays() {
    let dir = tempfile::tempdir().unwrap();
    let raw = input(dir.path());
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = drain(&fifo);
    // `--force` too: it must not turn the FIFO into a file.
    let out = Command::new(bin())
        .args(["dump", "-q", "--mode", "off", "--cr3", "0", "--force"])
        .args(["--format", "kdump-zlib", "-o"])
        .arg(&fifo)
        .arg(&raw)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let bytes = reader.join().unwrap();
    assert!(
        bytes.starts_with(b"makedumpfile"),
        "a flattened kdump stream, got {} bytes starting {:?}",
        bytes.len(),
        &bytes[..bytes.len().min(16)]
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(
        crate::dump_output::names_in(dir.path()),
        ["guest.raw", "pipe"],
        "no file beside the FIFO"
    );
    // What went through the pipe is the guest's memory.
    let copy = dir.path().join("copy.kdump");
    std::fs::write(&copy, &bytes).unwrap();
    let read = Command::new(bin())
        .args(["read", "--phys", "-o"])
        .arg(dir.path().join("page3"))
        .arg(&copy)
        .args(["0x3000", "16"])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let want: Vec<u8> = (0x3000u32..0x3010)
        .map(|i| (i / 4096 + i % 251) as u8)
        .collect();
    assert_eq!(std::fs::read(dir.path().join("page3")).unwrap(), want);
}

#[test]
fn an_elf_core_into_a_fifo_is_refused_and_the_fifo_stays() {
    let dir = tempfile::tempdir().unwrap();
    let raw = input(dir.path());
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    for force in [false, true] {
        let out = Command::new(bin())
            .args(["dump", "-q", "--mode", "off", "--cr3", "0"])
            .args(force.then_some("--force"))
            .arg("-o")
            .arg(&fifo)
            .arg(&raw)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "force {force}: {err}");
        assert!(
            err.contains("pipe: is a FIFO") && err.contains("kdump"),
            "force {force}: {err}"
        );
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(
            crate::dump_output::names_in(dir.path()),
            ["guest.raw", "pipe"],
            "force {force}"
        );
    }
}

#[test]
fn dumps_into_dev_null_need_no_force_and_leave_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = input(dir.path());
    let out = Command::new(bin())
        .args([
            "dump",
            "-q",
            "--mode",
            "off",
            "--cr3",
            "0",
            "--format",
            "kdump-zlib",
        ])
        .args(["-o", "/dev/null"])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn read_writes_into_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let raw = input(dir.path());
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = drain(&fifo);
    let out = Command::new(bin())
        .args(["read", "--phys", "--force", "-o"])
        .arg(&fifo)
        .arg(&raw)
        .args(["0x2000", "64"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<u8> = (0x2000u32..0x2040)
        .map(|i| (i / 4096 + i % 251) as u8)
        .collect();
    assert_eq!(reader.join().unwrap(), want);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(
        crate::dump_output::names_in(dir.path()),
        ["guest.raw", "pipe"]
    );
}
