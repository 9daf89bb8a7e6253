//! [`SparseMemory`]: guest RAM that costs memory only for the pages someone wrote.
//!
//! A synthetic guest of many GiB holds a few MiB of page tables and data; the rest of its RAM
//! reads as zeros. Keeping only written 4 KiB pages (zero elsewhere) lets tests and benchmarks
//! build big guests without allocating per RAM byte, while the walker still sees a borrowed view
//! ([`PhysMemory::slice`]) of every in-page range, as it would with a mapped file.

use guestcore::addr::PhysRange;
use guestcore::phys::{PhysMemory, RamMap, VecMemory};
use guestcore::{Error, Result};
use std::collections::HashMap;

const PAGE: u64 = 4096;
static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

/// Sparse guest-physical memory: the RAM ranges given at creation, zero except where written.
#[derive(Debug, Clone)]
pub struct SparseMemory {
    ram: RamMap,
    pages: HashMap<u64, Box<[u8; PAGE as usize]>>,
}

impl SparseMemory {
    /// RAM at `ranges` (`(start, len)` pairs, any order, non-overlapping), all zero.
    ///
    /// # Panics
    /// When ranges overlap (test-support code: a wrong layout is a bug in the test).
    pub fn new(ranges: &[(u64, u64)]) -> Self {
        let ram = RamMap::new(ranges.iter().map(|&(s, l)| PhysRange::new(s, l)).collect())
            .expect("RAM ranges must not overlap");
        SparseMemory {
            ram,
            pages: HashMap::new(),
        }
    }

    /// Writes `bytes` at `pa`.
    ///
    /// # Panics
    /// When any byte of the range is not RAM.
    pub fn write(&mut self, pa: u64, bytes: &[u8]) {
        assert!(
            self.ram.contains(pa, bytes.len() as u64),
            "write of {} bytes at {pa:#x} is outside guest RAM",
            bytes.len()
        );
        let mut done = 0usize;
        while done < bytes.len() {
            let a = pa + done as u64;
            let off = (a % PAGE) as usize;
            let n = (PAGE as usize - off).min(bytes.len() - done);
            let page = self
                .pages
                .entry(a / PAGE)
                .or_insert_with(|| Box::new([0; PAGE as usize]));
            page[off..off + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }

    /// Writes a little-endian `u64`.
    pub fn write_u64(&mut self, pa: u64, v: u64) {
        self.write(pa, &v.to_le_bytes());
    }

    /// Writes a little-endian `u32`.
    pub fn write_u32(&mut self, pa: u64, v: u32) {
        self.write(pa, &v.to_le_bytes());
    }

    /// Number of 4 KiB pages that hold written data.
    pub fn pages_written(&self) -> usize {
        self.pages.len()
    }

    /// A dense copy (one buffer per RAM range). Allocates every RAM byte: small guests only.
    pub fn to_vec_memory(&self) -> VecMemory {
        let blocks = self
            .ram
            .ranges()
            .iter()
            .map(|r| {
                let mut buf = vec![0u8; r.len() as usize];
                self.read_at(r.start, &mut buf)
                    .expect("a RAM range is readable");
                (r.start, buf)
            })
            .collect();
        VecMemory::from_blocks(blocks).expect("ranges came from a valid RamMap")
    }

    fn page(&self, pfn: u64) -> &[u8; PAGE as usize] {
        self.pages.get(&pfn).map_or(&ZERO_PAGE, |p| p)
    }
}

impl PhysMemory for SparseMemory {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        if !self.ram.contains(addr, buf.len() as u64) {
            return Err(Error::NotInMemory {
                addr,
                len: buf.len() as u64,
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr + done as u64;
            let off = (a % PAGE) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.page(a / PAGE)[off..off + n]);
            done += n;
        }
        Ok(())
    }

    fn ram(&self) -> &RamMap {
        &self.ram
    }

    /// Any range inside one 4 KiB page of RAM (page tables always are).
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let off = addr % PAGE;
        if len > PAGE - off || !self.ram.contains(addr, len) {
            return None;
        }
        let off = off as usize;
        Some(&self.page(addr / PAGE)[off..off + len as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_reads_zero_and_written_bytes() {
        let mut m = SparseMemory::new(&[(0, 0xa0000), (0x100000, 0x100000)]);
        m.write(0xffe, b"abcd");
        let mut b = [0u8; 6];
        m.read_at(0xffd, &mut b).unwrap();
        assert_eq!(&b, b"\0abcd\0");
        assert_eq!(m.pages_written(), 2);
        assert!(m.read_at(0x9ffff, &mut b).is_err(), "hole");
        assert_eq!(m.slice(0x1000, 2), Some(&b"cd"[..]));
        assert_eq!(m.slice(0xfff, 2), None, "crosses a page");
        let v = m.to_vec_memory();
        let mut c = [0u8; 4];
        v.read_at(0xffe, &mut c).unwrap();
        assert_eq!(&c, b"abcd");
    }
}
