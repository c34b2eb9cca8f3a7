//! Properties of every decoder and parser, over generated input: nothing panics on any bytes,
//! bad input is a typed error, and valid records round-trip. The fuzz targets in `fuzz/`
//! explore the same entry points for longer (docs/reliability.md).

use containd::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use containd::offline::OfflineDecider;
use containd::signal::{Signal, Source, Subject};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
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

/// Random rule sets: every rule matches every event type (allowed to be broad) and takes
/// random actions everywhere the identity has access, some through an escalation ladder.
fn rule_set() -> impl Strategy<Value = String> {
    // Every built-in action a rule can take (a restore needs what it lifts).
    let actions: Vec<&str> = containd::emit::command::VOCABULARY
        .iter()
        .copied()
        .filter(|a| *a != "restore")
        .collect();
    let action = proptest::sample::select(actions);
    let rule = (
        proptest::collection::vec(action.clone(), 1..4),
        proptest::collection::vec(action, 0..3),
    );
    proptest::collection::vec(rule, 1..5).prop_map(|rules| {
        let mut yaml = String::from("rules:\n");
        for (i, (actions, ladder)) in rules.iter().enumerate() {
            let list = |actions: &[&str], indent: &str| {
                actions
                    .iter()
                    .map(|a| format!("{indent}- {{action: {a}, targets: [where_identity_has_access], parameters: {{scope: all}}}}\n"))
                    .collect::<String>()
            };
            yaml += &format!(
                "  - id: r{i}\n    allow_broad: true\n    match: {{event_types: [\"*\"]}}\n    actions:\n{}",
                list(actions, "      ")
            );
            if !ladder.is_empty() {
                yaml += &format!(
                    "    escalate:\n      within: 1h\n      steps:\n        - actions: []\n        - actions:\n{}",
                    list(ladder, "            ")
                );
            }
        }
        yaml
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the rules say, a protected identity gets no drastic command: exactly the
    /// drastic commands the same identity unprotected would get are held instead, and
    /// everything else goes out the same.
    #[test]
    fn a_protected_identity_never_gets_a_drastic_command(rules in rule_set(), repeats in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-random.yaml"), &rules).unwrap();
        let drastic = containd::emit::command::DRASTIC;
        let run = |protected: bool| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
            let mut d = OfflineDecider::load(&root.join("containd.toml"), dir.path()).unwrap();
            let access = ["aws", "okta", "github-actions", "active-directory", "kubernetes", "agent-gateway", "cyberark"]
                .map(|t| serde_json::json!({"target": t, "principal_id": format!("p-{t}")}));
            d.add_identity(serde_json::from_value(serde_json::json!({
                "id": "svc-breakglass", "aliases": ["bg-client"], "kind": "service_account",
                "protected": protected, "access": access})).unwrap());
            let (mut sent, mut held) = (BTreeSet::new(), BTreeSet::new());
            for i in 0..repeats {
                let mut s = sample();
                s.id = format!("p-{i}");
                s.source.issuer = "https://soar.acme.example".into();
                s.event_type = "urn:containd:event:incident:containment-requested".into();
                s.subject = serde_json::from_value(serde_json::json!(
                    {"format": "opaque", "identifiers": {"id": "bg-client"}})).unwrap();
                let decision = d.decide_json(&serde_json::to_vec(&s).unwrap(), i as i64 + 1).unwrap();
                sent.extend(decision.commands.iter().map(|c| (c.command_id.clone(), c.action.clone())));
                held.extend(decision.record.held.iter()
                    .filter(|h| h.reason == "protected_identity")
                    .map(|h| (h.command_id.clone(), h.action.clone())));
                // Each is published whole for an approval: the command it would have been.
                let published: BTreeSet<_> = decision.held_commands.iter()
                    .map(|c| (c.command_id.clone(), c.action.clone())).collect();
                assert!(decision.record.held.iter()
                    .filter(|h| h.reason == "protected_identity")
                    .all(|h| published.contains(&(h.command_id.clone(), h.action.clone()))));
            }
            (sent, held)
        };
        let (sent, held) = run(true);
        let (open_sent, open_held) = run(false);
        prop_assert!(open_held.is_empty());
        prop_assert!(sent.iter().all(|(_, a)| !drastic.contains(&a.as_str())), "{sent:?}\n{rules}");
        let (want_held, want_sent): (BTreeSet<_>, BTreeSet<_>) = open_sent
            .into_iter()
            .partition(|(_, a)| drastic.contains(&a.as_str()));
        prop_assert_eq!(held, want_held);
        prop_assert_eq!(sent, want_sent);
    }
}

/// A random approvals-topic history: holds (some forged), approvals, denials, expiries and
/// re-reads of earlier records, over a few command ids.
fn approvals_history() -> impl Strategy<Value = Vec<(u8, usize, bool)>> {
    proptest::collection::vec((0u8..6, 0usize..4, any::<bool>()), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A held command leaves only through an approval record naming it, from an allowed
    /// approver, for a hold containd sealed — once; a timeout releases only the configured
    /// milder action. Re-reading a record (a crash replay) re-sends the same release.
    #[test]
    fn a_held_command_is_released_only_by_its_approval_and_once(history in approvals_history()) {
        use containd::approvals::*;
        use containd::state::Mark;
        let key = b"0123456789abcdef0123".to_vec();
        let policy = Policy {
            key: Some(Ok(key.clone())),
            approvers: vec!["alice".into()],
            accepts: vec![("okta".into(), vec!["revoke_sessions".into()])],
        };
        let id = |n: usize| format!("{n:032x}");
        let mut table = HoldTable::default();
        let mut log: Vec<(i64, i64, ApprovalRecord)> = Vec::new();
        let mut approved = BTreeSet::new();
        let mut released: BTreeMap<String, i64> = BTreeMap::new();
        for (offset, (kind, n, flag)) in history.into_iter().enumerate() {
            let offset = offset as i64;
            let verdict = |approver: &str| Verdict {
                command_id: id(n), approver: approver.into(), reason: "r".into(),
                redact: Vec::new() };
            let (record, at) = match kind {
                0 => {
                    let mut request = hold_request(&id(n));
                    if flag { request.seal = Some(seal(&key, &request)); }
                    (ApprovalRecord::Hold(Box::new(request)), offset)
                }
                1 => (ApprovalRecord::Approve(verdict(if flag { "alice" } else { "mallory" })), offset),
                2 => (ApprovalRecord::Deny(verdict("alice")), offset),
                3 => (ApprovalRecord::Expire(Expiry { command_id: id(n) }), if flag { 10_000 } else { 0 }),
                _ if !log.is_empty() => {
                    // A re-read of an earlier record at its own position (a crash replay).
                    let (o, t, record) = log[(n * 7) % log.len()].clone();
                    let transition = table.apply(record, Mark { offset: o, at: t }, &policy);
                    if let Transition::Release(_, c) = transition {
                        prop_assert_eq!(released.get(&c.command_id), Some(&o));
                    }
                    continue;
                }
                _ => continue,
            };
            log.push((offset, at, record.clone()));
            if let ApprovalRecord::Approve(v) = &record {
                if v.approver == "alice" { approved.insert(v.command_id.clone()); }
            }
            if let Transition::Release(hold, c) = table.apply(record, Mark { offset, at }, &policy) {
                prop_assert!(hold.request.seal.is_some(), "an unsealed hold was released");
                prop_assert!(released.insert(c.command_id.clone(), offset).is_none(), "released twice");
                match c.action.as_str() {
                    "revoke_sessions" => prop_assert_eq!(c.command_id.clone(), milder_id(&hold.request.command_id, "revoke_sessions")),
                    _ => prop_assert!(approved.contains(&c.command_id), "released without an approval"),
                }
            }
        }
    }
}

fn hold_request(command_id: &str) -> containd::approvals::HoldRequest {
    let mut command: containd::emit::EnforcementCommand = serde_json::from_value(serde_json::json!({
        "command_id": command_id, "action": "disable_account", "target": "okta",
        "principal_id": null, "subject": {"id": "svc-breakglass", "format": "opaque", "identifiers": {}},
        "parameters": {}, "issued_at": 0, "expires_at": null,
        "why": {"rule_id": "r", "ruleset_version": "v", "signal_ids": [], "event_type": "e", "description": null}
    })).unwrap();
    command.command_id = command_id.into();
    containd::approvals::HoldRequest {
        command_id: command_id.into(),
        reason: "protected_identity".into(),
        detail: "d".into(),
        held_at: 0,
        expires_at: 5_000,
        on_timeout: "release:revoke_sessions".into(),
        topic: "t".into(),
        command,
        subject_key: None,
        evidence: containd::approvals::Evidence {
            signal_id: "s".into(),
            issuer: "i".into(),
            event_type: "e".into(),
            rule_id: "r".into(),
            source: containd::emit::SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
            identity: None,
        },
        seal: None,
    }
}
