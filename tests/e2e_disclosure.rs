//! End to end against the real broker: each target receives only what its disclosure profile
//! lets it about the subject (docs/disclosure.md), and the decision records what was cut.

mod common;

use common::*;
use containd::emit::Outcome;
use std::time::Duration;

const RULES: &str = r#"
rules:
  - id: user-key-leaked
    match: {event_types: ["urn:test:user-key-leaked"]}
    actions:
      - action: disable_credential
        targets: [github-actions]
        parameters:
          credential_id: {cel: "signal.attributes.credential_id"}
          reason: {cel: "'key of ' + signal.subject.identifiers.email + ' leaked'"}
      - action: revoke_sessions
        targets: [okta]
"#;

const PROFILE: &str = r#"
[[disclosure.profiles]]
name = "credential-only"
disclose = ["principal_id", "parameters.credential_id"]
pseudonymise = ["subject.id"]
"#;

/// Topics, a config whose github-actions target has the `credential-only` profile (and
/// `extra` after its name line), the leak rule, and the config's path.
async fn deploy(name: &str, extra: &str) -> (tempfile::TempDir, Topics, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique(name));
    create_topics(&all_topics(&topics)).await;
    std::fs::write(
        dir.path().join("pseudonym.key"),
        "a pseudonym key of 32 bytes.....",
    )
    .unwrap();
    let key = dir.path().join("pseudonym.key");
    let sections = format!(
        "[[sources]]\nissuer = \"https://test\"\nevent_types = [\"*\"]\nactions = [\"*\"]\n\n[disclosure]\nkey_file = {key:?}\n{PROFILE}"
    );
    let config = write_config_with(dir.path(), &topics, &unique("g"), "", &sections);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "name = \"github-actions\"\n",
        &format!("name = \"github-actions\"\ndisclosure = \"credential-only\"\n{extra}"),
    );
    std::fs::write(&config, text).unwrap();
    let rules = dir.path().join("rules");
    for f in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("leak.yaml"), RULES).unwrap();
    (dir, topics, config)
}

async fn leak(topics: &Topics) {
    let signal = serde_json::json!({
        "id": "leak-1", "source": {"issuer": "https://test"},
        "event_type": "urn:test:user-key-leaked", "occurred_at": 1,
        "subject": {"format": "email", "identifiers": {"email": "alice@example.com"}},
        "attributes": {"credential_id": "AKIA-ALICE-1"}});
    let payload = serde_json::to_vec(&signal).unwrap();
    produce(&producer(), &topics.signals, Some("alice"), &payload).await;
}

/// Reads `topics` until each has at least one record (a redelivery may add more).
fn read_each(topics: &[String]) -> Vec<Record> {
    let mut seen = std::collections::HashSet::new();
    let n = topics.len();
    read_until(topics, Duration::from_secs(60), move |r| {
        seen.insert(r.topic.clone());
        seen.len() == n
    })
}

/// Every byte GitHub Actions receives in one record: payload, key, headers.
fn received(r: &Record) -> String {
    let mut bytes = r.payload.clone();
    bytes.extend(r.key.clone().unwrap_or_default());
    for (k, v) in &r.headers {
        bytes.extend(k.as_bytes());
        bytes.extend(v.as_bytes());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A user-bound API key leaks: GitHub Actions (profile `credential-only`) gets the credential
/// and a pseudonym — never the e-mail, in the payload, the record key or a header; the IdP
/// (no profile) gets the e-mail; the decision lists what was disclosed, pseudonymised and
/// withheld for the CI/CD command.
#[tokio::test(flavor = "multi_thread")]
async fn the_cicd_target_never_sees_the_email_the_idp_does() {
    let (_dir, topics, config) = deploy("disclosure", "").await;
    let _daemon = Daemon::start(&config, "disclosure");
    leak(&topics).await;
    let signal = serde_json::json!({
        "id": "leak-1", "source": {"issuer": "https://test"},
        "event_type": "urn:test:user-key-leaked", "occurred_at": 1,
        "subject": {"format": "email", "identifiers": {"email": "alice@example.com"}},
        "attributes": {"credential_id": "AKIA-ALICE-1"}});
    let payload = serde_json::to_vec(&signal).unwrap();
    produce(&producer(), &topics.signals, Some("alice"), &payload).await;

    let names = vec![
        topics.decisions.clone(),
        topics.target("github-actions"),
        topics.target("okta"),
    ];
    let records = read_each(&names);
    // A replay after a rebalance decides again, identically (same commands, same ids).
    let d: Vec<_> = decisions(&records, &topics)
        .into_iter()
        .filter(|d| d.outcome == Outcome::Acted)
        .collect();
    assert!(!d.is_empty(), "{records:?}");
    assert!(d.iter().all(|x| x.command_ids == d[0].command_ids), "{d:?}");
    let commands = commands(&records, &topics);
    let (gha_record, gha) = commands
        .iter()
        .find(|(_, c)| c.target == "github-actions")
        .expect("github-actions command");
    let (_, okta) = commands
        .iter()
        .find(|(_, c)| c.target == "okta")
        .expect("okta");

    // Nothing of the e-mail anywhere in what GitHub Actions receives.
    assert!(
        !received(gha_record).contains("alice"),
        "{gha:?} key {:?}",
        gha_record.key
    );
    assert_eq!(gha.parameters["credential_id"], "AKIA-ALICE-1");
    assert!(!gha.parameters.contains_key("reason"), "{gha:?}");
    assert!(gha.subject.id.starts_with("ps_"), "{gha:?}");
    assert_eq!(gha_record.key.as_deref(), Some(gha.subject.id.as_bytes()));
    // The IdP gets the identity.
    assert_eq!(okta.subject.identifiers["email"], "alice@example.com");

    let record = &d[0].disclosures;
    assert_eq!(record.len(), 1, "{record:?}");
    let r = &record[0];
    assert_eq!(
        (r.target.as_str(), r.profile.as_str()),
        ("github-actions", "credential-only")
    );
    assert_eq!(r.command_id, gha.command_id);
    assert_eq!(r.disclosed, ["parameters.credential_id"]);
    assert_eq!(r.pseudonymised, ["subject.id"]);
    assert_eq!(
        r.withheld,
        ["subject.identifiers.email", "parameters.reason"]
    );
}

/// A command held for approval under a profile is released as cut as it was held: the
/// approval does not bring the e-mail back, the record key stays the subject's pseudonym, and
/// the release's decision names the subject itself (so `audit timeline` finds it).
#[tokio::test(flavor = "multi_thread")]
async fn an_approved_release_carries_only_what_the_profile_allows() {
    let (_dir, topics, config) = deploy("disclosure-hold", "require_approval = true\n").await;
    let daemon = Daemon::start(&config, "disclosure-hold");
    leak(&topics).await;
    let first = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(1),
    );
    let all = decisions(&first, &topics);
    let held = all
        .iter()
        .find(|d| !d.held.is_empty())
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(held.held.len(), 1, "{held:?}");
    let id = held.held[0].command_id.clone();
    let c = config.to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_containd"))
        .args([
            "approvals",
            "approve",
            &id,
            "--approver",
            "alice-ops",
            "--reason",
            "ok",
            "--config",
            c,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gha_topic = topics.target("github-actions");
    let names = vec![topics.decisions.clone(), gha_topic.clone()];
    let (mut command, mut released) = (false, false);
    let records = read_until(&names, Duration::from_secs(60), move |r| {
        command |= r.topic == gha_topic;
        released |= codec()
            .decode_decision::<containd::emit::DecisionRecord>(&r.payload)
            .is_ok_and(|d| d.outcome == Outcome::Released);
        command && released
    });
    let (gha_record, gha) = commands(&records, &topics)
        .into_iter()
        .find(|(_, c)| c.target == "github-actions")
        .unwrap_or_else(|| panic!("released command:\n{}", daemon.log_text()));
    assert_eq!(gha.command_id, id);
    assert!(!received(&gha_record).contains("alice@"), "{gha:?}");
    assert_eq!(gha_record.key.as_deref(), Some(gha.subject.id.as_bytes()));
    let released = decisions(&records, &topics)
        .into_iter()
        .find(|d| d.outcome == Outcome::Released)
        .expect("released");
    assert_eq!(released.subject_id, held.subject_id);
}

const SHARE_RULES: &str = r#"
rules:
  - id: share-leak
    match: {event_types: ["urn:test:key-leaked"]}
    actions:
      - action: share_indicator
        targets: [isac]
        holds: false
        parameters:
          indicator_type: credential_fingerprint
          indicator_value: {cel: "signal.attributes.fingerprint"}
          first_seen: {cel: "signal.occurred_at"}
          confidence: high
          owner: {cel: "signal.subject.identifiers.email"}
"#;

/// Shares leave only after review: one approved (shared), one approved with a redaction
/// (shared with less), one denied (withheld) — each a decision with the reviewer's reason;
/// nothing about the subject reaches the ISAC, whatever the rule put in the command.
#[tokio::test(flavor = "multi_thread")]
async fn shares_are_reviewed_then_shared_redacted_or_withheld() {
    let (dir, topics, config) = deploy("sharing", "").await;
    std::fs::write(dir.path().join("rules/leak.yaml"), SHARE_RULES).unwrap();
    let _daemon = Daemon::start(&config, "sharing");
    for (i, who) in ["ann", "bob", "cat"].iter().enumerate() {
        let signal = serde_json::json!({
            "id": format!("sh-{i}"), "source": {"issuer": "https://test"},
            "event_type": "urn:test:key-leaked", "occurred_at": 1,
            "subject": {"format": "email", "identifiers": {"email": format!("{who}@example.com")}},
            "attributes": {"fingerprint": format!("sha256:{i}{i}{i}")}});
        let payload = serde_json::to_vec(&signal).unwrap();
        produce(&producer(), &topics.signals, Some(who), &payload).await;
    }
    let first = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(3),
    );
    let mut held: Vec<(String, String)> = decisions(&first, &topics)
        .iter()
        .map(|d| (d.signal_id.clone(), d.held[0].command_id.clone()))
        .collect();
    held.sort();
    assert_eq!(held.len(), 3, "{first:?}");
    let c = config.to_str().unwrap();
    let review = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_containd"))
            .args(["approvals"])
            .args(args)
            .args(["--approver", "legal", "--config", c])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    review(&["approve", &held[0].1, "--reason", "shareable"]);
    review(&[
        "approve",
        &held[1].1,
        "--reason",
        "no dates",
        "--redact",
        "first_seen",
    ]);
    review(&["deny", &held[2].1, "--reason", "under legal hold"]);

    let isac = topics.target("isac");
    let names = vec![topics.decisions.clone(), isac.clone()];
    let records = read_until(&names, Duration::from_secs(60), count(3 + 3 + 2));
    let shared: Vec<_> = commands(&records, &topics);
    assert_eq!(shared.len(), 2, "{shared:?}");
    for (r, s) in &shared {
        assert!(!received(r).contains("@example.com"), "{s:?}");
        assert!(!s.parameters.contains_key("owner"), "{s:?}");
    }
    let by_id = |id: &str| {
        shared
            .iter()
            .find(|(_, s)| s.command_id == id)
            .map(|(_, s)| s)
    };
    assert!(by_id(&held[0].1)
        .unwrap()
        .parameters
        .contains_key("first_seen"));
    let redacted = by_id(&held[1].1).unwrap();
    assert!(
        !redacted.parameters.contains_key("first_seen"),
        "{redacted:?}"
    );
    assert_eq!(redacted.parameters["indicator_value"], "sha256:111");
    assert!(by_id(&held[2].1).is_none(), "a withheld share never leaves");
    let verdicts: Vec<_> = decisions(&records, &topics)
        .into_iter()
        .filter(|d| matches!(d.outcome, Outcome::Released | Outcome::Cancelled))
        .collect();
    let note = |id: &str| {
        let d = verdicts.iter().find(|d| {
            d.matched_rules[0].command_ids.contains(&id.to_string())
                || d.notes.iter().any(|n| n.contains(id))
        });
        d.map(|d| (d.outcome, d.notes.join(" ")))
            .unwrap_or_else(|| panic!("{verdicts:?}"))
    };
    let (o, n) = note(&held[0].1);
    assert!(o == Outcome::Released && n.contains("shareable"), "{n}");
    let (o, n) = note(&held[1].1);
    assert!(
        o == Outcome::Released && n.contains("redacted: parameters.first_seen removed"),
        "{n}"
    );
    let (o, n) = note(&held[2].1);
    assert!(
        o == Outcome::Cancelled && n.contains("under legal hold"),
        "{n}"
    );
}
