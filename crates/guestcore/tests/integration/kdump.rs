//! kdump writer ↔ reader: round trips in every compression, flattened streams, header fields,
//! atomic output, and corrupt files.

use guestcore::addr::PhysRange;
use guestcore::dump::kdump::{
    write_kdump, write_kdump_to, Compression, KdumpMachine, KdumpOptions, KdumpRequest,
};
use guestcore::format::ElfNote;
use guestcore::phys::kdump::KdumpFile;
use guestcore::phys::{PhysMemory, VecMemory};
use guestcore::Error;
use guestcore::{NoProgress, Progress};
use std::path::Path;

const PAGE: usize = 4096;
const VMCI: &[u8] = b"OSRELEASE=6.1.0-test-amd64\nPAGESIZE=4096\nNUMBER(phys_base)=-2147483648\n";

fn page(pfn: u64) -> Vec<u8> {
    guestcore_testkit::pages::mixed_page(pfn, PAGE)
}

/// RAM at [0, 256 KiB) and [1 MiB, 1.5 MiB): a hole between.
fn memory() -> VecMemory {
    let block = |start: u64, pages: u64| -> (u64, Vec<u8>) {
        (
            start,
            (0..pages)
                .flat_map(|i| page(start / PAGE as u64 + i))
                .collect(),
        )
    };
    VecMemory::from_blocks(vec![block(0, 64), block(0x100000, 128)]).unwrap()
}

fn notes() -> Vec<ElfNote> {
    vec![
        ElfNote::new(b"CORE", 1, vec![1; 336]),
        ElfNote::new(b"QEMU", 0, vec![2; 440]),
    ]
}

fn request<'a>(mem: &'a VecMemory, notes: &'a [ElfNote], c: Compression) -> KdumpRequest<'a> {
    KdumpRequest {
        notes,
        vmcoreinfo: Some(VMCI),
        ..KdumpRequest::new(mem, c)
    }
}

fn opts() -> KdumpOptions {
    KdumpOptions {
        window_pages: 50, // several windows, one partly filled
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}

fn assert_same(mem: &VecMemory, k: &KdumpFile) {
    assert_eq!(k.ram().ranges(), mem.ram().ranges());
    for r in mem.ram().ranges() {
        for a in (r.start..r.end).step_by(PAGE) {
            let mut got = vec![0u8; PAGE];
            k.read_at(a, &mut got).unwrap();
            assert!(got == page(a / PAGE as u64), "page at {a:#x} differs");
        }
    }
    // A read crossing pages, and reads in the hole.
    let mut b = vec![0u8; 100];
    k.read_at(0x1000 - 50, &mut b).unwrap();
    assert_eq!(&b[..50], &page(0)[PAGE - 50..]);
    assert_eq!(&b[50..], &page(1)[..50]);
    assert!(matches!(
        k.read_at(0x40000, &mut b),
        Err(Error::NotInMemory { .. })
    ));
    assert!(matches!(
        k.read_at(u64::MAX - 10, &mut b),
        Err(Error::NotInMemory { .. })
    ));
}

#[test]
fn round_trip_every_compression() {
    let mem = memory();
    let notes = notes();
    let dir = tempfile::tempdir().unwrap();
    for c in Compression::ALL {
        let out = dir.path().join(format!("dump.{c}"));
        let s = write_kdump(&request(&mem, &notes, c), &out, &opts(), &NoProgress).unwrap();
        assert_eq!(s.dumped_pages, 192);
        assert_eq!(s.ram_pages, 192);
        assert_eq!(s.max_mapnr, 0x180);
        assert_eq!(s.zero_pages, 48);
        assert_eq!(s.bytes_written, std::fs::metadata(&out).unwrap().len());
        if c == Compression::None {
            assert_eq!(s.compressed_pages, 0);
        } else {
            assert_eq!(s.raw_pages, 48, "{c}: random pages stay raw");
            assert_eq!(s.compressed_pages, 96, "{c}");
        }
        let k = KdumpFile::open(&out).unwrap();
        assert_same(&mem, &k);
        assert_eq!(k.info().status, c.flag());
        assert!(!k.info().flattened);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        Compression::ALL.len(),
        "no temporary files left"
    );
}

/// A source with a file (a raw image) is read from the file with its holes skipped: a sparse
/// image whose zero pages are partly holes and partly written zeros, with data extents that
/// start and end inside chunks, gives the same file, byte for byte, as the same memory held
/// in this process, and reads back the same.
#[test]
fn sparse_file_source_matches_memory_source() {
    use std::os::unix::fs::FileExt;
    let pages = 700u64;
    // Holes: pfns 0..40, 100..101, 300..650 (runs crossing the 128-page chunks) and the last
    // page; written zeros at 200..210; everything else written.
    let hole = |pfn: u64| pfn < 40 || pfn == 100 || (300..650).contains(&pfn) || pfn == pages - 1;
    let written_zero = |pfn: u64| (200..210).contains(&pfn);
    let content = |pfn: u64| {
        if hole(pfn) || written_zero(pfn) {
            vec![0u8; PAGE]
        } else {
            page(pfn * 4 + 1 + pfn % 3) // random, text or sparse, never zero
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("sparse.raw");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(pages * PAGE as u64).unwrap();
    let mut bytes = Vec::new();
    for pfn in 0..pages {
        let p = content(pfn);
        if !hole(pfn) {
            f.write_all_at(&p, pfn * PAGE as u64).unwrap();
        }
        bytes.extend_from_slice(&p);
    }
    drop(f);
    let raw = guestcore::phys::raw::RawImage::open(&img, None).unwrap();
    assert!(
        raw.file_extent(0, PAGE as u64).is_some(),
        "the image has a file"
    );
    let mem = VecMemory::from_blocks(vec![(0, bytes)]).unwrap();
    let notes = notes();
    for c in Compression::ALL {
        let from_file = dir.path().join(format!("file.{c}"));
        let from_mem = dir.path().join(format!("mem.{c}"));
        let a = KdumpRequest {
            notes: &notes,
            vmcoreinfo: Some(VMCI),
            ..KdumpRequest::new(&raw, c)
        };
        let a = write_kdump(&a, &from_file, &opts(), &NoProgress).unwrap();
        let b = KdumpRequest {
            notes: &notes,
            vmcoreinfo: Some(VMCI),
            ..KdumpRequest::new(&mem, c)
        };
        let b = write_kdump(&b, &from_mem, &opts(), &NoProgress).unwrap();
        assert_eq!(a.zero_pages, 40 + 1 + 350 + 1 + 10, "{c}");
        assert_eq!(
            (a.zero_pages, a.compressed_pages, a.raw_pages),
            (b.zero_pages, b.compressed_pages, b.raw_pages),
            "{c}"
        );
        let (fa, fb) = (
            std::fs::read(&from_file).unwrap(),
            std::fs::read(&from_mem).unwrap(),
        );
        assert!(fa == fb, "{c}: the two files differ");
        let k = KdumpFile::open(&from_file).unwrap();
        for pfn in 0..pages {
            let mut got = vec![0u8; PAGE];
            k.read_at(pfn * PAGE as u64, &mut got).unwrap();
            assert!(got == content(pfn), "{c}: pfn {pfn}");
        }
    }
}

#[test]
fn flattened_round_trip_file_and_stream() {
    let mem = memory();
    let notes = notes();
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::Zlib, Compression::Lzo] {
        let mut req = request(&mem, &notes, c);
        req.flatten = true;
        let out = dir.path().join(format!("flat.{c}"));
        write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"makedumpfile\0\0\0\0"));
        let k = KdumpFile::open(&out).unwrap();
        assert!(k.info().flattened);
        assert_same(&mem, &k);
        assert_eq!(k.vmcoreinfo(), Some(VMCI));

        let mut stream = Vec::new();
        let s = write_kdump_to(&req, &mut stream, &opts(), &NoProgress).unwrap();
        assert_eq!(s.bytes_written, stream.len() as u64);
        assert_eq!(stream, bytes, "file and stream forms are the same bytes");
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn header_fields() {
    let mem = memory();
    let notes = notes();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let mut req = request(&mem, &notes, Compression::Zlib);
    req.nr_cpus = 2;
    write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
    let b = std::fs::read(&out).unwrap();
    assert_eq!(&b[..8], b"KDUMP   ");
    assert_eq!(le32(&b, 8), 6);
    let uts = |i: usize| {
        let f = &b[12 + 65 * i..12 + 65 * (i + 1)];
        String::from_utf8(f[..f.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
    };
    assert_eq!(uts(0), "Linux");
    assert_eq!(uts(2), "6.1.0-test-amd64");
    assert_eq!(uts(4), "x86_64");
    assert_eq!(le64(&b, 408), 1_700_000_000);
    assert_eq!(le64(&b, 416), 0, "tv_usec");
    assert_eq!(le32(&b, 424), 1, "status = zlib");
    assert_eq!(le32(&b, 428), 4096, "block_size");
    assert_eq!(le32(&b, 432), 1, "sub_hdr_size");
    assert_eq!(le32(&b, 436), 2, "bitmap_blocks");
    assert_eq!(le32(&b, 440), 0x180, "max_mapnr");
    assert_eq!(le32(&b, 460), 2, "nr_cpus");
    // Sub header.
    assert_eq!(le64(&b, 4096) as i64, -2147483648, "phys_base");
    let (note_off, note_size) = (le64(&b, 4096 + 48), le64(&b, 4096 + 56));
    assert_eq!(note_off, 4096 + 104);
    let parsed =
        ElfNote::parse_all(&b[note_off as usize..(note_off + note_size) as usize]).unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[2].name, b"VMCOREINFO");
    let (vo, vs) = (le64(&b, 4096 + 32) as usize, le64(&b, 4096 + 40) as usize);
    assert_eq!(
        &b[vo..vo + vs],
        VMCI,
        "offset_vmcoreinfo points into the VMCOREINFO note"
    );
    assert_eq!(le64(&b, 4096 + 96), 0x180, "max_mapnr_64");
    // Bitmap 1 at block 2: pfns 0..64 set, 64..256 clear, 256..384 set.
    assert_eq!(&b[8192..8200], &[0xff; 8]);
    assert_eq!(b[8200], 0);
    assert_eq!(&b[8192 + 32..8192 + 48], &[0xff; 16]);
    assert_eq!(b[8192 + 48], 0);

    let k = KdumpFile::open(&out).unwrap();
    assert_eq!(k.machine(), "x86_64");
    assert_eq!(k.phys_base() as i64, -2147483648);
    assert_eq!(k.info().release, "6.1.0-test-amd64");
    assert_eq!(k.info().nr_cpus, 2);
    assert_eq!(k.notes().len(), 3);
    assert_eq!(k.notes()[..2], notes[..]);
    assert_eq!(k.vmcoreinfo(), Some(VMCI));
}

#[test]
fn i686_uses_the_32bit_abi() {
    let mem = memory();
    let notes = notes();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let mut req = request(&mem, &notes, Compression::Snappy);
    req.machine = KdumpMachine::I686;
    write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
    let b = std::fs::read(&out).unwrap();
    assert_eq!(le32(&b, 416), 4096, "block_size at the 32-bit offset");
    assert_eq!(
        le64(&b, 4096 + 32),
        4096 + 80,
        "offset_note (packed 32-bit sub header)"
    );
    let k = KdumpFile::open(&out).unwrap();
    assert!(!k.info().abi_64bit);
    assert_eq!(k.machine(), "i686");
    assert_eq!(k.phys_base(), 0x8000_0000);
    assert_eq!(k.notes().len(), 3);
    assert_same(&mem, &k);
}

#[test]
fn filter_excludes_pages_and_partial_pages_are_zero_filled() {
    let mut bytes: Vec<u8> = (0..3).flat_map(page).collect();
    bytes.truncate(2 * PAGE + 100); // the last page is partly RAM
    let mem = VecMemory::flat(bytes.clone());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let mut req = request(&mem, &[], Compression::Zstd);
    req.vmcoreinfo = None;
    write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
    let k = KdumpFile::open(&out).unwrap();
    assert_eq!(k.ram().ranges(), &[PhysRange::new(0, 3 * PAGE as u64)]);
    let mut p = vec![0u8; PAGE];
    k.read_at(2 * PAGE as u64, &mut p).unwrap();
    assert_eq!(&p[..100], &bytes[2 * PAGE..]);
    assert!(p[100..].iter().all(|&b| b == 0));
    assert_eq!(k.phys_base(), 0);
    assert!(k.vmcoreinfo().is_none());

    let mem = memory();
    let out = dir.path().join("filtered");
    let mut req = request(&mem, &[], Compression::Lzo);
    req.filter = Some(PhysRange::new(0x100800, 0x2000)); // touches 3 pages
    let s = write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
    assert_eq!((s.ram_pages, s.dumped_pages), (192, 3));
    let k = KdumpFile::open(&out).unwrap();
    assert_eq!(k.ram().ranges(), &[PhysRange::new(0x100000, 0x3000)]);
    assert_eq!(k.present_ranges().collect::<Vec<_>>(), mem.ram().ranges());
    assert!(!k.is_ram(0, 1));
    assert!(matches!(
        k.read_at(0, &mut p),
        Err(Error::NotInMemory { .. })
    ));
    k.read_at(0x101000, &mut p).unwrap();
    assert_eq!(p, page(0x101));
}

struct Cancel;
impl Progress for Cancel {
    fn cancelled(&self) -> bool {
        true
    }
}

#[test]
fn no_clobber_force_and_cancel_leave_nothing() {
    let mem = memory();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    std::fs::write(&out, b"precious").unwrap();
    let mut req = request(&mem, &[], Compression::Zlib);
    let e = write_kdump(&req, &out, &opts(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    req.force = true;
    assert!(matches!(
        write_kdump(&req, &out, &opts(), &Cancel),
        Err(Error::Cancelled)
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    write_kdump(&req, &out, &opts(), &NoProgress).unwrap();
    KdumpFile::open(&out).unwrap();
}

fn write_zlib(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let mem = memory();
    let notes = notes();
    let out = dir.join("dump");
    write_kdump(
        &request(&mem, &notes, Compression::Zlib),
        &out,
        &opts(),
        &NoProgress,
    )
    .unwrap();
    let b = std::fs::read(&out).unwrap();
    (out, b)
}

fn format_err(e: Error) -> String {
    match e {
        Error::Format { what, .. } => what,
        e => panic!("want a format error, got {e:?}"),
    }
}

#[test]
fn corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (out, b) = write_zlib(dir.path());
    let desc_off = (1 + le32(&b, 432) as usize + le32(&b, 436) as usize) * PAGE;
    let bad = dir.path().join("bad");
    let mut p = vec![0u8; PAGE];

    // Truncated inside the header.
    std::fs::write(&bad, &b[..300]).unwrap();
    format_err(KdumpFile::open(&bad).unwrap_err());
    // Truncated inside the page data: early pages read, late ones name their pfn.
    std::fs::write(&bad, &b[..b.len() - 5000]).unwrap();
    let k = KdumpFile::open(&bad).unwrap();
    k.read_at(0x2000, &mut p).unwrap();
    let e = format_err(k.read_at(0x17f000, &mut p).unwrap_err());
    assert!(e.contains("pfn 0x17f") && e.contains("past the end"), "{e}");
    // Truncated inside the descriptors.
    std::fs::write(&bad, &b[..desc_off + 24 * 10]).unwrap();
    let k = KdumpFile::open(&bad).unwrap();
    let e = format_err(k.read_at(0x17f000, &mut p).unwrap_err());
    assert!(e.contains("pfn 0x17f") && e.contains("descriptor"), "{e}");

    // max_mapnr larger than the bitmap covers.
    let mut m = b.clone();
    m[4096 + 96..4096 + 104].copy_from_slice(&1_000_000_000u64.to_le_bytes());
    let e = format_err(KdumpFile::open_like(&bad, &m));
    assert!(e.contains("bitmap") && e.contains("max_mapnr"), "{e}");

    // A descriptor pointing past the end of the file (pfn 1).
    let mut m = b.clone();
    m[desc_off + 24..desc_off + 32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&bad, &m).unwrap();
    let e = format_err(
        KdumpFile::open(&bad)
            .unwrap()
            .read_at(0x1000, &mut p)
            .unwrap_err(),
    );
    assert!(e.contains("pfn 0x1:") && e.contains("past the end"), "{e}");

    // A compressed page (pfn 2) that does not decompress to a page.
    let mut m = b.clone();
    let size = le32(&m, desc_off + 48 + 8);
    m[desc_off + 48 + 8..desc_off + 48 + 12].copy_from_slice(&(size - 4).to_le_bytes());
    std::fs::write(&bad, &m).unwrap();
    let e = format_err(
        KdumpFile::open(&bad)
            .unwrap()
            .read_at(0x2000, &mut p)
            .unwrap_err(),
    );
    assert!(e.contains("pfn 0x2:") && e.contains("zlib"), "{e}");

    // A raw page whose size is not a page; a huge stored size.
    let mut m = b.clone();
    m[desc_off + 24 + 8..desc_off + 24 + 12].copy_from_slice(&4000u32.to_le_bytes());
    std::fs::write(&bad, &m).unwrap();
    format_err(
        KdumpFile::open(&bad)
            .unwrap()
            .read_at(0x1000, &mut p)
            .unwrap_err(),
    );
    let mut m = b.clone();
    m[desc_off + 24 + 8..desc_off + 24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&bad, &m).unwrap();
    format_err(
        KdumpFile::open(&bad)
            .unwrap()
            .read_at(0x1000, &mut p)
            .unwrap_err(),
    );

    // Notes claiming more bytes than the file has.
    let mut m = b.clone();
    m[4096 + 56..4096 + 64].copy_from_slice(&u64::MAX.to_le_bytes());
    format_err(KdumpFile::open_like(&bad, &m));
    drop(out);
}

#[test]
fn mutated_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = write_zlib(dir.path());
    let bad = dir.path().join("bad");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut buf = vec![0u8; 3 * PAGE];
    for i in 0..300 {
        let mut m = b.clone();
        if i % 10 == 0 {
            m.truncate((rnd() % b.len() as u64) as usize);
        }
        for _ in 0..1 + rnd() % 8 {
            let limit = if i % 2 == 0 { 5 * PAGE } else { m.len() };
            if m.is_empty() {
                break;
            }
            let at = (rnd() % limit.min(m.len()) as u64) as usize;
            m[at] = rnd() as u8;
        }
        std::fs::write(&bad, &m).unwrap();
        if let Ok(k) = KdumpFile::open(&bad) {
            for r in k.ram().ranges().to_vec() {
                let _ = k.read_at(r.start, &mut buf[..(r.len().min(3 * PAGE as u64)) as usize]);
            }
            let _ = k.read_at(0x100000, &mut buf);
        }
    }
}

/// Opening helper: writes `bytes` to `path` and returns the open error.
trait OpenLike {
    fn open_like(path: &Path, bytes: &[u8]) -> Error;
}
impl OpenLike for KdumpFile {
    fn open_like(path: &Path, bytes: &[u8]) -> Error {
        std::fs::write(path, bytes).unwrap();
        KdumpFile::open(path).unwrap_err()
    }
}
