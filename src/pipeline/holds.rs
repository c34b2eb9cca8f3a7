//! The processor's side of the safety rails: commands a circuit breaker stops are moved to
//! the decision's holds; every approvable hold is published, complete, to the approvals
//! topic; and the approvals topic's records (holds, approvals, denials, expiries) move the
//! holds of its partitions — a release sends exactly the held command to its target topic.

use super::process::{ApprovalOutcome, Incoming, OutKind, OutRecord, Processed, Processor};
use crate::approvals::{seal, ApprovalRecord, Evidence, Hold, HoldRequest, Transition};
use crate::codec::DecodeError;
use crate::decide::Decision;
use crate::emit::{
    DeadLetterReason, DecisionRecord, Held, IdentitySummary, MatchedRule, Outcome, SourcePosition,
    Timings, TrustVerdict, Verdict,
};
use crate::state::store::{Change, Key as StateKey};
use crate::state::{CommandId, Mark, StateStore};

impl Processor {
    /// Holds the decision's commands that an open (or now full) circuit breaker stops; a
    /// signal re-read after a crash gets the verdicts of its first decision. Returns the
    /// changelog record of the verdicts, when they are new.
    pub(super) fn govern(
        &self,
        state: &mut StateStore,
        msg: &Incoming<'_>,
        decision: &mut Decision,
    ) -> Option<OutRecord> {
        if decision.commands.is_empty() {
            return None;
        }
        let (topic, partition, offset) = (msg.topic, msg.partition, msg.offset);
        let remembered = state.breaker_verdicts(topic, partition, offset).cloned();
        let fresh = remembered.is_none();
        let at = decision.record.decided_at;
        let verdicts = admit(state, decision, remembered, at)?;
        if !fresh {
            return None;
        }
        let (key, change) = state.record_verdicts(topic, partition, offset, verdicts);
        self.state_record(topic, partition, &key, change)
    }

    /// The approvals-topic records of the decision's approvable holds.
    pub(super) fn hold_records(&self, decision: &Decision) -> Vec<OutRecord> {
        let record = &decision.record;
        let mut out = Vec::new();
        for command in &decision.held_commands {
            let Some(held) = record
                .held
                .iter()
                .find(|h| h.command_id == command.command_id)
            else {
                continue;
            };
            let Some(topic) = self.target_topic(&command.target) else {
                continue;
            };
            let mut request = HoldRequest {
                command_id: command.command_id.clone(),
                reason: held.reason.clone(),
                detail: held.detail.clone(),
                held_at: record.decided_at,
                expires_at: record
                    .decided_at
                    .saturating_add(self.settings.safety.approval_timeout.as_millis() as i64),
                on_timeout: self.settings.safety.on_timeout.clone(),
                topic: topic.to_string(),
                command: command.clone(),
                subject_key: Some(record.subject_id.clone()),
                evidence: Evidence {
                    signal_id: record.signal_id.clone(),
                    issuer: record.trust.issuer.clone(),
                    event_type: record.event_type.clone(),
                    rule_id: command.why.rule_id.clone(),
                    source: record.source.clone(),
                    identity: record.identity.id.clone(),
                },
                seal: None,
            };
            if let Some(Ok(key)) = &self.approvals.key {
                request.seal = Some(seal(key, &request));
            }
            let hold = ApprovalRecord::Hold(Box::new(request));
            out.push(self.approvals_record(&hold));
        }
        out
    }

    /// One approvals-topic record, keyed by its command id.
    pub(crate) fn approvals_record(&self, record: &ApprovalRecord) -> OutRecord {
        OutRecord {
            topic: self.approvals_topic.clone(),
            partition: None,
            key: Some(record.command_id().as_bytes().to_vec()),
            payload: record.to_json(),
            headers: Vec::new(),
            kind: OutKind::Hold,
        }
    }

    /// Applies one approvals-topic record to its partition's holds: the release (command and
    /// decision record), the cancellation's record, or a record saying why nothing changed,
    /// and the hold's changelog record.
    pub(super) fn approval(
        &self,
        state: &mut StateStore,
        msg: &Incoming<'_>,
    ) -> (Processed, Vec<OutRecord>) {
        let record = match parse(msg, self.settings.input.max_message_bytes) {
            Ok(r) => r,
            Err(reason) => return self.dead_letter(msg, reason),
        };
        let at = Mark {
            offset: msg.offset,
            at: msg.timestamp.unwrap_or_else(crate::trust::now_ms),
        };
        if !state.has_shard(msg.topic, msg.partition) {
            state.insert_shard(msg.topic, msg.partition, Default::default());
        }
        let Some(shard) = state.shard_mut(msg.topic, msg.partition) else {
            return (Processed::Approval(ApprovalOutcome::default()), Vec::new());
        };
        let id = record.command_id().to_string();
        let transition = shard.holds.apply(record, at, &self.approvals);
        let changed = matches!(
            transition,
            Transition::Held(_) | Transition::Release(..) | Transition::Cancel(_)
        );
        let stored = shard.holds.get(&id).filter(|_| changed).cloned();
        let (mut decision, latency_ms) = self.transition_record(msg, at, &id, transition);
        let mut out = match &mut decision {
            Some(d) => {
                let subject_id = d.record.subject_id.clone();
                let mut out = self.encode(d, &subject_id).unwrap_or_default();
                out.extend(self.release_tracking(d, latency_ms));
                out
            }
            None => Vec::new(),
        };
        if let Some(hold) = stored {
            let change = Change::Updated(crate::state::changelog::value(&hold));
            let key = StateKey::Hold(id);
            out.extend(self.state_record(msg.topic, msg.partition, &key, change));
        }
        let outcome = ApprovalOutcome {
            decision: decision.map(Box::new),
            latency_ms,
        };
        (Processed::Approval(outcome), out)
    }

    /// Tracking records of a released command (from the hold's time: what was held was not
    /// contained meanwhile).
    fn release_tracking(&self, d: &Decision, waited_ms: Option<i64>) -> Vec<OutRecord> {
        let held_at = d.record.decided_at - waited_ms.unwrap_or(0);
        let mut out = Vec::new();
        for c in &d.commands {
            let origin = super::lifecycle::Origin {
                occurred_at: held_at,
                received_at: held_at,
                identity: d.record.identity.id.as_deref(),
                escalation_of: c.parameters.get("escalation_of").map(String::as_str),
            };
            let key = &d.record.subject_id;
            out.extend(self.tracking_records(std::slice::from_ref(c), key, origin));
        }
        out
    }

    /// The decision of a transition (`None` for a new hold or a record already applied: the
    /// hold's own decision record already says it was held) and how long the hold waited.
    fn transition_record(
        &self,
        msg: &Incoming<'_>,
        at: Mark,
        command_id: &str,
        transition: Transition,
    ) -> (Option<Decision>, Option<i64>) {
        let (hold, outcome, commands, note) = match transition {
            Transition::Quiet | Transition::Held(_) => return (None, None),
            Transition::Release(hold, command) => {
                let note = closing_note(&hold);
                (Some(hold), Outcome::Released, vec![*command], note)
            }
            Transition::Cancel(hold) => {
                let note = closing_note(&hold);
                (Some(hold), Outcome::Cancelled, Vec::new(), note)
            }
            Transition::Ignored { refused, why } => {
                let outcome = match refused {
                    true => Outcome::Refused,
                    false => Outcome::MatchedNoAction,
                };
                (None, outcome, Vec::new(), why)
            }
        };
        let record = approval_record(
            msg,
            at,
            (command_id, hold.as_deref()),
            outcome,
            &commands,
            note,
        );
        let latency = hold.as_ref().map(|h| at.at - h.request.held_at);
        let decision = Decision {
            record,
            commands,
            condition_errors: Vec::new(),
            update: Default::default(),
            held_commands: Vec::new(),
            tripped: Vec::new(),
        };
        (Some(decision), latency)
    }
}

/// The expiry markers of holds past their approval timeout in the store's approvals
/// partitions (each written once per process; applied when read back, in log order with any
/// verdict), as (topic, partition, record); adds the holds still pending to `pending`.
pub(super) fn expiries(
    processor: &Processor,
    state: &mut StateStore,
    pending: &mut usize,
) -> Vec<(std::sync::Arc<str>, i32, OutRecord)> {
    let now = crate::trust::now_ms();
    let mut out = Vec::new();
    for (topic, partition, holds) in state.hold_tables() {
        *pending += holds.pending().count();
        for command_id in holds.due(now) {
            let expiry = ApprovalRecord::Expire(crate::approvals::Expiry { command_id });
            let record = processor.approvals_record(&expiry);
            out.push((std::sync::Arc::from(topic), partition, record));
        }
    }
    out
}

/// The rails' gauges: breakers open now, and the holds pending over every store.
pub(super) fn set_gauges(
    breakers: &crate::safety::breakers::SharedBreakers,
    metrics: &crate::telemetry::Metrics,
    pending: usize,
) {
    let open = crate::safety::breakers::lock(breakers).open_count(crate::trust::now_ms());
    metrics.rails.set_rails(open, pending);
}

/// Holds what the circuit breakers stop of a decision made on containd's own clock (a restore
/// on expiry): it has no signal position to remember the verdicts by, and is made once per
/// process (`pipeline::expiry`).
pub(super) fn govern_clock(state: &StateStore, decision: &mut Decision, now: i64) {
    if !decision.commands.is_empty() {
        admit(state, decision, None, now);
    }
}

/// The breakers' verdicts on the decision's commands — `remembered` from its first decision,
/// or given now, counted at `at` — applied: the commands they stop are held. `None` without
/// breakers.
fn admit(
    state: &StateStore,
    decision: &mut Decision,
    remembered: Option<crate::safety::breakers::Verdicts>,
    at: i64,
) -> Option<crate::safety::breakers::Verdicts> {
    let verdicts = {
        let mut breakers = crate::safety::breakers::lock(&state.breakers);
        if breakers.is_empty() {
            return None;
        }
        let verdicts = match remembered {
            Some(v) => v,
            None => {
                let issuer = &decision.record.trust.issuer;
                breakers.admit(&decision.commands, issuer, at)?
            }
        };
        for (opened, why) in breakers.opened() {
            tracing::warn!(breaker = %opened, why = %why, "circuit breaker opened");
            let note = format!("circuit breaker {opened} opened: {why}");
            decision.record.notes.push(note);
            decision.tripped.push(opened);
        }
        verdicts
    };
    for (command_id, breaker) in &verdicts.held {
        hold_for_breaker(decision, command_id, breaker);
    }
    Some(verdicts)
}

/// Moves one command a breaker held from the decision's commands to its holds (complete, so
/// an operator can release it), and out of what the decision tells state it issued.
fn hold_for_breaker(decision: &mut Decision, command_id: &str, breaker: &str) {
    let Some(i) = decision
        .commands
        .iter()
        .position(|c| c.command_id == command_id)
    else {
        return;
    };
    let command = decision.commands.remove(i);
    let record = &mut decision.record;
    record.command_ids.retain(|id| id != command_id);
    record.held.push(Held {
        command_id: command_id.to_string(),
        action: command.action.clone(),
        target: command.target.clone(),
        reason: "breaker_open".into(),
        detail: format!("circuit breaker {breaker} is open: the command waits for an approval"),
    });
    let update = &mut decision.update;
    let id = CommandId::parse(command_id);
    update.issued.retain(|i| Some(i.command_id) != id);
    if let Some(lifted) = command.parameters.get("restores_command_ids") {
        let lifted: Vec<CommandId> = lifted.split(',').filter_map(CommandId::parse).collect();
        update.closed.retain(|c| !lifted.contains(c));
    }
    if decision.commands.is_empty() && record.outcome == Outcome::Acted {
        record.outcome = Outcome::Held;
    }
    decision.held_commands.push(command);
}

fn parse(msg: &Incoming<'_>, limit: usize) -> Result<ApprovalRecord, DeadLetterReason> {
    let payload = msg.payload.ok_or(DecodeError::Empty)?;
    if payload.len() > limit {
        return Err(DecodeError::Oversized {
            size: payload.len(),
            limit,
        }
        .into());
    }
    serde_json::from_slice(payload)
        .map_err(|e| DecodeError::BadJson(format!("not an approvals record: {e}")).into())
}

fn closing_note(hold: &Hold) -> String {
    let Some(c) = &hold.closed else {
        return String::new();
    };
    format!(
        "{} {} by {}: {} (held {} s for {})",
        hold.request.command_id,
        c.outcome,
        c.by,
        c.reason,
        (c.at - hold.request.held_at).max(0) / 1000,
        hold.request.reason
    )
}

/// The decision record of an approvals-topic record.
fn approval_record(
    msg: &Incoming<'_>,
    at: Mark,
    (command_id, hold): (&str, Option<&Hold>),
    outcome: Outcome,
    commands: &[crate::emit::EnforcementCommand],
    note: String,
) -> DecisionRecord {
    let request = hold.map(|h| &h.request);
    let ids: Vec<String> = commands.iter().map(|c| c.command_id.clone()).collect();
    let by = hold.and_then(|h| h.closed.as_ref()).map(|c| c.by.clone());
    DecisionRecord {
        signal_id: request.map_or_else(String::new, |r| r.evidence.signal_id.clone()),
        event_type: request.map_or_else(String::new, |r| r.evidence.event_type.clone()),
        subject_id: request.map_or_else(String::new, |r| r.subject_key().to_string()),
        outcome,
        matched_rules: request
            .map(|r| MatchedRule {
                rule_id: r.evidence.rule_id.clone(),
                dry_run: false,
                command_ids: ids.clone(),
                escalation_step: None,
                suppressed: Vec::new(),
            })
            .into_iter()
            .collect(),
        command_ids: ids,
        ruleset_version: String::new(),
        source: SourcePosition {
            topic: msg.topic.to_string(),
            partition: msg.partition,
            offset: msg.offset,
        },
        decided_at: at.at,
        trust: TrustVerdict {
            issuer: request.map_or_else(String::new, |r| r.evidence.issuer.clone()),
            transmitter: None,
            verdict: Verdict::Trusted,
            reason_kind: Some("approval".into()),
            reason: Some(match by {
                Some(by) => format!("approvals record for {command_id} by {by}"),
                None => format!("approvals record for {command_id}"),
            }),
        },
        refused: Vec::new(),
        held: Vec::new(),
        errors: Vec::new(),
        duplicate_of: None,
        identity: IdentitySummary {
            id: request.and_then(|r| r.evidence.identity.clone()),
            ..IdentitySummary::of(&crate::inventory::Identity::unknown())
        },
        pending: Vec::new(),
        notes: vec![note],
        timings: Timings::default(),
        disclosures: Vec::new(),
        chain: None,
    }
}
