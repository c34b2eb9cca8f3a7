use super::*;
use crate::codec::{Format, SignalDecoder};

fn codec() -> AvroCodec {
    AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[7])
}

/// `bytes` with its single-object header naming `fingerprint` instead.
fn framed_with(bytes: &[u8], fingerprint: u64) -> Vec<u8> {
    [&bytes[..2], &fingerprint.to_le_bytes(), &bytes[10..]].concat()
}

fn sample() -> Signal {
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

/// An inventory producer still on the schema before `protected` (fingerprint
/// f9a4a596da5895a8): read, resolved to the current record, not protected.
#[test]
fn identity_records_of_the_previous_schema_are_read() {
    let c = codec();
    let v1 = &c.schemas().identity_v1;
    assert_eq!(fingerprint(v1), 0xf9a4a596da5895a8);
    let value = apache_avro::types::Value::Record(vec![
        ("id".into(), "svc-old".into()),
        ("aliases".into(), apache_avro::types::Value::Array(vec![])),
        (
            "kind".into(),
            apache_avro::types::Value::Enum(0, "service_account".into()),
        ),
        (
            "owner".into(),
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        ),
        (
            "criticality".into(),
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        ),
        (
            "environment".into(),
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        ),
        ("access".into(), apache_avro::types::Value::Array(vec![])),
    ]);
    let mut bytes = header(0xf9a4a596da5895a8).to_vec();
    bytes.extend(apache_avro::to_avro_datum(v1, value).unwrap());
    let r = c.decode_identity(&bytes).unwrap();
    assert_eq!((r.id.as_str(), r.protected), ("svc-old", false));
    // And the current schema carries the flag.
    let protected = crate::inventory::IdentityRecord {
        protected: true,
        ..r
    };
    let back = c
        .decode_identity(&c.encode_identity(&protected).unwrap())
        .unwrap();
    assert!(back.protected);
}

#[test]
fn single_object_and_confluent_round_trip() {
    let c = codec();
    let d = SignalDecoder::new(c.clone(), 1 << 20);
    let s = sample();
    let so = c.encode_signal(&s).unwrap();
    assert_eq!(d.decode(Format::Avro, Some(&so)).unwrap(), s);
    let cf = c.encode_signal_confluent(&s, 7).unwrap();
    assert_eq!(d.decode(Format::Confluent, Some(&cf)).unwrap(), s);
}

#[test]
fn identity_records_round_trip() {
    let c = codec();
    let r: crate::inventory::IdentityRecord = serde_json::from_value(serde_json::json!({
        "id": "svc-a", "aliases": ["client-1"], "kind": "ai_agent",
        "owner": {"team": "ml", "contact": "ml@acme"}, "criticality": "high",
        "environment": "prod", "access": [{"target": "aws", "principal_id": "arn:x"}]}))
    .unwrap();
    assert_eq!(
        c.decode_identity(&c.encode_identity(&r).unwrap()).unwrap(),
        r
    );
    let ownerless = crate::inventory::IdentityRecord {
        owner: None,
        criticality: None,
        ..r
    };
    let bytes = c.encode_identity(&ownerless).unwrap();
    assert_eq!(c.decode_identity(&bytes).unwrap(), ownerless);
    // No logical types: the spec's form and apache-avro's agree.
    let fp = c.schemas().fingerprints.identity;
    assert_eq!(
        (fp.spec, fp.legacy),
        (0xaba03e53c71a919e, 0xaba03e53c71a919e)
    );
    assert_eq!(bytes[2..10], fp.spec.to_le_bytes());
}

/// Outputs name their schema as standard Avro readers do (fastavro prints the signal's as
/// `c1cae31694ceffe6`, the header bytes); what containd 0.1.0 wrote is still read.
#[test]
fn spec_fingerprint_is_written_and_the_legacy_one_read() {
    let c = codec();
    let fps = c.schemas().fingerprints;
    assert_eq!(fps.signal.spec, 0xe6ffce9416e3cac1);
    assert_eq!(fps.signal.legacy, 0x7243f1980b40af29);
    let so = c.encode_signal(&sample()).unwrap();
    assert_eq!(so[2..10], fps.signal.spec.to_le_bytes());
    let d = SignalDecoder::new(c.clone(), 1 << 20);
    let legacy = framed_with(&so, fps.signal.legacy);
    assert_eq!(d.decode(Format::Avro, Some(&legacy)).unwrap(), sample());

    let command: crate::emit::EnforcementCommand = serde_json::from_value(serde_json::json!({
        "command_id": "c1", "action": "revoke_sessions", "target": "okta",
        "principal_id": null, "subject": {"id": "u1", "format": "opaque", "identifiers": {}},
        "parameters": {}, "issued_at": 1, "expires_at": 2,
        "why": {"rule_id": "r", "ruleset_version": "v", "signal_ids": ["s1"],
                "event_type": "urn:x:y", "description": null}}))
    .unwrap();
    let bytes = c.encode_command(&command).unwrap();
    assert_eq!(bytes[2..10], fps.command.spec.to_le_bytes());
    let legacy = framed_with(&bytes, fps.command.legacy);
    let back: crate::emit::EnforcementCommand = c.decode_command(&legacy).unwrap();
    assert_eq!(back, command);
}

/// `Fingerprints` promises the legacy fingerprints are read only until containd 0.3.0
/// (docs/json.md says so too): this fails once the crate version gets there.
#[test]
fn legacy_fingerprints_are_removed_by_0_3() {
    let version: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        version < vec![0, 3],
        "remove Fingerprints::legacy and the headers built from it (src/codec/avro.rs)"
    );
}

#[test]
fn bad_avro_inputs_have_distinct_kinds() {
    let c = codec();
    let d = SignalDecoder::new(c.clone(), 1 << 20);
    let so = c.encode_signal(&sample()).unwrap();
    let kind = |f, b: &[u8]| d.decode(f, Some(b)).unwrap_err().kind();
    assert_eq!(kind(Format::Avro, &so[..so.len() - 3]), "malformed_avro");
    let mut unknown = so.clone();
    unknown[4] ^= 0xff;
    assert_eq!(kind(Format::Avro, &unknown), "unknown_schema_fingerprint");
    assert_eq!(kind(Format::Avro, b"garbage bytes here"), "bad_framing");
    let cf = c.encode_signal_confluent(&sample(), 99).unwrap();
    assert_eq!(kind(Format::Confluent, &cf), "unknown_schema_id");
    let mut trailing = so.clone();
    trailing.extend_from_slice(b"xx");
    assert_eq!(kind(Format::Avro, &trailing), "malformed_avro");
    let small = SignalDecoder::new(c, 16);
    assert_eq!(
        small.decode(Format::Avro, Some(&so)).unwrap_err().kind(),
        "oversized"
    );
}

/// A decision with every trust, refusal, hold and error field set.
fn trust_decision() -> crate::emit::DecisionRecord {
    use crate::emit::*;
    let position = SourcePosition {
        topic: "t".into(),
        partition: 1,
        offset: 7,
    };
    DecisionRecord {
        signal_id: "s".into(),
        event_type: "urn:x:y".into(),
        subject_id: "svc".into(),
        outcome: Outcome::Duplicate,
        matched_rules: vec![],
        command_ids: vec![],
        ruleset_version: "v".into(),
        source: position.clone(),
        decided_at: 1,
        trust: TrustVerdict {
            issuer: "https://i".into(),
            transmitter: Some("tx".into()),
            verdict: Verdict::Duplicate,
            reason_kind: Some("duplicate".into()),
            reason: Some("already decided".into()),
        },
        refused: vec![Refused {
            action: "disable_account".into(),
            target: "okta".into(),
            reason: "no authority".into(),
        }],
        held: vec![Held {
            command_id: "c".into(),
            action: "disable_credential".into(),
            target: "aws".into(),
            reason: "missing_parameter".into(),
            detail: "needs credential_id".into(),
        }],
        errors: vec![RuleError {
            rule_id: "r".into(),
            error: "\"signal.attributes.x\" is null".into(),
        }],
        duplicate_of: Some(SourcePosition {
            offset: 3,
            ..position
        }),
        identity: IdentitySummary::of(&crate::inventory::Identity::unknown()),
        pending: vec![],
        notes: vec![],
        timings: Timings::default(),
        disclosures: Vec::new(),
        chain: None,
    }
}

#[test]
fn decision_with_trust_fields_round_trips() {
    use crate::emit::*;
    let record = trust_decision();
    let c = codec();
    let bytes = c.encode_decision(&record).unwrap();
    let back: DecisionRecord = c.decode_decision(&bytes).unwrap();
    assert_eq!(back, record);
    let fp = c.schemas().fingerprints.decision;
    assert_eq!(bytes[2..10], fp.spec.to_le_bytes());
    let back: DecisionRecord = c.decode_decision(&framed_with(&bytes, fp.legacy)).unwrap();
    assert_eq!(back, record);
}

/// An adapter's result round-trips through the bundled schema, enum and defaults included,
/// and a command's bytes are not read as a result.
#[test]
fn results_round_trip_and_are_told_from_commands() {
    use crate::emit::{CommandResult, ResultStatus};
    let c = codec();
    for status in ResultStatus::ALL {
        let r = CommandResult {
            command_id: "0123abcd".into(),
            target: "aws".into(),
            status,
            detail: Some("key AKIA… deactivated".into()),
            attempt: 2,
            at: 1_700_000_000_123,
            evidence: [("key_state".to_string(), "Inactive".to_string())].into(),
        };
        let bytes = c.encode_result(&r).unwrap();
        assert_eq!(c.decode_result::<CommandResult>(&bytes).unwrap(), r);
        assert!(c
            .decode_command::<crate::emit::EnforcementCommand>(&bytes)
            .is_err());
    }
}

/// Every signal the repository ships (seed scenarios, every rule pack's test signals), as
/// containd's own encoder writes them.
fn corpus() -> Vec<Signal> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = std::fs::read_to_string(root.join("examples/signals/seed-scenarios.jsonl")).unwrap();
    let mut out: Vec<Signal> = seed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for file in crate::offline::test_files(&root.join("rules")) {
        let tests = crate::offline::parse_test_file(&file).unwrap();
        for case in tests.tests {
            out.extend(
                case.signal_values()
                    .filter_map(|v| serde_json::from_value(v).ok()),
            );
        }
    }
    out
}

/// The old path: bounds walk, apache-avro's `Value` of the datum, then serde from the value.
fn via_value(c: &AvroCodec, bytes: &[u8]) -> Result<Signal, DecodeError> {
    let datum = &bytes[10..];
    c.signal_writers[&c.schemas.fingerprints.signal.spec]
        .bounds
        .check(datum)
        .map_err(DecodeError::BadAvro)?;
    let mut rest = datum;
    let value = apache_avro::from_avro_datum(&c.schemas.signal, &mut rest, None)
        .map_err(|e| DecodeError::BadAvro(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    apache_avro::from_value(&value).map_err(|e| DecodeError::BadAvro(e.to_string()))
}

/// `serde_avro_fast` straight into `Signal` decodes exactly what apache-avro through `Value`
/// did — on every shipped signal, and on every one-byte corruption and truncation of them:
/// the same signal, or an error from both.
#[test]
fn fast_signal_decode_agrees_with_apache_avro_on_every_signal_and_corruption() {
    let c = codec();
    let signals = corpus();
    assert!(signals.len() > 100, "{} signals", signals.len());
    let mut compared = 0;
    for (n, signal) in signals.iter().enumerate() {
        let bytes = c.encode_signal(signal).unwrap();
        assert_eq!(&c.decode_single_object(&bytes).unwrap(), signal);
        assert_eq!(&via_value(&c, &bytes).unwrap(), signal);
        // Corrupt one byte of the datum (a different one per signal and step), and cut it.
        for step in 0..16usize {
            let mut bad = bytes.clone();
            let at = 10 + (n * 31 + step * 7) % (bad.len() - 10);
            bad[at] = bad[at].wrapping_add(1u8.wrapping_add((step as u8).wrapping_mul(17)));
            let cut = &bytes[..10 + (n + step * 13) % (bytes.len() - 10)];
            for b in [&bad[..], cut] {
                let fast = c.decode_single_object(b).ok();
                let old = via_value(&c, b).ok();
                assert_eq!(fast, old, "signal {n} step {step}");
                compared += 1;
            }
        }
    }
    assert!(compared > 3_000);
}

/// What apache-avro's schema-aware serializer writes for `record` (the encoder containd used
/// before `serde_avro_fast`), after the same header.
fn via_apache<T: serde::Serialize>(schema: &Schema, like: &[u8], record: &T) -> Vec<u8> {
    let mut out = like[..10].to_vec();
    apache_avro::write_avro_datum_ref(schema, record, &mut out).unwrap();
    out
}

/// `serde_avro_fast` writes byte for byte what apache-avro wrote: every decision and command
/// containd makes from the shipped signals (seed scenarios, every pack's test signals) under
/// the example configuration.
#[test]
fn fast_encode_agrees_with_apache_avro_on_every_shipped_decision_and_command() {
    let c = codec();
    let s = c.schemas();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut decider = crate::offline::OfflineDecider::load(
        &root.join("examples/containd.toml"),
        &root.join("examples/rules"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    let (mut decisions, mut commands) = (0, 0);
    for (i, signal) in corpus().iter().enumerate() {
        let json = serde_json::to_vec(signal).unwrap();
        let Ok(decision) = decider.decide_json(&json, i as i64) else {
            continue;
        };
        let bytes = c.encode_decision(&decision.record).unwrap();
        assert_eq!(
            bytes,
            via_apache(&s.decision, &bytes, &decision.record),
            "{i}"
        );
        decisions += 1;
        for command in &decision.commands {
            let bytes = c.encode_command(command).unwrap();
            assert_eq!(bytes, via_apache(&s.command, &bytes, command), "{i}");
            commands += 1;
        }
    }
    assert!(
        decisions > 100 && commands > 50,
        "{decisions} decisions, {commands} commands"
    );
}

/// The same for a decision with every optional field set and for a result of each status.
#[test]
fn fast_encode_agrees_with_apache_avro_on_every_optional_field() {
    let c = codec();
    let s = c.schemas();
    let mut record = trust_decision();
    let bytes = c.encode_decision(&record).unwrap();
    assert_eq!(bytes, via_apache(&s.decision, &bytes, &record));
    // With a chain link, a disclosure and window progress.
    record.chain = Some(crate::emit::ChainLink {
        id: "run".into(),
        seq: 9,
        prev: "0".repeat(64),
        hash: "f".repeat(64),
    });
    record.disclosures = vec![crate::emit::DisclosureRecord {
        command_id: "c".into(),
        target: "vendor".into(),
        profile: "minimal".into(),
        disclosed: vec!["subject_id".into()],
        pseudonymised: vec!["owner".into()],
        withheld: vec![],
    }];
    record.pending = vec![crate::emit::WindowProgress {
        rule_id: "r".into(),
        count: 1,
        needed: 3,
        missing_event_types: vec!["urn:e".into()],
    }];
    let bytes = c.encode_decision(&record).unwrap();
    assert_eq!(bytes, via_apache(&s.decision, &bytes, &record));
    for status in crate::emit::ResultStatus::ALL {
        let r = crate::emit::CommandResult {
            command_id: "0123abcd".into(),
            target: "aws".into(),
            status,
            detail: (status as usize)
                .is_multiple_of(2)
                .then(|| "key deactivated".into()),
            attempt: 2,
            at: 1_700_000_000_123,
            evidence: [("key_state".to_string(), "Inactive".to_string())].into(),
        };
        let bytes = c.encode_result(&r).unwrap();
        assert_eq!(bytes, via_apache(&s.result, &bytes, &r));
    }
}
