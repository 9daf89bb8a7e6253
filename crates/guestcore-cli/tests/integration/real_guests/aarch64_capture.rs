//! The aarch64 captures (issue 28) agree with themselves: the ground truth later aarch64 tests
//! compare guestcore against is only worth something if QEMU's translations, the system
//! registers read from its gdbstub, the guest's VMCOREINFO and QEMU's ELF tell one story.
//! guestcore itself is not run here (it reads no aarch64 guest yet).

use super::capture::capture;
use std::collections::HashMap;
use std::path::Path;

/// `CPU NAME 0xVALUE` lines of sysregs.txt, by (vCPU, register name).
pub(super) fn sysregs(dir: &Path) -> HashMap<(usize, String), u64> {
    let text = std::fs::read_to_string(dir.join("sysregs.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "sysregs.txt line {l:?}");
            let value = u64::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap();
            ((f[0].parse().unwrap(), f[1].to_string()), value)
        })
        .collect()
}

/// `CPU NAME VADDR PADDR SOURCE` lines of translations.txt (PADDR `None` when unmapped).
pub(super) fn translations(dir: &Path) -> Vec<(usize, String, u64, Option<u64>)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let text = std::fs::read_to_string(dir.join("translations.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "translations.txt line {l:?}");
            let paddr = (f[3] != "-").then(|| hex(f[3]));
            (f[0].parse().unwrap(), f[1].to_string(), hex(f[2]), paddr)
        })
        .collect()
}

/// `KEY VALUE` lines of facts.txt.
pub(super) fn facts(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("facts.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `len` bytes at guest-physical `paddr` of QEMU's ELF (ELF64 little-endian, PT_LOAD segments
/// read from the program headers; a stand-alone reader, so the truth does not lean on guestcore).
fn read_phys(elf: &Path, paddr: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(elf).unwrap();
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).unwrap();
    assert_eq!(&eh[..6], b"\x7fELF\x02\x01", "{elf:?} is no ELF64 LE");
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(u16_at(&eh, 18), 183, "e_machine is not EM_AARCH64");
    let (phoff, phentsize, phnum) = (u64_at(&eh, 32), u16_at(&eh, 54), u16_at(&eh, 56));
    for i in 0..u64::from(phnum) {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * u64::from(phentsize)))
            .unwrap();
        f.read_exact(&mut ph).unwrap();
        let (p_type, offset, p_paddr, filesz) = (
            u32::from_le_bytes(ph[..4].try_into().unwrap()),
            u64_at(&ph, 8),
            u64_at(&ph, 24),
            u64_at(&ph, 32),
        );
        if p_type == 1 && (p_paddr..p_paddr + filesz).contains(&paddr) {
            let mut buf = vec![0u8; len];
            f.seek(SeekFrom::Start(offset + paddr - p_paddr)).unwrap();
            f.read_exact(&mut buf).unwrap();
            return buf;
        }
    }
    panic!("{elf:?} has no PT_LOAD holding 0x{paddr:x}");
}

/// The table base a TTBRn_EL1 value holds: BADDR bits 47..1 (CnP, bit 0, dropped; the tables
/// are at least 64-byte aligned) and, with TCR_EL1.DS (LPA2), PA bits 51..48 from TTBR bits 5..2.
fn ttbr_base(ttbr: u64, lpa2: bool) -> u64 {
    let base = ttbr & 0x0000_ffff_ffff_ffc0;
    if lpa2 {
        base | ((ttbr >> 2) & 0xf) << 48
    } else {
        base
    }
}

/// `va_bits`: what TCR_EL1.T1SZ gives; `kernel_va_bits`: the kernel's VA_BITS (VMCOREINFO),
/// which is more when a 52-bit kernel fell back to 47 bits on a CPU without LPA2.
fn coherent(guest: &str, granule: u64, va_bits: u64, kernel_va_bits: u64) {
    let Some(dir) = capture(guest) else { return };
    let regs = sysregs(&dir);
    let facts = facts(&dir);
    let trans = translations(&dir);
    let release = std::fs::read_to_string(dir.join("release.txt")).unwrap();
    let release = release.trim();
    let cpus: usize = facts["cpus"].parse().unwrap();
    assert_eq!(cpus, 2, "facts.txt: {facts:?}");

    let paddr_of = |cpu: usize, name: &str| {
        trans
            .iter()
            .find(|(c, n, _, _)| *c == cpu && n == name)
            .unwrap_or_else(|| panic!("{guest}: no {name} on vCPU {cpu} in translations.txt"))
            .3
    };
    // gdb's thread N+1 is CPU#N: its PC is the one HMP `info registers -a` prints for CPU#N.
    let hmp = std::fs::read_to_string(dir.join("registers.txt")).unwrap();
    let hmp_pcs: Vec<u64> = hmp
        .split("CPU#")
        .skip(1)
        .map(|cpu| {
            let pc = cpu.split_once("PC=").expect("PC= in registers.txt").1;
            u64::from_str_radix(&pc[..16], 16).unwrap()
        })
        .collect();
    let gdb_pcs: Vec<u64> = (0..cpus).map(|c| regs[&(c, "PC".to_string())]).collect();
    assert_eq!(
        gdb_pcs, hmp_pcs,
        "{guest}: PCs of sysregs.txt (gdb) {gdb_pcs:#x?} and registers.txt (HMP) {hmp_pcs:#x?}"
    );
    for cpu in 0..cpus {
        let tcr = regs[&(cpu, "TCR_EL1".to_string())];
        // T1SZ (bits 21..16): the kernel half's VA size, also in the guest's VMCOREINFO.
        let t1sz = (tcr >> 16) & 0x3f;
        assert_eq!(64 - t1sz, va_bits, "{guest} vCPU {cpu}: TCR_EL1 {tcr:#x}");
        assert_eq!(
            facts["vmcoreinfo-tcr-el1-t1sz"],
            format!("{t1sz:#x}"),
            "{guest}: VMCOREINFO's TCR_EL1_T1SZ against vCPU {cpu}'s TCR_EL1 {tcr:#x}"
        );
        // TG1 (bits 31..30): 0b10 = 4 KiB, 0b01 = 16 KiB, 0b11 = 64 KiB.
        let tg1 = match (tcr >> 30) & 3 {
            2 => 4096,
            1 => 16384,
            3 => 65536,
            other => panic!("{guest} vCPU {cpu}: TCR_EL1.TG1 {other}"),
        };
        assert_eq!(tg1, granule, "{guest} vCPU {cpu}: TCR_EL1 {tcr:#x}");
        let lpa2 = (tcr >> 59) & 1 == 1;
        assert_eq!(
            lpa2,
            va_bits == 52,
            "{guest} vCPU {cpu}: TCR_EL1.DS of {tcr:#x}"
        );
        // An idle vCPU runs the kernel on swapper_pg_dir.
        let ttbr1 = regs[&(cpu, "TTBR1_EL1".to_string())];
        assert_eq!(
            Some(ttbr_base(ttbr1, lpa2)),
            paddr_of(cpu, "swapper_pg_dir"),
            "{guest} vCPU {cpu}: TTBR1_EL1 {ttbr1:#x} against gva2gpa(swapper_pg_dir)"
        );
        // The MMU is on (SCTLR_EL1.M).
        assert_eq!(
            regs[&(cpu, "SCTLR_EL1".to_string())] & 1,
            1,
            "{guest} vCPU {cpu}"
        );
    }
    // The kernel half is one mapping for every vCPU.
    for (cpu, name, vaddr, paddr) in &trans {
        assert_eq!(
            *paddr,
            paddr_of(0, name),
            "{guest}: {name} ({vaddr:#x}) translates differently on vCPU {cpu} and vCPU 0"
        );
    }
    // QEMU's ELF holds the guest's release where gva2gpa puts init_uts_ns (new_utsname:
    // sysname[65], nodename[65], release[65]).
    let uts = paddr_of(0, "init_uts_ns").expect("init_uts_ns is mapped");
    let bytes = read_phys(&dir.join("phys.elf"), uts + 130, 65);
    let found = String::from_utf8_lossy(&bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(65)])
        .to_string();
    assert_eq!(
        found, release,
        "{guest}: release at gva2gpa(init_uts_ns)+130 of phys.elf"
    );
    // The guest printed VMCOREINFO of its own page size and VA size.
    assert_eq!(facts["vmcoreinfo-pagesize"], granule.to_string(), "{guest}");
    assert_eq!(
        facts["vmcoreinfo-va-bits"],
        kernel_va_bits.to_string(),
        "{guest}"
    );
    for f in ["kdump-zlib.dump", "migration.bin"] {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len > 1 << 20, "{guest}: {f} has only {len} bytes");
    }
}

#[test]
fn aarch64_4k_capture_is_coherent() {
    coherent("aarch64", 4096, 48, 48);
}

#[test]
fn aarch64_16k_lpa2_capture_is_coherent() {
    coherent("aarch64-16k", 16384, 52, 52);
}

#[test]
fn aarch64_16k_without_lpa2_capture_is_coherent() {
    coherent("aarch64-16k-47", 16384, 47, 52);
}
