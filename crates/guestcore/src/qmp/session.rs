//! A live session on a running QEMU: the consistency contract of `qmp:SOCKET` inputs.
//!
//! `--pause` (the default): `stop` before the registers are read, so registers and RAM describe
//! one instant; the guest is resumed with `cont` by [`LiveSession::resume`] or, on every other
//! path out (error, cancel, panic unwinding), by `Drop`. A guest that was already paused when
//! we connected is never resumed. And because neither runs when the process is SIGKILLed or
//! crashes, `pause` arms a [`Watchdog`] process before it sends `stop`, and `resume` disarms
//! it: see [`super::watchdog`]. `--no-pause`: nothing is stopped; registers and RAM are read
//! while the guest runs, which is fast but possibly inconsistent — such images carry
//! [`super::unpaused`]'s note so the output says so.
//!
//! Every wait on QEMU is bounded by the client's timeout ([`DEFAULT_TIMEOUT`], 10 s, per
//! reply): a QEMU that stops answering mid-pause (SIGSTOP, wedged) ends the command with an
//! error naming it after one such wait, and the watchdog resumes the guest once QEMU answers
//! again. A guest under a running migration is never paused: QEMU's `stop` would wait on the
//! migration (on a background snapshot's stalled reader, for as long as it stalls).
//!
//! Where guest RAM is comes from [`super::mtree`]; how its host side is found (a shared
//! backend file, or `gpa2hva` and the QEMU process) is [`LiveSession::open_memory`].

use super::client::{QmpClient, DEFAULT_TIMEOUT};
use super::gpa2hva::parse_gpa2hva;
use super::libvirt::{lookup, resolve_uri, Domain, ResumeWatchdog};
use super::mtree::{parse_memory_flat_view, ram_pieces};
use super::snapshot::migration_running;
use super::watchdog::{Restore, Watchdog, FIRE_WINDOW};
use crate::cpu::hmp::parse_info_registers_of;
use crate::cpu::{Arch, CpuState};
use crate::phys::live::{LiveMemory, LiveSource};
use crate::phys::RamPiece;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to attach to a live guest.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Stop the guest while its state is read (see the module docs).
    pub pause: bool,
    /// Time allowed for each QMP reply.
    pub timeout: Duration,
    /// The libvirt connection URI for `libvirt:` inputs (`None`: `LIBVIRT_DEFAULT_URI`, else
    /// `qemu:///system`).
    pub connect: Option<String>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            pause: true,
            timeout: DEFAULT_TIMEOUT,
            connect: None,
        }
    }
}

/// A QMP session on a running QEMU that resumes the guest on every path out.
#[derive(Debug)]
pub struct LiveSession {
    client: QmpClient,
    socket: PathBuf,
    was_running: bool,
    /// Set while this session holds the guest stopped.
    paused_at: Option<Instant>,
    /// Armed while `paused_at` is set: resumes the guest if this process dies.
    watchdog: Option<Guard>,
    /// The libvirt domain, when QEMU is reached through libvirt's monitor.
    libvirt: Option<Domain>,
    /// The guest's architecture, once asked ([`LiveSession::arch`]).
    arch: Option<Arch>,
}

/// The watchdog of a pause: QMP's own, or libvirt's `virsh resume`.
#[derive(Debug)]
enum Guard {
    Qmp(Watchdog),
    Libvirt(ResumeWatchdog),
}

impl Guard {
    fn disarm(self) {
        match self {
            Guard::Qmp(w) => w.disarm(),
            Guard::Libvirt(w) => w.disarm(),
        }
    }

    fn fire(self) {
        match self {
            Guard::Qmp(w) => w.fire(),
            Guard::Libvirt(w) => w.fire(),
        }
    }
}

impl LiveSession {
    /// Connects to `socket` and, with `opts.pause`, stops the guest if it runs.
    pub fn connect(socket: impl AsRef<Path>, opts: &LiveOptions) -> Result<Self> {
        let mut s = Self::connect_running(socket, opts)?;
        if opts.pause {
            s.pause()?;
        }
        Ok(s)
    }

    /// Connects to `socket` without stopping anything (call [`pause`](Self::pause) later:
    /// work that does not need a stopped guest, like reading the RAM layout, can go first).
    pub fn connect_running(socket: impl AsRef<Path>, opts: &LiveOptions) -> Result<Self> {
        let socket = socket.as_ref().to_path_buf();
        let client = QmpClient::connect(&socket, opts.timeout)?;
        Self::start(client, socket, None)
    }

    /// Connects to the libvirt domain `domain` (a name, UUID or id) on `opts.connect`'s URI
    /// through libvirt's own monitor, and with `opts.pause` stops the guest if it runs (through
    /// libvirt: `virsh suspend`). See [`super::libvirt`].
    pub fn connect_libvirt(domain: &str, opts: &LiveOptions) -> Result<Self> {
        let mut s = Self::connect_libvirt_running(domain, opts)?;
        if opts.pause {
            s.pause()?;
        }
        Ok(s)
    }

    /// [`connect_libvirt`](Self::connect_libvirt) without stopping anything.
    pub fn connect_libvirt_running(domain: &str, opts: &LiveOptions) -> Result<Self> {
        let uri = resolve_uri(opts.connect.as_deref());
        let domain = lookup(domain, &uri)?;
        let client = super::libvirt::connect(&domain, opts.timeout)?;
        let name = PathBuf::from(format!("libvirt:{}", domain.name));
        Self::start(client, name, Some(domain))
    }

    fn start(client: QmpClient, socket: PathBuf, libvirt: Option<Domain>) -> Result<Self> {
        let mut s = LiveSession {
            client,
            socket,
            was_running: false,
            paused_at: None,
            watchdog: None,
            libvirt,
            arch: None,
        };
        s.was_running = s.is_running()?;
        Ok(s)
    }

    /// True when QEMU is reached through libvirt's monitor.
    pub fn is_libvirt(&self) -> bool {
        self.libvirt.is_some()
    }

    /// Why a background snapshot cannot be had on this session before QEMU is asked for one:
    /// a libvirt too old to pass QEMU the stream's descriptor (see
    /// [`super::libvirt::FD_PASSING_SINCE`]). `None` for a QMP socket.
    pub(crate) fn snapshot_refusal(&self) -> Result<Option<String>> {
        match &self.libvirt {
            Some(d) => super::libvirt::fd_passing_refusal(d),
            None => Ok(None),
        }
    }

    /// For a libvirt domain, a watchdog that ends a background snapshot through libvirt if
    /// this process dies (the QMP watchdog has no socket to reach it by); disarm it once the
    /// snapshot is over and put back. `None` for a QMP socket.
    pub(crate) fn libvirt_snapshot_guard(&self) -> Result<Option<ResumeWatchdog>> {
        self.libvirt
            .as_ref()
            .map(ResumeWatchdog::arm_snapshot)
            .transpose()
    }

    /// Stops the guest if it was running when the session connected and is not stopped by
    /// this session already. A `Watchdog` is armed first: when it cannot be started, the
    /// guest is not stopped and this fails. A running migration (another guestcore's
    /// background snapshot, say) is an error, at once: `stop` would wait on it.
    pub fn pause(&mut self) -> Result<()> {
        if self.was_running && self.paused_at.is_none() {
            if let Some(status) = migration_running(&mut self.client)? {
                return Err(Error::Qmp {
                    socket: self.socket.display().to_string(),
                    what: format!(
                        "QEMU is migrating (status {status}; a background snapshot of another guestcore?): not pausing the guest, since `stop` would wait on the migration; try again when it has ended, or read without pausing"
                    ),
                });
            }
            self.watchdog = Some(match &self.libvirt {
                Some(d) => Guard::Libvirt(ResumeWatchdog::arm(d)?),
                None => Guard::Qmp(Watchdog::arm(&self.socket, &[Restore::Cont])?),
            });
            let t = Instant::now();
            // Set before sending: if the reply is lost, Drop still sends `cont`.
            self.paused_at = Some(t);
            self.client.execute("stop", None)?;
        }
        Ok(())
    }

    /// The QMP socket (`libvirt:NAME` for a libvirt domain).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// True when the guest was running when the session connected.
    pub fn was_running(&self) -> bool {
        self.was_running
    }

    /// True while this session holds the guest stopped.
    pub fn holds_pause(&self) -> bool {
        self.paused_at.is_some()
    }

    /// True when what is read now is one consistent state: the guest is stopped (by us or
    /// before we came).
    pub fn consistent(&self) -> bool {
        self.holds_pause() || !self.was_running
    }

    /// `query-status`'s `running`.
    pub fn is_running(&mut self) -> Result<bool> {
        let st = self.client.execute("query-status", None)?;
        Ok(st.get("running").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Resumes the guest if this session stopped it; returns how long it was stopped (from
    /// sending `stop` to the reply to `cont`). Later calls (and `Drop`) do nothing.
    ///
    /// When `cont` fails because the connection is lost (closed, timed out), or was lost
    /// before (then `cont` is not even sent: a second wait would only double the bound), this
    /// session's connection is shut down (so QEMU can serve another client) and the watchdog
    /// is fired: it sends `cont` over a fresh connection, for [`FIRE_WINDOW`]. When QEMU
    /// answers `cont` with an error, the watchdog is disarmed (it would get the same answer).
    pub fn resume(&mut self) -> Result<Option<Duration>> {
        let Some(t) = self.paused_at.take() else {
            return Ok(None);
        };
        let sent = if self.client.lost() {
            Err(Error::Qmp {
                socket: self.socket.display().to_string(),
                what: format!(
                    "QEMU stopped answering while the guest was paused (no reply within {} s)",
                    self.client.timeout().as_secs_f64()
                ),
            })
        } else {
            self.client.execute("cont", None)
        };
        match sent {
            Ok(_) => {
                if let Some(w) = self.watchdog.take() {
                    w.disarm();
                }
                Ok(Some(t.elapsed()))
            }
            Err(e @ Error::QmpCommand { .. }) => {
                if let Some(w) = self.watchdog.take() {
                    w.disarm();
                }
                Err(e)
            }
            Err(e) => {
                self.client.shutdown();
                if let Some(w) = self.watchdog.take() {
                    w.fire();
                }
                Err(match e {
                    Error::Qmp { socket, what } => Error::Qmp {
                        socket,
                        what: format!(
                            "{what}; the guest is resumed by guestcore's watchdog as soon as QEMU answers again (it tries for {} s)",
                            FIRE_WINDOW.as_secs()
                        ),
                    },
                    e => e,
                })
            }
        }
    }

    /// The QMP client, for commands this type does not wrap.
    pub fn client(&mut self) -> &mut QmpClient {
        &mut self.client
    }

    /// The guest's architecture, from `query-target` (QEMU's binary: `x86_64`/`i386` or
    /// `aarch64`); asked once per session. Any other target is an error naming it.
    pub fn arch(&mut self) -> Result<Arch> {
        if let Some(a) = self.arch {
            return Ok(a);
        }
        let t = self.client.execute("query-target", None)?;
        let name = t.get("arch").and_then(Value::as_str).unwrap_or_default();
        let a = match name {
            "x86_64" | "i386" => Arch::X86,
            "aarch64" => Arch::Aarch64,
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: QEMU target {other:?}: guestcore reads x86 and aarch64 guests",
                    self.socket.display()
                )))
            }
        };
        self.arch = Some(a);
        Ok(a)
    }

    /// Every vCPU's registers, from HMP `info registers -a`, parsed for the guest's
    /// architecture ([`arch`](Self::arch)). An AArch64 vCPU has no system registers there.
    pub fn registers(&mut self) -> Result<Vec<CpuState>> {
        let arch = self.arch()?;
        let text = self.client.hmp("info registers -a").map_err(|e| match e {
            Error::Qmp { socket, what } if self.paused_at.is_some() && self.client.lost() => {
                Error::Qmp {
                    socket,
                    what: format!(
                        "{what}; the guest stays paused until QEMU answers again, then guestcore's watchdog resumes it (it tries for {} s)",
                        FIRE_WINDOW.as_secs()
                    ),
                }
            }
            e => e,
        })?;
        let cpus = parse_info_registers_of(arch, &text)?;
        if cpus.is_empty() {
            return Err(Error::CpuState(format!(
                "{}: `info registers -a` listed no vCPU",
                self.socket.display()
            )));
        }
        Ok(cpus)
    }

    /// The ids of the guest's memory backends (`query-memdev`).
    fn memdevs(&mut self) -> Result<Vec<Value>> {
        match self.client.execute("query-memdev", None)? {
            Value::Array(v) => Ok(v),
            other => Err(Error::parse("query-memdev reply", other.to_string())),
        }
    }

    /// Guest RAM: the pieces of the memory backends in the `memory` address space.
    pub fn ram_layout(&mut self) -> Result<Vec<RamPiece>> {
        let text = self.client.hmp("info mtree -f")?;
        let flat = parse_memory_flat_view(&text)?;
        let mut ids: Vec<String> = self
            .memdevs()?
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        if !flat.iter().any(|f| ids.contains(&f.block)) {
            ids = vec!["pc.ram".into(), "ram".into()];
        }
        let pieces = ram_pieces(&flat, &ids);
        if pieces.is_empty() {
            return Err(Error::parse(
                "info mtree -f",
                format!("no RAM of the memory backends {ids:?} in address space \"memory\""),
            ));
        }
        Ok(pieces)
    }

    /// Opens guest RAM for reading: each block through its shared backend file when it is a
    /// `memory-backend-file` with `share=on` and a readable regular file, else through the QEMU
    /// process's memory at the addresses `gpa2hva` reports.
    pub fn open_memory(&mut self, pieces: &[RamPiece]) -> Result<LiveMemory> {
        let memdevs = self.memdevs()?;
        let mut blocks: Vec<String> = pieces.iter().map(|p| p.block.clone()).collect();
        blocks.sort();
        blocks.dedup();
        let mut ranges = Vec::new();
        let mut need_pid = false;
        for block in blocks {
            let mine: Vec<&RamPiece> = pieces.iter().filter(|p| p.block == block).collect();
            let src_of = match self.shared_file(&block, &memdevs)? {
                Some(path) => {
                    for p in &mine {
                        ranges.push((
                            p.phys,
                            LiveSource::File {
                                path: path.clone(),
                                offset: p.offset,
                            },
                        ));
                    }
                    continue;
                }
                None => self.block_hva(mine[0])?,
            };
            need_pid = true;
            for p in &mine {
                ranges.push((
                    p.phys,
                    LiveSource::Process {
                        hva: src_of + p.offset,
                    },
                ));
            }
        }
        let pid = if need_pid {
            Some(self.client.peer_pid()?)
        } else {
            None
        };
        LiveMemory::open(ranges, pid)
    }

    /// The backing file of `block` when guest writes reach it (`share=on`) and we can open it.
    fn shared_file(&mut self, block: &str, memdevs: &[Value]) -> Result<Option<PathBuf>> {
        let Some(m) = memdevs
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(block))
        else {
            return Ok(None);
        };
        if m.get("share").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let path = format!("/objects/{block}");
        let ty = self
            .client
            .execute("qom-get", Some(json!({"path": path, "property": "type"})));
        if ty.ok().as_ref().and_then(Value::as_str) != Some("memory-backend-file") {
            return Ok(None);
        }
        let mem_path = self.client.execute(
            "qom-get",
            Some(json!({"path": path, "property": "mem-path"})),
        )?;
        let Some(p) = mem_path.as_str() else {
            return Ok(None);
        };
        // A directory means QEMU made (and unlinked) a file inside it: not reachable by path.
        let p = PathBuf::from(p);
        Ok(p.is_file().then_some(p))
    }

    /// Host virtual address of offset 0 of `piece`'s block, from `gpa2hva`.
    fn block_hva(&mut self, piece: &RamPiece) -> Result<u64> {
        let text = self
            .client
            .hmp(&format!("gpa2hva {:#x}", piece.phys.start))?;
        let hva = parse_gpa2hva(&text)?;
        hva.checked_sub(piece.offset)
            .ok_or_else(|| Error::parse("gpa2hva output", text.trim().to_string()))
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // Error or not, the guest we stopped must run again.
        let _ = self.resume();
    }
}

#[cfg(test)]
mod tests;
