//! The per-signal cost of the reliability steps: identifying-field lengths in validation, the
//! output size check, adopting an identity's former names (nothing to move: the common
//! case), and one whole signal through `Processor::process` (decode, validate, trust, rules,
//! state, encode, size) as the sum they are part of. The Avro bounds walk is measured in
//! `benches/codec.rs` (`decode` against `decode_unchecked`).
//!
//! `cargo bench --bench reliability`; figures in docs/benchmarks.md.

use containd::offline::OfflineDecider;
use containd::pipeline::fit;
use containd::pipeline::{OutKind, OutRecord};
use containd::state::{Mark, Retention, StateStore, StateUpdate};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reliability/per_signal");
    let signal = containd::demo::sample_signals().unwrap().remove(0);
    g.bench_function("validate_with_lengths", |b| {
        b.iter(|| containd::signal::validate(black_box(&signal)))
    });

    let outputs: Vec<OutRecord> = (0..5)
        .map(|i| OutRecord {
            topic: Arc::from("containment.commands.aws.v1"),
            partition: None,
            key: Some(b"svc-payments-api".to_vec()),
            payload: vec![0; 600 + 200 * i],
            headers: vec![("containd.command_id", vec![b'0'; 32])],
            kind: OutKind::Decision,
        })
        .collect();
    g.bench_function("outputs_size_check_5", |b| {
        b.iter(|| fit::oversized(black_box(&outputs), 1_000_000))
    });

    let mut store = StateStore::new(Retention::default());
    let update = StateUpdate {
        seen: Some(([7; 16], std::time::Duration::from_secs(60))),
        ..StateUpdate::default()
    };
    store.apply("t", 0, "agent-1", Mark { offset: 1, at: 0 }, &update);
    let former = ["wimse://acme.example/agent/1", "agent-1-client"];
    g.bench_function("adopt_former_names_none_held", |b| {
        b.iter(|| store.adopt("t", 0, "agent-1", black_box(former)))
    });

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut decider =
        OfflineDecider::load(&root.join("containd.toml"), &root.join("rules")).unwrap();
    // Without the example's circuit breakers: 10,000 signals in one minute would open them
    // and measure the held path; the breakers are measured on their own (benches/rails.rs).
    decider.configure_breakers(&[]);
    let lines: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            let mut s = containd::demo::sample_signals().unwrap().remove(5);
            s.id = format!("bench-{i}");
            // A subject each: one subject's growing state is measured on its own below.
            s.subject
                .identifiers
                .insert("id".into(), format!("policy-{i}"));
            serde_json::to_vec(&s).unwrap()
        })
        .collect();
    let mut position = 0i64;
    g.bench_function("process_json_policy_change", |b| {
        b.iter(|| {
            position += 1;
            let line = &lines[position as usize % lines.len()];
            black_box(decider.decide_json(line, position).is_ok())
        })
    });
    // One hot subject: every signal rewrites its changelog record, whose `seen` list (for
    // duplicate detection, up to `state.max_entries`) grows with each signal.
    let hot: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            let mut s = containd::demo::sample_signals().unwrap().remove(5);
            s.id = format!("hot-{i}");
            serde_json::to_vec(&s).unwrap()
        })
        .collect();
    let mut decider =
        OfflineDecider::load(&root.join("containd.toml"), &root.join("rules")).unwrap();
    decider.configure_breakers(&[]);
    let mut position = 0i64;
    g.bench_function("process_json_one_hot_subject", |b| {
        b.iter(|| {
            position += 1;
            let line = &hot[position as usize % hot.len()];
            black_box(decider.decide_json(line, position).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
