//! Records that used to stop the pipeline, against a real broker: each is dead-lettered (cut
//! to fit when it is too large to keep whole) or decided as undeliverable, and the signals
//! after it are decided as usual — no exit, no crash loop.

mod common;

use common::*;
use containd::emit::Outcome;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The producer limit the daemon runs with here: small, so the oversized records stay small.
const LIMIT: usize = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_hostile_records_do_not_stop_the_pipeline() {
    let topics = Topics::new(&unique("big"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"",
        &format!("\"topic.metadata.refresh.interval.ms\" = \"1000\"\n\"message.max.bytes\" = \"{LIMIT}\""),
    );
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, "containd.log");

    let samples = sample_signals();
    let garbage: Vec<u8> = std::iter::repeat_n(b"{\"id\": [".as_slice(), 40_000)
        .flatten()
        .copied()
        .collect();
    let mut long_subject = samples[5].clone();
    long_subject.id = "long-subject".into();
    long_subject
        .subject
        .identifiers
        .insert("id".into(), "s".repeat(400_000));
    let mut echoing = samples[3].clone(); // PAM: the command carries the session id
    echoing.id = "echoing".into();
    echoing
        .attributes
        .insert("session_id".into(), "p".repeat(250_000));
    let mut after = samples[5].clone(); // policy change: 4 commands
    after.id = "after".into();

    let p = producer();
    produce(&p, &topics.signals, Some("k1"), &garbage).await;
    let json = |s: &containd::signal::Signal| serde_json::to_vec(s).unwrap();
    produce(&p, &topics.signals, Some("k2"), &json(&long_subject)).await;
    produce(&p, &topics.signals, Some("k3"), &json(&echoing)).await;
    produce(&p, &topics.signals, Some("k4"), &json(&after)).await;

    // 3 dead letters, the undeliverable decision, and the last signal's decision + 4 commands.
    let outputs = [
        topics.dead_letter.clone(),
        topics.decisions.clone(),
        topics.target("aws"),
        topics.target("github-actions"),
        topics.target("active-directory"),
        topics.target("kubernetes"),
    ];
    let records = read_until(&outputs, Duration::from_secs(60), count(9));
    let dead: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic == topics.dead_letter)
        .collect();
    // The signals sit on different partitions: their dead letters come in any order.
    let mut kinds: Vec<&str> = dead
        .iter()
        .map(|r| r.headers["containd.reason.kind"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["field_too_long", "malformed_json", "output_too_large"],
        "{:?}",
        daemon.log_text()
    );
    let of_kind = |kind: &str| {
        *dead
            .iter()
            .find(|r| r.headers["containd.reason.kind"] == kind)
            .unwrap()
    };

    // Garbage larger than the producer accepts: its head, size and digest, not the whole.
    let g = of_kind("malformed_json");
    assert!(g.payload.len() < LIMIT && garbage.starts_with(&g.payload));
    assert_eq!(g.headers["containd.truncated"], "true");
    assert_eq!(
        g.headers["containd.original.size"],
        garbage.len().to_string()
    );
    assert_eq!(
        g.headers["containd.original.sha256"],
        hex::encode(Sha256::digest(&garbage))
    );
    for d in &dead {
        assert!(d.headers["containd.reason"].len() < 1024, "bounded reason");
        assert!(d.headers.contains_key("containd.source.offset"));
    }
    assert!(of_kind("field_too_long").headers["containd.reason"].contains("400000 bytes"));
    assert!(
        of_kind("output_too_large").headers["containd.reason"].contains("shorten_access_window")
    );

    // The signal whose command cannot be produced is decided as such; nothing was sent.
    let decided = decisions(&records, &topics);
    let by_id = |id: &str| decided.iter().find(|d| d.signal_id == id);
    let undeliverable = by_id("echoing").expect("a decision record for the echoing signal");
    assert_eq!(undeliverable.outcome, Outcome::Undeliverable);
    assert!(undeliverable.errors[0].error.contains("bytes"));
    assert_eq!(by_id("after").map(|d| d.outcome), Some(Outcome::Acted));
    let sent = commands(&records, &topics);
    assert_eq!(sent.len(), 4, "only the last signal's commands");
    assert!(sent.iter().all(|(_, c)| c.why.signal_ids == ["after"]));

    // Still running, and says what it left out of the log rather than echoing payloads.
    assert!(daemon.is_running(), "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(!log.contains(&"s".repeat(10_000)) && !log.contains(&"p".repeat(10_000)));
    assert!(daemon.terminate().success());
}

/// A 45-byte Avro record whose map count is 4×10⁸ aborted the process (and again on every
/// restart): now it is a dead letter and the next record is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avro_allocation_bomb_is_a_dead_letter() {
    let topics = Topics::new(&unique("bomb"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topics, &unique("g"), "format = \"avro\"");
    let mut daemon = Daemon::start(&config, "containd.log");

    let c = codec();
    let mut valid = sample_signals()[5].clone();
    valid.id = "after-bomb".into();
    let good = c.encode_signal(&valid).unwrap();
    // Header, then id "a", issuer "i", no transmitter, event type "e", occurred_at 0,
    // received_at 0, subject format "f", and an identifiers map of 400,000,000 entries.
    let datum: &[u8] = b"\x02a\x02i\x00\x02e\x00\x00\x02f\x80\x90\xbc\xfd\x02";
    let bomb = [&good[..10], datum, &[0; 19]].concat();
    assert_eq!(bomb.len(), 45);
    let p = producer();
    produce(&p, &topics.signals, Some("k"), &bomb).await;
    produce(&p, &topics.signals, Some("k"), &good).await;

    let outputs = [topics.dead_letter.clone(), topics.decisions.clone()];
    let records = read_until(&outputs, Duration::from_secs(60), count(2));
    let dead: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic == topics.dead_letter)
        .collect();
    assert_eq!(dead.len(), 1, "{}", daemon.log_text());
    assert_eq!(dead[0].headers["containd.reason.kind"], "malformed_avro");
    assert!(
        dead[0].headers["containd.reason"].contains("400000000"),
        "{:?}",
        dead[0].headers
    );
    assert_eq!(dead[0].payload, bomb, "the original, untouched");
    let decided = decisions(&records, &topics);
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].signal_id, "after-bomb");
    assert!(daemon.is_running());
    assert!(daemon.terminate().success());
}
