//! End to end against the real broker: the decisions topic as evidence. `containd audit
//! verify` passes on a topic written across a kill -9 restart (replayed signals included), and
//! names the position when a record is removed from, or edited in, a copy of the topic;
//! `containd audit timeline` prints an identity's history.

mod common;

use common::*;
use containd::client::snapshot;
use rdkafka::producer::FutureRecord;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn containd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn verify(config: &Path, topic: &str) -> (bool, String) {
    let c = config.to_str().unwrap();
    containd(&["audit", "verify", "-c", c, "--topic", topic])
}

/// Copies `from` into `to` partition by partition, record by record, through `edit` (which
/// may drop a record or change its bytes).
async fn copy(
    records: &[snapshot::Record],
    to: &str,
    mut edit: impl FnMut(&snapshot::Record) -> Option<Vec<u8>>,
) {
    let p = producer();
    for r in records {
        let Some(payload) = edit(r) else { continue };
        let mut record = FutureRecord::<[u8], [u8]>::to(to)
            .partition(r.partition)
            .payload(&payload);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        p.send(record, Duration::from_secs(10)).await.expect("copy");
    }
}

async fn send_leaks(topics: &Topics, from: usize, to: usize) {
    let p = producer();
    for i in from..to {
        let subject = format!("svc-{}", i % 7);
        let payload = serde_json::to_vec(&serde_json::json!({
            "id": format!("leak-{i}"), "source": {"issuer": "https://test"},
            "event_type": "urn:test:leak", "occurred_at": 1,
            "subject": {"format": "opaque", "identifiers": {"id": subject}},
            "attributes": {"credential_id": format!("AK-{i}")}}))
        .unwrap();
        produce(&p, &topics.signals, Some(&subject), &payload).await;
    }
}

const RULES: &str = r#"
rules:
  - id: leak
    match: {event_types: ["urn:test:leak"]}
    actions:
      - action: disable_credential
        targets: [aws]
        parameters:
          credential_id: {cel: "signal.attributes.credential_id"}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_holds_across_a_kill9_and_names_a_removed_or_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("evidence"));
    let removed = format!("{}.removed", topics.prefix);
    let edited = format!("{}.edited", topics.prefix);
    let mut names = all_topics(&topics);
    names.extend([removed.clone(), edited.clone()]);
    create_topics(&names).await;
    let sections =
        "[[sources]]\nissuer = \"https://test\"\nevent_types = [\"*\"]\nactions = [\"*\"]\n";
    let config = write_config_with(dir.path(), &topics, &unique("g"), "", sections);
    // A long commit interval: the kill -9 leaves decided signals uncommitted, so they are
    // decided again after the restart.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("commit_interval = \"100ms\"", "commit_interval = \"1h\""),
    )
    .unwrap();
    let rules = dir.path().join("rules");
    for f in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("leak.yaml"), RULES).unwrap();

    let mut first = Daemon::start(&config, "evidence-1");
    send_leaks(&topics, 0, 30).await;
    let decisions_topic = std::slice::from_ref(&topics.decisions);
    read_until(decisions_topic, Duration::from_secs(60), count(30));
    first.kill9();
    let second = Daemon::start(&config, "evidence-2");
    send_leaks(&topics, 30, 40).await;
    // 40 signals, the first 30 decided twice (nothing was committed before the kill).
    let records = read_until(decisions_topic, Duration::from_secs(90), count(70));
    assert_eq!(records.len(), 70, "{}", second.log_text());

    let c = config.to_str().unwrap();
    let (ok, out) = containd(&["audit", "verify", "-c", c, "--json"]);
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["chained"], 70, "{report}");
    assert_eq!(report["breaks"].as_array().unwrap().len(), 0, "{report}");
    // Every run writes chains of its own: the restarted instance's replays are not forks.
    assert!(report["chains"].as_u64().unwrap() >= 2, "{report}");
    let (ok, out) = verify(&config, &topics.decisions);
    assert!(
        ok && out.contains("verified: no record removed or altered"),
        "{out}"
    );

    // Copies of the topic: one without a record in the middle of a chain, one with a record
    // changed (a signal id rewritten to another of the same length).
    let settings = containd::config::load(&config).unwrap();
    let all = snapshot::read(&settings, &topics.decisions, "test-evidence").unwrap();
    let (read, _) = containd::evidence::audit::read(&settings, &topics.decisions).unwrap();
    let chain_of = |i: usize| read[i].record.chain.as_ref().map(|l| l.id.clone());
    // A record with a record of its own chain after it on its partition.
    let (victim, next) = (1..read.len() - 1)
        .find(|&i| {
            read[i].partition == read[i + 1].partition
                && chain_of(i) == chain_of(i + 1)
                && read[i].record.chain.as_ref().unwrap().seq > 0
        })
        .map(|i| (read[i].clone(), read[i + 1].offset))
        .expect("a chain of three on one partition");
    let busiest = victim.partition;
    copy(&all, &removed, |r| {
        let gone = r.partition == victim.partition && r.offset == victim.offset;
        (!gone).then(|| r.payload.clone().unwrap())
    })
    .await;
    let (ok, out) = verify(&config, &removed);
    assert!(!ok, "{out}");
    let position = format!("partition {busiest} offset {}", next - 1);
    assert!(
        out.contains(&position) && out.contains("removed"),
        "{position}: {out}"
    );

    copy(&all, &edited, |r| {
        let mut bytes = r.payload.clone().unwrap();
        if r.partition == victim.partition && r.offset == victim.offset {
            let at = bytes
                .windows(5)
                .position(|w| w == b"leak-")
                .expect("a signal id");
            bytes[at] = b'L';
        }
        Some(bytes)
    })
    .await;
    let (ok, out) = verify(&config, &edited);
    assert!(!ok, "{out}");
    let position = format!("partition {busiest} offset {}", victim.offset);
    assert!(
        out.contains(&position) && out.contains("edited"),
        "{position}: {out}"
    );

    // An identity's history, from the topic alone.
    let (ok, out) = containd(&["audit", "timeline", "-c", c, "--subject", "svc-3"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("svc-3:") && out.contains("leak-3") && out.contains("acted"),
        "{out}"
    );
}
