//! crash and drgn, the debuggers users open dumps with, on every kind of file guestcore writes,
//! with the guest kernel's own debug vmlinux (`scripts/guest/fetch.sh debug`).
//!
//! The reference is the same debugger on QEMU's own physical dump of the same stopped guest:
//! crash's `sys` (less its DUMPFILE line), `bt -a`, `log`, `ps` and `kmem -i`, and drgn's
//! `init_uts_ns.name.release` and task list, must come out identical. A header field a reader
//! depends on (crash and `p_align`, libkdumpfile and `utsname.machine`) then cannot break one
//! of our formats unnoticed. libkdumpfile's own address translation is checked on every guest's
//! paging ELF, the 32-bit ones included ([`libkdumpfile_reads_release`], from `check_guest`). drgn comes from PyPI into a virtualenv made here
//! (`~/.cache/guestcore/drgn-venv`, reused).

use super::capture::{cache_dir, repo_root};
use super::dump;
use guestcore_testkit::tools::{skip, which};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The crash commands compared, one session per file.
pub(crate) const CRASH_COMMANDS: &str = "sys\nbt -a\nlog\nps\nkmem -i\nquit\n";

/// drgn's script: the release through the kernel's page tables, then every task.
pub(crate) const DRGN_SCRIPT: &str = r#"
from drgn.helpers.linux.pid import for_each_task
print("release", prog["init_uts_ns"].name.release.string_().decode())
for t in sorted(for_each_task(prog), key=lambda t: int(t.pid)):
    print("task", int(t.pid), t.comm.string_().decode())
"#;

/// libkdumpfile's script (`python3 -c SCRIPT CORE ADDR`): the string at kernel virtual ADDR,
/// translated as libkdumpfile sets translation up from the core alone (VMCOREINFO, PT_LOADs,
/// the kernel's page tables), with the OS type drgn's libkdumpfile backend also sets.
const LIBKDUMPFILE_SCRIPT: &str = r#"
import sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
k.attr["addrxlat.ostype"] = "linux"
print(k.read(kdumpfile.KDUMP_KVADDR, int(sys.argv[2], 0), 65).split(b"\0")[0].decode())
"#;

/// drgn's version, pinned so a new release cannot change the test under us.
const DRGN_VERSION: &str = "0.3.0";

/// One file guestcore wrote, and how.
struct Output {
    what: String,
    path: PathBuf,
}

/// Every kind of file guestcore writes, made from QEMU's physical dump `phys`.
fn outputs(phys: &Path, dir: &Path) -> Vec<Output> {
    let p = phys.to_str().unwrap();
    let mut out = Vec::new();
    let mut make = |what: &str, name: &str, args: &[&str]| {
        let path = dir.join(name);
        dump(args, &path);
        out.push(Output {
            what: what.to_string(),
            path,
        });
    };
    make("physical ELF", "phys.elf", &["dump", p]);
    make(
        "paging ELF (vCPU 0)",
        "paging.elf",
        &["dump", "--paging", "--cpu", "0", p],
    );
    make(
        "paging ELF (--all-cpus)",
        "paging-all.elf",
        &["dump", "--paging", "--all-cpus", p],
    );
    for c in ["zlib", "lzo", "snappy", "zstd"] {
        let format = format!("kdump-{c}");
        make(
            &format,
            &format!("{c}.kdump"),
            &["dump", "--format", &format, p],
        );
    }
    // The physical window that holds all of RAM: QEMU's VGA RAM and BIOS ROM (16.25 MiB just
    // below 4 GiB) are left out. A window that cuts RAM itself loses pages crash reads while
    // it starts (README, "Dumps").
    make(
        "window --begin 0 --length 256M",
        "window.elf",
        &["dump", "--begin", "0", "--length", "256M", p],
    );
    let zlib = dir.join("zlib.kdump");
    make(
        "kdump-zlib converted back to ELF",
        "from-kdump.elf",
        &["dump", zlib.to_str().unwrap()],
    );
    // The flattened stream, reassembled by makedumpfile -R.
    let flat = dir.join("flat.bin");
    dump(&["dump", "--format", "kdump-zlib", "--flatten", p], &flat);
    if which("makedumpfile").is_none() {
        skip("makedumpfile is not installed");
    } else {
        let plain = dir.join("flat.kdump");
        let r = std::process::Command::new("makedumpfile")
            .arg("-R")
            .arg(&plain)
            .stdin(std::fs::File::open(&flat).unwrap())
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "makedumpfile -R: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        out.push(Output {
            what: "flattened kdump-zlib after makedumpfile -R".into(),
            path: plain,
        });
    }
    out
}

/// The guest kernel's debug vmlinux, when the cache has the one for the captured kernel.
pub fn vmlinux(release: &str) -> Option<PathBuf> {
    let dir = cache_dir().join("kernels/amd64");
    let have = std::fs::read_to_string(dir.join("vmlinux.release")).unwrap_or_default();
    if have.trim() != release {
        let fetched = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/guest/fetch.sh"))
            .arg("debug")
            .env("GUESTCORE_CACHE", cache_dir())
            .status()
            .is_ok_and(|s| s.success());
        if !fetched {
            skip(format_args!(
                "no debug vmlinux for {release} (scripts/guest/fetch.sh debug failed)"
            ));
            return None;
        }
    }
    Some(dir.join("vmlinux"))
}

/// crash's answers on `core`, with the line naming the file removed.
pub fn crash(vmlinux: &Path, core: &Path, commands: &Path) -> Result<String, String> {
    crash_with(Path::new("crash"), &[], vmlinux, core, commands)
}

/// [`crash`], run from the binary `bin` (the ARM64 build of `crash_arm64`) with `options`
/// before the files.
pub(crate) fn crash_with(
    bin: &Path,
    options: &[&str],
    vmlinux: &Path,
    core: &Path,
    commands: &Path,
) -> Result<String, String> {
    let r = std::process::Command::new(bin)
        .arg("-s")
        .args(options)
        .arg(vmlinux)
        .arg(core)
        .arg("-i")
        .arg(commands)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
    if !r.status.success() {
        return Err(format!("crash exited with {}:\n{text}", r.status));
    }
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with("DUMPFILE:"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The virtualenv's drgn, made on first use.
pub(crate) fn drgn() -> Option<PathBuf> {
    let venv = cache_dir()
        .parent()
        .map(|p| p.join("drgn-venv"))
        .unwrap_or_else(|| cache_dir().join("drgn-venv"));
    let bin = venv.join("bin/drgn");
    let wanted = format!("drgn {DRGN_VERSION} ");
    let current = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(&wanted));
    if current {
        return Some(bin);
    }
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "-q", &format!("drgn=={DRGN_VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
    if !made {
        skip(format_args!(
            "drgn {DRGN_VERSION} could not be installed from PyPI into {}",
            venv.display()
        ));
        return None;
    }
    Some(bin)
}

pub(crate) fn drgn_run(
    drgn: &Path,
    vmlinux: &Path,
    core: &Path,
    script: &Path,
) -> Result<String, String> {
    let r = std::process::Command::new(drgn)
        .arg("-q")
        .arg("-c")
        .arg(core)
        .arg("-s")
        .arg(vmlinux)
        .arg(script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    if !r.status.success() || !out.starts_with("release ") {
        return Err(format!(
            "drgn exited with {}: {out}{}",
            r.status,
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    Ok(out)
}

/// Asserts that libkdumpfile (Debian's `python3-libkdumpfile`, the system Python's), opening
/// `core`, reads the kernel release string `release` at kernel virtual `addr`
/// (`init_uts_ns.name.release`). On a 32-bit guest that needs the PT_LOADs in the shape the
/// ELF layout's module doc describes (`dump/elf_layout.rs`). `what` names the case.
pub(crate) fn libkdumpfile_reads_release(core: &Path, addr: u64, release: &str, what: &str) {
    let python = Path::new("/usr/bin/python3");
    let importable = std::process::Command::new(python)
        .args(["-c", "import kdumpfile"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        skip("libkdumpfile's Python module (python3-libkdumpfile) is not installed");
        return;
    }
    let r = std::process::Command::new(python)
        .arg("-c")
        .arg(LIBKDUMPFILE_SCRIPT)
        .arg(core)
        .arg(format!("{addr:#x}"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success() && out.trim_end() == release,
        "{what}: libkdumpfile read {out:?} at {addr:#x} of {} ({}), stderr {:?}; wanted {release:?}",
        core.display(),
        r.status,
        String::from_utf8_lossy(&r.stderr).trim_end()
    );
}

/// Runs `job` on every item, two at a time (crash sessions are CPU-bound; the machine has two
/// cores), and returns the results in order.
pub(crate) fn two_at_a_time<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(item) = items.get(i) else { break };
                let r = job(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// crash and drgn print on every guestcore output of `dir`'s capture what they print on
/// QEMU's own physical dump.
pub fn check_debuggers(guest: &str, dir: &Path, release: &str) {
    if which("crash").is_none() {
        skip("crash is not installed");
        return;
    }
    let Some(vmlinux) = vmlinux(release) else {
        return;
    };
    let Some(drgn) = drgn() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let commands = tmp.path().join("crash.cmds");
    std::fs::write(&commands, CRASH_COMMANDS).unwrap();
    let script = tmp.path().join("check.py");
    std::fs::write(&script, DRGN_SCRIPT).unwrap();
    let qemu = dir.join("phys.elf");

    let crash_want = crash(&vmlinux, &qemu, &commands)
        .unwrap_or_else(|e| panic!("{guest}: crash on QEMU's dump: {e}"));
    assert!(
        crash_want.contains(&format!("RELEASE: {release}"))
            && crash_want.contains("Linux version")
            && crash_want.contains("PID: 0 "),
        "{guest}: crash on QEMU's dump printed too little:\n{crash_want}"
    );
    let drgn_want = drgn_run(&drgn, &vmlinux, &qemu, &script)
        .unwrap_or_else(|e| panic!("{guest}: drgn on QEMU's dump: {e}"));
    assert_eq!(
        drgn_want.lines().next(),
        Some(format!("release {release}").as_str())
    );
    assert!(
        drgn_want.lines().filter(|l| l.starts_with("task ")).count() > 10,
        "{guest}: {drgn_want}"
    );

    let files = outputs(&qemu, tmp.path());
    let results = two_at_a_time(&files, |o| {
        (
            crash(&vmlinux, &o.path, &commands),
            drgn_run(&drgn, &vmlinux, &o.path, &script),
        )
    });
    let mut failures = Vec::new();
    for (o, (c, d)) in files.iter().zip(results) {
        match c {
            Err(e) => failures.push(format!("crash on {}: {e}", o.what)),
            Ok(text) if text != crash_want => failures.push(format!(
                "crash on {} differs from QEMU's dump:\n{}",
                o.what,
                first_difference(&crash_want, &text)
            )),
            Ok(_) => {}
        }
        match d {
            Err(e) => failures.push(format!("drgn on {}: {e}", o.what)),
            Ok(text) if text != drgn_want => failures.push(format!(
                "drgn on {} differs from QEMU's dump:\n{}",
                o.what,
                first_difference(&drgn_want, &text)
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{guest}:\n{}", failures.join("\n\n"));
    eprintln!(
        "{guest}: crash (sys, bt -a, log, ps, kmem -i) and drgn agree with QEMU's dump on {} outputs",
        files.len()
    );
}

/// The first line where `want` and `got` differ, with its number.
pub(crate) fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        if w.get(i) != g.get(i) {
            return format!(
                "line {}: QEMU's {:?}, ours {:?}",
                i + 1,
                w.get(i).unwrap_or(&"<end>"),
                g.get(i).unwrap_or(&"<end>")
            );
        }
    }
    "no line differs".into()
}
