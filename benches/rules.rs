//! Rule evaluation alone, with 10, 1,000 and 10,000 rules spread over event types (at most 5
//! rules per event type), for rules with and without a CEL condition, and the whole decide
//! step (commands and decision record built).
//!
//! `cargo bench --bench rules`; figures in docs/benchmarks.md.

use containd::config::{TargetKind, TargetSettings};
use containd::decide::{decide, DecideInput};
use containd::emit::SourcePosition;
use containd::inventory::Identity;
use containd::rules::{load_sources, Facts, RuleSet};
use containd::signal::Signal;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;

const PER_TYPE: usize = 5;

fn targets() -> Vec<TargetSettings> {
    vec![TargetSettings {
        name: "okta".into(),
        topic: "t".into(),
        kind: TargetKind::Idp,
        actions: vec!["revoke_sessions".into(), "require_step_up".into()],
        require_approval: false,
        result_timeout: None,
        max_attempts: None,
        disclosure: None,
        disclose: None,
        pseudonymise: Vec::new(),
    }]
}

/// `n` rules over `n / 5` event types; with `condition`, each rule tests an attribute.
fn ruleset(n: usize, condition: bool) -> RuleSet {
    let mut text = String::from("rules:\n");
    for i in 0..n {
        let _ = write!(
            text,
            "  - id: r{i}\n    match:\n      event_types: [\"urn:bench:event:{}\"]\n",
            i / PER_TYPE
        );
        if condition {
            let _ = writeln!(text, "    condition: 'signal.attributes.level == \"HIGH\"'");
        }
        let _ = write!(
            text,
            "    actions:\n      - action: revoke_sessions\n        targets: [okta]\n        parameters: {{reason: bench}}\n"
        );
    }
    load_sources(vec![(PathBuf::from("bench.yaml"), text)], &targets(), &[])
        .unwrap_or_else(|p| panic!("{p:?}"))
}

fn signal(event: usize) -> Signal {
    serde_json::from_value(serde_json::json!({
        "id": "sig-1", "source": {"issuer": "https://idp"},
        "event_type": format!("urn:bench:event:{event}"),
        "occurred_at": 1, "received_at": 2,
        "subject": {"format": "opaque", "identifiers": {"id": "svc-1"}},
        "attributes": {"level": "HIGH"},
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for condition in [false, true] {
        let mut group = c.benchmark_group(if condition {
            "evaluate/with_condition"
        } else {
            "evaluate/match_only"
        });
        group.throughput(Throughput::Elements(1));
        for n in [10, 1_000, 10_000] {
            let rules = ruleset(n, condition);
            // An event type in the middle of the index, matched by PER_TYPE rules.
            let s = signal(n / PER_TYPE / 2);
            let unknown = Identity::unknown();
            let facts = Facts::new(&s, "svc-1", &unknown, 0);
            assert_eq!(rules.evaluate(&facts).matched.len(), PER_TYPE.min(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| black_box(rules.evaluate(black_box(&facts)).matched.len()))
            });
        }
        group.finish();
    }

    let mut group = c.benchmark_group("decide/match_only");
    group.throughput(Throughput::Elements(1));
    for n in [10, 1_000, 10_000] {
        let rules = ruleset(n, false);
        let s = signal(n / PER_TYPE / 2);
        let unknown = Identity::unknown();
        let source = containd::trust::Source::unrestricted(&s.source.issuer);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let rails = containd::safety::Rails::default();
            b.iter(|| {
                let d = decide(
                    &rules,
                    DecideInput {
                        signal: black_box(&s),
                        subject_id: "svc-1",
                        position: SourcePosition {
                            topic: "signals".into(),
                            partition: 0,
                            offset: 1,
                        },
                        decided_at: 2,
                        global_dry_run: false,
                        decode_micros: 0,
                        identity: &unknown,
                        state: None,
                        suppress_for: std::time::Duration::ZERO,
                        source: &source,
                        dedup_window: std::time::Duration::from_secs(86_400),
                        rails: &rails,
                        protection: None,
                        disclosure: &Default::default(),
                    },
                );
                black_box(d.commands.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
