//! The kernel traces a pushed dump's pages show as they pass into the file.
//!
//! Why: a dump of a background snapshot is completed by the same plan as any dump, over the
//! pages received, and that plan looks for the kernel the dump describes in RAM when QEMU
//! holds no VMCOREINFO for the guest (no `-device vmcoreinfo`). Scanning the written file for
//! it afterwards would read every page again (and decompress every page of a kdump file).
//! Instead each page's first bytes are looked at as the stream brings it — a comparison of a
//! few bytes per page, on pages already in hand — and the scan afterwards reads only the
//! pages that started a VMCOREINFO note or a kdump core header. The note then comes from the
//! snapshot's own copy of its page: the same instant as every other page.
//!
//! Cost, measured (`cargo test --release -p guestcore --lib watching_a_gib -- --ignored
//! --nocapture`, this 2-core machine under load): 0.65 ms per GiB of pages watched, against
//! the seconds a GiB takes to stream; afterwards a handful of page reads (the candidates).

use crate::dump::{DumpOutcome, PageSink, SinkEnd};
use crate::kernel::scan::PageHeads;
use crate::phys::PhysMemory;
use crate::Result;

/// A [`PageSink`] that passes every page on to `inner`, noting the page starts that may hold
/// a kernel's traces.
pub(super) struct WatchHeads {
    inner: Box<dyn PageSink>,
    pub(super) heads: PageHeads,
}

impl WatchHeads {
    pub(super) fn new(inner: Box<dyn PageSink>) -> Self {
        WatchHeads {
            inner,
            heads: PageHeads::default(),
        }
    }
}

impl PageSink for WatchHeads {
    fn page(&mut self, gpa: u64, bytes: Option<&[u8]>) -> Result<()> {
        if let Some(b) = bytes.filter(|b| b.len() >= 64) {
            self.heads.see(gpa, &b[..64]);
        }
        self.inner.page(gpa, bytes)
    }

    fn memory(&mut self) -> Result<Box<dyn PhysMemory>> {
        self.inner.memory()
    }

    fn finish(self: Box<Self>, end: &SinkEnd<'_>) -> Result<DumpOutcome> {
        self.inner.finish(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ElfNote;

    /// A sink that keeps nothing: what the watcher saw is all that is checked.
    struct Nothing;
    impl PageSink for Nothing {
        fn page(&mut self, _: u64, _: Option<&[u8]>) -> Result<()> {
            Ok(())
        }
        fn memory(&mut self) -> Result<Box<dyn PhysMemory>> {
            Err(crate::Error::Unsupported("none".into()))
        }
        fn finish(self: Box<Self>, _: &SinkEnd<'_>) -> Result<DumpOutcome> {
            Err(crate::Error::Unsupported("none".into()))
        }
    }

    #[test]
    fn only_page_starts_of_notes_and_core_headers_are_kept() {
        let mut w = WatchHeads::new(Box::new(Nothing));
        let mut note = Vec::new();
        ElfNote::new(b"VMCOREINFO", 0, b"OSRELEASE=6.1\nPAGESIZE=4096\n".to_vec())
            .encode_into(&mut note);
        note.resize(4096, 0);
        w.page(0x5000, Some(&note)).unwrap();
        w.page(0x6000, Some(&[0u8; 4096])).unwrap();
        w.page(0x7000, None).unwrap();
        w.page(0x5000, Some(&note)).unwrap();
        let mut seen = PageHeads::default();
        seen.see(0x5000, &note[..64]);
        assert_eq!(w.heads, seen);
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// Measures what watching costs per GiB of pages (run with `--ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn watching_a_gib_of_pages() {
        let page = vec![0x5au8; 4096];
        let mut heads = PageHeads::default();
        let t = std::time::Instant::now();
        for i in 0..(1u64 << 18) {
            heads.see(i << 12, std::hint::black_box(&page[..64]));
        }
        eprintln!("1 GiB of pages watched in {:?}", t.elapsed());
    }
}
