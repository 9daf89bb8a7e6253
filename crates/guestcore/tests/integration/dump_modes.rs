//! Round trip of dumps for guests of every paging mode built by the testkit: write a physical
//! and a paging ELF core, read them back with guestcore's own ELF source, and check every
//! PT_LOAD against the source memory and the mapping list.

use guestcore::dump::notes::{dump_notes, CpuNotes};
use guestcore::dump::{
    write_elf_core, DumpLayout, ElfClass, ElfDumpRequest, ElfMachine, OutputOptions,
};
use guestcore::mapping::MappingList;
use guestcore::paging::{ModeKind, PagingMode, WalkLimits};
use guestcore::phys::elf::ElfCore;
use guestcore::phys::PhysMemory;
use guestcore::NoProgress;
use guestcore_testkit::{GuestBuilder, MapFlags, PageSize};

fn guest(kind: ModeKind) -> GuestBuilder {
    let mut b = GuestBuilder::pc(kind, 24 << 20).tables_at(0x1000000);
    let big = match kind {
        ModeKind::Bits32 => PageSize::Size4M,
        _ => PageSize::Size2M,
    };
    let hi = if matches!(kind, ModeKind::Level4 | ModeKind::Level5) {
        0xffff_ffff_8000_0000
    } else {
        0xc000_0000
    };
    b.map_pages(
        0x400000,
        0x300000,
        0x5000,
        PageSize::Size4K,
        MapFlags::USER | MapFlags::WRITE,
    );
    b.map_page(hi, 0x400000, big, MapFlags::WRITE);
    // An alias of one frame, twice, and a page of MMIO.
    b.map_page(
        hi + 0x1000_0000,
        0x301000,
        PageSize::Size4K,
        MapFlags::empty(),
    );
    b.map_page(
        hi + 0x1001_0000,
        0x301000,
        PageSize::Size4K,
        MapFlags::empty(),
    );
    b.map_page(
        hi + 0x1002_0000,
        0xfee0_0000,
        PageSize::Size4K,
        MapFlags::WRITE,
    );
    for (i, pa) in [0x300000u64, 0x301000, 0x400000, 0x5ff000]
        .iter()
        .enumerate()
    {
        b.write_phys(*pa + 8, format!("page {i} at {pa:#x}").as_bytes());
    }
    b
}

#[test]
fn every_mode_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        ModeKind::Bits32,
        ModeKind::Pae,
        ModeKind::Level4,
        ModeKind::Level5,
    ] {
        let (mem, cpu) = guest(kind).build_vec();
        let mode = PagingMode::from_cpu(&cpu).unwrap();
        let (list, _) = MappingList::from_walk(&mem, &mode, WalkLimits::default()).unwrap();
        let long = cpu.long_mode();
        let notes = dump_notes(
            CpuNotes::Build {
                cpus: &[cpu.clone().into()],
                long_mode: long,
            },
            &[],
            None,
        );
        for paging in [false, true] {
            let out = dir.path().join(format!("{kind:?}-{paging}.elf"));
            let req = ElfDumpRequest {
                memory: &mem,
                notes: &notes,
                machine: if long {
                    ElfMachine::X86_64
                } else {
                    ElfMachine::I386
                },
                class: if long {
                    ElfClass::Elf64
                } else {
                    ElfClass::Elf32
                },
                layout: if paging {
                    DumpLayout::Paging(&list)
                } else {
                    DumpLayout::Physical
                },
                filter: None,
                excluded: None,
            };
            write_elf_core(&req, &out, &OutputOptions::default(), &NoProgress).unwrap();
            let core = ElfCore::open(&out).unwrap();
            let loads = core.segments();
            if paging {
                let want: Vec<_> = list
                    .iter()
                    .map(|m| (m.va.0, m.pa.0, m.size, m.is_ram()))
                    .collect();
                let got: Vec<_> = loads
                    .iter()
                    .map(|s| (s.vaddr, s.paddr, s.memsz, s.filesz > 0))
                    .collect();
                assert_eq!(got, want, "{kind:?}: PT_LOADs are the mapping list");
            } else {
                let want: Vec<_> = mem
                    .ram()
                    .ranges()
                    .iter()
                    .map(|r| (r.start, r.start, r.len()))
                    .collect();
                let got: Vec<_> = loads.iter().map(|s| (s.vaddr, s.paddr, s.memsz)).collect();
                assert_eq!(got, want, "{kind:?}: one PT_LOAD per RAM range");
            }
            for s in loads.iter().filter(|s| s.filesz > 0) {
                let mut want = vec![0u8; s.filesz as usize];
                mem.read_at(s.paddr, &mut want).unwrap();
                assert!(
                    core.segment_data(s).unwrap() == want,
                    "{kind:?} paging={paging}: PT_LOAD at {:#x}",
                    s.vaddr
                );
            }
            // CPU state survives the trip through the notes.
            let back = guestcore::cpu::notes::cpus_from_notes(core.notes(), core.machine());
            assert_eq!(back[0].cr[3], cpu.cr[3], "{kind:?}");
            assert_eq!(PagingMode::from_cpu(&back[0]).unwrap().kind, kind);
        }
    }
}
