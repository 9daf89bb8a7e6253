//! What one `struct page` says its frame holds, by the rules makedumpfile applies (so a
//! guestcore dump keeps the frames a makedumpfile dump of the same memory keeps).
//!
//! In order, the first rule that matches decides (a compound *head* decides for its whole
//! compound page, a buddy head for its whole free block; tails of compound pages are never
//! classified on their own):
//!
//! 1. free (level 16): `_mapcount` is `PAGE_BUDDY_MAPCOUNT_VALUE` and the page is not a slab
//!    page; `private` is the block's order (an order at or above `LENGTH(zone.free_area)` is
//!    not trusted: the page is kept). Unaccepted memory (`PAGE_UNACCEPTED_MAPCOUNT_VALUE`) is
//!    a free block of the largest order.
//! 2. page cache without private data (level 2): on an LRU list, or in the swap cache, and
//!    not anonymous and not `PG_private`.
//! 3. page cache (level 4): the same, private data or not.
//! 4. user data (level 8): anonymous (`mapping & 1`, not slab) or a hugetlbfs page.
//! 5. hardware-poisoned (`PG_hwpoison`) and logically offline (`PAGE_OFFLINE_MAPCOUNT_VALUE`)
//!    pages, whatever the level: their contents cannot or need not be read.
//!
//! A compound order that is too large for a word or that the head's pfn is not aligned to is
//! taken as 0, as makedumpfile does.

use super::page_array::PageLayout;
use super::DumpLevel as L;
use crate::kernel::vread::uint_at;

/// Why a frame is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    /// Free, in the buddy allocator (level 16).
    Free,
    /// Page cache without private data (level 2).
    Cache,
    /// Page cache with private data (level 4).
    CachePrivate,
    /// Anonymous or hugetlbfs memory of user processes (level 8).
    User,
    /// Hardware-poisoned (any level above 0).
    HwPoison,
    /// Logically offline, e.g. a balloon's (any level above 0).
    Offline,
}

/// A frame's verdict: leave out `pages` frames from it on, for `class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The rule that leaves them out.
    pub class: Class,
    /// Frames left out from this one on: a free buddy block or a compound page as a whole, else 1.
    pub pages: u64,
}

/// The fields of one `struct page` the rules read.
struct Fields {
    flags: u64,
    mapping: u64,
    mapcount: u32,
    private: u64,
    compound_head: u64,
}

impl PageLayout {
    fn word_at(&self, page: &[u8], off: Option<usize>) -> u64 {
        off.and_then(|o| uint_at(page, o, self.word)).unwrap_or(0)
    }

    fn fields(&self, page: &[u8]) -> Fields {
        Fields {
            flags: self.word_at(page, Some(self.off_flags)),
            mapping: self.word_at(page, self.off_mapping),
            mapcount: self
                .off_mapcount
                .and_then(|o| uint_at(page, o, 4))
                .unwrap_or(0) as u32,
            private: self.word_at(page, self.off_private),
            compound_head: self.word_at(page, self.off_compound_head),
        }
    }

    fn test(flags: u64, bit: Option<u32>) -> bool {
        bit.is_some_and(|b| flags >> b & 1 == 1)
    }

    fn is_slab(&self, f: &Fields) -> bool {
        self.slab_mapcount == Some(f.mapcount) && self.slab_mapcount.is_some()
            || Self::test(f.flags, self.pg_slab)
    }

    fn is_anon(&self, f: &Fields) -> bool {
        f.mapping & 1 != 0 && !self.is_slab(f)
    }

    fn is_cache(&self, f: &Fields) -> bool {
        Self::test(f.flags, self.pg_lru)
            || (self.pg_swapbacked.is_none() || Self::test(f.flags, self.pg_swapbacked))
                && Self::test(f.flags, self.pg_swapcache)
    }

    /// Order and hugetlb-ness of a compound head, read from its first tail page.
    fn compound(&self, pfn: u64, f: &Fields, tail: Option<&[u8]>) -> (u32, bool) {
        let Some(tail) =
            tail.filter(|_| f.flags & self.pg_head_mask != 0 && self.pg_head_mask != 0)
        else {
            return (0, false);
        };
        let (order, hugetlb) = if let Some(v) = self.hugetlb_mapcount {
            let t = self.word_at(tail, Some(self.off_flags));
            ((t & 0xff) as u32, f.mapcount == v)
        } else if let Some(b) = self.pg_hugetlb {
            let t = self.word_at(tail, Some(self.off_flags));
            ((t & 0xff) as u32, t >> b & 1 == 1)
        } else {
            let read =
                |at: Option<(usize, usize)>| at.and_then(|(o, w)| uint_at(tail, o, w)).unwrap_or(0);
            let dtor = read(self.dtor_in_tail);
            (
                read(self.order_in_tail) as u32,
                self.hugetlb_dtor.is_some_and(|d| d == dtor) && self.dtor_in_tail.is_some(),
            )
        };
        let bits = self.word as u32 * 8;
        if order >= bits || pfn & ((1u64 << order) - 1) != 0 {
            return (0, hugetlb);
        }
        (order, hugetlb)
    }

    /// The verdict on the frame `pfn` whose `struct page` is `page` (`tail`: the next one,
    /// when readable) for the level bits `bits`; `None` keeps it. `Err(())` is a free page whose
    /// order is not believable (kept, and counted by the caller).
    pub(crate) fn classify(
        &self,
        bits: u8,
        pfn: u64,
        page: &[u8],
        tail: Option<&[u8]>,
    ) -> Result<Option<Verdict>, ()> {
        let f = self.fields(page);
        let (order, hugetlb) = self.compound(pfn, &f, tail);
        if self.off_compound_head.is_some() && f.compound_head & 1 != 0 {
            return Ok(None);
        }
        let pages = 1u64 << order;
        let free = bits & L::FREE != 0;
        let verdict = |class, pages| Ok(Some(Verdict { class, pages }));
        if free && self.buddy_mapcount == Some(f.mapcount) && !self.is_slab(&f) {
            if self.free_area_len.is_some_and(|n| f.private >= n) || f.private >= 64 {
                return Err(());
            }
            return verdict(Class::Free, 1 << f.private);
        }
        if free && self.unaccepted_mapcount == Some(f.mapcount) {
            if let Some(n) = self.free_area_len.filter(|n| *n >= 1) {
                return verdict(Class::Free, 1 << (n - 1));
            }
        }
        let cache = self.is_cache(&f) && !self.is_anon(&f);
        let private = Self::test(f.flags, self.pg_private);
        if bits & L::CACHE != 0 && cache && !private {
            return verdict(Class::Cache, pages);
        }
        if bits & L::CACHE_PRIVATE != 0 && cache {
            return verdict(
                if private {
                    Class::CachePrivate
                } else {
                    Class::Cache
                },
                pages,
            );
        }
        if bits & L::USER != 0 && (self.is_anon(&f) || hugetlb) {
            return verdict(Class::User, pages);
        }
        if Self::test(f.flags, self.pg_hwpoison) {
            return verdict(Class::HwPoison, pages);
        }
        if self.offline_mapcount == Some(f.mapcount) && !self.is_slab(&f) {
            return verdict(Class::Offline, pages);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VMCOREINFO lines shaped like those of a 6.1 x86_64 kernel that describe `struct page`.
    const V61: &[u8] = b"OSRELEASE=6.1.0-57-amd64\nSIZE(page)=64\nOFFSET(page.flags)=0\n\
        OFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\nOFFSET(page.lru)=8\n\
        OFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_dtor)=16\n\
        OFFSET(page.compound_order)=17\nOFFSET(page.compound_head)=8\nLENGTH(zone.free_area)=11\n\
        NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\n\
        NUMBER(PG_slab)=9\nNUMBER(PG_hwpoison)=23\nNUMBER(PG_head_mask)=65536\n\
        NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\
        NUMBER(HUGETLB_PAGE_DTOR)=2\n";

    fn page(flags: u64, mapping: u64, mapcount: i32, private: u64) -> Vec<u8> {
        let mut p = vec![0u8; 64];
        p[0..8].copy_from_slice(&flags.to_le_bytes());
        p[24..32].copy_from_slice(&mapping.to_le_bytes());
        p[48..52].copy_from_slice(&mapcount.to_le_bytes());
        p[40..48].copy_from_slice(&private.to_le_bytes());
        p
    }

    fn layout() -> PageLayout {
        PageLayout::from_vmcoreinfo(V61, 8).unwrap()
    }

    #[test]
    fn each_rule_and_its_level() {
        let l = layout();
        let v = |bits, p: &[u8]| {
            l.classify(bits, 0, p, None)
                .unwrap()
                .map(|v| (v.class, v.pages))
        };
        let buddy = page(0, 0, -129, 3);
        assert_eq!(v(16, &buddy), Some((Class::Free, 8)));
        assert_eq!(v(15, &buddy), None, "free pages only at level 16");
        let lru = page(1 << 4, 0xffff_8880_0000_1000, -1, 0);
        assert_eq!(v(2, &lru), Some((Class::Cache, 1)));
        let lru_private = page(1 << 4 | 1 << 13, 0xffff_8880_0000_1000, -1, 0);
        assert_eq!(v(2, &lru_private), None);
        assert_eq!(v(4, &lru_private), Some((Class::CachePrivate, 1)));
        let anon = page(1 << 4 | 1 << 19, 0xffff_8880_0000_1001, 0, 0);
        assert_eq!(
            v(6, &anon),
            None,
            "anonymous pages on the LRU are not cache"
        );
        assert_eq!(v(8, &anon), Some((Class::User, 1)));
        let slab_anon_bit = page(1 << 9, 1, 0, 0);
        assert_eq!(
            v(31, &slab_anon_bit),
            None,
            "slab pages are never user data"
        );
        let poisoned = page(1 << 23, 0, -1, 0);
        assert_eq!(v(1, &poisoned), Some((Class::HwPoison, 1)));
        let offline = page(0, 0, -257, 0);
        assert_eq!(v(1, &offline), Some((Class::Offline, 1)));
        assert_eq!(v(31, &page(0, 0, -1, 0)), None);
    }

    #[test]
    fn compound_heads_decide_for_their_tails_and_bad_orders_are_zero() {
        let l = layout();
        let head = page(1 << 16, 1, 0, 0);
        let mut tail = page(0, 0, 0, 0);
        tail[16] = 2; // compound_dtor: HUGETLB_PAGE_DTOR
        tail[17] = 9; // compound_order
        let v = l.classify(8, 512, &head, Some(&tail)).unwrap().unwrap();
        assert_eq!((v.class, v.pages), (Class::User, 512));
        // Not aligned to its order: order 0.
        let v = l.classify(8, 513, &head, Some(&tail)).unwrap().unwrap();
        assert_eq!(v.pages, 1);
        // Order 63 on pfn 0: too large for the rule's shift, taken as 0.
        tail[17] = 64;
        assert_eq!(
            l.classify(8, 0, &head, Some(&tail)).unwrap().unwrap().pages,
            1
        );
        // A hugetlb head that is not anonymous is user data through its destructor.
        let hugetlb_head = page(1 << 16, 0xffff_8880_0000_2000, 0, 0);
        tail[17] = 9;
        let v = l
            .classify(8, 0, &hugetlb_head, Some(&tail))
            .unwrap()
            .unwrap();
        assert_eq!((v.class, v.pages), (Class::User, 512));
        // A tail page (compound_head bit 0) is never classified on its own.
        let mut t = page(0, 1, 0, 0);
        t[8] = 1;
        assert_eq!(l.classify(31, 1, &t, None).unwrap(), None);
    }

    #[test]
    fn a_free_order_past_the_allocator_is_not_believed() {
        let l = layout();
        assert!(l.classify(16, 0, &page(0, 0, -129, 11), None).is_err());
        assert!(l
            .classify(16, 0, &page(0, 0, -129, u64::MAX), None)
            .is_err());
    }
}
