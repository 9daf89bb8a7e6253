//! Live guests against a real QEMU (TCG): `guestcore info|dump qmp:SOCKET`.
//!
//! Needs `qemu-system-x86_64` and the harness's amd64 guest: `kernels/amd64/vmlinuz` and
//! `initramfs/amd64.cpio.gz` under `$GUESTCORE_CACHE` or `~/.cache/guestcore/guests` (made by
//! `scripts/guest/fetch.sh` + `scripts/guest/capture.sh x86_64`; when only the initramfs is
//! missing it is built here with `scripts/guest/initramfs.py`). Skips, saying why, otherwise
//! (fails instead under `CI=true`).
//! Every QEMU started here is killed by PID when its guard drops, on every path.

use assert_cmd::Command;
use guestcore::qmp::QmpClient;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct GuestFiles {
    kernel: PathBuf,
    initrd: PathBuf,
    /// Holds a freshly built initramfs alive.
    _tmp: Option<tempfile::TempDir>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn which(cmd: &str) -> bool {
    guestcore_testkit::tools::which(cmd).is_some()
}

/// The guest files, or the reason to skip.
fn guest_files() -> Result<GuestFiles, String> {
    if !which("qemu-system-x86_64") {
        return Err("qemu-system-x86_64 is not installed".into());
    }
    let cache = guestcore_testkit::tools::guest_cache();
    let kernel = cache.join("kernels/amd64/vmlinuz");
    if !kernel.is_file() {
        return Err(format!(
            "no guest kernel at {} (run scripts/guest/fetch.sh amd64, or set GUESTCORE_CACHE)",
            kernel.display()
        ));
    }
    let initrd = cache.join("initramfs/amd64.cpio.gz");
    if initrd.is_file() {
        return Ok(GuestFiles {
            kernel,
            initrd,
            _tmp: None,
        });
    }
    let (initrd, tmp) = build_initramfs("amd64", "amd64", None)?;
    Ok(GuestFiles {
        kernel,
        initrd,
        _tmp: Some(tmp),
    })
}

/// Builds the harness's initramfs for the kernel `flavour` (`amd64`, `arm64`, `arm64-16k`)
/// with busybox of `bbarch` (`amd64`, `arm64`), by `scripts/guest/initramfs.py` into a
/// temporary directory, with the pattern writer when given (a static binary). The tests that
/// boot guests themselves need it where no capture has built the cached one yet (a fresh cache).
fn build_initramfs(
    flavour: &str,
    bbarch: &str,
    pattern_writer: Option<&Path>,
) -> Result<(PathBuf, tempfile::TempDir), String> {
    let cache = guestcore_testkit::tools::guest_cache();
    let initrd = cache.join(format!("initramfs/{flavour}.cpio.gz"));
    let busybox = cache.join(format!("busybox/{bbarch}/busybox"));
    let script = repo().join("scripts/guest/initramfs.py");
    if !busybox.is_file() || !script.is_file() {
        return Err(format!(
            "no initramfs at {} and nothing to build one from (no {})",
            initrd.display(),
            busybox.display()
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(format!("{flavour}.cpio.gz"));
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script)
        .arg("--busybox")
        .arg(&busybox)
        .arg("--modules")
        .arg(cache.join(format!("kernels/{flavour}/modules")))
        .arg("--out")
        .arg(&out);
    if let Some(p) = pattern_writer {
        cmd.arg("--pattern-writer").arg(p);
    }
    if !cmd.status().is_ok_and(|s| s.success()) {
        return Err("building the initramfs failed".into());
    }
    Ok((out, tmp))
}

/// The guest files of a live test, or a return from the test: when the real-guest tier was not
/// asked for (`GUESTCORE_REAL_GUESTS`), or, saying why, when the files cannot be had.
macro_rules! guest_or_skip {
    () => {
        guest_or_skip!(guest_files())
    };
    ($files:expr) => {{
        if !guestcore_testkit::tools::real_guests_wanted() {
            return;
        }
        match $files {
            Ok(g) => g,
            Err(why) => {
                guestcore_testkit::tools::skip(why);
                return;
            }
        }
    }};
}

/// A booted guest; dropping it kills QEMU by PID.
struct Guest {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
    /// A second QMP monitor, for watching the guest while guestcore holds the first.
    sock_b: PathBuf,
    /// The `qmp:` input.
    input: String,
    serial: String,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test guest's RAM lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ram {
    /// QEMU's own anonymous memory (`-m`).
    Anonymous,
    /// A `memory-backend-file` with `share=on`, in the test's directory.
    SharedFile,
    /// A `memory-backend-memfd` with `share=on` (shmem).
    Memfd,
}

/// The machine a test guest boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Board {
    /// x86_64 `pc` (`qemu-system-x86_64`, `-cpu qemu64`, console ttyS0), RAM in `Ram`.
    Pc(Ram),
    /// AArch64 `virt` (`qemu-system-aarch64`, `-cpu max`, PL011 console ttyAMA0), as
    /// `scripts/guest/boot.sh aarch64` boots it.
    Virt,
}

impl Guest {
    /// Boots the harness guest with its RAM in `ram`. A QEMU that dies before the guest is
    /// ready (TCG under load has aborted once in PCI enumeration, with nothing of guestcore
    /// running yet) is started once more, saying so; a second death fails the test.
    fn boot(files: &GuestFiles, mem: &str, ram: Ram) -> Guest {
        Self::boot_on(files, mem, Board::Pc(ram))
    }

    /// [`Self::boot`] on any board.
    fn boot_on(files: &GuestFiles, mem: &str, board: Board) -> Guest {
        match Self::try_boot(files, mem, board) {
            Ok(g) => g,
            Err(why) => {
                eprintln!("booting the test guest again: {why}");
                Self::try_boot(files, mem, board).unwrap_or_else(|why| panic!("{why}"))
            }
        }
    }

    /// [`Self::boot_on`] once: `Err` when QEMU exits before the guest is ready.
    fn try_boot(files: &GuestFiles, mem: &str, board: Board) -> Result<Guest, String> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let sock_b = dir.path().join("qmp-b.sock");
        let serial = dir.path().join("serial.log");
        let (qemu, machine, cpu, console, ram) = match board {
            Board::Pc(Ram::Anonymous) => ("qemu-system-x86_64", "pc", "qemu64", "ttyS0", None),
            Board::Pc(ram) => (
                "qemu-system-x86_64",
                "pc,memory-backend=mem",
                "qemu64",
                "ttyS0",
                Some(ram),
            ),
            Board::Virt => ("qemu-system-aarch64", "virt", "max", "ttyAMA0", None),
        };
        let mut cmd = std::process::Command::new(qemu);
        cmd.args([
            "-machine", machine, "-accel", "tcg", "-cpu", cpu, "-m", mem, "-smp", "2",
        ]);
        match ram {
            None | Some(Ram::Anonymous) => {}
            Some(Ram::SharedFile) => {
                let ram = dir.path().join("ram");
                cmd.arg("-object").arg(format!(
                    "memory-backend-file,id=mem,share=on,mem-path={},size={mem}",
                    ram.display()
                ));
            }
            Some(Ram::Memfd) => {
                cmd.arg("-object")
                    .arg(format!("memory-backend-memfd,id=mem,share=on,size={mem}"));
            }
        }
        cmd.args([
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-kernel")
        .arg(&files.kernel)
        .arg("-initrd")
        .arg(&files.initrd)
        .args([
            "-append",
            &format!("console={console} panic=-1 printk.time=1"),
            "-device",
            "vmcoreinfo",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock_b.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("qemu.log")).unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {qemu}: {e}"));
        let mut g = Guest {
            child,
            input: format!("qmp:{}", sock.display()),
            dir,
            sock,
            sock_b,
            serial: String::new(),
        };
        let t0 = Instant::now();
        loop {
            g.serial = std::fs::read_to_string(&serial).unwrap_or_default();
            if g.serial.contains("GUESTCORE-READY") {
                break;
            }
            if let Ok(Some(st)) = g.child.try_wait() {
                let log =
                    std::fs::read_to_string(g.dir.path().join("qemu.log")).unwrap_or_default();
                let tail: Vec<&str> = g.serial.lines().rev().take(5).collect();
                return Err(format!(
                    "QEMU exited ({st}) before the guest was ready; QEMU said: {}; the console ended with:\n{}",
                    log.trim(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            // aarch64 under TCG boots slower.
            let within = if board == Board::Virt { 300 } else { 180 };
            assert!(
                t0.elapsed() < Duration::from_secs(within),
                "guest not ready:\n{}",
                g.serial
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(g)
    }

    fn qmp(&self) -> QmpClient {
        QmpClient::connect(&self.sock, Duration::from_secs(60)).unwrap()
    }

    /// A client of the second monitor.
    fn qmp_b(&self) -> QmpClient {
        QmpClient::connect(&self.sock_b, Duration::from_secs(60)).unwrap()
    }

    fn running(&self) -> bool {
        self.qmp().execute("query-status", None).unwrap()["running"]
            .as_bool()
            .unwrap()
    }

    fn line(&self, key: &str) -> String {
        self.serial
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the serial log"))
            .trim()
            .to_string()
    }

    fn sym(&self, name: &str) -> String {
        self.line(&format!("GUESTCORE-SYM {name} "))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn guestcore() -> Command {
    Command::cargo_bin("guestcore").unwrap()
}

/// Runs `cmd`, which must succeed (its stderr is the failure message), and returns its output.
fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `guestcore info --json` of a file.
fn info_json(path: &Path) -> Value {
    let out = succeed(guestcore().arg("info").arg(path).arg("--json"));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `struct new_utsname.release` through the dump's own page tables: init_uts_ns + 2 × 65.
fn release_via_paging_dump(dump: &Path, g: &Guest) -> String {
    let uts = u64::from_str_radix(&g.sym("init_uts_ns"), 16).unwrap();
    let out = succeed(
        guestcore()
            .arg("read")
            .arg(dump)
            .arg(format!("{:#x}", uts + 130))
            .arg("65"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads all PT_LOADs with p_filesz > 0 as (paddr, bytes).
fn loads(path: &Path) -> Vec<(u64, Vec<u8>)> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = std::fs::read(path).unwrap();
    let hdr = object::elf::FileHeader64::<object::Endianness>::parse(&*data).unwrap();
    let e = hdr.endian().unwrap();
    hdr.program_headers(e, &*data)
        .unwrap()
        .iter()
        .filter(|p| p.p_type(e) == object::elf::PT_LOAD && p.p_filesz(e) > 0)
        .map(|p| (p.p_paddr(e), p.data(e, &*data).unwrap().to_vec()))
        .collect()
}

/// Physical memory of `loads` at `addr` (`len` bytes), if one load holds it all.
fn phys(loads: &[(u64, Vec<u8>)], addr: u64, len: usize) -> Option<&[u8]> {
    loads.iter().find_map(|(pa, d)| {
        let off = addr.checked_sub(*pa)? as usize;
        (off + len <= d.len()).then(|| &d[off..off + len])
    })
}

#[test]
fn shared_file_guest_pause_dump_matches_qemu() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::SharedFile);
    let release = g.line("GUESTCORE-RELEASE");

    // info: shared-file access, consistent, guest running again.
    let out = guestcore().arg("info").arg(&g.input).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("live QEMU guest (SharedFile)") && !stdout.contains("read while running"),
        "{stdout}"
    );
    assert!(g.running(), "info resumed the guest");

    // A --pause paging dump of the running guest; the guest runs again afterwards.
    let dump = g.path("paging.elf");
    let out = guestcore()
        .args(["dump", &g.input, "--paging", "-o"])
        .arg(&dump)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("guest paused for"), "{stderr}");
    assert!(g.running(), "the dump resumed the guest");
    let got = release_via_paging_dump(&dump, &g);
    assert!(
        got.starts_with(&release),
        "read of init_uts_ns.name.release from the --pause paging dump: {got:?}, the guest said {release:?}"
    );
    let j = info_json(&dump);
    assert_eq!(
        j["osrelease"],
        release.as_str(),
        "VMCOREINFO found in guest RAM"
    );

    // Stop the guest ourselves: registers, guestcore's dump and QEMU's dump in one pause.
    let mut q = g.qmp();
    q.execute("stop", None).unwrap();
    let regs = q.hmp("info registers -a").unwrap();
    let cpus = guestcore::cpu::hmp::parse_info_registers(&regs).unwrap();
    drop(q); // QEMU serves one QMP client per socket at a time
    let ours = g.path("phys.elf");
    succeed(guestcore().args(["dump", &g.input, "-o"]).arg(&ours));
    assert!(!g.running(), "an already paused guest stays paused");
    let theirs = g.path("qemu.elf");
    let mut q = g.qmp();
    q.execute(
        "dump-guest-memory",
        Some(json!({"paging": false, "protocol": format!("file:{}", theirs.display())})),
    )
    .unwrap();
    q.execute("cont", None).unwrap();

    let j = info_json(&ours);
    for (c, want) in j["cpus"].as_array().unwrap().iter().zip(&cpus) {
        assert_eq!(
            c["cr3"],
            format!("{:#x}", want.cr3()),
            "CR3 of the same pause"
        );
        assert_eq!(c["cr4"], format!("{:#x}", want.cr4()));
        assert_eq!(c["rip"], format!("{:#x}", want.rip));
    }
    let ours = loads(&ours);
    let theirs = loads(&theirs);
    let mut pages = 0;
    for (pa, d) in &ours {
        for (i, page) in d.chunks(4096).enumerate() {
            let a = pa + (i * 4096) as u64;
            let q =
                phys(&theirs, a, page.len()).unwrap_or_else(|| panic!("{a:#x} not in QEMU's dump"));
            assert!(q == page, "page {a:#x} differs from QEMU's dump");
            pages += 1;
        }
    }
    assert!(pages >= 65_000, "compared {pages} pages");
}

#[test]
fn anonymous_ram_guest_and_faults() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::Anonymous);
    let release = g.line("GUESTCORE-RELEASE");

    let out = succeed(guestcore().arg("info").arg(&g.input));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ProcessMemory"),
        "info of an anonymous-RAM guest:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dump = g.path("paging.elf");
    succeed(
        guestcore()
            .args(["dump", &g.input, "--paging", "-o"])
            .arg(&dump),
    );
    assert!(g.running());
    let got = release_via_paging_dump(&dump, &g);
    assert!(
        got.starts_with(&release),
        "read of init_uts_ns.name.release from the paging dump: {got:?}, the guest said {release:?}"
    );

    // --no-pause: marked in info and in the dump's notes.
    let out = guestcore()
        .args(["info", "--no-pause", &g.input])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("read while running"),
        "info --no-pause:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let nopause = g.path("nopause.elf");
    succeed(
        guestcore()
            .args(["dump", "--no-pause", &g.input, "-o"])
            .arg(&nopause),
    );
    let bytes = std::fs::read(&nopause).unwrap();
    assert!(
        bytes.windows(12).any(|w| w == b"live-no-paus"),
        "GUESTCORE note"
    );

    // A filtered dump of the live guest: kdump at level 31 records the level, holds fewer
    // pages than RAM, and the guest runs on.
    let small = g.path("small.kdump");
    succeed(
        guestcore()
            .args([
                "dump",
                &g.input,
                "--format",
                "kdump-lzo",
                "--dump-level",
                "31",
                "-o",
            ])
            .arg(&small),
    );
    let k = guestcore::phys::kdump::KdumpFile::open(&small).unwrap();
    assert_eq!(k.info().dump_level, 31);
    assert!(
        k.dumped_pages() * 2 < k.present_pages(),
        "{} of {} pages",
        k.dumped_pages(),
        k.present_pages()
    );
    assert!(g.running());

    // dmesg on the running guest: the log, without pausing it (no "paused" note).
    let out = succeed(guestcore().args(["dmesg", &g.input]));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.lines()
            .next()
            .is_some_and(|l| l.contains(&format!("Linux version {release}"))),
        "{log:.300}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("paused"),
        "dmesg of a running guest paused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.running());

    // Unwritable output: error naming it, no file, guest running.
    let bad = g.path("no/such/dir/x.elf");
    let out = guestcore()
        .args(["dump", &g.input, "-o"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("x.elf"),
        "dump to an unwritable path ({}) should fail naming it: {stderr}",
        out.status
    );
    assert!(g.running(), "resumed after the failed dump");

    // QEMU killed in the middle of a --no-pause dump: an error, and no output file.
    let mut g = g;
    let out_path = g.path("killed.elf");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .args(["dump", "--no-pause", &g.input, "-o"])
        .arg(&out_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Kill QEMU as soon as the temporary output file exists (the copy has begun).
    loop {
        let started = std::fs::read_dir(g.dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".killed.elf."));
        if started || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    g.child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        eprintln!("SKIP (fault part): the dump finished before QEMU died");
        return;
    }
    assert!(
        stderr.contains("did QEMU exit?") || stderr.contains("QMP"),
        "{stderr}"
    );
    assert!(!out_path.exists(), "no output file after a failure");
    let leftovers: Vec<_> = std::fs::read_dir(g.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("killed"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary file removed: {leftovers:?}"
    );
}

// --- The watchdog: a SIGKILLed guestcore does not leave the guest paused ------------------

/// `query-status`'s `running` through `q`.
fn running_via(q: &mut QmpClient) -> bool {
    q.execute("query-status", None).unwrap()["running"]
        .as_bool()
        .unwrap()
}

/// How many `name` events `q` has seen so far (after one more command, so that events
/// already sent are read).
fn count_events(q: &mut QmpClient, seen: &mut Vec<Value>, name: &str) -> usize {
    running_via(q);
    seen.extend(q.take_events());
    seen.iter().filter(|e| e["event"] == name).count()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// `guestcore dump --pause qmp:a -o OUT` as a child process.
fn spawn_dump(g: &Guest, out: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .args(["dump", "--pause", &g.input, "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Files guestcore left in the guest's directory for the output `name` (a SIGKILLed process
/// cannot remove its temporary file; this only reports them).
fn leftovers(g: &Guest, name: &str) -> Vec<String> {
    std::fs::read_dir(g.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(name))
        .collect()
}

#[test]
fn watchdog_resumes_the_guest_after_sigkill_during_the_pause() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::Anonymous);
    let mut b = g.qmp_b();
    let mut events = Vec::new();
    for attempt in 1..=10 {
        let out = g.path(&format!("killed{attempt}.elf"));
        let mut child = spawn_dump(&g, &out);
        let pid = child.id();
        // The pause, seen from monitor b; freeze guestcore inside it so it cannot resume.
        let t0 = Instant::now();
        while running_via(&mut b) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "guestcore ended before pausing"
            );
            assert!(t0.elapsed() < Duration::from_secs(60), "no pause");
        }
        signal(pid, libc::SIGSTOP);
        if running_via(&mut b) {
            // guestcore resumed before SIGSTOP landed: try again.
            signal(pid, libc::SIGKILL);
            child.wait().unwrap();
            eprintln!("attempt {attempt}: the pause was over before SIGSTOP");
            continue;
        }
        let resumes = count_events(&mut b, &mut events, "RESUME");
        assert!(count_events(&mut b, &mut events, "STOP") > 0);
        // Paused by guestcore, which can no longer act: SIGKILL it.
        let killed = Instant::now();
        signal(pid, libc::SIGKILL);
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        while !running_via(&mut b) {
            assert!(
                killed.elapsed() < Duration::from_secs(1),
                "the guest is still paused 1 s after guestcore was killed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = killed.elapsed();
        assert_eq!(
            count_events(&mut b, &mut events, "RESUME"),
            resumes + 1,
            "{events:?}"
        );
        eprintln!(
            "attempt {attempt}: guest running {:.1} ms after SIGKILL; left behind: {:?}",
            took.as_secs_f64() * 1e3,
            leftovers(&g, &format!("killed{attempt}"))
        );
        assert!(!out.exists(), "no output file from a killed dump");
        // Monitor a serves the next client again.
        assert!(g.running());
        return;
    }
    panic!("never caught guestcore inside its pause");
}

#[test]
fn watchdog_leaves_an_already_paused_guest_paused_after_sigkill() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::Anonymous);
    let mut b = g.qmp_b();
    b.execute("stop", None).unwrap();
    let mut events = Vec::new();
    let resumes = count_events(&mut b, &mut events, "RESUME");
    let mut killed = false;
    for attempt in 1..=10 {
        let name = format!("paused{attempt}.elf");
        let out = g.path(&name);
        let mut child = spawn_dump(&g, &out);
        // Mid-dump: it holds its (unnamed) output file open.
        let t0 = Instant::now();
        let mut finished = false;
        let dir = out.parent().unwrap().to_path_buf();
        while !crate::dump_output::writing_into(child.id(), &dir) {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(1));
        }
        if finished {
            eprintln!("attempt {attempt}: the dump finished first");
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed = true;
        break;
    }
    assert!(killed, "never killed guestcore mid-dump");
    // Well past the time a watchdog would need.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!running_via(&mut b), "an already paused guest stays paused");
    assert_eq!(count_events(&mut b, &mut events, "RESUME"), resumes);
    b.execute("cont", None).unwrap();
}

#[test]
fn watchdog_disarmed_by_a_normal_dump_sends_no_second_cont() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "256M", Ram::Anonymous);
    let mut b = g.qmp_b();
    let mut events = Vec::new();
    let (stops, resumes) = (
        count_events(&mut b, &mut events, "STOP"),
        count_events(&mut b, &mut events, "RESUME"),
    );
    succeed(
        guestcore()
            .args(["dump", "--pause", &g.input, "-o"])
            .arg(g.path("ok.elf")),
    );
    // Longer than a fired watchdog would take to connect.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(running_via(&mut b));
    assert_eq!(count_events(&mut b, &mut events, "STOP"), stops + 1);
    assert_eq!(
        count_events(&mut b, &mut events, "RESUME"),
        resumes + 1,
        "one RESUME: {events:?}"
    );
    // Nobody holds monitor a: it serves a new client at once.
    let t0 = Instant::now();
    assert!(g.running());
    assert!(t0.elapsed() < Duration::from_secs(1));
}

/// Every name in the guest's directory, sorted.
fn dir_names(g: &Guest) -> Vec<String> {
    crate::dump_output::names_in(g.dir.path())
}

/// `query-migrate`'s status (`None` before any migration).
fn migration_status(q: &mut QmpClient) -> Option<String> {
    q.execute("query-migrate", None).unwrap()["status"]
        .as_str()
        .map(str::to_string)
}

/// The state of the `background-snapshot` capability.
fn background_snapshot_on(q: &mut QmpClient) -> bool {
    let caps = q.execute("query-migrate-capabilities", None).unwrap();
    caps.as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == "background-snapshot")
        .unwrap_or_else(|| panic!("no background-snapshot capability: {caps}"))["state"]
        .as_bool()
        .unwrap()
}

/// The pipes QEMU (process `pid`) holds open.
fn pipes_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
        })
        .count()
}

/// `guestcore dump ARGS qmp:SOCKET -o OUT` as a child process, its stderr piped.
fn spawn_guestcore(input: &str, args: &[&str], out: &Path) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .arg("dump")
        .args(args)
        .arg(input)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 60 s) until `q` sees a migration active, or `child` ended first (`false`).
fn until_migrating(q: &mut QmpClient, child: &mut Child) -> bool {
    let t0 = Instant::now();
    loop {
        if migration_status(q).as_deref() == Some("active") {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no migration began");
    }
}

/// Polls `cond` through `q` every 10 ms until it holds; how long that took, at most `within`.
fn until(
    q: &mut QmpClient,
    within: Duration,
    what: &str,
    mut cond: impl FnMut(&mut QmpClient) -> bool,
) -> Duration {
    let t0 = Instant::now();
    while !cond(q) {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// Whether `stderr` says QEMU stopped answering (mid-stream, or a QMP reply that never came).
fn names_stopped_qemu(stderr: &str) -> bool {
    stderr.contains("QEMU stopped answering") || stderr.contains("did not answer within 10 s")
}

/// A child's stderr once it ended, and how it ended.
fn finish(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

mod aarch64;
mod libvirt;
mod restore;
mod snapshot;
mod stall;
