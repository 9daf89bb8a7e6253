//! Parser of QEMU's HMP `info registers` / `info registers -a` text into [`X86CpuState`]s
//! (an AArch64 guest's text: [`aarch64`]).
//!
//! Why: the live path and the tests get CPU state from a running QEMU through the monitor;
//! QMP has no structured command for x86 registers, so the HMP text (QEMU 10,
//! `target/i386/cpu-dump.c`) is the interface. Its layout, per vCPU:
//!
//! ```text
//! CPU#0
//! RAX=000000000001ad40 RBX=0000000000000000 RCX=0000000000000000 RDX=4000000000000000
//! ...                                           (32-bit CPUs: EAX= … EDI=, EIP=, EFL=)
//! R8 =0000000000000000 R9 =0000000000000007 R10=00000000fffffffb R11=0000000000000001
//! RIP=ffffffff9d0592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
//! ES =0000 0000000000000000 00000000 00000000
//! CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
//! LDT=0000 0000000000000000 00000000 00008200 DPL=0 LDT
//! GDT=     fffffe0000001000 0000007f
//! CR0=80050033 CR2=00000000005794a9 CR3=00000000027a4000 CR4=000006f0
//! EFER=0000000000000d01
//! ```
//!
//! Segment lines are `NAME=selector base limit flags` (base is 8 hex digits outside long
//! mode); `GDT=`/`IDT=` are `base limit`. Values are hexadecimal without `0x`, except the
//! small decimal fields (`A20=`, `CPL=` …). Lines this parser does not need (DR*, FPU, XMM,
//! …) are skipped. Text without a `CPU#N` header (older QEMU's plain `info registers`) is one
//! CPU numbered 0. Every CPU must carry RIP/EIP, CR0, CR3, CR4 and EFER, the registers that
//! decide how it translates addresses; anything missing or malformed is an
//! [`Error::Parse`], never a panic.

use crate::cpu::{Arch, CpuState, Segment, X86CpuState};
use crate::{Error, Result};

pub mod aarch64;

pub use aarch64::parse_info_registers_aarch64;

/// Parses `info registers -a` text of a guest of architecture `arch` (x86:
/// [`parse_info_registers`], AArch64: [`parse_info_registers_aarch64`]).
pub fn parse_info_registers_of(arch: Arch, text: &str) -> Result<Vec<CpuState>> {
    Ok(match arch {
        Arch::X86 => parse_info_registers(text)?
            .into_iter()
            .map(CpuState::X86)
            .collect(),
        Arch::Aarch64 => parse_info_registers_aarch64(text)?
            .into_iter()
            .map(CpuState::Aarch64)
            .collect(),
    })
}

const WHAT: &str = "HMP info registers";

/// General-purpose register names in QEMU's order (index into [`X86CpuState::gpr`]).
const GPR64: [&str; 16] = [
    "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", "R8", "R9", "R10", "R11", "R12", "R13",
    "R14", "R15",
];
const GPR32: [&str; 8] = ["EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP"];

/// Registers every CPU block must contain.
#[derive(Default)]
struct Seen {
    ip: bool,
    cr0: bool,
    cr3: bool,
    cr4: bool,
    efer: bool,
}

struct Block {
    state: X86CpuState,
    seen: Seen,
    /// 1-based line of the `CPU#` header (or of the first register line).
    line: usize,
}

impl Block {
    fn new(index: u32, line: usize) -> Self {
        Block {
            state: X86CpuState::new(index),
            seen: Seen::default(),
            line,
        }
    }

    fn finish(self) -> Result<X86CpuState> {
        let missing: Vec<&str> = [
            (self.seen.ip, "RIP/EIP"),
            (self.seen.cr0, "CR0"),
            (self.seen.cr3, "CR3"),
            (self.seen.cr4, "CR4"),
            (self.seen.efer, "EFER"),
        ]
        .iter()
        .filter(|(seen, _)| !seen)
        .map(|(_, name)| *name)
        .collect();
        if missing.is_empty() {
            Ok(self.state)
        } else {
            Err(Error::parse(
                WHAT,
                format!(
                    "CPU#{} (line {}): no {}",
                    self.state.index,
                    self.line,
                    missing.join(", ")
                ),
            ))
        }
    }
}

/// Parses the text of `info registers` or `info registers -a` into one state per vCPU, in
/// the order the text lists them.
///
/// Fills the general-purpose registers, RIP, RFLAGS, the segment and descriptor-table
/// registers (selector, base, limit, flags), CR0/CR2/CR3/CR4, EFER and the A20 state.
/// The vCPU index of a `CPU#N` header line of `info registers -a`, `None` for any other line;
/// `what` names the text in the error for a header whose number does not parse.
fn cpu_header(line: &str, lineno: usize, what: &'static str) -> Result<Option<u32>> {
    let Some(rest) = line.strip_prefix("CPU#") else {
        return Ok(None);
    };
    let digits = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits
        .parse()
        .map(Some)
        .map_err(|_| Error::parse(what, format!("line {lineno}: bad CPU header {line:?}")))
}

/// `kernel_gs_base` is not in the HMP text and stays 0; `efer_inferred` is false.
pub fn parse_info_registers(text: &str) -> Result<Vec<X86CpuState>> {
    let mut cpus: Vec<X86CpuState> = Vec::new();
    let mut cur: Option<Block> = None;

    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
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
        let Some(eq) = line.find('=') else {
            // Not a register line (e.g. a monitor message); skip it.
            continue;
        };
        let key = line[..eq].trim_end();
        let rest = &line[eq + 1..];
        if !is_register_key(key) {
            continue;
        }
        // Register lines before any header: one CPU numbered 0 (older plain `info registers`).
        let block = cur.get_or_insert_with(|| Block::new(0, lineno));
        parse_line(block, key, rest, lineno)?;
    }
    if let Some(block) = cur.take() {
        cpus.push(block.finish()?);
    }
    if cpus.is_empty() {
        return Err(Error::parse(WHAT, "no CPU in the text"));
    }
    Ok(cpus)
}

/// True for the first key of a line that carries registers this parser reads or skips on
/// purpose: an uppercase register-like name (`RAX`, `R8`, `ES`, `XMM00`, `FPR0` …).
fn is_register_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 16
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn segment_mut<'a>(s: &'a mut X86CpuState, name: &str) -> Option<&'a mut Segment> {
    Some(match name {
        "ES" => &mut s.es,
        "CS" => &mut s.cs,
        "SS" => &mut s.ss,
        "DS" => &mut s.ds,
        "FS" => &mut s.fs,
        "GS" => &mut s.gs,
        "LDT" => &mut s.ldt,
        "TR" => &mut s.tr,
        "GDT" => &mut s.gdt,
        "IDT" => &mut s.idt,
        _ => return None,
    })
}

fn parse_line(block: &mut Block, key: &str, rest: &str, lineno: usize) -> Result<()> {
    let mut fields = rest.split_whitespace();
    let mut field = |what: &str| -> Result<u64> {
        let tok = fields
            .next()
            .ok_or_else(|| Error::parse(WHAT, format!("line {lineno}: {key}: missing {what}")))?;
        hex(tok, key, lineno)
    };
    match key {
        "ES" | "CS" | "SS" | "DS" | "FS" | "GS" | "LDT" | "TR" => {
            let selector = field("selector")?;
            let base = field("base")?;
            let limit = field("limit")?;
            let flags = field("flags")?;
            let seg = Segment {
                selector: fit_u32(selector, key, lineno)?,
                base,
                limit: fit_u32(limit, key, lineno)?,
                flags: fit_u32(flags, key, lineno)?,
            };
            if let Some(dst) = segment_mut(&mut block.state, key) {
                *dst = seg;
            }
            Ok(())
        }
        "GDT" | "IDT" => {
            let base = field("base")?;
            let limit = field("limit")?;
            let seg = Segment {
                base,
                limit: fit_u32(limit, key, lineno)?,
                ..Segment::default()
            };
            if let Some(dst) = segment_mut(&mut block.state, key) {
                *dst = seg;
            }
            Ok(())
        }
        _ => parse_pairs(block, &format!("{key}={rest}"), lineno),
    }
}

/// A line of `NAME=VALUE` pairs; `R8 =…` style padding before `=` is allowed.
fn parse_pairs(block: &mut Block, line: &str, lineno: usize) -> Result<()> {
    let mut toks = line.split_whitespace().peekable();
    while let Some(tok) = toks.next() {
        let (name, value) = match tok.split_once('=') {
            Some((n, v)) if !n.is_empty() => (n, v),
            // `[ST=0]`-like tokens and `=` without a name: not a register.
            Some(_) => continue,
            None => {
                // A name padded before its `=`: `R8 =0000…`.
                match toks.peek().and_then(|next| next.strip_prefix('=')) {
                    Some(v) => {
                        toks.next();
                        (tok, v)
                    }
                    None => continue,
                }
            }
        };
        set_register(block, name, value, lineno)?;
    }
    Ok(())
}

fn set_register(block: &mut Block, name: &str, value: &str, lineno: usize) -> Result<()> {
    let s = &mut block.state;
    if let Some(i) = GPR64.iter().position(|r| *r == name) {
        s.gpr[i] = hex(value, name, lineno)?;
        return Ok(());
    }
    if let Some(i) = GPR32.iter().position(|r| *r == name) {
        s.gpr[i] = hex(value, name, lineno)?;
        return Ok(());
    }
    match name {
        "RIP" | "EIP" => {
            s.rip = hex(value, name, lineno)?;
            block.seen.ip = true;
        }
        "RFL" | "EFL" => s.rflags = hex(value, name, lineno)?,
        "CR0" => {
            s.cr[0] = hex(value, name, lineno)?;
            block.seen.cr0 = true;
        }
        "CR2" => s.cr[2] = hex(value, name, lineno)?,
        "CR3" => {
            s.cr[3] = hex(value, name, lineno)?;
            block.seen.cr3 = true;
        }
        "CR4" => {
            s.cr[4] = hex(value, name, lineno)?;
            block.seen.cr4 = true;
        }
        "EFER" => {
            s.efer = hex(value, name, lineno)?;
            s.efer_inferred = false;
            block.seen.efer = true;
        }
        "A20" => {
            s.a20_enabled = match value {
                "1" => true,
                "0" => false,
                _ => {
                    return Err(Error::parse(
                        WHAT,
                        format!("line {lineno}: A20={value:?} is neither 0 nor 1"),
                    ))
                }
            }
        }
        // CPL, II, SMM, HLT, DR*, FPU/SSE state: not part of X86CpuState.
        _ => {}
    }
    Ok(())
}

fn hex(tok: &str, name: &str, lineno: usize) -> Result<u64> {
    let digits = tok
        .strip_prefix("0x")
        .or_else(|| tok.strip_prefix("0X"))
        .unwrap_or(tok);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::parse(
            WHAT,
            format!("line {lineno}: {name}: {tok:?} is not a hexadecimal 64-bit number"),
        ));
    }
    u64::from_str_radix(digits, 16)
        .map_err(|e| Error::parse(WHAT, format!("line {lineno}: {name}: {tok:?}: {e}")))
}

fn fit_u32(v: u64, name: &str, lineno: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::parse(
            WHAT,
            format!("line {lineno}: {name}: {v:#x} does not fit in 32 bits"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CR0_PG, CR4_LA57, CR4_PAE, EFER_LMA, EFER_NXE};

    const X86_64: &str = include_str!("../../tests/fixtures/hmp/x86_64-info-registers.txt");
    const X86_64_LA57: &str =
        include_str!("../../tests/fixtures/hmp/x86_64-la57-info-registers.txt");
    const X86_64_CPU0: &str =
        include_str!("../../tests/fixtures/hmp/x86_64-info-registers-cpu0.txt");
    const I386: &str = include_str!("../../tests/fixtures/hmp/i386-info-registers.txt");
    const I386_PAE: &str = include_str!("../../tests/fixtures/hmp/i386-pae-info-registers.txt");

    fn parse_err(text: &str) -> String {
        match parse_info_registers(text) {
            Err(e @ Error::Parse { .. }) => e.to_string(),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn x86_64_two_cpus() {
        let cpus = parse_info_registers(X86_64).unwrap();
        assert_eq!(cpus.len(), 2);
        let c = &cpus[0];
        assert_eq!(c.index, 0);
        assert_eq!(c.gpr[0], 0x1ad40); // RAX
        assert_eq!(c.gpr[3], 0x4000_0000_0000_0000); // RDX
        assert_eq!(c.gpr[6], 0xffff_ffff_ab01_aa40); // RBP
        assert_eq!(c.gpr[7], 0xffff_ffff_ab00_3e98); // RSP
        assert_eq!(c.gpr[9], 0x314d_8c4e); // R9 (padded "R9 =")
        assert_eq!(c.gpr[15], 0x14790); // R15
        assert_eq!(c.rip, 0xffff_ffff_aa05_92eb);
        assert_eq!(c.rflags, 0x246);
        assert_eq!(c.cr0(), 0x8005_0033);
        assert_eq!(c.cr[2], 0x57_94a9);
        assert_eq!(c.cr3(), 0x2a0_6000);
        assert_eq!(c.cr4(), 0x6f0);
        assert_eq!(c.efer, 0xd01);
        assert!(c.a20_enabled);
        assert!(!c.efer_inferred);
        assert!(c.paging_enabled() && c.long_mode());
        assert_eq!(c.efer & EFER_NXE, EFER_NXE);
        assert_eq!(
            c.cs,
            Segment {
                selector: 0x10,
                base: 0,
                limit: 0xffff_ffff,
                flags: 0x00af_9b00
            }
        );
        assert_eq!(
            c.ss,
            Segment {
                selector: 0x18,
                base: 0,
                limit: 0xffff_ffff,
                flags: 0x00cf_9300
            }
        );
        assert_eq!(c.gs.base, 0xffff_8c7c_4f80_0000);
        assert_eq!(
            c.tr,
            Segment {
                selector: 0x40,
                base: 0xffff_fe00_0000_3000,
                limit: 0x4087,
                flags: 0x8900
            }
        );
        assert_eq!(c.ldt.flags, 0x8200);
        assert_eq!(
            c.gdt,
            Segment {
                selector: 0,
                base: 0xffff_fe00_0000_1000,
                limit: 0x7f,
                flags: 0
            }
        );
        assert_eq!((c.idt.base, c.idt.limit), (0xffff_fe00_0000_0000, 0xfff));
        assert_eq!(c.kernel_gs_base, 0);

        // The second vCPU differs in CR3 and CR4 (DESIGN §3: 0x6f0 vs 0x6e0).
        let c1 = &cpus[1];
        assert_eq!(c1.index, 1);
        assert_eq!(c1.cr3(), 0x289_4000);
        assert_eq!(c1.cr4(), 0x6e0);
        assert_eq!(c1.gs.base, 0xffff_8c7c_4f90_0000);
        assert_eq!(c1.gdt.base, 0xffff_fe00_0003_c000);
    }

    #[test]
    fn x86_64_la57() {
        let cpus = parse_info_registers(X86_64_LA57).unwrap();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].cr3(), 0x28d_6000);
        assert_eq!(cpus[0].cr4(), 0x16f0);
        assert_eq!(cpus[1].cr3(), 0x2a2_e000);
        assert_eq!(cpus[1].cr4(), 0x16e0);
        for c in &cpus {
            assert_eq!(c.cr4() & CR4_LA57, CR4_LA57);
            assert_eq!(c.efer, 0xd01);
        }
        // vCPU 0 idles in HLT; vCPU 1 was caught running.
        assert_eq!(cpus[0].rip, 0xffff_ffff_a665_92eb);
        assert_eq!(cpus[1].rip, 0xffff_ffff_a665_a170);
        assert_eq!(cpus[1].rflags, 0x2);
        // A 5-level kernel's per-CPU area lives above the 4-level canonical range.
        assert_eq!(cpus[0].gs.base, 0xff2b_83bf_8f60_0000);
    }

    #[test]
    fn i386_two_cpus_32_bit_layout() {
        let cpus = parse_info_registers(I386).unwrap();
        assert_eq!(cpus.len(), 2);
        let c = &cpus[0];
        assert_eq!(c.gpr[0], 0xcd91_7b70); // EAX
        assert_eq!(c.gpr[3], 0xcfc2_9dc0); // EDX
        assert_eq!(c.gpr[7], 0xcdc3_bf28); // ESP
        assert_eq!(&c.gpr[8..], &[0; 8]);
        assert_eq!(c.rip, 0xcd91_7b83);
        assert_eq!(c.rflags, 0x0020_0216);
        assert_eq!(c.cr0(), 0x8005_0033);
        assert_eq!(c.cr3(), 0x01e3_6000);
        assert_eq!(c.cr4(), 0x690);
        assert_eq!(c.cr4() & CR4_PAE, 0);
        assert_eq!(c.efer, 0);
        assert!(c.a20_enabled && c.paging_enabled() && !c.long_mode());
        assert_eq!(
            c.cs,
            Segment {
                selector: 0x60,
                base: 0,
                limit: 0xffff_ffff,
                flags: 0x00cf_9a00
            }
        );
        assert_eq!(
            c.fs,
            Segment {
                selector: 0xd8,
                base: 0x01dc_4000,
                limit: 0xffff_ffff,
                flags: 0x008f_9300
            }
        );
        assert_eq!(
            (c.tr.selector, c.tr.base, c.tr.limit),
            (0x80, 0xff40_6000, 0x407b)
        );
        assert_eq!((c.gdt.base, c.gdt.limit), (0xff40_1000, 0xff));
        assert_eq!((c.idt.base, c.idt.limit), (0xff40_0000, 0x7ff));
        assert_eq!(cpus[1].cr3(), 0x0101_6000);
        assert_eq!(
            (cpus[1].tr.base, cpus[1].gdt.base),
            (0xff43_1000, 0xff42_c000)
        );
    }

    #[test]
    fn i386_pae() {
        let cpus = parse_info_registers(I386_PAE).unwrap();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].cr3(), 0x05e9_8000);
        assert_eq!(cpus[1].cr3(), 0x01cf_e000);
        for c in &cpus {
            assert_eq!(c.cr4(), 0x6b0);
            assert_eq!(c.cr4() & CR4_PAE, CR4_PAE);
            assert_eq!(c.efer, EFER_NXE);
            assert_eq!(c.efer & EFER_LMA, 0);
            assert_eq!(c.cr0() & CR0_PG, CR0_PG);
            assert_eq!(c.rip, 0xc592_fcf3);
        }
    }

    #[test]
    fn single_cpu_without_header_and_a20_masked() {
        let text = "RIP=000000000000fff0 RFL=00000002 [-------] CPL=0 II=0 A20=0 SMM=0 HLT=0\n\
                    CR0=00000010 CR2=00000000 CR3=00000000 CR4=00000000\n\
                    EFER=0000000000000000\n";
        let cpus = parse_info_registers(text).unwrap();
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].index, 0);
        assert!(!cpus[0].a20_enabled);
        assert!(!cpus[0].paging_enabled());
        assert_eq!(cpus[0].rip, 0xfff0);
    }

    #[test]
    fn one_cpu_out_of_a_dump() {
        // `info registers` (no -a) for CPU 1: the index comes from the header.
        let start = X86_64.find("CPU#1").unwrap();
        let cpus = parse_info_registers(&X86_64[start..]).unwrap();
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].index, 1);
        assert_eq!(cpus[0].cr4(), 0x6e0);
    }

    #[test]
    fn plain_info_registers_is_the_first_block_of_dash_a() {
        // Same capture, same stopped guest: `info registers` (monitor CPU 0) and `-a`.
        let one = parse_info_registers(X86_64_CPU0).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0], parse_info_registers(X86_64).unwrap()[0]);
    }

    #[test]
    fn lf_and_crlf_give_the_same_result() {
        let lf = X86_64.replace("\r\n", "\n");
        assert_eq!(
            parse_info_registers(&lf).unwrap(),
            parse_info_registers(X86_64).unwrap()
        );
    }

    #[test]
    fn no_cpu_is_an_error() {
        for text in [
            "",
            "\n\n",
            "garbage\nmore garbage",
            "CPU#",
            "Error: no such command\n",
        ] {
            let e = parse_err(text);
            assert!(e.contains("HMP info registers"), "{text:?}: {e}");
        }
    }

    #[test]
    fn malformed_numbers_are_errors() {
        let cases = [
            ("CR3=0000000002a06000", "CR3=0000000002a060zz"),
            ("CR3=0000000002a06000", "CR3="),
            ("CR3=0000000002a06000", "CR3=00000000000000000002a06000"),
            ("RAX=000000000001ad40", "RAX=-1"),
            ("A20=1", "A20=2"),
            (
                "ES =0000 0000000000000000 00000000 00000000",
                "ES =0000 0000000000000000 00000000",
            ),
            (
                "TR =0040 fffffe0000003000 00004087",
                "TR =0040 fffffe0000003000 1ffffffff",
            ),
            (
                "GDT=     fffffe0000001000 0000007f",
                "GDT=     fffffe0000001000",
            ),
            (
                "GDT=     fffffe0000001000 0000007f",
                "GDT=     fffffe000000100g 0000007f",
            ),
        ];
        for (good, bad) in cases {
            let lf = X86_64.replace("\r\n", "\n");
            assert!(lf.contains(good), "{good}");
            let text = lf.replacen(good, bad, 1);
            let e = parse_err(&text);
            assert!(e.contains("line "), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_control_registers_are_errors() {
        let lf = X86_64.replace("\r\n", "\n");
        let no_efer: String = lf
            .lines()
            .filter(|l| !l.starts_with("EFER="))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse_err(&no_efer).contains("EFER"));
        let truncated = &lf[..lf.find("CR0=").unwrap()];
        let e = parse_err(truncated);
        assert!(e.contains("CPU#0") && e.contains("CR0"), "{e}");
        assert!(parse_err("CPU#0\nCPU#1\n").contains("CPU#0"));
    }

    #[test]
    fn duplicate_cpu_is_an_error() {
        let lf = X86_64.replace("\r\n", "\n").replace("CPU#1", "CPU#0");
        assert!(parse_err(&lf).contains("twice"));
        assert!(parse_err("CPU#x\n").contains("CPU header"));
        assert!(parse_err("CPU#99999999999\n").contains("CPU header"));
    }

    #[test]
    fn never_panics_on_prefixes_and_byte_noise() {
        // Every prefix (cut mid-line, mid-number) and a few corruptions: Ok or Err, no panic.
        let lf = X86_64.replace("\r\n", "\n");
        for end in (0..lf.len()).step_by(7) {
            if lf.is_char_boundary(end) {
                let _ = parse_info_registers(&lf[..end]);
            }
        }
        for text in [
            "=",
            "==",
            " = ",
            "R8 =",
            "R8 = ",
            "CPU#0\nR8",
            "ES =",
            "CPU#0\n=1 =2 A=",
            "CPU#4294967295\n",
            "é=ü",
            "CR0=ＦＦ",
        ] {
            let _ = parse_info_registers(text);
        }
    }
}
