use super::test_core::{build, pattern, temp_file, CoreSpec, Load};
use super::*;

fn open(bytes: &[u8]) -> Result<ElfCore> {
    let f = temp_file(bytes);
    ElfCore::open(f.path())
}

fn is_format(r: &Result<ElfCore>) -> bool {
    matches!(r, Err(Error::Format { .. }))
}

fn format_msg(r: Result<ElfCore>) -> String {
    match r {
        Err(Error::Format { what, .. }) => what,
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("expected a format error, got a core"),
    }
}

/// Like QEMU's non-paging dump: notes, low RAM, and a segment with a zero tail.
fn qemu_like() -> (CoreSpec, Vec<u8>, Vec<u8>) {
    let low = pattern(0x2000, 1);
    let high = pattern(0x1000, 2);
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.notes = vec![
        ElfNote::new(b"CORE", 1, vec![0xaa; 336]),
        ElfNote::new(b"QEMU", 0, vec![0xbb; 440]),
        ElfNote::new(b"VMCOREINFO", 0, b"OSRELEASE=6.1.0\n".to_vec()),
    ];
    spec.loads = vec![
        Load::at(0, low.clone()),
        Load {
            memsz: 0x3000,
            ..Load::at(0x100000, high.clone())
        },
    ];
    (spec, low, high)
}

#[test]
fn qemu_like_core() {
    let (spec, low, high) = qemu_like();
    let core = open(&build(&spec)).unwrap();
    assert_eq!((core.class(), core.machine()), (64, EM_X86_64));
    assert_eq!(core.notes().len(), 3);
    assert_eq!(core.notes()[2].desc, b"OSRELEASE=6.1.0\n");
    assert_eq!(core.segments().len(), 2);
    assert_eq!(core.segments()[1].memsz, 0x3000);
    assert_eq!(core.segments()[1].filesz, 0x1000);
    assert_eq!(
        core.ram().ranges(),
        &[PhysRange::new(0, 0x2000), PhysRange::new(0x100000, 0x3000)]
    );

    let mut buf = vec![0u8; 0x20];
    core.read_at(0x1ff0, &mut buf[..0x10]).unwrap();
    assert_eq!(&buf[..0x10], &low[0x1ff0..]);
    // Across the end of the file bytes into the zero tail.
    core.read_at(0x100ff0, &mut buf).unwrap();
    assert_eq!(&buf[..0x10], &high[0xff0..]);
    assert!(buf[0x10..].iter().all(|&b| b == 0));
    core.read_at(0x102ff0, &mut buf[..0x10]).unwrap();
    assert_eq!(core.slice(0x100000, 0x1000).unwrap(), &high[..]);
    assert!(
        core.slice(0x100000, 0x1001).is_none(),
        "tail is not in the file"
    );
    assert!(core.slice(0x101000, 8).is_none());
    assert_eq!(core.segment_data(&core.segments()[1]).unwrap(), &high[..]);

    for (addr, len) in [(0x2000, 1), (0x1fff, 2), (0x102fff, 2), (u64::MAX, 1)] {
        let mut b = vec![0u8; len];
        assert!(
            matches!(core.read_at(addr, &mut b), Err(Error::NotInMemory { .. })),
            "{addr:#x}"
        );
    }
}

#[test]
fn elf32_core() {
    let data = pattern(0x1800, 3);
    let mut spec = CoreSpec::new(false, EM_386);
    spec.notes = vec![ElfNote::new(b"CORE", 1, vec![1; 144])];
    spec.loads = vec![Load::at(0x7000, data.clone())];
    let core = open(&build(&spec)).unwrap();
    assert_eq!((core.class(), core.machine()), (32, EM_386));
    assert_eq!(core.notes()[0].desc.len(), 144);
    assert_eq!(
        core.segments(),
        &[ElfSegment {
            vaddr: 0x7000,
            paddr: 0x7000,
            offset: core.segments()[0].offset,
            filesz: 0x1800,
            memsz: 0x1800,
            flags: 7
        }]
    );
    assert_eq!(core.slice(0x7000, 0x1800).unwrap(), &data[..]);
    assert_eq!(
        core.read_u32(0x7004).unwrap(),
        u32::from_le_bytes(data[4..8].try_into().unwrap())
    );
}

#[test]
fn pn_xnum_with_70000_loads() {
    const N: usize = 70_000;
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.notes = vec![ElfNote::new(b"QEMU", 0, vec![0; 440])];
    // Even loads: 64 distinct bytes each at a 128-byte stride (holes between);
    // odd loads: aliases of the even one before, at another virtual address.
    for i in 0..N {
        if i % 2 == 0 {
            let mut l = Load::at((i as u64 / 2) * 128, pattern(64, i as u8));
            l.vaddr = 0xffff_8880_0000_0000 + l.paddr;
            spec.loads.push(l);
        } else {
            let prev = spec.loads[i - 1].clone();
            spec.loads.push(Load {
                vaddr: 0xffff_c900_0000_0000 + i as u64 * 4096,
                share: Some(i - 1),
                data: Vec::new(),
                ..prev
            });
        }
    }
    let bytes = build(&spec);
    assert_eq!(u16::from_le_bytes([bytes[56], bytes[57]]), 0xffff);
    let started = std::time::Instant::now();
    let core = open(&bytes).unwrap();
    assert!(
        started.elapsed().as_secs() < 20,
        "opening must not be quadratic"
    );
    assert_eq!(core.segments().len(), N);
    assert_eq!(core.ram().ranges().len(), N / 2);
    for i in (0..N).step_by(2).filter(|i| i % 1000 == 0 || *i == N - 2) {
        let paddr = (i as u64 / 2) * 128;
        assert_eq!(core.slice(paddr, 64).unwrap(), &pattern(64, i as u8)[..]);
        assert!(core.read_u32(paddr + 64).is_err(), "hole after {paddr:#x}");
    }
}

#[test]
fn physical_aliases_first_wins() {
    let x = pattern(0x2000, 10);
    let y = pattern(0x2000, 20);
    let p = pattern(0x1000, 30);
    let q = pattern(0x3000, 40);
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.loads = vec![
        Load::at(0x1000, x.clone()),
        Load::at(0x2000, y.clone()), // overlaps x's second half
        Load {
            vaddr: 0xdead_0000,
            share: Some(0),
            data: Vec::new(),
            ..Load::at(0x1000, x.clone())
        },
        Load::at(0x10000, p.clone()),
        Load::at(0xf000, q.clone()), // covers p on both sides
    ];
    let core = open(&build(&spec)).unwrap();
    let read = |addr: u64, len: usize| {
        let mut b = vec![0u8; len];
        core.read_at(addr, &mut b).unwrap();
        b
    };
    assert_eq!(read(0x1000, 0x2000), x);
    assert_eq!(read(0x3000, 0x1000), &y[0x1000..]);
    assert_eq!(read(0xf000, 0x1000), &q[..0x1000]);
    assert_eq!(read(0x10000, 0x1000), p);
    assert_eq!(read(0x11000, 0x1000), &q[0x2000..]);
    assert_eq!(core.ram().total(), 0x3000 + 0x3000);
    assert!(core.ram().contains(0xf000, 0x3000));
}

#[test]
fn contiguous_aliases_join() {
    // Many small loads that continue each other physically and in the file become one range.
    let mut spec = CoreSpec::new(true, EM_X86_64);
    for i in 0..64u64 {
        spec.loads
            .push(Load::at(0x200000 + i * 0x1000, pattern(0x1000, i as u8)));
    }
    let core = open(&build(&spec)).unwrap();
    assert_eq!(core.ram().ranges(), &[PhysRange::new(0x200000, 0x40000)]);
    assert!(core.slice(0x200000, 0x40000).is_some());
}

#[test]
fn filesz_zero_is_not_ram() {
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.loads = vec![
        Load::at(0, pattern(0x1000, 5)),
        Load {
            memsz: 0x1000,
            ..Load::at(0xfee00000, Vec::new())
        },
    ];
    let core = open(&build(&spec)).unwrap();
    assert_eq!(core.segments().len(), 2);
    assert_eq!(core.ram().ranges(), &[PhysRange::new(0, 0x1000)]);
    assert!(matches!(
        core.read_u32(0xfee00000),
        Err(Error::NotInMemory { .. })
    ));

    spec.loads.remove(0);
    assert!(format_msg(open(&build(&spec))).contains("no physical memory"));
}

#[test]
fn truncated_files_are_format_errors() {
    let (spec, _, _) = qemu_like();
    let bytes = build(&spec);
    let mut cuts: Vec<usize> = vec![0, 1, 4, 15, 16, 20, 51, 63, 64, 64 + 56, 64 + 3 * 56 - 1];
    cuts.extend((0..bytes.len()).step_by(97));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        let r = open(&bytes[..cut]);
        assert!(is_format(&r), "cut at {cut}: {:?}", r.err());
    }
}

#[test]
fn wrong_inputs_have_clear_messages() {
    let (spec, _, _) = qemu_like();
    let good = build(&spec);

    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(format_msg(open(&bad)).contains("not an ELF"));
    assert!(format_msg(open(b"hello, world, this is text")).contains("not an ELF"));

    let mut bad = good.clone();
    bad[5] = 2; // big-endian
    assert!(format_msg(open(&bad)).contains("little-endian"));

    let mut bad = good.clone();
    bad[4] = 9;
    assert!(format_msg(open(&bad)).contains("class"));

    let mut exec = spec.clone();
    exec.e_type = object::elf::ET_EXEC;
    assert!(format_msg(open(&build(&exec))).contains("not a core"));

    // PT_LOAD 1's p_offset far past the end (header 2 of 3; p_offset at +8).
    let mut bad = good.clone();
    let at = 64 + 2 * 56 + 8;
    bad[at..at + 8].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    assert!(format_msg(open(&bad)).contains("past the end"));

    // p_paddr + p_memsz overflows.
    let mut bad = good.clone();
    let at = 64 + 2 * 56 + 24;
    bad[at..at + 8].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
    assert!(format_msg(open(&bad)).contains("overflows"));

    // PN_XNUM but no section headers.
    let mut bad = good.clone();
    bad[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(is_format(&open(&bad)));

    // A note segment whose note claims more bytes than it has.
    let mut bad = good;
    let note_off = 64 + 3 * 56;
    bad[note_off + 4..note_off + 8].copy_from_slice(&100_000u32.to_le_bytes());
    assert!(format_msg(open(&bad)).contains("PT_NOTE"));
}

#[test]
fn forced_xnum_small_count_and_elf32_xnum() {
    for class64 in [true, false] {
        let mut spec = CoreSpec::new(class64, EM_386);
        spec.loads = vec![Load::at(0x1000, pattern(0x100, 9))];
        spec.force_xnum = true;
        let core = open(&build(&spec)).unwrap();
        assert_eq!(core.segments().len(), 1);
        assert_eq!(core.slice(0x1000, 0x100).unwrap(), &pattern(0x100, 9)[..]);
    }
}

#[test]
fn corrupted_header_bytes_never_panic() {
    let (spec, _, _) = qemu_like();
    let good = build(&spec);
    let header_len = 64 + 3 * 56;
    for i in 0..header_len {
        for v in [0x00, 0xff, 0x80] {
            let mut bad = good.clone();
            bad[i] = v;
            if let Ok(core) = open(&bad) {
                // Whatever was accepted must read without panicking.
                let mut b = [0u8; 64];
                for r in core.ram().ranges().to_vec() {
                    let _ = core.read_at(r.start, &mut b);
                    let _ = core.read_at(r.end.saturating_sub(8), &mut b);
                }
            }
        }
    }
}

/// Cross-check with `object`'s own ELF writer (what a core writer would use): 70,000 PT_LOADs
/// through PN_XNUM, with `.shstrtab`, read back by our reader.
///
/// object 0.36's `Writer` does not do PN_XNUM itself: it truncates `e_phnum` to 16 bits and
/// writes `sh_info = 0` in section 0 (fixed upstream by gimli-rs/object PR #907). So the test
/// patches both fields after writing, as a writer on 0.36 must; on a fixed object the patch
/// rewrites the same values.
#[test]
fn object_writer_pn_xnum_core_reads_back() {
    use object::write::elf::{FileHeader as WFileHeader, ProgramHeader as WProgramHeader, Writer};
    const N: usize = 70_000;
    let page = pattern(0x1000, 77);
    let mut out = Vec::new();
    let mut w = Writer::new(object::Endianness::Little, true, &mut out);
    w.reserve_file_header();
    w.reserve_program_headers(N as u32);
    let data_off = w.reserve(page.len(), 8);
    w.reserve_null_section_index();
    w.reserve_shstrtab_section_index();
    w.reserve_shstrtab();
    w.reserve_section_headers();
    w.write_file_header(&WFileHeader {
        os_abi: 0,
        abi_version: 0,
        e_type: object::elf::ET_CORE,
        e_machine: EM_X86_64,
        e_entry: 0,
        e_flags: 0,
    })
    .unwrap();
    w.write_align_program_headers();
    for i in 0..N as u64 {
        // Every PT_LOAD aliases the same physical page at its own virtual address.
        w.write_program_header(&WProgramHeader {
            p_type: PT_LOAD,
            p_flags: object::elf::PF_R,
            p_offset: data_off as u64,
            p_vaddr: 0xffff_c900_0000_0000 + i * 0x1000,
            p_paddr: 0x5000,
            p_filesz: 0x1000,
            p_memsz: 0x1000,
            p_align: 0,
        });
    }
    w.write_align(8);
    w.write(&page);
    w.write_shstrtab();
    w.write_null_section_header();
    w.write_shstrtab_section_header();
    out[56..58].copy_from_slice(&0xffffu16.to_le_bytes()); // e_phnum = PN_XNUM
    let shoff = u64::from_le_bytes(out[40..48].try_into().unwrap()) as usize;
    out[shoff + 44..shoff + 48].copy_from_slice(&(N as u32).to_le_bytes()); // sh_info

    let core = open(&out).unwrap();
    assert_eq!(core.segments().len(), N);
    assert_eq!(
        core.segments()[N - 1].vaddr,
        0xffff_c900_0000_0000 + (N as u64 - 1) * 0x1000
    );
    assert_eq!(core.ram().ranges(), &[PhysRange::new(0x5000, 0x1000)]);
    assert_eq!(core.slice(0x5000, 0x1000).unwrap(), &page[..]);
}

#[test]
fn released_pages_read_back_the_same() {
    let (spec, low, high) = qemu_like();
    let core = open(&build(&spec)).unwrap();
    let before = core.slice(0, 0x2000).unwrap().to_vec();
    // Whole RAM, a part, past the end, into a hole: all only hints.
    core.release(0, 0x2000);
    core.release(0x1000, 0x800);
    core.release(0x100000, 0x3000);
    core.release(0x100000, u64::MAX);
    core.release(0x50000, 0x1000);
    assert_eq!(before, low);
    assert_eq!(core.slice(0, 0x2000).unwrap(), &low[..]);
    let mut buf = vec![0u8; 0x1000];
    core.read_at(0x100000, &mut buf).unwrap();
    assert_eq!(buf, high);
}

/// Hostile class 3: 65,000 one-page PT_LOADs at consecutive physical pages that all share one
/// file page. The reader cannot join them (their file bytes are not contiguous), but RAM
/// membership must: the map has one span, so the walker's question per leaf is one binary
/// search, and a whole-range question over all of them is answered true.
#[test]
fn adjacent_loads_sharing_a_file_page_are_one_span() {
    const N: usize = 65_000;
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.loads.push(Load::at(0, pattern(4096, 7)));
    for i in 1..N {
        spec.loads.push(Load {
            vaddr: i as u64 * 4096,
            paddr: i as u64 * 4096,
            memsz: 4096,
            data: Vec::new(),
            share: Some(0),
        });
    }
    let core = open(&build(&spec)).unwrap();
    assert_eq!(core.ram().ranges().len(), N);
    assert_eq!(core.ram().span_count(), 1);
    assert!(core.is_ram(0, N as u64 * 4096));
    assert!(!core.is_ram(0, N as u64 * 4096 + 1));
    assert_eq!(core.ram().ram_parts(0, 1 << 30).count(), 1);
    let mut buf = vec![0u8; 8192];
    core.read_at((N as u64 - 2) * 4096, &mut buf).unwrap();
    assert_eq!(
        &buf[..4096],
        &buf[4096..],
        "both pages read the shared file page"
    );
}

#[test]
fn ram_far_beyond_the_file_is_refused() {
    // One page of file bytes, a TiB of zero-filled memory past p_filesz.
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.loads.push(Load {
        vaddr: 0,
        paddr: 0,
        memsz: 1 << 40,
        data: pattern(4096, 3),
        share: None,
    });
    let err = open(&build(&spec)).unwrap_err().to_string();
    assert!(
        err.contains("describe 0x10000000000 bytes of physical memory"),
        "{err}"
    );
    // 2^20 distinct 64 KiB ranges all backed by one shared file page: 64 GiB from a tiny file.
    let mut spec = CoreSpec::new(true, EM_X86_64);
    spec.loads.push(Load::at(0, pattern(4096, 7)));
    for i in 1..(1u64 << 20) {
        spec.loads.push(Load {
            vaddr: i << 16,
            paddr: i << 16,
            memsz: 1 << 16,
            data: Vec::new(),
            share: Some(0),
        });
    }
    let err = open(&build(&spec)).unwrap_err().to_string();
    assert!(err.contains("more than 64× the file"), "{err}");
}
