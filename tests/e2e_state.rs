//! End to end against the real broker: per-subject state (windows, suppression, restore) that
//! survives kill -9, restarts and rebalances, and the NHI inventory (enrichment, blast radius,
//! updates).

mod common;

use common::*;
use containd::emit::{DecisionRecord, Outcome};
use std::path::Path;
use std::time::Duration;

const RULES: &str = r#"
rules:
  - id: burst
    match: {event_types: ["urn:test:risk"]}
    window: {within: 10m, count: 3}
    actions:
      - action: revoke_sessions
        targets: [okta]
  - id: repeat
    match: {event_types: ["urn:test:repeat"]}
    suppress_for: 1h
    actions:
      - action: revoke_sessions
        targets: [okta]
  - id: contain
    match: {event_types: ["urn:test:contain"]}
    actions:
      - action: quarantine_workload
        targets: [aws, kubernetes]
      - action: revoke_sessions
        targets: [okta]
  - id: recover
    match: {event_types: ["urn:test:recovered"]}
    actions:
      - action: restore
        targets: [contained]
  - id: leaked-key
    match: {event_types: ["urn:test:key-leaked"]}
    suppress_for: 1h
    actions:
      - action: disable_credential
        targets: [aws]
        parameters:
          credential_id: {cel: "signal.attributes.credential_id"}
  - id: noncompliant
    match: {event_types: ["urn:test:noncompliant"]}
    actions:
      - action: block_session
        targets: [okta]
        parameters:
          device_id: {cel: "signal.attributes.device_id"}
  - id: compliant
    match: {event_types: ["urn:test:compliant"]}
    actions:
      - action: restore
        targets: [contained]
        lifts: {rules: [noncompliant]}
        parameters:
          device_id: {cel: "signal.attributes.device_id"}
  - id: leak-expiring
    match: {event_types: ["urn:test:leak-expiring"]}
    actions:
      - action: disable_credential
        targets: [aws]
        expires_in: 10s
        on_expiry: restore
        parameters:
          credential_id: {cel: "signal.attributes.credential_id"}
  - id: leak
    match: {event_types: ["urn:test:leak"]}
    actions:
      - action: disable_credential
        targets: [where_identity_has_access]
"#;

/// A deployment: topics created, config written with the test rules (and `sections`).
async fn deploy(name: &str, sections: &str) -> (tempfile::TempDir, Topics, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique(name));
    create_topics(&all_topics(&topics)).await;
    // The test's own issuer, allowed everything (trust is tested in e2e_trust).
    let sections = format!(
        "[[sources]]\nissuer = \"https://test\"\nevent_types = [\"*\"]\nactions = [\"*\"]\n\n{sections}"
    );
    let config = write_config_with(dir.path(), &topics, &unique("g"), "", &sections);
    let rules = dir.path().join("rules");
    for f in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("state.yaml"), RULES).unwrap();
    (dir, topics, config)
}

fn signal(id: &str, event_type: &str, subject: &str) -> Vec<u8> {
    signal_with(id, event_type, subject, serde_json::json!({}))
}

fn signal_with(
    id: &str,
    event_type: &str,
    subject: &str,
    attributes: serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "source": {"issuer": "https://test"}, "event_type": event_type,
        "occurred_at": 1, "subject": {"format": "opaque", "identifiers": {"id": subject}},
        "attributes": attributes}))
    .unwrap()
}

async fn send(topics: &Topics, id: &str, event_type: &str, subject: &str) {
    produce(
        &producer(),
        &topics.signals,
        Some(subject),
        &signal(id, event_type, subject),
    )
    .await;
}

/// Decisions read back until `n` have arrived.
fn wait_decisions(topics: &Topics, n: usize) -> Vec<DecisionRecord> {
    let records = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(n),
    );
    let d = decisions(&records, topics);
    assert_eq!(d.len(), n, "decisions arrived: {d:?}");
    d
}

fn all_commands(topics: &Topics, n: usize) -> Vec<containd::emit::EnforcementCommand> {
    let names: Vec<String> = TARGETS.iter().map(|t| topics.target(t)).collect();
    let records = read_until(&names, Duration::from_secs(30), count(n));
    commands(&records, topics)
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

/// Waits until the daemon's metric reaches `at_least`.
async fn wait_metric(daemon: &Daemon, name: &str, at_least: f64) {
    for _ in 0..300 {
        if metric_sum(&daemon.metrics().await, name) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never reached {at_least}:\n{}", daemon.log_text());
}

fn pending_count(d: &DecisionRecord) -> i32 {
    d.pending.first().map_or(0, |p| p.count)
}

fn with_long_commit_interval(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("commit_interval = \"100ms\"", "commit_interval = \"1h\""),
    )
    .unwrap();
}

/// The window fires on the third signal and not before, and a kill -9 after the state was
/// written but before any offset was committed double-counts nothing: the replayed signals
/// decide exactly as they did, and only the real third signal fires.
#[tokio::test(flavor = "multi_thread")]
async fn window_fires_on_the_nth_and_a_crash_replay_counts_nothing_twice() {
    let (_dir, topics, config) = deploy("window", "").await;
    with_long_commit_interval(&config);
    let mut first = Daemon::start(&config, "window-1");
    send(&topics, "w-1", "urn:test:risk", "svc-w").await;
    send(&topics, "w-2", "urn:test:risk", "svc-w").await;
    let before = wait_decisions(&topics, 2);
    assert!(before.iter().all(|d| d.outcome == Outcome::Pending));
    assert_eq!(before.iter().map(pending_count).collect::<Vec<_>>(), [1, 2]);
    // Both state updates are in the changelog before the crash.
    let state = read_until(
        std::slice::from_ref(&topics.state),
        Duration::from_secs(30),
        count(2),
    );
    assert_eq!(state.len(), 2, "changelog records");
    first.kill9();

    let second = Daemon::start(&config, "window-2");
    // Nothing was committed, so both signals are decided again, from the restored state.
    let replayed = wait_decisions(&topics, 4);
    assert!(replayed[2..].iter().all(|d| d.outcome == Outcome::Pending));
    assert_eq!(
        replayed[2..].iter().map(pending_count).collect::<Vec<_>>(),
        [1, 2],
        "replays see the window as it was, not counted twice"
    );
    send(&topics, "w-3", "urn:test:risk", "svc-w").await;
    let all = wait_decisions(&topics, 5);
    assert_eq!(all[4].outcome, Outcome::Acted, "{:?}", all[4]);
    let commands = all_commands(&topics, 2);
    assert_eq!(
        commands.len(),
        1,
        "one revoke, on the third signal: {commands:?}"
    );
    assert_eq!(
        commands[0].why.signal_ids,
        ["w-1", "w-2", "w-3"],
        "every signal that filled the window, each once"
    );
    drop(second);
}

/// Suppression holds across a restart, a restore reaches exactly the contained targets, and a
/// second recovery signal restores nothing (closed containments stay closed).
#[tokio::test(flavor = "multi_thread")]
async fn suppression_and_restore_survive_a_restart() {
    let (_dir, topics, config) = deploy("restore", "").await;
    let mut first = Daemon::start(&config, "restore-1");
    send(&topics, "r-1", "urn:test:repeat", "svc-r").await;
    send(&topics, "r-2", "urn:test:contain", "svc-r").await;
    let d = wait_decisions(&topics, 2);
    // The latest revoke_sessions to okta before r-3 is r-2's (contain also revokes).
    let okta = containd::emit::CommandKey {
        issuer: "https://test",
        signal_id: "r-2",
        subject_id: "svc-r",
        rule_id: "contain",
        action: "revoke_sessions",
        target: "okta",
        principal: None,
    }
    .id();
    assert!(d[1].command_ids.contains(&okta));
    assert!(first.terminate().success());

    let second = Daemon::start(&config, "restore-2");
    send(&topics, "r-3", "urn:test:repeat", "svc-r").await;
    send(&topics, "r-4", "urn:test:recovered", "svc-r").await;
    send(&topics, "r-5", "urn:test:recovered", "svc-r").await;
    let d = wait_decisions(&topics, 5);
    assert_eq!(d[2].outcome, Outcome::Suppressed, "{:?}", d[2]);
    assert_eq!(d[2].matched_rules[0].suppressed[0].earlier_command_id, okta);
    assert_eq!(d[3].outcome, Outcome::Acted);
    assert_eq!(d[4].outcome, Outcome::MatchedNoAction, "{:?}", d[4]);

    // r-1: okta; r-2: aws, kubernetes, okta; r-4: restore on aws and kubernetes only.
    let commands = all_commands(&topics, 6);
    let mut restores: Vec<(&str, &str)> = commands
        .iter()
        .filter(|c| c.action == "restore")
        .map(|c| (c.target.as_str(), c.parameters["restores"].as_str()))
        .collect();
    restores.sort();
    assert_eq!(
        restores,
        [
            ("aws", "quarantine_workload"),
            ("kubernetes", "quarantine_workload")
        ]
    );
    assert_eq!(commands.len(), 6, "{commands:?}");
    drop(second);
}

/// A partition that moves to a second instance (the first leaves the group) carries its
/// state: the third signal of the window fires there.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_moving_to_another_instance_carries_its_state() {
    let (_dir, topics, config) = deploy("move", "").await;
    let mut first = Daemon::start(&config, "move-1");
    send(&topics, "m-1", "urn:test:risk", "svc-m").await;
    send(&topics, "m-2", "urn:test:risk", "svc-m").await;
    wait_decisions(&topics, 2);
    // The second instance gets its own telemetry port.
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = dir2.path().join("containd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let text = regex::Regex::new(r#"listen = "127\.0\.0\.1:\d+""#)
        .unwrap()
        .replace(&text, format!(r#"listen = "127.0.0.1:{port}""#).as_str())
        .replace(
            "dir = \"rules\"",
            &format!("dir = {:?}", config.parent().unwrap().join("rules")),
        );
    std::fs::write(&config2, text).unwrap();
    let second = Daemon::start(&config2, "move-2");
    wait_metric(&second, "containd_assigned_partitions", 1.0).await;
    assert!(first.terminate().success());
    wait_metric(&second, "containd_assigned_partitions", PARTITIONS as f64).await;

    send(&topics, "m-3", "urn:test:risk", "svc-m").await;
    let d = wait_decisions(&topics, 3);
    assert_eq!(d[2].outcome, Outcome::Acted, "{:?}", d[2]);
    assert_eq!(all_commands(&topics, 1).len(), 1);
    assert!(
        metric_sum(
            &second.metrics().await,
            "containd_state_restore_seconds_count"
        ) >= 1.0
    );
}

fn identity(access: &[(&str, &str)], owner: bool) -> Vec<u8> {
    let access: Vec<serde_json::Value> = access
        .iter()
        .map(|(t, p)| serde_json::json!({"target": t, "principal_id": p}))
        .collect();
    let mut r = serde_json::json!({"id": "svc-b", "aliases": ["client-b"], "kind": "oauth_client",
        "criticality": "high", "access": access});
    if owner {
        r["owner"] = serde_json::json!({"team": "payments"});
    }
    serde_json::to_vec(&r).unwrap()
}

/// Blast radius: one command per target the inventory lists (that accepts the action), each
/// with the identity's principal there; an inventory update is used by the next decision;
/// unknown and owner-less identities show in the decision record.
#[tokio::test(flavor = "multi_thread")]
async fn blast_radius_follows_the_inventory() {
    let inventory = unique("inventory");
    create_topics(std::slice::from_ref(&inventory)).await;
    let p = producer();
    produce(
        &p,
        &inventory,
        Some("svc-b"),
        &identity(
            &[
                ("aws", "arn:aws:iam::1:role/b"),
                ("github-actions", "repo:acme/b"),
                ("kubernetes", "system:serviceaccount:b"),
            ],
            false,
        ),
    )
    .await;
    let (_dir, topics, config) = deploy(
        "blast",
        &format!("[inventory]\ntopic = \"{inventory}\"\nformat = \"json\"\n"),
    )
    .await;
    let daemon = Daemon::start(&config, "blast");
    send(&topics, "b-1", "urn:test:leak", "client-b").await;
    let d = wait_decisions(&topics, 1);
    assert_eq!(d[0].identity.id.as_deref(), Some("svc-b"));
    assert!(d[0].identity.ownerless, "no owner in the record: flagged");
    let mut got: Vec<(String, Option<String>)> = all_commands(&topics, 2)
        .into_iter()
        .map(|c| (c.target, c.principal_id))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("aws".to_string(), Some("arn:aws:iam::1:role/b".to_string())),
            (
                "github-actions".to_string(),
                Some("repo:acme/b".to_string())
            ),
        ],
        "kubernetes does not accept disable_credential"
    );
    assert!(
        d[0].notes.iter().any(|n| n.contains("kubernetes")),
        "{:?}",
        d[0].notes
    );

    // New access on active-directory, none left on github-actions, a new principal on aws.
    produce(
        &p,
        &inventory,
        Some("svc-b"),
        &identity(
            &[
                ("aws", "arn:aws:iam::1:role/b2"),
                ("active-directory", "CN=svc-b"),
            ],
            true,
        ),
    )
    .await;
    wait_metric(&daemon, "containd_inventory_records_total", 2.0).await;
    send(&topics, "b-2", "urn:test:leak", "svc-b").await;
    send(&topics, "b-3", "urn:test:leak", "nobody-knows-me").await;
    // Different subjects land on different partitions: find each decision by its signal.
    let d = wait_decisions(&topics, 3);
    let by_id = |id: &str| d.iter().find(|x| x.signal_id == id).unwrap();
    assert!(!by_id("b-2").identity.ownerless);
    let unknown = by_id("b-3");
    assert_eq!(unknown.identity.id, None);
    assert_eq!(unknown.identity.kind, "unknown");
    assert_eq!(unknown.outcome, Outcome::MatchedNoAction);
    let mut second: Vec<(String, Option<String>)> = all_commands(&topics, 4)
        .into_iter()
        .filter(|c| c.why.signal_ids == ["b-2"])
        .map(|c| (c.target, c.principal_id))
        .collect();
    second.sort();
    assert_eq!(
        second,
        [
            ("active-directory".to_string(), Some("CN=svc-b".to_string())),
            (
                "aws".to_string(),
                Some("arn:aws:iam::1:role/b2".to_string())
            ),
        ]
    );
    let m = daemon.metrics().await;
    assert_eq!(
        metric_sum(&m, "containd_decided_identities_total{reason=\"unknown\"}"),
        1.0
    );
}

/// Suppression by object and a cause-tied restore, across a kill -9: a second leaked key is
/// disabled, a repeat of the first is suppressed by the command issued before the crash,
/// device B's compliance lifts nothing, device A's lifts exactly A's block.
#[tokio::test(flavor = "multi_thread")]
async fn objects_and_causes_survive_a_kill9() {
    let (_dir, topics, config) = deploy("objects", "").await;
    let send_with = |id: &'static str, et: &'static str, attrs: serde_json::Value| {
        let topics = topics.clone();
        async move {
            let payload = signal_with(id, et, "svc-o", attrs);
            produce(&producer(), &topics.signals, Some("svc-o"), &payload).await;
        }
    };
    let mut first = Daemon::start(&config, "objects-1");
    send_with(
        "o-1",
        "urn:test:key-leaked",
        serde_json::json!({"credential_id": "KEY-1"}),
    )
    .await;
    send_with(
        "o-2",
        "urn:test:noncompliant",
        serde_json::json!({"device_id": "dev-A"}),
    )
    .await;
    let d = wait_decisions(&topics, 2);
    assert!(d.iter().all(|d| d.outcome == Outcome::Acted), "{d:?}");
    let state = read_until(
        std::slice::from_ref(&topics.state),
        Duration::from_secs(30),
        count(2),
    );
    assert_eq!(state.len(), 2, "changelog records");
    first.kill9();

    let _second = Daemon::start(&config, "objects-2");
    send_with(
        "o-3",
        "urn:test:key-leaked",
        serde_json::json!({"credential_id": "KEY-2"}),
    )
    .await;
    send_with(
        "o-4",
        "urn:test:key-leaked",
        serde_json::json!({"credential_id": "KEY-1"}),
    )
    .await;
    send_with(
        "o-5",
        "urn:test:compliant",
        serde_json::json!({"device_id": "dev-B"}),
    )
    .await;
    send_with(
        "o-6",
        "urn:test:compliant",
        serde_json::json!({"device_id": "dev-A"}),
    )
    .await;
    // Replays of o-1/o-2 (if their offsets were not committed) may come first: read until
    // the last signal's decision (one subject, one partition: everything before it is there).
    let c = codec();
    let records = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        |r| {
            c.decode_decision::<DecisionRecord>(&r.payload)
                .is_ok_and(|d| d.signal_id == "o-6")
        },
    );
    let all = decisions(&records, &topics);
    let last = |id: &str| {
        all.iter()
            .rev()
            .find(|d| d.signal_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        last("o-3").outcome,
        Outcome::Acted,
        "another key is acted on"
    );
    let o4 = last("o-4");
    assert_eq!(o4.outcome, Outcome::Suppressed, "{o4:?}");
    assert_eq!(
        o4.matched_rules[0].suppressed[0].earlier_command_id,
        last("o-1").command_ids[0],
        "suppressed by the command issued before the crash"
    );
    let o5 = last("o-5");
    assert_eq!(o5.outcome, Outcome::MatchedNoAction, "{o5:?}");
    assert!(
        o5.notes
            .iter()
            .any(|n| n.contains("concerns dev-A, not dev-B")),
        "{o5:?}"
    );
    assert_eq!(last("o-6").outcome, Outcome::Acted);
    let restores: Vec<_> = all_commands(&topics, 4)
        .into_iter()
        .filter(|c| c.action == "restore")
        .collect();
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0].target, "okta");
    assert_eq!(
        restores[0].parameters["restores_command_ids"],
        last("o-2").command_ids[0],
        "exactly dev-A's block is lifted"
    );
}

/// A containment with `on_expiry: restore` is restored by containd itself when it expires —
/// cause-tied, by the instance that took over after a kill -9 and without any new signal —
/// unless another containment of the same kind still holds; and never twice, also after a
/// restart.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_containment_is_restored_once_across_a_kill9() {
    let (_dir, topics, config) = deploy("expiry", "").await;
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("[state]\n", "[state]\nsweep_interval = \"300ms\"\n");
    std::fs::write(&config, text).unwrap();
    let send_key = |id: &'static str, et: &'static str, subject: &'static str, key: &str| {
        let payload = signal_with(id, et, subject, serde_json::json!({"credential_id": key}));
        let topic = topics.signals.clone();
        async move { produce(&producer(), &topic, Some(subject), &payload).await }
    };
    let mut first = Daemon::start(&config, "expiry-1");
    // svc-x: a leak contained for 10 s. svc-y: the same, and a second, open-ended disable of
    // the same key (the rule `leaked-key`): its expiry must not lift that one.
    send_key("x-1", "urn:test:leak-expiring", "svc-x", "AK-X").await;
    send_key("y-1", "urn:test:leak-expiring", "svc-y", "AK-Y").await;
    send_key("y-2", "urn:test:key-leaked", "svc-y", "AK-Y").await;
    let d = wait_decisions(&topics, 3);
    assert!(d.iter().all(|d| d.outcome == Outcome::Acted), "{d:?}");
    let expiring: Vec<String> = d[..2].iter().map(|d| d.command_ids[0].clone()).collect();
    read_until(
        std::slice::from_ref(&topics.state),
        Duration::from_secs(30),
        count(2),
    );
    first.kill9();

    let mut second = Daemon::start(&config, "expiry-2");
    let records = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(90),
        count(5),
    );
    let expired: Vec<DecisionRecord> = decisions(&records, &topics)
        .into_iter()
        .filter(|d| d.outcome == Outcome::Expired)
        .collect();
    assert_eq!(expired.len(), 2, "{expired:?}\n{}", second.log_text());
    let x = expired.iter().find(|d| d.subject_id == "svc-x").unwrap();
    let y = expired.iter().find(|d| d.subject_id == "svc-y").unwrap();
    let restore_id = containd::decide::expiry::restore_id(&expiring[0]);
    assert_eq!(x.command_ids, vec![restore_id.clone()], "{x:?}");
    assert!(y.command_ids.is_empty(), "{y:?}");
    assert!(y.notes[0].contains("still holds"), "{:?}", y.notes);
    wait_metric(&second, "containd_containments_expired_total", 2.0).await;
    // The state's mark that the restore went out is written once its outputs are
    // acknowledged: give it a sweep, then stop cleanly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(second.terminate().success());

    // A third instance finds nothing left to restore.
    let third = Daemon::start(&config, "expiry-3");
    send_key("z-1", "urn:test:repeat", "svc-z", "-").await;
    wait_decisions(&topics, 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = read_until_idle(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let expired = decisions(&records, &topics)
        .into_iter()
        .filter(|d| d.outcome == Outcome::Expired)
        .count();
    assert_eq!(expired, 2, "{}", third.log_text());
    let commands = all_commands(&topics, 5);
    let restores: Vec<_> = commands.iter().filter(|c| c.action == "restore").collect();
    assert_eq!(restores.len(), 1, "{restores:?}");
    let r = restores[0];
    assert_eq!(
        (r.command_id.as_str(), r.target.as_str()),
        (restore_id.as_str(), "aws")
    );
    assert_eq!(r.parameters["restores_command_ids"], expiring[0]);
    assert_eq!(r.parameters["restores"], "disable_credential");
    assert_eq!(r.parameters["restores_signal_ids"], "x-1");
    assert_eq!(r.subject.id, "svc-x");
    // `containd status` tells the incident commander containd lifted it, and with what.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(["status", "--subject", "svc-x", "--json", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &status["commands"][0];
    assert_eq!(status["open"], 0, "{status}");
    assert_eq!(entry["command_id"], expiring[0].as_str(), "{status}");
    assert_eq!(entry["restore_on_expiry"]["state"], "issued", "{status}");
    assert_eq!(
        entry["restore_on_expiry"]["command_id"],
        restore_id.as_str()
    );
}
