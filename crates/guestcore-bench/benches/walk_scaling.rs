//! Criterion: walk + mapping list cost against the number of non-mergeable 4 KiB leaves
//! (1k, 100k). The 10M point and peak memory are in `guestcore-bench scale` (one process each).

use criterion::{criterion_main, Criterion};
use guestcore::mapping::MappingList;
use guestcore::paging::{PagingMode, WalkLimits};
use guestcore_bench::inputs::mapping_guest;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("walk+list by mapping count");
    for n in [1_000u64, 100_000] {
        let (mem, cpu) = mapping_guest(n);
        let mode = PagingMode::from_cpu(&cpu).expect("4-level registers");
        group.bench_function(format!("{n} 4K mappings"), |b| {
            b.iter(|| {
                let (list, _) =
                    MappingList::from_walk(black_box(&mem), &mode, WalkLimits::default())
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
