use super::*;

impl Tracker {
    fn due_at(&mut self, now: i64, limits: impl Fn(&str) -> Limits) -> Vec<Tracking> {
        self.due(now, 0, limits)
    }
}
use crate::emit::{EnforcementCommand, TargetSubject, Why};
use std::collections::BTreeMap;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn limits(_: &str) -> Limits {
    Limits {
        timeout: Duration::from_secs(60),
        max_attempts: 2,
        horizon: Duration::from_secs(600),
    }
}

fn issued(sent_at: i64) -> Tracking {
    Tracking::Issued(Box::new(Issued {
        partition: 0,
        topic: "containment.commands.aws.v1".into(),
        key: "svc".into(),
        identity: None,
        sent_at,
        occurred_at: sent_at - 500,
        received_at: sent_at - 100,
        escalation_of: None,
        command: EnforcementCommand {
            command_id: ID.into(),
            action: "disable_credential".into(),
            target: "aws".into(),
            principal_id: None,
            subject: TargetSubject {
                id: "svc".into(),
                format: "opaque".into(),
                identifiers: BTreeMap::new(),
            },
            parameters: BTreeMap::new(),
            issued_at: sent_at,
            expires_at: None,
            why: Why {
                rule_id: "r".into(),
                ruleset_version: "v".into(),
                signal_ids: vec!["s".into()],
                event_type: "e".into(),
                description: None,
            },
        },
    }))
}

fn result(target: &str, status: ResultStatus, attempt: i32) -> CommandResult {
    CommandResult {
        command_id: ID.into(),
        target: target.into(),
        status,
        detail: None,
        attempt,
        at: 0,
        evidence: BTreeMap::new(),
    }
}

#[test]
fn a_success_confirms_once_and_its_reread_repeats_only_the_confirmation() {
    let mut t = Tracker::default();
    assert_eq!(
        t.apply(issued(1_000), (0, 1_000), limits),
        Transition::Tracked
    );
    let r = result("aws", ResultStatus::Accepted, 1);
    assert_eq!(t.result(&r, (1, 1_200), limits), Transition::Reported);
    let ok = result("aws", ResultStatus::Succeeded, 1);
    match t.result(&ok, (2, 1_900), limits) {
        Transition::Confirmed(tracked, false) => {
            assert_eq!(tracked.confirmed_at, Some(1_900));
            assert_eq!(tracked.accepted_at, Some(1_200));
        }
        other => panic!("{other:?}"),
    }
    // The same record re-read after a crash: the confirmation again, flagged as a replay.
    assert!(matches!(
        t.result(&ok, (2, 1_900), limits),
        Transition::Confirmed(_, true)
    ));
    // An older record re-read: nothing.
    assert_eq!(t.result(&r, (1, 1_200), limits), Transition::Quiet);
    // A second success later: reported, not confirmed again; nothing is due.
    assert_eq!(t.result(&ok, (3, 2_000), limits), Transition::Reported);
    assert!(t.due_at(1_000_000, limits).is_empty());
}

#[test]
fn silence_resends_until_the_attempts_run_out_then_gives_up_once() {
    let mut t = Tracker::default();
    t.apply(issued(0), (0, 0), limits);
    assert!(t.due_at(59_999, limits).is_empty());
    let due = t.due_at(60_000, limits);
    assert_eq!(due.len(), 1);
    assert!(matches!(&due[0], Tracking::Resend(m) if m.attempt == 2));
    // Asked once per process until read back.
    assert!(t.due_at(120_000, limits).is_empty());
    let marker = due[0].clone();
    match t.apply(marker.clone(), (5, 61_000), limits) {
        Transition::Resend(_, 2, false) => {}
        other => panic!("{other:?}"),
    }
    // The marker re-read: the same send again; a second marker for the same attempt: quiet.
    assert!(matches!(
        t.apply(marker.clone(), (5, 61_000), limits),
        Transition::Resend(_, 2, true)
    ));
    assert_eq!(t.apply(marker, (6, 61_500), limits), Transition::Quiet);
    assert!(t.due_at(120_000, limits).is_empty());
    let due = t.due_at(121_000, limits);
    assert!(matches!(&due[..], [Tracking::GiveUp(m)] if m.attempt == 2));
    match t.apply(due[0].clone(), (7, 121_100), limits) {
        Transition::Ended(_, Trigger::Timeout, false) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.apply(due[0].clone(), (8, 121_200), limits),
        Transition::Quiet
    );
    assert!(t.due_at(10_000_000, limits).is_empty());
}

#[test]
fn a_failure_is_resent_at_once_and_the_last_failure_ends_it() {
    let mut t = Tracker::default();
    t.apply(issued(0), (0, 0), limits);
    let failed = result("aws", ResultStatus::Failed, 1);
    assert_eq!(t.result(&failed, (1, 100), limits), Transition::Reported);
    let due = t.due_at(200, limits);
    assert!(matches!(&due[..], [Tracking::Resend(m)] if m.attempt == 2));
    t.apply(due[0].clone(), (2, 300), limits);
    // A late failure of attempt 1 does not end attempt 2.
    assert_eq!(t.result(&failed, (3, 400), limits), Transition::Reported);
    let failed2 = result("aws", ResultStatus::Failed, 2);
    assert!(matches!(
        t.result(&failed2, (4, 500), limits),
        Transition::Ended(_, Trigger::Failed, false)
    ));
    // Re-read of the ending result: the same escalation again.
    assert!(matches!(
        t.result(&failed2, (4, 500), limits),
        Transition::Ended(_, Trigger::Failed, true)
    ));
}

#[test]
fn a_rejection_ends_at_once_and_a_result_from_another_target_is_ignored() {
    let mut t = Tracker::default();
    t.apply(issued(0), (0, 0), limits);
    let other = result("github", ResultStatus::Succeeded, 1);
    assert!(matches!(
        t.result(&other, (1, 10), limits),
        Transition::Ignored(_)
    ));
    assert!(t.get(ID).unwrap().open());
    let rejected = result("aws", ResultStatus::Rejected, 1);
    assert!(matches!(
        t.result(&rejected, (2, 20), limits),
        Transition::Ended(_, Trigger::Rejected, false)
    ));
    assert!(!t.get(ID).unwrap().open());
}

#[test]
fn a_result_before_its_tracking_record_counts_when_the_record_arrives() {
    let mut t = Tracker::default();
    let ok = result("aws", ResultStatus::Succeeded, 1);
    assert_eq!(t.result(&ok, (0, 50), limits), Transition::Reported);
    assert!(matches!(
        t.apply(issued(10), (1, 60), limits),
        Transition::Confirmed(_, false)
    ));
    // A resend marker for a command nobody sent is ignored.
    let stray = Tracking::Resend(Marker {
        command_id: "ffffffffffffffffffffffffffffffff".into(),
        partition: 0,
        attempt: 2,
    });
    assert!(matches!(
        t.apply(stray, (2, 70), limits),
        Transition::Ignored(_)
    ));
}

#[test]
fn settled_entries_are_evicted_after_the_margin_open_ones_never() {
    let mut t = Tracker::default();
    t.apply(issued(0), (0, 0), limits);
    assert!(t.evict(10_000_000, Duration::from_secs(1)).is_empty());
    let ok = result("aws", ResultStatus::Succeeded, 1);
    t.result(&ok, (1, 100), limits);
    assert!(t.evict(500, Duration::from_secs(1)).is_empty());
    assert_eq!(t.evict(2_000, Duration::from_secs(1)), vec![ID.to_string()]);
    assert!(t.is_empty());
}

#[test]
fn a_late_failure_of_an_earlier_attempt_does_not_fail_the_one_in_flight() {
    let mut t = Tracker::default();
    t.apply(issued(0), (0, 0), limits);
    let due = t.due_at(60_000, limits);
    t.apply(due[0].clone(), (1, 60_000), limits);
    // Attempt 1's slow failure arrives after attempt 2 was sent: nothing is due early.
    let late = result("aws", ResultStatus::Failed, 1);
    assert_eq!(t.result(&late, (2, 60_100), limits), Transition::Reported);
    assert!(t.due_at(60_200, limits).is_empty());
    // An `accepted` does not stop the clock either.
    let accepted = result("aws", ResultStatus::Accepted, 2);
    t.result(&accepted, (3, 119_000), limits);
    assert!(matches!(
        &t.due_at(120_000, limits)[..],
        [Tracking::GiveUp(_)]
    ));
}

#[test]
fn an_early_result_from_another_target_is_dropped_and_an_early_rejection_ends_it() {
    let mut t = Tracker::default();
    let other = result("github", ResultStatus::Succeeded, 1);
    t.result(&other, (0, 50), limits);
    assert_eq!(t.apply(issued(10), (1, 60), limits), Transition::Tracked);
    assert!(t.get(ID).unwrap().open());

    let mut t = Tracker::default();
    let rejected = result("aws", ResultStatus::Rejected, 1);
    t.result(&rejected, (0, 50), limits);
    assert!(matches!(
        t.apply(issued(10), (1, 60), limits),
        Transition::Ended(_, Trigger::Rejected, false)
    ));
}

#[test]
fn a_tracking_record_older_than_the_replay_margin_is_not_tracked() {
    let mut t = Tracker::default();
    // Sent at 0, first read 11 minutes later (a copy replayed after its command was forgotten).
    assert!(matches!(
        t.apply(issued(0), (0, 660_000), limits),
        Transition::Ignored(_)
    ));
    assert!(t.is_empty());
}
