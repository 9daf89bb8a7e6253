//! The aarch64 EL1&0 stage-1 translation regime as data: which tables each half of the
//! address space has, with which granule, how many levels and which of them hold blocks.
//!
//! Why here and not in the walker: the walker and the translator only read [`Level`]s, as they
//! do for x86. Everything that differs between the two architectures' *shapes* — the granule,
//! the start level that follows from TxSZ, the two roots — is decided once, from the registers,
//! in this file. The descriptor format is decoded in `entry`, beside x86's.
//!
//! Facts (Arm ARM DDI 0487, D8 "The AArch64 Virtual Memory System Architecture", and the
//! TCR_EL1 / TTBRn_EL1 / ID_AA64MMFR0_EL1 register descriptions):
//! * VA bit 55 selects the half: TTBR0_EL1 maps `0 .. 2^(64-T0SZ)`, TTBR1_EL1 maps
//!   `2^64 - 2^(64-T1SZ) .. 2^64`. TCR_EL1.EPD0/EPD1 (bits 7, 23) disable a half's walks.
//! * Granules: TG0 (bits 15:14) 00 = 4 KiB, 01 = 64 KiB, 10 = 16 KiB; TG1 (bits 31:30)
//!   01 = 16 KiB, 10 = 4 KiB, 11 = 64 KiB; the other encoding of each is reserved.
//! * A table of granule `2^g` bytes holds `2^(g-3)` descriptors, so each level resolves `g-3`
//!   VA bits; the walk starts at the level where the remaining `64-TxSZ` bits fit: 4 KiB with
//!   48 bits starts at level 0, with 39 at level 1, with 52 (TCR_EL1.DS, FEAT_LPA2) at level -1.
//!   TxSZ is 16..=48 (12 with the 64 KiB granule's FEAT_LVA, or with DS); the start table may
//!   be smaller than a granule.
//! * Blocks: 4 KiB granule at levels 1 and 2 (and 0 with DS), 16 KiB at level 2 (and 1 with DS),
//!   64 KiB at level 2 (and 1 when the implemented PA size is 52 bits, FEAT_LPA).
//! * Output size: TCR_EL1.IPS (bits 34:32), limited to ID_AA64MMFR0_EL1.PARange (bits 3:0),
//!   both encoded 0 = 32, 1 = 36, 2 = 40, 3 = 42, 4 = 44, 5 = 48, 6 = 52 bits; 52 only with the
//!   64 KiB granule (FEAT_LPA) or DS, 48 otherwise. With a 52-bit format, TTBR bits 5:2 are
//!   `BADDR[51:48]`.
//! * TCR_EL1.HPD0/HPD1 (bits 41, 42) disable the hierarchical attributes (APTable, XNTable) of
//!   a half; DS is bit 59.
//!
//! Not modelled (addresses are taken as given): TBI's ignored top byte, SCTLR_EL1.WXN and the
//! implicit PXN of EL0-writable pages, so the flags are the descriptors' own bits.

use super::mode::Level;
use crate::cpu::Aarch64CpuState;
use crate::{Error, Result};
use serde::Serialize;

/// The translation granule: the page size and the size of a (non-root) table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granule {
    /// 4 KiB pages, 512 descriptors per table.
    K4,
    /// 16 KiB pages, 2048 descriptors per table.
    K16,
    /// 64 KiB pages, 8192 descriptors per table.
    K64,
}

impl Granule {
    /// log2 of the page size: 12, 14 or 16.
    pub fn shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// The page size in bytes.
    pub fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The granule of a page size (VMCOREINFO's `PAGESIZE`).
    pub fn from_page_size(bytes: u64) -> Option<Self> {
        match bytes {
            4096 => Some(Granule::K4),
            16384 => Some(Granule::K16),
            65536 => Some(Granule::K64),
            _ => None,
        }
    }

    /// TCR_EL1.TG0's encoding (`None` for the reserved 0b11).
    pub fn from_tg0(tg0: u64) -> Option<Self> {
        match tg0 & 3 {
            0 => Some(Granule::K4),
            1 => Some(Granule::K64),
            2 => Some(Granule::K16),
            _ => None,
        }
    }

    /// TCR_EL1.TG1's encoding, which differs from TG0's (`None` for the reserved 0b00).
    pub fn from_tg1(tg1: u64) -> Option<Self> {
        match tg1 & 3 {
            1 => Some(Granule::K16),
            2 => Some(Granule::K4),
            3 => Some(Granule::K64),
            _ => None,
        }
    }
}

/// Which half of the address space, i.e. which TTBR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Ttbr {
    /// TTBR0_EL1: the low half (user space), VA bit 55 clear.
    Ttbr0,
    /// TTBR1_EL1: the high half (the kernel), VA bit 55 set.
    Ttbr1,
}

impl Ttbr {
    /// The register's name.
    pub fn name(self) -> &'static str {
        match self {
            Ttbr::Ttbr0 => "TTBR0_EL1",
            Ttbr::Ttbr1 => "TTBR1_EL1",
        }
    }
}

/// The most levels a half can have: -1, 0, 1, 2, 3.
pub(crate) const MAX_ARM_LEVELS: usize = 5;

/// The tables of one half of the address space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Aarch64Half {
    /// Which TTBR holds the root.
    pub ttbr: Ttbr,
    /// Physical address of the start-level table (TTBR's BADDR, aligned to the table).
    pub root: u64,
    /// The granule (TG0 or TG1).
    pub granule: Granule,
    /// Width of the half: `64 - TxSZ`.
    pub va_bits: u32,
    /// Output-address size in bits: what descriptor addresses are masked to.
    pub oa_bits: u32,
    /// TCR_EL1.DS (FEAT_LPA2) is in effect: 52-bit addresses in 4 KiB / 16 KiB descriptors,
    /// `OA[51:50]` in bits 9:8.
    pub ds: bool,
    /// TCR_EL1.HPDn: APTable and the XN table bits are ignored.
    pub hpd: bool,
    #[serde(skip)]
    levels: [Level; MAX_ARM_LEVELS],
    #[serde(skip)]
    count: usize,
}

const fn arm_level(name: &'static str, shift: u32, index_bits: u32, block: bool) -> Level {
    Level {
        name,
        shift,
        index_bits,
        large_leaf: block,
        has_perms: true,
        reserved: 0,
        reserved_large: 0,
    }
}

impl Aarch64Half {
    /// The half `ttbr` points at, for a TxSZ of `txsz`. `pa_max` is the implemented PA size
    /// (PARange), `ips_bits` the configured one (IPS). Fails on a TxSZ the granule cannot
    /// use. (Eight arguments: each is one register field, named where it is decoded.)
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ttbr: Ttbr,
        ttbr_value: u64,
        granule: Granule,
        txsz: u32,
        ds: bool,
        hpd: bool,
        ips_bits: u32,
        pa_max: u32,
    ) -> Result<Self> {
        let g = granule.shift();
        let ds = ds && granule != Granule::K64;
        let min_txsz = if ds || granule == Granule::K64 {
            12
        } else {
            16
        };
        let which = match ttbr {
            Ttbr::Ttbr0 => "T0SZ",
            Ttbr::Ttbr1 => "T1SZ",
        };
        if txsz < min_txsz || txsz > 48 || 64 - txsz <= g {
            let why = if (12..16).contains(&txsz) {
                " (52-bit VA needs TCR_EL1.DS=1 with a 4 KiB or 16 KiB granule)"
            } else {
                ""
            };
            return Err(Error::CpuState(format!(
                "TCR_EL1.{which}={txsz} is out of range for the {} KiB granule{why}",
                granule.bytes() >> 10
            )));
        }
        let va_bits = 64 - txsz;
        let stride = g - 3;
        let count = (va_bits - g).div_ceil(stride) as usize;
        let start = 4 - count as i32;
        let wide = ds || (granule == Granule::K64 && pa_max == 52);
        let oa_bits = ips_bits.min(pa_max).min(if wide { 52 } else { 48 });
        let mut levels = [arm_level("", 0, 0, false); MAX_ARM_LEVELS];
        for (i, slot) in levels.iter_mut().take(count).enumerate() {
            let n = start + i as i32;
            let shift = g + stride * (3 - n) as u32;
            let index_bits = if i == 0 { va_bits - shift } else { stride };
            let block = match (granule, n) {
                (Granule::K4, 1 | 2) | (Granule::K16, 2) | (Granule::K64, 2) => true,
                (Granule::K4, 0) | (Granule::K16, 1) => ds,
                (Granule::K64, 1) => pa_max == 52,
                _ => false,
            };
            let name = ["L-1", "L0", "L1", "L2", "L3"][(n + 1) as usize];
            *slot = arm_level(name, shift, index_bits, block);
        }
        let table_bytes = 8u64 << levels[0].index_bits;
        let mut root = ttbr_value & 0x0000_ffff_ffff_fffe;
        if ds || granule == Granule::K64 {
            root |= ((ttbr_value >> 2) & 0xf) << 48;
        }
        root &= !(table_bytes.max(64) - 1) & ((1u64 << oa_bits) - 1);
        Ok(Aarch64Half {
            ttbr,
            root,
            granule,
            va_bits,
            oa_bits,
            ds,
            hpd,
            levels,
            count,
        })
    }

    /// The levels from the start level down to level 3.
    pub fn levels(&self) -> &[Level] {
        &self.levels[..self.count]
    }

    /// The Arm level number of the start table (-1 ..= 3).
    pub fn start_level(&self) -> i32 {
        4 - self.count as i32
    }

    /// The lowest address of the half (0, or `2^64 - 2^va_bits`).
    pub fn va_start(&self) -> u64 {
        match self.ttbr {
            Ttbr::Ttbr0 => 0,
            Ttbr::Ttbr1 => !((1u64 << self.va_bits) - 1),
        }
    }

    /// True when `va` lies in this half.
    pub fn contains(&self, va: u64) -> bool {
        let top = va >> self.va_bits;
        match self.ttbr {
            Ttbr::Ttbr0 => top == 0,
            Ttbr::Ttbr1 => top == u64::MAX >> self.va_bits,
        }
    }

    /// The same half with its tables at the root `ttbr_value` names.
    pub fn with_ttbr(mut self, ttbr_value: u64) -> Self {
        let table_bytes = 8u64 << self.levels[0].index_bits;
        let mut root = ttbr_value & 0x0000_ffff_ffff_fffe;
        if self.ds || self.granule == Granule::K64 {
            root |= ((ttbr_value >> 2) & 0xf) << 48;
        }
        self.root = root & !(table_bytes.max(64) - 1) & ((1u64 << self.oa_bits) - 1);
        self
    }
}

/// An EL1&0 stage-1 regime: the halves that translate (a disabled or unknown half is `None`)
/// and the physical-address size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Aarch64Regime {
    /// TTBR0_EL1's half, unless TCR_EL1.EPD0 disables it or it is not known.
    pub low: Option<Aarch64Half>,
    /// TTBR1_EL1's half, unless TCR_EL1.EPD1 disables it or it is not known.
    pub high: Option<Aarch64Half>,
    /// The physical-address size (the MMU-off view covers `0 .. 2^pa_bits`).
    pub pa_bits: u32,
}

impl Aarch64Regime {
    /// The halves that translate, low first.
    pub fn halves(&self) -> impl Iterator<Item = &Aarch64Half> {
        self.low.iter().chain(self.high.iter())
    }

    /// The half that translates `va` (bit 55 selects), or why none does.
    pub fn half_for(&self, va: u64) -> std::result::Result<&Aarch64Half, String> {
        let (half, ttbr) = if va & (1 << 55) != 0 {
            (self.high.as_ref(), Ttbr::Ttbr1)
        } else {
            (self.low.as_ref(), Ttbr::Ttbr0)
        };
        let Some(half) = half else {
            return Err(format!(
                "{}'s half is disabled or unknown (TCR_EL1.EPD{} or no register)",
                ttbr.name(),
                ttbr as u8
            ));
        };
        if !half.contains(va) {
            return Err(format!(
                "outside {}'s {}-bit range",
                ttbr.name(),
                half.va_bits
            ));
        }
        Ok(half)
    }
}

/// TCR_EL1 / PARange size encodings, in bits (reserved values read as 52, the most there is;
/// the minimum with the other register applies).
pub(crate) fn pa_size_bits(encoding: u64) -> u32 {
    match encoding & 7 {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

const TCR_EPD0: u64 = 1 << 7;
const TCR_EPD1: u64 = 1 << 23;
const TCR_HPD0: u64 = 1 << 41;
const TCR_HPD1: u64 = 1 << 42;
const TCR_DS: u64 = 1 << 59;

/// What a vCPU's registers say: `Ok(None)` when the MMU is off (with the PA size), the regime
/// otherwise. Fails naming the registers a source lacks, or on a TCR_EL1 no CPU can use.
pub(crate) fn regime_of(cpu: &Aarch64CpuState) -> Result<(Option<Aarch64Regime>, u32)> {
    let pa_max = cpu.id_aa64mmfr0_el1.map_or(52, |r| pa_size_bits(r & 0xf));
    let ips = cpu.tcr_el1.map_or(pa_max, |t| pa_size_bits(t >> 32));
    if cpu.mmu_enabled() == Some(false) {
        return Ok((None, ips.min(pa_max)));
    }
    let tcr = cpu.tcr_el1;
    let needed: Vec<&str> = cpu
        .missing_translation_registers()
        .into_iter()
        .filter(|r| match (*r, tcr) {
            ("TTBR0_EL1", Some(t)) => t & TCR_EPD0 == 0,
            ("TTBR1_EL1", Some(t)) => t & TCR_EPD1 == 0,
            _ => true,
        })
        .collect();
    if !needed.is_empty() {
        return Err(Error::CpuState(format!(
            "aarch64 vCPU {} cannot be translated: the input lacks {}",
            cpu.index,
            needed.join(", ")
        )));
    }
    let tcr = tcr.unwrap_or(0);
    let ds = tcr & TCR_DS != 0;
    let half = |ttbr: Ttbr| -> Result<Option<Aarch64Half>> {
        let (epd, tg, txsz, hpd, value) = match ttbr {
            Ttbr::Ttbr0 => (
                TCR_EPD0,
                Granule::from_tg0((tcr >> 14) & 3).ok_or("TG0=0b11"),
                tcr & 0x3f,
                TCR_HPD0,
                cpu.ttbr0_el1,
            ),
            Ttbr::Ttbr1 => (
                TCR_EPD1,
                Granule::from_tg1((tcr >> 30) & 3).ok_or("TG1=0b00"),
                (tcr >> 16) & 0x3f,
                TCR_HPD1,
                cpu.ttbr1_el1,
            ),
        };
        if tcr & epd != 0 {
            return Ok(None);
        }
        let granule = tg.map_err(|enc| {
            Error::CpuState(format!(
                "TCR_EL1.{enc} is a reserved granule encoding (TCR_EL1={tcr:#x})"
            ))
        })?;
        Aarch64Half::new(
            ttbr,
            value.unwrap_or(0),
            granule,
            txsz as u32,
            ds,
            tcr & hpd != 0,
            ips,
            pa_max,
        )
        .map(Some)
    };
    let regime = Aarch64Regime {
        low: half(Ttbr::Ttbr0)?,
        high: half(Ttbr::Ttbr1)?,
        pa_bits: ips.min(pa_max),
    };
    Ok((Some(regime), ips.min(pa_max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(g: Granule, txsz: u32, ds: bool) -> Aarch64Half {
        Aarch64Half::new(Ttbr::Ttbr1, 0x4000_0000, g, txsz, ds, false, 52, 52).unwrap()
    }

    fn shape(h: &Aarch64Half) -> Vec<(&'static str, u32, u32, bool)> {
        h.levels()
            .iter()
            .map(|l| (l.name, l.shift, l.index_bits, l.large_leaf))
            .collect()
    }

    #[test]
    fn levels_follow_granule_and_txsz() {
        let h = half(Granule::K4, 16, false);
        assert_eq!(
            shape(&h),
            vec![
                ("L0", 39, 9, false),
                ("L1", 30, 9, true),
                ("L2", 21, 9, true),
                ("L3", 12, 9, false)
            ]
        );
        assert_eq!(half(Granule::K4, 25, false).start_level(), 1);
        let h = half(Granule::K4, 12, true);
        assert_eq!(shape(&h)[..2], [("L-1", 48, 4, false), ("L0", 39, 9, true)]);
        let h = half(Granule::K16, 17, false);
        assert_eq!(
            shape(&h),
            vec![
                ("L1", 36, 11, false),
                ("L2", 25, 11, true),
                ("L3", 14, 11, false)
            ]
        );
        let h = half(Granule::K16, 16, false);
        assert_eq!(shape(&h)[0], ("L0", 47, 1, false));
        assert!(
            half(Granule::K16, 12, true).levels()[1].large_leaf,
            "16K L1 blocks with DS"
        );
        let h = half(Granule::K64, 12, false);
        assert_eq!(
            shape(&h),
            vec![
                ("L1", 42, 10, true),
                ("L2", 29, 13, true),
                ("L3", 16, 13, false)
            ]
        );
        let h = Aarch64Half::new(Ttbr::Ttbr0, 0, Granule::K64, 22, false, false, 48, 48).unwrap();
        assert_eq!(
            shape(&h),
            vec![("L2", 29, 13, true), ("L3", 16, 13, false)],
            "42-bit VA with 64 KiB pages: two levels, no 4 TiB blocks below 52-bit PA"
        );
    }

    #[test]
    fn txsz_and_granule_encodings_checked() {
        for (g, txsz, ds) in [
            (Granule::K4, 12, false),
            (Granule::K4, 11, true),
            (Granule::K4, 49, false),
            (Granule::K64, 48, false),
        ] {
            let e = Aarch64Half::new(Ttbr::Ttbr0, 0, g, txsz, ds, false, 48, 48).unwrap_err();
            assert!(e.to_string().contains("T0SZ"), "{e}");
        }
        assert_eq!(Granule::from_tg0(1), Some(Granule::K64));
        assert_eq!(Granule::from_tg1(1), Some(Granule::K16));
        assert_eq!(Granule::from_tg0(3), None);
        assert_eq!(Granule::from_tg1(0), None);
    }

    #[test]
    fn ttbr_baddr_and_52_bit_roots() {
        // ASID and CnP dropped; 4 KiB 48-bit root aligned to its 4 KiB table.
        let h = Aarch64Half::new(
            Ttbr::Ttbr0,
            0x0042_0000_4123_4001,
            Granule::K4,
            16,
            false,
            false,
            48,
            48,
        )
        .unwrap();
        assert_eq!(h.root, 0x4123_4000);
        // 64 KiB with 52-bit PA: TTBR[5:2] are BADDR[51:48]; a 1024-entry root is 8 KiB aligned.
        let h = half(Granule::K64, 12, false).with_ttbr(0x8000_4000_203c);
        assert_eq!(h.root, 0xf_8000_4000_2000);
        // DS: BADDR[51:48] from bits 5:2; the 16-entry level -1 table is 128-byte aligned.
        let h = half(Granule::K4, 12, true).with_ttbr(0x1234_5678_9ac4);
        assert_eq!(h.root, 0x1_1234_5678_9a80);
    }

    #[test]
    fn halves_selected_by_bit_55() {
        let mut cpu = Aarch64CpuState::new(0);
        // T0SZ=25 (39 bits), TG0=4K, T1SZ=16 (48 bits), TG1=4K, IPS=40 bits.
        cpu.tcr_el1 = Some(25 | (16 << 16) | (2 << 30) | (2 << 32));
        cpu.ttbr0_el1 = Some(0x1000);
        cpu.ttbr1_el1 = Some(0x2000);
        cpu.sctlr_el1 = Some(1);
        let (r, pa) = regime_of(&cpu).unwrap();
        let r = r.unwrap();
        assert_eq!(pa, 40);
        assert_eq!(r.half_for(0x7f_ffff_f000).unwrap().root, 0x1000);
        assert!(r.half_for(0x80_0000_0000).unwrap_err().contains("39-bit"));
        assert_eq!(r.half_for(0xffff_0000_0000_0000).unwrap().root, 0x2000);
        assert!(r.half_for(0xff7f_0000_0000_0000).is_err());
        cpu.tcr_el1 = Some(cpu.tcr_el1.unwrap() | TCR_EPD0);
        cpu.ttbr0_el1 = None;
        let r = regime_of(&cpu).unwrap().0.unwrap();
        assert!(r.low.is_none());
        assert!(r.half_for(0x1000).unwrap_err().contains("EPD0"));
    }

    #[test]
    fn missing_registers_named() {
        let mut cpu = Aarch64CpuState::new(3);
        cpu.ttbr1_el1 = Some(0x4000);
        let e = regime_of(&cpu).unwrap_err().to_string();
        assert!(
            e.contains("TTBR0_EL1, TCR_EL1, SCTLR_EL1") && e.contains("vCPU 3"),
            "{e}"
        );
        cpu.sctlr_el1 = Some(0);
        assert_eq!(
            regime_of(&cpu).unwrap(),
            (None, 52),
            "MMU off needs no more"
        );
        cpu.sctlr_el1 = Some(1);
        cpu.tcr_el1 = Some(3 << 14 | 16 | 16 << 16 | 2 << 30);
        cpu.ttbr0_el1 = Some(0);
        let e = regime_of(&cpu).unwrap_err().to_string();
        assert!(e.contains("TG0=0b11"), "{e}");
    }
}
