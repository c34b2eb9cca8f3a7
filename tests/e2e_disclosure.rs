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

/// A user-bound API key leaks: GitHub Actions (profile `credential-only`) gets the credential
/// and a pseudonym — never the e-mail, in the payload, the record key or a header; the IdP
/// (no profile) gets the e-mail; the decision lists what was disclosed, pseudonymised and
/// withheld for the CI/CD command.
#[tokio::test(flavor = "multi_thread")]
async fn the_cicd_target_never_sees_the_email_the_idp_does() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("disclosure"));
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
        "name = \"github-actions\"\ndisclosure = \"credential-only\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let rules = dir.path().join("rules");
    for f in std::fs::read_dir(&rules).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(rules.join("leak.yaml"), RULES).unwrap();
    let _daemon = Daemon::start(&config, "disclosure");

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
    let records = read_until(&names, Duration::from_secs(60), count(3));
    let d = decisions(&records, &topics);
    assert_eq!(d.len(), 1, "{records:?}");
    assert_eq!(d[0].outcome, Outcome::Acted, "{:?}", d[0]);
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
    let mut bytes = gha_record.payload.clone();
    bytes.extend(gha_record.key.clone().unwrap_or_default());
    for (k, v) in &gha_record.headers {
        bytes.extend(k.as_bytes());
        bytes.extend(v.as_bytes());
    }
    assert!(
        !String::from_utf8_lossy(&bytes).contains("alice"),
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
