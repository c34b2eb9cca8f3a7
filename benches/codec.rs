//! Avro single-object encode and decode of the three bundled schemas (signal, enforcement
//! command, decision record) with `AvroCodec`, on realistic records: the incident seed
//! scenario decided by the example rules.
//!
//! `cargo bench --bench codec`; figures in docs/benchmarks.md.

use containd::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use containd::emit::{DecisionRecord, EnforcementCommand};
use containd::offline::OfflineDecider;
use containd::signal::Signal;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

fn sample() -> (Signal, EnforcementCommand, DecisionRecord) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds =
        std::fs::read_to_string(root.join("examples/signals/seed-scenarios.jsonl")).unwrap();
    // sig-0001: a device falls out of compliance with HIGH risk; it carries most fields.
    let line = seeds.lines().next().unwrap();
    let mut decider = OfflineDecider::load(
        &root.join("examples/containd.toml"),
        &root.join("examples/rules"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    let decision = decider.decide_json(line.as_bytes(), 1).unwrap();
    let signal: Signal = serde_json::from_str(line).unwrap();
    let command = decision
        .commands
        .first()
        .cloned()
        .expect("the seed signal acts");
    (signal, command, decision.record)
}

/// A 45-byte single-object signal whose `subject.identifiers` map claims 4×10⁸ entries (what
/// made apache-avro abort before the bounds walk).
/// The header containd writes (the spec's fingerprint), for apache-avro's own reader.
struct Header(Vec<u8>);

impl apache_avro::headers::HeaderBuilder for Header {
    fn build_header(&self) -> Vec<u8> {
        self.0.clone()
    }
}

fn hostile_signal(header: &[u8]) -> Vec<u8> {
    let datum: &[u8] = b"\x02a\x02i\x00\x02e\x00\x00\x02f\x80\x90\xbc\xfd\x02";
    [header, datum, &[0; 19]].concat()
}

fn bench(c: &mut Criterion) {
    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]);
    let decoder = SignalDecoder::new(codec.clone(), 1 << 20);
    let (signal, command, decision) = sample();

    let mut g = c.benchmark_group("avro/signal");
    g.throughput(Throughput::Elements(1));
    let bytes = codec.encode_signal(&signal).unwrap();
    g.bench_function("encode", |b| {
        b.iter(|| black_box(codec.encode_signal(black_box(&signal)).unwrap().len()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            black_box(
                decoder
                    .decode(Format::Avro, Some(black_box(&bytes)))
                    .unwrap(),
            )
        })
    });
    // apache-avro alone, without the bounds walk `decode` runs first (src/codec/bounds.rs):
    // the difference between the two is what refusing hostile block counts costs.
    let unchecked = apache_avro::GenericSingleObjectReader::new_with_header_builder(
        codec.schemas().signal.clone(),
        Header(bytes[..10].to_vec()),
    )
    .unwrap();
    g.bench_function("decode_unchecked", |b| {
        b.iter(|| {
            let value = unchecked.read_value(&mut black_box(&bytes[..])).unwrap();
            black_box(apache_avro::from_value::<Signal>(&value).unwrap())
        })
    });
    let hostile = hostile_signal(&bytes[..10]);
    g.bench_function("refuse_hostile_count", |b| {
        b.iter(|| black_box(decoder.decode(Format::Avro, Some(black_box(&hostile)))).is_err())
    });
    g.finish();

    let mut g = c.benchmark_group("avro/enforcement_command");
    g.throughput(Throughput::Elements(1));
    let bytes = codec.encode_command(&command).unwrap();
    g.bench_function("encode", |b| {
        b.iter(|| black_box(codec.encode_command(black_box(&command)).unwrap().len()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let c: EnforcementCommand = codec.decode_command(black_box(&bytes)).unwrap();
            black_box(c)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("avro/decision_record");
    g.throughput(Throughput::Elements(1));
    let bytes = codec.encode_decision(&decision).unwrap();
    g.bench_function("encode", |b| {
        b.iter(|| black_box(codec.encode_decision(black_box(&decision)).unwrap().len()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let d: DecisionRecord = codec.decode_decision(black_box(&bytes)).unwrap();
            black_box(d)
        })
    });
    g.finish();

    // A command id (16 bytes) in hex, as several are written per signal.
    let mut g = c.benchmark_group("hex/16_bytes");
    let id = [0x5au8; 16];
    g.bench_function("hex_crate_encode", |b| {
        b.iter(|| black_box(hex::encode(black_box(id))))
    });
    g.bench_function("containd_codec_hex", |b| {
        b.iter(|| black_box(containd::codec::hex(black_box(id))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
