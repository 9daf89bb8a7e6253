//! ELF core writer: round trips through `object`'s low-level reader, readelf and gdb as
//! independent readers, PN_XNUM, atomic output and bad input.

use guestcore::addr::PhysRange;
use guestcore::dump::{
    write_elf_core, DumpLayout, DumpSummary, ElfClass, ElfDumpRequest, ElfMachine, OutputOptions,
};
use guestcore::format::note::NT_PRSTATUS;
use guestcore::format::ElfNote;
use guestcore::mapping::MappingList;
use guestcore::paging::PageFlags;
use guestcore::phys::{PhysMemory, RamMap, VecMemory};
use guestcore::{Error, Result};
use guestcore::{NoProgress, Progress};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::LittleEndian as LE;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// Offset of the class byte in `e_ident`.
const EI_CLASS: usize = 4;

// ---------------------------------------------------------------- inputs

/// Deterministic non-zero-ish bytes (xorshift), with a zero hole to exercise sparse writes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// 640 KiB at 0 (with a 256 KiB zero hole) and 3 MiB at 1 MiB.
fn memory() -> VecMemory {
    let mut low = pattern(0xa0000, 1);
    low[0x20000..0x60000].fill(0);
    VecMemory::from_blocks(vec![(0, low), (0x100000, pattern(0x300000, 2))]).unwrap()
}

fn prstatus() -> Vec<ElfNote> {
    vec![ElfNote::new(b"CORE", NT_PRSTATUS, vec![0; 336])]
}

const RW_NX: PageFlags = PageFlags::WRITE.union(PageFlags::NX);

/// A long-mode style list: user page, direct map, kernel text aliasing the direct map, an
/// MMIO page (IO) and a page outside RAM without the IO flag.
fn mappings64() -> MappingList {
    let mut l = MappingList::new();
    l.push(0x40_0000, 0x15_0000, 0x1000, PageFlags::USER);
    l.push(
        0x40_1000,
        0x15_0000,
        0x1000,
        PageFlags::USER | PageFlags::WRITE,
    ); // alias
    l.push(0xffff_8880_0000_0000, 0, 0xa0000, RW_NX);
    l.push(0xffff_8880_0010_0000, 0x10_0000, 0x30_0000, RW_NX);
    l.push(
        0xffff_ffff_8100_0000,
        0x20_0000,
        0x10_0000,
        PageFlags::empty(),
    );
    l.push(
        0xffff_ffff_ff5f_c000,
        0xfee0_0000,
        0x1000,
        RW_NX | PageFlags::IO,
    );
    l.push(0xffff_ffff_ff5f_d000, 0xb_8000, 0x1000, RW_NX); // VGA hole: not RAM
    l
}

/// A 32-bit guest's list.
fn mappings32() -> MappingList {
    let mut l = MappingList::new();
    l.push(0x0804_8000, 0x15_0000, 0x2000, PageFlags::USER);
    l.push(0xc000_0000, 0, 0xa0000, PageFlags::WRITE);
    l.push(0xc010_0000, 0x10_0000, 0x30_0000, PageFlags::WRITE);
    l.push(
        0xfffb_0000,
        0xfec0_0000,
        0x1000,
        PageFlags::WRITE | PageFlags::IO,
    );
    l
}

fn request<'a>(
    memory: &'a dyn PhysMemory,
    notes: &'a [ElfNote],
    class: ElfClass,
    layout: DumpLayout<'a>,
) -> ElfDumpRequest<'a> {
    ElfDumpRequest {
        memory,
        notes,
        machine: match class {
            ElfClass::Elf64 => ElfMachine::X86_64,
            ElfClass::Elf32 => ElfMachine::I386,
        },
        class,
        layout,
        filter: None,
        excluded: None,
    }
}

fn write(req: &ElfDumpRequest<'_>, out: &Path) -> DumpSummary {
    write_elf_core(req, out, &OutputOptions::default(), &NoProgress).unwrap()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- reading back

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

#[derive(Debug)]
struct Core {
    class: u8,
    machine: u16,
    e_phnum: u16,
    sh0_info: u32,
    phdrs: Vec<Ph>,
    notes: Vec<ElfNote>,
}

/// Parses with `object`'s low-level API, resolving PN_XNUM by hand (and checking that object
/// agrees).
fn parse_as<H: FileHeader<Endian = LE>>(data: &[u8]) -> Core {
    let h = H::parse(data).expect("ELF header");
    assert_eq!(h.e_type(LE), elf::ET_CORE);
    assert_eq!(u64::from(h.e_ehsize(LE)), std::mem::size_of::<H>() as u64);
    assert_eq!(
        usize::from(h.e_phentsize(LE)),
        std::mem::size_of::<H::ProgramHeader>()
    );
    assert_eq!(
        usize::from(h.e_shentsize(LE)),
        std::mem::size_of::<H::SectionHeader>()
    );
    let phoff: u64 = h.e_phoff(LE).into();
    assert_eq!(
        phoff,
        u64::from(h.e_ehsize(LE)),
        "program headers follow the ELF header"
    );
    assert_eq!(h.e_shstrndx(LE), 1);
    let sections = h.section_headers(LE, data).expect("section headers");
    assert_eq!(sections.len(), 2);
    let shstrtab_off: u64 = sections[1].sh_offset(LE).into();
    let name = &data[shstrtab_off as usize + sections[1].sh_name(LE) as usize..][..10];
    assert_eq!(name, b".shstrtab\0");
    assert_eq!(sections[1].sh_type(LE), elf::SHT_STRTAB);
    let sh0_info = sections[0].sh_info(LE);
    let e_phnum = h.e_phnum(LE);
    let count = if e_phnum == elf::PN_XNUM {
        sh0_info as usize
    } else {
        e_phnum as usize
    };
    let raw = h.program_headers(LE, data).expect("program headers");
    assert_eq!(
        raw.len(),
        count,
        "object agrees on the program header count"
    );
    for p in raw {
        let align: u64 = p.p_align(LE).into();
        assert_eq!(
            align, 0,
            "p_align must be 0 in every program header (crash 8 refuses KASLR kernels otherwise)"
        );
    }
    let phdrs: Vec<Ph> = raw
        .iter()
        .map(|p| Ph {
            p_type: p.p_type(LE),
            flags: p.p_flags(LE),
            offset: p.p_offset(LE).into(),
            vaddr: p.p_vaddr(LE).into(),
            paddr: p.p_paddr(LE).into(),
            filesz: p.p_filesz(LE).into(),
            memsz: p.p_memsz(LE).into(),
        })
        .collect();
    for p in &phdrs {
        assert!(p.offset + p.filesz <= data.len() as u64, "{p:?} past EOF");
    }
    assert_eq!(phdrs[0].p_type, elf::PT_NOTE);
    assert_eq!(
        phdrs[0].offset,
        phoff + count as u64 * u64::from(h.e_phentsize(LE)),
        "notes follow the program headers"
    );
    let n = &data[phdrs[0].offset as usize..][..phdrs[0].filesz as usize];
    Core {
        class: data[EI_CLASS],
        machine: h.e_machine(LE),
        e_phnum,
        sh0_info,
        phdrs,
        notes: ElfNote::parse_all(n).unwrap(),
    }
}

fn parse(data: &[u8]) -> Core {
    match data[EI_CLASS] {
        elf::ELFCLASS64 => parse_as::<elf::FileHeader64<LE>>(data),
        elf::ELFCLASS32 => parse_as::<elf::FileHeader32<LE>>(data),
        c => panic!("class {c}"),
    }
}

fn loads(core: &Core) -> &[Ph] {
    assert!(core.phdrs[1..].iter().all(|p| p.p_type == elf::PT_LOAD));
    &core.phdrs[1..]
}

fn source_bytes(mem: &dyn PhysMemory, pa: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0; len as usize];
    mem.read_at(pa, &mut v).unwrap();
    v
}

/// Every PT_LOAD with file bytes holds exactly the source's bytes at its physical address.
fn check_bytes(mem: &dyn PhysMemory, data: &[u8], core: &Core) {
    for p in loads(core) {
        if p.filesz == 0 {
            continue;
        }
        assert_eq!(p.filesz, p.memsz);
        let got = &data[p.offset as usize..][..p.filesz as usize];
        assert!(
            got == source_bytes(mem, p.paddr, p.filesz).as_slice(),
            "bytes of {p:x?} differ from the source"
        );
    }
}

/// What a paging core's PT_LOADs are for `list`: its mappings, except that one continuing the
/// one before it both virtually and physically joins it whatever its flags (RAM with RAM while
/// the whole is RAM, memory marked `IO` with memory marked `IO`), writable when a part is,
/// executable when a part is (`dump::elf_layout`'s rule, which libkdumpfile needs). Each entry:
/// (va, pa, size, flags, bytes in the file).
fn pt_loads_of(mem: &dyn PhysMemory, list: &MappingList) -> Vec<(u64, u64, u64, PageFlags, bool)> {
    let mut out: Vec<(u64, u64, u64, PageFlags, bool)> = Vec::new();
    for m in list.iter() {
        let in_file = m.is_ram() && mem.is_ram(m.pa.0, m.size);
        if let Some(last) = out.last_mut() {
            let continues = last.0 + last.2 == m.va.0 && last.1 + last.2 == m.pa.0;
            let alike = if in_file {
                last.4 && mem.is_ram(last.1, last.2 + m.size)
            } else {
                !m.is_ram() && last.3.contains(PageFlags::IO)
            };
            if continues && alike {
                let nx = last.3 & m.flags & PageFlags::NX;
                last.3 = ((last.3 | m.flags) - PageFlags::NX) | nx;
                last.2 += m.size;
                continue;
            }
        }
        out.push((m.va.0, m.pa.0, m.size, m.flags, in_file));
    }
    out
}

/// The PT_LOADs are [`pt_loads_of`] the mapping list, in order, with R/W/X from the flags;
/// memory not in RAM has no file bytes; aliases share file bytes.
fn check_mappings(mem: &dyn PhysMemory, core: &Core, list: &MappingList) {
    let l = loads(core);
    let want = pt_loads_of(mem, list);
    assert_eq!(l.len(), want.len());
    for (p, &(va, pa, size, flags, in_file)) in l.iter().zip(&want) {
        let m = (va, pa, size, flags);
        assert_eq!((p.vaddr, p.paddr, p.memsz), (va, pa, size));
        let mut want = elf::PF_R;
        if flags.contains(PageFlags::WRITE) {
            want |= elf::PF_W;
        }
        if !flags.contains(PageFlags::NX) {
            want |= elf::PF_X;
        }
        assert_eq!(p.flags, want, "{m:x?}");
        if in_file {
            assert_eq!(p.filesz, size);
        } else {
            // No bytes in the file; the offset is not 0 (crash reads the first PT_LOAD's
            // p_offset as where the headers end).
            assert_eq!(p.filesz, 0, "{m:x?} has no bytes in the file");
            assert_ne!(p.offset, 0, "{m:x?}");
        }
    }
    // Sweep in physical order: every load overlapping the group before it must have the same
    // file offset - physical address (one copy of the bytes).
    let mut by_pa: Vec<&Ph> = l.iter().filter(|p| p.filesz > 0).collect();
    by_pa.sort_by_key(|p| p.paddr);
    let mut group: Option<(u64, u64)> = None; // (end, offset - paddr)
    for p in by_pa {
        let delta = p.offset.wrapping_sub(p.paddr);
        match group {
            Some((end, d)) if p.paddr < end => {
                assert_eq!(delta, d, "alias {p:x?} must share file bytes");
                group = Some((end.max(p.paddr + p.filesz), d));
            }
            _ => group = Some((p.paddr + p.filesz, delta)),
        }
    }
}

// ---------------------------------------------------------------- round trips

#[test]
fn physical_round_trip_elf64_and_elf32() {
    let mem = memory();
    let notes = prstatus();
    for class in [ElfClass::Elf64, ElfClass::Elf32] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("core");
        let s = write(&request(&mem, &notes, class, DumpLayout::Physical), &out);
        let data = std::fs::read(&out).unwrap();
        let core = parse(&data);
        assert_eq!(
            core.class,
            if class == ElfClass::Elf64 {
                elf::ELFCLASS64
            } else {
                elf::ELFCLASS32
            }
        );
        assert_eq!(
            core.machine,
            if class == ElfClass::Elf64 {
                elf::EM_X86_64
            } else {
                elf::EM_386
            }
        );
        assert_eq!(core.notes, notes);
        let l: Vec<_> = loads(&core)
            .iter()
            .map(|p| (p.vaddr, p.paddr, p.memsz))
            .collect();
        assert_eq!(l, vec![(0, 0, 0xa0000), (0x100000, 0x100000, 0x300000)]);
        assert!(loads(&core)
            .iter()
            .all(|p| p.flags == elf::PF_R | elf::PF_W | elf::PF_X));
        check_bytes(&mem, &data, &core);
        assert_eq!(s.segments, 2);
        assert_eq!(s.data_bytes, 0x3a0000);
        assert_eq!(
            s.zero_bytes_skipped, 0x40000,
            "the zero hole is not written"
        );
        assert_eq!(s.bytes_written + s.zero_bytes_skipped, s.data_bytes);
        assert_eq!(s.file_size, data.len() as u64);
        assert!(!s.pn_xnum);
        assert_eq!(
            dir_entries(dir.path()),
            vec!["core"],
            "no temporary file left"
        );
    }
}

#[test]
fn paging_round_trip_elf64_and_elf32() {
    let mem = memory();
    let notes = prstatus();
    for (class, list) in [
        (ElfClass::Elf64, mappings64()),
        (ElfClass::Elf32, mappings32()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("core");
        let s = write(
            &request(&mem, &notes, class, DumpLayout::Paging(&list)),
            &out,
        );
        let data = std::fs::read(&out).unwrap();
        let core = parse(&data);
        check_mappings(&mem, &core, &list);
        check_bytes(&mem, &data, &core);
        assert_eq!(s.segments, pt_loads_of(&mem, &list).len());
        // Physical memory once: all of RAM is referenced, nothing twice.
        assert_eq!(s.data_bytes, 0x3a0000);
        assert!(
            s.file_size < 0x3a0000 + 0x3000,
            "file size {:#x}",
            s.file_size
        );
    }
}

/// A 32-bit direct map cut by permissions (a read-only page, the kernel's text) is one
/// PT_LOAD per stretch of RAM, so libkdumpfile finds the kernel's data in it before the
/// vmalloc alias of a page below it (`dump::elf_layout`); the alias keeps its own PT_LOAD.
#[test]
fn paging_joins_a_direct_map_cut_by_permissions() {
    let mem = memory();
    let mut l = MappingList::new();
    l.push(0xc000_0000, 0, 0x9b000, RW_NX);
    l.push(0xc009_b000, 0x9b000, 0x5000, PageFlags::NX);
    l.push(0xc010_0000, 0x10_0000, 0x10_0000, RW_NX);
    l.push(0xc020_0000, 0x20_0000, 0x10_0000, PageFlags::empty());
    l.push(0xc030_0000, 0x30_0000, 0x10_0000, RW_NX);
    l.push(0xd07e_c000, 0x15_0000, 0x1000, RW_NX);
    assert_eq!(l.len(), 6);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let s = write(
        &request(&mem, &[], ElfClass::Elf32, DumpLayout::Paging(&l)),
        &out,
    );
    let data = std::fs::read(&out).unwrap();
    let core = parse(&data);
    let got: Vec<_> = loads(&core)
        .iter()
        .map(|p| (p.vaddr, p.paddr, p.memsz, p.flags))
        .collect();
    let (rw, rwx) = (elf::PF_R | elf::PF_W, elf::PF_R | elf::PF_W | elf::PF_X);
    assert_eq!(
        got,
        vec![
            (0xc000_0000, 0, 0xa0000, rw),
            (0xc010_0000, 0x10_0000, 0x30_0000, rwx),
            (0xd07e_c000, 0x15_0000, 0x1000, rw),
        ]
    );
    assert_eq!(s.segments, 3);
    check_mappings(&mem, &core, &l);
    check_bytes(&mem, &data, &core);
}

#[test]
fn paging_writes_only_referenced_memory() {
    let mem = memory();
    let mut l = MappingList::new();
    l.push(0x1000, 0x10_1000, 0x1000, PageFlags::empty());
    l.push(0x3000, 0x10_1000, 0x1000, PageFlags::empty());
    l.push(0x5000, 0x10_0800, 0x1000, PageFlags::WRITE); // overlaps the page above, unaligned
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let s = write(
        &request(&mem, &[], ElfClass::Elf64, DumpLayout::Paging(&l)),
        &out,
    );
    assert_eq!(s.data_bytes, 0x1800);
    let data = std::fs::read(&out).unwrap();
    let core = parse(&data);
    assert!(core.notes.is_empty());
    check_mappings(&mem, &core, &l);
    check_bytes(&mem, &data, &core);
}

#[test]
fn filter_clips_both_layouts() {
    let mem = memory();
    let notes = prstatus();
    let window = PhysRange::new(0x9f000, 0x62000); // last page of low RAM, first of high
    let dir = tempfile::tempdir().unwrap();

    let out = dir.path().join("phys");
    let mut req = request(&mem, &notes, ElfClass::Elf64, DumpLayout::Physical);
    req.filter = Some(window);
    write(&req, &out);
    let data = std::fs::read(&out).unwrap();
    let core = parse(&data);
    let l: Vec<_> = loads(&core).iter().map(|p| (p.paddr, p.memsz)).collect();
    assert_eq!(l, vec![(0x9f000, 0x1000), (0x100000, 0x1000)]);
    check_bytes(&mem, &data, &core);

    let list = mappings64();
    let out = dir.path().join("paging");
    let mut req = request(&mem, &notes, ElfClass::Elf64, DumpLayout::Paging(&list));
    req.filter = Some(window);
    let s = write(&req, &out);
    let data = std::fs::read(&out).unwrap();
    let core = parse(&data);
    let clipped = list.clip_phys(window);
    assert_eq!(
        clipped.len(),
        3,
        "two direct-map pages and the VGA page (not RAM)"
    );
    check_mappings(&mem, &core, &clipped);
    check_bytes(&mem, &data, &core);
    assert_eq!(s.data_bytes, 0x2000);
}

/// Memory that can only be read, never borrowed: exercises the read_at path.
struct ReadOnly(VecMemory);
impl PhysMemory for ReadOnly {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_at(addr, buf)
    }
    fn ram(&self) -> &RamMap {
        self.0.ram()
    }
}

#[test]
fn read_path_equals_slice_path_and_large_chunks() {
    // 20 MiB: more than two copy chunks.
    let mem = VecMemory::from_blocks(vec![(0x1000, pattern(20 << 20, 3))]).unwrap();
    let ro = ReadOnly(mem.clone());
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write(
        &request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical),
        &a,
    );
    write(
        &request(&ro, &[], ElfClass::Elf64, DumpLayout::Physical),
        &b,
    );
    let (da, db) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(da == db);
    check_bytes(&mem, &da, &parse(&da));
}

/// A file-backed source that lends slices but hides its file: exercises the pwrite path.
struct NoFile<'a>(&'a dyn PhysMemory);
impl PhysMemory for NoFile<'_> {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_at(addr, buf)
    }
    fn ram(&self) -> &RamMap {
        self.0.ram()
    }
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        self.0.slice(addr, len)
    }
    fn release(&self, addr: u64, len: u64) {
        self.0.release(addr, len)
    }
}

#[test]
fn kernel_copy_path_equals_pwrite_path() {
    use guestcore::phys::elf::ElfCore;
    use guestcore::phys::layout::Layout;
    use guestcore::phys::raw::RawImage;
    let dir = tempfile::tempdir().unwrap();
    // 20 MiB: several copy chunks, a long zero run (a hole), short zero gaps, a zero tail.
    let mut bytes = pattern(20 << 20, 5);
    bytes[(3 << 20)..(5 << 20)].fill(0);
    for i in 0..40 {
        let at = (7 << 20) + i * 0x3000;
        bytes[at..at + 0x1000].fill(0);
    }
    let len = bytes.len();
    bytes[len - 0x30000..].fill(0);
    let raw_path = dir.path().join("raw");
    std::fs::write(&raw_path, &bytes).unwrap();
    // Two pieces, the second far above the first, so file and physical offsets differ.
    let layout = Layout::parse("0:0x900000,0x40000000:*").unwrap();
    let raw = RawImage::open(&raw_path, Some(&layout)).unwrap();
    assert!(raw.file_extent(0x1000, 0x1000).is_some());

    let dump = |mem: &dyn PhysMemory, name: &str| {
        let out = dir.path().join(name);
        let s = write(
            &request(mem, &[], ElfClass::Elf64, DumpLayout::Physical),
            &out,
        );
        (std::fs::read(&out).unwrap(), s)
    };
    let (kernel, sk) = dump(&raw, "kernel");
    let (pwrite, sp) = dump(&NoFile(&raw), "pwrite");
    assert!(
        kernel == pwrite,
        "raw: copy_file_range and pwrite outputs differ"
    );
    assert_eq!(sk.bytes_written, sp.bytes_written);
    assert!(sk.zero_bytes_skipped >= 2 << 20, "{sk:?}");
    check_bytes(&raw, &kernel, &parse(&kernel));

    // An ELF core as the source: its file offsets are not its physical addresses either.
    let core_path = dir.path().join("kernel");
    let core = ElfCore::open(&core_path).unwrap();
    assert!(core.file_extent(0x1000, 0x1000).is_some());
    let (kernel2, _) = dump(&core, "kernel2");
    let (pwrite2, _) = dump(&NoFile(&core), "pwrite2");
    assert!(
        kernel2 == pwrite2,
        "ELF: copy_file_range and pwrite outputs differ"
    );
    assert!(kernel2 == kernel);
}

#[test]
fn zero_memory_makes_a_sparse_file() {
    let mem = VecMemory::flat(vec![0; 64 << 20]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let s = write(
        &request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical),
        &out,
    );
    assert_eq!(s.bytes_written, 0);
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), s.file_size);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        meta.blocks()
    );
    let data = std::fs::read(&out).unwrap();
    check_bytes(&mem, &data, &parse(&data));
}

// ---------------------------------------------------------------- PN_XNUM

const ALIASES: u64 = 70_000;

/// 70,000 read-only aliases of one physical page at a 64 KiB stride (ESPFIX64 style), after a
/// direct map of all RAM. `direct` and `alias` are the virtual bases.
fn many_aliases(direct: u64, alias: u64) -> MappingList {
    let mut l = MappingList::new();
    l.push(direct, 0, 0xa0000, RW_NX);
    l.push(direct + 0x10_0000, 0x10_0000, 0x30_0000, RW_NX);
    for i in 0..ALIASES {
        l.push(alias + i * 0x10000, 0x15_0000, 0x1000, PageFlags::NX);
    }
    l
}

fn many_aliases64() -> MappingList {
    many_aliases(0xffff_8880_0000_0000, 0xffff_ff00_0000_0000)
}

/// In 32 bits: 70,000 × 64 KiB = 4.27 GiB, so a 16 KiB stride.
fn many_aliases32() -> MappingList {
    let mut l = MappingList::new();
    l.push(0x1000_0000, 0, 0xa0000, RW_NX);
    l.push(0x1010_0000, 0x10_0000, 0x30_0000, RW_NX);
    for i in 0..ALIASES {
        l.push(0x4000_0000 + i * 0x4000, 0x15_0000, 0x1000, PageFlags::NX);
    }
    l
}

#[test]
fn pn_xnum_with_70k_aliases() {
    let mem = memory();
    let notes = prstatus();
    for (class, list) in [
        (ElfClass::Elf64, many_aliases64()),
        (ElfClass::Elf32, many_aliases32()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("core");
        let s = write(
            &request(&mem, &notes, class, DumpLayout::Paging(&list)),
            &out,
        );
        assert!(s.pn_xnum);
        let data = std::fs::read(&out).unwrap();
        let core = parse(&data);
        assert_eq!(core.e_phnum, 0xffff);
        assert_eq!(
            core.sh0_info as u64,
            ALIASES + 3,
            "70,000 aliases + 2 + PT_NOTE"
        );
        check_mappings(&mem, &core, &list);
        check_bytes(&mem, &data, &core);
        let phent = if class == ElfClass::Elf64 { 56 } else { 32 };
        let limit = (ALIASES + 3) * phent + 0x3a0000 + 0x3000;
        assert!(s.file_size < limit, "data written once: {:#x}", s.file_size);
        let shared = loads(&core)[2].offset;
        assert!(loads(&core)[2..].iter().all(|p| p.offset == shared));
    }
}

// ---------------------------------------------------------------- independent readers

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        guestcore_testkit::tools::skip(format_args!("{tool} is not installed"));
    }
    ok
}

/// `readelf -lnW` (plus `-S` when `sections`) prints no warning or error.
///
/// readelf 2.40 `-S` warns "[ 0]: Unexpected value (N) in info field" for every PN_XNUM file,
/// the Linux kernel's own process cores included: its section checks do not know that
/// section 0's `sh_info` holds the program header count. So PN_XNUM files skip `-S`.
fn readelf_clean(path: &Path, sections: bool) {
    let flags = if sections { "-lnSW" } else { "-lnW" };
    let o = Command::new("readelf")
        .arg(flags)
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "readelf failed: {stderr}");
    let lower = format!("{stderr}{stdout}").to_lowercase();
    assert!(
        !lower.contains("warning") && !lower.contains("error"),
        "readelf complains about {}:\n{stderr}",
        path.display()
    );
    assert!(
        stdout.contains("CORE") && stdout.contains("NT_PRSTATUS"),
        "{stdout}"
    );
}

#[test]
fn readelf_accepts_every_kind() {
    if !have("readelf") {
        return;
    }
    let mem = memory();
    let notes = prstatus();
    let dir = tempfile::tempdir().unwrap();
    let (m64, m32) = (mappings64(), mappings32());
    let (many64, many32) = (many_aliases64(), many_aliases32());
    let cases: Vec<(&str, ElfDumpRequest<'_>)> = vec![
        (
            "phys64",
            request(&mem, &notes, ElfClass::Elf64, DumpLayout::Physical),
        ),
        (
            "phys32",
            request(&mem, &notes, ElfClass::Elf32, DumpLayout::Physical),
        ),
        (
            "paging64",
            request(&mem, &notes, ElfClass::Elf64, DumpLayout::Paging(&m64)),
        ),
        (
            "paging32",
            request(&mem, &notes, ElfClass::Elf32, DumpLayout::Paging(&m32)),
        ),
        (
            "xnum64",
            request(&mem, &notes, ElfClass::Elf64, DumpLayout::Paging(&many64)),
        ),
        (
            "xnum32",
            request(&mem, &notes, ElfClass::Elf32, DumpLayout::Paging(&many32)),
        ),
    ];
    for (name, req) in cases {
        let out = dir.path().join(name);
        write(&req, &out);
        readelf_clean(&out, !name.starts_with("xnum"));
    }
}

/// A paging dump where known virtual addresses hold known strings.
fn strings_guest() -> (VecMemory, Vec<(u64, &'static str)>, MappingList) {
    let mut ram = pattern(4 << 20, 9);
    let strings: [(u64, &str); 3] = [
        (0x12_3400, "hello from the direct map"),
        (0x20_0040, "linux kernel text"),
        (0x15_0010, "user page"),
    ];
    for (pa, s) in strings {
        let pa = pa as usize;
        ram[pa..pa + s.len()].copy_from_slice(s.as_bytes());
        ram[pa + s.len()] = 0;
    }
    let mem = VecMemory::flat(ram);
    let mut l = MappingList::new();
    l.push(0x40_0000, 0x15_0000, 0x1000, PageFlags::USER);
    l.push(0xffff_8880_0000_0000, 0, 4 << 20, RW_NX);
    l.push(
        0xffff_ffff_8100_0000,
        0x20_0000,
        0x20_0000,
        PageFlags::empty(),
    );
    let at = vec![
        (0xffff_8880_0012_3400, "hello from the direct map"),
        (0xffff_ffff_8100_0040, "linux kernel text"),
        (0x40_0010, "user page"),
    ];
    (mem, at, l)
}

fn gdb_reads(core: &Path, at: &[(u64, &str)]) -> std::result::Result<(), String> {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "gdb", "-batch", "-nx"]);
    for (va, _) in at {
        cmd.arg("-ex").arg(format!("x/s {va:#x}"));
    }
    let o = cmd.arg("-core").arg(core).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for (va, s) in at {
        if !text.contains(&format!("\"{s}\"")) {
            return Err(format!("gdb did not read {s:?} at {va:#x}:\n{text}"));
        }
    }
    Ok(())
}

#[test]
fn gdb_reads_virtual_memory() {
    if !have("gdb") {
        return;
    }
    let (mem, at, list) = strings_guest();
    let notes = prstatus();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    write(
        &request(&mem, &notes, ElfClass::Elf64, DumpLayout::Paging(&list)),
        &out,
    );
    gdb_reads(&out, &at).unwrap();
}

#[test]
fn gdb_reads_a_pn_xnum_core() {
    if !have("gdb") {
        return;
    }
    let (mem, mut at, list) = strings_guest();
    let mut many = MappingList::new();
    for m in list.iter().take(1) {
        many.push(m.va.0, m.pa.0, m.size, m.flags);
    }
    for i in 0..ALIASES {
        many.push(
            0x1000_0000 + i * 0x10000,
            0x15_0000,
            0x1000,
            PageFlags::empty(),
        );
    }
    for m in list.iter().skip(1) {
        many.push(m.va.0, m.pa.0, m.size, m.flags);
    }
    at.push((0x1000_0000 + 69_999 * 0x10000 + 0x10, "user page"));
    let notes = prstatus();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let s = write(
        &request(&mem, &notes, ElfClass::Elf64, DumpLayout::Paging(&many)),
        &out,
    );
    assert!(s.pn_xnum);
    gdb_reads(&out, &at).unwrap();
}

// ---------------------------------------------------------------- bad input, atomicity

#[test]
fn existing_file_needs_force() {
    let mem = memory();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    std::fs::write(&out, b"precious").unwrap();
    let req = request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical);
    let e = write_elf_core(&req, &out, &OutputOptions::default(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(dir_entries(dir.path()), vec!["core"]);

    write_elf_core(&req, &out, &OutputOptions { force: true }, &NoProgress).unwrap();
    check_bytes(
        &mem,
        &std::fs::read(&out).unwrap(),
        &parse(&std::fs::read(&out).unwrap()),
    );
}

#[test]
fn unwritable_target_is_a_clear_error() {
    let mem = memory();
    let req = request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical);
    for out in [
        PathBuf::from("/proc/guestcore-cannot-write-here"),
        PathBuf::from("/nonexistent-guestcore-dir/core"),
    ] {
        let e = write_elf_core(&req, &out, &OutputOptions::default(), &NoProgress).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Io { .. }), "{msg}");
        assert!(
            msg.contains(&out.display().to_string()),
            "names the target: {msg}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn filter_outside_ram_is_an_error_and_creates_nothing() {
    let mem = memory();
    let list = mappings64();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    for layout in [DumpLayout::Physical, DumpLayout::Paging(&list)] {
        let mut req = request(&mem, &[], ElfClass::Elf64, layout);
        req.filter = Some(PhysRange::new(0xa0000, 0x60000));
        let e = write_elf_core(&req, &out, &OutputOptions::default(), &NoProgress).unwrap_err();
        assert!(matches!(e, Error::NotInMemory { addr: 0xa0000, .. }), "{e}");
        req.filter = Some(PhysRange::new(0x1_0000_0000, 0x1000));
        assert!(write_elf_core(&req, &out, &OutputOptions::default(), &NoProgress).is_err());
    }
    assert!(dir_entries(dir.path()).is_empty());
}

#[test]
fn elf32_overflow_is_an_error_before_any_file() {
    let mem = VecMemory::from_blocks(vec![
        (0, pattern(0x1000, 4)),
        (0x1_0000_0000, pattern(0x1000, 5)),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    std::fs::write(&out, b"old").unwrap();
    let req = request(&mem, &[], ElfClass::Elf32, DumpLayout::Physical);
    let e = write_elf_core(&req, &out, &OutputOptions { force: true }, &NoProgress).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Limit { .. }), "{msg}");
    assert!(
        msg.contains("ELF32") && msg.contains("0x100000000"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"old",
        "untouched even with force"
    );

    // A virtual address above 4 GiB in a paging dump.
    let mut l = MappingList::new();
    l.push(0xffff_8880_0000_0000, 0, 0x1000, PageFlags::empty());
    let req = request(&mem, &[], ElfClass::Elf32, DumpLayout::Paging(&l));
    let msg = write_elf_core(&req, &out, &OutputOptions { force: true }, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("p_vaddr") && msg.contains("0xffff888000000000"),
        "{msg}"
    );
    assert_eq!(dir_entries(dir.path()), vec!["core"]);
}

/// Counts progress and cancels after `cancel_after` advances.
struct Counting {
    total: AtomicU64,
    done: AtomicU64,
    advances: AtomicU64,
    finished: AtomicU64,
    cancel_after: u64,
}
impl Counting {
    fn new(cancel_after: u64) -> Self {
        Counting {
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            advances: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            cancel_after,
        }
    }
}
impl Progress for Counting {
    fn start(&self, what: &str, total: u64) {
        assert_eq!(what, "writing");
        self.total.store(total, Ordering::SeqCst);
    }
    fn advance(&self, done: u64) {
        self.done.fetch_add(done, Ordering::SeqCst);
        self.advances.fetch_add(1, Ordering::SeqCst);
    }
    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.advances.load(Ordering::SeqCst) >= self.cancel_after
    }
}

#[test]
fn progress_counts_bytes_and_cancel_leaves_nothing() {
    let mem = VecMemory::flat(pattern(24 << 20, 6));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let req = request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical);

    let p = Counting::new(u64::MAX);
    let s = write_elf_core(&req, &out, &OutputOptions::default(), &p).unwrap();
    assert_eq!(p.total.load(Ordering::SeqCst), 24 << 20);
    assert_eq!(p.done.load(Ordering::SeqCst), s.data_bytes);
    assert!(p.advances.load(Ordering::SeqCst) <= 3, "8 MiB chunks");
    assert_eq!(p.finished.load(Ordering::SeqCst), 1);

    std::fs::remove_file(&out).unwrap();
    let p = Counting::new(1);
    let e = write_elf_core(&req, &out, &OutputOptions::default(), &p).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(p.finished.load(Ordering::SeqCst), 1);
    assert!(
        dir_entries(dir.path()).is_empty(),
        "no output, no temporary file"
    );
}

// ---------------------------------------------------------------- our own reader

#[test]
fn guestcore_reads_its_own_cores_and_redumps_them() {
    use guestcore::phys::elf::ElfCore;
    let mem = memory();
    let notes = prstatus();
    let dir = tempfile::tempdir().unwrap();
    let list = many_aliases64();
    for (name, layout) in [
        ("phys", DumpLayout::Physical),
        ("paging", DumpLayout::Paging(&list)),
    ] {
        let out = dir.path().join(name);
        write(&request(&mem, &notes, ElfClass::Elf64, layout), &out);
        let core = ElfCore::open(&out).unwrap();
        assert_eq!(core.notes(), notes.as_slice());
        assert_eq!(core.ram().total(), mem.ram().total());
        for r in mem.ram().ranges() {
            assert!(source_bytes(&core, r.start, r.len()) == source_bytes(&mem, r.start, r.len()));
        }
        // ElfCore lends mmap slices: a re-dump copies straight from the first file.
        let again = dir.path().join(format!("{name}-again"));
        write(&request(&core, &notes, ElfClass::Elf64, layout), &again);
        let data = std::fs::read(&again).unwrap();
        check_bytes(&mem, &data, &parse(&data));
    }
}

// ---------------------------------------------------------------- measurement (manual)

/// `cargo test --release -p guestcore --test integration dump_elf::measure -- --ignored --nocapture`
/// Writes a 1 GiB physical and paging dump into `$GUESTCORE_MEASURE_DIR` (default: a temporary
/// directory under the current directory) and compares with `cp` of a 1 GiB file there.
#[test]
#[ignore = "manual measurement, 4 GiB of disk"]
fn measure_1gib() {
    use std::time::Instant;
    let base =
        std::env::var_os("GUESTCORE_MEASURE_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let t = Instant::now();
    let mem = VecMemory::flat(pattern(1 << 30, 11));
    eprintln!("generate 1 GiB: {:?}", t.elapsed());

    let src = dir.path().join("src.bin");
    std::fs::write(&src, source_bytes(&mem, 0, 1 << 30)).unwrap();
    Command::new("sync").arg(&src).status().unwrap();
    let t = Instant::now();
    assert!(Command::new("cp")
        .arg(&src)
        .arg(dir.path().join("cp.bin"))
        .status()
        .unwrap()
        .success());
    let cp = t.elapsed();
    assert!(Command::new("sync")
        .arg(dir.path().join("cp.bin"))
        .status()
        .unwrap()
        .success());
    eprintln!("cp 1 GiB: {cp:?}, cp + sync: {:?}", t.elapsed());
    std::fs::remove_file(dir.path().join("cp.bin")).unwrap();

    let t = Instant::now();
    let s = write(
        &request(&mem, &[], ElfClass::Elf64, DumpLayout::Physical),
        &dir.path().join("phys"),
    );
    eprintln!("physical dump 1 GiB (with fsync): {:?} {s:?}", t.elapsed());
    std::fs::remove_file(dir.path().join("phys")).unwrap();

    // Direct map (one mapping) + every 4 KiB page again with alternating permissions
    // (262,144 more PT_LOADs: PN_XNUM).
    let mut l = MappingList::new();
    for i in 0..(1u64 << 18) {
        let f = if i % 2 == 0 {
            PageFlags::NX
        } else {
            PageFlags::empty()
        };
        l.push(0x7f00_0000_0000 + i * 0x1000, i * 0x1000, 0x1000, f);
    }
    l.push(0xffff_8880_0000_0000, 0, 1 << 30, RW_NX);
    let t = Instant::now();
    let s = write(
        &request(&mem, &[], ElfClass::Elf64, DumpLayout::Paging(&l)),
        &dir.path().join("paging"),
    );
    eprintln!(
        "paging dump 1 GiB, {} mappings (with fsync): {:?} {s:?}",
        l.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let data = std::fs::read(dir.path().join("paging")).unwrap();
    check_bytes(&mem, &data, &parse(&data));
    eprintln!("verify: {:?}", t.elapsed());
}
