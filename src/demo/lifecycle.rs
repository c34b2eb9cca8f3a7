//! The demo's command lifecycle: simulated adapters answer every target's commands (aws fails
//! some attempts, cyberark never answers), containd re-sends and escalates, and the demo
//! prints per command whether it was confirmed or escalated, and the time to containment.

use super::*;
use crate::config::{Escalation, Trigger};
use crate::emit::{CommandResult, Outcome};
use crate::lifecycle::record::PARTITION_HEADER;
use rdkafka::message::Headers;

/// The target whose adapter is down in the demo.
const SILENT: &str = "cyberark";
/// The share of attempts aws's simulated adapter fails.
const AWS_FAILURE_RATE: f64 = 0.5;

/// Turns tracking on, with a key of the demo's own, short clocks and two escalations.
pub(super) fn configure(settings: &mut Settings) -> Result<PathBuf, DemoError> {
    let key = std::env::temp_dir().join(format!(
        "containd-demo-lifecycle-{}.key",
        std::process::id()
    ));
    // 32 bytes from the OS's generator (a fresh P-256 scalar is just that).
    let bytes = {
        use p256::elliptic_curve::Generate;
        p256::SecretKey::generate().to_bytes()
    };
    std::fs::write(&key, crate::codec::hex(bytes)).map_err(|e| DemoError::Set(e.to_string()))?;
    let l = &mut settings.lifecycle;
    l.enabled = true;
    l.key_file = Some(key.clone());
    l.result_timeout = Duration::from_secs(1);
    l.max_attempts = 2;
    l.escalate = vec![
        escalation("disable_credential", "disable_account", "okta"),
        escalation("shorten_access_window", "revoke_sessions", "okta"),
    ];
    settings.state.sweep_interval = Duration::from_millis(200);
    Ok(key)
}

fn escalation(action: &str, then_action: &str, then_target: &str) -> Escalation {
    Escalation {
        action: action.into(),
        target: None,
        on: vec![Trigger::Failed, Trigger::Rejected, Trigger::Timeout],
        then_action: then_action.into(),
        then_target: then_target.into(),
    }
}

/// Simulated adapters for every target but the silent one: each command answered once per
/// attempt, on the results partition its header names.
pub(super) async fn adapters(settings: Arc<Settings>, bootstrap: String) -> Result<(), DemoError> {
    let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "containd-demo-adapters")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let topics: Vec<&str> = settings
        .targets
        .iter()
        .filter(|t| t.name != SILENT)
        .map(|t| t.topic.as_str())
        .collect();
    consumer.subscribe(&topics)?;
    loop {
        let m = consumer.recv().await?;
        let Ok(command) =
            codec.decode_command::<EnforcementCommand>(m.payload().unwrap_or_default())
        else {
            continue;
        };
        let number = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i32>().ok())
        };
        let attempt = number(crate::emit::result::ATTEMPT_HEADER).unwrap_or(1);
        let rate = if command.target == "aws" {
            AWS_FAILURE_RATE
        } else {
            0.0
        };
        let result = CommandResult {
            command_id: command.command_id.clone(),
            target: command.target.clone(),
            status: crate::lifecycle::simulate::enforce(&command.command_id, attempt, rate),
            detail: Some("simulated by the demo".into()),
            attempt,
            at: chrono::Utc::now().timestamp_millis(),
            evidence: BTreeMap::new(),
        };
        let payload = codec.encode_result(&result)?;
        let mut record = FutureRecord::to(&settings.lifecycle.results_topic).payload(&payload);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = number(PARTITION_HEADER) {
            record = record.partition(p);
        }
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
    }
}

/// Whether every command the signal decisions sent has settled: confirmed, escalated or
/// failed for good.
pub(super) fn settled(decisions: &[DecisionRecord]) -> bool {
    let ended = ended_ids(decisions);
    decisions
        .iter()
        .filter(|d| !is_lifecycle(d))
        .flat_map(|d| &d.command_ids)
        .all(|id| ended.contains(id.as_str()))
}

pub(super) fn is_lifecycle(d: &DecisionRecord) -> bool {
    d.trust.reason_kind.as_deref() == Some("lifecycle")
}

fn ended_ids(decisions: &[DecisionRecord]) -> std::collections::BTreeSet<&str> {
    decisions
        .iter()
        .filter(|d| {
            matches!(
                d.outcome,
                Outcome::Confirmed | Outcome::Escalated | Outcome::Unconfirmed | Outcome::Held
            ) && is_lifecycle(d)
        })
        .flat_map(|d| d.matched_rules.iter().flat_map(|r| &r.command_ids))
        .map(String::as_str)
        .collect()
}

/// Per command: confirmed (after how many sends) or escalated, and time to containment.
pub(super) fn print(decisions: &[DecisionRecord], commands: &HashMap<String, EnforcementCommand>) {
    let sent_at: HashMap<&str, i64> = decisions
        .iter()
        .filter(|d| !is_lifecycle(d))
        .flat_map(|d| {
            d.command_ids
                .iter()
                .map(move |id| (id.as_str(), d.decided_at))
        })
        .collect();
    say!(
        "\nlifecycle: adapters report back (aws fails {}% of attempts, {SILENT} is down)",
        (AWS_FAILURE_RATE * 100.0) as u32
    );
    let mut ttc = Vec::new();
    for d in decisions.iter().filter(|d| is_lifecycle(d)) {
        let Some(id) = d.matched_rules.first().and_then(|r| r.command_ids.first()) else {
            continue;
        };
        let what = commands
            .get(id)
            .map_or_else(String::new, |c| format!("{} at {}", c.action, c.target));
        match d.outcome {
            Outcome::Confirmed => {
                if let Some(at) = sent_at.get(id.as_str()) {
                    ttc.push(d.decided_at - at);
                }
                say!("  {id:.12} {what:<36} confirmed");
            }
            Outcome::Reissued | Outcome::Escalated | Outcome::Unconfirmed | Outcome::Held => {
                say!(
                    "  {id:.12} {what:<36} {}: {}",
                    d.outcome.name(),
                    d.notes.join("; ")
                );
            }
            _ => {}
        }
    }
    ttc.sort_unstable();
    let pct = |p: usize| ttc.get((ttc.len() * p / 100).min(ttc.len().saturating_sub(1)));
    if let (Some(p50), Some(p99)) = (pct(50), pct(99)) {
        say!(
            "time to containment (signal on the bus -> target confirmed): p50 {p50} ms, p99 {p99} ms over {} commands",
            ttc.len()
        );
    }
}
