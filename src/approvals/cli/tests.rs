use super::*;
use crate::approvals::{Evidence, Expiry, HoldRequest};
use crate::emit::{EnforcementCommand, SourcePosition, TargetSubject, Why};

fn id(n: u8) -> String {
    format!("{n:032x}")
}

fn hold(n: u8, held_at: i64) -> ApprovalRecord {
    ApprovalRecord::Hold(Box::new(HoldRequest {
        command_id: id(n),
        reason: "protected_identity".into(),
        detail: "svc-root is protected by [safety] protected \"svc-root\"".into(),
        held_at,
        expires_at: held_at + 60_000,
        on_timeout: "cancel".into(),
        topic: "containment.commands.aws.v1".into(),
        command: EnforcementCommand {
            command_id: id(n),
            action: "disable_account".into(),
            target: "aws".into(),
            principal_id: None,
            subject: TargetSubject {
                id: format!("svc-{n}"),
                format: "opaque".into(),
                identifiers: Default::default(),
            },
            parameters: Default::default(),
            issued_at: held_at,
            expires_at: None,
            why: Why {
                rule_id: "r1".into(),
                ruleset_version: "v1".into(),
                signal_ids: vec!["s1".into()],
                event_type: "credential-compromise".into(),
                description: None,
            },
        },
        subject_key: None,
        evidence: Evidence {
            signal_id: "s1".into(),
            issuer: "https://idp.example".into(),
            event_type: "credential-compromise".into(),
            rule_id: "r1".into(),
            source: SourcePosition {
                topic: "identity.signals.v1".into(),
                partition: 0,
                offset: 7,
            },
            identity: None,
        },
        seal: None,
    }))
}

fn approve(n: u8, approver: &str) -> ApprovalRecord {
    ApprovalRecord::Approve(Verdict {
        command_id: id(n),
        approver: approver.into(),
        reason: "checked".into(),
        redact: Vec::new(),
    })
}

fn raw(partition: i32, offset: i64, record: &ApprovalRecord) -> Raw {
    Raw {
        partition,
        offset,
        at: 1_000 + offset,
        payload: Some(record.to_json()),
    }
}

fn settings(extra: &str) -> Settings {
    let text = format!("[input]\ntopics = [\"s\"]\n[rules]\ndir = \"r\"\n{extra}");
    crate::config::parse(std::path::Path::new("c.toml"), &text).unwrap()
}

#[test]
fn folds_each_partition_in_offset_order_into_the_pending_holds() {
    let records = vec![
        // Out of order as read across partitions: the fold sorts by offset.
        raw(0, 1, &approve(1, "alice")),
        raw(0, 0, &hold(1, 500)),
        raw(1, 0, &hold(2, 300)),
        raw(1, 1, &hold(3, 100)),
        raw(1, 2, &ApprovalRecord::Expire(Expiry { command_id: id(3) })),
    ];
    let holds = Holds::fold(records, &Policy::default());
    let pending: Vec<&str> = holds
        .pending()
        .iter()
        .map(|h| h.request.command_id.as_str())
        .collect();
    // Hold 3's expiry was read before its deadline: still pending, and oldest first.
    assert_eq!(pending, [id(3), id(2)]);
    let (partition, released) = holds.find(&id(1)).unwrap();
    assert_eq!(partition, 0);
    assert_eq!(released.closed.as_ref().unwrap().by, "alice");
}

#[test]
fn malformed_and_refused_records_are_counted_not_applied() {
    let policy = Policy {
        approvers: vec!["alice".into()],
        ..Policy::default()
    };
    let mut garbage = raw(0, 1, &hold(9, 0));
    garbage.payload = Some(b"{not json".to_vec());
    let records = vec![
        raw(0, 0, &hold(1, 0)),
        garbage,
        raw(0, 2, &approve(1, "mallory")),
        Raw {
            payload: None,
            ..raw(0, 3, &hold(2, 0))
        },
    ];
    let holds = Holds::fold(records, &policy);
    assert_eq!(holds.malformed, 2);
    assert_eq!(holds.refused.len(), 1);
    assert!(holds.refused[0].contains("mallory"));
    assert_eq!(holds.pending().len(), 1);
}

#[test]
fn a_verdict_needs_a_pending_hold() {
    let records = vec![
        raw(0, 0, &hold(1, 0)),
        raw(0, 1, &hold(2, 0)),
        raw(0, 2, &approve(2, "alice")),
    ];
    let holds = Holds::fold(records, &Policy::default());
    assert_eq!(holds.pending_hold(&id(1), "t").unwrap().0, 0);
    let closed = holds.pending_hold(&id(2), "t").unwrap_err().to_string();
    assert!(closed.contains("already released by alice"), "{closed}");
    let unknown = holds.pending_hold(&id(3), "t").unwrap_err();
    assert!(matches!(unknown, Error::Unknown { .. }));
}

#[test]
fn verdicts_are_checked_as_containd_checks_them() {
    let open = settings("");
    let upper = id(10).to_uppercase();
    let v = verdict(&open, &upper, Some("bob".into()), " looked at it ").unwrap();
    assert_eq!(
        (v.command_id.as_str(), v.reason.as_str()),
        (&*id(10), "looked at it")
    );
    assert!(matches!(
        verdict(&open, "abc", Some("bob".into()), "x"),
        Err(Error::NotAnId(_))
    ));
    assert!(matches!(
        verdict(&open, &id(1), None, "x"),
        Err(Error::NoApprover)
    ));
    assert!(matches!(
        verdict(&open, &id(1), Some("bob".into()), "  "),
        Err(Error::NoReason)
    ));
    let strict = settings("[safety]\napprovers = [\"alice\"]\n");
    assert!(matches!(
        verdict(&strict, &id(1), Some("bob".into()), "x"),
        Err(Error::NotApprover { .. })
    ));
}

#[test]
fn renders_a_row_per_pending_hold() {
    let holds = Holds::fold(vec![raw(0, 0, &hold(1, 0))], &Policy::default());
    let text = render(&holds.pending());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("COMMAND ID") && lines[0].ends_with("DETAIL"));
    for cell in [
        &*id(1),
        "disable_account",
        "aws",
        "svc-1",
        "protected_identity",
    ] {
        assert!(lines[1].contains(cell), "{cell} missing from {}", lines[1]);
    }
    assert!(lines[1].contains("1970-01-01T00:00:00Z  1970-01-01T00:01:00Z"));
    assert!(lines[1].ends_with("protected \"svc-root\""));
}
