//! Properties of every decoder and parser, over generated input: nothing panics on any bytes,
//! bad input is a typed error, and valid records round-trip. The fuzz targets in `fuzz/`
//! explore the same entry points for longer (docs/reliability.md).

use containd::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use containd::offline::OfflineDecider;
use containd::signal::{Signal, Source, Subject};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn codec() -> AvroCodec {
    AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[5])
}

fn decider() -> OfflineDecider {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    OfflineDecider::load(&root.join("containd.toml"), &root.join("rules")).unwrap()
}

const FORMATS: [Format; 4] = [Format::Json, Format::Avro, Format::Confluent, Format::Set];

/// Reason kinds a dead letter may carry for undecodable input.
fn is_known_kind(kind: &str) -> bool {
    !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_bytes_panic_a_decoder_and_bad_ones_are_typed(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let c = codec();
        let decoder = SignalDecoder::new(c.clone(), 1 << 20);
        for format in FORMATS {
            if let Err(e) = decoder.decode(format, Some(&bytes)) {
                prop_assert!(is_known_kind(e.kind()), "{format:?}: {}", e.kind());
            }
        }
        let _ = c.decode_identity(&bytes);
        let _ = c.decode_command::<containd::emit::EnforcementCommand>(&bytes);
        let _ = c.decode_decision::<containd::emit::DecisionRecord>(&bytes);
        let _ = serde_json::from_slice::<containd::inventory::IdentityRecord>(&bytes);
    }

    #[test]
    fn framed_garbage_after_a_valid_header_is_a_typed_error(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let c = codec();
        let decoder = SignalDecoder::new(c.clone(), 1 << 20);
        let valid = c.encode_signal(&sample()).unwrap();
        let confluent = c.encode_signal_confluent(&sample(), 5).unwrap();
        for (format, header) in [(Format::Avro, &valid[..10]), (Format::Confluent, &confluent[..5])] {
            let bytes: Vec<u8> = header.iter().chain(&tail).copied().collect();
            if let Err(e) = decoder.decode(format, Some(&bytes)) {
                prop_assert!(is_known_kind(e.kind()));
            }
        }
    }

    #[test]
    fn mutated_valid_records_never_panic(positions in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let c = codec();
        let decoder = SignalDecoder::new(c.clone(), 1 << 20);
        let json = serde_json::to_vec(&sample()).unwrap();
        let avro = c.encode_signal(&sample()).unwrap();
        for (format, mut bytes) in [(Format::Json, json), (Format::Avro, avro)] {
            for (at, value) in &positions {
                let i = at % bytes.len();
                bytes[i] = *value;
            }
            let _ = decoder.decode(format, Some(&bytes));
        }
    }

    #[test]
    fn valid_signals_round_trip_through_json_and_avro(s in signal()) {
        let c = codec();
        let decoder = SignalDecoder::new(c.clone(), 1 << 20);
        let json = serde_json::to_vec(&s).unwrap();
        prop_assert_eq!(&decoder.decode(Format::Json, Some(&json)).unwrap(), &s);
        let avro = c.encode_signal(&s).unwrap();
        prop_assert_eq!(&decoder.decode(Format::Avro, Some(&avro)).unwrap(), &s);
    }

    #[test]
    fn any_text_as_a_condition_rules_file_or_config_is_an_answer_not_a_panic(text in "\\PC{0,300}") {
        let _ = containd::rules::Condition::compile(&text);
        let rules = format!("rules:\n  - id: r\n    match: {{event_types: ['*']}}\n    condition: {text:?}\n    actions: []\n");
        let _ = containd::rules::load_sources(vec![("r.yaml".into(), rules)], &[], &[]);
        let _ = containd::rules::load_sources(vec![("t.yaml".into(), text.clone())], &[], &[]);
        let _ = containd::config::parse(Path::new("c.toml"), &text);
    }
}

thread_local! {
    static DECIDER: RefCell<OfflineDecider> = RefCell::new(decider());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whole records through decode, trust, rules and state: a decision or a dead-letter
    /// reason, never a panic.
    #[test]
    fn any_line_is_decided_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1024), valid in signal()) {
        DECIDER.with(|d| {
            let mut d = d.borrow_mut();
            let _ = d.decide_line(&bytes, 1);
            let line = serde_json::to_vec(&valid).unwrap();
            let _ = d.decide_line(&line, 2);
        });
    }
}

fn sample() -> Signal {
    containd::demo::sample_signals().unwrap().remove(0)
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:/._@-]{1,40}"
}

/// Valid signals: known subject formats, namespaced event types, any text in attributes.
fn signal() -> impl Strategy<Value = Signal> {
    let event_types = prop_oneof![
        Just("https://schemas.openid.net/secevent/caep/event-type/session-revoked".to_string()),
        Just("urn:containd:event:policy:changed".to_string()),
        "urn:[a-z]{1,8}:[a-z]{1,8}".prop_map(|s| s),
    ];
    let subjects = prop_oneof![
        text().prop_map(|id| ("opaque", "id", id)),
        text().prop_map(|e| ("email", "email", format!("{e}@x.example"))),
        text().prop_map(|u| ("uri", "uri", format!("wimse://{u}"))),
    ];
    let attributes = proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,60}", 0..5);
    (
        text(),
        text(),
        event_types,
        subjects,
        attributes,
        0i64..4_000_000_000_000,
    )
        .prop_map(
            |(id, issuer, event_type, (format, member, value), attributes, at)| Signal {
                id,
                source: Source {
                    issuer: format!("https://{issuer}"),
                    transmitter: None,
                },
                event_type,
                occurred_at: at,
                received_at: at,
                subject: Subject {
                    format: format.into(),
                    identifiers: BTreeMap::from([(member.to_string(), value)]),
                    aliases: Vec::new(),
                    user: None,
                    device: None,
                    session: None,
                    application: None,
                    tenant: None,
                    org_unit: None,
                    group: None,
                },
                event: Default::default(),
                txn: None,
                attributes,
            },
        )
}
