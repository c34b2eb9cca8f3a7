use super::*;
use crate::codec::avro::fingerprint;
use crate::codec::{AvroCodec, Format, SignalDecoder};
use crate::signal::Signal;
use apache_avro::types::Value;
use std::path::Path;
use std::sync::Arc;

fn codec() -> AvroCodec {
    AvroCodec::new(Arc::new(crate::codec::Schemas::bundled().unwrap()), &[7])
}

fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z > 0x7f {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

fn single_object(schema: &Schema, datum: &[u8]) -> Vec<u8> {
    [&[0xC3, 0x01][..], &fingerprint(schema).to_le_bytes(), datum].concat()
}

fn parse(json: &str) -> Schema {
    Schema::parse_str(json).unwrap()
}

/// Where apache-avro would reserve 4×10⁸ entries: the signal's `subject.identifiers` map
/// (after id, issuer, null transmitter, event_type, both timestamps and the subject's
/// format) and the identity's `aliases` array, in the positive-count and the
/// negative-count-plus-byte-size block forms. The single-object signal is 45 bytes.
#[test]
fn hostile_block_counts_are_refused_before_decoding() {
    let c = codec();
    let d = SignalDecoder::new(c.clone(), 1 << 20);
    let signal_prefix = b"\x02a\x02i\x00\x02e\x00\x00\x02f";
    let hostile = 400_000_000;
    for count in [zigzag(hostile), [zigzag(-hostile), zigzag(4)].concat()] {
        let padding = [0u8; 19];
        let datum = [&signal_prefix[..], &count, &padding].concat();
        let so = single_object(&c.schemas().signal, &datum);
        let cf = [&[0, 0, 0, 0, 7][..], &datum].concat();
        for (format, bytes) in [(Format::Avro, so), (Format::Confluent, cf)] {
            let err = d.decode(format, Some(&bytes)).unwrap_err();
            assert_eq!(err.kind(), "malformed_avro");
            let msg = err.to_string();
            assert!(
                msg.contains("map block count 400000000 exceeds the 19 bytes left"),
                "{msg}"
            );
        }
        let datum = [&b"\x02a"[..], &count, &padding].concat();
        let identity = single_object(&c.schemas().identity, &datum);
        let err = c.decode_identity(&identity).unwrap_err();
        assert_eq!(err.kind(), "malformed_avro");
        assert!(err
            .to_string()
            .contains("array block count 400000000 exceeds"));
    }
}

fn seed_lines() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("examples/signals/seed-scenarios.jsonl");
    let text = std::fs::read_to_string(seeds).unwrap();
    text.lines().map(str::to_string).collect()
}

/// The seed signals, one with an aliases subject (the schema's named `SimpleSubject`
/// reference inside an array) and one with every optional field absent.
fn signals() -> Vec<Signal> {
    let mut signals: Vec<Signal> = seed_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut aliased: serde_json::Value = serde_json::from_str(&seed_lines()[0]).unwrap();
    aliased["subject"] = serde_json::json!({"format": "aliases", "aliases": [
        {"format": "email", "identifiers": {"email": "a@acme.example"}},
        {"format": "opaque", "identifiers": {"id": "x"}}]});
    signals.push(serde_json::from_value(aliased).unwrap());
    signals.push(
        serde_json::from_value(serde_json::json!({"id": "m",
        "source": {"issuer": "https://i"}, "event_type": "urn:x", "occurred_at": 0,
        "received_at": 0, "subject": {"format": "opaque"}}))
        .unwrap(),
    );
    signals
}

#[test]
fn every_record_the_codec_encodes_passes() {
    let c = codec();
    let s = c.schemas();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut decider = crate::offline::OfflineDecider::load(
        &root.join("examples/containd.toml"),
        &root.join("examples/rules"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    let inventory = root.join("examples/inventory/identities.jsonl");
    for record in crate::offline::read_inventory(&inventory).unwrap() {
        let bytes = c.encode_identity(&record).unwrap();
        Bounds::new(&s.identity).check(&bytes[10..]).unwrap();
        decider.add_identity(record);
    }
    for signal in signals() {
        let bytes = c.encode_signal(&signal).unwrap();
        Bounds::new(&s.signal).check(&bytes[10..]).unwrap();
    }
    let mut commands = 0;
    for (i, line) in seed_lines().iter().enumerate() {
        let Ok(decision) = decider.decide_json(line.as_bytes(), i as i64) else {
            continue;
        };
        let bytes = c.encode_decision(&decision.record).unwrap();
        Bounds::new(&s.decision).check(&bytes[10..]).unwrap();
        for command in &decision.commands {
            let bytes = c.encode_command(command).unwrap();
            Bounds::new(&s.command).check(&bytes[10..]).unwrap();
            commands += 1;
        }
    }
    assert!(commands > 0, "the seed scenarios act");
}

/// Each prefix, and each byte set to a few values, of `bytes`.
fn mutations(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let prefixes = (0..bytes.len()).map(|n| bytes[..n].to_vec());
    let changed = (0..bytes.len()).flat_map(move |i| {
        let b = bytes[i];
        [0x00, 0x01, 0x7f, 0x80, 0xff, b ^ 0x01, b.wrapping_add(2)]
            .into_iter()
            .map(move |v| {
                let mut m = bytes.to_vec();
                m[i] = v;
                m
            })
    });
    prefixes.chain(changed)
}

#[test]
fn mutated_records_never_abort_the_decoder() {
    let c = codec();
    let d = SignalDecoder::new(c.clone(), 1 << 20);
    let signal = &signals()[0];
    let so = c.encode_signal(signal).unwrap();
    let cf = c.encode_signal_confluent(signal, 7).unwrap();
    for (format, bytes) in [(Format::Avro, so), (Format::Confluent, cf)] {
        for m in mutations(&bytes) {
            let _ = d.decode(format, Some(&m));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inventory = root.join("examples/inventory/identities.jsonl");
    let record = &crate::offline::read_inventory(&inventory).unwrap()[0];
    for m in mutations(&c.encode_identity(record).unwrap()) {
        let _ = c.decode_identity(&m);
    }
}

const ALL_TYPES: &str = r#"{"type": "record", "name": "All", "namespace": "t", "fields": [
    {"name": "null", "type": "null"},
    {"name": "boolean", "type": "boolean"},
    {"name": "int", "type": "int"},
    {"name": "long", "type": "long"},
    {"name": "float", "type": "float"},
    {"name": "double", "type": "double"},
    {"name": "bytes", "type": "bytes"},
    {"name": "string", "type": "string"},
    {"name": "array", "type": {"type": "array", "items": "int"}},
    {"name": "map", "type": {"type": "map", "values": "long"}},
    {"name": "union", "type": ["null", "string"]},
    {"name": "record", "type": {"type": "record", "name": "Inner",
        "fields": [{"name": "x", "type": "int"}]}},
    {"name": "enum", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
    {"name": "fixed", "type": {"type": "fixed", "name": "F", "size": 3}},
    {"name": "decimal", "type": {"type": "bytes", "logicalType": "decimal",
        "precision": 9, "scale": 2}},
    {"name": "decimal_fixed", "type": {"type": "fixed", "name": "D", "size": 4,
        "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "big_decimal", "type": {"type": "bytes", "logicalType": "big-decimal"}},
    {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "time_millis", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "time_micros", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "ts_millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ts_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ts_nanos", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    {"name": "local_millis", "type": {"type": "long",
        "logicalType": "local-timestamp-millis"}},
    {"name": "local_micros", "type": {"type": "long",
        "logicalType": "local-timestamp-micros"}},
    {"name": "local_nanos", "type": {"type": "long",
        "logicalType": "local-timestamp-nanos"}},
    {"name": "duration", "type": {"type": "fixed", "name": "Dur", "size": 12,
        "logicalType": "duration"}},
    {"name": "reference", "type": "Inner"},
    {"name": "nulls", "type": {"type": "array", "items": "null"}},
    {"name": "list", "type": {"type": "record", "name": "List",
        "fields": [{"name": "next", "type": ["null", "List"]}]}}
]}"#;

fn all_types_value() -> Value {
    use apache_avro::{Days, Duration, Millis, Months};
    let inner = |x| Value::Record(vec![("x".into(), Value::Int(x))]);
    let list = |next| Value::Record(vec![("next".into(), next)]);
    let end = list(Value::Union(0, Box::new(Value::Null)));
    let values = vec![
        Value::Null,
        Value::Boolean(true),
        Value::Int(-5),
        Value::Long(1 << 40),
        Value::Float(1.5),
        Value::Double(2.5),
        Value::Bytes(vec![1, 2, 3]),
        Value::String("héllo".into()),
        Value::Array(vec![Value::Int(1), Value::Int(2)]),
        Value::Map([("k".to_string(), Value::Long(3))].into()),
        Value::Union(1, Box::new(Value::String("u".into()))),
        inner(7),
        Value::Enum(1, "b".into()),
        Value::Fixed(3, vec![1, 2, 3]),
        Value::Decimal(vec![1, 2].into()),
        Value::Decimal(vec![0, 0, 1, 2].into()),
        Value::BigDecimal("12.34".parse().unwrap()),
        Value::Uuid(apache_avro::Uuid::from_u128(0x1234)),
        Value::Date(19_000),
        Value::TimeMillis(1_000),
        Value::TimeMicros(2_000),
        Value::TimestampMillis(3),
        Value::TimestampMicros(4),
        Value::TimestampNanos(5),
        Value::LocalTimestampMillis(6),
        Value::LocalTimestampMicros(7),
        Value::LocalTimestampNanos(8),
        Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3))),
        inner(8),
        Value::Array(vec![Value::Null; 3]),
        list(Value::Union(1, Box::new(end))),
    ];
    let Schema::Record(r) = parse(ALL_TYPES) else {
        unreachable!()
    };
    Value::Record(
        r.fields
            .iter()
            .map(|f| f.name.clone())
            .zip(values)
            .collect(),
    )
}

/// Every `Schema` variant, encoded by apache-avro, passes; and no change to that datum
/// that passes makes apache-avro abort.
#[test]
fn every_schema_variant_walks_its_encoding() {
    let schema = parse(ALL_TYPES);
    let Schema::Record(r) = &schema else {
        unreachable!()
    };
    let kinds: std::collections::HashSet<_> = r
        .fields
        .iter()
        .map(|f| apache_avro::schema::SchemaKind::from(&f.schema))
        .collect();
    assert_eq!(
        kinds.len() + 1,
        29,
        "every variant but Ref is a field's type"
    );
    let datum = apache_avro::to_avro_datum(&schema, all_types_value()).unwrap();
    let bounds = Bounds::new(&schema);
    bounds.check(&datum).unwrap();
    let (mut passed, mut refused) = (0, 0);
    for m in mutations(&datum) {
        match bounds.check(&m) {
            Ok(()) => {
                passed += 1;
                let _ = apache_avro::from_avro_datum(&schema, &mut &m[..], None);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(passed > 0 && refused > 0);
}

#[test]
fn zero_width_items_share_one_budget() {
    let nulls = Bounds::new(&parse(r#"{"type": "array", "items": "null"}"#));
    let budget = MAX_ZERO_WIDTH_ITEMS as i64;
    assert!(nulls.check(&[zigzag(budget), vec![0]].concat()).is_ok());
    let over = nulls.check(&[zigzag(budget + 1), vec![0]].concat());
    assert!(over.unwrap_err().contains("zero-width items left"));
    let half = zigzag(budget / 2 + 1);
    assert!(nulls.check(&[&half[..], &half, &[0]].concat()).is_err());
    let nested = Bounds::new(&parse(
        r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#,
    ));
    let inner = [&half[..], &[0]].concat();
    assert!(nested
        .check(&[&[4][..], &inner, &inner, &[0]].concat())
        .is_err());
}

#[test]
fn recursive_nesting_is_capped() {
    let schema = parse(
        r#"{"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}"#,
    );
    let bounds = Bounds::new(&schema);
    let list = |n| [vec![2u8; n], vec![0]].concat();
    bounds.check(&list(20)).unwrap();
    assert!(apache_avro::from_avro_datum(&schema, &mut &list(20)[..], None).is_ok());
    let deep = bounds.check(&list(100_000)).unwrap_err();
    assert!(deep.contains("deeper than 64"), "{deep}");
}

/// A block with a byte size (negative count) is read like apache-avro reads it; only a
/// size past the end is refused.
#[test]
fn sized_blocks_are_read() {
    let schema = parse(r#"{"type": "array", "items": "int"}"#);
    let datum = [zigzag(-2), zigzag(2), vec![2, 4, 0]].concat();
    Bounds::new(&schema).check(&datum).unwrap();
    assert!(apache_avro::from_avro_datum(&schema, &mut &datum[..], None).is_ok());
    let datum = [zigzag(-2), zigzag(40), vec![2, 4, 0]].concat();
    let err = Bounds::new(&schema).check(&datum).unwrap_err();
    assert!(
        err.contains("block size 40 does not fit the 3 bytes left"),
        "{err}"
    );
}

/// apache-avro reads a union or boolean cut off by the end as null, so the walk passes
/// them; a string running past the end it would allocate in full, so the walk refuses it.
#[test]
fn datums_ending_early_are_judged_like_apache_avro() {
    let schema = parse(
        r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"},
        {"name": "b", "type": ["null", "string"]}, {"name": "c", "type": "boolean"}]}"#,
    );
    for datum in [&[2][..], &[2, 0x80], &[2, 0]] {
        Bounds::new(&schema).check(datum).unwrap();
        assert!(apache_avro::from_avro_datum(&schema, &mut &datum[..], None).is_ok());
    }
    let err = Bounds::new(&schema).check(&[2, 2, 10, b'a']).unwrap_err();
    assert_eq!(err, "string length 5 exceeds the 1 bytes left");
    let err = Bounds::new(&schema).check(&[2, 2, 2, b'a', 7]).unwrap_err();
    assert_eq!(err, "boolean byte is neither 0 nor 1");
}

#[test]
fn an_unresolved_name_refuses_every_datum() {
    let schema = Schema::Ref {
        name: Name::new("t.Missing").unwrap(),
    };
    let err = Bounds::new(&schema).check(&[]).unwrap_err();
    assert_eq!(err, "schema name t.Missing does not resolve");
}
