//! The per-command cost of minimal disclosure: a command cut down under its target's profile
//! (one field disclosed, one pseudonymised, the rest withheld), and a command to a target
//! without one (a map lookup).
//!
//! `cargo bench --bench disclosure`; figures in docs/benchmarks.md.

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
