//! `libvirt:DOMAIN` against a real libvirtd: a transient TCG domain with no
//! `<qemu:commandline>` (the `vmcoreinfo` device comes from `<features><vmcoreinfo/>`), one
//! boot for every check.
//!
//! What it holds guestcore to: reads of the stopped domain equal to libvirt's own dump of it
//! (`virsh dump --memory-only`); background-snapshot dumps that crash and drgn read as they
//! read that dump, with the stop measured by libvirt's lifecycle events and QEMU's own count;
//! the domain running, no migration left running, `background-snapshot` off and nothing in
//! the output directory after every way a dump can end (SIGKILL, SIGTERM, SIGINT, libvirtd
//! killed under it); a SIGSTOPped guestcore not stalling the guest (its watchdog kills it,
//! the guest's jiffies advance); a libvirt too old to pass descriptors (a `virsh` reporting 8.1.0)
//! refusing the snapshot with the version it needs and pausing instead.
//!
//! Needs what the other live tests need, plus `virsh`, crash, drgn and the guest kernel's debug
//! vmlinux (see `real_guests::debuggers`), and either a libvirtd answering on
//! `qemu:///system` or root and `/usr/sbin/libvirtd` (then libvirtd, and virtlogd when none
//! runs, are started here with pid files in a temporary directory and stopped by those PIDs
//! when the test ends; `scripts/guest/libvirt-setup.sh` prepares a machine without systemd).
//! Only a libvirtd started here is killed (and started again) mid-dump; with one found
//! running that part says it is not run. Skips, saying why, otherwise (fails under `CI=true`).

use super::{guest_files, guestcore};
use crate::real_guests::debuggers;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";

/// The stop a background snapshot may impose (issue 27).
const STOP_LIMIT_MS: u64 = 50;

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run virsh")
}

fn domstate(name: &str) -> String {
    String::from_utf8_lossy(&virsh(&["domstate", name]).stdout)
        .trim()
        .to_string()
}

fn answers() -> bool {
    virsh(&["version"]).status.success()
}

/// QEMU's reply to a QMP command, through libvirt.
fn qmp(name: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&virsh(&["qemu-monitor-command", name, cmd]).stdout).into_owned()
}

/// `query-migrate`'s status (`""` before any migration).
fn migration_status(name: &str) -> String {
    let reply = qmp(name, r#"{"execute":"query-migrate"}"#);
    serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| v["return"]["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Whether QEMU's `background-snapshot` capability is on (`None`: no answer).
fn snapshot_capability(name: &str) -> Option<bool> {
    let reply = qmp(name, r#"{"execute":"query-migrate-capabilities"}"#);
    let v: serde_json::Value = serde_json::from_str(&reply).ok()?;
    v["return"]
        .as_array()?
        .iter()
        .find(|c| c["capability"] == "background-snapshot")?["state"]
        .as_bool()
}

/// The daemons this test started, stopped (by PID, libvirtd first) when it drops.
struct Daemons {
    dir: tempfile::TempDir,
    started: Vec<&'static str>,
}

impl Daemons {
    fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir.path().join(format!("{daemon}.pid"))
    }

    /// The PID of `daemon` when this test started it.
    fn pid(&self, daemon: &'static str) -> Option<i32> {
        if !self.started.contains(&daemon) {
            return None;
        }
        std::fs::read_to_string(self.pid_file(daemon))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts `daemon` (`-d`, its pid file here).
    fn start(&mut self, daemon: &'static str) -> Result<(), String> {
        let ok = Command::new(format!("/usr/sbin/{daemon}"))
            .arg("-d")
            .arg("-p")
            .arg(self.pid_file(daemon))
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("could not start {daemon} (not root?)"));
        }
        if !self.started.contains(&daemon) {
            self.started.push(daemon);
        }
        Ok(())
    }

    fn wait_answers(&self) -> Result<(), String> {
        let t0 = Instant::now();
        while !answers() {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("libvirtd started but does not answer on qemu:///system".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Sends `sig` to `daemon` (started here) and waits up to 10 s for it to be gone.
    fn stop(&self, daemon: &'static str, sig: libc::c_int) {
        let Some(pid) = self.pid(daemon) else { return };
        // SAFETY: kill(2) on the pid of a daemon this test started (its own pid file).
        unsafe { libc::kill(pid, sig) };
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop("libvirtd", libc::SIGTERM);
        self.stop("virtlogd", libc::SIGTERM);
    }
}

/// A libvirtd on qemu:///system, started here when none answers; `Err` says why there is none.
fn libvirtd() -> Result<Daemons, String> {
    if guestcore_testkit::tools::which("virsh").is_none() {
        return Err("virsh is not installed (libvirt-clients)".into());
    }
    let dir = tempfile::Builder::new()
        .prefix("guestcore-libvirt")
        .tempdir_in("/run")
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| format!("temporary directory: {e}"))?;
    let mut d = Daemons {
        dir,
        started: Vec::new(),
    };
    if answers() {
        return Ok(d);
    }
    if !Path::new("/usr/sbin/libvirtd").exists() {
        return Err("no libvirtd answers on qemu:///system and none is installed".into());
    }
    let setup = super::repo().join("scripts/guest/libvirt-setup.sh");
    let _ = Command::new("bash").arg(setup).status();
    let _ = std::fs::create_dir_all("/run/libvirt");
    let running = |name: &str| {
        Command::new("pgrep")
            .args(["-x", name])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for daemon in ["virtlogd", "libvirtd"] {
        if !running(daemon) {
            d.start(daemon)?;
        }
    }
    d.wait_answers()?;
    Ok(d)
}

/// A running transient domain; destroyed when it drops (its QEMU killed by PID if libvirt
/// cannot).
struct Domain {
    name: String,
    serial: PathBuf,
    qemu_pid: i32,
}

impl Drop for Domain {
    fn drop(&mut self) {
        if !virsh(&["destroy", &self.name]).status.success() && self.qemu_alive() {
            // SAFETY: kill(2) on the QEMU this test's domain runs (libvirt's pid file).
            unsafe { libc::kill(self.qemu_pid, libc::SIGKILL) };
        }
    }
}

fn domain_xml(name: &str, kernel: &Path, initrd: &Path, serial: &Path) -> String {
    let qemu = guestcore_testkit::tools::which("qemu-system-x86_64").unwrap();
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>2</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 panic=-1 printk.time=1</cmdline></os>\
         <features><acpi/><vmcoreinfo state='on'/></features>\
         <cpu mode='custom'><model>qemu64</model></cpu><on_reboot>destroy</on_reboot>\
         <devices><emulator>{}</emulator><serial type='file'><source path='{}'/></serial>\
         <memballoon model='none'/></devices></domain>",
        kernel.display(),
        initrd.display(),
        qemu.display(),
        serial.display()
    )
}

impl Domain {
    fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    fn line(&self, key: &str) -> String {
        self.serial()
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {key} in the serial log"))
    }

    fn qemu_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.qemu_pid)).exists()
    }
}

fn run(args: &[&str]) -> Output {
    guestcore().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "guestcore {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_saying(args: &[&str], words: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "guestcore {args:?} succeeded: {err}");
    assert!(
        !err.contains("panicked"),
        "guestcore {args:?} panicked: {err}"
    );
    for w in words {
        assert!(err.contains(w), "guestcore {args:?}: {w:?} not in {err:?}");
    }
}

fn wait_state(name: &str, want: &str, within: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if domstate(name) == want {
            return true;
        }
        if t0.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything guestcore changes is back, within 15 s: libvirt says running, QEMU runs, no
/// migration runs, `background-snapshot` is off.
fn assert_put_back(name: &str, after: &str) {
    let t0 = Instant::now();
    loop {
        let state = domstate(name);
        let status = qmp(name, r#"{"execute":"query-status"}"#);
        let migration = migration_status(name);
        let capability = snapshot_capability(name);
        let migrating = matches!(
            migration.as_str(),
            "setup" | "active" | "cancelling" | "device" | "pre-switchover"
        );
        if state == "running"
            && status.contains(r#""running":true"#)
            && !migrating
            && capability == Some(false)
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "after {after}: domstate {state:?}, QEMU {status:?}, migration {migration:?}, background-snapshot {capability:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dir` holds no file of any name.
fn assert_empty(dir: &Path, after: &str) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "after {after}, {} holds {left:?}",
        dir.display()
    );
}

/// `virsh event --loop --event lifecycle --timestamp` on one domain, into a file.
struct Events {
    child: Child,
    log: PathBuf,
}

impl Events {
    fn start(name: &str, log: PathBuf) -> Events {
        let child = Command::new("virsh")
            .args(["-q", "-c", URI, "event", name])
            .args(["--event", "lifecycle", "--loop", "--timestamp"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("virsh event");
        Events { child, log }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 10 s for an event line containing `word` after byte `from`.
    fn wait_for(&self, from: usize, word: &str) -> String {
        let t0 = Instant::now();
        loop {
            let text = self.text();
            let new = text.get(from..).unwrap_or_default();
            if new.lines().any(|l| l.contains(word)) {
                return new.to_string();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "libvirt reported no {word:?} lifecycle event; it reported:\n{new}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The time of day, in ms, of a `virsh event --timestamp` line
/// (`2026-12-06 16:00:51.324+0000: event 'lifecycle' for domain 'x': Suspended Paused`).
fn event_ms(line: &str) -> Option<u64> {
    let (stamp, _) = line.split_once(": event ")?;
    let time = stamp.split_whitespace().nth(1)?;
    let time = time.split(['+', '-']).next()?;
    let (hms, ms) = time.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<u64>().ok()?)
}

/// The stop libvirt saw in `events`: from its first `Suspended` to the next `Resumed`, in ms.
fn stop_from_events(events: &str) -> Option<u64> {
    let mut lines = events.lines().skip_while(|l| !l.contains("Suspended"));
    let stopped = event_ms(lines.next()?)?;
    let resumed = event_ms(lines.find(|l| l.contains("Resumed"))?)?;
    // Across midnight the clock restarts.
    Some((resumed + 86_400_000 - stopped) % 86_400_000)
}

#[test]
fn virsh_event_lines_give_the_stop() {
    let log = "2026-12-06 16:00:51.324+0000: event 'lifecycle' for domain 'g': Suspended Paused\n\
               2026-12-06 16:00:51.331+0000: event 'lifecycle' for domain 'g': Resumed Unpaused\n";
    assert_eq!(stop_from_events(log), Some(7));
    let midnight = "2026-12-06 23:59:59.998+0000: event 'lifecycle' for domain 'g': Suspended Paused\n\
                    2026-12-07 00:00:00.003+0000: event 'lifecycle' for domain 'g': Resumed Unpaused\n";
    assert_eq!(stop_from_events(midnight), Some(5));
    assert_eq!(stop_from_events("nothing\n"), None);
}

/// What a test of one domain works with.
struct Ctx<'a> {
    name: &'a str,
    input: &'a str,
    /// Where dumps that are kept go (and the domain's files).
    dir: &'a Path,
    /// Where interrupted dumps write: empty after each.
    out: &'a Path,
    release: &'a str,
    /// `init_uts_ns`, a kernel virtual address.
    uts: u64,
    /// `jiffies`, a kernel virtual address.
    jiffies: u64,
}

/// `kernels`, `mem`, `translate` and `read` of init_uts_ns on the suspended domain give what
/// they give on `virsh dump --memory-only` of it, and guestcore leaves it suspended. Returns
/// the dump, the reference for the debuggers.
fn reads_equal_libvirts_dump(c: &Ctx, events: &Events) -> PathBuf {
    let mark = events.text().len();
    assert!(virsh(&["suspend", c.name]).status.success());
    // The event watcher is live: it saw this suspend.
    events.wait_for(mark, "Suspended");
    let reference = c.dir.join("virsh.elf");
    let t0 = Instant::now();
    let dumped = virsh(&["dump", "--memory-only", c.name, reference.to_str().unwrap()]);
    assert!(
        dumped.status.success(),
        "virsh dump --memory-only: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    eprintln!(
        "virsh dump --memory-only: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let file = reference.to_str().unwrap();
    let uts = format!("{:#x}", c.uts);
    // The input's own VMCOREINFO note is the file's; the live guest has none.
    let kernels = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.contains("the input's own VMCOREINFO note"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let listing = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    type Render = dyn Fn(&Output) -> String;
    let cases: [(&str, Vec<&str>, &Render); 4] = [
        ("kernels", vec![], &kernels),
        ("mem", vec![], &listing),
        ("translate", vec![&uts], &listing),
        // struct new_utsname, the first member of init_uts_ns: six strings of 65 bytes.
        ("read", vec![&uts, "390"], &listing),
    ];
    for (cmd, rest, render) in cases {
        let live = ok(&[&[cmd, c.input][..], &rest[..]].concat());
        let theirs = ok(&[&[cmd, file][..], &rest[..]].concat());
        let (l, t) = (render(&live), render(&theirs));
        assert!(!l.trim().is_empty(), "{cmd} on {} printed nothing", c.input);
        assert!(
            l == t,
            "{cmd} on {} differs from {cmd} on virsh's dump: {}",
            c.input,
            debuggers::first_difference(&t, &l)
        );
        let stderr = String::from_utf8_lossy(&live.stderr);
        assert!(
            !stderr.contains("guest paused for"),
            "{cmd} paused a suspended domain: {stderr}"
        );
        assert_eq!(
            domstate(c.name),
            "paused",
            "after {cmd} on the suspended domain"
        );
    }
    let release = String::from_utf8_lossy(&ok(&["read", c.input, &uts, "390"]).stdout)
        .split('\0')
        .filter(|s| !s.is_empty())
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert_eq!(release, c.release, "init_uts_ns.name.release");
    assert!(virsh(&["resume", c.name]).status.success());
    assert_eq!(domstate(c.name), "running");
    reference
}

/// `mem`, `tlb` and `translate` with the default pause and with `--no-pause`: each lists
/// something, pauses only when asked, and leaves the domain running.
fn listings_leave_it_running(c: &Ctx) {
    let uts = format!("{:#x}", c.uts);
    for no_pause in [false, true] {
        for cmd in [vec!["mem"], vec!["tlb"], vec!["translate"]] {
            let mut args = cmd.clone();
            if no_pause {
                args.push("--no-pause");
            }
            args.push(c.input);
            if cmd[0] == "translate" {
                args.push(&uts);
            }
            let out = ok(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stdout.trim().is_empty(), "{args:?} printed nothing");
            assert_eq!(
                stderr.contains("guest paused for"),
                !no_pause,
                "{args:?}: {stderr}"
            );
            assert_eq!(domstate(c.name), "running", "after {args:?}");
        }
    }
}

/// A background-snapshot dump in each format: QEMU's stop at most [`STOP_LIMIT_MS`] by
/// guestcore's line, by libvirt's lifecycle events and by QEMU's `query-migrate`; the release
/// read back from the file; the domain running after. Returns the files.
fn snapshot_dumps(c: &Ctx, events: &Events) -> Vec<(String, PathBuf)> {
    let addr = format!("{:#x}", c.uts + 130);
    let mut files = Vec::new();
    for (file, format) in [("d.elf", "elf"), ("d.kdump", "kdump-zstd")] {
        let out_path = c.dir.join(file);
        let mark = events.text().len();
        let out = ok(&[
            "dump",
            c.input,
            "--format",
            format,
            "-o",
            out_path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: u64 = stderr
            .split("background snapshot: guest stopped ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{format}: no background snapshot: {stderr}"));
        let seen = events.wait_for(mark, "Resumed");
        let libvirts = stop_from_events(&seen)
            .unwrap_or_else(|| panic!("{format}: no Suspended/Resumed pair in:\n{seen}"));
        let migrate: serde_json::Value =
            serde_json::from_str(&qmp(c.name, r#"{"execute":"query-migrate"}"#)).unwrap();
        assert_eq!(migrate["return"]["status"], "completed", "{migrate}");
        let qemus = migrate["return"]["downtime"]
            .as_u64()
            .unwrap_or_else(|| panic!("no downtime in {migrate}"));
        eprintln!(
            "{format}: stop {libvirts} ms by libvirt's lifecycle events, {qemus} ms by QEMU's query-migrate, {ours} ms by guestcore"
        );
        for (by, ms) in [
            ("libvirt's lifecycle events", libvirts),
            ("QEMU's query-migrate downtime", qemus),
            ("guestcore's report", ours),
        ] {
            assert!(
                ms <= STOP_LIMIT_MS,
                "{format}: the guest stopped {ms} ms by {by}; events:\n{seen}"
            );
        }
        let out = ok(&["read", out_path.to_str().unwrap(), &addr, "65"]);
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            got.trim_end_matches('\0').starts_with(c.release),
            "read from the {format} dump: {got:?}"
        );
        assert_eq!(domstate(c.name), "running");
        files.push((format.to_string(), out_path));
    }
    files
}

/// The CPUs crash's `bt -a` printed a backtrace (a `#0` frame) for.
fn backtraced_cpus(crash: &str) -> BTreeSet<u32> {
    let mut cpus = BTreeSet::new();
    let mut current = None;
    for line in crash.lines() {
        if line.starts_with("PID:") {
            current = line
                .split("CPU:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u32>().ok());
        } else if line.trim_start().starts_with("#0 ") {
            if let Some(cpu) = current.take() {
                cpus.insert(cpu);
            }
        }
    }
    cpus
}

/// The (pid, command) of crash's `ps` lines.
fn crash_tasks(crash: &str) -> BTreeSet<(u32, String)> {
    crash
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_start_matches('>').split_whitespace().collect();
            // PID PPID CPU TASK ST %MEM VSZ RSS COMM
            if f.len() < 9 || f[4].len() != 2 || !f[4].chars().all(|c| c.is_ascii_uppercase()) {
                return None;
            }
            let pid = f[0].parse().ok()?;
            u64::from_str_radix(f[3], 16).ok()?;
            let comm = f[8..].join(" ");
            Some((pid, comm.trim_matches(['[', ']']).to_string()))
        })
        .collect()
}

/// The (pid, command) of the drgn script's `task` lines.
fn drgn_tasks(out: &str) -> BTreeSet<(u32, String)> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("task ")?.splitn(2, ' ');
            Some((f.next()?.parse().ok()?, f.next()?.to_string()))
        })
        .collect()
}

/// A field of crash's `sys`.
fn sys_field<'t>(crash: &'t str, key: &str) -> Option<&'t str> {
    crash
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(key).map(str::trim))
}

/// crash prints `sys`, `bt -a`, `log` and `ps` on the snapshot dumps as on libvirt's dump of
/// the same domain, and drgn reads the release and the same kernel tasks from them. The
/// snapshots are of the running guest at other instants, so what must agree is compared:
/// release, CPUs, a backtrace per CPU, the banner, the tasks present in both.
fn debuggers_read_them(c: &Ctx, reference: &Path, ours: &[(String, PathBuf)]) {
    if guestcore_testkit::tools::require("crash").is_none() {
        return;
    }
    let Some(vmlinux) = debuggers::vmlinux(c.release) else {
        return;
    };
    let Some(drgn) = debuggers::drgn() else {
        return;
    };
    let commands = c.dir.join("crash.cmds");
    std::fs::write(&commands, "sys\nbt -a\nlog\nps\nquit\n").unwrap();
    let script = c.dir.join("check.py");
    std::fs::write(&script, debuggers::DRGN_SCRIPT).unwrap();
    let mut files = vec![(
        "virsh dump --memory-only".to_string(),
        reference.to_path_buf(),
    )];
    files.extend(ours.iter().cloned());
    let t0 = Instant::now();
    let results = debuggers::two_at_a_time(&files, |(_, path)| {
        (
            debuggers::crash(&vmlinux, path, &commands),
            debuggers::drgn_run(&drgn, &vmlinux, path, &script),
        )
    });
    eprintln!(
        "crash and drgn on {} files: {:.1} s",
        files.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut results = files.iter().zip(results);
    let (_, (crash_want, drgn_want)) = results.next().unwrap();
    let crash_want = crash_want.unwrap_or_else(|e| panic!("crash on virsh's dump: {e}"));
    let drgn_want = drgn_want.unwrap_or_else(|e| panic!("drgn on virsh's dump: {e}"));
    let cpus: u32 = sys_field(&crash_want, "CPUS:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CPUS in crash's sys on virsh's dump:\n{crash_want}"));
    let all_cpus: BTreeSet<u32> = (0..cpus).collect();
    assert_eq!(
        sys_field(&crash_want, "RELEASE:"),
        Some(c.release),
        "{crash_want}"
    );
    assert_eq!(backtraced_cpus(&crash_want), all_cpus, "{crash_want}");
    let banner = format!("Linux version {}", c.release);
    let want_tasks = crash_tasks(&crash_want);
    let drgn_want_tasks = drgn_tasks(&drgn_want);
    assert!(
        drgn_want_tasks.contains(&(1, "init".into()))
            && drgn_want_tasks.contains(&(2, "kthreadd".into())),
        "drgn on virsh's dump: {drgn_want}"
    );
    for ((what, _), (crash_got, drgn_got)) in results {
        let got = crash_got.unwrap_or_else(|e| panic!("crash on the {what} dump: {e}"));
        for key in ["RELEASE:", "VERSION:", "CPUS:", "MACHINE:", "MEMORY:"] {
            assert_eq!(
                sys_field(&got, key),
                sys_field(&crash_want, key),
                "crash's sys {key} on the {what} snapshot vs virsh's dump:\n{got}"
            );
        }
        assert_eq!(
            backtraced_cpus(&got),
            all_cpus,
            "crash's bt -a on the {what} snapshot:\n{got}"
        );
        assert!(
            got.contains(&banner),
            "crash's log on the {what} snapshot has no {banner:?}:\n{got}"
        );
        // crash 8.0.2 walks only the idle tasks of this kernel (TASKS: 2, on virsh's dump
        // too): the tasks both list must be the same, and every idle task there.
        let tasks = crash_tasks(&got);
        let idle: BTreeSet<(u32, String)> =
            (0..cpus).map(|i| (0, format!("swapper/{i}"))).collect();
        assert!(
            idle.is_subset(&tasks) && idle.is_subset(&want_tasks),
            "crash's ps on the {what} snapshot: {tasks:?}; on virsh's dump: {want_tasks:?}"
        );
        let kernel = |t: &BTreeSet<(u32, String)>| -> BTreeSet<(u32, String)> {
            t.iter().filter(|(pid, _)| *pid <= 2).cloned().collect()
        };
        assert_eq!(
            kernel(&tasks),
            kernel(&want_tasks),
            "crash's ps on the {what} snapshot"
        );
        let drgn_got = drgn_got.unwrap_or_else(|e| panic!("drgn on the {what} snapshot: {e}"));
        assert_eq!(
            drgn_got.lines().next(),
            Some(format!("release {}", c.release).as_str()),
            "drgn on the {what} snapshot"
        );
        // The running guest's tasks come and go between the dumps; its kernel's first
        // tasks do not, and nearly all others stay.
        let got_tasks = drgn_tasks(&drgn_got);
        assert_eq!(
            kernel(&got_tasks),
            kernel(&drgn_want_tasks),
            "drgn on the {what} snapshot"
        );
        let differ: Vec<_> = got_tasks.symmetric_difference(&drgn_want_tasks).collect();
        assert!(
            differ.len() * 10 <= drgn_want_tasks.len(),
            "drgn's tasks on the {what} snapshot and virsh's dump differ by {differ:?}"
        );
    }
}

/// Which moment of a dump a signal is sent in.
#[derive(Clone, Copy, Debug)]
enum During {
    /// While QEMU streams a background snapshot (`query-migrate` says active).
    Snapshot,
    /// While a `--pause` dump holds the domain suspended.
    Pause,
}

/// `sig` to a guestcore `dump` during `during`: it ends (with an error, for a signal it can
/// catch), the domain runs with no migration and the capability off, and the output directory
/// holds nothing.
/// Starts `cmd` and polls `reached` while it runs, for at most 30 s: the child, and whether the
/// moment came before it ended (a dump caught while the migration is active, say).
fn spawn_until(cmd: &mut Command, mut reached: impl FnMut() -> bool) -> (Child, bool) {
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if child.try_wait().unwrap().is_some() {
            return (child, false);
        }
        if reached() {
            return (child, true);
        }
    }
    (child, false)
}

fn interrupted(c: &Ctx, during: During, sig: libc::c_int) {
    let what = format!("signal {sig} during the {during:?}");
    for attempt in 1..=3 {
        let target = c.out.join("i.kdump");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("guestcore"));
        cmd.arg("dump");
        if let During::Pause = during {
            cmd.arg("--pause");
        }
        cmd.args([c.input, "--format", "kdump-zstd", "-o"])
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (mut child, reached) = spawn_until(&mut cmd, || match during {
            During::Snapshot => migration_status(c.name) == "active",
            During::Pause => domstate(c.name) == "paused",
        });
        if reached {
            // SAFETY: kill(2) on the pid of a child this test started and has not reaped
            // (`try_wait` saw it running).
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{what}: guestcore still runs 20 s after the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !reached || out.status.success() {
            // It ended before the moment came (or the signal landed after it wrote).
            let _ = std::fs::remove_file(&target);
            eprintln!(
                "{what}: attempt {attempt} missed the moment ({})",
                out.status
            );
            assert_put_back(c.name, &what);
            continue;
        }
        if sig == libc::SIGKILL {
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}");
        } else {
            assert!(
                out.status.code().is_some_and(|c| c != 0),
                "{what}: guestcore ended with {} instead of an error: {stderr}",
                out.status
            );
            assert!(stderr.contains("cancelled"), "{what}: {stderr}");
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        }
        assert_put_back(c.name, &what);
        assert_empty(c.out, &what);
        eprintln!("{what}: put back, nothing left (attempt {attempt})");
        return;
    }
    panic!("{what}: never caught the dump in that moment");
}

/// A `virsh` that reports libvirt 8.1.0 (too old to pass descriptors) and forwards every
/// other command to the real one: the snapshot is refused naming 8.2, and the dump pauses.
fn old_libvirt_pauses_instead(c: &Ctx) {
    let real = guestcore_testkit::tools::which("virsh").unwrap();
    let bin = c.dir.join("old-virsh");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("virsh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = version ]; then\n    \
             printf 'Compiled against library: libvirt 8.1.0\\nUsing library: libvirt 8.1.0\\n\
             Using API: QEMU 8.1.0\\nRunning hypervisor: QEMU 10.0.2\\nRunning against daemon: 8.1.0\\n'\n    \
             exit 0\n  fi\ndone\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = c.out.join("old.elf");
    let out = guestcore()
        .env("PATH", &path)
        .args(["dump", c.input, "-o"])
        .arg(&target)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dump with libvirt 8.1.0: {stderr}");
    assert!(
        stderr.contains("no background snapshot")
            && stderr.contains("8.1.0")
            && stderr.contains("needs libvirt 8.2 or later"),
        "the refusal names the versions: {stderr}"
    );
    assert!(stderr.contains("guest paused for"), "{stderr}");
    assert!(!stderr.contains("guest stopped"), "{stderr}");
    assert_eq!(stderr.matches("tainted").count(), 1, "said once: {stderr}");
    let read = ok(&[
        "read",
        target.to_str().unwrap(),
        &format!("{:#x}", c.uts + 130),
        "65",
    ]);
    assert!(String::from_utf8_lossy(&read.stdout).starts_with(c.release));
    std::fs::remove_file(&target).unwrap();
    assert_put_back(c.name, "a dump with libvirt 8.1.0");
}

/// The sh watchdogs a guestcore left for `name` (they retry while libvirtd is away).
fn watchdogs_of(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.contains(&b"guestcore-libvirt-watchdog".as_slice())
                && args.contains(&name.as_bytes())
        })
        .collect()
}

/// libvirtd killed while a snapshot streams: guestcore ends within 15 s with an error naming
/// libvirt, QEMU runs on, nothing is left; libvirtd started again sees the domain running, and
/// the next dump succeeds (repairing the capability if it was left on) and puts it back.
fn libvirtd_killed_mid_dump(c: &Ctx, daemons: &mut Daemons, qemu_alive: &dyn Fn() -> bool) {
    if daemons.pid("libvirtd").is_none() {
        eprintln!(
            "NOT RUN (libvirtd killed mid-dump): the libvirtd answering was not started by this test"
        );
        return;
    }
    let target = c.out.join("l.kdump");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .args(["dump", c.input, "--format", "kdump-zstd", "-o"])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while migration_status(c.name) != "active" {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the dump ended before its snapshot was seen active"
        );
        assert!(t0.elapsed() < Duration::from_secs(30), "no snapshot");
    }
    daemons.stop("libvirtd", libc::SIGKILL);
    let killed = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if killed.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = daemons.start("libvirtd");
            panic!("guestcore still runs 15 s after libvirtd was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alive = qemu_alive();
    // Started again before asserting, so that a failure leaves libvirt as it was found.
    daemons.start("libvirtd").unwrap();
    daemons.wait_answers().unwrap();
    eprintln!(
        "libvirtd killed mid-snapshot: guestcore ended {:.2} s later: {}",
        took.as_secs_f64(),
        stderr.lines().last().unwrap_or_default()
    );
    assert!(
        !out.status.success(),
        "the dump succeeded without libvirtd: {stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "guestcore died: {}",
        out.status
    );
    assert!(
        stderr.contains("libvirtd does not answer") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(alive, "QEMU died with libvirtd");
    assert_empty(c.out, "libvirtd was killed mid-dump");
    // Its watchdog retries while libvirtd is away and ends once it has put QEMU back or
    // given up (about 15 s).
    let t0 = Instant::now();
    while !watchdogs_of(c.name).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "guestcore's libvirt watchdogs still run: {:?}",
            watchdogs_of(c.name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(domstate(c.name), "running", "after libvirtd's restart");
    let capability = snapshot_capability(c.name);
    let next = c.out.join("next.elf");
    let out = ok(&["dump", c.input, "-o", next.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("background snapshot: guest stopped"),
        "{stderr}"
    );
    eprintln!(
        "after libvirtd's restart: background-snapshot was {capability:?}; the next dump said: {}",
        stderr
            .lines()
            .filter(|l| l.contains("left by a killed"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    std::fs::remove_file(&next).unwrap();
    assert_put_back(c.name, "the dump after libvirtd's restart");
}

#[test]
fn libvirt_domain_reads_like_qmp_and_libvirt_keeps_its_state() {
    let files = guest_or_skip!();
    let mut daemons = guest_or_skip!(libvirtd());
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let name = format!("guestcore-test-{}", std::process::id());
    let serial = dir.path().join("serial.log");
    let xml = dir.path().join("domain.xml");
    std::fs::write(
        &xml,
        domain_xml(&name, &files.kernel, &files.initrd, &serial),
    )
    .unwrap();
    let created = virsh(&["create", xml.to_str().unwrap()]);
    assert!(
        created.status.success(),
        "virsh create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let qemu_pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(-1);
    let dom = Domain {
        name: name.clone(),
        serial,
        qemu_pid,
    };
    assert!(dom.qemu_alive(), "no QEMU process {qemu_pid}");
    let t0 = Instant::now();
    while !dom.serial().contains("GUESTCORE-READY") {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "guest not ready:\n{}",
            dom.serial()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("domain booted in {:.1} s", t0.elapsed().as_secs_f64());
    let release = dom.line("GUESTCORE-RELEASE");
    let uts = u64::from_str_radix(&dom.line("GUESTCORE-SYM init_uts_ns"), 16).unwrap();
    let jiffies = u64::from_str_radix(&dom.line("GUESTCORE-SYM jiffies "), 16).unwrap();
    let input = format!("libvirt:{name}");
    let c = Ctx {
        name: &name,
        input: &input,
        dir: dir.path(),
        out: out_dir.path(),
        release: &release,
        uts,
        jiffies,
    };
    let events = Events::start(&name, dir.path().join("events.log"));

    // `kernels` with the default pause: the release, the taint said once, running after.
    let out = ok(&["kernels", &input]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&release), "{release} not in {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("tainted").count(), 1, "{stderr}");
    assert!(stderr.contains("guest paused for"), "{stderr}");
    assert_eq!(domstate(&name), "running");

    // `read` of init_uts_ns.name.release, by the domain's UUID, without pausing.
    let uuid = String::from_utf8_lossy(&virsh(&["domuuid", &name]).stdout)
        .trim()
        .to_string();
    let addr = format!("{:#x}", uts + 130);
    let out = ok(&[
        "read",
        "--no-pause",
        &format!("libvirt:{uuid}"),
        &addr,
        "65",
    ]);
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        got.trim_end_matches('\0').starts_with(&release),
        "read {addr}: {got:?}, the guest said {release:?}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("paused for"),
        "--no-pause paused"
    );
    assert_eq!(domstate(&name), "running");

    // `dmesg --no-pause`: the kernel's log.
    let out = ok(&["dmesg", "--no-pause", &input]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains(&format!("Linux version {release}")),
        "no banner in {log}"
    );
    // The last kernel line the guest printed on its console is in the log, and the log goes
    // at least that far (lines below the console's level are only in the log).
    let stamp = |l: &str| -> Option<(f64, String)> {
        let (t, text) = l.trim_end().strip_prefix('[')?.split_once("] ")?;
        Some((t.trim().parse().ok()?, text.to_string()))
    };
    let console = dom.serial();
    let (at, last) = console
        .lines()
        .rev()
        .find_map(stamp)
        .expect("no kernel line on the console");
    let ends = log.lines().rev().find_map(stamp).map_or(0.0, |(t, _)| t);
    assert!(
        log.contains(&last) && ends >= at,
        "the console's last kernel line [{at}] {last:?} is not in the log, which ends at [{ends}]"
    );
    assert_eq!(domstate(&name), "running");

    listings_leave_it_running(&c);
    let reference = reads_equal_libvirts_dump(&c, &events);
    let dumps = snapshot_dumps(&c, &events);
    drop(events);
    // crash and drgn take most of a minute on two cores: they read the files while the
    // domain is put through the rest (no stop is measured from here on).
    std::thread::scope(|s| {
        let debuggers = s.spawn(|| debuggers_read_them(&c, &reference, &dumps));
        the_rest(&c, &files, &mut daemons, &|| dom.qemu_alive());
        if let Err(panic) = debuggers.join() {
            std::panic::resume_unwind(panic);
        }
    });
    for f in dumps.iter().map(|(_, p)| p).chain([&reference]) {
        let _ = std::fs::remove_file(f);
    }
    assert_put_back(&name, "the whole test");
    eprintln!("libvirt test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Interruptions, a domain suspended by someone else, libvirt's own commands afterwards, bad
/// input, an old libvirt and libvirtd killed mid-dump.
fn the_rest(
    c: &Ctx,
    files: &super::GuestFiles,
    daemons: &mut Daemons,
    qemu_alive: &dyn Fn() -> bool,
) {
    let (name, input) = (c.name.to_string(), c.input.to_string());
    // Every way a dump can be cut short puts the domain back and leaves no file.
    for (during, sig) in [
        (During::Snapshot, libc::SIGKILL),
        (During::Snapshot, libc::SIGTERM),
        (During::Snapshot, libc::SIGINT),
        (During::Pause, libc::SIGKILL),
        (During::Pause, libc::SIGTERM),
        (During::Pause, libc::SIGINT),
    ] {
        interrupted(c, during, sig);
    }

    // A domain paused before guestcore came stays paused.
    assert!(virsh(&["suspend", &name]).status.success());
    ok(&["kernels", &input]);
    assert_eq!(domstate(&name), "paused");
    assert!(virsh(&["resume", &name]).status.success());
    assert!(wait_state(&name, "running", Duration::from_secs(10)));

    // libvirt takes the next suspend/resume/dump normally.
    assert!(virsh(&["suspend", &name]).status.success());
    assert!(virsh(&["resume", &name]).status.success());
    let theirs = c.dir.join("virsh-after.elf");
    let dumped = virsh(&["dump", "--memory-only", &name, theirs.to_str().unwrap()]);
    assert!(
        dumped.status.success(),
        "virsh dump --memory-only after guestcore: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let _ = std::fs::remove_file(&theirs);
    assert_eq!(domstate(&name), "running");

    // Bad input: clear errors, the guest running.
    fails_saying(
        &["kernels", "libvirt:guestcore-no-such-domain"],
        &[
            "libvirt:guestcore-no-such-domain",
            "guestcore-no-such-domain",
        ],
    );
    fails_saying(
        &[
            "kernels",
            "--connect",
            "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
            &input,
        ],
        &["looking the domain up", "/nonexistent/libvirt-sock"],
    );
    // A driver that is not QEMU's (libvirt's test driver, inside virsh).
    fails_saying(
        &["kernels", "--connect", "test:///default", "libvirt:test"],
        &["not a QEMU system URI"],
    );
    let off = format!("{name}-off");
    let off_xml = c.dir.join("off.xml");
    std::fs::write(
        &off_xml,
        domain_xml(&off, &files.kernel, &files.initrd, &c.dir.join("off.log")),
    )
    .unwrap();
    assert!(virsh(&["define", off_xml.to_str().unwrap()])
        .status
        .success());
    let off_input = format!("libvirt:{off}");
    let off_out = run(&["kernels", &off_input]);
    let _ = virsh(&["undefine", &off]);
    let err = String::from_utf8_lossy(&off_out.stderr);
    assert!(
        !off_out.status.success(),
        "a shut-off domain was read: {err}"
    );
    assert!(err.contains("shut off"), "{err}");
    assert_eq!(domstate(&name), "running");

    stopped_guestcore_does_not_stall_it(c);
    capability_left_on_is_repaired(c);
    old_libvirt_pauses_instead(c);
    libvirtd_killed_mid_dump(c, daemons, qemu_alive);
}

/// The guest's jiffies, read through `guestcore read --no-pause libvirt:NAME`.
fn jiffies(c: &Ctx) -> u64 {
    let out = ok(&[
        "read",
        "--no-pause",
        c.input,
        &format!("{:#x}", c.jiffies),
        "8",
    ]);
    let bytes: [u8; 8] = out.stdout[..8]
        .try_into()
        .unwrap_or_else(|_| panic!("read jiffies: {:?}", out.stdout));
    u64::from_le_bytes(bytes)
}

/// All of guestcore stopped (SIGSTOP) mid-snapshot: its watchdog, whose heartbeat stopped,
/// SIGKILLs it within 2 s (`qmp::watchdog::HEARTBEAT_LIMIT`) and libvirt's watchdog puts QEMU
/// back; the guest's clock never stands still longer than that (plus 1.5 s for a loaded host
/// and the samples' own time, each one a `guestcore read` and a `virsh` call), and nothing is
/// left.
fn stopped_guestcore_does_not_stall_it(c: &Ctx) {
    let bound = Duration::from_millis(2000 + 1500);
    for attempt in 1..=3 {
        let target = c.out.join("stopped.kdump");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("guestcore"));
        cmd.args(["dump", c.input, "--format", "kdump-zstd", "-o"])
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (mut child, active) = spawn_until(&mut cmd, || migration_status(c.name) == "active");
        if !active {
            let _ = child.wait();
            let _ = std::fs::remove_file(&target);
            eprintln!("SIGSTOP: attempt {attempt}: the snapshot ended before it was seen");
            continue;
        }
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) };
        let stopped = Instant::now();
        // (at, jiffies, migration running)
        let mut samples: Vec<(Duration, u64, bool)> = Vec::new();
        let mut died = None;
        while stopped.elapsed() < bound + Duration::from_secs(1) {
            let j = jiffies(c);
            let running = matches!(
                migration_status(c.name).as_str(),
                "setup" | "active" | "cancelling"
            );
            samples.push((stopped.elapsed(), j, running));
            if died.is_none() && child.try_wait().unwrap().is_some() {
                died = Some(stopped.elapsed());
            }
        }
        // SAFETY: as above (a child killed by its watchdog is reaped below, not yet).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        let status = child.wait().unwrap();
        let ended = samples.iter().find(|s| !s.2).map(|s| s.0);
        let mut frozen = Duration::ZERO;
        let mut since = 0;
        for (i, s) in samples.iter().enumerate() {
            if s.1 > samples[since].1 || i + 1 == samples.len() {
                frozen = frozen.max(s.0 - samples[since].0);
                since = i;
            }
        }
        eprintln!(
            "SIGSTOP mid-snapshot: guestcore ended {died:?} after ({status}), the migration {ended:?}, the guest's jiffies stood still at most {:.0} ms ({} samples)",
            frozen.as_secs_f64() * 1e3,
            samples.len()
        );
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        assert!(
            died.is_some_and(|t| t <= bound),
            "guestcore killed {died:?}"
        );
        assert!(
            ended.is_some_and(|t| t <= bound),
            "the migration did not end within {bound:?}: {samples:?}"
        );
        assert!(frozen <= bound, "{samples:?}");
        assert!(
            samples.last().unwrap().1 > samples[0].1,
            "the guest's clock did not advance: {samples:?}"
        );
        assert_put_back(c.name, "a SIGSTOPped guestcore mid-snapshot");
        assert_empty(c.out, "a SIGSTOPped guestcore mid-snapshot");
        return;
    }
    panic!("SIGSTOP: never caught guestcore mid-snapshot");
}

/// `background-snapshot` left on with no migration (what a guestcore killed while libvirtd
/// was away leaves when libvirtd stays away longer than its watchdog retries): the next dump
/// says so, takes its snapshot and turns it off.
fn capability_left_on_is_repaired(c: &Ctx) {
    let on = qmp(
        c.name,
        r#"{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"background-snapshot","state":true}]}}"#,
    );
    assert!(on.contains(r#""return""#), "{on}");
    assert_eq!(snapshot_capability(c.name), Some(true));
    let target = c.out.join("repaired.elf");
    let out = ok(&["dump", c.input, "-o", target.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("background-snapshot migration capability was on")
            && stderr.contains("background snapshot: guest stopped"),
        "{stderr}"
    );
    std::fs::remove_file(&target).unwrap();
    assert_put_back(c.name, "a dump that found the capability on");
}
