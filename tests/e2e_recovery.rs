//! End to end against the real broker: a crash (kill -9) in the middle of a stream, and two
//! instances sharing a group.

mod common;

use common::*;
use containd::emit::CommandKey;
use containd::signal::Signal;
use futures::future::join_all;
use rdkafka::producer::FutureRecord;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// (rule, action, target) of one expected command.
type Planned = (&'static str, &'static str, &'static str);

/// `n` signals cycling through the acting seed scenarios, each with its own id and one of
/// `subjects` subjects, with the (signal, rule, action, target) commands each must yield.
fn stream(n: usize, subjects: usize) -> (Vec<Signal>, BTreeSet<String>) {
    let seeds = sample_signals();
    // Scenario index → its (rule, action, target) commands under the example rules.
    let plan: Vec<(usize, Vec<Planned>)> = vec![
        (
            2,
            vec![
                ("secret-rotated-disable-stale", "disable_credential", "aws"),
                (
                    "secret-rotated-disable-stale",
                    "disable_credential",
                    "github-actions",
                ),
                (
                    "secret-rotated-disable-stale",
                    "disable_credential",
                    "active-directory",
                ),
            ],
        ),
        (
            3,
            vec![
                ("pam-high-risk-session", "shorten_access_window", "cyberark"),
                ("pam-high-risk-session", "revoke_access", "aws"),
                ("pam-high-risk-session", "revoke_access", "active-directory"),
            ],
        ),
        (
            4,
            vec![
                (
                    "incident-quarantine-agent",
                    "quarantine_workload",
                    "kubernetes",
                ),
                (
                    "incident-quarantine-agent",
                    "quarantine_workload",
                    "agent-gateway",
                ),
            ],
        ),
    ];
    let mut signals = Vec::with_capacity(n);
    let mut expected = BTreeSet::new();
    for i in 0..n {
        let (seed, commands) = &plan[i % plan.len()];
        let mut s = seeds[*seed].clone();
        s.id = format!("stream-{i:06}");
        let subject = format!("svc-{:04}", i % subjects);
        if let Some(app) = s.subject.application.as_mut() {
            app.identifiers
                .insert("uri".into(), format!("wimse://acme.example/{subject}"));
        } else if s.subject.format == "uri" {
            s.subject
                .identifiers
                .insert("uri".into(), format!("wimse://acme.example/{subject}"));
        } else {
            s.subject.identifiers.insert("id".into(), subject);
        }
        for (rule, action, target) in commands {
            let key = CommandKey {
                issuer: &s.source.issuer,
                signal_id: &s.id,
                subject_id: &s.subject.id().unwrap(),
                rule_id: rule,
                action,
                target,
                principal: None,
            };
            expected.insert(key.id());
        }
        signals.push(s);
    }
    (signals, expected)
}

async fn produce_all(topic: &str, signals: &[Signal]) {
    let p = producer();
    for chunk in signals.chunks(500) {
        let payloads: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|s| (s.subject.id().unwrap(), serde_json::to_vec(s).unwrap()))
            .collect();
        let sends = payloads.iter().map(|(k, v)| {
            p.send(
                FutureRecord::to(topic)
                    .key(k.as_str())
                    .payload(v.as_slice()),
                Duration::from_secs(30),
            )
        });
        for r in join_all(sends).await {
            r.expect("produce");
        }
    }
}

/// A `done` for `read_until`: every expected command id has been seen.
fn all_of(expected: &BTreeSet<String>) -> impl FnMut(&Record) -> bool + '_ {
    let codec = codec();
    let mut missing = expected.clone();
    move |r| {
        let c: containd::emit::EnforcementCommand = codec.decode_command(&r.payload).unwrap();
        missing.remove(&c.command_id);
        missing.is_empty()
    }
}

fn command_topics(topics: &Topics) -> Vec<String> {
    TARGETS.iter().map(|t| topics.target(t)).collect()
}

/// Every expected command came out and no other, and all copies of one are identical;
/// returns how many copies beyond the first were read. `logs` explains a failure.
fn assert_exactly(
    records: &[Record],
    expected: &BTreeSet<String>,
    logs: impl Fn() -> String,
) -> usize {
    let (ids, duplicates, differing) = ids_and_copies(records);
    let missing: Vec<&String> = expected.difference(&ids).take(5).collect();
    assert!(
        missing.is_empty(),
        "missing commands e.g. {missing:?}\n{}",
        logs()
    );
    let extra: Vec<&String> = ids.difference(expected).take(5).collect();
    assert!(extra.is_empty(), "unexpected commands {extra:?}");
    assert!(differing.is_empty(), "copies that differ: {differing:?}");
    duplicates
}

/// Command ids seen, and whether every copy of an id is byte-identical.
fn ids_and_copies(records: &[Record]) -> (BTreeSet<String>, usize, Vec<String>) {
    let codec = codec();
    let mut by_id: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in records {
        let c: containd::emit::EnforcementCommand = codec.decode_command(&r.payload).unwrap();
        by_id.entry(c.command_id).or_default().push(r);
    }
    let mut duplicates = 0;
    let mut differing = Vec::new();
    for (id, copies) in &by_id {
        duplicates += copies.len() - 1;
        if copies.iter().any(|c| {
            c.payload != copies[0].payload || c.topic != copies[0].topic || c.key != copies[0].key
        }) {
            differing.push(id.clone());
        }
    }
    (by_id.into_keys().collect(), duplicates, differing)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_then_restart_loses_nothing_and_duplicates_are_identical() {
    let topics = Topics::new(&unique("crash"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let (signals, expected) = stream(4000, 300);

    let mut first = Daemon::start(&config, "first.log");
    produce_all(&topics.signals, &signals).await;
    // Let it get part-way, then crash it without any chance to commit.
    let partial = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(800),
    );
    assert!(
        partial.len() >= 800,
        "daemon made no progress:\n{}",
        first.log_text()
    );
    first.kill9();
    let before_restart = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(1),
        |_| false,
    )
    .len();

    let second = Daemon::start(&config, "second.log");
    let records = read_until(
        &command_topics(&topics),
        Duration::from_secs(120),
        all_of(&expected),
    );
    let duplicates = assert_exactly(&records, &expected, || second.log_text());
    let c = codec();
    let mut decided = BTreeSet::new();
    read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        |r| {
            let d: containd::emit::DecisionRecord = c.decode_decision(&r.payload).unwrap();
            decided.insert(d.signal_id);
            decided.len() >= signals.len()
        },
    );
    assert_eq!(decided.len(), signals.len(), "every signal has a decision");
    eprintln!(
        "kill -9 after {before_restart} decisions: {} commands expected, {} records read, {duplicates} replayed duplicates (all identical)",
        expected.len(),
        records.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_split_partitions_and_produce_the_same_commands_as_one() {
    let (signals, expected) = stream(1500, 200);

    // One instance.
    let one = Topics::new(&unique("one"));
    create_topics(&all_topics(&one)).await;
    let dir_one = tempfile::tempdir().unwrap();
    let config_one = write_config(dir_one.path(), &one, &unique("g"), "");
    let single = Daemon::start(&config_one, "single.log");
    produce_all(&one.signals, &signals).await;
    let records = read_until(
        &command_topics(&one),
        Duration::from_secs(90),
        all_of(&expected),
    );
    let (single_ids, _, _) = ids_and_copies(&records);
    assert_eq!(
        single_ids,
        expected,
        "single instance:\n{}",
        single.log_text()
    );
    drop(single);

    // Two instances in one group, both assigned before the stream starts.
    let two = Topics::new(&unique("two"));
    create_topics(&all_topics(&two)).await;
    let dir_two = tempfile::tempdir().unwrap();
    let group = unique("g");
    let config_a = write_config(&dir_two.path().join("a"), &two, &group, "");
    let config_b = write_config(&dir_two.path().join("b"), &two, &group, "");
    let a = Daemon::start(&config_a, "a.log");
    let b = Daemon::start(&config_b, "b.log");
    let split = wait_split(&[&a, &b]).await;
    assert!(
        split,
        "partitions not split:\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    produce_all(&two.signals, &signals).await;
    let records = read_until(
        &command_topics(&two),
        Duration::from_secs(90),
        all_of(&expected),
    );
    let (pair_ids, _, differing) = ids_and_copies(&records);
    assert!(differing.is_empty());
    assert_eq!(
        pair_ids, single_ids,
        "two instances produce exactly the one-instance set"
    );
    let consumed_a = metric_sum(&a.metrics().await, "containd_signals_consumed_total");
    let consumed_b = metric_sum(&b.metrics().await, "containd_signals_consumed_total");
    assert!(
        consumed_a > 0.0 && consumed_b > 0.0,
        "both worked: {consumed_a} + {consumed_b}"
    );
    assert_eq!(consumed_a + consumed_b, signals.len() as f64);
}

/// Whether the group's partitions (the signal topic's and the approvals topic's one) came to
/// be split among `daemons`, each holding at least one, within 30 s.
async fn wait_split(daemons: &[&Daemon]) -> bool {
    for _ in 0..300 {
        let mut held = Vec::new();
        for d in daemons {
            held.push(metric_sum(
                &d.metrics().await,
                "containd_assigned_partitions",
            ));
        }
        if held.iter().all(|p| *p > 0.0) && held.iter().sum::<f64>() == (PARTITIONS + 1) as f64 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A second instance joins while the first is deciding a backlog: the rebalance revokes
/// partitions from under the first one's batches (records gathered for a moved partition are
/// not decided there), the second rebuilds their state from the changelog and goes on from
/// the committed offsets. Every command comes out, no other, and any copy is identical.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_joining_mid_stream_loses_and_changes_no_command() {
    let (signals, expected) = stream(3000, 200);
    let (backlog, rest) = signals.split_at(2000);
    let topics = Topics::new(&unique("join"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let config_a = write_config(&dir.path().join("a"), &topics, &group, "");
    let config_b = write_config(&dir.path().join("b"), &topics, &group, "");
    let a = Daemon::start(&config_a, "a.log");
    assert!(wait_split(&[&a]).await, "A not assigned:\n{}", a.log_text());
    produce_all(&topics.signals, backlog).await;
    let mut consumed_a = 0.0;
    for _ in 0..600 {
        consumed_a = metric_sum(&a.metrics().await, "containd_signals_consumed_total");
        if consumed_a >= 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(consumed_a >= 100.0, "A made no progress:\n{}", a.log_text());
    let b = Daemon::start(&config_b, "b.log");
    let split = wait_split(&[&a, &b]).await;
    assert!(
        split,
        "not split:\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    produce_all(&topics.signals, rest).await;
    let records = read_until(
        &command_topics(&topics),
        Duration::from_secs(120),
        all_of(&expected),
    );
    let logs = || format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text());
    let duplicates = assert_exactly(&records, &expected, logs);
    let consumed_b = metric_sum(&b.metrics().await, "containd_signals_consumed_total");
    assert!(consumed_b > 0.0, "B took no signal:\n{}", b.log_text());
    eprintln!(
        "B started when A had consumed {consumed_a} of the {}-signal backlog; B consumed {consumed_b}; {duplicates} identical copies",
        backlog.len()
    );
}
