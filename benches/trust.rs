//! The per-signal cost of trust: verifying a raw SET (ES256 signature, claims, mapping to the
//! signal), the JSON decode it replaces, the authority check every signal passes, and the
//! duplicate lookup in a subject's state.
//!
//! `cargo bench --bench trust`; figures in docs/benchmarks.md.

use containd::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use containd::config::{SourceSettings, TrustSettings};
use containd::state::Mark;
use containd::trust::signer::SetSigner;
use containd::trust::{seen_key, Authority, SetVerifier};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const ISS: &str = "https://mdm.acme.example";
const AUD: &str = "https://containd.acme.example";

fn source(jwks: Option<std::path::PathBuf>) -> SourceSettings {
    SourceSettings {
        issuer: ISS.into(),
        topics: Some(vec!["identity.signals.v1".into()]),
        event_types: vec!["https://schemas.openid.net/secevent/caep/*".into()],
        actions: vec![
            "require_step_up".into(),
            "block_session".into(),
            "restore".into(),
        ],
        jwks_file: jwks,
        jwks_url: None,
        audience: Some(AUD.into()),
        algorithms: None,
        require_signed: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let signer = SetSigner::generate("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, signer.jwks()).unwrap();
    let now = containd::trust::now_ms();
    let claims = serde_json::json!({
        "iss": ISS, "aud": AUD, "iat": now / 1000, "jti": "set-1",
        "sub_id": {"format": "complex", "device": {"format": "opaque", "id": "dev-1"},
                   "application": {"format": "opaque", "id": "agent-1"}},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":
                   {"previous_status": "compliant", "current_status": "not-compliant"}}
    });
    let set = signer.sign(&claims).unwrap();
    let verifier = SetVerifier::from_sources(
        &[source(Some(jwks))],
        &TrustSettings::default(),
        std::path::Path::new("bench.toml"),
    )
    .unwrap();
    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]);
    let decoder = SignalDecoder::new(codec, 1 << 20).with_sets(verifier);
    let signal = decoder
        .decode_at(Format::Set, Some(set.as_bytes()), now)
        .unwrap();
    let json = serde_json::to_vec(&signal).unwrap();

    let mut g = c.benchmark_group("trust/decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("set_es256_verify_and_map", |b| {
        b.iter(|| {
            black_box(
                decoder
                    .decode_at(Format::Set, Some(black_box(set.as_bytes())), now)
                    .unwrap(),
            )
        })
    });
    g.bench_function("json_same_signal", |b| {
        b.iter(|| {
            black_box(
                decoder
                    .decode_at(Format::Json, Some(black_box(&json)), now)
                    .unwrap(),
            )
        })
    });
    g.finish();

    let authority = Authority::from_sources(&[source(None)], Duration::from_secs(300));
    let mut g = c.benchmark_group("trust/per_signal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("authority_admit", |b| {
        b.iter(|| {
            black_box(
                authority
                    .admit(black_box(&signal), "identity.signals.v1", false, (now, now))
                    .is_ok(),
            )
        })
    });
    // A partition that has seen 100,000 signals within the dedup window.
    let mut seen = containd::state::seen::SeenSet::default();
    for i in 0..100_000 {
        let key = seen_key(ISS, &format!("s-{i}"));
        seen.record(
            key,
            Mark { offset: i, at: now },
            Duration::from_secs(86_400),
        );
    }
    g.bench_function("duplicate_lookup_100k_seen", |b| {
        b.iter(|| {
            let key = seen_key(black_box(ISS), black_box("s-new"));
            black_box(seen.first_seen(&key, 1_000_000))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
