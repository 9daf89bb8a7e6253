//! The printk ring reader on a synthetic kernel: exact makedumpfile formatting, and bounded
//! ends on hostile rings (huge sizes, ids that never meet, lengths past their block).

use guestcore::kernel::kernel_log;
use guestcore::paging::{ModeKind, PagingMode};
use guestcore_testkit::vmcoreinfo::PRINTK_RING_LAYOUT;
use guestcore_testkit::{GuestBuilder, MapFlags};

const K: u64 = 0xffff_ffff_8000_0000;

const FINALIZED: u64 = 2 << 62;

/// A ring of 4 descriptors and a 4 KiB text ring; `records` are (id, ts_nsec, text) placed one
/// after the other; `patch` may corrupt anything before the walk.
struct Ring {
    b: GuestBuilder,
    count_bits: u32,
    head: u64,
    tail: u64,
}

impl Ring {
    fn new(records: &[(u64, u64, &[u8])]) -> Self {
        let mut b = GuestBuilder::new(ModeKind::Level4, 8 << 20).tables_at(0x60_0000);
        b.map(K, 0, 4 << 20, MapFlags::WRITE);
        b.write_u64(0x1_0000, K + 0x1_1000); // prb -> printk_ringbuffer
        let mut lpos = 0u64;
        for &(id, ts, text) in records {
            let slot = id % 4;
            let next = lpos + 8 + (text.len() as u64).next_multiple_of(8);
            b.write_u64(0x1_2000 + slot * 24, FINALIZED | id);
            b.write_u64(0x1_2000 + slot * 24 + 8, lpos);
            b.write_u64(0x1_2000 + slot * 24 + 16, next);
            b.write_u64(0x1_3000 + slot * 88 + 8, ts);
            b.write_phys(
                0x1_3000 + slot * 88 + 16,
                &(text.len() as u16).to_le_bytes(),
            );
            b.write_u64(0x1_4000 + lpos, id);
            b.write_phys(0x1_4000 + lpos + 8, text);
            lpos = next;
        }
        let ids: Vec<u64> = records.iter().map(|r| r.0).collect();
        Ring {
            b,
            count_bits: 2,
            tail: ids.first().copied().unwrap_or(0),
            head: ids.last().copied().unwrap_or(0),
        }
    }

    fn log(mut self) -> guestcore::Result<String> {
        let ring = 0x1_1000;
        self.b.write_phys(ring, &self.count_bits.to_le_bytes());
        self.b.write_u64(ring + 8, K + 0x1_2000);
        self.b.write_u64(ring + 16, K + 0x1_3000);
        self.b.write_u64(ring + 24, self.head);
        self.b.write_u64(ring + 32, self.tail);
        self.b.write_phys(ring + 48, &12u32.to_le_bytes());
        self.b.write_u64(ring + 56, K + 0x1_4000);
        let (mem, cpu) = self.b.build();
        let mode = PagingMode::from_cpu(&cpu).unwrap();
        let text = format!(
            "OSRELEASE=6.1.0-test\nSYMBOL(prb)={:x}\n{PRINTK_RING_LAYOUT}",
            K + 0x1_0000
        );
        kernel_log(&mem, &mode, text.as_bytes())
    }
}

#[test]
fn lines_are_makedumpfiles() {
    let log = Ring::new(&[
        (0, 1_500_000_000, b"hello"),
        (1, 2_000_123_456, b"a\nb\x01\xc3"),
        (2, 123_456_789_000_000, b"tab\there"),
    ])
    .log()
    .unwrap();
    assert_eq!(
        log,
        "[    1.500000] hello\n\
         [    2.000123] a\n               b\\x01\\xffffffc3\n\
         [123456.789000] tab\there\n"
    );
}

#[test]
fn records_not_committed_or_of_another_lap_are_skipped() {
    let mut r = Ring::new(&[(0, 1, b"kept"), (1, 2, b"reused")]);
    r.b.write_u64(0x1_2000 + 24, (3 << 62) | 1); // reusable
    assert_eq!(r.log().unwrap(), "[    0.000000] kept\n");
    let mut r = Ring::new(&[(0, 1, b"x"), (1, 2, b"y")]);
    r.b.write_u64(0x1_2000 + 24, FINALIZED | 5); // id of a later lap
    assert_eq!(r.log().unwrap(), "[    0.000000] x\n");
}

#[test]
fn hostile_rings_end_bounded() {
    // Sizes that would need gigabytes: refused.
    let mut r = Ring::new(&[(0, 1, b"x")]);
    r.count_bits = 31;
    let e = r.log().unwrap_err().to_string();
    assert!(e.contains("count_bits 31"), "{e}");
    // A head more than one lap past the tail, or a tail after the head: a corrupt ring, said
    // as such, not a lap of stale slots or an empty log.
    for (tail, head) in [(0, 0x3fff_ffff_ffff_ffff), (2, 1), (0, 4)] {
        let mut r = Ring::new(&[(0, 1, b"x"), (1, 2, b"y")]);
        (r.tail, r.head) = (tail, head);
        match r.log() {
            Err(e @ guestcore::Error::CorruptGuestData { .. }) => {
                let e = e.to_string();
                assert!(
                    e.contains("printk ring buffer is corrupt")
                        && e.contains(&format!("tail id {tail:#x}")),
                    "{e}"
                );
            }
            other => panic!("tail {tail} head {head:#x}: {other:?}"),
        }
    }
    // Head one lap minus one past the tail (a full ring) is fine, and ids that wrap too.
    let mut r = Ring::new(&[(0, 1, b"x"), (1, 2, b"y")]);
    r.head = 3;
    assert_eq!(r.log().unwrap().lines().count(), 2);
    let mut r = Ring::new(&[(0x3fff_ffff_ffff_ffff, 1, b"last"), (0, 2, b"first")]);
    (r.tail, r.head) = (0x3fff_ffff_ffff_ffff, 0);
    assert_eq!(
        r.log().unwrap(),
        "[    0.000000] last\n[    0.000000] first\n"
    );
    // A text length past its block is cut to the block.
    let mut r = Ring::new(&[(0, 1, b"abcdefgh"), (1, 2, b"next")]);
    r.b.write_phys(0x1_3000 + 16, &u16::MAX.to_le_bytes());
    assert_eq!(
        r.log().unwrap(),
        "[    0.000000] abcdefgh\n[    0.000000] next\n"
    );
    // Pointers outside the kernel's mappings: an error naming the address, not zeros.
    let mut r = Ring::new(&[(0, 1, b"x")]);
    r.b.write_u64(0x1_0000, 0xdead_0000);
    assert!(r.log().is_err());
}

#[test]
fn kernels_without_a_ring_say_why() {
    let (mem, cpu) = GuestBuilder::new(ModeKind::Level4, 1 << 20).build();
    let mode = PagingMode::from_cpu(&cpu).unwrap();
    let e = kernel_log(
        &mem,
        &mode,
        b"OSRELEASE=4.19\nSYMBOL(log_buf)=ffffffff82000000\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pre-5.10 log_buf"), "{e}");
    let e = kernel_log(
        &mem,
        &mode,
        b"OSRELEASE=6.1\nSYMBOL(prb)=ffffffff82000000\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SIZE(printk_ringbuffer)"), "{e}");
}
