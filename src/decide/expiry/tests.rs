use super::*;
use crate::config::{TargetKind, TargetSettings};
use crate::decide::{decide, DecideInput};
use crate::signal::Signal;
use crate::state::{Mark, Retention};
use std::time::Duration;

const RULES: &str = r#"
rules:
  - id: leak
    match: {event_types: ["urn:t:leak"]}
    actions:
      - action: disable_credential
        targets: [aws]
        expires_in: 1h
        on_expiry: restore
        parameters:
          credential_id: {cel: "signal.attributes.key"}
  - id: leak-for-good
    match: {event_types: ["urn:t:leak-for-good"]}
    actions:
      - action: disable_credential
        targets: [aws]
        parameters:
          credential_id: {cel: "signal.attributes.key"}
  - id: step-up
    match: {event_types: ["urn:t:risky"]}
    actions:
      - action: require_step_up
        targets: [okta]
        expires_in: 1h
  - id: recovered
    match: {event_types: ["urn:t:recovered"]}
    actions:
      - action: restore
        targets: [contained]
"#;

fn targets(aws_restores: bool) -> Vec<TargetSettings> {
    let t = |name: &str, kind, actions: &[&str]| TargetSettings {
        name: name.into(),
        topic: format!("t.{name}"),
        kind,
        actions: actions.iter().map(|a| a.to_string()).collect(),
        require_approval: false,
        result_timeout: None,
        max_attempts: None,
        disclosure: None,
        disclose: None,
        pseudonymise: Vec::new(),
    };
    let mut aws = vec!["disable_credential"];
    if aws_restores {
        aws.push("restore");
    }
    vec![
        t("aws", TargetKind::Cloud, &aws),
        t("okta", TargetKind::Idp, &["require_step_up", "restore"]),
    ]
}

fn rules(aws_restores: bool) -> RuleSet {
    // Without restore at aws, a rule asking to restore there on expiry does not load: the
    // rules of a target reconfigured since.
    let text = match aws_restores {
        true => RULES.to_string(),
        false => RULES.replace("on_expiry: restore", "on_expiry: close"),
    };
    crate::rules::load_sources(vec![("r.yaml".into(), text)], &targets(aws_restores), &[]).unwrap()
}

/// Decides `event_type` for `key` at (offset, time) and applies it to `state`.
fn signal(
    rules: &RuleSet,
    state: &mut SubjectState,
    (id, event_type, key): (&str, &str, &str),
    at: Mark,
) {
    let mut s: Signal = serde_json::from_value(serde_json::json!({
        "id": id, "source": {"issuer": "https://t"}, "event_type": event_type,
        "occurred_at": at.at, "received_at": at.at,
        "subject": {"format": "opaque", "identifiers": {"id": "svc-1"}}}))
    .unwrap();
    s.attributes.insert("key".into(), key.into());
    let source = crate::trust::Source::unrestricted("https://t");
    let rails = crate::safety::Rails::default();
    let d = decide(
        rules,
        DecideInput {
            signal: &s,
            subject_id: "svc-1",
            position: SourcePosition {
                topic: "signals".into(),
                partition: 0,
                offset: at.offset,
            },
            decided_at: at.at,
            global_dry_run: false,
            decode_micros: 0,
            identity: &Identity::unknown(),
            state: Some(state),
            suppress_for: Duration::ZERO,
            source: &source,
            dedup_window: Duration::from_secs(60),
            rails: &rails,
            protection: None,
            disclosure: &Default::default(),
        },
    );
    state.apply(at, &d.update, Retention::default());
}

const HOUR: i64 = 3_600_000;

fn expire_all(rules: &RuleSet, state: &SubjectState, now: i64) -> Vec<Decision> {
    state
        .restores_due(now)
        .map(|x| {
            let e = Expiring {
                topic: "signals",
                partition: 0,
                state,
                expired: x,
                subject: x.restore_on_expiry.as_deref().unwrap(),
                identity: &Identity::unknown(),
                dry_run: false,
                disclosure: &Default::default(),
                now,
            };
            expire(rules, &e)
        })
        .collect()
}

#[test]
fn an_expired_containment_is_restored_cause_tied_and_only_once() {
    let rules = rules(true);
    let mut state = SubjectState::new();
    signal(
        &rules,
        &mut state,
        ("s1", "urn:t:leak", "AKIA1"),
        Mark { offset: 1, at: 0 },
    );
    assert!(
        expire_all(&rules, &state, HOUR - 1).is_empty(),
        "not before it expires"
    );
    let d = expire_all(&rules, &state, HOUR + 5);
    assert_eq!(d.len(), 1);
    let (record, commands) = (&d[0].record, &d[0].commands);
    assert_eq!(record.outcome, Outcome::Expired);
    assert_eq!(commands.len(), 1, "{record:?}");
    let c = &commands[0];
    let expired = &state.issued[0];
    assert_eq!((c.action.as_str(), c.target.as_str()), ("restore", "aws"));
    assert_eq!(c.command_id, restore_id(&expired.command_id.to_string()));
    assert_eq!(
        c.parameters["restores_command_ids"],
        expired.command_id.to_string()
    );
    assert_eq!(c.parameters["restores"], "disable_credential");
    assert_eq!(c.parameters["restores_signal_ids"], "s1");
    assert_eq!(c.parameters["restores_object"], "AKIA1");
    assert_eq!(c.subject.id, "svc-1");
    assert_eq!(record.command_ids, vec![c.command_id.clone()]);
    assert_eq!((record.source.offset, record.decided_at), (1, HOUR));
    // Decided again (a crash before the state knew): the same command, the same record.
    let again = expire_all(&rules, &state, HOUR + 9_000);
    assert_eq!(again[0].commands, d[0].commands);
    assert_eq!(again[0].record, d[0].record);
    // Once issued, never again.
    let id = expired.command_id;
    assert!(state.restore_issued(id));
    assert!(expire_all(&rules, &state, 2 * HOUR).is_empty());
    assert!(!state.restore_issued(id));
}

#[test]
fn another_containment_of_the_same_kind_keeps_it_in_place() {
    let rules = rules(true);
    let mut state = SubjectState::new();
    signal(
        &rules,
        &mut state,
        ("s1", "urn:t:leak", "AKIA1"),
        Mark { offset: 1, at: 0 },
    );
    signal(
        &rules,
        &mut state,
        ("s2", "urn:t:leak-for-good", "AKIA1"),
        Mark { offset: 2, at: 10 },
    );
    // A second key of the same identity is not the same kind: it does not stop this one.
    signal(
        &rules,
        &mut state,
        ("s3", "urn:t:leak-for-good", "AKIA2"),
        Mark { offset: 3, at: 20 },
    );
    // The open-ended disable of the same key is not a repeat of the expiring one.
    assert_eq!(state.issued.len(), 3, "{:?}", state.issued);
    let d = expire_all(&rules, &state, HOUR + 5);
    assert_eq!(d.len(), 1);
    assert!(d[0].commands.is_empty(), "{:?}", d[0].commands);
    let note = &d[0].record.notes[0];
    assert!(
        note.contains("still holds") && note.contains("leak-for-good"),
        "{note}"
    );
}

#[test]
fn lifted_before_it_expired_it_is_not_restored_again() {
    let rules = rules(true);
    let mut state = SubjectState::new();
    signal(
        &rules,
        &mut state,
        ("s1", "urn:t:leak", "AKIA1"),
        Mark { offset: 1, at: 0 },
    );
    signal(
        &rules,
        &mut state,
        ("s2", "urn:t:recovered", "-"),
        Mark { offset: 2, at: 10 },
    );
    assert!(expire_all(&rules, &state, HOUR + 5).is_empty());
}

#[test]
fn without_on_expiry_restore_nothing_is_issued() {
    let rules = rules(true);
    let mut state = SubjectState::new();
    signal(
        &rules,
        &mut state,
        ("s1", "urn:t:risky", "-"),
        Mark { offset: 1, at: 0 },
    );
    assert_eq!(state.issued.len(), 1);
    assert!(expire_all(&rules, &state, 2 * HOUR).is_empty());
}

#[test]
fn a_target_that_stopped_taking_restore_gets_none_and_the_record_says_so() {
    let mut state = SubjectState::new();
    signal(
        &rules(true),
        &mut state,
        ("s1", "urn:t:leak", "AKIA1"),
        Mark { offset: 1, at: 0 },
    );
    let d = expire_all(&rules(false), &state, HOUR + 5);
    assert!(d[0].commands.is_empty());
    assert!(
        d[0].record.notes[0].contains("does not accept restore"),
        "{:?}",
        d[0].record.notes
    );
}

#[test]
fn a_pending_restore_outlives_eviction_until_issued() {
    let rules = rules(true);
    let mut state = SubjectState::new();
    signal(
        &rules,
        &mut state,
        ("s1", "urn:t:leak", "AKIA1"),
        Mark { offset: 1, at: 0 },
    );
    let retention = Retention {
        margin: Duration::from_secs(1),
        max_entries: 1,
    };
    assert!(!state.evict(10 * HOUR, retention));
    assert_eq!(expire_all(&rules, &state, 10 * HOUR).len(), 1);
    state.restore_issued(state.issued[0].command_id);
    assert!(state.evict(10 * HOUR, retention));
    assert!(state.is_empty());
}

#[test]
fn suppression_counts_an_expiring_containment_only_while_it_holds_as_long() {
    let rules = crate::rules::load_sources(
        vec![(
            "r.yaml".into(),
            RULES.replace("    actions:\n      - action: disable_credential\n        targets: [aws]\n        expires_in: 1h", "    suppress_for: 2h\n    actions:\n      - action: disable_credential\n        targets: [aws]\n        expires_in: 1h"),
        )],
        &targets(true),
        &[],
    )
    .unwrap();
    let mut state = SubjectState::new();
    let leak = |id| (id, "urn:t:leak", "AKIA1");
    signal(&rules, &mut state, leak("s1"), Mark { offset: 1, at: 0 });
    // The same rule again within the hour: a repeat.
    signal(
        &rules,
        &mut state,
        leak("s2"),
        Mark {
            offset: 2,
            at: HOUR / 2,
        },
    );
    assert_eq!(state.issued.len(), 1);
    // Within the suppression period, but after the first expired: contained again.
    signal(
        &rules,
        &mut state,
        leak("s3"),
        Mark {
            offset: 3,
            at: HOUR + 1,
        },
    );
    assert_eq!(state.issued.len(), 2, "{:?}", state.issued);
}
