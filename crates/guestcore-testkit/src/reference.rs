//! The oracle: a one-address translator written straight from the Intel SDM (vol. 3A, ch. 4,
//! tables 4-4..4-6 for 32-bit paging, 4-8..4-11 for PAE, 4-14..4-20 for IA-32e), separately from
//! guestcore's table-driven `paging::entry`.
//!
//! It is written to be *obviously* right rather than fast: one function per mode, every
//! reserved-bit rule spelled out where the SDM states it. MAXPHYADDR is taken as 52 (guestcore's
//! default); the 32-bit PSE-36 format reaches 40 bits.

use guestcore::cpu::{X86CpuState, CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_NXE};
use guestcore::phys::PhysMemory;

/// Where a linear address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefTranslation {
    /// The physical address of the byte at the linear address.
    pub pa: u64,
    /// Size of the page that maps it (4 KiB, 2 MiB, 4 MiB or 1 GiB; 4 KiB with paging off).
    pub page_size: u64,
    /// Writable at every level.
    pub write: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Execute-disable at some level (only with EFER.NXE in PAE/IA-32e).
    pub nx: bool,
}

/// Translates linear address `va` for `cpu` over `mem`. `None` when not mapped: an entry not
/// present, a reserved bit set, an entry outside memory, a non-canonical or too-wide address.
pub fn translate<M: PhysMemory + ?Sized>(
    mem: &M,
    cpu: &X86CpuState,
    va: u64,
) -> Option<RefTranslation> {
    let a20 = if cpu.a20_enabled {
        u64::MAX
    } else {
        !(1u64 << 20)
    };
    let ctx = Ctx { mem, a20 };
    if cpu.cr[0] & CR0_PG == 0 {
        if va > 0xffff_ffff {
            return None;
        }
        return Some(RefTranslation {
            pa: va & a20,
            page_size: 4096,
            write: true,
            user: true,
            nx: false,
        });
    }
    if cpu.cr[4] & CR4_PAE == 0 {
        ctx.bits32(cpu, va)
    } else if cpu.efer & EFER_LMA == 0 {
        ctx.pae(cpu, va)
    } else {
        ctx.ia32e(cpu, va)
    }
}

struct Ctx<'a, M: ?Sized> {
    mem: &'a M,
    a20: u64,
}

fn bit(e: u64, n: u32) -> bool {
    (e >> n) & 1 == 1
}

/// Bits `hi..=lo` of `e` (inclusive), shifted down.
fn bits(e: u64, hi: u32, lo: u32) -> u64 {
    (e >> lo) & ((1u64 << (hi - lo + 1)) - 1)
}

impl<M: PhysMemory + ?Sized> Ctx<'_, M> {
    fn read32(&self, pa: u64) -> Option<u64> {
        self.mem.read_u32(pa & self.a20).ok().map(u64::from)
    }
    fn read64(&self, pa: u64) -> Option<u64> {
        self.mem.read_u64(pa & self.a20).ok()
    }

    fn done(&self, base: u64, size: u64, va: u64, w: bool, u: bool, nx: bool) -> RefTranslation {
        RefTranslation {
            pa: (base | (va & (size - 1))) & self.a20,
            page_size: size,
            write: w,
            user: u,
            nx,
        }
    }

    /// 32-bit paging: CR3[31:12] → PDE (4 bytes, index va[31:22]) → PTE (index va[21:12]).
    fn bits32(&self, cpu: &X86CpuState, va: u64) -> Option<RefTranslation> {
        if va > 0xffff_ffff {
            return None;
        }
        let pd = cpu.cr[3] & 0xffff_f000;
        let pde = self.read32(pd + bits(va, 31, 22) * 4)?;
        if !bit(pde, 0) {
            return None;
        }
        if cpu.cr[4] & CR4_PSE != 0 && bit(pde, 7) {
            // 4 MiB page: PA[31:22] = PDE[31:22], PA[39:32] = PDE[20:13]; PDE[21] reserved
            // (MAXPHYADDR capped at 40 for PSE-36).
            if bit(pde, 21) {
                return None;
            }
            let base = (bits(pde, 31, 22) << 22) | (bits(pde, 20, 13) << 32);
            return Some(self.done(base, 1 << 22, va, bit(pde, 1), bit(pde, 2), false));
        }
        let pt = pde & 0xffff_f000;
        let pte = self.read32(pt + bits(va, 21, 12) * 4)?;
        if !bit(pte, 0) {
            return None;
        }
        Some(self.done(
            pte & 0xffff_f000,
            1 << 12,
            va,
            bit(pde, 1) && bit(pte, 1),
            bit(pde, 2) && bit(pte, 2),
            false,
        ))
    }

    /// PAE paging: CR3[31:5] → PDPTE (index va[31:30]) → PDE (va[29:21]) → PTE (va[20:12]).
    fn pae(&self, cpu: &X86CpuState, va: u64) -> Option<RefTranslation> {
        if va > 0xffff_ffff {
            return None;
        }
        let nxe = cpu.efer & EFER_NXE != 0;
        let pdpt = cpu.cr[3] & 0xffff_ffe0;
        let pdpte = self.read64(pdpt + bits(va, 31, 30) * 8)?;
        if !bit(pdpte, 0) {
            return None;
        }
        // Table 4-8: bits 2:1, 8:5 and 63:MAXPHYADDR are reserved. Deviation, on purpose: QEMU's
        // TCG sets the accessed bit (5) in PDPTEs and does not fault on bits 8:5, so real PAE
        // guests under QEMU carry it; guestcore follows QEMU there, and so does this oracle.
        if bits(pdpte, 2, 1) != 0 || bits(pdpte, 63, 52) != 0 {
            return None;
        }
        // Tables 4-9..4-11: bits 62:MAXPHYADDR reserved; bit 63 reserved unless NXE.
        let rsvd = |e: u64| bits(e, 62, 52) != 0 || (!nxe && bit(e, 63));
        let pd = pdpte & 0x000f_ffff_ffff_f000;
        let pde = self.read64(pd + bits(va, 29, 21) * 8)?;
        if !bit(pde, 0) || rsvd(pde) {
            return None;
        }
        if bit(pde, 7) {
            // 2 MiB page: bits 20:13 reserved; PA[51:21] = PDE[51:21].
            if bits(pde, 20, 13) != 0 {
                return None;
            }
            let base = bits(pde, 51, 21) << 21;
            return Some(self.done(
                base,
                1 << 21,
                va,
                bit(pde, 1),
                bit(pde, 2),
                nxe && bit(pde, 63),
            ));
        }
        let pt = pde & 0x000f_ffff_ffff_f000;
        let pte = self.read64(pt + bits(va, 20, 12) * 8)?;
        if !bit(pte, 0) || rsvd(pte) {
            return None;
        }
        Some(self.done(
            pte & 0x000f_ffff_ffff_f000,
            1 << 12,
            va,
            bit(pde, 1) && bit(pte, 1),
            bit(pde, 2) && bit(pte, 2),
            nxe && (bit(pde, 63) || bit(pte, 63)),
        ))
    }

    /// IA-32e paging, 4 or 5 levels. Bits 62:52 of every entry are ignored (software / protection
    /// keys); bits 51:MAXPHYADDR are reserved (none with 52); bit 63 reserved unless NXE; PS is
    /// reserved in PML5Es and PML4Es; large pages reserve the bits between 12 and their alignment.
    fn ia32e(&self, cpu: &X86CpuState, va: u64) -> Option<RefTranslation> {
        let la57 = cpu.cr[4] & CR4_LA57 != 0;
        let width = if la57 { 57 } else { 48 };
        let top = va >> (width - 1);
        let ones = u64::MAX >> (width - 1);
        if top != 0 && top != ones {
            return None; // not canonical
        }
        let nxe = cpu.efer & EFER_NXE != 0;
        let (mut w, mut u, mut nx) = (true, true, false);
        let mut table = cpu.cr[3] & 0x000f_ffff_ffff_f000;
        let first_shift = if la57 { 48 } else { 39 };
        let mut shift = first_shift;
        loop {
            let e = self.read64(table + bits(va, shift + 8, shift) * 8)?;
            if !bit(e, 0) || (!nxe && bit(e, 63)) {
                return None;
            }
            w &= bit(e, 1);
            u &= bit(e, 2);
            nx |= nxe && bit(e, 63);
            let ps = bit(e, 7);
            match shift {
                48 | 39 if ps => return None,
                30 | 21 if ps => {
                    if bits(e, shift - 1, 13) != 0 {
                        return None;
                    }
                    let base = bits(e, 51, shift) << shift;
                    return Some(self.done(base, 1 << shift, va, w, u, nx));
                }
                12 => {
                    let base = e & 0x000f_ffff_ffff_f000;
                    return Some(self.done(base, 1 << 12, va, w, u, nx));
                }
                _ => {
                    table = e & 0x000f_ffff_ffff_f000;
                    shift -= 9;
                }
            }
        }
    }
}
