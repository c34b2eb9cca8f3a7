//! What deciding on several workers adds per record besides the deciding itself: grouping a
//! batch by state store, handing the groups to the pool and putting the results back in
//! order (`cargo bench --bench workers`; docs/benchmarks.md).

use containd::pipeline::workers::Workers;
use containd::pipeline::Incoming;
use containd::state::{Retention, Stores};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn batch() -> Vec<Incoming<'static>> {
    (0..1024)
        .map(|i| Incoming {
            topic: "identity.signals.v1",
            // 128 records per partition in turn, as fetched chunks arrive.
            partition: (i / 128) % 8,
            offset: i as i64,
            timestamp: None,
            key: None,
            payload: None,
            format: None,
            seal: None,
        })
        .collect()
}

fn overhead(c: &mut Criterion) {
    let batch = batch();
    for workers in [1, 2] {
        let stores = Stores::new(workers, Retention::default(), Default::default());
        let pool = Workers::new(workers).unwrap();
        c.bench_function(
            &format!("workers/{workers}: 1,024-record batch, no-op decide"),
            |b| b.iter(|| black_box(pool.decide(&stores, &batch, |_, m| m.offset))),
        );
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
