//! A QEMU started by libvirt, reached through libvirt's own monitor: no second QMP socket, no
//! change to the domain's XML, no restart.
//!
//! Why `virsh` subprocesses and not libvirt's C library: the `guestcore` binary must run on
//! machines without libvirt (a link-time dependency would make it fail to start there, and a
//! binding crate pulls a C toolchain and `pkg-config` into every build), and the commands a
//! live session sends are few and already bounded by the client's timeout. `virsh` is
//! libvirt's own client: what it does here is what an operator would type.
//!
//! How: [`connect`] looks the domain up (`virsh dominfo`: its name, whatever the user gave —
//! name, UUID or id — and its state), reads QEMU's process id from libvirt's pid file (RAM is
//! then read through `gpa2hva` and `/proc/PID/mem`, as for `qmp:`), and hands the session a
//! [`QmpClient`] over one end of a socket pair whose other end a relay thread serves. The relay
//! speaks QMP to the client and turns each command into one `virsh` call:
//!
//! * `stop` and `cont` become `virsh suspend` and `virsh resume`, so libvirt's own picture of
//!   the domain (`virsh domstate`) stays true, and its lifecycle bookkeeping runs as for an
//!   operator's pause;
//! * every other command goes through `virsh qemu-monitor-command DOMAIN '{json}'` (with
//!   `--pass-fds 3` when the client passed a descriptor), whose stdout is QEMU's reply line,
//!   errors included; only its `id` is replaced by the client's.
//!
//! Passing a descriptor needs libvirt 8.2 ([`FD_PASSING_SINCE`]) in virsh's library and in the
//! daemon. Before a background snapshot changes anything in QEMU, `virsh version --daemon`
//! says whether both are new enough ([`fd_passing_refusal`]); an older one refuses the
//! snapshot with the version it needs, and the dump pauses the guest instead, as for a QEMU
//! that cannot take a snapshot (a pause needs no descriptor).
//!
//! Facts this relies on (checked with libvirt 9.0 and QEMU 10.0.2): `qemu-monitor-command`
//! prints QEMU's reply (`{"return":…,"id":"libvirt-N"}` or `{"id":…,"error":…}`) and exits 0
//! for a QMP error too; libvirt marks the domain tainted ("custom monitor control commands
//! issued", `virsh dominfo`'s Messages) by the first such command; the pid file of a
//! `qemu:///system` domain is `/run/libvirt/qemu/NAME.pid`.
//!
//! What happens when guestcore dies: [`ResumeWatchdog`] is a `sh` child in its own process
//! group that waits on a pipe only this process holds the write end of, and on end-of-file
//! without the disarm line puts the domain back through libvirt — `virsh resume` after a
//! pause; `migrate_cancel`, `background-snapshot` off and `closefd` after a background
//! snapshot (the QMP watchdog armed by `snapshot::start` has no socket to reach, and ends) —
//! the same trigger as the QMP watchdog, without a fork of this (threaded) process. Relayed
//! sessions deliver no QMP events.

use super::client::QmpClient;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The connection URI when neither `--connect` nor `LIBVIRT_DEFAULT_URI` names one.
pub(crate) const DEFAULT_URI: &str = "qemu:///system";

/// A libvirt domain that runs, as looked up once.
#[derive(Clone, Debug)]
pub(crate) struct Domain {
    /// The connection URI.
    pub(crate) uri: String,
    /// Its name (what the pid file and later `virsh` calls use).
    pub(crate) name: String,
    /// QEMU's process id.
    pub(crate) pid: u32,
}

impl Domain {
    /// `libvirt:DOMAIN` as the user wrote it, for errors.
    fn label(&self) -> String {
        format!("libvirt:{}", self.name)
    }

    fn virsh(&self) -> Command {
        virsh(&self.uri)
    }
}

/// The URI to use: `connect`, else `LIBVIRT_DEFAULT_URI`, else [`DEFAULT_URI`].
pub(crate) fn resolve_uri(connect: Option<&str>) -> String {
    connect
        .map(str::to_string)
        .or_else(|| {
            std::env::var("LIBVIRT_DEFAULT_URI")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_URI.to_string())
}

/// `virsh -q -c URI`, in the C locale: its version lines and messages are read here, and
/// libvirt translates them.
fn virsh(uri: &str) -> Command {
    let mut c = Command::new("virsh");
    c.arg("-q").arg("-c").arg(uri).env("LC_ALL", "C");
    c.stdin(Stdio::null());
    c
}

fn fail(domain: &str, what: impl Into<String>) -> Error {
    Error::Qmp {
        socket: format!("libvirt:{domain}"),
        what: what.into(),
    }
}

/// Runs `cmd` and returns its stdout; a missing `virsh` or a non-zero exit is an error that
/// carries virsh's own message.
fn run(domain: &str, cmd: &mut Command, doing: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| {
        fail(
            domain,
            if e.kind() == std::io::ErrorKind::NotFound {
                "libvirt's `virsh` is not installed: `libvirt:` inputs need it (Debian: apt-get install libvirt-clients)".to_string()
            } else {
                format!("cannot run virsh: {e}")
            },
        )
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        // virsh's own words name neither the daemon nor what it means for the guest.
        let hint = if msg.contains("failed to connect to the hypervisor") {
            " (libvirtd does not answer: is it running?)"
        } else {
            ""
        };
        return Err(fail(domain, format!("{doing}: {msg}{hint}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Looks `domain` (name, UUID or id) up on `uri`: it must be a QEMU domain that runs or is
/// paused, whose QEMU's process id libvirt's pid file gives.
pub(crate) fn lookup(domain: &str, uri: &str) -> Result<Domain> {
    let info = run(
        domain,
        virsh(uri).arg("dominfo").arg(domain),
        &format!("looking the domain up on {uri}"),
    )?;
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let name = field("Name:").ok_or_else(|| fail(domain, "virsh dominfo named no domain"))?;
    let state = field("State:").unwrap_or_default();
    if state != "running" && state != "paused" {
        return Err(fail(
            domain,
            format!("the domain is {state:?}: only a running or paused domain has memory to read"),
        ));
    }
    let pid_file = pid_file(uri, &name).ok_or_else(|| {
        fail(
            domain,
            format!("{uri} is not a QEMU system URI (qemu:///system): guestcore finds QEMU's process through its pid file only there"),
        )
    })?;
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(|e| {
            fail(
                domain,
                format!("cannot read QEMU's pid file {}: {e}", pid_file.display()),
            )
        })?
        .trim()
        .parse::<u32>()
        .map_err(|_| {
            fail(
                domain,
                format!("{} holds no process id", pid_file.display()),
            )
        })?;
    Ok(Domain {
        uri: uri.to_string(),
        name,
        pid,
    })
}

/// libvirt's pid file of `name` on `uri` (`qemu:///system` and its remote-less spellings).
fn pid_file(uri: &str, name: &str) -> Option<PathBuf> {
    let system = uri
        .strip_prefix("qemu")
        .and_then(|r| r.split_once(":///"))
        .is_some_and(|(transport, path)| {
            (transport.is_empty() || transport == "+unix") && path.starts_with("system")
        });
    system.then(|| PathBuf::from(format!("/run/libvirt/qemu/{name}.pid")))
}

/// The first libvirt whose `virsh qemu-monitor-command` passes a descriptor to QEMU
/// (`--pass-fds`, `virDomainQemuMonitorCommandWithFiles`, whose symbol version in
/// libvirt-qemu.so is `LIBVIRT_QEMU_8.2.0`): a background snapshot's pipe needs it, a pause
/// does not.
pub(crate) const FD_PASSING_SINCE: Version = Version(8, 2, 0);

/// A libvirt version, `major.minor.micro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub(crate) u32, pub(crate) u32, pub(crate) u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// `9.0.0` (a missing micro is 0); `None` for anything else.
    fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let micro = parts.next().unwrap_or(Some(0))?;
        parts
            .next()
            .is_none()
            .then_some(Version(major, minor, micro))
    }
}

/// The libvirt versions `virsh version --daemon` reports that take part in passing a
/// descriptor: the library virsh was built against and the one it runs with (its client
/// side), and the daemon's (which hands the descriptor to QEMU). Each is `None` where the
/// output does not name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) compiled: Option<Version>,
    pub(crate) library: Option<Version>,
    pub(crate) daemon: Option<Version>,
}

impl Versions {
    /// Reads `virsh version --daemon`'s lines (`Compiled against library: libvirt 9.0.0`,
    /// `Using library: libvirt 9.0.0`, `Running against daemon: 9.0.0`).
    pub(crate) fn parse(text: &str) -> Versions {
        let mut v = Versions::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let value = value.strip_prefix("libvirt ").unwrap_or(value);
            let slot = match key.trim() {
                "Compiled against library" => &mut v.compiled,
                "Using library" => &mut v.library,
                "Running against daemon" => &mut v.daemon,
                _ => continue,
            };
            *slot = Version::parse(value);
        }
        v
    }

    /// Why these versions cannot pass a descriptor to QEMU, naming the oldest part and
    /// [`FD_PASSING_SINCE`]; `None` when every part named is new enough. A part the output
    /// does not name is not held against it: `virsh` itself then refuses `--pass-fds`, and
    /// that refusal is reported the same way.
    pub(crate) fn fd_passing_refusal(&self) -> Option<String> {
        let parts = [
            ("virsh is built against libvirt", self.compiled),
            ("virsh runs with libvirt", self.library),
            ("the libvirt daemon is", self.daemon),
        ];
        let (who, oldest) = parts
            .iter()
            .filter_map(|(who, v)| v.map(|v| (*who, v)))
            .min_by_key(|(_, v)| *v)?;
        (oldest < FD_PASSING_SINCE).then(|| {
            format!(
                "{who} {oldest}: a background snapshot through libvirt passes QEMU a pipe with `virsh qemu-monitor-command --pass-fds`, which needs libvirt {}.{} or later",
                FD_PASSING_SINCE.0, FD_PASSING_SINCE.1
            )
        })
    }
}

/// Why a background snapshot of `domain` cannot be had through this libvirt (too old to pass
/// QEMU a descriptor), asked before anything in QEMU changes; `None` when it can. A pause
/// needs no descriptor, so the caller falls back to one.
pub(crate) fn fd_passing_refusal(domain: &Domain) -> Result<Option<String>> {
    let text = run(
        &domain.name,
        domain.virsh().arg("version").arg("--daemon"),
        "asking libvirt's version (virsh version --daemon)",
    )?;
    Ok(Versions::parse(&text).fd_passing_refusal())
}

/// A QMP client on `domain` through libvirt's monitor (see the module docs).
pub(crate) fn connect(domain: &Domain, timeout: Duration) -> Result<QmpClient> {
    let (ours, relays) =
        UnixStream::pair().map_err(|e| Error::io("socket pair for the libvirt relay", e))?;
    let d = domain.clone();
    std::thread::Builder::new()
        .name("libvirt-relay".into())
        .spawn(move || relay(&d, relays))
        .map_err(|e| Error::io("starting the libvirt relay thread", e))?;
    let mut client = QmpClient::from_stream(ours, domain.label(), timeout)?;
    client.set_qemu_pid(domain.pid);
    Ok(client)
}

/// Serves QMP on `stream` until the client closes it.
fn relay(domain: &Domain, stream: UnixStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let greeting = json!({"QMP": {"version": {}, "capabilities": [], "relay": "libvirt"}});
    if writeln!(writer, "{greeting}").is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        let fd = match read_line(&mut reader, &mut line) {
            Ok(Some(fd)) => fd,
            Ok(None) | Err(_) => return,
        };
        let reply = match serde_json::from_slice::<Value>(&line) {
            Ok(cmd) => answer(domain, &cmd, fd),
            Err(e) => {
                json!({"error": {"class": "GenericError", "desc": format!("malformed command: {e}")}})
            }
        };
        if writeln!(writer, "{reply}").is_err() {
            return;
        }
    }
}

/// Reads one line into `line`; `Some(fd)` carries a descriptor passed with it (if any), `None`
/// is end of stream.
fn read_line(
    reader: &mut BufReader<UnixStream>,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Option<OwnedFd>>> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::IoSliceMut;
    use std::mem::MaybeUninit;
    let mut fd = None;
    loop {
        // Bytes already buffered hold no descriptor (it comes with the first byte of its line).
        if !reader.buffer().is_empty() {
            let n = reader.read_until(b'\n', line)?;
            if n == 0 || line.ends_with(b"\n") {
                return Ok((!line.is_empty()).then_some(fd));
            }
            continue;
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 4096];
        let got = loop {
            match recvmsg(
                reader.get_ref(),
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) => break r.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for f in fds {
                    fd.get_or_insert(f);
                }
            }
        }
        if got == 0 {
            return Ok((!line.is_empty()).then_some(fd));
        }
        let chunk = &buf[..got];
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) if i + 1 == chunk.len() => {
                line.extend_from_slice(chunk);
                return Ok(Some(fd));
            }
            Some(_) => {
                // The client sends one command and waits for its reply: more than one line at
                // once is not QMP as this client speaks it.
                return Err(std::io::Error::other("more than one command at once"));
            }
            None => line.extend_from_slice(chunk),
        }
    }
}

/// The QMP reply to `cmd`, through `virsh`.
fn answer(domain: &Domain, cmd: &Value, fd: Option<OwnedFd>) -> Value {
    let id = cmd.get("id").cloned().unwrap_or(Value::Null);
    let execute = cmd.get("execute").and_then(Value::as_str).unwrap_or("");
    let error = |desc: String| json!({"id": id, "error": {"class": "GenericError", "desc": desc}});
    let lifecycle = |verb: &str| match run(
        &domain.name,
        domain.virsh().arg(verb).arg(&domain.name),
        &format!("virsh {verb}"),
    ) {
        Ok(_) => json!({"id": id, "return": {}}),
        Err(e) => error(e.to_string()),
    };
    match execute {
        "qmp_capabilities" => json!({"id": id, "return": {}}),
        "stop" => lifecycle("suspend"),
        "cont" => lifecycle("resume"),
        _ => {
            let mut forwarded = json!({"execute": execute});
            if let Some(a) = cmd.get("arguments") {
                forwarded["arguments"] = a.clone();
            }
            let mut c = domain.virsh();
            c.arg("qemu-monitor-command").arg(&domain.name);
            if let Some(fd) = fd {
                c.arg("--pass-fds").arg("3");
                let raw = fd.as_raw_fd();
                // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl);
                // `fd` outlives the spawn (it is dropped after `output` returns).
                unsafe {
                    c.pre_exec(move || {
                        let target = 3;
                        if raw != target && libc::dup2(raw, target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let out = output_of(domain, c.arg(forwarded.to_string()));
                drop(fd);
                return reply_of(out, id);
            }
            reply_of(output_of(domain, c.arg(forwarded.to_string())), id)
        }
    }
}

fn output_of(domain: &Domain, c: &mut Command) -> Result<String> {
    run(&domain.name, c, "virsh qemu-monitor-command")
}

/// QEMU's reply as virsh printed it, with the client's `id`.
fn reply_of(out: Result<String>, id: Value) -> Value {
    let error = |desc: String| json!({"id": id, "error": {"class": "GenericError", "desc": desc}});
    match out {
        Ok(text) => match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Object(mut m)) => {
                m.insert("id".into(), id);
                Value::Object(m)
            }
            _ => error(format!("virsh printed no QMP reply: {}", text.trim())),
        },
        Err(e) => error(e.to_string()),
    }
}

/// Puts the domain back through libvirt when this process dies without disarming it: resumes
/// a guest it paused, or ends a background snapshot it started (see the module docs).
#[derive(Debug)]
pub(crate) struct ResumeWatchdog {
    child: Child,
}

/// The watcher: waits for the disarm line; on end-of-file without it, runs each step (`resume`,
/// or a QMP command through `qemu-monitor-command`), retrying a QMP step for about 5 s while
/// libvirt does not answer (a libvirtd restarting) or, for the capability, while QEMU refuses
/// it (a capability cannot change while a cancelled migration is still ending). Any other
/// answer from QEMU ends the step: `closefd` of a descriptor `migrate` already consumed says
/// "not found", and retrying it would only keep the watcher alive past its use.
const WATCHER: &str = r#"read -r line; [ "$line" = disarm ] && exit 0
uri=$1; dom=$2; shift 2
for step in "$@"; do
  if [ "$step" = resume ]; then virsh -q -c "$uri" resume "$dom"; continue; fi
  n=0
  while [ $n -lt 25 ]; do
    case "$(virsh -q -c "$uri" qemu-monitor-command "$dom" "$step" 2>&1)" in
      *'"return"'*) break ;;
      *'"error"'*) case "$step" in *migrate-set-capabilities*) ;; *) break ;; esac ;;
    esac
    n=$((n+1)); sleep 0.2
  done
done >/dev/null 2>&1"#;

impl ResumeWatchdog {
    /// Starts the watcher for a pause; the guest must not be stopped when this fails.
    pub(super) fn arm(domain: &Domain) -> Result<ResumeWatchdog> {
        Self::arm_steps(domain, &["resume".to_string()])
    }

    /// Starts the watcher for a background snapshot: cancels the migration, turns the
    /// capability off and closes the stream's descriptor in QEMU.
    pub(super) fn arm_snapshot(domain: &Domain) -> Result<ResumeWatchdog> {
        use super::snapshot::{CAPABILITY, FD_NAME};
        let steps = [
            json!({"execute": "migrate_cancel"}),
            json!({"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": CAPABILITY, "state": false}]}}),
            json!({"execute": "closefd", "arguments": {"fdname": FD_NAME}}),
        ];
        Self::arm_steps(domain, &steps.map(|s| s.to_string()))
    }

    fn arm_steps(domain: &Domain, steps: &[String]) -> Result<ResumeWatchdog> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHER)
            .arg("guestcore-libvirt-watchdog")
            .arg(&domain.uri)
            .arg(&domain.name)
            .args(steps)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                fail(
                    &domain.name,
                    format!("cannot start the watchdog (sh): {e}; not changing the guest"),
                )
            })?;
        Ok(ResumeWatchdog { child })
    }

    /// Everything is back: the watcher ends without doing anything.
    pub(crate) fn disarm(mut self) {
        if let Some(mut w) = self.child.stdin.take() {
            let _ = w.write_all(b"disarm\n");
        }
        let _ = self.child.wait();
    }

    /// Puts the domain back now, through the watcher. (Dropped armed, it fires too: its pipe
    /// closes.) Does not wait for virsh: a wedged libvirtd must not hang the caller.
    pub(crate) fn fire(mut self) {
        drop(self.child.stdin.take());
        let mut child = self.child;
        let _ = std::thread::Builder::new()
            .name("libvirt-watchdog-reaper".into())
            .spawn(move || child.wait());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_system_uris_have_a_pid_file_here() {
        assert_eq!(
            pid_file("qemu:///system", "vm1"),
            Some(PathBuf::from("/run/libvirt/qemu/vm1.pid"))
        );
        assert!(pid_file("qemu+unix:///system", "vm1").is_some());
        assert_eq!(pid_file("qemu:///session", "vm1"), None);
        assert_eq!(pid_file("xen:///system", "vm1"), None);
        assert_eq!(pid_file("qemu+ssh://host/system", "vm1"), None);
    }

    #[test]
    fn versions_come_from_virsh_version_daemon() {
        let v = Versions::parse(
            "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n\
             Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 10.0.2\n\
             Running against daemon: 9.0.0\n",
        );
        assert_eq!(
            v,
            Versions {
                compiled: Some(Version(9, 0, 0)),
                library: Some(Version(9, 0, 0)),
                daemon: Some(Version(9, 0, 0)),
            }
        );
        assert_eq!(v.fd_passing_refusal(), None);
        // Exactly 8.2 passes descriptors; the oldest part decides, and is named.
        let v = Versions::parse(
            "Compiled against library: libvirt 8.2.0\nUsing library: libvirt 8.2.0\n\
             Running against daemon: 8.1.0\n",
        );
        assert_eq!(v.daemon, Some(Version(8, 1, 0)));
        let why = v.fd_passing_refusal().unwrap();
        assert!(why.contains("the libvirt daemon is 8.1.0"), "{why}");
        assert!(why.contains("libvirt 8.2 or later"), "{why}");
        let v = Versions::parse("Using library: libvirt 7.0.0\nRunning against daemon: 9.0.0\n");
        let why = v.fd_passing_refusal().unwrap();
        assert!(why.contains("virsh runs with libvirt 7.0.0"), "{why}");
        // Nothing named (another output, or `virsh` without a daemon): not held against it.
        assert_eq!(Versions::parse("").fd_passing_refusal(), None);
        assert_eq!(
            Versions::parse("Running against daemon: nine\n"),
            Versions::default()
        );
        assert_eq!(Version::parse("10.1"), Some(Version(10, 1, 0)));
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version(8, 10, 0) > FD_PASSING_SINCE);
    }

    #[test]
    fn the_uri_comes_from_the_flag_first() {
        assert_eq!(resolve_uri(Some("qemu:///x")), "qemu:///x");
    }

    /// libvirt's `test:///default` driver runs inside virsh (no daemon): a domain `test` that
    /// runs, under a driver that is not QEMU's.
    #[test]
    fn a_non_qemu_driver_and_a_missing_domain_are_clear_errors() {
        if guestcore_testkit::tools::require("virsh").is_none() {
            return;
        }
        let e = lookup("test", "test:///default").unwrap_err().to_string();
        assert!(e.contains("not a QEMU system URI"), "{e}");
        assert!(e.contains("libvirt:test"), "{e}");
        let e = lookup("guestcore-no-such", "test:///default")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("looking the domain up on test:///default"),
            "{e}"
        );
        assert!(e.contains("guestcore-no-such"), "{e}");
    }

    #[test]
    fn a_reply_keeps_qemus_answer_with_the_clients_id() {
        let r = reply_of(
            Ok("{\"return\":{\"a\":1},\"id\":\"libvirt-9\"}\n".into()),
            json!(7),
        );
        assert_eq!(r, json!({"return": {"a": 1}, "id": 7}));
        let r = reply_of(Ok("garbage".into()), json!(8));
        assert_eq!(r["id"], json!(8));
        assert!(
            r["error"]["desc"].as_str().unwrap().contains("garbage"),
            "{r}"
        );
    }
}
