//! The per-signal cost of the safety rails: the circuit breakers' admission of one signal's
//! commands (the three breakers of the example config), sealing a held command for the
//! approvals topic, and applying an approval to a partition's holds.
//!
//! `cargo bench --bench rails`; figures in docs/benchmarks.md.

use containd::approvals::{
    seal, ApprovalRecord, Evidence, HoldRequest, HoldTable, Policy, Verdict,
};
use containd::config::{BreakerScope, BreakerSettings};
use containd::emit::{EnforcementCommand, SourcePosition, TargetSubject, Why};
use containd::safety::breakers::Breakers;
use containd::state::Mark;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

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

fn example_breakers() -> Breakers {
    let b = |name: &str, scope, max| BreakerSettings {
        name: name.into(),
        scope,
        only: None,
        max,
        per: Duration::from_secs(60),
        cooldown: Duration::from_secs(600),
    };
    Breakers::new(&[
        b("per-source", BreakerScope::Source, 100),
        b("per-action", BreakerScope::Action, 300),
        b("per-rule", BreakerScope::Rule, 200),
    ])
}

fn hold(n: u64) -> HoldRequest {
    HoldRequest {
        command_id: format!("{n:032x}"),
        reason: "breaker_open".into(),
        detail: "circuit breaker per-source:https://vault.acme.example is open".into(),
        held_at: 0,
        expires_at: 86_400_000,
        on_timeout: "cancel".into(),
        topic: "containment.commands.aws.v1".into(),
        command: command(n),
        subject_key: None,
        evidence: Evidence {
            signal_id: "sig-1".into(),
            issuer: "https://vault.acme.example".into(),
            event_type: "urn:containd:event:secrets:credential-leaked".into(),
            rule_id: "secret-leaked-contain".into(),
            source: SourcePosition {
                topic: "identity.signals.v1".into(),
                partition: 0,
                offset: 1,
            },
            identity: None,
        },
        seal: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rails/per_signal");
    // Admitted: the period slides, so the breakers stay under their limits.
    let mut breakers = example_breakers();
    let one = [command(1)];
    let mut t = 0i64;
    g.bench_function("breakers_admit_3_breakers_1_command", |b| {
        b.iter(|| {
            t += 1_000;
            breakers.admit(black_box(&one), "https://vault.acme.example", t)
        })
    });
    // Held: one breaker open, every command held.
    let mut open = example_breakers();
    for i in 0..100 {
        open.admit(&[command(i)], "https://vault.acme.example", 0);
    }
    g.bench_function("breakers_hold_when_open", |b| {
        b.iter(|| open.admit(black_box(&one), "https://vault.acme.example", 1))
    });

    let key = b"0123456789abcdef-approvals-key".to_vec();
    let request = hold(1);
    g.bench_function("hold_record_seal_and_json", |b| {
        b.iter(|| {
            let mut r = request.clone();
            r.seal = Some(seal(&key, &r));
            ApprovalRecord::Hold(Box::new(r)).to_json()
        })
    });

    let policy = Policy {
        key: Some(Ok(key.clone())),
        ..Policy::default()
    };
    let mut table = HoldTable::default();
    for n in 0..10_000u64 {
        let mut r = hold(n);
        r.seal = Some(seal(&key, &r));
        table.apply(
            ApprovalRecord::Hold(Box::new(r)),
            Mark {
                offset: n as i64,
                at: 0,
            },
            &policy,
        );
    }
    let approve = ApprovalRecord::Approve(Verdict {
        command_id: format!("{:032x}", 5_000),
        approver: "alice".into(),
        reason: "owner confirmed".into(),
        redact: Vec::new(),
    });
    // Re-applied at the same offset: the replay path, the same work as the first release.
    g.bench_function("approval_among_10k_holds", |b| {
        b.iter(|| {
            table.apply(
                black_box(approve.clone()),
                Mark {
                    offset: 20_000,
                    at: 1,
                },
                &policy,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
