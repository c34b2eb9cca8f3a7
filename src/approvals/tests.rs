use super::*;
use crate::emit::{TargetSubject, Why};
use crate::state::Mark;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn command() -> EnforcementCommand {
    EnforcementCommand {
        command_id: ID.into(),
        action: "disable_account".into(),
        target: "okta".into(),
        principal_id: None,
        subject: TargetSubject {
            id: "svc-breakglass".into(),
            format: "opaque".into(),
            identifiers: Default::default(),
        },
        parameters: Default::default(),
        issued_at: 1_000,
        expires_at: None,
        why: Why {
            rule_id: "pam-escalation".into(),
            ruleset_version: "v".into(),
            signal_ids: vec!["sig-1".into()],
            event_type: "e".into(),
            description: None,
        },
    }
}

fn hold(on_timeout: &str) -> ApprovalRecord {
    ApprovalRecord::Hold(Box::new(HoldRequest {
        command_id: ID.into(),
        reason: "protected_identity".into(),
        detail: "d".into(),
        held_at: 1_000,
        expires_at: 61_000,
        on_timeout: on_timeout.into(),
        topic: "containment.commands.okta.v1".into(),
        command: command(),
        subject_key: None,
        evidence: Evidence {
            signal_id: "sig-1".into(),
            issuer: "https://pam".into(),
            event_type: "e".into(),
            rule_id: "pam-escalation".into(),
            source: SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
            identity: None,
        },
        seal: None,
    }))
}

fn verdict(approver: &str) -> Verdict {
    Verdict {
        command_id: ID.into(),
        approver: approver.into(),
        reason: "checked with the owner".into(),
        redact: Vec::new(),
    }
}

fn at(offset: i64, t: i64) -> Mark {
    Mark { offset, at: t }
}

#[test]
fn an_approval_releases_exactly_the_held_command_once() {
    let (mut table, policy) = (HoldTable::default(), Policy::default());
    assert!(matches!(
        table.apply(hold("cancel"), at(0, 1_000), &policy),
        Transition::Held(_)
    ));
    assert_eq!(table.pending().count(), 1);
    let Transition::Release(_, released) = table.apply(
        ApprovalRecord::Approve(verdict("alice")),
        at(1, 2_000),
        &policy,
    ) else {
        panic!("approval did not release");
    };
    assert_eq!(*released, command());
    assert_eq!(table.pending().count(), 0);
    // The same approval re-read after a crash releases the identical command again (the
    // redelivery of an unacknowledged output); a second approval releases nothing.
    let replay = table.apply(
        ApprovalRecord::Approve(verdict("alice")),
        at(1, 2_000),
        &policy,
    );
    assert!(matches!(replay, Transition::Release(_, c) if *c == command()));
    let again = table.apply(
        ApprovalRecord::Approve(verdict("bob")),
        at(2, 3_000),
        &policy,
    );
    assert!(
        matches!(&again, Transition::Ignored { refused: false, why } if why.contains("already released by alice")),
        "{again:?}"
    );
    // A hold record read again does not reopen it.
    assert_eq!(
        table.apply(hold("cancel"), at(0, 1_000), &policy),
        Transition::Quiet
    );
    assert_eq!(table.pending().count(), 0);
}

#[test]
fn a_denial_cancels_and_nothing_releases_it_afterwards() {
    let (mut table, policy) = (HoldTable::default(), Policy::default());
    table.apply(hold("cancel"), at(0, 1_000), &policy);
    let denied = table.apply(
        ApprovalRecord::Deny(verdict("alice")),
        at(1, 2_000),
        &policy,
    );
    let Transition::Cancel(h) = denied else {
        panic!("{denied:?}")
    };
    assert_eq!(h.closed.unwrap().outcome, "cancelled");
    let late = table.apply(
        ApprovalRecord::Approve(verdict("bob")),
        at(2, 3_000),
        &policy,
    );
    assert!(matches!(late, Transition::Ignored { .. }), "{late:?}");
}

#[test]
fn only_sealed_holds_and_listed_approvers_count() {
    let key = b"0123456789abcdef-approvals".to_vec();
    let policy = Policy {
        key: Some(Ok(key.clone())),
        approvers: vec!["alice".into()],
        ..Policy::default()
    };
    let mut table = HoldTable::default();
    let forged = table.apply(hold("cancel"), at(0, 1_000), &policy);
    assert!(matches!(forged, Transition::Ignored { refused: true, .. }));
    let ApprovalRecord::Hold(mut request) = hold("cancel") else {
        unreachable!()
    };
    request.seal = Some(seal(&key, &request));
    assert!(sealed_by(&key, &request));
    let mut tampered = request.clone();
    tampered.command.action = "revoke_access".into();
    assert!(!sealed_by(&key, &tampered));
    let held = table.apply(ApprovalRecord::Hold(request), at(1, 1_000), &policy);
    assert!(matches!(held, Transition::Held(_)));
    let mallory = table.apply(
        ApprovalRecord::Approve(verdict("mallory")),
        at(2, 2_000),
        &policy,
    );
    assert!(matches!(mallory, Transition::Ignored { refused: true, .. }));
    assert_eq!(table.pending().count(), 1);
    let unreadable = Policy {
        key: Some(Err("no such file".into())),
        ..Policy::default()
    };
    let mut other = HoldTable::default();
    let refused = other.apply(hold("cancel"), at(0, 1_000), &unreadable);
    assert!(matches!(refused, Transition::Ignored { refused: true, .. }));
}

#[test]
fn a_timeout_cancels_or_releases_the_milder_action() {
    let policy = Policy {
        accepts: vec![("okta".into(), vec!["revoke_sessions".into()])],
        ..Policy::default()
    };
    let expire = || {
        ApprovalRecord::Expire(Expiry {
            command_id: ID.into(),
        })
    };
    let mut table = HoldTable::default();
    table.apply(hold("release:revoke_sessions"), at(0, 1_000), &policy);
    assert!(table.due(60_999).is_empty());
    assert_eq!(table.due(61_000), vec![ID.to_string()]);
    assert!(
        table.due(70_000).is_empty(),
        "each hold's expiry is asked for once"
    );
    let early = table.apply(expire(), at(1, 60_000), &policy);
    assert!(matches!(early, Transition::Ignored { refused: false, .. }));
    let Transition::Release(_, milder) = table.apply(expire(), at(2, 61_000), &policy) else {
        panic!("no milder release");
    };
    assert_eq!(milder.action, "revoke_sessions");
    assert_eq!(milder.command_id, milder_id(ID, "revoke_sessions"));
    assert_ne!(milder.command_id, ID);
    let mut cancels = HoldTable::default();
    cancels.apply(hold("release:quarantine_workload"), at(0, 1_000), &policy);
    let cancelled = cancels.apply(expire(), at(1, 61_000), &policy);
    assert!(
        matches!(cancelled, Transition::Cancel(h) if h.closed.as_ref().unwrap().reason.contains("does not accept"))
    );
}

#[test]
fn records_name_a_command_id_or_are_refused() {
    let mut v = verdict("alice");
    v.command_id = "../../etc".into();
    let mut table = HoldTable::default();
    let r = table.apply(ApprovalRecord::Approve(v), at(0, 0), &Policy::default());
    assert!(matches!(r, Transition::Ignored { refused: true, .. }));
    let json = br#"{"type":"approve","command_id":"x","approver":"a","reason":"r","extra":1}"#;
    assert!(serde_json::from_slice::<ApprovalRecord>(json).is_err());
    assert!(OnTimeout::parse("release:").is_err() && OnTimeout::parse("cancel").is_ok());
}

#[test]
fn an_approval_written_before_its_hold_releases_nothing_even_when_re_read() {
    let (mut table, policy) = (HoldTable::default(), Policy::default());
    let early = table.apply(
        ApprovalRecord::Approve(verdict("alice")),
        at(0, 500),
        &policy,
    );
    assert!(matches!(early, Transition::Ignored { refused: false, .. }));
    table.apply(hold("cancel"), at(1, 1_000), &policy);
    // After a crash the partition is read again from offset 0 with the hold already in state:
    // the approval still comes before the hold.
    let again = table.apply(
        ApprovalRecord::Approve(verdict("alice")),
        at(0, 500),
        &policy,
    );
    assert!(matches!(again, Transition::Ignored { .. }), "{again:?}");
    assert_eq!(table.pending().count(), 1);
}

#[test]
fn a_redacting_approval_releases_the_command_without_the_named_fields() {
    let (mut table, policy) = (HoldTable::default(), Policy::default());
    let mut held = hold("cancel");
    if let ApprovalRecord::Hold(h) = &mut held {
        h.command
            .parameters
            .insert("first_seen".into(), "t0".into());
        h.command
            .parameters
            .insert("indicator_value".into(), "sha256:ab".into());
    }
    table.apply(held, at(0, 1_000), &policy);
    let mut v = verdict("legal");
    v.redact = vec!["first_seen".into()];
    let Transition::Release(hold, released) =
        table.apply(ApprovalRecord::Approve(v), at(1, 2_000), &policy)
    else {
        panic!("a redacting approval releases");
    };
    assert!(!released.parameters.contains_key("first_seen"));
    assert_eq!(released.parameters["indicator_value"], "sha256:ab");
    let closed = hold.closed.unwrap();
    assert!(
        closed
            .reason
            .contains("redacted: parameters.first_seen removed"),
        "{}",
        closed.reason
    );
}
