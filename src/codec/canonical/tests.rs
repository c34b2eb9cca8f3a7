use super::*;
use crate::codec::avro::{
    COMMAND_SCHEMA, DECISION_SCHEMA, IDENTITY_SCHEMA, RESULT_SCHEMA, SIGNAL_SCHEMA,
};
use crate::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use serde_json::json;
use std::sync::Arc;

/// Written by `scripts/avro-vectors` with fastavro, an implementation independent of this one.
const FASTAVRO: &str = include_str!("fastavro.vectors");

fn pcf(schema: Value) -> String {
    parsing_canonical_form(&schema).unwrap()
}

/// Hex of the header bytes, the way Java and fastavro print a fingerprint.
fn header_hex(fp: u64) -> String {
    hex::encode(fp.to_le_bytes())
}

/// The spec's fingerprints of the primitive schemas (Avro's share/test/data/schema-tests.txt,
/// as Java's `SchemaNormalization.parsingFingerprint64` computes them; fastavro agrees).
#[test]
fn fingerprint_matches_the_spec_vectors() {
    let vectors: [(&str, i64); 8] = [
        ("null", 7195948357588979594),
        ("boolean", -6970731678124411036),
        ("int", 8247732601305521295),
        ("long", -3434872931120570953),
        ("float", 5583340709985441680),
        ("double", -8181574048448539266),
        ("bytes", 5746618253357095269),
        ("string", -8142146995180207161),
    ];
    for (primitive, expected) in vectors {
        let form = pcf(json!({ "type": primitive }));
        assert_eq!(form, format!("\"{primitive}\""));
        assert_eq!(fingerprint(&form), expected as u64, "{primitive}");
    }
    assert_eq!(fingerprint(""), EMPTY);
    assert_eq!(header_hex(fingerprint("\"int\"")), "8f5c393f1ad57572");
}

/// apache-avro's Rabin digest is the same CRC; only its canonical form differs.
#[test]
fn fingerprint_agrees_with_apache_avro_rabin() {
    for text in [
        "\"int\"",
        "\"string\"",
        r#"{"type":"array","items":"long"}"#,
    ] {
        let schema = apache_avro::Schema::parse_str(text).unwrap();
        let rabin = schema.fingerprint::<apache_avro::rabin::Rabin>();
        let form = pcf(serde_json::from_str(text).unwrap());
        assert_eq!(rabin.bytes, fingerprint(&form).to_le_bytes());
    }
}

#[test]
fn logical_types_reduce_to_their_underlying_type() {
    let ts = json!({"type": "long", "logicalType": "timestamp-millis"});
    assert_eq!(pcf(ts), r#""long""#);
    let decimal = json!({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2});
    assert_eq!(pcf(decimal), r#""bytes""#);
    let uuid = json!({"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"});
    assert_eq!(pcf(uuid), r#"{"name":"Id","type":"fixed","size":16}"#);
}

/// Expected forms computed with fastavro 1.13.1 (`to_parsing_canonical_form`).
#[test]
fn attributes_are_stripped_ordered_and_names_made_full() {
    let schema = json!({"type": "record", "name": "R", "namespace": "a.b", "doc": "d",
        "aliases": ["x"], "fields": [
        {"type": {"type": "fixed", "size": 16, "name": "Id", "logicalType": "uuid"},
         "name": "id", "default": "x", "doc": "y"},
        {"name": "e", "type": {"type": "enum", "name": "c.E", "symbols": ["A", "B"],
            "default": "A"}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "namespace": "",
            "fields": [{"name": "x", "type": "int"}]}},
        {"name": "again", "type": ["null", "Id", "c.E"]},
        {"name": "m", "type": {"type": "map", "values": {"type": "array", "items":
            {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}}},
        {"name": "self", "type": ["null", "R"]}]});
    let expected = concat!(
        r#"{"name":"a.b.R","type":"record","fields":["#,
        r#"{"name":"id","type":{"name":"a.b.Id","type":"fixed","size":16}},"#,
        r#"{"name":"e","type":{"name":"c.E","type":"enum","symbols":["A","B"]}},"#,
        r#"{"name":"inner","type":{"name":"Inner","type":"record","#,
        r#""fields":[{"name":"x","type":"int"}]}},"#,
        r#"{"name":"again","type":["null","a.b.Id","c.E"]},"#,
        r#"{"name":"m","type":{"type":"map","values":{"type":"array","items":"bytes"}}},"#,
        r#"{"name":"self","type":["null","a.b.R"]}]}"#
    );
    assert_eq!(pcf(schema), expected);
}

/// A nested named type takes the namespace of the named type around it, not the outermost
/// one; a dotted name overrides a `namespace` attribute. fastavro: `a284aa0aadb6c959`.
#[test]
fn nested_named_types_inherit_the_enclosing_namespace() {
    let schema = json!({"type": "record", "name": "x.Outer", "namespace": "ignored", "fields": [
        {"name": "a", "type": {"type": "record", "name": "Mid", "fields": [
            {"name": "b", "type": {"type": "record", "name": "Leaf", "namespace": "y", "fields": [
                {"name": "c", "type": {"type": "enum", "name": "E", "symbols": ["S"]}}]}}]}},
        {"name": "d", "type": "Mid"},
        {"name": "e", "type": "y.E"},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": "4"}}]});
    let form = pcf(schema);
    assert_eq!(
        form,
        concat!(
            r#"{"name":"x.Outer","type":"record","fields":[{"name":"a","type":{"name":"x.Mid","#,
            r#""type":"record","fields":[{"name":"b","type":{"name":"y.Leaf","type":"record","#,
            r#""fields":[{"name":"c","type":{"name":"y.E","type":"enum","symbols":["S"]}}]}}]}},"#,
            r#"{"name":"d","type":"x.Mid"},{"name":"e","type":"y.E"},"#,
            r#"{"name":"f","type":{"name":"x.F","type":"fixed","size":4}}]}"#
        )
    );
    assert_eq!(header_hex(fingerprint(&form)), "a284aa0aadb6c959");
}

/// Java's parser also finds a short name in the null namespace, and accepts a reference
/// written as `{"type": name}` and an `error` (written as a record).
#[test]
fn references_resolve_as_java_resolves_them() {
    let schema = json!({"type": "record", "name": "n.Outer", "fields": [
        {"name": "a", "type": {"type": "error", "name": "Plain", "namespace": "", "fields": []}},
        {"name": "b", "type": "Plain"},
        {"name": "c", "type": {"type": "Plain"}}]});
    assert_eq!(
        pcf(schema),
        concat!(
            r#"{"name":"n.Outer","type":"record","fields":[{"name":"a","type":{"name":"Plain","#,
            r#""type":"record","fields":[]}},{"name":"b","type":"Plain"},"#,
            r#"{"name":"c","type":"Plain"}]}"#
        )
    );
}

#[test]
fn non_schemas_are_refused() {
    let refused = [
        json!(3),
        json!("Unknown"),
        json!({"type": "array"}),
        json!({"type": "record", "fields": []}),
        json!({"type": "enum", "name": "E", "symbols": [1]}),
        json!({"type": "fixed", "name": "F", "size": -1}),
        json!({"type": {"type": "array", "items": "int"}}),
        json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": []}},
            {"name": "b", "type": {"type": "enum", "name": "E", "symbols": []}}]}),
    ];
    for schema in refused {
        assert!(parsing_canonical_form(&schema).is_err(), "{schema}");
    }
}

/// One schema's vectors as `scripts/avro-vectors` printed them.
#[derive(Default)]
struct Vectors {
    pcf: String,
    fingerprint: String,
    single_object: Option<String>,
}

fn fastavro_vectors() -> Vec<(String, Vectors)> {
    let mut all: Vec<(String, Vectors)> = Vec::new();
    for line in FASTAVRO.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.split_once(' ').unwrap();
        if key == "schema" {
            all.push((value.to_owned(), Vectors::default()));
            continue;
        }
        let current = &mut all.last_mut().unwrap().1;
        match key {
            "pcf" => current.pcf = value.to_owned(),
            "fingerprint" => current.fingerprint = value.to_owned(),
            "single_object" => current.single_object = Some(value.to_owned()),
            other => panic!("unknown vector {other}"),
        }
    }
    all
}

fn bundled_text(file: &str) -> &'static str {
    match file {
        "signal.avsc" => SIGNAL_SCHEMA,
        "enforcement_command.avsc" => COMMAND_SCHEMA,
        "decision_record.avsc" => DECISION_SCHEMA,
        "identity_record.avsc" => IDENTITY_SCHEMA,
        "command_result.avsc" => RESULT_SCHEMA,
        other => panic!("schemas/{other} is not bundled in src/codec/avro.rs"),
    }
}

/// Every schemas/*.avsc has fastavro's vectors, and containd computes the same form and
/// fingerprint from it. A changed schema fails here until scripts/avro-vectors is rerun.
#[test]
fn bundled_schemas_match_fastavro() {
    let vectors = fastavro_vectors();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    files.sort();
    let covered: Vec<&String> = vectors.iter().map(|(file, _)| file).collect();
    assert_eq!(covered, files.iter().collect::<Vec<_>>());
    for (file, expected) in &vectors {
        let form = pcf(serde_json::from_str(bundled_text(file)).unwrap());
        assert_eq!(form, expected.pcf, "{file}");
        assert_eq!(
            header_hex(fingerprint(&form)),
            expected.fingerprint,
            "{file}"
        );
    }
}

/// The record scripts/avro-vectors gives fastavro to write.
fn fastavro_signal() -> crate::signal::Signal {
    serde_json::from_str(
        r#"{"id":"s1","source":{"issuer":"https://mdm"},
        "event_type":"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change",
        "occurred_at":1700000000000,"received_at":1700000000500,
        "subject":{"format":"complex","device":{"format":"opaque","identifiers":{"id":"d1"}},
                   "application":{"format":"opaque","identifiers":{"id":"agent-1"}}},
        "event":{"previous_status":"compliant","current_status":"not-compliant"},
        "attributes":{"risk":"HIGH"}}"#,
    )
    .unwrap()
}

/// What a spec-compliant producer writes is read, and containd writes the same bytes back.
#[test]
fn fastavro_single_object_signal_decodes() {
    let vectors = fastavro_vectors();
    let (_, signal) = vectors.iter().find(|(f, _)| f == "signal.avsc").unwrap();
    let bytes = hex::decode(signal.single_object.as_ref().unwrap()).unwrap();
    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]);
    let decoded = SignalDecoder::new(codec.clone(), 1 << 20)
        .decode(Format::Avro, Some(&bytes))
        .unwrap();
    assert_eq!(decoded, fastavro_signal());
    assert_eq!(codec.encode_signal(&decoded).unwrap(), bytes);
}
