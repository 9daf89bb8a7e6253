//! Paging modes as data. A mode is a list of [`Level`]s from the root down plus a few masks;
//! the walker and the translator read only this description.

use super::aarch64::{regime_of, Aarch64Half, Aarch64Regime, Granule, Ttbr};
use crate::cpu::{
    Aarch64CpuState, CpuState, X86CpuState, CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME,
    EFER_NXE,
};
use crate::{Error, Result};
use serde::Serialize;

/// The paging modes: x86's, and aarch64's EL1&0 stage-1 regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeKind {
    /// CR0.PG = 0: linear = physical (32-bit).
    Off,
    /// 32-bit paging, 2 levels of 1024 4-byte entries (4 MiB leaves with CR4.PSE, PSE-36).
    Bits32,
    /// PAE: 4 PDPTEs + 2 levels of 512 8-byte entries (2 MiB leaves).
    Pae,
    /// IA-32e 4-level (48-bit linear; 2 MiB and 1 GiB leaves).
    Level4,
    /// IA-32e 5-level, CR4.LA57 (57-bit linear).
    Level5,
    /// aarch64 EL1&0 stage 1 with the MMU on: TTBR0's and TTBR1's halves, each with its own
    /// granule and size ([`PagingMode::aarch64`]). With the MMU off an aarch64 mode is `Off`.
    Aarch64,
}

impl ModeKind {
    /// Short name: `off`, `32-bit`, `pae`, `4-level`, `5-level`.
    pub fn name(self) -> &'static str {
        match self {
            ModeKind::Off => "off",
            ModeKind::Bits32 => "32-bit",
            ModeKind::Pae => "pae",
            ModeKind::Level4 => "4-level",
            ModeKind::Level5 => "5-level",
            ModeKind::Aarch64 => "aarch64",
        }
    }
}

/// One level of a page-table hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Level {
    /// The SDM's name of this level's table: `PML5`, `PML4`, `PDPT`, `PD`, `PT`; on aarch64 the
    /// Arm ARM's level number: `L-1`, `L0`, `L1`, `L2`, `L3`.
    pub name: &'static str,
    /// Linear-address bit where this level's index starts.
    pub shift: u32,
    /// Width of the index (10, 9, or 2 for PAE's PDPT).
    pub index_bits: u32,
    /// An entry with PS=1 here (on aarch64: a block descriptor) is a leaf of `1 << shift` bytes.
    pub large_leaf: bool,
    /// R/W, U/S and XD are defined here (false for PAE PDPTEs, which only have P).
    pub has_perms: bool,
    /// Bits that must be zero in a present non-leaf entry (or any entry of this level).
    pub reserved: u64,
    /// Extra bits that must be zero when the entry is a large leaf.
    pub reserved_large: u64,
}

impl Level {
    /// Number of entries in one table of this level.
    pub fn entries(&self) -> usize {
        1 << self.index_bits
    }
    /// Bytes mapped by one entry.
    pub fn span(&self) -> u64 {
        1 << self.shift
    }
}

const fn level(name: &'static str, shift: u32, index_bits: u32, large_leaf: bool) -> Level {
    Level {
        name,
        shift,
        index_bits,
        large_leaf,
        has_perms: true,
        reserved: 0,
        reserved_large: 0,
    }
}

/// PS (bit 7) is reserved in PML4Es and PML5Es.
const PS: u64 = 1 << 7;
/// 2 MiB leaves: bits 20:13 reserved. 1 GiB leaves: bits 29:13.
const RSVD_2M: u64 = 0x1f_e000;
const RSVD_1G: u64 = 0x3fff_e000;

static LEVELS_32: [Level; 2] = [level("PD", 22, 10, true), level("PT", 12, 10, false)];
static LEVELS_32_NOPSE: [Level; 2] = [level("PD", 22, 10, false), level("PT", 12, 10, false)];
/// PAE (unlike IA-32e, where they are ignored or protection keys) reserves bits 62:52 of every
/// entry (SDM tables 4-8..4-11: "62:M reserved").
const RSVD_PAE_HIGH: u64 = 0x7ff0_0000_0000_0000;
static LEVELS_PAE: [Level; 3] = [
    Level {
        has_perms: false,
        // Bits 2:1 and 63:52 are reserved in PAE PDPTEs. The SDM also reserves bits 8:5, but
        // QEMU's TCG sets the accessed bit (5) in PDPTEs and accepts them, so real PAE guests
        // under QEMU carry it: bits 8:5 are treated as ignored, as QEMU does.
        reserved: 0x6 | (1 << 63) | RSVD_PAE_HIGH,
        ..level("PDPT", 30, 2, false)
    },
    Level {
        reserved: RSVD_PAE_HIGH,
        reserved_large: RSVD_2M,
        ..level("PD", 21, 9, true)
    },
    Level {
        reserved: RSVD_PAE_HIGH,
        ..level("PT", 12, 9, false)
    },
];
/// The IA-32e levels, shared by 4- and 5-level paging (5-level adds PML5 above PML4).
const PML5: Level = Level {
    reserved: PS,
    ..level("PML5", 48, 9, false)
};
const PML4: Level = Level {
    reserved: PS,
    ..level("PML4", 39, 9, false)
};
const PDPT: Level = Level {
    reserved_large: RSVD_1G,
    ..level("PDPT", 30, 9, true)
};
const PD: Level = Level {
    reserved_large: RSVD_2M,
    ..level("PD", 21, 9, true)
};
const PT: Level = level("PT", 12, 9, false);
static LEVELS_4: [Level; 4] = [PML4, PDPT, PD, PT];
static LEVELS_5: [Level; 5] = [PML5, PML4, PDPT, PD, PT];

/// A complete description of how one vCPU translates linear addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PagingMode {
    /// Which of the x86 paging modes (off, 32-bit, PAE, 4-level, 5-level).
    pub kind: ModeKind,
    /// Physical address of the root table (CR3 masked: bits 31:12 for 32-bit, 31:5 for PAE,
    /// 51:12 for IA-32e).
    pub root: u64,
    /// Execute-disable bit (63) is defined (EFER.NXE); without it bit 63 is reserved.
    pub nxe: bool,
    /// Mask applied to every physical address the walk forms: clears bit 20 when A20 is off.
    pub a20_mask: u64,
    /// MAXPHYADDR: physical-address width; entry bits from here to 51 are reserved (default 52).
    pub phys_bits: u32,
    /// CR4.PSE: 4 MiB leaves in 32-bit paging (always on in PAE and IA-32e).
    pub pse: bool,
    /// aarch64 only: the halves and their tables (`None` on x86). An aarch64 mode with the MMU
    /// off is `Off` with a regime that has no halves; its `phys_bits` is the PA size, which
    /// bounds the identity view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aarch64: Option<Box<Aarch64Regime>>,
}

/// One hierarchy of tables a mode walks: x86 has one, aarch64 one per enabled half.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tables<'a> {
    /// Physical address of the root table.
    pub root: u64,
    /// The levels from the root down.
    pub levels: &'a [Level],
    /// The aarch64 half (`None` on x86).
    pub half: Option<&'a Aarch64Half>,
    /// Sign-extend leaf addresses from this many bits (IA-32e), or 0.
    canonical_bits: u32,
}

impl Tables<'_> {
    /// The full virtual address of the walk offset `va` (the index bits only).
    pub(crate) fn place(&self, va: u64) -> u64 {
        match self.half {
            Some(h) => h.va_start() | va,
            None if self.canonical_bits != 0 => crate::addr::canonical(va, self.canonical_bits),
            None => va,
        }
    }
}

impl PagingMode {
    /// The mode the given vCPU of any architecture is in.
    pub fn from_state(cpu: &CpuState) -> Result<Self> {
        match cpu {
            CpuState::X86(c) => Self::from_cpu(c),
            CpuState::Aarch64(c) => Self::aarch64(c),
        }
    }

    /// The mode the given vCPU is in. Fails on register combinations no x86 CPU can be in.
    pub fn from_cpu(cpu: &X86CpuState) -> Result<Self> {
        let cr4 = cpu.cr4();
        let lma = cpu.long_mode();
        let kind = if !cpu.paging_enabled() {
            if lma {
                return Err(Error::CpuState(
                    "EFER.LMA=1 with CR0.PG=0 (long mode requires paging)".into(),
                ));
            }
            ModeKind::Off
        } else if lma {
            if cr4 & CR4_PAE == 0 {
                return Err(Error::CpuState("EFER.LMA=1 with CR4.PAE=0".into()));
            }
            if cr4 & CR4_LA57 != 0 {
                ModeKind::Level5
            } else {
                ModeKind::Level4
            }
        } else if cr4 & CR4_PAE != 0 {
            if cr4 & CR4_LA57 != 0 {
                return Err(Error::CpuState(
                    "CR4.LA57=1 outside long mode (PAE paging with EFER.LMA=0)".into(),
                ));
            }
            ModeKind::Pae
        } else {
            ModeKind::Bits32
        };
        let mode = PagingMode {
            kind,
            root: 0,
            nxe: cpu.efer & EFER_NXE != 0,
            a20_mask: if cpu.a20_enabled { !0 } else { !(1 << 20) },
            phys_bits: 52,
            pse: cr4 & CR4_PSE != 0,
            aarch64: None,
        };
        Ok(mode.with_cr3(cpu.cr3()))
    }

    /// A mode of `kind` rooted at `cr3`, A20 on, NX defined, PSE on, 52 physical bits.
    pub fn new(kind: ModeKind, cr3: u64) -> Self {
        PagingMode {
            kind,
            root: 0,
            nxe: true,
            a20_mask: !0,
            phys_bits: 52,
            pse: true,
            aarch64: None,
        }
        .with_cr3(cr3)
    }

    /// The mode an aarch64 vCPU is in: `Off` (the physical view, up to the PA size) when
    /// SCTLR_EL1.M is clear, else the EL1&0 stage-1 regime its TCR_EL1, TTBR0_EL1 and TTBR1_EL1
    /// describe, with output addresses masked to min(TCR_EL1.IPS, ID_AA64MMFR0_EL1.PARange)
    /// (IPS alone when PARange is unknown). Fails naming the registers the source lacks (a
    /// half disabled by EPD0/EPD1 needs no TTBR), or on a reserved granule or a TxSZ out of
    /// range.
    pub fn aarch64(cpu: &Aarch64CpuState) -> Result<Self> {
        let (regime, pa_bits) = regime_of(cpu)?;
        Ok(Self::from_regime(regime, pa_bits))
    }

    /// The kernel's half from VMCOREINFO's facts alone: TTBR1 = `root_pa` (swapper_pg_dir's
    /// physical address), `va_bits` = 64 - T1SZ (`TCR_EL1_T1SZ`, else `VA_BITS`), the granule
    /// of `page_size` (`PAGESIZE`, 4096 when unknown), `pa_bits` the PA size (48 when
    /// unknown). No TTBR0: user space is not translated. A VA above 48 bits with 4 KiB or 16 KiB
    /// pages is LPA2's (TCR_EL1.DS=1), as Linux runs it.
    pub fn aarch64_kernel(
        root_pa: u64,
        va_bits: u32,
        page_size: u64,
        pa_bits: u32,
    ) -> Result<Self> {
        let granule = Granule::from_page_size(page_size).ok_or_else(|| {
            Error::CpuState(format!(
                "aarch64 page size {page_size} is not a granule (4096, 16384 or 65536)"
            ))
        })?;
        let txsz = 64u32
            .checked_sub(va_bits)
            .ok_or_else(|| Error::CpuState(format!("aarch64 VA_BITS={va_bits} is above 64")))?;
        let pa = pa_bits.clamp(32, 52);
        let ds = va_bits > 48 && granule != Granule::K64;
        let high = Aarch64Half::new(Ttbr::Ttbr1, 0, granule, txsz, ds, false, pa, pa)?;
        let mut high = high;
        high.root = root_pa & ((1u64 << high.oa_bits) - 1) & !63;
        let regime = Aarch64Regime {
            low: None,
            high: Some(high),
            pa_bits: pa,
        };
        Ok(Self::from_regime(Some(regime), pa))
    }

    fn from_regime(regime: Option<Aarch64Regime>, pa_bits: u32) -> Self {
        let (kind, regime) = match regime {
            Some(r) => (ModeKind::Aarch64, r),
            None => (
                ModeKind::Off,
                Aarch64Regime {
                    low: None,
                    high: None,
                    pa_bits,
                },
            ),
        };
        let root = regime
            .high
            .as_ref()
            .or(regime.low.as_ref())
            .map_or(0, |h| h.root);
        PagingMode {
            kind,
            root,
            nxe: true,
            a20_mask: !0,
            phys_bits: pa_bits,
            pse: false,
            aarch64: Some(Box::new(regime)),
        }
    }

    /// The tables this mode walks, in ascending virtual-address order (none when paging is
    /// off).
    pub(crate) fn tables(&self) -> impl Iterator<Item = Tables<'_>> {
        let x86 = (self.aarch64.is_none() && self.kind != ModeKind::Off).then(|| Tables {
            root: self.root,
            levels: self.levels(),
            half: None,
            canonical_bits: if self.is_long() { self.va_bits() } else { 0 },
        });
        let halves = self
            .aarch64
            .iter()
            .flat_map(|r| r.halves())
            .map(|h| Tables {
                root: h.root,
                levels: h.levels(),
                half: Some(h),
                canonical_bits: 0,
            });
        x86.into_iter().chain(halves)
    }

    /// True for an aarch64 mode (MMU on or off).
    pub fn is_aarch64(&self) -> bool {
        self.aarch64.is_some()
    }

    /// The same mode rooted at another CR3 (e.g. the crashed kernel's tables in a kdump dump).
    /// On aarch64 `cr3` is taken as a TTBR0_EL1 value (a process's tables, as CR3 is): it
    /// replaces the low half's root; see [`with_ttbr`](Self::with_ttbr) for either half.
    pub fn with_cr3(mut self, cr3: u64) -> Self {
        if self.aarch64.is_some() {
            return self.with_ttbr(Ttbr::Ttbr0, cr3);
        }
        self.root = match self.kind {
            ModeKind::Aarch64 => 0,
            ModeKind::Off => 0,
            ModeKind::Bits32 => cr3 & 0xffff_f000,
            ModeKind::Pae => cr3 & 0xffff_ffe0,
            ModeKind::Level4 | ModeKind::Level5 => cr3 & self.addr_mask(),
        } & self.a20_mask;
        self
    }

    /// The same aarch64 mode with the half of `ttbr` rooted at the table a TTBR value of
    /// `value` names (ASID and CnP dropped). A half that is disabled stays disabled; x86 modes
    /// are returned unchanged.
    pub fn with_ttbr(mut self, ttbr: Ttbr, value: u64) -> Self {
        if let Some(r) = self.aarch64.as_mut() {
            let half = match ttbr {
                Ttbr::Ttbr0 => &mut r.low,
                Ttbr::Ttbr1 => &mut r.high,
            };
            if let Some(h) = half.take() {
                *half = Some(h.with_ttbr(value));
            }
            self.root = r.high.as_ref().or(r.low.as_ref()).map_or(0, |h| h.root);
        }
        self
    }

    /// The levels from the root down; empty when paging is off. On aarch64, the levels of the
    /// TTBR1 half when it is enabled, else TTBR0's (each half has its own: see `aarch64`).
    pub fn levels(&self) -> &[Level] {
        if let Some(r) = &self.aarch64 {
            return r
                .high
                .as_ref()
                .or(r.low.as_ref())
                .map_or(&[], |h| h.levels());
        }
        match self.kind {
            ModeKind::Aarch64 => &[],
            ModeKind::Off => &[],
            ModeKind::Bits32 if self.pse => &LEVELS_32,
            ModeKind::Bits32 => &LEVELS_32_NOPSE,
            ModeKind::Pae => &LEVELS_PAE,
            ModeKind::Level4 => &LEVELS_4,
            ModeKind::Level5 => &LEVELS_5,
        }
    }

    /// Width of a linear address: 32, 48 or 57 bits. On aarch64 the widest half's (with the
    /// MMU off: the PA size, the extent of the identity view).
    pub fn va_bits(&self) -> u32 {
        if let Some(r) = &self.aarch64 {
            return r.halves().map(|h| h.va_bits).max().unwrap_or(r.pa_bits);
        }
        match self.kind {
            ModeKind::Aarch64 => 0,
            ModeKind::Off | ModeKind::Bits32 | ModeKind::Pae => 32,
            ModeKind::Level4 => 48,
            ModeKind::Level5 => 57,
        }
    }

    /// Size of one entry: 4 bytes in 32-bit paging, 8 otherwise.
    pub fn entry_bytes(&self) -> usize {
        if self.kind == ModeKind::Bits32 {
            4
        } else {
            8
        }
    }

    /// Address bits of an 8-byte entry: 51:12, limited to MAXPHYADDR.
    pub fn addr_mask(&self) -> u64 {
        let top = self.phys_bits.clamp(32, 52);
        ((1u64 << top) - 1) & !0xfff
    }

    /// True for modes whose linear addresses are sign-extended (IA-32e).
    pub fn is_long(&self) -> bool {
        matches!(self.kind, ModeKind::Level4 | ModeKind::Level5)
    }

    /// True when the kernel that uses these tables is 64-bit (its pointers are 8 bytes):
    /// x86 long mode and AArch64.
    pub fn is_64bit(&self) -> bool {
        self.is_long() || self.is_aarch64()
    }
}

/// A vCPU state that walks the page tables at `root` in `kind` (CR0.PG, CR4.PAE/PSE/LA57 and
/// EFER set to match; NX enabled where the mode has it; 32-bit paging with PSE, as Linux runs).
/// This is how a root found without a CPU (VMCOREINFO, `--mode/--cr3`) becomes a CPU to walk.
pub fn state_for_mode(kind: ModeKind, root: u64, index: u32) -> X86CpuState {
    let mut c = X86CpuState::new(index);
    c.cr[3] = root;
    c.cr[0] = if matches!(kind, ModeKind::Off | ModeKind::Aarch64) {
        0x11
    } else {
        CR0_PG | 0x11
    };
    let long = EFER_LMA | EFER_LME | EFER_NXE;
    (c.cr[4], c.efer) = match kind {
        // aarch64 has no x86 state: its vCPUs are `Aarch64CpuState`s (`PagingMode::aarch64`).
        ModeKind::Off | ModeKind::Aarch64 => (0, 0),
        ModeKind::Bits32 => (CR4_PSE, 0),
        ModeKind::Pae => (CR4_PAE | CR4_PSE, EFER_NXE),
        ModeKind::Level4 => (CR4_PAE | CR4_PSE, long),
        ModeKind::Level5 => (CR4_PAE | CR4_PSE | CR4_LA57, long),
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CR0_PG, EFER_LMA, EFER_LME};

    fn cpu(cr0: u64, cr4: u64, efer: u64, cr3: u64) -> X86CpuState {
        let mut c = X86CpuState::new(0);
        c.cr[0] = cr0;
        c.cr[3] = cr3;
        c.cr[4] = cr4;
        c.efer = efer;
        c
    }

    #[test]
    fn modes_from_registers() {
        let lm = EFER_LMA | EFER_LME | EFER_NXE;
        let m = PagingMode::from_cpu(&cpu(CR0_PG, CR4_PAE, lm, 0x1_2345_6fff)).unwrap();
        assert_eq!(m.kind, ModeKind::Level4);
        assert_eq!(
            m.root, 0x1_2345_6000,
            "PCID bits dropped, CR3 above 4 GiB kept"
        );
        assert!(m.nxe);
        let m = PagingMode::from_cpu(&cpu(CR0_PG, CR4_PAE | CR4_LA57, lm, 0)).unwrap();
        assert_eq!(
            (m.kind, m.va_bits(), m.levels().len()),
            (ModeKind::Level5, 57, 5)
        );
        let m = PagingMode::from_cpu(&cpu(CR0_PG, CR4_PAE, 0, 0x1234_5fe0)).unwrap();
        assert_eq!((m.kind, m.root, m.nxe), (ModeKind::Pae, 0x1234_5fe0, false));
        let m = PagingMode::from_cpu(&cpu(CR0_PG, CR4_PSE, 0, 0x5fff)).unwrap();
        assert_eq!((m.kind, m.root, m.pse), (ModeKind::Bits32, 0x5000, true));
        assert_eq!(
            PagingMode::from_cpu(&cpu(0, 0, 0, 0)).unwrap().kind,
            ModeKind::Off
        );
    }

    #[test]
    fn impossible_registers_rejected() {
        assert!(PagingMode::from_cpu(&cpu(CR0_PG, CR4_PAE | CR4_LA57, 0, 0)).is_err());
        assert!(PagingMode::from_cpu(&cpu(CR0_PG, 0, EFER_LMA, 0)).is_err());
        assert!(PagingMode::from_cpu(&cpu(0, CR4_PAE, EFER_LMA, 0)).is_err());
    }

    #[test]
    fn a20_masks_root() {
        let mut c = cpu(CR0_PG, 0, 0, 0x0010_3000);
        c.a20_enabled = false;
        assert_eq!(PagingMode::from_cpu(&c).unwrap().root, 0x3000);
    }
}
