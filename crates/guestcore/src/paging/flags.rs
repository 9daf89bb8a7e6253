//! Page flags as the walker reports them.

use bitflags::bitflags;
use serde::{Deserialize, Serialize};

bitflags! {
    /// Flags of a leaf or mapping. `WRITE`, `USER` and `NX` are *effective*: combined across
    /// every level (W and U: AND; NX: OR, only with EFER.NXE). The others are the leaf entry's
    /// own bits. `IO` marks a range that is not guest RAM (MMIO, holes).
    ///
    /// aarch64 descriptors map onto the same meanings: `WRITE` = `AP[2]` clear (and no APTable
    /// write-protection above), `USER` = `AP[1]` (EL0 access, and no APTable EL0 block above),
    /// `NX` = PXN or PXNTable, `UXN` = UXN or UXNTable, `ACCESSED` = AF, `GLOBAL` = nG clear,
    /// `DIRTY` = DBM with `AP[2]` clear (hardware dirty state), `LARGE` = a block descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
    pub struct PageFlags: u16 {
        /// Writable (R/W set at every level).
        const WRITE = 1 << 0;
        /// User-accessible (U/S set at every level).
        const USER = 1 << 1;
        /// Execute-disable (XD set at any level, with EFER.NXE).
        const NX = 1 << 2;
        /// Global (G): kept in the TLB across CR3 loads.
        const GLOBAL = 1 << 3;
        /// Accessed (A): the CPU used the leaf.
        const ACCESSED = 1 << 4;
        /// Dirty (D): the CPU wrote through the leaf.
        const DIRTY = 1 << 5;
        /// Page-level write-through (PWT).
        const PWT = 1 << 6;
        /// Page-level cache disable (PCD).
        const PCD = 1 << 7;
        /// The leaf is a large page (PS bit), 2 MiB / 4 MiB / 1 GiB.
        const LARGE = 1 << 8;
        /// Not guest RAM.
        const IO = 1 << 9;
        /// aarch64 only: EL0 may not execute (UXN at the leaf or UXNTable above it). `NX` is
        /// then PXN: EL1 may not execute.
        const UXN = 1 << 10;
    }
}

impl PageFlags {
    /// The flags that decide whether two adjacent pages merge into one mapping: permissions and
    /// RAM-ness. Accessed/dirty/global bits differ page by page and would only fragment the list.
    pub(crate) const MERGE_KEY: PageFlags = PageFlags::WRITE
        .union(PageFlags::USER)
        .union(PageFlags::NX)
        .union(PageFlags::UXN)
        .union(PageFlags::IO);

    /// QEMU `info tlb` style: `X G P D A C T U W` (NX, global, large, dirty, accessed, PCD, PWT,
    /// user, write), `-` where clear; an aarch64 leaf that EL0 may not execute (`UXN`) gets an
    /// `E` in front (x86 never sets it, so its strings keep QEMU's nine columns).
    pub fn tlb_string(self) -> String {
        let uxn = self.contains(PageFlags::UXN).then_some('E');
        uxn.into_iter()
            .chain(
                [
                    (PageFlags::NX, 'X'),
                    (PageFlags::GLOBAL, 'G'),
                    (PageFlags::LARGE, 'P'),
                    (PageFlags::DIRTY, 'D'),
                    (PageFlags::ACCESSED, 'A'),
                    (PageFlags::PCD, 'C'),
                    (PageFlags::PWT, 'T'),
                    (PageFlags::USER, 'U'),
                    (PageFlags::WRITE, 'W'),
                ]
                .iter()
                .map(|(f, c)| if self.contains(*f) { *c } else { '-' }),
            )
            .collect()
    }

    /// QEMU `info mem` style `urw` plus `x`: user, read (always), write, execute (by the
    /// kernel on aarch64: PXN clear); an aarch64 mapping that EL0 may not execute (`UXN`) gets
    /// an `E` after them.
    pub fn mem_string(self) -> String {
        let mut s = String::with_capacity(4);
        s.push(if self.contains(PageFlags::USER) {
            'u'
        } else {
            '-'
        });
        s.push('r');
        s.push(if self.contains(PageFlags::WRITE) {
            'w'
        } else {
            '-'
        });
        s.push(if self.contains(PageFlags::NX) {
            '-'
        } else {
            'x'
        });
        if self.contains(PageFlags::UXN) {
            s.push('E');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::PageFlags;

    #[test]
    fn uxn_shows_only_where_set() {
        let x86 = PageFlags::WRITE | PageFlags::NX | PageFlags::GLOBAL;
        assert_eq!(
            x86.tlb_string(),
            "XG------W",
            "x86 keeps QEMU's nine columns"
        );
        assert_eq!(x86.mem_string(), "-rw-");
        let kernel_text = PageFlags::UXN | PageFlags::GLOBAL;
        assert_eq!(kernel_text.tlb_string(), "E-G-------");
        assert_eq!(kernel_text.mem_string(), "-r-xE");
        let user_text = PageFlags::USER | PageFlags::NX;
        assert_eq!(user_text.mem_string(), "ur--", "PXN only: EL0 may execute");
        assert!(PageFlags::MERGE_KEY.contains(PageFlags::UXN));
    }
}
