//! `libvirt:DOMAIN` against a real libvirtd: a transient TCG domain with no
//! `<qemu:commandline>` (the `vmcoreinfo` device comes from `<features><vmcoreinfo/>`), one
//! boot for every check.
//!
//! Needs what the other live tests need, plus `virsh` and either a libvirtd answering on
//! `qemu:///system` or root and `/usr/sbin/libvirtd` (then libvirtd, and virtlogd when none
//! runs, are started here with pid files in a temporary directory and stopped by those PIDs
//! when the test ends; `scripts/guest/libvirt-setup.sh` prepares a machine without systemd).
//! Skips, saying why, otherwise (fails under `CI=true`).

use super::{guest_files, guestcore};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";

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

/// The daemons this test started, stopped (by PID, libvirtd first) when it drops.
struct Daemons {
    dir: tempfile::TempDir,
    started: Vec<&'static str>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for d in ["libvirtd", "virtlogd"] {
            if !self.started.contains(&d) {
                continue;
            }
            let Ok(pid) = std::fs::read_to_string(self.dir.path().join(format!("{d}.pid"))) else {
                continue;
            };
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
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
        if running(daemon) {
            continue;
        }
        let pid = d.dir.path().join(format!("{daemon}.pid"));
        let ok = Command::new(format!("/usr/sbin/{daemon}"))
            .arg("-d")
            .arg("-p")
            .arg(&pid)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("could not start {daemon} (not root?)"));
        }
        d.started.push(daemon);
    }
    let t0 = Instant::now();
    while !answers() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("libvirtd started but does not answer on qemu:///system".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(d)
}

/// A running transient domain; destroyed when it drops.
struct Domain {
    name: String,
    serial: PathBuf,
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
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

#[test]
fn libvirt_domain_reads_like_qmp_and_libvirt_keeps_its_state() {
    let files = guest_or_skip!();
    let _daemons = guest_or_skip!(libvirtd());
    let dir = tempfile::tempdir().unwrap();
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
    let dom = Domain {
        name: name.clone(),
        serial,
    };
    let t0 = Instant::now();
    while !dom.serial().contains("GUESTCORE-READY") {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "guest not ready:\n{}",
            dom.serial()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let release = dom.line("GUESTCORE-RELEASE");
    let uts = u64::from_str_radix(&dom.line("GUESTCORE-SYM init_uts_ns"), 16).unwrap();
    let input = format!("libvirt:{name}");

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
    assert_eq!(domstate(&name), "running");

    // `dump` (a background snapshot through libvirt's monitor) in ELF and kdump-zstd: the
    // release read back from each file, QEMU's stop at most 50 ms, the domain running after.
    for (file, format) in [("d.elf", "elf"), ("d.kdump", "kdump-zstd")] {
        let out_path = dir.path().join(file);
        let out = ok(&[
            "dump",
            &input,
            "--format",
            format,
            "-o",
            out_path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stop_ms: u64 = stderr
            .split("background snapshot: guest stopped ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{format}: no background snapshot: {stderr}"));
        assert!(
            stop_ms <= 50,
            "{format}: QEMU stopped the guest {stop_ms} ms"
        );
        let out = ok(&["read", out_path.to_str().unwrap(), &addr, "65"]);
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            got.trim_end_matches('\0').starts_with(&release),
            "read from the {format} dump: {got:?}"
        );
        let _ = std::fs::remove_file(&out_path);
        assert_eq!(domstate(&name), "running");
    }

    // SIGKILL mid-snapshot: libvirt's watchdog cancels the migration and turns the capability
    // off; the domain runs.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .args(["dump", &input, "-o"])
        .arg(dir.path().join("s.elf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let qmp = |cmd: &str| {
        String::from_utf8_lossy(&virsh(&["qemu-monitor-command", &name, cmd]).stdout).into_owned()
    };
    let t0 = Instant::now();
    let mut active = false;
    while t0.elapsed() < Duration::from_secs(30) && !active {
        active = qmp(r#"{"execute":"query-migrate"}"#).contains(r#""status":"active""#);
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(active, "the snapshot never started");
    let t0 = Instant::now();
    loop {
        let caps = qmp(r#"{"execute":"query-migrate-capabilities"}"#);
        let migrating = qmp(r#"{"execute":"query-migrate"}"#).contains(r#""status":"active""#);
        if caps.contains(r#"{"state":false,"capability":"background-snapshot"}"#) && !migrating {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "after SIGKILL mid-snapshot: {caps}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(domstate(&name), "running");

    // A domain paused before guestcore came stays paused.
    assert!(virsh(&["suspend", &name]).status.success());
    ok(&["kernels", &input]);
    assert_eq!(domstate(&name), "paused");
    assert!(virsh(&["resume", &name]).status.success());

    // SIGKILL while a `--pause` dump holds the guest: the watchdog resumes it through libvirt.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("guestcore"))
        .args(["dump", "--pause", &input, "-o"])
        .arg(dir.path().join("k.elf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let paused = wait_state(&name, "paused", Duration::from_secs(30));
    child.kill().unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_file(dir.path().join("k.elf"));
    assert!(paused, "the --pause dump never paused the domain");
    assert!(
        wait_state(&name, "running", Duration::from_secs(10)),
        "domstate after SIGKILL: {}",
        domstate(&name)
    );
    let q = virsh(&[
        "qemu-monitor-command",
        &name,
        r#"{"execute":"query-status"}"#,
    ]);
    let status = String::from_utf8_lossy(&q.stdout);
    assert!(status.contains("\"running\":true"), "QEMU says {status}");
    // libvirt takes the next suspend/resume/dump normally.
    assert!(virsh(&["suspend", &name]).status.success());
    assert!(virsh(&["resume", &name]).status.success());
    let theirs = dir.path().join("virsh.elf");
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
    let off_xml = dir.path().join("off.xml");
    std::fs::write(
        &off_xml,
        domain_xml(
            &off,
            &files.kernel,
            &files.initrd,
            &dir.path().join("off.log"),
        ),
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
}
