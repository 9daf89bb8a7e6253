//! Layout parsing on real `info mtree -f` text, and the pause/resume contract against a fake
//! QMP server.

use super::*;
use crate::phys::VecMemory;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

/// QEMU 10, `-machine pc -m 4G`, before the BIOS ran (trimmed: i/o lines kept for realism).
const MTREE_4G: &str = "FlatView #0
 AS \"I/O\", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
  0000000000000070-0000000000000070 (prio 0, i/o): rtc-index

FlatView #1
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): pc.ram
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-00000000bfffffff (prio 0, ram): pc.ram @0000000000100000
  00000000febf0400-00000000febf041f (prio 0, i/o): vga ioports remapped
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000013fffffff (prio 0, ram): pc.ram @00000000c0000000

FlatView #3
 AS \"cpu-smm-0\", root: memory
 Root memory region: memory
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
";

/// QEMU 10, a running guest with `-machine memory-backend=mem` (256 MiB): the BIOS routed
/// 0xc0000-0xfffff to RAM (PAM), partly read-only.
const MTREE_SHARED: &str = "FlatView #1
 AS \"memory\", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): mem
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000000c9fff (prio 0, rom): mem @00000000000c0000
  00000000000ca000-00000000000ccfff (prio 0, ram): mem @00000000000ca000
  00000000000cd000-00000000000e3fff (prio 0, rom): mem @00000000000cd000
  00000000000e4000-00000000000effff (prio 0, ram): mem @00000000000e4000
  00000000000f0000-00000000000fffff (prio 0, rom): mem @00000000000f0000
  0000000000100000-000000000fffffff (prio 0, ram): mem @0000000000100000
  00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
";

fn piece(start: u64, end: u64, block: &str, offset: u64) -> RamPiece {
    RamPiece {
        phys: PhysRange { start, end },
        block: block.into(),
        offset,
    }
}

#[test]
fn pc_4g_split_around_the_pci_hole() {
    let flat = parse_memory_flat_view(MTREE_4G).unwrap();
    assert_eq!(flat.len(), 8, "only the memory address space: {flat:#?}");
    assert_eq!(flat[5].block, "vga ioports remapped");
    let pieces = ram_pieces(&flat, &["pc.ram".into()]);
    assert_eq!(
        pieces,
        vec![
            piece(0, 0xa0000, "pc.ram", 0),
            piece(0x100000, 0xc000_0000, "pc.ram", 0x100000),
            piece(0x1_0000_0000, 0x1_4000_0000, "pc.ram", 0xc000_0000),
        ]
    );
}

#[test]
fn pam_pieces_of_one_backend_join() {
    let flat = parse_memory_flat_view(MTREE_SHARED).unwrap();
    let pieces = ram_pieces(&flat, &["mem".into()]);
    assert_eq!(
        pieces,
        vec![
            piece(0, 0xa0000, "mem", 0),
            piece(0xc0000, 0x1000_0000, "mem", 0xc0000),
        ]
    );
    assert!(parse_memory_flat_view("FlatView #0\n AS \"I/O\", root: io\n").is_err());
}

#[test]
fn gpa2hva_text() {
    assert_eq!(
        parse_gpa2hva("Host virtual address for 0x100000 (mem) is 0x7f1c000ff000\r\n").unwrap(),
        0x7f1c_000f_f000
    );
    assert!(parse_gpa2hva("No memory is mapped at address 0x0").is_err());
}

#[test]
fn vmcoreinfo_found_at_a_page_start() {
    let text = b"OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\n";
    let mut ram = vec![0u8; 0x10000];
    // A decoy not at a page start.
    ram[0x100..0x100 + 11].copy_from_slice(b"VMCOREINFO\0");
    let at = 0x3000;
    ram[at..at + 4].copy_from_slice(&11u32.to_le_bytes());
    ram[at + 4..at + 8].copy_from_slice(&(text.len() as u32).to_le_bytes());
    ram[at + 12..at + 23].copy_from_slice(b"VMCOREINFO\0");
    ram[at + 24..at + 24 + text.len()].copy_from_slice(text);
    let mem = VecMemory::flat(ram);
    assert_eq!(find_vmcoreinfo(&mem).unwrap(), text);
    assert!(find_vmcoreinfo(&VecMemory::flat(vec![0; 0x4000])).is_none());
}

/// A fake QEMU: answers the commands a session sends, records them, and knows whether the
/// guest runs.
struct FakeQemu {
    path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn fake_qemu(running: bool, fail_registers: bool) -> FakeQemu {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut running = running;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut w: UnixStream = conn.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut line = String::new();
            let mut r = BufReader::new(conn);
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let cmd = v["execute"].as_str().unwrap().to_string();
                let id = v["id"].clone();
                let arg = v["arguments"]["command-line"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                log2.lock().unwrap().push(if arg.is_empty() {
                    cmd.clone()
                } else {
                    format!("{cmd} {arg}")
                });
                let ret = match cmd.as_str() {
                    "query-status" => {
                        json!({"running": running, "status": if running {"running"} else {"paused"}})
                    }
                    "stop" => {
                        running = false;
                        json!({})
                    }
                    "cont" => {
                        running = true;
                        json!({})
                    }
                    "human-monitor-command" if arg.starts_with("info registers") => {
                        if fail_registers {
                            let e = json!({"error": {"class": "GenericError", "desc": "boom"}, "id": id});
                            w.write_all(format!("{e}\n").as_bytes()).unwrap();
                            continue;
                        }
                        json!("CPU#0\r\nRAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000\r\n")
                    }
                    _ => json!({}),
                };
                let reply = json!({"return": ret, "id": id});
                w.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
    });
    FakeQemu {
        path,
        log,
        _dir: dir,
    }
}

impl FakeQemu {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[test]
fn pause_then_resume_on_drop_and_on_error() {
    let q = fake_qemu(true, true);
    {
        let mut s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
        assert!(s.was_running() && s.holds_pause() && s.consistent());
        // An error while paused: the session is dropped with the error, and resumes.
        assert!(s.registers().is_err());
    }
    let log = q.log();
    assert_eq!(
        log,
        [
            "qmp_capabilities",
            "query-status",
            "stop",
            "human-monitor-command info registers -a",
            "cont"
        ]
    );
}

#[test]
fn resume_reports_the_pause_once() {
    let q = fake_qemu(true, false);
    let mut s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
    assert!(s.resume().unwrap().is_some());
    assert!(s.resume().unwrap().is_none());
    assert!(s.is_running().unwrap());
    drop(s);
    assert_eq!(q.log().iter().filter(|c| *c == "cont").count(), 1);
}

#[test]
fn already_paused_guest_stays_paused_and_no_pause_never_stops() {
    let q = fake_qemu(false, false);
    let s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
    assert!(!s.was_running() && !s.holds_pause() && s.consistent());
    drop(s);
    assert!(!q.log().iter().any(|c| c == "stop" || c == "cont"));

    let q = fake_qemu(true, false);
    let opts = LiveOptions {
        pause: false,
        ..Default::default()
    };
    let s = LiveSession::connect(&q.path, &opts).unwrap();
    assert!(s.was_running() && !s.consistent());
    drop(s);
    assert!(!q.log().iter().any(|c| c == "stop" || c == "cont"));
}

#[test]
fn resume_on_panic_unwind() {
    let q = fake_qemu(true, false);
    let path = q.path.clone();
    let r = std::panic::catch_unwind(move || {
        let _s = LiveSession::connect(&path, &LiveOptions::default()).unwrap();
        panic!("while paused");
    });
    assert!(r.is_err());
    assert_eq!(q.log().last().map(String::as_str), Some("cont"));
}

/// The session's connection is lost while paused (QEMU never answers `cont`): `resume` fails,
/// shuts the connection down, and the watchdog sends `cont` over a connection of its own.
#[test]
fn lost_connection_fires_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let mut w = conn.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let cmd = v["execute"].as_str().unwrap().to_string();
                log2.lock().unwrap().push((n, cmd.clone()));
                if n == 0 && cmd == "cont" {
                    continue; // wedged for this client
                }
                let ret = if cmd == "query-status" {
                    json!({"running": true, "status": "running"})
                } else {
                    json!({})
                };
                let reply = json!({"return": ret, "id": v["id"]});
                w.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
    });
    let opts = LiveOptions {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let mut s = LiveSession::connect(&path, &opts).unwrap();
    assert!(s.resume().is_err());
    let t0 = Instant::now();
    while !log.lock().unwrap().contains(&(1, "cont".to_string())) {
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", log.lock());
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log[log.len() - 2..],
        [(1, "qmp_capabilities".to_string()), (1, "cont".to_string())]
    );
}
