//! Where a Linux kernel's page tables and image are, from its VMCOREINFO alone.
//!
//! x86_64: the root is `SYMBOL(init_top_pgt)` (or `SYMBOL(swapper_pg_dir)`, the same table)
//! translated like any kernel-image address, `vaddr − __START_KERNEL_map + phys_base`, with
//! `__START_KERNEL_map = 0xffffffff80000000` and `NUMBER(phys_base)` signed decimal; 5-level when
//! `NUMBER(pgtable_l5_enabled)=1`. i386: `SYMBOL(swapper_pg_dir) − PAGE_OFFSET` (0xc0000000, the
//! 3G/1G split every distribution kernel uses); PAE when the text has `CONFIG_X86_PAE=y`. The
//! KASLR offset is `KERNELOFFSET` (hex). arm64 (a VMCOREINFO with `NUMBER(kimage_voffset)`):
//! the root is `swapper_pg_dir − kimage_voffset`, walked as TTBR1's half with the VA size
//! `64 − TCR_EL1_T1SZ` (else `VA_BITS`) and the granule of `PAGESIZE` (the arithmetic is
//! `format::arm64_layout`'s). Every value comes from the guest, so each is checked: a root
//! must be page-table aligned, and arithmetic that would wrap is refused.

use crate::cpu::{Aarch64CpuState, CpuState};
use crate::format::arm64_layout::Arm64Layout;
use crate::format::vmcoreinfo::{vmcoreinfo_get, vmcoreinfo_number, vmcoreinfo_symbol};
use crate::paging::{ModeKind, PagingMode};
use serde::Serialize;

/// `__START_KERNEL_map` on x86_64: the kernel image's virtual base before KASLR.
pub(super) const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `PAGE_OFFSET` of a 32-bit kernel with the usual 3G/1G split.
pub(super) const I386_PAGE_OFFSET: u64 = 0xc000_0000;

/// The page-table root and paging mode of a kernel, and how its image is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KernelLayout {
    /// Physical address of the kernel's own top-level page table.
    pub root: u64,
    /// The paging mode those tables are built for.
    pub mode: ModeKind,
    /// `NUMBER(phys_base)` (x86_64; 0 on i386) as the kernel's unsigned long.
    pub phys_base: u64,
    /// `KERNELOFFSET` (0 when absent).
    pub kaslr_offset: u64,
    /// What an arm64 kernel's tables need besides the root (`None` on x86).
    pub arm64: Option<Arm64Facts>,
}

/// An arm64 kernel's translation facts from its VMCOREINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Arm64Facts {
    /// The VA size its TTBR1 tables cover: `64 − NUMBER(TCR_EL1_T1SZ)`, else `NUMBER(VA_BITS)`
    /// (they differ where a 52-bit kernel runs on a CPU without LPA2).
    pub va_bits: u32,
    /// `PAGESIZE`: the translation granule (4096 when absent).
    pub page_size: u64,
    /// `NUMBER(MAX_PHYSMEM_BITS)`: the output-address size (48 when absent).
    pub pa_bits: u32,
    /// `NUMBER(kimage_voffset)`: kernel-image virtual minus physical.
    pub kimage_voffset: u64,
    /// `NUMBER(PHYS_OFFSET)`: where the linear map's physical addresses start.
    pub phys_offset: u64,
}

/// Why a kernel's VMCOREINFO gives no usable page-table root.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Neither `SYMBOL(init_top_pgt)` nor `SYMBOL(swapper_pg_dir)`.
    #[error("VMCOREINFO names neither init_top_pgt nor swapper_pg_dir")]
    NoRootSymbol,
    /// An x86_64 kernel's VMCOREINFO without `NUMBER(phys_base)`.
    #[error("VMCOREINFO of an x86_64 kernel without NUMBER(phys_base)")]
    NoPhysBase,
    /// `NUMBER(phys_base)` present but not a signed decimal that fits the kernel's `long`.
    #[error("NUMBER(phys_base)={0} is not a signed decimal that fits 64 bits")]
    BadPhysBase(String),
    /// The root the symbol and `phys_base` give is not a page-aligned physical address.
    #[error(
        "page-table root of {symbol:#x} + phys_base {phys_base:#x} is not a valid physical address"
    )]
    BadRoot {
        /// The page-table symbol's address.
        symbol: u64,
        /// `NUMBER(phys_base)`.
        phys_base: u64,
    },
    /// An i386 `swapper_pg_dir` not aligned as the paging mode needs.
    #[error("swapper_pg_dir {0:#x} is not a page-table address")]
    Misaligned(u64),
    /// A page-table symbol in neither the x86_64 kernel image nor above i386's `PAGE_OFFSET`.
    #[error("page-table symbol {0:#x} is neither an x86_64 kernel-image address nor above a 32-bit PAGE_OFFSET")]
    UnknownSymbol(u64),
    /// An arm64 kernel's VMCOREINFO whose layout does not add up (the reason).
    #[error("arm64 kernel layout: {0}")]
    Arm64(String),
}

impl KernelLayout {
    /// Reads the layout from VMCOREINFO text, or says what is missing.
    pub fn from_vmcoreinfo(text: &[u8]) -> Result<Self, LayoutError> {
        if vmcoreinfo_get(text, "NUMBER(kimage_voffset)").is_some() {
            return Self::arm64(text);
        }
        let kaslr_offset = vmcoreinfo_get(text, "KERNELOFFSET")
            .and_then(|v| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let top = vmcoreinfo_symbol(text, "init_top_pgt")
            .or_else(|| vmcoreinfo_symbol(text, "swapper_pg_dir"))
            .ok_or(LayoutError::NoRootSymbol)?;
        if top >= START_KERNEL_MAP {
            let phys_base = match vmcoreinfo_number(text, "phys_base") {
                Some(n) => n as u64,
                None => {
                    return Err(match vmcoreinfo_get(text, "NUMBER(phys_base)") {
                        // The guest's text, shown bounded.
                        Some(v) => LayoutError::BadPhysBase(v.chars().take(40).collect()),
                        None => LayoutError::NoPhysBase,
                    });
                }
            };
            // phys_base may be "negative" (two's complement): the sum wraps back into range.
            let root = Some((top - START_KERNEL_MAP).wrapping_add(phys_base))
                .filter(|r| r % 4096 == 0 && *r < 1 << 52)
                .ok_or(LayoutError::BadRoot {
                    symbol: top,
                    phys_base,
                })?;
            let mode = match vmcoreinfo_number(text, "pgtable_l5_enabled") {
                Some(1) => ModeKind::Level5,
                _ => ModeKind::Level4,
            };
            return Ok(KernelLayout {
                root,
                mode,
                phys_base,
                kaslr_offset,
                arm64: None,
            });
        }
        if (I386_PAGE_OFFSET..1 << 32).contains(&top) {
            let pae = vmcoreinfo_get(text, "CONFIG_X86_PAE") == Some("y");
            let root = top - I386_PAGE_OFFSET;
            if root % 32 != 0 || (!pae && root % 4096 != 0) {
                return Err(LayoutError::Misaligned(top));
            }
            return Ok(KernelLayout {
                root,
                mode: if pae { ModeKind::Pae } else { ModeKind::Bits32 },
                phys_base: 0,
                kaslr_offset,
                arm64: None,
            });
        }
        Err(LayoutError::UnknownSymbol(top))
    }

    /// An arm64 kernel's layout (see the module docs).
    fn arm64(text: &[u8]) -> Result<Self, LayoutError> {
        let l =
            Arm64Layout::from_vmcoreinfo(text).map_err(|e| LayoutError::Arm64(e.to_string()))?;
        let symbol = l.swapper_pg_dir.ok_or(LayoutError::NoRootSymbol)?;
        let root = l.kimage_to_phys(symbol);
        if root % 64 != 0 || root >= 1 << 52 {
            return Err(LayoutError::Arm64(format!(
                "swapper_pg_dir {symbol:#x} − kimage_voffset {:#x} = {root:#x} is not a page-table address",
                l.kimage_voffset
            )));
        }
        Ok(KernelLayout {
            root,
            mode: ModeKind::Aarch64,
            phys_base: 0,
            kaslr_offset: l.kaslr_offset.unwrap_or(0),
            arm64: Some(Arm64Facts {
                va_bits: l.va_bits_actual(),
                page_size: l.page_size.unwrap_or(4096),
                pa_bits: l.max_physmem_bits.unwrap_or(48),
                kimage_voffset: l.kimage_voffset,
                phys_offset: l.phys_offset,
            }),
        })
    }

    /// The paging mode that walks this kernel's own tables.
    pub fn paging_mode(&self) -> crate::Result<PagingMode> {
        match &self.arm64 {
            Some(a) => PagingMode::aarch64_kernel(self.root, a.va_bits, a.page_size, a.pa_bits),
            None => PagingMode::from_cpu(&crate::paging::state_for_mode(self.mode, self.root, 0)),
        }
    }

    /// A vCPU state that walks this kernel's tables, numbered `index`: an x86 one in its mode,
    /// or an arm64 one whose TTBR1 is the kernel's root.
    pub fn cpu(&self, index: u32) -> CpuState {
        match self.arm64 {
            Some(_) => CpuState::Aarch64(Aarch64CpuState {
                ttbr1_el1: Some(self.root),
                ..Aarch64CpuState::new(index)
            }),
            None => crate::paging::state_for_mode(self.mode, self.root, index).into(),
        }
    }

    /// The physical address of a kernel-image (x86_64, arm64) or direct-map (i386) symbol.
    pub fn image_phys(&self, vaddr: u64) -> Option<u64> {
        if let Some(a) = &self.arm64 {
            return Some(vaddr.wrapping_sub(a.kimage_voffset)).filter(|p| *p < 1 << 52);
        }
        match self.mode {
            ModeKind::Level4 | ModeKind::Level5 => Some(
                vaddr
                    .checked_sub(START_KERNEL_MAP)?
                    .wrapping_add(self.phys_base),
            )
            .filter(|p| *p < 1 << 52),
            _ => vaddr.checked_sub(I386_PAGE_OFFSET).filter(|p| *p < 1 << 32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phys_base_that_overflows_is_named_not_called_missing() {
        let t = b"OSRELEASE=6.1\nSYMBOL(swapper_pg_dir)=ffffffffa4a10000\nNUMBER(phys_base)=99999999999999999999\n";
        let e = KernelLayout::from_vmcoreinfo(t).unwrap_err();
        assert_eq!(e, LayoutError::BadPhysBase("99999999999999999999".into()));
        assert!(
            e.to_string().contains("=99999999999999999999 is not"),
            "{e}"
        );
        let t = b"OSRELEASE=6.1\nSYMBOL(swapper_pg_dir)=ffffffffa4a10000\n";
        assert_eq!(
            KernelLayout::from_vmcoreinfo(t),
            Err(LayoutError::NoPhysBase)
        );
    }

    #[test]
    fn x86_64_root_from_symbol_and_signed_phys_base() {
        let t = b"OSRELEASE=6.1\nSYMBOL(swapper_pg_dir)=ffffffffa4a10000\nNUMBER(phys_base)=-16777216\nKERNELOFFSET=23000000\nNUMBER(pgtable_l5_enabled)=1\n";
        let l = KernelLayout::from_vmcoreinfo(t).unwrap();
        assert_eq!(l.root, 0x23a1_0000);
        assert_eq!(l.image_phys(0xffff_ffff_8100_0000), Some(0));
        assert_eq!(l.mode, ModeKind::Level5);
        assert_eq!(l.kaslr_offset, 0x2300_0000);
    }

    #[test]
    fn i386_pae_and_plain() {
        let pae = b"SYMBOL(swapper_pg_dir)=c1e0b000\nCONFIG_X86_PAE=y\n";
        let l = KernelLayout::from_vmcoreinfo(pae).unwrap();
        assert_eq!((l.root, l.mode), (0x1e0_b000, ModeKind::Pae));
        let plain = b"SYMBOL(swapper_pg_dir)=c1e0b000\n";
        assert_eq!(
            KernelLayout::from_vmcoreinfo(plain).unwrap().mode,
            ModeKind::Bits32
        );
        assert_eq!(l.image_phys(0xc100_0000), Some(0x100_0000));
    }

    #[test]
    fn hostile_values_are_refused() {
        for t in [
            &b"OSRELEASE=x\n"[..],
            b"SYMBOL(swapper_pg_dir)=ffffffffa4a10000\n",
            b"SYMBOL(swapper_pg_dir)=ffffffffa4a10008\nNUMBER(phys_base)=0\n",
            b"SYMBOL(swapper_pg_dir)=ffffffffffff0000\nNUMBER(phys_base)=9223372036854775807\n",
            b"SYMBOL(swapper_pg_dir)=1000\n",
            b"SYMBOL(swapper_pg_dir)=c1e0b010\n",
        ] {
            assert!(
                KernelLayout::from_vmcoreinfo(t).is_err(),
                "{:?}",
                std::str::from_utf8(t)
            );
        }
    }
}
