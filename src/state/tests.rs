use super::*;

const MIN: i64 = 60_000;

/// A readable stand-in id: the label's bytes, zero-padded.
fn cid(label: &str) -> CommandId {
    let mut b = [0u8; 16];
    b[..label.len()].copy_from_slice(label.as_bytes());
    CommandId::from(b)
}

fn retention() -> Retention {
    Retention {
        margin: Duration::from_secs(3600),
        max_entries: 100,
    }
}

fn hit(rule: &str) -> StateUpdate {
    StateUpdate {
        hits: vec![NewHit {
            rule: rule.into(),
            event_type: "urn:e".into(),
            within: Duration::from_secs(600),
            signal_id: "s".into(),
        }],
        ..StateUpdate::default()
    }
}

fn issue(target: &str, action: &str, id: &str, holds: bool) -> StateUpdate {
    StateUpdate {
        issued: vec![NewIssue {
            target: target.into(),
            action: action.into(),
            command_id: cid(id),
            holds,
            expires_at: None,
            remember_for: Duration::from_secs(900),
            cause: Cause {
                rule: "r".into(),
                event_type: "urn:e".into(),
                occurred_at: 0,
                signal: None,
                object: None,
                principal: None,
            },
            restore_on_expiry: None,
        }],
        ..StateUpdate::default()
    }
}

#[test]
fn a_window_counts_hits_before_the_signal_within_its_duration() {
    let mut s = SubjectState::new();
    let w = Duration::from_secs(600);
    for (o, t) in [(1, 0), (2, MIN), (3, 2 * MIN)] {
        assert!(s.apply(Mark { offset: o, at: t }, &hit("r"), retention()));
    }
    assert_eq!(s.window("r", w, 4, 3 * MIN).count, 3);
    // As of offset 3 only the first two count: a replay of offset 3 sees what it saw.
    assert_eq!(s.window("r", w, 3, 2 * MIN).count, 2);
    // Eleven minutes after the first hit it has left the window.
    assert_eq!(s.window("r", w, 4, 11 * MIN).count, 2);
    assert_eq!(s.window("other", w, 4, 3 * MIN).count, 0);
}

#[test]
fn applying_an_offset_twice_changes_nothing() {
    let mut s = SubjectState::new();
    assert!(s.apply(Mark { offset: 5, at: 0 }, &hit("r"), retention()));
    let before = s.clone();
    assert!(!s.apply(Mark { offset: 5, at: 0 }, &hit("r"), retention()));
    assert!(!s.apply(Mark { offset: 3, at: 0 }, &hit("r"), retention()));
    assert_eq!(s, before);
    assert_eq!(s.window("r", Duration::from_secs(60), 9, 0).count, 1);
}

#[test]
fn suppression_looks_at_the_latest_issue_before_the_signal() {
    let mut s = SubjectState::new();
    s.apply(
        Mark { offset: 1, at: 0 },
        &issue("okta", "revoke_sessions", "c1", false),
        retention(),
    );
    let period = Duration::from_secs(900);
    let found = s.recently_issued(("okta", "revoke_sessions", None), period, 2, 10 * MIN);
    assert_eq!(found.map(|i| i.command_id), Some(cid("c1")));
    assert!(s
        .recently_issued(("okta", "revoke_sessions", None), period, 2, 16 * MIN)
        .is_none());
    assert!(s
        .recently_issued(("aws", "revoke_sessions", None), period, 2, MIN)
        .is_none());
    assert!(
        s.recently_issued(("okta", "revoke_sessions", None), period, 1, MIN)
            .is_none(),
        "not before its own offset"
    );
}

#[test]
fn restore_closes_only_what_was_open_and_replays_see_it_open() {
    let mut s = SubjectState::new();
    s.apply(
        Mark { offset: 1, at: 0 },
        &issue("aws", "quarantine_workload", "q1", true),
        retention(),
    );
    s.apply(
        Mark { offset: 2, at: MIN },
        &issue("okta", "revoke_sessions", "r1", false),
        retention(),
    );
    let open: Vec<CommandId> = s.open(3, 2 * MIN).map(|i| i.command_id).collect();
    assert_eq!(open, [cid("q1")], "one-shot actions are not containments");
    let close = StateUpdate {
        closed: vec![cid("q1")],
        ..StateUpdate::default()
    };
    assert!(s.apply(
        Mark {
            offset: 3,
            at: 2 * MIN
        },
        &close,
        retention()
    ));
    assert_eq!(s.open(4, 3 * MIN).count(), 0);
    assert_eq!(
        s.open(3, 2 * MIN).count(),
        1,
        "as of the restore it was open"
    );
}

#[test]
fn expired_containments_are_not_open() {
    let mut s = SubjectState::new();
    let mut u = issue("aws", "disable_credential", "d1", true);
    u.issued[0].expires_at = Some(10 * MIN);
    s.apply(Mark { offset: 1, at: 0 }, &u, retention());
    assert_eq!(s.open(2, 5 * MIN).count(), 1);
    assert_eq!(s.open(2, 10 * MIN).count(), 0);
}

#[test]
fn eviction_keeps_open_containments_and_drops_the_rest_past_their_period_and_margin() {
    let mut s = SubjectState::new();
    let r = Retention {
        margin: Duration::from_secs(600),
        max_entries: 100,
    };
    s.apply(Mark { offset: 1, at: 0 }, &hit("w"), r);
    s.apply(
        Mark { offset: 2, at: 0 },
        &issue("aws", "quarantine_workload", "q1", true),
        r,
    );
    s.apply(
        Mark { offset: 3, at: 0 },
        &issue("okta", "revoke_sessions", "r1", false),
        r,
    );
    assert_eq!(s.entries(), 3);
    // The hit's window (10m) + margin (10m) ends at 20m; the suppression (15m) + margin at 25m.
    assert!(!s.evict(20 * MIN, r));
    assert!(s.evict(21 * MIN, r));
    assert_eq!(s.entries(), 2);
    assert!(s.evict(26 * MIN, r));
    assert_eq!(s.entries(), 1);
    assert_eq!(s.open(9, 26 * MIN).count(), 1);
    assert!(!s.is_empty());
}

#[test]
fn lists_are_capped() {
    let mut s = SubjectState::new();
    let r = Retention {
        margin: Duration::from_secs(3600),
        max_entries: 3,
    };
    for o in 0..10 {
        s.apply(Mark { offset: o, at: o }, &hit("w"), r);
    }
    assert_eq!(s.rules[0].hits.len(), 3);
    assert_eq!(s.rules[0].hits[0].offset, 7);
}

#[test]
fn the_store_reports_changes_for_the_changelog_and_restores_from_it() {
    let mut store = StateStore::new(retention());
    let at = Mark { offset: 7, at: 0 };
    assert_eq!(
        store.apply("t", 0, "svc", at, &StateUpdate::default()),
        Change::Unchanged
    );
    let Change::Updated(value) = store.apply("t", 0, "svc", at, &hit("w")) else {
        panic!("a hit changes the state");
    };
    let state = store.subject("t", 0, "svc").unwrap().clone();
    assert_eq!(store.apply("t", 0, "svc", at, &hit("w")), Change::Unchanged);

    // Rebuild from the changelog records as written: other partitions' keys are skipped.
    let mut shard = Shard::default();
    let prefix = changelog::prefix("t", 0);
    changelog::restore_record(
        &mut shard,
        &prefix,
        &changelog::key("t", 0, "svc"),
        Some(&value),
    )
    .unwrap();
    changelog::restore_record(
        &mut shard,
        &prefix,
        &changelog::key("t", 1, "x"),
        Some(&value),
    )
    .unwrap();
    assert_eq!(shard.subjects.len(), 1);
    assert_eq!(shard.subjects["svc"], state);
    changelog::restore_record(&mut shard, &prefix, &changelog::key("t", 0, "svc"), None).unwrap();
    assert!(shard.subjects.is_empty());
    assert!(changelog::restore_record(
        &mut shard,
        &prefix,
        &changelog::key("t", 0, "svc"),
        Some(b"not json")
    )
    .is_err());
}

#[test]
fn sweep_evicts_by_stream_time_and_emits_tombstones() {
    let mut store = StateStore::new(Retention {
        margin: Duration::from_secs(600),
        max_entries: 10,
    });
    store.apply("t", 0, "old", Mark { offset: 1, at: 0 }, &hit("w"));
    store.apply(
        "t",
        0,
        "new",
        Mark {
            offset: 2,
            at: 21 * MIN,
        },
        &hit("w"),
    );
    let swept = store.sweep();
    assert_eq!(
        swept,
        vec![(
            "t".to_string(),
            0,
            store::Key::Subject("old".to_string()),
            Change::Removed
        )]
    );
    assert_eq!(store.size(), (1, 1, 1));
    assert!(store.sweep().is_empty());
}

#[test]
fn superseded_containments_go_once_replays_cannot_reach_them() {
    let mut s = SubjectState::new();
    let r = Retention {
        margin: Duration::from_secs(600),
        max_entries: 100,
    };
    s.apply(
        Mark { offset: 1, at: 0 },
        &issue("aws", "quarantine_workload", "q1", true),
        r,
    );
    s.apply(
        Mark { offset: 2, at: MIN },
        &issue("aws", "quarantine_workload", "q2", true),
        r,
    );
    // Within the margin a replay of offset 2 must still see q1 open.
    assert_eq!(s.open(2, MIN).count(), 1);
    assert_eq!(s.issued.len(), 2);
    // Once q2 is older than the margin, q1 can no longer matter: only q2 stays, still open.
    s.evict(12 * MIN, r);
    let left: Vec<CommandId> = s.issued.iter().map(|i| i.command_id).collect();
    assert_eq!(left, [cid("q2")]);
    assert_eq!(s.open(3, 12 * MIN).count(), 1);
}

#[test]
fn suppression_is_per_object() {
    let mut s = SubjectState::new();
    let mut u = issue("aws", "disable_credential", "k1", true);
    u.issued[0].cause.object = Some("KEY-1".into());
    s.apply(Mark { offset: 1, at: 0 }, &u, retention());
    let period = Duration::from_secs(900);
    let kind = |object| ("aws", "disable_credential", object);
    assert!(s
        .recently_issued(kind(Some("KEY-1")), period, 2, MIN)
        .is_some());
    assert!(
        s.recently_issued(kind(Some("KEY-2")), period, 2, MIN)
            .is_none(),
        "a second key is not a repeat of the first"
    );
    assert!(s.recently_issued(kind(None), period, 2, MIN).is_none());
}

#[test]
fn state_kept_under_an_identitys_former_names_moves_to_its_key_durably() {
    let mut store = StateStore::new(retention());
    let q = issue("aws", "quarantine_workload", "q", true);
    store.apply("t", 0, "wimse://a/agent", Mark { offset: 1, at: 0 }, &q);
    store.apply("t", 0, "agent", Mark { offset: 2, at: MIN }, &hit("w"));
    store.apply(
        "t",
        0,
        "someone-else",
        Mark { offset: 3, at: MIN },
        &hit("w"),
    );

    let changes = store.adopt("t", 0, "agent", ["wimse://a/agent", "agent", "unused"]);
    // The former name is tombstoned and the merged state written under the key.
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0], ("wimse://a/agent".into(), Change::Removed));
    let Change::Updated(record) = &changes[1].1 else {
        panic!("the merged state is written: {changes:?}");
    };
    assert_eq!(changes[1].0, "agent");
    let merged = store.subject("t", 0, "agent").unwrap();
    assert_eq!(merged.applied, 2);
    assert_eq!(merged.open(4, 2 * MIN).count(), 1);
    assert_eq!(
        merged
            .window("w", Duration::from_secs(600), 4, 2 * MIN)
            .count,
        1
    );
    assert!(store.subject("t", 0, "wimse://a/agent").is_none());
    assert!(store.subject("t", 0, "someone-else").is_some());
    let restored: SubjectState = changelog::read(record).unwrap();
    assert_eq!(restored, *merged);

    // Moving again finds nothing: no records.
    assert!(store.adopt("t", 0, "agent", ["wimse://a/agent"]).is_empty());
}

#[test]
fn seen_signals_live_in_the_partition_and_come_back_from_the_changelog() {
    let mut store = StateStore::new(retention());
    let w = Duration::from_secs(600);
    let (key, change) = store
        .remember("t", 0, [9; 16], Mark { offset: 4, at: 0 }, w)
        .unwrap();
    assert!(store
        .remember("t", 0, [9; 16], Mark { offset: 4, at: 0 }, w)
        .is_none());
    assert_eq!(store.first_seen("t", 0, &[9; 16], 7), Some(4));
    let store::Key::Seen(id) = key else {
        panic!("a seen record")
    };
    let Change::Updated(value) = change else {
        panic!("written")
    };
    // Rebuilt from its changelog record; a subject record of an older release carrying a
    // `seen` list migrates into the partition's set.
    let mut shard = Shard::default();
    let prefix = changelog::prefix("t", 0);
    let seen_key = changelog::seen_key("t", 0, &id);
    changelog::restore_record(&mut shard, &prefix, &seen_key, Some(&value)).unwrap();
    assert_eq!(shard.seen.first_seen(&[9; 16], 7), Some(4));
    let legacy = br#"{"applied":3,"seen":[{"key":"08080808080808080808080808080808","offset":3,"at":0,"until":600000}]}"#;
    changelog::restore_record(
        &mut shard,
        &prefix,
        &changelog::key("t", 0, "svc"),
        Some(legacy),
    )
    .unwrap();
    assert_eq!(shard.seen.first_seen(&[8; 16], 7), Some(3));
    assert_eq!(shard.subjects["svc"].applied, 3);
    // A tombstone forgets it; other partitions' seen keys are skipped.
    changelog::restore_record(&mut shard, &prefix, &seen_key, None).unwrap();
    assert_eq!(shard.seen.first_seen(&[9; 16], 7), None);
    let other = changelog::seen_key("t", 1, &id);
    changelog::restore_record(&mut shard, &prefix, &other, Some(&value)).unwrap();
    assert_eq!(shard.seen.first_seen(&[9; 16], 7), None);
    // The subject's record no longer carries the seen list.
    let written: serde_json::Value =
        changelog::read(&changelog::value(&shard.subjects["svc"])).unwrap();
    assert!(written.get("applied").is_some() && written.get("seen").is_none());
}

/// A subject with every kind of entry and every optional field set: written as MessagePack,
/// read back the same; the same state written as JSON by an earlier release reads back the
/// same too; and the MessagePack record is the smaller.
#[test]
fn changelog_values_are_messagepack_and_json_records_are_still_read() {
    let mut store = StateStore::new(retention());
    let mut update = issue("okta", "disable_account", "c1", true);
    update.issued[0].expires_at = Some(8 * MIN);
    update.issued[0].cause = Cause {
        rule: "leak".into(),
        event_type: "urn:risc:credential-compromise".into(),
        occurred_at: 5,
        signal: Some(SignalRef {
            issuer: "https://idp".into(),
            id: "sig-1".into(),
        }),
        object: Some("key-1".into()),
        principal: Some("arn:aws:iam::1:user/svc".into()),
    };
    update.issued[0].restore_on_expiry = Some(crate::emit::TargetSubject {
        id: "svc".into(),
        format: "opaque".into(),
        identifiers: [("id".to_string(), "svc".to_string())].into(),
    });
    update.hits = hit("w").hits;
    update.triggers = vec![("ladder".into(), Duration::from_secs(600), "sig-1".into())];
    store.apply("t", 0, "svc", Mark { offset: 1, at: MIN }, &update);
    let closing = StateUpdate {
        closed: vec![cid("c1")],
        ..StateUpdate::default()
    };
    let at = Mark {
        offset: 2,
        at: 2 * MIN,
    };
    let Change::Updated(value) = store.apply("t", 0, "svc", at, &closing) else {
        panic!("a restore changes the state");
    };
    let state = store.subject("t", 0, "svc").unwrap().clone();
    assert!(state.issued[0].closed.is_some() && !state.rules.is_empty());
    assert_ne!(value.first(), Some(&b'{'), "not JSON");
    assert_eq!(changelog::read::<SubjectState>(&value).unwrap(), state);

    let legacy = serde_json::to_vec(&state).unwrap();
    assert!(
        value.len() < legacy.len(),
        "{} vs {}",
        value.len(),
        legacy.len()
    );
    let (prefix, key) = (changelog::prefix("t", 0), changelog::key("t", 0, "svc"));
    for bytes in [&value, &legacy] {
        let mut shard = Shard::default();
        changelog::restore_record(&mut shard, &prefix, &key, Some(bytes)).unwrap();
        assert_eq!(shard.subjects["svc"], state);
    }
    // A seen signal's record, old and new.
    let seen = Seen {
        key: cid("s"),
        offset: 1,
        at: 0,
        until: MIN,
    };
    for bytes in [changelog::value(&seen), serde_json::to_vec(&seen).unwrap()] {
        assert_eq!(changelog::read::<Seen>(&bytes).unwrap(), seen);
    }
    assert!(changelog::read::<Seen>(&[0xc1, 0x00]).is_err());
}

#[test]
fn a_commands_cause_keeps_the_names_every_other_entry_shares() {
    // Each decision allocates its cause's names afresh; state keeps one copy of each name.
    let mut a = SubjectState::new();
    let mut b = SubjectState::new();
    let mut update = issue("aws", "disable_credential", "c1", true);
    update.issued[0].cause.signal = Some(SignalRef {
        issuer: "https://idp.example".into(),
        id: "sig-1".into(),
    });
    assert!(a.apply(Mark { offset: 1, at: 0 }, &update, retention()));
    update.issued[0].command_id = cid("c2");
    assert!(b.apply(Mark { offset: 1, at: 0 }, &update, retention()));
    let cause = |s: &SubjectState| s.issued[0].cause.clone().unwrap();
    let (ca, cb) = (cause(&a), cause(&b));
    assert_eq!(*ca, update.issued[0].cause, "the same cause");
    assert!(Arc::ptr_eq(&ca.rule, &cb.rule));
    assert!(Arc::ptr_eq(&ca.event_type, &cb.event_type));
    let issuer = |c: &Cause| c.signal.as_ref().unwrap().issuer.clone();
    assert!(Arc::ptr_eq(&issuer(&ca), &issuer(&cb)));
    assert!(!Arc::ptr_eq(&ca.rule, &update.issued[0].cause.rule));
}
