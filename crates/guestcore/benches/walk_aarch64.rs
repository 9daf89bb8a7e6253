//! aarch64 against x86 through the one walker: the same kernel-like mapping set (a 256 MiB
//! linear map in 2 MiB blocks / PDE leaves, 4 MiB of kernel text in 4 KiB pages, 65,536
//! non-mergeable 4 KiB vmalloc pages: 66,688 leaves) built once as 4-level x86 tables and once
//! as aarch64 4 KiB-granule 48-bit TTBR1 tables (plus a small TTBR0 user half on aarch64 and
//! the same pages in the x86 user half). The ratio of the two walk times is the cost of the
//! architecture dimension (decoding two descriptor formats, two hierarchies).

use criterion::{criterion_main, Criterion};
use guestcore::mapping::MappingList;
use guestcore::paging::ModeKind;
use guestcore::paging::{walk, PagingMode, WalkLimits};
use guestcore_testkit::aarch64::{desc, Aarch64Builder};
use guestcore_testkit::{GuestBuilder, MapFlags, PageSize, SparseMemory};
use std::hint::black_box;

const LINEAR: u64 = 256 << 20;
const TEXT: u64 = 4 << 20;
const VMALLOC_PAGES: u64 = 65_536;
const USER_PAGES: u64 = 64;

/// Scattered, non-mergeable physical frame `i` of the vmalloc area.
fn scattered(i: u64) -> u64 {
    ((i * 7919) % VMALLOC_PAGES) << 12
}

fn x86() -> (SparseMemory, PagingMode) {
    let mut b = GuestBuilder::new(ModeKind::Level4, 1 << 30).tables_at(0x3000_0000);
    let (linear, text, vmalloc) = (
        0xffff_8880_0000_0000u64,
        0xffff_ffff_8100_0000u64,
        0xffff_c900_0000_0000u64,
    );
    b.map_pages(
        linear,
        0,
        LINEAR,
        PageSize::Size2M,
        MapFlags::WRITE | MapFlags::NX,
    );
    b.map_pages(text, 0x100_0000, TEXT, PageSize::Size4K, MapFlags::empty());
    for i in 0..VMALLOC_PAGES {
        b.map_page(
            vmalloc + (i << 12),
            scattered(i),
            PageSize::Size4K,
            MapFlags::WRITE | MapFlags::NX,
        );
    }
    b.map_pages(
        0x40_0000,
        0x200_0000,
        USER_PAGES << 12,
        PageSize::Size4K,
        MapFlags::USER,
    );
    let (mem, cpu) = b.build();
    (mem, PagingMode::from_cpu(&cpu).expect("4-level"))
}

fn aarch64() -> (SparseMemory, PagingMode) {
    let mut b = Aarch64Builder::new(4096, 48, 48, &[(0, 1 << 30)], 0x3000_0000);
    let (linear, text, vmalloc) = (
        0xffff_0000_0000_0000u64,
        0xffff_8000_8100_0000u64,
        0xffff_8000_9000_0000u64,
    );
    let kernel_data = desc::PXN | desc::UXN;
    for off in (0..LINEAR).step_by(1 << 21) {
        b.map(linear + off, off, 1 << 21, kernel_data);
    }
    for off in (0..TEXT).step_by(4096) {
        b.map(text + off, 0x100_0000 + off, 4096, desc::AP_RO | desc::UXN);
    }
    for i in 0..VMALLOC_PAGES {
        b.map(vmalloc + (i << 12), scattered(i), 4096, kernel_data);
    }
    for i in 0..USER_PAGES {
        b.map(
            0x40_0000 + (i << 12),
            0x200_0000 + (i << 12),
            4096,
            desc::AP_EL0 | desc::PXN,
        );
    }
    let cpu = b.cpu();
    (
        b.into_memory(),
        PagingMode::aarch64(&cpu).expect("aarch64 registers"),
    )
}

fn bench(c: &mut Criterion) {
    let sets = [("x86 4-level", x86()), ("aarch64 4K 48-bit", aarch64())];
    for (name, (mem, mode)) in &sets {
        let mut n = 0u64;
        let r = walk(mem, mode, WalkLimits::default(), |_| n += 1).expect("walk");
        println!(
            "{name}: {} leaves, {} entries visited",
            r.leaves, r.entries_visited
        );
        assert_eq!(
            r.leaves,
            LINEAR / (2 << 20) + TEXT / 4096 + VMALLOC_PAGES + USER_PAGES
        );
    }
    let mut group = c.benchmark_group("kernel-like walk");
    for (name, (mem, mode)) in &sets {
        group.bench_function(format!("walk {name}"), |b| {
            b.iter(|| {
                let mut n = 0u64;
                walk(black_box(mem), mode, WalkLimits::default(), |_| n += 1).expect("walk");
                black_box(n)
            })
        });
        group.bench_function(format!("walk+list {name}"), |b| {
            b.iter(|| {
                let (list, _) = MappingList::from_walk(black_box(mem), mode, WalkLimits::default())
                    .expect("walk");
                black_box(list.len())
            })
        });
    }
    group.finish();
}

/// Private so that the `pub fn` `criterion_group!` writes is not public (and undocumented) API.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
