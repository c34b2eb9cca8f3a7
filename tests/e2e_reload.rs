//! Hot reload against the real broker: a valid change to the rules directory takes effect
//! between signals; a broken one is refused and the running rules keep deciding.

mod common;

use common::*;
use std::time::Duration;

const EXTRA: &str = r#"rules:
  - id: session-established-revoke
    description: added while running
    match:
      event_types:
        - https://schemas.openid.net/secevent/caep/event-type/session-established
    actions:
      - action: revoke_sessions
        targets: [okta]
"#;

async fn decide_one(
    topics: &Topics,
    signal: &containd::signal::Signal,
    seen: usize,
) -> containd::emit::DecisionRecord {
    let p = producer();
    produce(
        &p,
        &topics.signals,
        Some("k"),
        &serde_json::to_vec(signal).unwrap(),
    )
    .await;
    let records = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(30),
        count(seen + 1),
    );
    let mut d = decisions(&records, topics);
    assert_eq!(d.len(), seen + 1, "decision for {}", signal.id);
    d.retain(|d| d.signal_id == signal.id);
    d.pop().unwrap()
}

/// A deployment config whose rules directory is checked for changes every `poll`.
fn config_polling_every(dir: &std::path::Path, topics: &Topics, poll: &str) -> std::path::PathBuf {
    let config = write_config(dir, topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "dir = \"rules\"",
        &format!("dir = \"rules\"\nreload_poll = \"{poll}\""),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Waits until the metric's value reaches at least `min`.
async fn wait_for_metric(daemon: &Daemon, name: &str, min: f64) -> String {
    let mut m = String::new();
    for _ in 0..100 {
        m = daemon.metrics().await;
        if metric_sum(&m, name) >= min {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "metrics never showed {name} >= {min}:\n{m}\n{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_directory_changes_apply_between_signals_and_broken_ones_are_refused() {
    let topics = Topics::new(&unique("reload"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_polling_every(dir.path(), &topics, "200ms");
    let daemon = Daemon::start(&config, "containd.log");

    let mut session = sample_signals()[6].clone(); // session-established, dry-run rule only
    session.attributes.clear();
    session.id = "before".into();
    let before = decide_one(&topics, &session, 0).await;
    assert!(before.command_ids.is_empty());

    std::fs::write(dir.path().join("rules/60-extra.yaml"), EXTRA).unwrap();
    wait_for_metric(&daemon, "containd_rules_loaded", 8.0).await;
    session.id = "after".into();
    let after = decide_one(&topics, &session, 1).await;
    assert_ne!(after.ruleset_version, before.ruleset_version);
    assert_eq!(after.matched_rules[0].rule_id, "session-established-revoke");
    assert_eq!(after.command_ids.len(), 1);

    std::fs::write(
        dir.path().join("rules/70-broken.yaml"),
        EXTRA.replace("okta", "no-such-target"),
    )
    .unwrap();
    let m = wait_for_metric(&daemon, "containd_rules_reload_failures_total", 1.0).await;
    assert!(
        m.contains(&format!(
            "containd_ruleset_active{{version=\"{}\"}} 1",
            after.ruleset_version
        )),
        "{m}"
    );
    session.id = "broken".into();
    let kept = decide_one(&topics, &session, 2).await;
    assert_eq!(
        kept.ruleset_version, after.ruleset_version,
        "running rules kept"
    );
    assert_eq!(kept.command_ids.len(), 1);
    assert!(
        daemon.log_text().contains("no-such-target"),
        "refusal logged with its reason"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_at_once() {
    let topics = Topics::new(&unique("hup"));
    create_topics(&all_topics(&topics)).await;
    let dir = tempfile::tempdir().unwrap();
    // Polling is effectively off: only the signal can trigger the reload.
    let config = config_polling_every(dir.path(), &topics, "1h");
    let daemon = Daemon::start(&config, "containd.log");
    wait_for_metric(&daemon, "containd_rules_loaded", 7.0).await;
    std::fs::write(dir.path().join("rules/60-extra.yaml"), EXTRA).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric_sum(&daemon.metrics().await, "containd_rules_loaded"),
        7.0,
        "no reload before SIGHUP"
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for_metric(&daemon, "containd_rules_loaded", 8.0).await;
    assert!(
        daemon.log_text().contains("SIGHUP"),
        "{}",
        daemon.log_text()
    );
}
