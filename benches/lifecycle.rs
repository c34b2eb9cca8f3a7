//! The per-command cost of lifecycle tracking: building and sealing the `issued` record a
//! command gets on the results topic, verifying and parsing it when read back, applying it and
//! the adapter's result to a partition's tracked commands, and the results partition
//! (murmur2) a command key maps to.
//!
//! `cargo bench --bench lifecycle`; figures in docs/benchmarks.md.

use containd::emit::{CommandResult, EnforcementCommand, ResultStatus, TargetSubject, Why};
use containd::lifecycle::record::{results_partition, seal, sealed_by};
use containd::lifecycle::{Issued, Limits, Tracker, Tracking};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

const KEY: &[u8] = b"a lifecycle key of 32 bytes.....";

fn command(n: u64) -> EnforcementCommand {
    EnforcementCommand {
        command_id: format!("{n:032x}"),
        action: "disable_credential".into(),
        target: "aws".into(),
        principal_id: Some("arn:aws:iam::1:user/svc".into()),
        subject: TargetSubject {
            id: format!("svc-{n}"),
            format: "opaque".into(),
            identifiers: Default::default(),
        },
        parameters: [("credential_id".to_string(), "AKIA0001".to_string())].into(),
        issued_at: 0,
        expires_at: None,
        why: Why {
            rule_id: "secret-leaked-contain".into(),
            ruleset_version: "v".into(),
            signal_ids: vec!["sig-1".into()],
            event_type: "urn:containd:event:secrets:credential-leaked".into(),
            description: None,
        },
    }
}

fn issued(n: u64) -> Tracking {
    Tracking::Issued(Box::new(Issued {
        partition: 0,
        topic: "containment.commands.aws.v1".into(),
        key: format!("svc-{n}"),
        identity: Some(format!("svc-{n}")),
        sent_at: 1_000,
        occurred_at: 500,
        received_at: 900,
        escalation_of: None,
        command: command(n),
    }))
}

fn limits(_: &str) -> Limits {
    Limits {
        timeout: Duration::from_secs(300),
        max_attempts: 3,
        horizon: Duration::from_secs(600),
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("lifecycle/issued record: build, JSON, seal", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let payload = serde_json::to_vec(&issued(n)).unwrap();
            black_box(seal(KEY, &payload));
        })
    });
    let payload = serde_json::to_vec(&issued(1)).unwrap();
    let s = seal(KEY, &payload);
    c.bench_function(
        "lifecycle/issued record read back: verify seal, parse",
        |b| {
            b.iter(|| {
                assert!(sealed_by(KEY, black_box(&payload), s.as_bytes()));
                black_box(serde_json::from_slice::<Tracking>(&payload).unwrap());
            })
        },
    );
    c.bench_function(
        "lifecycle/track + confirm one command (100k tracked)",
        |b| {
            let mut tracker = Tracker::default();
            for n in 0..100_000u64 {
                tracker.apply(issued(n), (n as i64, 1_000), limits);
            }
            let mut n = 1_000_000u64;
            b.iter(|| {
                n += 1;
                tracker.apply(issued(n), (n as i64, 1_000), limits);
                let result = CommandResult {
                    command_id: format!("{n:032x}"),
                    target: "aws".into(),
                    status: ResultStatus::Succeeded,
                    detail: None,
                    attempt: 1,
                    at: 1_100,
                    evidence: Default::default(),
                };
                black_box(tracker.result(&result, (n as i64 + 1, 1_100), limits));
            })
        },
    );
    c.bench_function("lifecycle/results partition (murmur2)", |b| {
        b.iter(|| black_box(results_partition(black_box(b"api_key:ci-deploy-prod-7"), 8)))
    });
    expiry(c);
}

/// Restore on expiry: the sweep's scan for due restores over a partition set's subjects (each
/// with one open containment, one in a hundred with `on_expiry: restore`, none due yet), run
/// every `state.sweep_interval`; nothing of it is on a signal's path.
fn expiry(c: &mut Criterion) {
    use containd::state::{Cause, CommandId, Mark, NewIssue, Retention, StateStore, StateUpdate};
    const SUBJECTS: usize = 100_000;
    let mut store = StateStore::new(Retention::default());
    for i in 0..SUBJECTS {
        let update = StateUpdate {
            issued: vec![NewIssue {
                target: "aws".into(),
                action: "disable_credential".into(),
                command_id: CommandId::from((i as u128).to_be_bytes()),
                holds: true,
                expires_at: Some(3_600_000),
                remember_for: Duration::from_secs(900),
                cause: Cause {
                    rule: "leak".into(),
                    event_type: "urn:leak".into(),
                    occurred_at: 0,
                    signal: None,
                    object: Some(format!("AKIA{i}").into()),
                    principal: None,
                },
                restore_on_expiry: (i % 100 == 0).then(|| command(i as u64).subject),
            }],
            ..StateUpdate::default()
        };
        let at = Mark {
            offset: i as i64,
            at: 0,
        };
        store.apply("signals", (i % 8) as i32, &format!("svc-{i}"), at, &update);
    }
    c.bench_function("expiry/sweep scan, 100k subjects, none due", |b| {
        b.iter(|| black_box(store.restores_due(black_box(1_000)).count()))
    });
    c.bench_function("expiry/sweep scan, 100k subjects, 1k due", |b| {
        b.iter(|| black_box(store.restores_due(black_box(3_600_000)).count()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
