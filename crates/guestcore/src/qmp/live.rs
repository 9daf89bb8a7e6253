//! A live session on a running QEMU: the consistency contract of `qmp:SOCKET` inputs.
//!
//! `--pause` (the default): `stop` before the registers are read, so registers and RAM describe
//! one instant; the guest is resumed with `cont` by [`LiveSession::resume`] or, on every other
//! path out (error, cancel, panic unwinding), by `Drop`. A guest that was already paused when
//! we connected is never resumed. And because neither runs when the process is SIGKILLed or
//! crashes, `pause` arms a [`Watchdog`] process before it sends `stop`, and `resume` disarms
//! it: see [`super::watchdog`]. `--no-pause`: nothing is stopped; registers and RAM are read
//! while the guest runs, which is fast but possibly inconsistent — such images carry
//! [`UNPAUSED_NOTE_NAME`] so the output says so.
//!
//! The RAM layout comes from `info mtree -f`: the flat view of address space `memory` lists
//! every guest-physical range with the RAM block behind it and the offset inside the block
//! (`0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000`). The blocks
//! that are guest RAM are the memory backends `query-memdev` lists (`-m` alone creates one named
//! `pc.ram`; `-machine memory-backend=ID` names it ID). On `pc`, RAM below 4 GiB stops at the
//! PCI hole and the rest appears at 4 GiB with an offset — exactly what the flat view shows,
//! so nothing about the split is hard-coded here.

use super::client::{QmpClient, DEFAULT_TIMEOUT};
use super::watchdog::Watchdog;
use crate::addr::PhysRange;
use crate::cpu::hmp::parse_info_registers;
use crate::cpu::X86CpuState;
use crate::format::ElfNote;
use crate::phys::live::{LiveMemory, LiveSource};
use crate::phys::PhysMemory;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the note that marks an image read from a running guest (`--no-pause`).
pub const UNPAUSED_NOTE_NAME: &[u8] = b"GUESTCORE";
/// Type of that note.
pub const UNPAUSED_NOTE_TYPE: u32 = 1;
/// Its text.
pub const UNPAUSED_NOTE_TEXT: &str = "live-no-pause: registers and memory were read while the guest ran; pages may be inconsistent with each other and with the registers\n";

/// The note that marks an image read without pausing the guest.
pub fn unpaused_note() -> ElfNote {
    ElfNote::new(
        UNPAUSED_NOTE_NAME,
        UNPAUSED_NOTE_TYPE,
        UNPAUSED_NOTE_TEXT.as_bytes().to_vec(),
    )
}

/// How to attach to a live guest.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Stop the guest while its state is read (see the module docs).
    pub pause: bool,
    /// Time allowed for each QMP reply.
    pub timeout: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            pause: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One piece of guest RAM as `info mtree -f` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamPiece {
    pub phys: PhysRange,
    /// The RAM block (memory backend id, e.g. `pc.ram`).
    pub block: String,
    /// Offset of `phys.start` inside the block.
    pub offset: u64,
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
    watchdog: Option<Watchdog>,
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
        let mut s = LiveSession {
            client,
            socket,
            was_running: false,
            paused_at: None,
            watchdog: None,
        };
        s.was_running = s.is_running()?;
        Ok(s)
    }

    /// Stops the guest if it was running when the session connected and is not stopped by
    /// this session already. A [`Watchdog`] is armed first: when it cannot be started, the
    /// guest is not stopped and this fails.
    pub fn pause(&mut self) -> Result<()> {
        if self.was_running && self.paused_at.is_none() {
            self.watchdog = Some(Watchdog::arm(&self.socket)?);
            let t = Instant::now();
            // Set before sending: if the reply is lost, Drop still sends `cont`.
            self.paused_at = Some(t);
            self.client.execute("stop", None)?;
        }
        Ok(())
    }

    /// The QMP socket.
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
    /// When `cont` fails because the connection is lost (closed, timed out), this session's
    /// connection is shut down (so QEMU can serve another client) and the watchdog is fired: it
    /// sends `cont` over a fresh connection. When QEMU answers `cont` with an error, the
    /// watchdog is disarmed (it would get the same answer).
    pub fn resume(&mut self) -> Result<Option<Duration>> {
        let Some(t) = self.paused_at.take() else {
            return Ok(None);
        };
        match self.client.execute("cont", None) {
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
                Err(e)
            }
        }
    }

    /// The QMP client, for commands this type does not wrap.
    pub fn client(&mut self) -> &mut QmpClient {
        &mut self.client
    }

    /// Every vCPU's registers, from HMP `info registers -a`.
    pub fn registers(&mut self) -> Result<Vec<X86CpuState>> {
        let text = self.client.hmp("info registers -a")?;
        let cpus = parse_info_registers(&text)?;
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

/// Parses `Host virtual address for 0x100000 (pc.ram) is 0x7f1c000ff000`.
pub fn parse_gpa2hva(text: &str) -> Result<u64> {
    let t = text.trim();
    t.rsplit_once(" is ")
        .and_then(|(_, v)| v.trim().strip_prefix("0x"))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| Error::parse("gpa2hva output", t.to_string()))
}

/// One line of a flat view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatRange {
    pub phys: PhysRange,
    /// `ram`, `rom`, `i/o`, `romd` …
    pub kind: String,
    /// The memory region's name (a RAM block for RAM).
    pub block: String,
    /// Offset inside the region (the `@…` suffix; 0 without one).
    pub offset: u64,
}

/// The flat view of address space `memory` in `info mtree -f` output.
pub fn parse_memory_flat_view(text: &str) -> Result<Vec<FlatRange>> {
    let mut in_memory = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("FlatView #") {
            if found {
                break;
            }
            in_memory = false;
            continue;
        }
        if t == "AS \"memory\", root: system" || t.starts_with("AS \"memory\",") {
            in_memory = true;
            found = true;
            continue;
        }
        if !in_memory {
            continue;
        }
        if let Some(r) = parse_flat_line(t) {
            out.push(r);
        }
    }
    if !found {
        return Err(Error::parse(
            "info mtree -f",
            "no flat view for address space \"memory\"",
        ));
    }
    Ok(out)
}

/// `0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000`.
fn parse_flat_line(t: &str) -> Option<FlatRange> {
    let (range, rest) = t.split_once(' ')?;
    let (s, e) = range.split_once('-')?;
    let start = u64::from_str_radix(s, 16).ok()?;
    let last = u64::from_str_radix(e, 16).ok()?;
    let rest = rest.strip_prefix("(prio ")?;
    let (attrs, name) = rest.split_once("): ")?;
    let kind = attrs.split_once(", ")?.1.to_string();
    let (block, offset) = match name.rsplit_once(" @") {
        Some((n, off)) if off.len() == 16 => (n, u64::from_str_radix(off, 16).ok()?),
        _ => (name, 0),
    };
    let end = last.checked_add(1)?;
    (end > start).then(|| FlatRange {
        phys: PhysRange { start, end },
        kind,
        block: block.trim().to_string(),
        offset,
    })
}

/// The RAM/ROM ranges of `blocks`, with neighbours that continue each other (same block,
/// adjacent physically and in the block) joined.
pub fn ram_pieces(flat: &[FlatRange], blocks: &[String]) -> Vec<RamPiece> {
    let mut v: Vec<&FlatRange> = flat
        .iter()
        .filter(|f| (f.kind == "ram" || f.kind == "rom") && blocks.contains(&f.block))
        .collect();
    v.sort_by_key(|f| f.phys.start);
    let mut out: Vec<RamPiece> = Vec::new();
    for f in v {
        if let Some(last) = out.last_mut() {
            if last.block == f.block
                && last.phys.end == f.phys.start
                && last.offset + last.phys.len() == f.offset
            {
                last.phys.end = f.phys.end;
                continue;
            }
        }
        out.push(RamPiece {
            phys: f.phys,
            block: f.block.clone(),
            offset: f.offset,
        });
    }
    out
}

/// Finds the guest's VMCOREINFO note by looking at the start of every page: Linux writes it
/// at the start of the page-aligned `vmcoreinfo_note` buffer at boot (namesz 11, type 0,
/// `VMCOREINFO\0`, text starting `OSRELEASE=`). Returns the note's text.
pub fn find_vmcoreinfo(mem: &dyn PhysMemory) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut head = [0u8; 34];
    for r in mem.ram().ranges() {
        let mut a = r.start.next_multiple_of(PAGE);
        while a + PAGE <= r.end {
            let hit = match mem.slice(a, head.len() as u64) {
                Some(s) => looks_like_vmcoreinfo(s),
                None => mem.read_at(a, &mut head).is_ok() && looks_like_vmcoreinfo(&head),
            };
            if hit {
                let len = u32::from_le_bytes(head_or(mem, a, 4)?) as u64;
                if len > 0 && len <= 1 << 20 && mem.is_ram(a + 24, len) {
                    let mut text = vec![0u8; len as usize];
                    mem.read_at(a + 24, &mut text).ok()?;
                    while text.last() == Some(&0) {
                        text.pop();
                    }
                    return Some(text);
                }
            }
            a += PAGE;
        }
    }
    None
}

fn head_or(mem: &dyn PhysMemory, at: u64, field: u64) -> Option<[u8; 4]> {
    let mut b = [0u8; 4];
    mem.read_at(at + field, &mut b).ok()?;
    Some(b)
}

fn looks_like_vmcoreinfo(h: &[u8]) -> bool {
    h.len() >= 34
        && h[0..4] == 11u32.to_le_bytes()
        && h[8..12] == [0; 4]
        && &h[12..23] == b"VMCOREINFO\0"
        && &h[24..34] == b"OSRELEASE="
}

#[cfg(test)]
mod tests;
