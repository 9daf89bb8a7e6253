//! Criterion: walk + mapping list of the Linux-like 256 MiB guest (with a 4,096-page user heap),
//! guestcore vs memflow on the same bytes. `cargo bench -p guestcore-bench --features peers`.

use criterion::{criterion_main, Criterion};
use guestcore::mapping::MappingList;
use guestcore::paging::{PagingMode, WalkLimits};
use guestcore_bench::inputs::linux_guest;
use guestcore_bench::peers;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let g = linux_guest(256 << 20);
    let mode = PagingMode::from_cpu(&g.cpu).expect("4-level registers");
    let mut group = c.benchmark_group("linux-like 256MiB");
    group.bench_function("guestcore walk+list", |b| {
        b.iter(|| {
            let (list, _) =
                MappingList::from_walk(black_box(&g.memory), &mode, WalkLimits::default())
                    .expect("walk");
            black_box(list.len())
        })
    });
    group.bench_function("memflow virt_translation_map", |b| {
        b.iter(|| black_box(peers::translation_map(&g.memory, mode.root).entries))
    });
    group.bench_function("memflow virt_page_map_range", |b| {
        b.iter(|| black_box(peers::page_map(&g.memory, mode.root).entries))
    });
    group.finish();
}

/// Private so that the `pub fn` `criterion_group!` writes is not public (and undocumented) API.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
