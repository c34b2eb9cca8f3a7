//! The reference adapter's side of the contract (docs/adapters.md) on the real broker: a
//! command is answered once with a result keyed like it; a redelivered command is not
//! answered again; a re-send (`containd.attempt` 2) is; a failing target says `failed`.

mod common;

use common::*;
use containd::emit::result::ATTEMPT_HEADER;
use containd::emit::{CommandResult, EnforcementCommand, ResultStatus, TargetSubject, Why};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::process::Command;
use std::time::Duration;

fn command(id: &str) -> EnforcementCommand {
    EnforcementCommand {
        command_id: id.into(),
        action: "disable_credential".into(),
        target: "aws".into(),
        principal_id: Some("arn:aws:iam::1:user/ci".into()),
        subject: TargetSubject {
            id: "api_key:ci-deploy".into(),
            format: "opaque".into(),
            identifiers: [("id".to_string(), "ci-deploy".to_string())].into(),
        },
        parameters: [("credential_id".to_string(), "AKIA1".to_string())].into(),
        issued_at: 1_700_000_000_000,
        expires_at: None,
        why: Why {
            rule_id: "leaked-key".into(),
            ruleset_version: "v".into(),
            signal_ids: vec!["s1".into()],
            event_type: "leak".into(),
            description: None,
        },
    }
}

async fn send(topic: &str, c: &EnforcementCommand, attempt: u32) {
    let payload = codec().encode_command(c).unwrap();
    let headers = OwnedHeaders::new().insert(Header {
        key: ATTEMPT_HEADER,
        value: Some(attempt.to_string().as_bytes()),
    });
    let record = FutureRecord::to(topic)
        .key(&c.subject.id)
        .payload(&payload)
        .headers(headers);
    producer()
        .send(record, Duration::from_secs(10))
        .await
        .expect("command produced");
}

/// The results on `topic` once `n` have arrived (60 s at most), then whatever else arrives
/// within 3 s: a duplicate answer shows up as one too many.
fn results(topic: &str, n: usize) -> Vec<(Record, CommandResult)> {
    let topics = [topic.to_string()];
    let _ = read_until(&topics, Duration::from_secs(60), count(n));
    let codec = codec();
    read_until_idle(&topics, Duration::from_secs(3), Duration::from_secs(60))
        .into_iter()
        .map(|r| {
            let result = codec.decode_result(&r.payload).expect("result decodes");
            (r, result)
        })
        .collect()
}

/// A deployment's topics, a results topic, and a config for them (in a directory kept for
/// the test's length).
async fn deployment(name: &str) -> (tempfile::TempDir, Topics, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique(name));
    let results_topic = format!("{}.results", topics.prefix);
    let mut names = all_topics(&topics);
    names.push(results_topic.clone());
    create_topics(&names).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    (dir, topics, results_topic, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_adapter_answers_once_per_attempt_keyed_like_the_command() {
    let (_dir, topics, results_topic, config) = deployment("adapter").await;
    let aws = topics.target("aws");

    let ok = command("c-ok");
    send(&aws, &ok, 1).await;
    send(&aws, &ok, 1).await; // a redelivery: answered once
    let _adapter = Adapter::start(&config, "aws", &results_topic, "0");
    let first = results(&results_topic, 1);
    assert_eq!(first.len(), 1, "{first:?}");
    let (record, result) = &first[0];
    assert_eq!(record.key.as_deref(), Some(ok.subject.id.as_bytes()));
    assert_eq!(
        (
            result.command_id.as_str(),
            result.target.as_str(),
            result.status,
            result.attempt
        ),
        ("c-ok", "aws", ResultStatus::Succeeded, 1)
    );
    // A re-send by containd (attempt 2) is answered again.
    send(&aws, &ok, 2).await;
    let second = results(&results_topic, 2);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[1].1.attempt, 2);

    // A target that fails every command says so.
    let _failing = Adapter::start(&config, "okta", &results_topic, "1");
    let mut fail = command("c-fail");
    fail.target = "okta".into();
    send(&topics.target("okta"), &fail, 1).await;
    let all = results(&results_topic, 3);
    let failed: Vec<_> = all
        .iter()
        .filter(|(_, r)| r.command_id == "c-fail")
        .collect();
    assert_eq!(failed.len(), 1, "{all:?}");
    assert_eq!(failed[0].1.status, ResultStatus::Failed);
}

/// `containd status` for an identity with a credential disabled: in force and unconfirmed,
/// then confirmed once the target's adapter has reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_containment_before_and_after_its_target_confirms_it() {
    let (_dir, topics, results_topic, config) = deployment("status").await;
    let daemon = Daemon::start(&config, "containd.log");
    let signals = send_samples(&topics.signals).await;
    let targets: Vec<String> = TARGETS.iter().map(|t| topics.target(t)).collect();
    let _ = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(signals.len()),
    );
    let issued = commands(
        &read_until_idle(&targets, Duration::from_secs(3), Duration::from_secs(30)),
        &topics,
    );
    let (_, disable) = issued
        .iter()
        .find(|(_, c)| c.action == "disable_credential")
        .unwrap_or_else(|| panic!("a credential disabled: {issued:?}\n{}", daemon.log_text()));

    let before = status(&config, &disable.subject.id, &results_topic);
    let entry = entry_of(&before, &disable.command_id);
    assert_eq!(entry["open"], true, "{before}");
    assert!(entry["result"].is_null(), "{before}");

    let _adapter = Adapter::start(&config, &disable.target, &results_topic, "0");
    let _ = read_until(
        std::slice::from_ref(&results_topic),
        Duration::from_secs(60),
        count(1),
    );
    let after = status(&config, &disable.subject.id, &results_topic);
    let entry = entry_of(&after, &disable.command_id);
    assert_eq!(entry["result"]["status"], "succeeded", "{after}");
    assert_eq!(entry["open"], true, "still in force: confirmed, not lifted");
    let text = status_out(&config, &disable.subject.id, &results_topic, false);
    assert!(
        text.contains("confirmed") && text.contains("contained"),
        "{text}"
    );
}

fn containd(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `containd status` for the subject, as printed (text, or `--json`).
fn status_out(config: &std::path::Path, subject: &str, results: &str, json: bool) -> String {
    let c = config.to_str().unwrap();
    let mut args = vec![
        "status",
        "--subject",
        subject,
        "-c",
        c,
        "--results-topic",
        results,
    ];
    if json {
        args.push("--json");
    }
    containd(&args)
}

fn status(config: &std::path::Path, subject: &str, results: &str) -> serde_json::Value {
    serde_json::from_str(&status_out(config, subject, results, true)).unwrap()
}

fn entry_of<'a>(status: &'a serde_json::Value, command_id: &str) -> &'a serde_json::Value {
    status["commands"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["command_id"] == command_id))
        .unwrap_or_else(|| panic!("{command_id} in {status}"))
}
