//! The per-decision cost of issue 14's steps: a command cut down under its target's
//! disclosure profile (one field disclosed, one pseudonymised, the rest withheld), a command to
//! a target without one (a map lookup), and linking a decision record into its evidence chain
//! (clone, canonical JSON, SHA-256).
//!
//! `cargo bench --bench evidence`; figures in docs/benchmarks.md.

use containd::disclosure::Disclosure;
use containd::emit::{EnforcementCommand, TargetSubject, Why};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn command(target: &str) -> EnforcementCommand {
    EnforcementCommand {
        command_id: "00000000000000000000000000000001".into(),
        action: "disable_credential".into(),
        target: target.into(),
        principal_id: Some("svc-deploy".into()),
        subject: TargetSubject {
            id: "email:alice@example.com".into(),
            format: "email".into(),
            identifiers: [("email".to_string(), "alice@example.com".to_string())].into(),
        },
        parameters: [
            ("credential_id".to_string(), "AKIA0001".to_string()),
            ("reason".to_string(), "leaked".to_string()),
        ]
        .into(),
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

fn disclosure(dir: &std::path::Path) -> Disclosure {
    let key = dir.join("p.key");
    std::fs::write(&key, "a pseudonym key of 32 bytes.....").unwrap();
    let text = format!(
        r#"
[input]
topics = ["s"]
[rules]
dir = "rules"
[disclosure]
key_file = {key:?}
[[disclosure.profiles]]
name = "credential-only"
disclose = ["principal_id", "parameters.credential_id"]
pseudonymise = ["subject.id"]
[[targets]]
name = "github-actions"
topic = "t"
kind = "cicd"
actions = ["disable_credential"]
disclosure = "credential-only"
[[targets]]
name = "okta"
topic = "o"
kind = "idp"
actions = ["revoke_sessions"]
"#
    );
    let path = dir.join("containd.toml");
    std::fs::write(&path, &text).unwrap();
    let settings = containd::config::parse(&path, &text).unwrap();
    Disclosure::of(&settings)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let d = disclosure(dir.path());
    let profiled = command("github-actions");
    c.bench_function("disclosure/cut a command under a profile", |b| {
        b.iter(|| {
            let mut c = profiled.clone();
            black_box(d.apply(&mut c))
        })
    });
    let open = command("okta");
    c.bench_function("disclosure/target without a profile", |b| {
        b.iter(|| {
            let mut c = open.clone();
            black_box(d.apply(&mut c))
        })
    });
    c.bench_function("disclosure/clone of the command (baseline of both)", |b| {
        b.iter(|| black_box(profiled.clone()))
    });
    chain(c);
}

/// A decision record as a leaked-key signal's decision has it (one rule, two commands, a
/// note), linked into a chain: what `Processor::encode` adds per decision.
fn chain(c: &mut Criterion) {
    let record: containd::emit::DecisionRecord = serde_json::from_value(serde_json::json!({
        "signal_id": "sig-000001", "event_type": "urn:containd:event:secrets:credential-leaked",
        "subject_id": "svc-payments-api", "outcome": "acted",
        "matched_rules": [{"rule_id": "secret-leaked-contain", "dry_run": false,
            "command_ids": ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"],
            "escalation_step": null, "suppressed": []}],
        "command_ids": ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"],
        "ruleset_version": "a1d1becc65a9",
        "source": {"topic": "identity.signals.v1", "partition": 3, "offset": 123456},
        "decided_at": 1_796_232_036_576_i64,
        "trust": {"issuer": "https://secrets.acme.example", "transmitter": null,
                  "verdict": "trusted", "reason_kind": null, "reason": null},
        "refused": [], "duplicate_of": null, "held": [], "errors": [],
        "identity": {"id": "svc-payments-api", "kind": "service_account", "owner_team": "payments",
                     "ownerless": false, "criticality": "high"},
        "pending": [], "notes": ["blast radius: aws, github-actions"],
        "timings": {"decode_micros": 41, "evaluate_micros": 12}}))
    .unwrap();
    let chains = containd::evidence::Chains::new();
    c.bench_function("evidence/link a decision record", |b| {
        b.iter(|| {
            let mut r = record.clone();
            chains.link(3, &mut r);
            black_box(r)
        })
    });
    c.bench_function("evidence/clone of the record (baseline)", |b| {
        b.iter(|| black_box(record.clone()))
    });
    // What Avro output costs per decision: linked and encoded, with the hash over the JSON
    // form (v1, before 2026-12-03) and over the Avro bytes, written in place (v2).
    let codec = containd::codec::AvroCodec::new(
        std::sync::Arc::new(containd::codec::Schemas::bundled().unwrap()),
        &[],
    );
    c.bench_function("evidence/link v1 + Avro encode", |b| {
        b.iter(|| {
            let mut r = record.clone();
            chains.link(3, &mut r);
            black_box(codec.encode_decision(&r).unwrap())
        })
    });
    c.bench_function("evidence/link v2 (hash over the Avro bytes)", |b| {
        b.iter(|| {
            let mut r = record.clone();
            let encode = |r: &containd::emit::DecisionRecord| codec.encode_decision(r);
            black_box(chains.link_with(3, &mut r, |r, prev| {
                containd::evidence::seal_avro(r, prev, encode)
            }))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
