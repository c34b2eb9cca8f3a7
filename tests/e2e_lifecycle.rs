//! The command lifecycle on the real broker, with the reference adapter (docs/adapters.md):
//! every command confirmed and time to containment measured; with failures and a silent
//! target, every command that never succeeds is re-sent under its own id and escalated
//! exactly once — also across a kill -9 of containd.

mod common;

use common::*;
use containd::emit::result::ATTEMPT_HEADER;
use containd::emit::{CommandResult, DecisionRecord, EnforcementCommand, Outcome, ResultStatus};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LEAK: &str = "urn:containd:event:secrets:credential-leaked";

/// A leak disables the credential at the given targets (one command per target a signal).
fn rule(targets: &str) -> String {
    format!(
        r#"rules:
  - id: leak-disable
    match:
      event_types: ["{LEAK}"]
    actions:
      - action: disable_credential
        targets: [{targets}]
        parameters:
          credential_id: {{cel: "signal.attributes.credential_id"}}
"#
    )
}

/// A deployment with lifecycle tracking on: a results topic, a seal key, a fast sweep.
struct Deployment {
    _dir: tempfile::TempDir,
    topics: Topics,
    results: String,
    config: PathBuf,
}

async fn deployment(name: &str, targets: &str, lifecycle: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique(name));
    let results = format!("{}.results", topics.prefix);
    let mut names = all_topics(&topics);
    names.push(results.clone());
    create_topics(&names).await;
    let key = dir.path().join("lifecycle.key");
    std::fs::write(&key, "a lifecycle key of 32 bytes.....").unwrap();
    let sections = format!(
        "[lifecycle]\nenabled = true\nresults_topic = \"{results}\"\nkey_file = \"{}\"\n{lifecycle}",
        key.display()
    );
    let config = write_config_with(dir.path(), &topics, &unique("g"), "", &sections);
    let rules = dir.path().join("rules");
    for entry in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("leak.yaml"), rule(targets)).unwrap();
    // Clocks checked every 200 ms (the default is a minute).
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[state]\n", "[state]\nsweep_interval = \"200ms\"\n");
    std::fs::write(&config, text).unwrap();
    Deployment {
        _dir: dir,
        topics,
        results,
        config,
    }
}

fn leak(n: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("leak-{n}"),
        "source": {"issuer": "https://vault.acme.example"},
        "event_type": LEAK,
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "subject": {"format": "opaque", "identifiers": {"id": format!("svc-{n}")}},
        "attributes": {"credential_id": format!("AKIA{n:08}")}
    }))
    .unwrap()
}

async fn send_leaks(topic: &str, range: std::ops::Range<usize>) {
    let p = producer();
    for chunk in range.collect::<Vec<_>>().chunks(250) {
        let sends = chunk.iter().map(|i| {
            let (key, payload, p) = (format!("svc-{i}"), leak(*i), &p);
            async move { produce(p, topic, Some(&key), &payload).await }
        });
        futures::future::join_all(sends).await;
    }
}

/// Decision records with this outcome, once `n` of them are on the topic (or `max` passed).
fn outcomes(d: &Deployment, outcome: Outcome, n: usize, max: Duration) -> Vec<DecisionRecord> {
    let deadline = Instant::now() + max;
    loop {
        let records = read_until_idle(
            std::slice::from_ref(&d.topics.decisions),
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        let found: Vec<DecisionRecord> = decisions(&records, &d.topics)
            .into_iter()
            .filter(|r| r.outcome == outcome)
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every command read on a target topic: (command, the attempt header).
fn sends(d: &Deployment, target: &str) -> Vec<(EnforcementCommand, u32)> {
    let records = read_until_idle(
        &[d.topics.target(target)],
        Duration::from_secs(3),
        Duration::from_secs(90),
    );
    let codec = codec();
    records
        .iter()
        .map(|r| {
            let c = codec.decode_command(&r.payload).expect("command decodes");
            let attempt = r
                .headers
                .get(ATTEMPT_HEADER)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            (c, attempt)
        })
        .collect()
}

/// The adapters' results (containd's own sealed records skipped: they are JSON).
fn results(d: &Deployment) -> Vec<CommandResult> {
    let records = read_until_idle(
        std::slice::from_ref(&d.results),
        Duration::from_secs(3),
        Duration::from_secs(90),
    );
    let codec = codec();
    records
        .iter()
        .filter(|r| !r.headers.contains_key("containd.seal"))
        .map(|r| codec.decode_result(&r.payload).expect("result decodes"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_commands_are_all_confirmed_and_time_to_containment_is_measured() {
    const N: usize = 1_000;
    let d = deployment("lifecycle-ok", "aws", "result_timeout = \"5m\"\n").await;
    let daemon = Daemon::start(&d.config, "containd.log");
    let _aws = Adapter::start(&d.config, "aws", &d.results, "0");
    send_leaks(&d.topics.signals, 0..N).await;

    let confirmed = outcomes(&d, Outcome::Confirmed, N, Duration::from_secs(180));
    let signals: BTreeSet<&str> = confirmed.iter().map(|r| r.signal_id.as_str()).collect();
    assert_eq!(signals.len(), N, "{}", daemon.log_text());
    let sent = sends(&d, "aws");
    let ids: BTreeSet<&str> = sent.iter().map(|(c, _)| c.command_id.as_str()).collect();
    assert_eq!(ids.len(), N);
    assert!(
        sent.iter().all(|(_, attempt)| *attempt == 1),
        "nothing re-sent"
    );

    let metrics = http_get(daemon.metrics_port, "/metrics").await;
    let ttc = |from: &str| {
        metric_sum(
            &metrics,
            &format!(
                "containd_time_to_containment_seconds_count{{target=\"aws\",from=\"{from}\"}}"
            ),
        )
    };
    assert_eq!(ttc("occurred"), N as f64, "{metrics}");
    assert_eq!(ttc("received"), N as f64);
    let succeeded = "containd_command_results_total{target=\"aws\",action=\"disable_credential\",status=\"succeeded\"}";
    assert_eq!(metric_sum(&metrics, succeeded), N as f64);
    let open: f64 = ["under_1m", "1m_to_5m", "5m_to_1h", "over_1h"]
        .iter()
        .map(|age| {
            let series = format!("containd_open_access_paths{{target=\"aws\",age=\"{age}\"}}");
            metric_sum(&metrics, &series)
        })
        .sum();
    assert_eq!(open, 0.0, "no path left open: {metrics}");
    assert!(metrics.contains("containd_commands_resent_total{target=\"aws\"} 0"));

    forged_tracking_records_are_dead_lettered_and_send_nothing(&d).await;
}

/// Anyone who can write the results topic: a tracking record edited (its seal no longer
/// verifies) and a sealed one copied to another partition are dead-lettered, and neither makes
/// containd send or track anything.
async fn forged_tracking_records_are_dead_lettered_and_send_nothing(d: &Deployment) {
    let ours = read_until_idle(
        std::slice::from_ref(&d.results),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .into_iter()
    .find(|r| r.headers.contains_key("containd.seal"))
    .expect("containd's tracking records on the results topic");
    let seal = ours.headers["containd.seal"].clone();
    let mut issued: serde_json::Value = serde_json::from_slice(&ours.payload).unwrap();
    let partition = issued["partition"].as_i64().unwrap() as i32;
    let other = (partition + 1) % PARTITIONS;
    let copy = ours.payload.clone();
    issued["command"]["command_id"] = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0".into();
    issued["command"]["action"] = "disable_credential".into();
    let edited = serde_json::to_vec(&issued).unwrap();
    let p = producer();
    for (payload, to) in [(&edited, partition), (&copy, other)] {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "containd.seal",
            value: Some(seal.as_bytes()),
        });
        let record = rdkafka::producer::FutureRecord::to(&d.results)
            .key("svc-forged")
            .partition(to)
            .payload(payload)
            .headers(headers);
        p.send(record, Duration::from_secs(10))
            .await
            .expect("produced");
    }
    let dead = read_until(
        std::slice::from_ref(&d.topics.dead_letter),
        Duration::from_secs(60),
        count(2),
    );
    let kinds: Vec<&str> = dead
        .iter()
        .map(|r| r.headers["containd.reason.kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["unsealed_tracking", "unsealed_tracking"],
        "{dead:?}"
    );
    assert!(dead
        .iter()
        .any(|r| r.headers["containd.reason"].contains("a copy, not containd's")));
    // Nothing re-sent or escalated because of them: the aws topic still holds N first sends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = sends(d, "aws");
    assert!(sent
        .iter()
        .all(|(c, a)| *a == 1 && !c.command_id.starts_with("f0f0")));
}

/// aws fails 30 % of attempts, github-actions never answers; two attempts each, then
/// `disable_account` at okta. containd is killed -9 while re-sends and escalations run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_silent_commands_are_resent_then_escalated_exactly_once_across_a_kill() {
    const N: usize = 200;
    let lifecycle = r#"result_timeout = "3s"
max_attempts = 2

[[lifecycle.escalate]]
action = "disable_credential"
then_action = "disable_account"
then_target = "okta"
"#;
    let d = deployment("lifecycle-fail", "aws, github-actions", lifecycle).await;
    let mut daemon = Daemon::start(&d.config, "containd-1.log");
    let _aws = Adapter::start(&d.config, "aws", &d.results, "0.3");
    let _okta = Adapter::start(&d.config, "okta", &d.results, "0");
    send_leaks(&d.topics.signals, 0..N).await;
    // Mid-way: the first commands decided, their clocks running.
    let _ = outcomes(&d, Outcome::Acted, N / 2, Duration::from_secs(60));
    daemon.kill9();
    let daemon = Daemon::start(&d.config, "containd-2.log");

    // Every github-actions command is silent: each escalates once.
    let _ = outcomes(&d, Outcome::Escalated, N, Duration::from_secs(240));
    // The failing aws commands settle within a second or two of their signal; let any last
    // one finish.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let escalated = outcomes(&d, Outcome::Escalated, N, Duration::from_secs(10));
    let aws = sends(&d, "aws");
    let github = sends(&d, "github-actions");
    let okta = sends(&d, "okta");
    let adapter_results = results(&d);
    let log = daemon.log_text();

    // github-actions: each command sent as attempt 1 and 2 under one id, then escalated.
    let mut attempts: HashMap<&str, BTreeSet<u32>> = HashMap::new();
    for (c, a) in &github {
        attempts.entry(&c.command_id).or_default().insert(*a);
    }
    assert_eq!(attempts.len(), N, "{log}");
    assert!(
        attempts.values().all(|a| *a == BTreeSet::from([1, 2])),
        "{attempts:?}"
    );

    // aws: a command whose every attempt failed is escalated; one that succeeded is not.
    let mut outcome_of: HashMap<&str, (bool, BTreeSet<i32>)> = HashMap::new();
    for r in adapter_results.iter().filter(|r| r.target == "aws") {
        let e = outcome_of.entry(&r.command_id).or_default();
        e.0 |= r.status == ResultStatus::Succeeded;
        if r.status == ResultStatus::Failed {
            e.1.insert(r.attempt);
        }
    }
    let aws_ids: BTreeSet<&str> = aws.iter().map(|(c, _)| c.command_id.as_str()).collect();
    assert_eq!(aws_ids.len(), N);
    let failed_for_good: BTreeSet<&str> = outcome_of
        .iter()
        .filter(|(_, (ok, failed))| !ok && failed.len() == 2)
        .map(|(id, _)| *id)
        .collect();
    let resent_aws: BTreeSet<&str> = aws
        .iter()
        .filter(|(_, a)| *a == 2)
        .map(|(c, _)| c.command_id.as_str())
        .collect();
    let failed_first: BTreeSet<&str> = outcome_of
        .iter()
        .filter(|(_, (_, f))| f.contains(&1))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(resent_aws, failed_first, "a failed attempt is sent again");
    assert!(
        !failed_for_good.is_empty(),
        "30 % of both attempts: some fail twice"
    );

    // Escalations: one distinct escalation command per command that failed for good, at okta.
    let mut escalation_of: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (c, _) in &okta {
        assert_eq!(c.action, "disable_account");
        let of = c.parameters["escalation_of"].clone();
        escalation_of
            .entry(of)
            .or_default()
            .insert(c.command_id.clone());
    }
    let expected: BTreeSet<String> = attempts
        .keys()
        .map(|s| s.to_string())
        .chain(failed_for_good.iter().map(|s| s.to_string()))
        .collect();
    let got: BTreeSet<String> = escalation_of.keys().cloned().collect();
    assert_eq!(got, expected, "{log}");
    assert!(escalation_of.values().all(|ids| ids.len() == 1));
    let decided: BTreeSet<&String> = escalated.iter().flat_map(|r| &r.command_ids).collect();
    assert_eq!(
        decided.len(),
        expected.len(),
        "one escalation decision each"
    );
}
