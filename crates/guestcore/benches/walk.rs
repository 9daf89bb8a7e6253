//! Walk + merge of the Linux-like 256 MiB guest (direct map, kernel text, 65,536 ESPFIX aliases,
//! vmalloc, user pages): the work `guestcore dump --paging` does before writing. Goal < 20 ms.

use criterion::{criterion_main, Criterion};
use guestcore::mapping::MappingList;
use guestcore::paging::{walk, PagingMode, WalkLimits};
use guestcore_testkit::linux_like;
use std::hint::black_box;

fn bench_walk(c: &mut Criterion) {
    let guest = linux_like(256 << 20);
    let mode = PagingMode::from_cpu(&guest.cpu).expect("4-level registers");
    let (list, report) =
        MappingList::from_walk(&guest.memory, &mode, WalkLimits::default()).expect("walk");
    println!(
        "linux-like 256 MiB: {} leaves, {} mappings, {} entries visited",
        report.leaves,
        list.len(),
        report.entries_visited
    );
    assert_eq!(report.leaves, guest.expected_leaves);

    c.bench_function("walk+mappinglist linux-like 256MiB", |b| {
        b.iter(|| {
            let (list, _) =
                MappingList::from_walk(black_box(&guest.memory), &mode, WalkLimits::default())
                    .expect("walk");
            black_box(list.len())
        })
    });
    c.bench_function("walk only linux-like 256MiB", |b| {
        b.iter(|| {
            let mut n = 0u64;
            walk(
                black_box(&guest.memory),
                &mode,
                WalkLimits::default(),
                |_| n += 1,
            )
            .expect("walk");
            black_box(n)
        })
    });
}

/// Private so that the `pub fn` `criterion_group!` writes is not public (and undocumented) API.
mod group {
    criterion::criterion_group!(benches, super::bench_walk);
}
criterion_main!(group::benches);
