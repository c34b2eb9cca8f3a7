//! The safety rails against a real broker: a 10,000-signal flood against a limit of 100 a
//! minute sends exactly 100 commands and holds the rest on the approvals topic, listed by
//! `containd approvals list`; an approval releases exactly that command once, a denial
//! cancels its command, and a kill -9 between hold and verdict loses no hold and doubles no
//! release.

mod common;

use common::*;
use containd::approvals::{ApprovalRecord, Hold};
use containd::emit::{EnforcementCommand, Outcome};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const FLOOD: usize = 10_000;
const LIMIT: usize = 100;
const LEAK: &str = "urn:containd:event:secrets:credential-leaked";

/// One rule: a leak ends the credential owner's sessions at the IdP (one command a signal).
const RULE: &str = r#"rules:
  - id: leak-revoke-sessions
    match:
      event_types: ["urn:containd:event:secrets:credential-leaked"]
    actions:
      - action: revoke_sessions
        targets: [okta]
"#;

fn config(dir: &Path, topics: &Topics) -> std::path::PathBuf {
    let config = write_config(dir, topics, &unique("g"), "");
    let rules = dir.join("rules");
    for entry in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("flood.yaml"), RULE).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[[safety.breakers]]
name = "per-source"
scope = "source"
max = {LIMIT}
per = "1m"
cooldown = "30m"
"#
    ));
    std::fs::write(&config, text).unwrap();
    config
}

fn leak(n: usize, issuer: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("leak-{n}"),
        "source": {"issuer": issuer},
        "event_type": LEAK,
        "occurred_at": "2026-11-23T09:00:00Z",
        "subject": {"format": "opaque", "identifiers": {"id": format!("svc-{n}")}},
        "attributes": {"credential_id": format!("AKIA{n:08}")}
    }))
    .unwrap()
}

async fn flood(topic: &str, signals: std::ops::Range<usize>, issuer: &str) {
    let p = producer();
    for chunk in signals.collect::<Vec<_>>().chunks(500) {
        let sends = chunk.iter().map(|i| {
            let (key, payload) = (format!("svc-{i}"), leak(*i, issuer));
            let p = &p;
            async move { produce(p, topic, Some(&key), &payload).await }
        });
        futures::future::join_all(sends).await;
    }
}

/// Runs the CLI: whether it succeeded, its stdout, and stdout + stderr for messages.
fn containd(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run containd");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = stdout.clone() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), stdout, all)
}

fn pending(config: &Path) -> Vec<Hold> {
    let (ok, stdout, all) = containd(&["approvals", "list", "--json"], config);
    assert!(ok, "{all}");
    serde_json::from_str(&stdout).expect("pending holds as JSON")
}

/// The commands on the IdP target topic by id, with how often each was read.
fn sent(topics: &Topics, idle: Duration) -> HashMap<String, (usize, EnforcementCommand)> {
    let max = Duration::from_secs(120);
    let records = read_until_idle(&[topics.target("okta")], idle, max);
    let mut ids: HashMap<String, (usize, EnforcementCommand)> = HashMap::new();
    for (_, c) in commands(&records, topics) {
        ids.entry(c.command_id.clone()).or_insert((0, c)).0 += 1;
    }
    ids
}

fn verdict(config: &Path, verdict: &str, id: &str, approver: &str, reason: &str) -> bool {
    let args = [
        "approvals",
        verdict,
        id,
        "--approver",
        approver,
        "--reason",
        reason,
    ];
    let (ok, _, all) = containd(&args, config);
    eprintln!("containd approvals {verdict}: {all}");
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_held_past_its_breaker_and_verdicts_release_or_cancel_exactly_one() {
    let topics = Topics::new(&unique("rails"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &topics);
    let mut daemon = Daemon::start(&config, "containd.log");

    flood(&topics.signals, 0..FLOOD, "https://vault.acme.example").await;
    let done = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(180),
        count(FLOOD),
    );
    let outcomes = decisions(&done, &topics);
    assert_eq!(outcomes.len(), FLOOD, "{}", daemon.log_text());
    let acted = outcomes
        .iter()
        .filter(|d| d.outcome == Outcome::Acted)
        .count();
    let held: Vec<_> = outcomes
        .iter()
        .filter(|d| d.outcome == Outcome::Held)
        .collect();
    assert_eq!((acted, held.len()), (LIMIT, FLOOD - LIMIT));
    assert!(held.iter().all(|d| d.held[0].reason == "breaker_open"));
    let first = sent(&topics, Duration::from_secs(3));
    assert_eq!(first.len(), LIMIT, "exactly the limit goes out");
    assert!(first.values().all(|(n, _)| *n == 1));

    // Another source is not touched by the vault's open breaker.
    flood(
        &topics.signals,
        FLOOD..FLOOD + 1,
        "https://scanner.acme.example",
    )
    .await;
    let metrics = daemon.metrics().await;
    assert!(
        metric_sum(&metrics, "containd_breaker_trips_total") >= 1.0,
        "{metrics}"
    );

    // Every held command is listed, complete, with its final id.
    let listed = pending(&config);
    assert_eq!(listed.len(), FLOOD - LIMIT);
    let ids: HashSet<&str> = listed
        .iter()
        .map(|h| h.request.command_id.as_str())
        .collect();
    let held_ids: HashSet<&str> = held.iter().map(|d| d.held[0].command_id.as_str()).collect();
    assert_eq!(ids, held_ids);

    // kill -9 between the hold and its verdict: no hold is lost.
    daemon.kill9();
    let mut daemon = Daemon::start(&config, "containd-2.log");
    let (approve, deny) = (&listed[0].request, &listed[1].request);
    assert!(verdict(
        &config,
        "approve",
        &approve.command_id,
        "alice",
        "owner confirmed"
    ));
    assert!(verdict(
        &config,
        "deny",
        &deny.command_id,
        "alice",
        "false positive"
    ));
    let verdicts = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(120),
        {
            // One codec for the whole read: the 10,000 flood decisions come first.
            let (codec, mut n) = (codec(), 0);
            move |r| {
                let d: containd::emit::DecisionRecord =
                    codec.decode_decision(&r.payload).expect("decision");
                n += usize::from(matches!(d.outcome, Outcome::Released | Outcome::Cancelled));
                n == 2
            }
        },
    );
    let closing: Vec<_> = decisions(&verdicts, &topics)
        .into_iter()
        .filter(|d| matches!(d.outcome, Outcome::Released | Outcome::Cancelled))
        .collect();
    assert_eq!(closing.len(), 2, "{}", daemon.log_text());
    let released = closing
        .iter()
        .find(|d| d.outcome == Outcome::Released)
        .unwrap();
    assert_eq!(
        released.command_ids,
        std::slice::from_ref(&approve.command_id)
    );
    assert!(released.notes[0].contains("alice"), "{:?}", released.notes);
    // The denial closes the denied hold, with the denial's reason, and no other.
    let cancelled = closing
        .iter()
        .find(|d| d.outcome == Outcome::Cancelled)
        .unwrap();
    assert_eq!(cancelled.subject_id, deny.subject_key());
    assert!(
        cancelled.notes[0].starts_with(&format!("{} cancelled", deny.command_id))
            && cancelled.notes[0].contains("false positive"),
        "{:?}",
        cancelled.notes
    );
    assert!(!released.notes[0].contains("false positive"));

    // kill -9 after the release: restarting and approving again sends nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.kill9();
    let daemon = Daemon::start(&config, "containd-3.log");
    let again = verdict(&config, "approve", &approve.command_id, "bob", "again");
    assert!(!again, "a released command cannot be approved again");
    let after = sent(&topics, Duration::from_secs(5));
    // The limit, the other source's command and the approved one.
    assert_eq!(after.len(), LIMIT + 2, "{}", daemon.log_text());
    assert_eq!(after.get(&approve.command_id).map(|c| c.0), Some(1));
    assert!(!after.contains_key(&deny.command_id));
    assert_eq!(pending(&config).len(), FLOOD - LIMIT - 2);
    // What was released is the command that was held, complete with its final id.
    assert_eq!(after[&approve.command_id].1, approve.command);
    let holds = read_until_idle(
        std::slice::from_ref(&topics.approvals),
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let hold_records = holds
        .iter()
        .filter(|r| {
            matches!(
                serde_json::from_slice(&r.payload),
                Ok(ApprovalRecord::Hold(_))
            )
        })
        .count();
    assert!(hold_records >= FLOOD - LIMIT);

    // A malformed approvals record is dead-lettered with its reason, and nothing else moves.
    produce(
        &producer(),
        &topics.approvals,
        Some("x"),
        br#"{"type": "approve"}"#,
    )
    .await;
    let dead = read_until(
        std::slice::from_ref(&topics.dead_letter),
        Duration::from_secs(60),
        count(1),
    );
    assert_eq!(dead.len(), 1, "{}", daemon.log_text());
    assert_eq!(dead[0].headers["containd.reason.kind"], "malformed_json");
    assert_eq!(dead[0].headers["containd.source.topic"], topics.approvals);
    assert_eq!(pending(&config).len(), FLOOD - LIMIT - 2);
}
