//! A real `qemu-system-aarch64 -M virt -cpu max` running a few instructions a test wrote: the
//! ground truth for what QEMU's aarch64 CPU does with registers and page tables a test chose.
//!
//! [`Virt::start`] boots `-kernel` = a static ELF holding the test's code at [`BASE`] (vCPU 0
//! starts there at EL1; the others stay powered off) with any other blobs loaded at their
//! physical addresses (`-device loader`), and connects to QMP. The instruction encoders below
//! are the handful those payloads need, from the Arm ARM's encoding tables.

use guestcore::format::elf::EM_AARCH64;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the payload is loaded and vCPU 0 starts (guest RAM starts at 1 GiB on `virt`).
pub const BASE: u64 = 0x4010_0000;

/// The machine's RAM, MiB (at 1 GiB).
pub const RAM_MIB: u64 = 64;

/// `movz Xd, #imm, lsl #(16 × hw)`.
pub fn movz(d: u32, imm: u16, hw: u32) -> u32 {
    0xd280_0000 | hw << 21 | u32::from(imm) << 5 | d
}

/// `movk Xd, #imm, lsl #(16 × hw)`.
pub fn movk(d: u32, imm: u16, hw: u32) -> u32 {
    0xf280_0000 | hw << 21 | u32::from(imm) << 5 | d
}

/// The four instructions that put `value` in `Xd`.
pub fn mov64(d: u32, value: u64) -> [u32; 4] {
    [
        movz(d, value as u16, 0),
        movk(d, (value >> 16) as u16, 1),
        movk(d, (value >> 32) as u16, 2),
        movk(d, (value >> 48) as u16, 3),
    ]
}

/// System registers the payloads write, as `(op1, CRn, CRm, op2)` with op0 = 3.
pub mod sysreg {
    pub const SCTLR_EL1: (u32, u32, u32, u32) = (0, 1, 0, 0);
    pub const TTBR0_EL1: (u32, u32, u32, u32) = (0, 2, 0, 0);
    pub const TTBR1_EL1: (u32, u32, u32, u32) = (0, 2, 0, 1);
    pub const TCR_EL1: (u32, u32, u32, u32) = (0, 2, 0, 2);
    pub const MAIR_EL1: (u32, u32, u32, u32) = (0, 10, 2, 0);
}

fn sysreg_bits((op1, crn, crm, op2): (u32, u32, u32, u32)) -> u32 {
    1 << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5
}

/// `msr <reg>, Xt`.
pub fn msr(reg: (u32, u32, u32, u32), t: u32) -> u32 {
    0xd510_0000 | sysreg_bits(reg) | t
}

/// `mrs Xt, <reg>`.
pub fn mrs(t: u32, reg: (u32, u32, u32, u32)) -> u32 {
    0xd530_0000 | sysreg_bits(reg) | t
}

/// `isb`.
pub const ISB: u32 = 0xd503_3fdf;
/// `b .`: where the payload spins.
pub const SPIN: u32 = 0x1400_0000;
/// `orr x0, x0, #1`.
pub const ORR_X0_1: u32 = 0xb240_0000;

/// A static ELF64 aarch64 executable with `code` at [`BASE`], its entry.
pub fn payload_elf(code: &[u32]) -> Vec<u8> {
    let code: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&EM_AARCH64.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&BASE.to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R X
    for v in [
        0x1000u64,
        BASE,
        BASE,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.resize(0x1000, 0);
    f.extend_from_slice(&code);
    f
}

/// A running `virt` machine with the payload, killed when dropped.
pub struct Virt {
    child: Child,
    pub qmp: Qmp,
    dir: PathBuf,
}

impl Drop for Virt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Virt {
    /// Starts `qemu` (`qemu-system-aarch64`) with `smp` vCPUs and [`RAM_MIB`] of RAM running `code`,
    /// `blobs` loaded at their physical addresses, files in `dir`.
    pub fn start(qemu: &Path, dir: &Path, smp: u32, code: &[u32], blobs: &[(u64, &[u8])]) -> Virt {
        let kernel = dir.join("payload.elf");
        std::fs::write(&kernel, payload_elf(code)).unwrap();
        let sock = dir.join("qmp.sock");
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "virt", "-cpu", "max", "-m", &format!("{RAM_MIB}M")])
            .args(["-smp", &smp.to_string()])
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()));
        for (i, (addr, bytes)) in blobs.iter().enumerate() {
            let f = dir.join(format!("blob{i}.bin"));
            std::fs::write(&f, bytes).unwrap();
            cmd.arg("-device").arg(format!(
                "loader,file={},addr={addr:#x},force-raw=on",
                f.display()
            ));
        }
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("start qemu-system-aarch64");
        let qmp = Qmp::connect(&sock);
        Virt {
            child,
            qmp,
            dir: dir.to_path_buf(),
        }
    }

    /// Migrates the (stopped) machine to `name` in its directory and waits for the end.
    pub fn migrate_to_file(&mut self, name: &str) -> PathBuf {
        let mig = self.dir.join(name);
        self.qmp
            .cmd("migrate", json!({"uri": format!("file:{}", mig.display())}));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.qmp.cmd("query-migrate", json!({}));
            match s["status"].as_str() {
                Some("completed") => return mig,
                Some("failed") | Some("cancelled") => panic!("migration: {s}"),
                _ if Instant::now() > deadline => panic!("migration did not complete: {s}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Asks QEMU to quit; its answer does not matter (it may be gone already).
    pub fn quit(&mut self) {
        let _ = writeln!(self.qmp.writer, "{}", json!({"execute": "quit"}));
    }
}

/// A QMP connection.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("QMP {}: {e}", path.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut q = Qmp {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        q.line(); // greeting
        q.cmd("qmp_capabilities", json!({}));
        q
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("QMP reply");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("QMP sent {l:?}: {e}"))
    }

    /// Runs `name` with `args`; panics, saying what QEMU said, on an error.
    pub fn cmd(&mut self, name: &str, args: Value) -> Value {
        let c = json!({"execute": name, "arguments": args});
        writeln!(self.writer, "{c}").unwrap();
        loop {
            let r = self.line();
            if let Some(ret) = r.get("return") {
                return ret.clone();
            }
            assert!(r.get("error").is_none(), "{name}: {r}");
        }
    }

    /// An HMP command's text.
    pub fn hmp(&mut self, line: &str) -> String {
        let r = self.cmd("human-monitor-command", json!({ "command-line": line }));
        r.as_str().unwrap_or_default().to_string()
    }
}
