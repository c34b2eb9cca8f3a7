//! End to end against the real broker: the seed scenarios, malformed input, and the
//! accounting invariant, by reading the daemon's output topics.

mod common;

use common::*;
use containd::codec::{AvroCodec, Schemas};
use containd::emit::{CommandKey, Outcome};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

type Expected = BTreeSet<(&'static str, &'static str, &'static str, &'static str)>;

/// What the seed rules must do with each sample signal: (signal, rule, action, target).
fn expected_commands() -> Expected {
    [
        (
            "sig-0001",
            "device-compromised-block-session",
            "block_session",
            "agent-gateway",
        ),
        (
            "sig-0001",
            "device-compromised-block-session",
            "block_session",
            "okta",
        ),
        (
            "sig-0001",
            "device-noncompliant-step-up",
            "require_step_up",
            "okta",
        ),
        (
            "sig-0001",
            "device-noncompliant-step-up",
            "require_step_up",
            "agent-gateway",
        ),
        (
            "sig-0002",
            "device-noncompliant-step-up",
            "require_step_up",
            "okta",
        ),
        (
            "sig-0002",
            "device-noncompliant-step-up",
            "require_step_up",
            "agent-gateway",
        ),
        (
            "sig-0003",
            "secret-rotated-disable-stale",
            "disable_credential",
            "aws",
        ),
        (
            "sig-0003",
            "secret-rotated-disable-stale",
            "disable_credential",
            "github-actions",
        ),
        (
            "sig-0003",
            "secret-rotated-disable-stale",
            "disable_credential",
            "active-directory",
        ),
        (
            "sig-0004",
            "pam-high-risk-session",
            "shorten_access_window",
            "cyberark",
        ),
        ("sig-0004", "pam-high-risk-session", "revoke_access", "aws"),
        (
            "sig-0004",
            "pam-high-risk-session",
            "revoke_access",
            "active-directory",
        ),
        (
            "sig-0005",
            "incident-quarantine-agent",
            "quarantine_workload",
            "kubernetes",
        ),
        (
            "sig-0005",
            "incident-quarantine-agent",
            "quarantine_workload",
            "agent-gateway",
        ),
        ("sig-0006", "policy-changed-sync", "sync_policy", "aws"),
        (
            "sig-0006",
            "policy-changed-sync",
            "sync_policy",
            "kubernetes",
        ),
        (
            "sig-0006",
            "policy-changed-sync",
            "sync_policy",
            "active-directory",
        ),
        (
            "sig-0006",
            "policy-changed-sync",
            "sync_policy",
            "github-actions",
        ),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_scenarios_yield_exactly_the_expected_commands_and_one_decision_per_signal() {
    let topics = Topics::new(&unique("seed"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let mut daemon = Daemon::start(&config, "containd.log");

    let signals = send_samples(&topics.signals).await;
    let expected = expected_commands();
    let mut out_topics = all_topics(&topics);
    out_topics.retain(|t| *t != topics.signals);
    let (mut n_decisions, mut n_commands) = (0, 0);
    let records = read_until(&out_topics, Duration::from_secs(60), |r| {
        if r.topic == topics.decisions {
            n_decisions += 1;
        } else if r.topic.contains(".commands.") {
            n_commands += 1;
        }
        n_decisions >= signals.len() && n_commands >= expected.len()
    });
    // Nothing more arrives after the expected set (a duplicate or extra would show here).
    let settle = read_until(&out_topics, Duration::from_secs(2), |_| false);
    assert_eq!(
        settle.len(),
        records.len(),
        "records beyond the expected set"
    );

    let decisions = decisions(&records, &topics);
    assert_eq!(decisions.len(), signals.len(), "one decision per signal");
    let outcome: HashMap<&str, Outcome> = decisions
        .iter()
        .map(|d| (d.signal_id.as_str(), d.outcome))
        .collect();
    assert_eq!(
        outcome["sig-0007"],
        Outcome::DryRun,
        "dry-run rule decides but emits nothing"
    );
    assert_eq!(
        outcome["sig-0008"],
        Outcome::NoMatch,
        "device compliant again: no rule"
    );
    for id in [
        "sig-0001", "sig-0002", "sig-0003", "sig-0004", "sig-0005", "sig-0006",
    ] {
        assert_eq!(outcome[id], Outcome::Acted, "{id}");
    }

    let commands = commands(&records, &topics);
    let got: BTreeSet<(String, String, String, String)> = commands
        .iter()
        .map(|(_, c)| {
            (
                c.why.signal_ids[0].clone(),
                c.why.rule_id.clone(),
                c.action.clone(),
                c.target.clone(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = expected
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        commands.len(),
        expected.len(),
        "no duplicates in a clean run"
    );

    let by_id: HashMap<&str, &containd::signal::Signal> =
        signals.iter().map(|s| (s.id.as_str(), s)).collect();
    for (record, c) in &commands {
        let signal = by_id[c.why.signal_ids[0].as_str()];
        assert_eq!(
            record.topic,
            topics.target(&c.target),
            "routed to its target's topic"
        );
        assert_eq!(
            c.command_id,
            CommandKey {
                issuer: &signal.source.issuer,
                signal_id: &signal.id,
                subject_id: &signal.subject.id().unwrap(),
                rule_id: &c.why.rule_id,
                action: &c.action,
                target: &c.target,
                principal: c.principal_id.as_deref(),
            }
            .id(),
            "deterministic id"
        );
        let subject = signal.subject.id().unwrap();
        assert_eq!(c.subject.id, subject);
        assert_eq!(
            record.key.as_deref(),
            Some(subject.as_bytes()),
            "keyed by subject"
        );
        assert_eq!(c.why.ruleset_version, decisions[0].ruleset_version);
    }
    let param = |sig: &str, action: &str, name: &str| {
        commands
            .iter()
            .find(|(_, c)| c.why.signal_ids[0] == sig && c.action == action)
            .and_then(|(_, c)| c.parameters.get(name).cloned())
    };
    assert_eq!(
        param("sig-0003", "disable_credential", "credential_id").as_deref(),
        Some("AKIA-OLD-7731")
    );
    assert_eq!(
        param("sig-0004", "shorten_access_window", "window").as_deref(),
        Some("15m")
    );
    assert_eq!(
        param("sig-0004", "shorten_access_window", "session_id").as_deref(),
        Some("psm-55012")
    );
    assert_eq!(
        param("sig-0005", "quarantine_workload", "incident_id").as_deref(),
        Some("IR-2026-1142")
    );
    assert_eq!(
        param("sig-0001", "block_session", "device_id").as_deref(),
        Some("dev-build-42")
    );

    assert!(
        daemon.terminate().success(),
        "clean exit on SIGTERM:\n{}",
        daemon.log_text()
    );
}

/// Every malformed kind lands in the dead-letter topic with its reason, original bytes and
/// position; valid signals around them are decided; consumed = decisions + dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_is_dead_lettered_and_the_stream_keeps_going() {
    let topics = Topics::new(&unique("bad"));
    let avro_topic = format!("{}.signals-avro", topics.prefix);
    let confluent_topic = format!("{}.signals-confluent", topics.prefix);
    let mut all = all_topics(&topics);
    all.push(avro_topic.clone());
    all.push(confluent_topic.clone());
    create_topics(&all).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &topics,
        &unique("g"),
        &format!(
            "formats = {{ \"{avro_topic}\" = \"avro\", \"{confluent_topic}\" = \"confluent\" }}\nconfluent_schema_ids = [5]\nmax_message_bytes = 4096"
        ),
    );
    // Consume all three topics through a regex subscription.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("topics = [\"{}\"]", topics.signals),
        &format!(
            "topic_pattern = '^{}\\.signals.*'",
            topics.prefix.replace('.', "\\.")
        ),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, "containd.log");

    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[5]);
    let mut valid = sample_signals()[5].clone(); // policy change: 4 commands
    let p = producer();
    let mut n_valid = 0;
    let mut send_valid = |topic: String| {
        n_valid += 1;
        valid.id = format!("valid-{n_valid}");
        let bytes = if topic == avro_topic {
            codec.encode_signal(&valid).unwrap()
        } else if topic == confluent_topic {
            codec.encode_signal_confluent(&valid, 5).unwrap()
        } else {
            serde_json::to_vec(&valid).unwrap()
        };
        (topic, bytes)
    };
    let json = topics.signals.clone();
    let good_avro = codec.encode_signal(&sample_signals()[0]).unwrap();
    let mut unknown_fp = good_avro.clone();
    unknown_fp[5] ^= 0x5a;
    let unknown_subject = serde_json::to_vec(&{
        let mut s = sample_signals()[2].clone();
        s.subject.format = "carrier-pigeon".into();
        s
    })
    .unwrap();
    let mut oversized = serde_json::to_value(&sample_signals()[2]).unwrap();
    oversized["attributes"]["padding"] = "x".repeat(5000).into();
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (
            json.clone(),
            b"\x00\x01garbage\xff".to_vec(),
            "malformed_json",
        ),
        (
            avro_topic.clone(),
            good_avro[..good_avro.len() - 7].to_vec(),
            "malformed_avro",
        ),
        (avro_topic.clone(), unknown_fp, "unknown_schema_fingerprint"),
        (
            avro_topic.clone(),
            b"not avro at all".to_vec(),
            "bad_framing",
        ),
        (
            confluent_topic.clone(),
            codec
                .encode_signal_confluent(&sample_signals()[0], 99)
                .unwrap(),
            "unknown_schema_id",
        ),
        (
            json.clone(),
            br#"{"id":"x","source":{"issuer":"i"}}"#.to_vec(),
            "missing_field",
        ),
        (json.clone(), unknown_subject, "unknown_subject_format"),
        (
            json.clone(),
            serde_json::to_vec(&oversized).unwrap(),
            "oversized",
        ),
    ];
    let mut sequence = Vec::new();
    for (topic, bytes, _) in &bad {
        sequence.push(send_valid(topic.clone()));
        sequence.push((topic.clone(), bytes.clone()));
    }
    sequence.push(send_valid(json.clone()));
    sequence.push(send_valid(avro_topic.clone()));
    sequence.push(send_valid(confluent_topic.clone()));
    for (i, (topic, bytes)) in sequence.iter().enumerate() {
        produce(&p, topic, Some(&format!("key-{i}")), bytes).await;
    }
    let total = sequence.len();
    let records = read_until(
        &[topics.decisions.clone(), topics.dead_letter.clone()],
        Duration::from_secs(60),
        count(total),
    );
    let dead: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic == topics.dead_letter)
        .collect();
    let decided = decisions(&records, &topics);
    assert_eq!(
        dead.len(),
        bad.len(),
        "one dead letter per malformed record"
    );
    assert_eq!(
        decided.len(),
        n_valid,
        "every valid signal before and after is decided"
    );
    assert!(decided.iter().all(|d| d.outcome == Outcome::Acted));

    for (topic, bytes, kind) in &bad {
        let d = dead
            .iter()
            .find(|d| &d.payload == bytes)
            .unwrap_or_else(|| panic!("{kind}: original bytes not in the dead-letter topic"));
        assert_eq!(
            d.headers["containd.reason.kind"], *kind,
            "reason: {}",
            d.headers["containd.reason"]
        );
        assert!(!d.headers["containd.reason"].is_empty());
        assert_eq!(&d.headers["containd.source.topic"], topic);
        assert!(d.headers["containd.source.offset"].parse::<i64>().is_ok());
        assert!(d.headers["containd.source.partition"]
            .parse::<i32>()
            .is_ok());
        assert!(
            d.key.as_deref().is_some_and(|k| k.starts_with(b"key-")),
            "original key kept"
        );
    }

    // The invariant, from the daemon's own metrics.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = daemon.metrics().await;
        if metric_sum(&metrics, "containd_signals_consumed_total") >= total as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let consumed = metric_sum(&metrics, "containd_signals_consumed_total");
    let decisions_total = metric_sum(&metrics, "containd_decisions_total");
    let dead_total = metric_sum(&metrics, "containd_dead_letters_total");
    assert_eq!(consumed, total as f64, "{metrics}");
    assert_eq!(
        consumed,
        decisions_total + dead_total,
        "consumed = decisions + dead letters"
    );
    assert_eq!(dead_total, bad.len() as f64);
    assert_eq!(
        metric_sum(&metrics, "containd_commands_total"),
        (n_valid * 4) as f64
    );
    let ready = http_get(daemon.metrics_port, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.0 200") || ready.starts_with("HTTP/1.1 200"),
        "{ready}"
    );
}
