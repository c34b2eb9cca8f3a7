//! The processor's restore on expiry, with the state store and acknowledgements in hand.

use super::*;
use crate::codec::{AvroCodec, Schemas};
use crate::config::Settings;
use crate::emit::{DecisionRecord, EnforcementCommand, Outcome};
use crate::pipeline::{Incoming, OutKind};
use crate::state::Retention;

const RULES: &str = r#"
rules:
  - id: leak
    match: {event_types: ["urn:t:leak"]}
    actions:
      - action: disable_credential
        targets: [aws]
        expires_in: 1h
        on_expiry: restore
        parameters:
          credential_id: {cel: "signal.attributes.key"}
"#;

const HOUR: i64 = 3_600_000;

struct Harness {
    processor: Processor,
    rules: RuleSet,
    state: StateStore,
    metrics: LifecycleMetrics,
    _dir: tempfile::TempDir,
}

fn harness(extra: &str) -> Harness {
    harness_with(extra, false)
}

fn harness_with(extra: &str, dry_run: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("containd.toml");
    let text = format!(
        r#"
[input]
topics = ["signals"]
format = "json"
[rules]
dir = "rules"
[[sources]]
issuer = "https://t"
event_types = ["*"]
actions = ["*"]
[[targets]]
name = "aws"
topic = "t.aws"
kind = "cloud"
actions = ["disable_credential", "restore"]
{extra}
"#
    );
    std::fs::write(&path, &text).unwrap();
    let mut settings: Settings = crate::config::parse(&path, &text).unwrap();
    settings.rules.dry_run = dry_run;
    let rules = crate::rules::load_sources(
        vec![("r.yaml".into(), RULES.into())],
        &settings.targets,
        &[],
    )
    .unwrap();
    let trust = Arc::new(crate::trust::Trust::load(&settings, &path).unwrap());
    let breakers = crate::safety::breakers::Breakers::new(&settings.safety.breakers);
    let state = StateStore::new(Retention::default()).with_breakers(Arc::new(Mutex::new(breakers)));
    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]);
    Harness {
        processor: Processor::new(Arc::new(settings), codec, trust),
        rules,
        state,
        metrics: LifecycleMetrics::default(),
        _dir: dir,
    }
}

impl Harness {
    /// A leak of `key` for `subject` at `offset`, decided at `at`.
    fn leak(&mut self, subject: &str, key: &str, (offset, at): (i64, i64)) {
        let payload = serde_json::to_vec(&serde_json::json!({
            "id": format!("s-{offset}"), "source": {"issuer": "https://t"},
            "event_type": "urn:t:leak", "occurred_at": at,
            "subject": {"format": "opaque", "identifiers": {"id": subject}},
            "attributes": {"key": key}}))
        .unwrap();
        let msg = Incoming {
            topic: "signals",
            partition: 0,
            offset,
            timestamp: Some(at),
            key: Some(subject.as_bytes()),
            payload: Some(&payload),
            format: None,
            seal: None,
        };
        let inventory = Inventory::new();
        let (_, out) = self
            .processor
            .process(&self.rules, &inventory, &mut self.state, &msg);
        assert!(out
            .iter()
            .any(|o| matches!(o.kind, OutKind::Command { .. })));
    }

    fn sweep(&mut self, now: i64) -> Vec<Outgoing> {
        let inventory = Inventory::new();
        let at = (now, &self.metrics);
        self.processor
            .expiries(&self.rules, &inventory, &mut self.state, at)
    }
}

fn commands(out: &[Outgoing]) -> Vec<EnforcementCommand> {
    out.iter()
        .filter(|o| matches!(o.out.kind, OutKind::Command { .. }))
        .map(|o| serde_json::from_slice(&o.out.payload).unwrap())
        .collect()
}

fn decision(out: &[Outgoing]) -> DecisionRecord {
    let d = out
        .iter()
        .find(|o| o.out.kind == OutKind::Decision)
        .unwrap();
    serde_json::from_slice(&d.out.payload).unwrap()
}

fn ack(out: &[Outgoing]) {
    for o in out {
        o.settle.as_ref().unwrap().ack();
    }
}

#[test]
fn sent_once_and_marked_only_when_every_output_is_acknowledged() {
    let mut h = harness("[output]\nformat = \"json\"");
    h.leak("svc-1", "AK-1", (1, 0));
    assert!(h.sweep(HOUR - 1).is_empty(), "not before it expires");
    let sent = h.sweep(HOUR);
    let restores = commands(&sent);
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0].action, "restore");
    assert_eq!(decision(&sent).outcome, Outcome::Expired);
    // In flight: not sent again, nothing marked.
    assert!(h.sweep(HOUR + 1).is_empty());
    // One output fails: the next sweep sends the same restore again.
    sent[0].settle.as_ref().unwrap().fail();
    let again = h.sweep(HOUR + 3);
    assert_eq!(commands(&again), restores, "the same command, the same id");
    // Produced again as they were: the decision record keeps its evidence-chain link.
    let bytes = |out: &[Outgoing]| {
        out.iter()
            .map(|o| o.out.payload.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(bytes(&again), bytes(&sent));
    // Every output acknowledged: the state records it (one changelog record), once.
    ack(&again);
    let marked = h.sweep(HOUR + 4);
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].out.kind, OutKind::State);
    assert!(marked[0].settle.is_none());
    assert!(h.sweep(10 * HOUR).is_empty());
    let state = h.state.subject("signals", 0, "svc-1").unwrap();
    assert!(state.issued[0].restored_on_expiry);
}

#[test]
fn exactly_once_counts_outputs_only_once_their_transaction_commits() {
    let mut h = harness(
        "[output]\nformat = \"json\"\n[delivery]\nmode = \"exactly_once\"\ntransaction_max_signals = 10",
    );
    h.leak("svc-1", "AK-1", (1, 0));
    let sent = h.sweep(HOUR);
    ack(&sent);
    assert!(h.sweep(HOUR + 1).is_empty(), "acknowledged, not committed");
    h.processor.expiring.aborted();
    let again = h.sweep(HOUR + 2);
    assert_eq!(commands(&again), commands(&sent), "aborted: sent again");
    ack(&again);
    h.processor.expiring.committed();
    let marked = h.sweep(HOUR + 3);
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].out.kind, OutKind::State);
}

#[test]
fn an_open_breaker_over_restore_holds_it_for_approval() {
    let breaker = "[[safety.breakers]]\nname = \"restores\"\nscope = \"action\"\nmatch = \"restore\"\nmax = 1\nper = \"1h\"";
    let mut h = harness(&format!("[output]\nformat = \"json\"\n{breaker}"));
    h.leak("svc-1", "AK-1", (1, 0));
    h.leak("svc-2", "AK-2", (2, 0));
    h.leak("svc-3", "AK-3", (3, 0));
    let sent = h.sweep(HOUR);
    let restores = commands(&sent);
    assert_eq!(restores.len(), 1, "{restores:?}");
    let held: Vec<Outgoing> = sent
        .into_iter()
        .filter(|o| o.out.kind == OutKind::Decision)
        .filter(|o| !decision(std::slice::from_ref(o)).held.is_empty())
        .collect();
    assert_eq!(held.len(), 2, "the others wait for an operator");
    let d = decision(&held[..1]);
    assert_eq!(d.outcome, Outcome::Expired);
    assert_eq!(d.held[0].reason, "breaker_open");
}

#[test]
fn in_dry_run_the_expiry_is_recorded_once_and_stays_due_until_dry_run_is_off() {
    let mut h = harness("[output]\nformat = \"json\"");
    h.leak("svc-1", "AK-1", (1, 0));
    // The same state under a processor in dry-run (as after a restart with dry_run on).
    let mut dry = harness_with("[output]\nformat = \"json\"", true);
    std::mem::swap(&mut dry.state, &mut h.state);
    let noted = dry.sweep(HOUR);
    assert!(commands(&noted).is_empty());
    let d = decision(&noted);
    assert!(d.notes[0].contains("dry-run"), "{:?}", d.notes);
    assert!(dry.sweep(HOUR + 1).is_empty(), "recorded once per run");
    // Dry-run off again: the restore goes out.
    std::mem::swap(&mut dry.state, &mut h.state);
    assert_eq!(commands(&h.sweep(HOUR + 2)).len(), 1);
}
