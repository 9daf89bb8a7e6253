//! aarch64 test support: an independent reference translator for the EL1&0 stage-1 regime,
//! a table builder for the 4 KiB, 16 KiB and 64 KiB granules (48-bit and 52-bit formats), and
//! random hostile table sets.
//!
//! The reference is written from the Arm ARM (DDI 0487, D8: the start-level tables per granule
//! and TxSZ, the descriptor formats, the hierarchical permissions) as one straight function,
//! without guestcore's `paging` code, so a mistake there cannot hide in both. It is slow and
//! explicit on purpose.

use crate::memory::SparseMemory;
use crate::random::Rng;
use guestcore::cpu::Aarch64CpuState;
use guestcore::phys::PhysMemory;

/// TCR_EL1 fields the builders set.
pub mod tcr {
    /// EPD0: no walks through TTBR0.
    pub const EPD0: u64 = 1 << 7;
    /// EPD1: no walks through TTBR1.
    pub const EPD1: u64 = 1 << 23;
    /// HPD0: no hierarchical attributes in TTBR0's tables.
    pub const HPD0: u64 = 1 << 41;
    /// HPD1: no hierarchical attributes in TTBR1's tables.
    pub const HPD1: u64 = 1 << 42;
    /// DS: FEAT_LPA2's 52-bit formats for 4 KiB and 16 KiB granules.
    pub const DS: u64 = 1 << 59;
}

/// Descriptor bits the builders write.
pub mod desc {
    /// Valid.
    pub const VALID: u64 = 1;
    /// Table (above level 3) or page (level 3).
    pub const TABLE: u64 = 2;
    /// `AP[1]`: EL0 access.
    pub const AP_EL0: u64 = 1 << 6;
    /// `AP[2]`: read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// AF.
    pub const AF: u64 = 1 << 10;
    /// nG.
    pub const NG: u64 = 1 << 11;
    /// DBM.
    pub const DBM: u64 = 1 << 51;
    /// Contiguous hint.
    pub const CONT: u64 = 1 << 52;
    /// PXN.
    pub const PXN: u64 = 1 << 53;
    /// UXN.
    pub const UXN: u64 = 1 << 54;
    /// PXNTable.
    pub const PXN_TABLE: u64 = 1 << 59;
    /// UXNTable.
    pub const UXN_TABLE: u64 = 1 << 60;
    /// `APTable[0]`: no EL0 access below.
    pub const AP_TABLE_EL0: u64 = 1 << 61;
    /// `APTable[1]`: no write below.
    pub const AP_TABLE_RO: u64 = 1 << 62;
}

/// Where an aarch64 virtual address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArmRefTranslation {
    /// Physical address of the byte.
    pub pa: u64,
    /// Size of the page or block that maps it.
    pub page_size: u64,
    /// Writable: `AP[2]` clear and no `APTable[1]` above.
    pub write: bool,
    /// EL0-accessible: `AP[1]` set and no `APTable[0]` above.
    pub user: bool,
    /// PXN or PXNTable above.
    pub pxn: bool,
    /// UXN or UXNTable above.
    pub uxn: bool,
    /// A block (not a page).
    pub block: bool,
}

/// Granule in bytes from TG0's encoding (00 4K, 01 64K, 10 16K).
fn tg0_bytes(tcr: u64) -> Option<u64> {
    match (tcr >> 14) & 3 {
        0 => Some(4096),
        1 => Some(65536),
        2 => Some(16384),
        _ => None,
    }
}

/// Granule in bytes from TG1's encoding (01 16K, 10 4K, 11 64K).
fn tg1_bytes(tcr: u64) -> Option<u64> {
    match (tcr >> 30) & 3 {
        1 => Some(16384),
        2 => Some(4096),
        3 => Some(65536),
        _ => None,
    }
}

/// Start level from the Arm ARM's tables of TxSZ per granule.
pub fn start_level(granule: u64, txsz: u32) -> Option<i32> {
    Some(match granule {
        4096 => match txsz {
            12..=15 => -1,
            16..=24 => 0,
            25..=33 => 1,
            34..=42 => 2,
            43..=48 => 3,
            _ => return None,
        },
        16384 => match txsz {
            12..=16 => 0,
            17..=27 => 1,
            28..=38 => 2,
            39..=48 => 3,
            _ => return None,
        },
        65536 => match txsz {
            12..=21 => 1,
            22..=34 => 2,
            35..=47 => 3,
            _ => return None,
        },
        _ => return None,
    })
}

/// VA bits a level resolves: its lowest bit and its width (the start level takes what is left).
fn level_bits(granule: u64, level: i32) -> (u32, u32) {
    let (page, per) = match granule {
        4096 => (12, 9),
        16384 => (14, 11),
        _ => (16, 13),
    };
    (page + per * (3 - level) as u32, per)
}

fn pa_bits_of(enc: u64) -> u32 {
    [32, 36, 40, 42, 44, 48, 52, 52][(enc & 7) as usize]
}

fn block_allowed(granule: u64, level: i32, ds: bool, pa_max: u32) -> bool {
    match granule {
        4096 => level == 1 || level == 2 || (level == 0 && ds),
        16384 => level == 2 || (level == 1 && ds),
        _ => level == 2 || (level == 1 && pa_max == 52),
    }
}

/// Translates `va` the way an EL1&0 stage-1 walk does. `None` when it faults or the registers
/// are missing or invalid.
pub fn translate<M: PhysMemory + ?Sized>(
    mem: &M,
    cpu: &Aarch64CpuState,
    va: u64,
) -> Option<ArmRefTranslation> {
    let sctlr = cpu.sctlr_el1?;
    let pa_max = cpu.id_aa64mmfr0_el1.map_or(52, |r| pa_bits_of(r & 0xf));
    let ips = cpu.tcr_el1.map_or(pa_max, |t| pa_bits_of(t >> 32));
    if sctlr & 1 == 0 {
        let bits = ips.min(pa_max);
        return (va >> bits == 0).then_some(ArmRefTranslation {
            pa: va,
            page_size: 4096,
            write: true,
            user: true,
            pxn: false,
            uxn: false,
            block: false,
        });
    }
    let tcr = cpu.tcr_el1?;
    let high = (va >> 55) & 1 == 1;
    let (txsz, granule, epd, hpd, ttbr) = if high {
        (
            ((tcr >> 16) & 0x3f) as u32,
            tg1_bytes(tcr)?,
            tcr & tcr::EPD1 != 0,
            tcr & tcr::HPD1 != 0,
            cpu.ttbr1_el1,
        )
    } else {
        (
            (tcr & 0x3f) as u32,
            tg0_bytes(tcr)?,
            tcr & tcr::EPD0 != 0,
            tcr & tcr::HPD0 != 0,
            cpu.ttbr0_el1,
        )
    };
    if epd {
        return None;
    }
    let ttbr = ttbr?;
    let ds = tcr & tcr::DS != 0 && granule != 65536;
    if txsz < 16 && !(ds || granule == 65536) {
        return None;
    }
    let start = start_level(granule, txsz)?;
    let va_bits = 64 - txsz;
    // The address must be all zeros (TTBR0) or all ones (TTBR1) above the half.
    let upper = va >> va_bits;
    if (high && upper != u64::MAX >> va_bits) || (!high && upper != 0) {
        return None;
    }
    let lpa = granule == 65536 && pa_max == 52;
    let oa = ips.min(pa_max).min(if ds || lpa { 52 } else { 48 });
    let oa_mask = (1u64 << oa) - 1;
    // OA of a descriptor or TTBR whose address field starts at `low`.
    let out = |d: u64, low: u32| -> u64 {
        let mut a = d & 0x0000_ffff_ffff_ffff & !((1u64 << low) - 1);
        if ds {
            a |= d & (3 << 48);
            a |= ((d >> 8) & 3) << 50;
        } else if granule == 65536 {
            a |= ((d >> 12) & 0xf) << 48;
        }
        a & oa_mask
    };
    // The start table: BADDR aligned to its size (at least 64 bytes), with BADDR[51:48] in
    // TTBR[5:2] in the 52-bit formats.
    let (start_low, _) = level_bits(granule, start);
    let start_entries = 1u64 << (va_bits - start_low);
    let align = (start_entries * 8).max(64);
    let mut table = ttbr & 0x0000_ffff_ffff_fffe & !(align - 1);
    if ds || granule == 65536 {
        table |= ((ttbr >> 2) & 0xf) << 48;
    }
    table &= oa_mask;
    let (mut write, mut user, mut pxn, mut uxn) = (true, true, false, false);
    for level in start..=3 {
        let (low, width) = level_bits(granule, level);
        let width = if level == start { va_bits - low } else { width };
        let index = (va >> low) & ((1u64 << width) - 1);
        let d = mem.read_u64(table + index * 8).ok()?;
        if d & desc::VALID == 0 {
            return None;
        }
        let is_table_or_page = d & desc::TABLE != 0;
        if level == 3 && !is_table_or_page {
            return None; // reserved type
        }
        if level < 3 && is_table_or_page {
            if !hpd {
                write &= d & desc::AP_TABLE_RO == 0;
                user &= d & desc::AP_TABLE_EL0 == 0;
                pxn |= d & desc::PXN_TABLE != 0;
                uxn |= d & desc::UXN_TABLE != 0;
            }
            table = out(d, level_bits(granule, 3).0);
            continue;
        }
        if level < 3 && !block_allowed(granule, level, ds, pa_max) {
            return None;
        }
        let size = 1u64 << low;
        return Some(ArmRefTranslation {
            pa: out(d, low) | (va & (size - 1)),
            page_size: size,
            write: write && d & desc::AP_RO == 0,
            user: user && d & desc::AP_EL0 != 0,
            pxn: pxn || d & desc::PXN != 0,
            uxn: uxn || d & desc::UXN != 0,
            block: level < 3,
        });
    }
    None
}

/// Builds aarch64 page tables into RAM: both halves with one granule and one VA size.
#[derive(Debug, Clone)]
pub struct Aarch64Builder {
    mem: SparseMemory,
    granule: u64,
    va_bits: u32,
    ds: bool,
    pa_max: u32,
    next: u64,
    end: u64,
    roots: [u64; 2],
    /// Extra TCR_EL1 bits (EPDn, HPDn).
    pub tcr_extra: u64,
}

impl Aarch64Builder {
    /// `granule` bytes (4096, 16384, 65536), `va_bits` per half, RAM at `ranges`; tables are
    /// allocated upwards from `tables_at` (granule-aligned, inside one RAM range). `pa_max` is
    /// the PA size (52 turns on the 52-bit formats: DS for 4 KiB / 16 KiB, LPA for 64 KiB).
    ///
    /// # Panics
    /// On a VA size the granule cannot have (test-support code).
    pub fn new(
        granule: u64,
        va_bits: u32,
        pa_max: u32,
        ranges: &[(u64, u64)],
        tables_at: u64,
    ) -> Self {
        let ds = pa_max == 52 && granule != 65536;
        start_level(granule, 64 - va_bits).expect("VA size fits the granule");
        let mem = SparseMemory::new(ranges);
        let end = ranges
            .iter()
            .find(|(s, l)| (*s..s + l).contains(&tables_at))
            .map(|(s, l)| s + l)
            .expect("tables inside RAM");
        let mut b = Aarch64Builder {
            mem,
            granule,
            va_bits,
            ds,
            pa_max,
            next: tables_at,
            end,
            roots: [0; 2],
            tcr_extra: 0,
        };
        b.roots = [b.alloc(), b.alloc()];
        b
    }

    /// A fresh zeroed table frame.
    pub fn alloc(&mut self) -> u64 {
        let f = self.next;
        assert!(f + self.granule <= self.end, "table RAM exhausted");
        self.next += self.granule;
        f
    }

    /// The end of the table frames allocated so far (they start at `tables_at`).
    pub fn tables_end(&self) -> u64 {
        self.next
    }

    /// The start level.
    pub fn start_level(&self) -> i32 {
        start_level(self.granule, 64 - self.va_bits).expect("checked in new")
    }

    /// The root of TTBR0's (0) or TTBR1's (1) half.
    pub fn root(&self, half: usize) -> u64 {
        self.roots[half]
    }

    /// Points TTBR0 (0) or TTBR1 (1) at `table`.
    pub fn set_root(&mut self, half: usize, table: u64) {
        self.roots[half] = table;
    }

    /// The memory so far.
    pub fn memory(&self) -> &SparseMemory {
        &self.mem
    }

    /// Writes `value` at `pa`.
    pub fn write_u64(&mut self, pa: u64, value: u64) {
        self.mem.write_u64(pa, value);
    }

    /// Encodes output address `pa` into a descriptor (52-bit formats as configured).
    pub fn encode_oa(&self, pa: u64) -> u64 {
        let low = pa & 0x0000_ffff_ffff_ffff;
        if self.ds {
            (pa & 0x0003_ffff_ffff_ffff) | ((pa >> 50) & 3) << 8
        } else if self.granule == 65536 {
            (low & !0xffff) | ((pa >> 48) & 0xf) << 12
        } else {
            low
        }
    }

    /// Address of the descriptor for `va` at `level` (Arm numbering), creating the tables
    /// above it. `None` when an entry above is a block or an unbuilt hostile value.
    pub fn entry_addr(&mut self, va: u64, level: i32) -> Option<u64> {
        let half = ((va >> 55) & 1) as usize;
        let mut table = self.roots[half];
        let start = self.start_level();
        for l in start..=level {
            let (low, width) = level_bits(self.granule, l);
            let width = if l == start {
                self.va_bits - low
            } else {
                width
            };
            let at = table + ((va >> low) & ((1 << width) - 1)) * 8;
            if l == level {
                return Some(at);
            }
            let d = self.mem.read_u64(at).ok()?;
            if d == 0 {
                let t = self.alloc();
                self.mem
                    .write_u64(at, self.encode_oa(t) | desc::TABLE | desc::VALID);
                table = t;
            } else if d & 3 == 3 {
                table = self.decode_table(d);
            } else {
                return None;
            }
        }
        None
    }

    fn decode_table(&self, d: u64) -> u64 {
        let mut a = d & 0x0000_ffff_ffff_f000 & !(self.granule - 1);
        if self.ds {
            a |= d & (3 << 48);
            a |= ((d >> 8) & 3) << 50;
        } else if self.granule == 65536 {
            a |= ((d >> 12) & 0xf) << 48;
        }
        a
    }

    /// Level whose entries map `size` bytes (a page, or a block size).
    pub fn level_of(&self, size: u64) -> i32 {
        (-1..=3)
            .find(|&l| 1u64.checked_shl(level_bits(self.granule, l).0) == Some(size))
            .expect("size is a page or block size of the granule")
    }

    /// Maps `size` bytes (page or block) at `va` to `pa` with the descriptor bits `attrs`
    /// (AF is added; AP, XN, nG … as given).
    pub fn map(&mut self, va: u64, pa: u64, size: u64, attrs: u64) {
        let level = self.level_of(size);
        let at = self
            .entry_addr(va, level)
            .expect("path to the entry is tables");
        let kind = if level == 3 { desc::TABLE } else { 0 };
        self.mem.write_u64(
            at,
            self.encode_oa(pa) | attrs | desc::AF | kind | desc::VALID,
        );
    }

    /// ORs `bits` into the table descriptor above `va` at `level` (APTable, XNTable…).
    pub fn table_attrs(&mut self, va: u64, level: i32, bits: u64) {
        let at = self.entry_addr(va, level).expect("path exists");
        let d = self.mem.read_u64(at).expect("in RAM");
        self.mem.write_u64(at, d | bits);
    }

    /// The TCR_EL1 value: both halves at `va_bits`, the granule, IPS = PA size, DS as needed.
    pub fn tcr(&self) -> u64 {
        let txsz = (64 - self.va_bits) as u64;
        let (tg0, tg1) = match self.granule {
            4096 => (0, 2),
            16384 => (2, 1),
            _ => (1, 3),
        };
        let ips: u64 = match self.pa_max {
            32 => 0,
            36 => 1,
            40 => 2,
            42 => 3,
            44 => 4,
            48 => 5,
            _ => 6,
        };
        let ds = if self.ds { tcr::DS } else { 0 };
        txsz | tg0 << 14 | txsz << 16 | tg1 << 30 | ips << 32 | ds | self.tcr_extra
    }

    /// A TTBR value naming `table` (`BADDR[51:48]` in bits 5:2 in the 52-bit formats).
    pub fn ttbr(&self, table: u64) -> u64 {
        if self.ds || self.granule == 65536 {
            (table & 0x0000_ffff_ffff_ffc0) | ((table >> 48) & 0xf) << 2
        } else {
            table
        }
    }

    /// A vCPU with the MMU on and these tables.
    pub fn cpu(&self) -> Aarch64CpuState {
        let mut c = Aarch64CpuState::new(0);
        c.pstate = 0x3c5;
        c.sctlr_el1 = Some(0x30d0_199d);
        c.tcr_el1 = Some(self.tcr());
        c.ttbr0_el1 = Some(self.ttbr(self.roots[0]) | 0x0001_0000_0000_0000);
        c.ttbr1_el1 = Some(self.ttbr(self.roots[1]));
        let parange = match self.pa_max {
            52 => 6,
            48 => 5,
            44 => 4,
            42 => 3,
            40 => 2,
            36 => 1,
            _ => 0,
        };
        c.id_aa64mmfr0_el1 = Some(parange);
        c
    }

    /// The memory.
    pub fn into_memory(self) -> SparseMemory {
        self.mem
    }
}

/// A random hostile aarch64 table set: frames of random descriptors (tables pointing at any
/// frame, both roots included, blocks at every level, reserved types, garbage), random EPDn,
/// HPDn, roots that may be shared by both halves.
#[derive(Debug, Clone)]
pub struct RandomArmTables {
    /// The memory.
    pub memory: SparseMemory,
    /// The vCPU.
    pub cpu: Aarch64CpuState,
    /// Granule in bytes.
    pub granule: u64,
    /// VA bits of both halves.
    pub va_bits: u32,
    /// The table indices entries were placed at.
    pub index_pool: Vec<u64>,
}

/// RAM of random aarch64 table sets: two ranges, one above 4 GiB.
pub const RANDOM_ARM_RAM: [(u64, u64); 2] = [(0x4000_0000, 0x20_0000), (0x8_0000_0000, 0x4_0000)];

impl RandomArmTables {
    /// A set for `granule` bytes and `va_bits` (52 turns on DS or LPA).
    pub fn generate(granule: u64, va_bits: u32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let pa_max = if va_bits == 52 || rng.chance(20) {
            52
        } else {
            48
        };
        let mut b = Aarch64Builder::new(granule, va_bits, pa_max, &RANDOM_ARM_RAM, 0x4000_0000);
        let entries = granule / 8;
        let index_pool: Vec<u64> = vec![0, 1, 2, entries / 2 - 1, entries / 2, entries - 1];
        let mut frames: Vec<u64> = (0..6).map(|_| b.alloc()).collect();
        frames.extend(b.roots);
        let far = 0x8_0000_0000;
        if granule <= 0x4_0000 {
            frames.push(far);
        }
        let targets: Vec<u64> = vec![
            0,
            0x4000_0000,
            0x4010_0000,
            0x4020_0000,
            0x8_0000_0000,
            0xf_0000_0000_0000 | 0x4000_0000,
            0x3_0000_0000_0000,
            0x1_0000_0000_0000 | 0x8_0000_0000,
        ];
        for &f in &frames {
            for _ in 0..3 + rng.below(8) {
                let idx = rng.pick(&index_pool);
                let d = random_desc(&mut rng, &b, &frames, &targets);
                b.write_u64(f + idx * 8, d);
            }
        }
        // Roots: usually each its own, sometimes shared or swapped (loops across halves).
        if rng.chance(15) {
            let r = rng.pick(&frames);
            b.set_root(rng.below(2) as usize, r);
        }
        if rng.chance(10) {
            b.tcr_extra |= tcr::EPD0;
        }
        if rng.chance(10) {
            b.tcr_extra |= tcr::EPD1;
        }
        if rng.chance(15) {
            b.tcr_extra |= tcr::HPD0 | tcr::HPD1;
        }
        let cpu = b.cpu();
        RandomArmTables {
            memory: b.into_memory(),
            cpu,
            granule,
            va_bits,
            index_pool,
        }
    }

    /// An address in either half whose walk mostly goes through the pool indices.
    pub fn random_va(&self, rng: &mut Rng) -> u64 {
        let start = start_level(self.granule, 64 - self.va_bits).unwrap_or(0);
        let mut va = 0u64;
        for l in start..=3 {
            let (low, width) = level_bits(self.granule, l);
            let width = if l == start {
                self.va_bits - low
            } else {
                width
            };
            let idx = if rng.chance(90) {
                rng.pick(&self.index_pool) & ((1 << width) - 1)
            } else {
                rng.below(1 << width)
            };
            va |= idx << low;
        }
        va |= rng.below(self.granule);
        if rng.chance(50) {
            va |= !((1u64 << self.va_bits) - 1);
        }
        if rng.chance(3) {
            va ^= 1 << rng.pick(&[55u64, 60, 63, self.va_bits as u64]);
        }
        va
    }
}

fn random_desc(rng: &mut Rng, b: &Aarch64Builder, frames: &[u64], targets: &[u64]) -> u64 {
    let attrs = |rng: &mut Rng| {
        let mut a = 0;
        for bit in [
            desc::AP_EL0,
            desc::AP_RO,
            desc::AF,
            desc::NG,
            desc::DBM,
            desc::CONT,
            desc::PXN,
            desc::UXN,
            desc::PXN_TABLE,
            desc::UXN_TABLE,
            desc::AP_TABLE_EL0,
            desc::AP_TABLE_RO,
        ] {
            if rng.chance(25) {
                a |= bit;
            }
        }
        a
    };
    match rng.below(100) {
        0..=49 => b.encode_oa(rng.pick(frames)) | attrs(rng) | 3,
        50..=74 => b.encode_oa(rng.pick(targets)) | attrs(rng) | 1,
        75..=84 => b.encode_oa(rng.pick(targets)) | attrs(rng) | 3,
        85..=91 => rng.next_u64() | 1,
        _ => rng.next_u64() & !1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_maps_what_the_reference_reads() {
        for (g, va_bits, pa) in [
            (4096u64, 48u32, 48u32),
            (4096, 52, 52),
            (16384, 47, 48),
            (65536, 52, 52),
        ] {
            let mut b =
                Aarch64Builder::new(g, va_bits, pa, &[(0x4000_0000, 0x100_0000)], 0x4000_0000);
            let hi = !((1u64 << va_bits) - 1) | (0x1234 * g);
            b.map(hi, 0x4080_0000, g, desc::UXN);
            b.map(0x40 * g, 0x4090_0000, g, desc::AP_EL0 | desc::PXN);
            let cpu = b.cpu();
            let mem = b.into_memory();
            let t = translate(&mem, &cpu, hi + 5).unwrap();
            assert_eq!(
                (t.pa, t.page_size, t.uxn, t.user),
                (0x4080_0005, g, true, false)
            );
            let t = translate(&mem, &cpu, 0x40 * g).unwrap();
            assert_eq!((t.pa, t.user, t.pxn), (0x4090_0000, true, true));
            assert_eq!(translate(&mem, &cpu, 0x41 * g), None);
        }
    }
}
