//! Parser of QEMU's HMP `info registers -a` text of an AArch64 guest into
//! [`Aarch64CpuState`]s.
//!
//! Why: a live `qmp:` input of `qemu-system-aarch64` gets its vCPUs' registers the way an x86
//! one does, from the monitor text (QMP has no structured register command). QEMU 10
//! (`target/arm/cpu.c`, `aarch64_cpu_dump_state`) prints, per vCPU:
//!
//! ```text
//! CPU#0
//!  PC=ffffcf45694da26c X00=000000000001c1b4 X01=ffff00000ff1c618
//! X02=… X03=… X04=…                                  (three per line up to X30)
//! X29=ffffcf456a4b3d50 X30=5cbbcf45694da284  SP=ffffcf456a4b3d50
//! PSTATE=404020c5 -Z-- EL1h  SVCR=00000000 --  BTYPE=0     FPCR=00000000 FPSR=00000000
//! P00=… Z00=…:…                                      (SVE/FP state: skipped)
//! ```
//!
//! Only the general registers, PC, SP and PSTATE are there: no system register (TTBRn_EL1,
//! TCR_EL1, SCTLR_EL1, ID_AA64MMFR0_EL1), so those stay `None` and a view of the guest falls
//! back to the kernel's own tables found in RAM (`guest::view`). A vCPU in AArch32 state
//! (QEMU then prints `R00=` … `PSR=`) is an error naming it, as is a block that lacks any of
//! the registers above: never a panic, never a zero read as a register.

use super::cpu_header;
use crate::cpu::Aarch64CpuState;
use crate::{Error, Result};

const WHAT: &str = "HMP info registers (aarch64)";

/// One `CPU#N` block being filled.
struct Block {
    state: Aarch64CpuState,
    /// Bit i: X<i> seen (0–30); 31: PC; 32: SP; 33: PSTATE.
    seen: u64,
    /// Line of the `CPU#` header (or of the first register line).
    line: usize,
    aarch32: bool,
}

const PC: u32 = 31;
const SP: u32 = 32;
const PSTATE: u32 = 33;
const ALL: u64 = (1 << 34) - 1;

impl Block {
    fn new(index: u32, line: usize) -> Self {
        Block {
            state: Aarch64CpuState::new(index),
            seen: 0,
            line,
            aarch32: false,
        }
    }

    fn finish(self) -> Result<Aarch64CpuState> {
        let at = format!("CPU#{} (line {})", self.state.index, self.line);
        if self.aarch32 {
            return Err(Error::parse(
                WHAT,
                format!("{at}: the vCPU is in AArch32 state (R00=…, PSR=): not supported"),
            ));
        }
        if self.seen == ALL {
            return Ok(self.state);
        }
        let missing: Vec<String> = (0..34)
            .filter(|b| self.seen & (1 << b) == 0)
            .map(|b| match b {
                PC => "PC".to_string(),
                SP => "SP".to_string(),
                PSTATE => "PSTATE".to_string(),
                n => format!("X{n:02}"),
            })
            .collect();
        Err(Error::parse(
            WHAT,
            format!("{at}: no {}", missing.join(", ")),
        ))
    }

    fn set(&mut self, name: &str, value: &str, lineno: usize) -> Result<()> {
        let bit = match name {
            "PC" => PC,
            "SP" => SP,
            "PSTATE" => PSTATE,
            "R00" | "PSR" => {
                self.aarch32 = true;
                return Ok(());
            }
            x => match x.strip_prefix('X').and_then(|n| {
                (n.len() == 2)
                    .then(|| n.parse::<u32>().ok())
                    .flatten()
                    .filter(|&n| n <= 30)
            }) {
                Some(n) => n,
                // FPCR, SVCR, BTYPE, P00, Z00, Q00 …: not part of Aarch64CpuState.
                None => return Ok(()),
            },
        };
        let v = hex(value, name, lineno)?;
        match bit {
            PC => self.state.pc = v,
            SP => self.state.sp = v,
            PSTATE => self.state.pstate = v,
            n => self.state.x[n as usize] = v,
        }
        self.seen |= 1 << bit;
        Ok(())
    }
}

/// Parses the text of `info registers -a` (or plain `info registers`: one vCPU numbered 0)
/// of an AArch64 guest into one state per vCPU, in the text's order. Fills x0–x30, PC, SP
/// and PSTATE; the system registers stay `None`.
pub fn parse_info_registers_aarch64(text: &str) -> Result<Vec<Aarch64CpuState>> {
    let mut cpus: Vec<Aarch64CpuState> = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if let Some(index) = cpu_header(line, lineno, WHAT)? {
            if let Some(block) = cur.take() {
                cpus.push(block.finish()?);
            }
            if cpus.iter().any(|c| c.index == index) {
                return Err(Error::parse(
                    WHAT,
                    format!("line {lineno}: CPU#{index} appears twice"),
                ));
            }
            cur = Some(Block::new(index, lineno));
            continue;
        }
        for tok in line.split_whitespace() {
            let Some((name, value)) = tok.split_once('=') else {
                continue; // flags like `-Z--`, `EL1h`
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            let block = cur.get_or_insert_with(|| Block::new(0, lineno));
            block.set(name, value, lineno)?;
        }
    }
    if let Some(block) = cur.take() {
        cpus.push(block.finish()?);
    }
    if cpus.is_empty() {
        return Err(Error::parse(WHAT, "no CPU in the text"));
    }
    Ok(cpus)
}

fn hex(tok: &str, name: &str, lineno: usize) -> Result<u64> {
    if tok.is_empty() || tok.len() > 16 || !tok.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::parse(
            WHAT,
            format!("line {lineno}: {name}: {tok:?} is not a hexadecimal 64-bit number"),
        ));
    }
    u64::from_str_radix(tok, 16)
        .map_err(|e| Error::parse(WHAT, format!("line {lineno}: {name}: {tok:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = include_str!("../../../tests/fixtures/hmp/aarch64-info-registers.txt");

    #[test]
    fn real_qemu_text_two_vcpus() {
        let cpus = parse_info_registers_aarch64(TEXT).unwrap();
        assert_eq!(cpus.len(), 2);
        let c0 = &cpus[0];
        assert_eq!(c0.index, 0);
        assert_eq!(c0.pc, 0xffffcf45694da26c);
        assert_eq!(c0.x[0], 0x1c1b4);
        assert_eq!(c0.x[1], 0xffff00000ff1c618);
        assert_eq!(c0.x[29], 0xffffcf456a4b3d50);
        assert_eq!(c0.x[30], 0x5cbbcf45694da284);
        assert_eq!(c0.sp, 0xffffcf456a4b3d50);
        assert_eq!(c0.pstate, 0x404020c5);
        assert_eq!(c0.current_el(), 1);
        assert_eq!(c0.ttbr1_el1, None);
        assert_eq!(c0.sctlr_el1, None);
        assert_eq!(cpus[1].index, 1);
        assert_eq!(cpus[1].sp, 0xffff8000080c3de0);
    }

    #[test]
    fn missing_and_malformed_registers_are_errors() {
        let cut = TEXT.replace(" SP=", " XX=");
        let e = parse_info_registers_aarch64(&cut).unwrap_err().to_string();
        assert!(e.contains("CPU#0") && e.contains("no SP"), "{e}");
        let bad = TEXT.replacen("X05=4000000000000000", "X05=40000000000000zz", 1);
        let e = parse_info_registers_aarch64(&bad).unwrap_err().to_string();
        assert!(e.contains("X05"), "{e}");
        let e = parse_info_registers_aarch64("").unwrap_err().to_string();
        assert!(e.contains("no CPU"), "{e}");
        let twice = format!("{TEXT}\nCPU#0\n");
        assert!(parse_info_registers_aarch64(&twice).is_err());
    }

    #[test]
    fn never_panics_on_prefixes() {
        // Every cut of the text (a reply cut short) is a result or an error, never a panic;
        // a cut inside the first block's registers is an error naming what is missing.
        for end in (0..TEXT.len()).step_by(7) {
            let _ = parse_info_registers_aarch64(&TEXT[..end]);
        }
        assert!(parse_info_registers_aarch64(&TEXT[..200]).is_err());
    }

    #[test]
    fn aarch32_vcpu_is_named() {
        let text = "CPU#0\nR00=00000000 R01=00000000 R02=00000000 R03=00000000\nPSR=600001d3 -ZC- A S svc32\n";
        let e = parse_info_registers_aarch64(text).unwrap_err().to_string();
        assert!(e.contains("AArch32"), "{e}");
    }

    #[test]
    fn x86_text_is_not_taken_for_aarch64() {
        let x86 = include_str!("../../../tests/fixtures/hmp/x86_64-info-registers.txt");
        assert!(parse_info_registers_aarch64(x86).is_err());
    }
}
