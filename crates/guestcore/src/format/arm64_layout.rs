//! An arm64 Linux kernel's memory layout as its VMCOREINFO states it, and the kernel's own
//! address arithmetic (`arch/arm64/include/asm/memory.h`) over it: kernel image, linear map,
//! `vmemmap`. What a reader needs to turn the kernel's virtual addresses (its symbols,
//! `swapper_pg_dir`, `struct page`s) into physical ones without walking page tables.
//!
//! The keys (`arch/arm64/kernel/crash_core.c`, `vmcore_info.c` from 6.9; the generic ones in
//! `kernel/crash_core.c`), and their number formats, which differ:
//!
//! * `NUMBER(VA_BITS)`: the configured VA size (`CONFIG_ARM64_VA_BITS`: 39, 42, 47, 48 or 52;
//!   Debian 12's 6.1 is 48), **decimal** (`VMCOREINFO_NUMBER`).
//! * `NUMBER(kimage_voffset)`, `NUMBER(PHYS_OFFSET)`: **hex with `0x`** (`%llx`).
//! * `NUMBER(TCR_EL1_T1SZ)`: hex with `0x`, TCR_EL1.T1SZ as the kernel runs (the VA size it
//!   actually uses is `64 - T1SZ`: 48 on a 52-bit kernel on hardware without LVA). Since 5.9;
//!   older kernels lack it.
//! * `KERNELOFFSET`: hex **without** `0x`, the KASLR displacement.
//! * `SYMBOL(swapper_pg_dir)`: hex without `0x`, a kernel-image virtual address.
//! * `NUMBER(MAX_PHYSMEM_BITS)`: decimal (generic; optional).
//! * `NUMBER(VMEMMAP_START)`: hex with `0x` (5.18 onwards; optional).
//!
//! The arithmetic, by kernel version (from `OSRELEASE`):
//!
//! * Kernel image (every version): `pa = va - kimage_voffset` (`__kimg_to_phys`).
//! * Linear map, **5.4 onwards** (the "flipped" VA space): `PAGE_OFFSET = -(1 << VA_BITS)`
//!   (0xffff_0000_0000_0000 for 48 bits) is its start, `PAGE_END = -(1 << (min(VA_BITS, 48) -
//!   1))` its end, and `pa = va - PAGE_OFFSET + PHYS_OFFSET` (`__lm_to_phys`, wrapping). That
//!   formula is 6.1's (and every kernel's since 5.11, which folds the 52-bit-on-48-bit case
//!   into `PHYS_OFFSET`); 5.4 to 5.10 wrote `(va & ~PAGE_OFFSET) + PHYS_OFFSET`, the same for
//!   every linear address when the VA size in use is `VA_BITS`; when it is not (52-bit kernel,
//!   48-bit hardware) those kernels' linear map is left unknown (`None`).
//! * Linear map, **before 5.4**: `PAGE_OFFSET = -(1 << (VA_BITS - 1))`, the linear map is the
//!   upper half of the kernel's space, `pa = (va & ~PAGE_OFFSET) + PHYS_OFFSET`.
//! * `vmemmap` (for `struct page` lookups, as dump levels need): `NUMBER(VMEMMAP_START)` when
//!   the kernel gives it, else 6.1's rule `VMEMMAP_START = -(1 << (VA_BITS - (PAGE_SHIFT - 6)))`
//!   (0xffff_fc00_0000_0000 for 48 bits and 4 KiB pages), used only for kernels from 6.1 on (the
//!   version it was checked against); the `struct page` of frame `pfn` is at `VMEMMAP_START +
//!   (pfn - (PHYS_OFFSET >> PAGE_SHIFT)) * sizeof(struct page)`.
//!
//! Every value comes from the guest: each is range-checked, and the arithmetic wraps as the
//! kernel's does instead of overflowing.

use super::vmcoreinfo::{vmcoreinfo_get, vmcoreinfo_symbol};

/// Why a VMCOREINFO gives no arm64 layout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Arm64LayoutError {
    /// A key the layout needs is absent.
    #[error("VMCOREINFO has no {0}: not an arm64 kernel's, or one older than 4.12")]
    Missing(&'static str),
    /// A key's value is not a number of its format, or out of its range.
    #[error("VMCOREINFO {key}={value:?} is not {what}")]
    Bad {
        /// The key.
        key: &'static str,
        /// Its text.
        value: String,
        /// What it should be.
        what: &'static str,
    },
}

/// The kernel version's `major.minor`, as far as the arithmetic depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl KernelVersion {
    /// The `major.minor` an `OSRELEASE` (`6.1.0-28-arm64`) starts with.
    pub fn parse(release: &str) -> Option<Self> {
        let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(KernelVersion(major, minor))
    }
}

/// The flipped VA space (linear map at the bottom of the kernel's half) arrived in 5.4.
const FLIPPED_VA: KernelVersion = KernelVersion(5, 4);
/// `__lm_to_phys` as `va - PAGE_OFFSET + PHYS_OFFSET` for every VA size in use, from 5.11.
const SINGLE_QUANTITY: KernelVersion = KernelVersion(5, 11);
/// The `VMEMMAP_START` rule here was checked against 6.1.
const VMEMMAP_RULE: KernelVersion = KernelVersion(6, 1);
/// `STRUCT_PAGE_MAX_SHIFT`: `struct page` is at most 64 bytes on arm64.
const STRUCT_PAGE_MAX_SHIFT: u32 = 6;

/// An arm64 kernel's layout from its VMCOREINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Layout {
    /// `OSRELEASE`'s `major.minor`.
    pub version: KernelVersion,
    /// `NUMBER(VA_BITS)`: the configured VA size.
    pub va_bits: u32,
    /// `NUMBER(kimage_voffset)`: kernel-image virtual minus physical.
    pub kimage_voffset: u64,
    /// `NUMBER(PHYS_OFFSET)`: `memstart_addr`, the physical address the linear map starts at
    /// (adjusted on 5.11+ kernels whose VA size in use is below `VA_BITS`).
    pub phys_offset: u64,
    /// `NUMBER(TCR_EL1_T1SZ)` (5.9+).
    pub tcr_el1_t1sz: Option<u32>,
    /// `SYMBOL(swapper_pg_dir)`: the kernel's top-level table, a kernel-image address.
    pub swapper_pg_dir: Option<u64>,
    /// `KERNELOFFSET`: the KASLR displacement.
    pub kaslr_offset: Option<u64>,
    /// `NUMBER(MAX_PHYSMEM_BITS)`.
    pub max_physmem_bits: Option<u32>,
    /// `PAGESIZE`: 4, 16 or 64 KiB.
    pub page_size: Option<u64>,
    /// `NUMBER(VMEMMAP_START)` (5.18+).
    pub vmemmap_start: Option<u64>,
}

/// `NUMBER(name)` in the form arm64 prints it: `0x` hex, or decimal.
fn number(text: &[u8], key: &'static str) -> Result<Option<u64>, Arm64LayoutError> {
    let Some(v) = vmcoreinfo_get(text, key) else {
        return Ok(None);
    };
    let t = v.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse::<u64>().ok(),
    };
    parsed.map(Some).ok_or_else(|| Arm64LayoutError::Bad {
        key,
        value: v.to_string(),
        what: "a 0x-hex or decimal number of 64 bits",
    })
}

/// `number`, required and within `range`.
fn small(
    text: &[u8],
    key: &'static str,
    range: std::ops::RangeInclusive<u64>,
    what: &'static str,
) -> Result<Option<u32>, Arm64LayoutError> {
    match number(text, key)? {
        None => Ok(None),
        Some(n) if range.contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(Arm64LayoutError::Bad {
            key,
            value: n.to_string(),
            what,
        }),
    }
}

impl Arm64Layout {
    /// Reads the layout from VMCOREINFO text. `OSRELEASE`, `NUMBER(VA_BITS)`,
    /// `NUMBER(kimage_voffset)` and `NUMBER(PHYS_OFFSET)` are required; the rest are `None`
    /// when absent and an error when present but malformed.
    pub fn from_vmcoreinfo(text: &[u8]) -> Result<Self, Arm64LayoutError> {
        let release =
            vmcoreinfo_get(text, "OSRELEASE").ok_or(Arm64LayoutError::Missing("OSRELEASE"))?;
        let version = KernelVersion::parse(release).ok_or_else(|| Arm64LayoutError::Bad {
            key: "OSRELEASE",
            value: release.to_string(),
            what: "a kernel release (major.minor…)",
        })?;
        let va_bits = small(
            text,
            "NUMBER(VA_BITS)",
            36..=52,
            "a VA size of 36 to 52 bits",
        )?
        .ok_or(Arm64LayoutError::Missing("NUMBER(VA_BITS)"))?;
        let kimage_voffset = number(text, "NUMBER(kimage_voffset)")?
            .ok_or(Arm64LayoutError::Missing("NUMBER(kimage_voffset)"))?;
        let phys_offset = number(text, "NUMBER(PHYS_OFFSET)")?
            .ok_or(Arm64LayoutError::Missing("NUMBER(PHYS_OFFSET)"))?;
        let tcr_el1_t1sz = small(
            text,
            "NUMBER(TCR_EL1_T1SZ)",
            12..=39,
            "a T1SZ of 12 to 39 (a VA size of 25 to 52 bits)",
        )?;
        let max_physmem_bits = small(
            text,
            "NUMBER(MAX_PHYSMEM_BITS)",
            32..=52,
            "a physical-address size of 32 to 52 bits",
        )?;
        let page_size = match vmcoreinfo_get(text, "PAGESIZE") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|p| [4096, 16384, 65536].contains(p))
                    .ok_or_else(|| Arm64LayoutError::Bad {
                        key: "PAGESIZE",
                        value: v.to_string(),
                        what: "an arm64 page size (4096, 16384 or 65536)",
                    })?,
            ),
        };
        let kaslr_offset = match vmcoreinfo_get(text, "KERNELOFFSET") {
            None => None,
            Some(v) => {
                Some(
                    u64::from_str_radix(v.trim(), 16).map_err(|_| Arm64LayoutError::Bad {
                        key: "KERNELOFFSET",
                        value: v.to_string(),
                        what: "a hex offset",
                    })?,
                )
            }
        };
        Ok(Arm64Layout {
            version,
            va_bits,
            kimage_voffset,
            phys_offset,
            tcr_el1_t1sz,
            swapper_pg_dir: vmcoreinfo_symbol(text, "swapper_pg_dir"),
            kaslr_offset,
            max_physmem_bits,
            page_size,
            vmemmap_start: number(text, "NUMBER(VMEMMAP_START)")?,
        })
    }

    /// True for the flipped VA space (5.4 onwards).
    pub fn flipped(&self) -> bool {
        self.version >= FLIPPED_VA
    }

    /// The VA size the kernel's TTBR1 tables cover: `64 - T1SZ` when known, else `VA_BITS`.
    pub fn va_bits_actual(&self) -> u32 {
        self.tcr_el1_t1sz.map_or(self.va_bits, |t| 64 - t)
    }

    /// `PAGE_OFFSET`: where the linear map starts (see the module docs for the versions).
    pub fn page_offset(&self) -> u64 {
        if self.flipped() {
            u64::MAX << self.va_bits
        } else {
            u64::MAX << (self.va_bits - 1)
        }
    }

    /// One past the linear map's last byte, `PAGE_END`; 0 (the top of the address space,
    /// wrapped) before 5.4.
    pub fn page_end(&self) -> u64 {
        if self.flipped() {
            u64::MAX << (self.va_bits.min(48) - 1)
        } else {
            0
        }
    }

    /// True when `va` lies in the linear map.
    pub fn is_linear(&self, va: u64) -> bool {
        va.wrapping_sub(self.page_offset()) < self.page_end().wrapping_sub(self.page_offset())
    }

    /// The physical address of a linear-map address; `None` outside the linear map, and for a
    /// 5.4–5.10 kernel whose VA size in use is not `VA_BITS` (its rule is not known here).
    pub fn linear_to_phys(&self, va: u64) -> Option<u64> {
        if !self.is_linear(va) {
            return None;
        }
        if self.flipped() && self.version < SINGLE_QUANTITY && self.va_bits_actual() != self.va_bits
        {
            return None;
        }
        Some(
            (va.wrapping_sub(self.page_offset()) & !self.page_offset())
                .wrapping_add(self.phys_offset),
        )
    }

    /// The physical address of a kernel-image address (a symbol): `va - kimage_voffset`.
    pub fn kimage_to_phys(&self, va: u64) -> u64 {
        va.wrapping_sub(self.kimage_voffset)
    }

    /// The kernel's `__pa`: [`linear_to_phys`](Self::linear_to_phys) for a linear-map
    /// address, else [`kimage_to_phys`](Self::kimage_to_phys) (right only for kernel-image
    /// addresses; vmalloc and module addresses need a page-table walk).
    pub fn virt_to_phys(&self, va: u64) -> Option<u64> {
        if self.is_linear(va) {
            self.linear_to_phys(va)
        } else {
            Some(self.kimage_to_phys(va))
        }
    }

    /// The physical address of `swapper_pg_dir`, the kernel's TTBR1 root.
    pub fn swapper_pg_dir_phys(&self) -> Option<u64> {
        self.swapper_pg_dir.map(|va| self.kimage_to_phys(va))
    }

    /// `VMEMMAP_START`: the kernel's own `NUMBER(VMEMMAP_START)`, else 6.1's rule for kernels
    /// from 6.1 on with a known page size; `None` otherwise.
    pub fn vmemmap_start(&self) -> Option<u64> {
        if self.vmemmap_start.is_some() {
            return self.vmemmap_start;
        }
        let shift = self.page_size?.trailing_zeros();
        (self.flipped() && self.version >= VMEMMAP_RULE)
            .then(|| u64::MAX << (self.va_bits - (shift - STRUCT_PAGE_MAX_SHIFT)))
    }

    /// The virtual address of frame `pfn`'s `struct page` of `struct_page_size` bytes (from
    /// VMCOREINFO's `SIZE(page)`), `None` when [`vmemmap_start`](Self::vmemmap_start) is
    /// unknown or `pfn` lies below `PHYS_OFFSET`.
    pub fn page_struct(&self, pfn: u64, struct_page_size: u64) -> Option<u64> {
        let first = self.phys_offset >> self.page_size?.trailing_zeros();
        let index = pfn.checked_sub(first)?;
        self.vmemmap_start()?
            .checked_add(index.checked_mul(struct_page_size)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys, in their formats, of a Debian 12 arm64 kernel (6.1, 48-bit VA, 4 KiB pages)
    /// under QEMU `virt` with KASLR on (values consistent with each other, not captured).
    const DEBIAN_61: &[u8] = b"OSRELEASE=6.1.0-28-arm64\nPAGESIZE=4096\n\
        SYMBOL(swapper_pg_dir)=ffffa8b0c3a8e000\nNUMBER(MAX_PHYSMEM_BITS)=48\n\
        NUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0xffffa8b07ea00000\n\
        NUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(TCR_EL1_T1SZ)=0x10\n\
        KERNELOFFSET=28b03aa00000\nNUMBER(KERNELPACMASK)=0x0\n";

    #[test]
    fn a_61_kernel() {
        let l = Arm64Layout::from_vmcoreinfo(DEBIAN_61).unwrap();
        assert_eq!(l.version, KernelVersion(6, 1));
        assert_eq!((l.va_bits, l.va_bits_actual()), (48, 48));
        assert_eq!(l.page_offset(), 0xffff_0000_0000_0000);
        assert_eq!(l.page_end(), 0xffff_8000_0000_0000);
        assert_eq!(l.kaslr_offset, Some(0x28b0_3aa0_0000));
        assert_eq!(l.max_physmem_bits, Some(48));
        // swapper_pg_dir - kimage_voffset.
        assert_eq!(l.swapper_pg_dir_phys(), Some(0x4508_e000));
        // The linear map: PAGE_OFFSET is PHYS_OFFSET.
        assert_eq!(l.linear_to_phys(0xffff_0000_0000_0000), Some(0x4000_0000));
        assert_eq!(l.virt_to_phys(0xffff_0000_0123_4567), Some(0x4123_4567));
        assert_eq!(l.linear_to_phys(0xffff_8000_0000_0000), None, "PAGE_END");
        // A kernel-image address goes through kimage_voffset.
        assert_eq!(l.virt_to_phys(0xffff_a8b0_bea1_0000), Some(0x4001_0000));
        assert_eq!(l.vmemmap_start(), Some(0xffff_fc00_0000_0000));
        // RAM's first frame (0x40000) has the first struct page.
        assert_eq!(l.page_struct(0x40000, 64), Some(0xffff_fc00_0000_0000));
        assert_eq!(l.page_struct(0x40001, 64), Some(0xffff_fc00_0000_0040));
        assert_eq!(l.page_struct(0x3ffff, 64), None);
    }

    #[test]
    fn older_and_wider_kernels() {
        // 4.19 (before the flip): the linear map is the top half.
        let old = b"OSRELEASE=4.19.0-27-arm64\nPAGESIZE=4096\nNUMBER(VA_BITS)=48\n\
            NUMBER(kimage_voffset)=0xffff000008000000\nNUMBER(PHYS_OFFSET)=0x40000000\n";
        let l = Arm64Layout::from_vmcoreinfo(old).unwrap();
        assert!(!l.flipped());
        assert_eq!(l.page_offset(), 0xffff_8000_0000_0000);
        assert_eq!(l.linear_to_phys(0xffff_8000_0010_0000), Some(0x4010_0000));
        assert_eq!(l.linear_to_phys(0xffff_7fff_ffff_f000), None);
        assert_eq!(l.tcr_el1_t1sz, None);
        assert_eq!(l.vmemmap_start(), None, "no rule checked for 4.19");
        // 52-bit kernel on 48-bit hardware, 6.1: PHYS_OFFSET carries the adjustment.
        let lva = b"OSRELEASE=6.1.0\nPAGESIZE=65536\nNUMBER(VA_BITS)=52\n\
            NUMBER(kimage_voffset)=0xffff800000000000\n\
            NUMBER(PHYS_OFFSET)=0xfff1000040000000\nNUMBER(TCR_EL1_T1SZ)=0x10\n\
            NUMBER(VMEMMAP_START)=0xffffffc000000000\n";
        let l = Arm64Layout::from_vmcoreinfo(lva).unwrap();
        assert_eq!((l.va_bits, l.va_bits_actual()), (52, 48));
        assert_eq!(l.page_offset(), 0xfff0_0000_0000_0000);
        // The first linear address the 48-bit hardware has is RAM's start.
        assert_eq!(l.linear_to_phys(0xffff_0000_0000_0000), Some(0x4000_0000));
        assert_eq!(
            l.vmemmap_start(),
            Some(0xffff_ffc0_0000_0000),
            "the kernel's own"
        );
        // The same on 5.10 is not known.
        let t = String::from_utf8_lossy(lva).replace("6.1.0", "5.10.0");
        let l = Arm64Layout::from_vmcoreinfo(t.as_bytes()).unwrap();
        assert_eq!(l.linear_to_phys(0xffff_0000_0000_0000), None);
    }

    #[test]
    fn hostile_values_are_errors() {
        let with = |extra: &str| {
            let mut t =
                b"OSRELEASE=6.1.0\nNUMBER(kimage_voffset)=0x1\nNUMBER(PHYS_OFFSET)=0x0\n".to_vec();
            t.extend_from_slice(extra.as_bytes());
            Arm64Layout::from_vmcoreinfo(&t)
        };
        assert_eq!(
            with("").unwrap_err(),
            Arm64LayoutError::Missing("NUMBER(VA_BITS)")
        );
        for bad in [
            "NUMBER(VA_BITS)=0\n",
            "NUMBER(VA_BITS)=64\n",
            "NUMBER(VA_BITS)=0x30x\n",
            "NUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x0\n",
            "NUMBER(VA_BITS)=48\nNUMBER(MAX_PHYSMEM_BITS)=99\n",
            "NUMBER(VA_BITS)=48\nPAGESIZE=4097\n",
            "NUMBER(VA_BITS)=48\nKERNELOFFSET=zz\n",
            "NUMBER(VA_BITS)=48\nNUMBER(VMEMMAP_START)=0x1ffffffffffffffff\n",
        ] {
            let e = with(bad).unwrap_err();
            assert!(matches!(e, Arm64LayoutError::Bad { .. }), "{bad:?}: {e}");
        }
        let ok = with("NUMBER(VA_BITS)=36\nPAGESIZE=16384\n").unwrap();
        // Every address gives an answer or None, none panics (VA_BITS at its smallest).
        for va in [0, 1, u64::MAX, 0xffff_fff0_0000_0000, 0x8000_0000_0000_0000] {
            let _ = (ok.virt_to_phys(va), ok.page_struct(va, u64::MAX));
        }
        let e = Arm64Layout::from_vmcoreinfo(b"PAGESIZE=4096\n").unwrap_err();
        assert_eq!(e, Arm64LayoutError::Missing("OSRELEASE"));
        assert_eq!(
            KernelVersion::parse("6.12.0-rc1"),
            Some(KernelVersion(6, 12))
        );
        assert_eq!(KernelVersion::parse("x"), None);
    }
}
