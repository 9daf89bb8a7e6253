//! Decoding one page-table entry at one level of one mode. Both the walker and the translator
//! call [`decode`], so every rule (present bit, reserved bits, PS, PSE-36, XD, A20, address mask;
//! on aarch64 the descriptor type, where blocks are allowed, the 52-bit address formats and the
//! table attributes) lives here once.

use super::aarch64::{Aarch64Half, Granule};
use super::flags::PageFlags;
use super::mode::{ModeKind, PagingMode, Tables};

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;

/// What an entry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// P = 0.
    NotPresent,
    /// Present with a reserved bit set: the CPU would fault, so nothing is mapped through it.
    Reserved,
    /// Points to the next level's table at this physical address.
    Table(u64),
    /// Maps `size` bytes at physical `pa` (already A20-masked, aligned to `size`).
    Leaf {
        /// First physical byte of the page.
        pa: u64,
        /// Page size in bytes (4 KiB, 2 MiB, 4 MiB or 1 GiB).
        size: u64,
    },
}

/// Decodes `raw`, read from a table of level `level` (index into `t.levels`).
pub(crate) fn decode(mode: &PagingMode, t: &Tables, level: usize, raw: u64) -> Entry {
    let levels = t.levels;
    let Some(lvl) = levels.get(level) else {
        return Entry::NotPresent;
    };
    if let Some(half) = t.half {
        return decode_arm(half, levels, level, raw);
    }
    if raw & P == 0 {
        return Entry::NotPresent;
    }
    let last = level + 1 == levels.len();
    if mode.kind == ModeKind::Bits32 {
        let raw = raw & 0xffff_ffff;
        if last {
            return Entry::Leaf {
                pa: (raw & 0xffff_f000) & mode.a20_mask,
                size: 1 << 12,
            };
        }
        if lvl.large_leaf && raw & PS != 0 {
            // PSE-36: bits 20:13 of a 4 MiB PDE are physical-address bits 39:32; bit 21 is reserved.
            if raw & (1 << 21) != 0 {
                return Entry::Reserved;
            }
            let pa = (raw & 0xffc0_0000) | (((raw >> 13) & 0xff) << 32);
            return Entry::Leaf {
                pa: pa & mode.a20_mask,
                size: 1 << 22,
            };
        }
        return Entry::Table((raw & 0xffff_f000) & mode.a20_mask);
    }

    let addr_mask = mode.addr_mask();
    // Bits between MAXPHYADDR and 51 are reserved in every entry.
    let mut reserved = lvl.reserved | (0x000f_ffff_ffff_f000 & !addr_mask);
    if !mode.nxe && lvl.has_perms {
        reserved |= XD;
    }
    if raw & reserved != 0 {
        return Entry::Reserved;
    }
    if last {
        return Entry::Leaf {
            pa: (raw & addr_mask) & mode.a20_mask,
            size: 1 << 12,
        };
    }
    if lvl.large_leaf && raw & PS != 0 {
        if raw & lvl.reserved_large != 0 {
            return Entry::Reserved;
        }
        let size = lvl.span();
        return Entry::Leaf {
            pa: (raw & addr_mask & !(size - 1)) & mode.a20_mask,
            size,
        };
    }
    Entry::Table((raw & addr_mask) & mode.a20_mask)
}

// aarch64 VMSAv8-64 stage-1 descriptor bits (Arm ARM D8.3).
/// Valid.
const ARM_VALID: u64 = 1 << 0;
/// Table (levels above 3) or page (level 3); clear: block.
const ARM_TABLE: u64 = 1 << 1;
/// `AP[1]`: EL0 may access.
const ARM_AP_EL0: u64 = 1 << 6;
/// `AP[2]`: read-only.
const ARM_AP_RO: u64 = 1 << 7;
/// AF: accessed.
const ARM_AF: u64 = 1 << 10;
/// nG: not global.
const ARM_NG: u64 = 1 << 11;
/// DBM: dirty-bit modifier (hardware dirty state).
const ARM_DBM: u64 = 1 << 51;
/// PXN: EL1 may not execute.
const ARM_PXN: u64 = 1 << 53;
/// UXN (XN): EL0 may not execute.
const ARM_UXN: u64 = 1 << 54;
/// Table descriptors: PXNTable, UXNTable, `APTable[0]` (no EL0 access below), `APTable[1]` (no
/// write below).
const ARM_PXN_TABLE: u64 = 1 << 59;
const ARM_UXN_TABLE: u64 = 1 << 60;
const ARM_AP_TABLE_EL0: u64 = 1 << 61;
const ARM_AP_TABLE_RO: u64 = 1 << 62;

/// An aarch64 descriptor. Bits 1:0 = 01 is a block where `lvl.large_leaf` allows one and
/// invalid elsewhere (at level 3 it is the reserved type): counted as `Reserved`, like an x86
/// entry the CPU would fault on. The contiguous hint (bit 52) changes nothing here: each page
/// translates to its own output address.
fn decode_arm(half: &Aarch64Half, levels: &[super::mode::Level], level: usize, raw: u64) -> Entry {
    if raw & ARM_VALID == 0 {
        return Entry::NotPresent;
    }
    let lvl = levels[level];
    let last = level + 1 == levels.len();
    if raw & ARM_TABLE != 0 {
        let low = if last {
            lvl.shift
        } else {
            half.granule.shift()
        };
        let addr = arm_address(half, raw, low);
        return if last {
            Entry::Leaf {
                pa: addr,
                size: lvl.span(),
            }
        } else {
            Entry::Table(addr)
        };
    }
    if last || !lvl.large_leaf {
        return Entry::Reserved;
    }
    Entry::Leaf {
        pa: arm_address(half, raw, lvl.shift),
        size: lvl.span(),
    }
}

/// The output address of a descriptor whose address field starts at bit `low`: bits 47:low,
/// plus `OA[51:48]` from bits 15:12 (64 KiB granule, FEAT_LPA) or bits 49:48 and `OA[51:50]` from
/// bits 9:8 (TCR_EL1.DS, FEAT_LPA2), masked to the half's output size.
fn arm_address(half: &Aarch64Half, raw: u64, low: u32) -> u64 {
    let field = |hi: u32| raw & ((1u64 << (hi + 1)) - 1) & !((1u64 << low) - 1);
    let pa = if half.ds {
        field(49) | ((raw >> 8) & 3) << 50
    } else if half.granule == Granule::K64 {
        field(47) | ((raw >> 12) & 0xf) << 48
    } else {
        field(47)
    };
    pa & ((1u64 << half.oa_bits) - 1)
}

/// This entry's contribution to the effective permissions: `WRITE` and `USER` when its R/W and
/// U/S bits are set (always, at levels without permission bits), `NX` when XD is set and defined.
/// On aarch64: a leaf's `AP[2:1]`, PXN and UXN; a table's APTable, PXNTable and UXNTable (none
/// when TCR_EL1.HPDn disables them).
pub(crate) fn perms(mode: &PagingMode, t: &Tables, level: usize, raw: u64) -> PageFlags {
    if let Some(half) = t.half {
        let table = raw & ARM_TABLE != 0 && level + 1 < t.levels.len();
        let mut f = PageFlags::WRITE | PageFlags::USER;
        if table {
            if !half.hpd {
                f.set(PageFlags::WRITE, raw & ARM_AP_TABLE_RO == 0);
                f.set(PageFlags::USER, raw & ARM_AP_TABLE_EL0 == 0);
                f.set(PageFlags::NX, raw & ARM_PXN_TABLE != 0);
                f.set(PageFlags::UXN, raw & ARM_UXN_TABLE != 0);
            }
        } else {
            f.set(PageFlags::WRITE, raw & ARM_AP_RO == 0);
            f.set(PageFlags::USER, raw & ARM_AP_EL0 != 0);
            f.set(PageFlags::NX, raw & ARM_PXN != 0);
            f.set(PageFlags::UXN, raw & ARM_UXN != 0);
        }
        return f;
    }
    let has_perms = t.levels.get(level).is_some_and(|l| l.has_perms);
    if !has_perms {
        return PageFlags::WRITE | PageFlags::USER;
    }
    let mut f = PageFlags::empty();
    f.set(PageFlags::WRITE, raw & RW != 0);
    f.set(PageFlags::USER, raw & US != 0);
    f.set(
        PageFlags::NX,
        mode.nxe && mode.kind != ModeKind::Bits32 && raw & XD != 0,
    );
    f
}

/// The leaf entry's own bits: accessed, dirty, global, PWT, PCD, and `LARGE` for a large page
/// (a leaf above the last level). On aarch64: AF, nG, DBM with `AP[2]` clear, and `LARGE` for a
/// block.
pub(crate) fn leaf_bits(t: &Tables, level: usize, raw: u64) -> PageFlags {
    let large = level + 1 < t.levels.len();
    let mut f = PageFlags::empty();
    if t.half.is_some() {
        f.set(PageFlags::ACCESSED, raw & ARM_AF != 0);
        f.set(PageFlags::GLOBAL, raw & ARM_NG == 0);
        f.set(PageFlags::DIRTY, raw & ARM_DBM != 0 && raw & ARM_AP_RO == 0);
        f.set(PageFlags::LARGE, large);
        return f;
    }
    f.set(PageFlags::ACCESSED, raw & A != 0);
    f.set(PageFlags::DIRTY, raw & D != 0);
    f.set(PageFlags::GLOBAL, raw & G != 0);
    f.set(PageFlags::PWT, raw & PWT != 0);
    f.set(PageFlags::PCD, raw & PCD != 0);
    f.set(PageFlags::LARGE, large);
    f
}

/// Combines permissions of an upper level (`acc`) with the next entry's (`next`):
/// W and U by AND, NX and UXN by OR.
pub(crate) fn combine(acc: PageFlags, next: PageFlags) -> PageFlags {
    let and = (acc & next) & (PageFlags::WRITE | PageFlags::USER);
    let or = (acc | next) & (PageFlags::NX | PageFlags::UXN);
    and | or
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(m: &PagingMode, level: usize, raw: u64) -> Entry {
        decode(m, &m.tables().next().unwrap(), level, raw)
    }

    fn prm(m: &PagingMode, level: usize, raw: u64) -> PageFlags {
        perms(m, &m.tables().next().unwrap(), level, raw)
    }

    #[test]
    fn pse36_uses_64_bit_arithmetic() {
        let m = PagingMode::new(ModeKind::Bits32, 0);
        // PDE: base bits 31:22 = 0x3ff, PSE-36 bits 20:13 = 0x12, PS, P.
        let raw = 0xffc0_0000 | (0x12 << 13) | PS | P;
        assert_eq!(
            dec(&m, 0, raw),
            Entry::Leaf {
                pa: 0x12_ffc0_0000,
                size: 1 << 22
            }
        );
        assert_eq!(dec(&m, 0, raw | (1 << 21)), Entry::Reserved);
    }

    #[test]
    fn large_leaf_drops_pat_and_software_bits() {
        let m = PagingMode::new(ModeKind::Level4, 0);
        // 2 MiB leaf with PAT (bit 12), protection key bits 62:59, XD.
        let raw = 0x7800_0000_4020_0000 | (1 << 12) | XD | PS | P | RW;
        assert_eq!(
            dec(&m, 2, raw),
            Entry::Leaf {
                pa: 0x4020_0000,
                size: 1 << 21
            }
        );
        assert_eq!(
            dec(&m, 2, raw | (1 << 13)),
            Entry::Reserved,
            "bits 20:13 reserved"
        );
        assert_eq!(
            dec(&m, 0, 0x1000 | PS | P),
            Entry::Reserved,
            "PS reserved in PML4E"
        );
        assert_eq!(
            dec(&m, 1, 0x4000_0000 | PS | P),
            Entry::Leaf {
                pa: 0x4000_0000,
                size: 1 << 30
            }
        );
    }

    #[test]
    fn xd_reserved_without_nxe() {
        let mut m = PagingMode::new(ModeKind::Pae, 0);
        m.nxe = false;
        assert_eq!(dec(&m, 2, 0x5000 | XD | P), Entry::Reserved);
        m.nxe = true;
        assert_eq!(
            dec(&m, 2, 0x5000 | XD | P),
            Entry::Leaf {
                pa: 0x5000,
                size: 4096
            }
        );
        assert!(prm(&m, 2, 0x5000 | XD | P).contains(PageFlags::NX));
        assert_eq!(
            dec(&m, 0, 0x5000 | RW | P),
            Entry::Reserved,
            "R/W reserved in PAE PDPTE"
        );
    }

    #[test]
    fn a20_masks_addresses() {
        let mut m = PagingMode::new(ModeKind::Level4, 0);
        m.a20_mask = !(1 << 20);
        assert_eq!(
            dec(&m, 3, 0x0013_0000 | P),
            Entry::Leaf {
                pa: 0x0003_0000,
                size: 4096
            }
        );
        assert_eq!(dec(&m, 0, 0x0013_0000 | P), Entry::Table(0x0003_0000));
    }

    #[test]
    fn combine_permissions() {
        let w = PageFlags::WRITE | PageFlags::USER;
        assert_eq!(
            combine(w, PageFlags::USER | PageFlags::NX),
            PageFlags::USER | PageFlags::NX
        );
        assert_eq!(combine(PageFlags::NX, w), PageFlags::NX);
    }
}
