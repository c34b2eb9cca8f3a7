//! The processor's side of the command lifecycle: every command sent is tracked on the
//! results topic (a sealed `issued` record in the partition its result belongs on); the
//! results topic's records — adapters' results, containd's tracking records and markers —
//! move the tracked commands of its partitions: confirmations, re-sends, escalations.

use super::process::{Incoming, OutKind, OutRecord, Processed, Processor};
use crate::codec::DecodeError;
use crate::config::{OutputFormat, Trigger};
use crate::decide::Decision;
use crate::emit::result::ATTEMPT_HEADER;
use crate::emit::{CommandResult, DeadLetterReason, EnforcementCommand, Held, Outcome};
use crate::inventory::{Identity, Inventory};
use crate::lifecycle::record::{PARTITION_HEADER, SEAL_HEADER};
use crate::lifecycle::{escalation_id, Issued, Tracked, Tracking, Transition};
use crate::state::store::{Change, Key as StateKey};
use crate::state::StateStore;
use std::sync::Arc;

mod evidence;

/// What a results-topic record did, for the metrics.
#[derive(Debug, Default)]
pub struct ResultOutcome {
    /// The decision record of a confirmation, re-send or escalation.
    pub decision: Option<Box<Decision>>,
    /// An adapter's result applied: (target, action, status).
    pub result: Option<(String, String, crate::emit::ResultStatus)>,
    /// First confirmation: (target, seconds from occurred_at, seconds from receipt).
    pub confirmed: Option<(String, f64, f64)>,
    /// A re-send to this target.
    pub resent: Option<String>,
    /// Failed for good: (target, action, trigger, escalation issued).
    pub failed: Option<(String, String, &'static str, bool)>,
    pub ignored: Option<String>,
}

/// Where the commands being tracked came from: the times time-to-containment starts at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    pub occurred_at: i64,
    pub received_at: i64,
    pub identity: Option<&'a str>,
    pub escalation_of: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// A signal's commands: from its times, for its inventory identity.
    pub fn of(signal: &crate::signal::Signal, identity: &'a Identity) -> Self {
        Self {
            occurred_at: signal.occurred_at,
            received_at: signal.received_at,
            identity: identity.known().then_some(identity.id()),
            escalation_of: None,
        }
    }
}

impl Processor {
    /// The `containd.results_partition` header of a command with this key, when tracked.
    pub(super) fn results_header(&self, key: &[u8]) -> Option<(&'static str, Vec<u8>)> {
        let p = self.lifecycle.as_ref()?.partition_of(key)?;
        Some((PARTITION_HEADER, p.to_string().into_bytes()))
    }

    /// The sealed `issued` records of commands just sent (none when tracking is off).
    pub(super) fn tracking_records(
        &self,
        commands: &[EnforcementCommand],
        key: &str,
        origin: Origin<'_>,
    ) -> Vec<OutRecord> {
        let Some(lifecycle) = &self.lifecycle else {
            return Vec::new();
        };
        let Some(partition) = lifecycle.partition_of(key.as_bytes()) else {
            return Vec::new();
        };
        let now = crate::trust::now_ms();
        commands
            .iter()
            .filter_map(|c| {
                let issued = Issued {
                    partition,
                    topic: self.target_topic(&c.target)?.to_string(),
                    key: key.to_string(),
                    identity: origin.identity.map(str::to_string),
                    sent_at: now,
                    occurred_at: origin.occurred_at,
                    received_at: origin.received_at,
                    escalation_of: origin.escalation_of.map(str::to_string),
                    command: c.clone(),
                };
                self.tracking_record(&Tracking::Issued(Box::new(issued)), key, partition)
            })
            .collect()
    }

    /// One sealed containd record for the results topic; `None` without a usable key.
    pub(super) fn tracking_record(
        &self,
        record: &Tracking,
        key: &str,
        partition: i32,
    ) -> Option<OutRecord> {
        let lifecycle = self.lifecycle.as_ref()?;
        let payload = serde_json::to_vec(record).ok()?;
        let seal = lifecycle.seal(&payload)?;
        Some(OutRecord {
            topic: lifecycle.results_topic.clone(),
            partition: Some(partition),
            key: Some(key.as_bytes().to_vec()),
            payload,
            headers: vec![(SEAL_HEADER, seal.into_bytes())],
            kind: OutKind::Tracking,
        })
    }

    /// Applies one results-topic record to its partition's tracked commands.
    pub(super) fn lifecycle_record(
        &self,
        state: &mut StateStore,
        inventory: &Inventory,
        msg: &Incoming<'_>,
    ) -> (Processed, Vec<OutRecord>) {
        let parsed = match msg.seal {
            Some(seal) => self.parse_tracking(msg, seal).map(Parsed::Ours),
            None => self.parse_result(msg).map(Parsed::Adapter),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(reason) => return self.dead_letter(msg, reason),
        };
        let mut outcome = ResultOutcome::default();
        let (id, transition, stored) = self.track(state, msg, parsed, &mut outcome);
        let mut out = self.transition_outputs(msg, (state, inventory), transition, &mut outcome);
        if let Some(tracked) = stored {
            let change = Change::Updated(crate::state::changelog::value(&tracked));
            let key = StateKey::Track(id);
            out.extend(self.state_record(msg.topic, msg.partition, &key, change));
        }
        (Processed::Result(outcome), out)
    }

    /// Applies a parsed record to its partition's tracker: the command id, the transition, and
    /// the entry to write to the changelog when it changed. Clocks run on containd's own time,
    /// never on a record's timestamp (an adapter sets those).
    fn track(
        &self,
        state: &mut StateStore,
        msg: &Incoming<'_>,
        parsed: Parsed,
        outcome: &mut ResultOutcome,
    ) -> (String, Transition, Option<Tracked>) {
        let at = (msg.offset, crate::trust::now_ms());
        if !state.has_shard(msg.topic, msg.partition) {
            state.insert_shard(msg.topic, msg.partition, Default::default());
        }
        let (Some(lifecycle), Some(shard)) =
            (&self.lifecycle, state.shard_mut(msg.topic, msg.partition))
        else {
            return (String::new(), Transition::Quiet, None);
        };
        let limits = |target: &str| lifecycle.limits(target);
        let (id, transition) = match parsed {
            Parsed::Ours(record) => {
                let id = record.command_id().to_string();
                (id, shard.tracked.apply(record, at, limits))
            }
            Parsed::Adapter(result) => {
                let t = shard.tracked.result(&result, at, limits);
                let issued = shard
                    .tracked
                    .get(&result.command_id)
                    .and_then(|t| t.issued.as_ref());
                // Labelled by the command's own target and action, never the writer's words.
                if let Some(c) = issued
                    .map(|i| &i.command)
                    .filter(|_| !matches!(t, Transition::Quiet | Transition::Ignored(_)))
                {
                    outcome.result = Some((c.target.clone(), c.action.clone(), result.status));
                }
                (result.command_id, t)
            }
        };
        let changed = !matches!(transition, Transition::Quiet | Transition::Ignored(_));
        let stored = shard.tracked.get(&id).filter(|_| changed).cloned();
        (id, transition, stored)
    }

    fn parse_tracking(
        &self,
        msg: &Incoming<'_>,
        seal: &[u8],
    ) -> Result<Tracking, DeadLetterReason> {
        let payload = self.bounded(msg)?;
        let lifecycle = self.lifecycle.as_ref().ok_or(DecodeError::Empty)?;
        lifecycle
            .verify(payload, seal)
            .map_err(DeadLetterReason::Unsealed)?;
        let record: Tracking = serde_json::from_slice(payload)
            .map_err(|e| DecodeError::BadJson(format!("not a tracking record: {e}")))?;
        match record.partition() {
            p if p == msg.partition => Ok(record),
            p => Err(DeadLetterReason::Unsealed(format!(
                "tracking record sealed for results partition {p}, read on {}: a copy, not containd's",
                msg.partition
            ))),
        }
    }

    fn parse_result(&self, msg: &Incoming<'_>) -> Result<CommandResult, DeadLetterReason> {
        let payload = self.bounded(msg)?;
        let result: CommandResult = match self.settings.output.format {
            OutputFormat::Avro => self.codec().decode_result(payload)?,
            OutputFormat::Json => serde_json::from_slice(payload)
                .map_err(|e| DecodeError::BadJson(format!("not a command result: {e}")))?,
        };
        if !crate::approvals::is_command_id(&result.command_id) {
            return Err(DecodeError::MissingField(format!(
                "command_id: {:?} is not a command id",
                result.command_id.chars().take(64).collect::<String>()
            ))
            .into());
        }
        Ok(result)
    }

    fn bounded<'a>(&self, msg: &Incoming<'a>) -> Result<&'a [u8], DeadLetterReason> {
        let payload = msg.payload.ok_or(DecodeError::Empty)?;
        let limit = self.settings.input.max_message_bytes;
        if payload.len() > limit {
            return Err(DecodeError::Oversized {
                size: payload.len(),
                limit,
            }
            .into());
        }
        Ok(payload)
    }

    /// The outputs of a transition: a confirmation's record, a re-send, an escalation.
    fn transition_outputs(
        &self,
        msg: &Incoming<'_>,
        (state, inventory): (&mut StateStore, &Inventory),
        transition: Transition,
        outcome: &mut ResultOutcome,
    ) -> Vec<OutRecord> {
        let key = match &transition {
            Transition::Confirmed(t, _) | Transition::Resend(t, ..) | Transition::Ended(t, ..) => {
                t.issued.as_ref().map(|i| i.key.clone())
            }
            _ => None,
        };
        let (mut decision, mut out) = match transition {
            Transition::Confirmed(t, replay) => {
                if !replay {
                    outcome.confirmed = confirmation(&t);
                }
                (evidence::confirmed(msg, &t), Vec::new())
            }
            Transition::Resend(t, attempt, replay) => {
                if !replay {
                    outcome.resent = t.issued.as_ref().map(|i| i.command.target.clone());
                }
                let resent = self
                    .resend(&t, attempt, msg.partition)
                    .into_iter()
                    .collect();
                (evidence::reissued(msg, &t, attempt), resent)
            }
            Transition::Ended(t, trigger, replay) => {
                let (mut decision, mut out) = self.escalate(msg, inventory, &t, trigger);
                // An escalation passes the circuit breakers like any command.
                out.extend(self.govern(state, msg, &mut decision));
                if decision.commands.is_empty() {
                    out.retain(|o| o.kind != OutKind::Tracking);
                }
                if !replay {
                    outcome.failed = failure(&t, trigger, decision.record.outcome);
                }
                (decision, out)
            }
            Transition::Ignored(why) => {
                outcome.ignored = Some(why);
                return Vec::new();
            }
            Transition::Tracked | Transition::Reported | Transition::Quiet => return Vec::new(),
        };
        let key = key.unwrap_or_else(|| decision.record.subject_id.clone());
        out.extend(self.encode(&mut decision, &key).unwrap_or_default());
        outcome.decision = Some(Box::new(decision));
        out
    }

    /// The same command (same id) to its target again, as `attempt`, naming the results
    /// partition that tracks it (not one worked out again: the topic may have grown).
    fn resend(&self, t: &Tracked, attempt: u32, partition: i32) -> Option<OutRecord> {
        let issued = t.issued.as_ref()?;
        let mut record = self
            .command_record(&issued.command, issued.key.as_bytes())
            .ok()?;
        record.topic = Arc::from(issued.topic.as_str());
        record.headers.retain(|(k, _)| *k != PARTITION_HEADER);
        record
            .headers
            .push((PARTITION_HEADER, partition.to_string().into_bytes()));
        record
            .headers
            .push((ATTEMPT_HEADER, attempt.to_string().into_bytes()));
        Some(record)
    }

    /// The decision of a command that failed for good: its escalation (held when the rails
    /// say so), tracked like any command, or `unconfirmed` when none is configured.
    fn escalate(
        &self,
        msg: &Incoming<'_>,
        inventory: &Inventory,
        t: &Tracked,
        trigger: Trigger,
    ) -> (Decision, Vec<OutRecord>) {
        let Some(issued) = t.issued.as_ref() else {
            return (evidence::unconfirmed(msg, t, trigger, None), Vec::new());
        };
        let failed = &issued.command;
        let escalation = self
            .lifecycle
            .as_ref()
            .filter(|_| issued.escalation_of.is_none())
            .and_then(|l| l.escalation(&failed.action, &failed.target, trigger));
        let Some(e) = escalation else {
            let why = issued
                .escalation_of
                .as_ref()
                .map(|of| format!("it escalated {of}: an escalation does not escalate again"));
            return (evidence::unconfirmed(msg, t, trigger, why), Vec::new());
        };
        let identity = issued
            .identity
            .as_deref()
            .and_then(|id| inventory.get(id))
            .unwrap_or_else(Identity::unknown);
        let mut command = escalated(failed, (&e.then_action, &e.then_target), &identity, trigger);
        // The subject as containd knows it (the failed command's may be cut for its target),
        // then cut again for the escalation's target.
        command.subject.id = issued.key.clone();
        let disclosed = self.disclosure.apply(&mut command);
        let mut decision = evidence::escalated(msg, t, trigger, &command);
        decision.record.disclosures.extend(disclosed);
        // The subject's own key: the failed command's subject id may be a pseudonym.
        let held = self.rails.held(&identity, &issued.key, &command);
        let mut out = Vec::new();
        match held {
            Some((reason, detail)) => {
                hold(&mut decision, command, reason, detail);
            }
            None => {
                let origin = Origin {
                    occurred_at: issued.occurred_at,
                    received_at: issued.received_at,
                    identity: issued.identity.as_deref(),
                    escalation_of: Some(&failed.command_id),
                };
                out = self.tracking_records(std::slice::from_ref(&command), &issued.key, origin);
                decision.commands.push(command);
            }
        }
        (decision, out)
    }
}

enum Parsed {
    Ours(Tracking),
    Adapter(CommandResult),
}

/// The escalation command: `then_action` at `then_target`, for the failed command's subject.
fn escalated(
    failed: &EnforcementCommand,
    (action, target): (&str, &str),
    identity: &Identity,
    trigger: Trigger,
) -> EnforcementCommand {
    let mut parameters = failed.parameters.clone();
    parameters.insert("escalation_of".into(), failed.command_id.clone());
    parameters.insert("escalation_trigger".into(), trigger.name().into());
    let mut why = failed.why.clone();
    why.description = Some(format!(
        "escalation: {} at {} {} ({})",
        failed.action,
        failed.target,
        match trigger {
            Trigger::Failed => "failed",
            Trigger::Rejected => "was rejected",
            Trigger::Timeout => "went unanswered",
        },
        failed.command_id
    ));
    EnforcementCommand {
        command_id: escalation_id(&failed.command_id, action, target),
        action: action.into(),
        target: target.into(),
        principal_id: identity.principals_at(target).next().map(str::to_string),
        subject: failed.subject.clone(),
        parameters,
        issued_at: crate::trust::now_ms(),
        expires_at: failed.expires_at,
        why,
    }
}

/// Moves an escalation the rails stop into the decision's holds (published for approval).
pub(super) fn hold(
    decision: &mut Decision,
    command: EnforcementCommand,
    reason: &str,
    detail: String,
) {
    let record = &mut decision.record;
    record.command_ids.retain(|id| *id != command.command_id);
    record.outcome = Outcome::Held;
    record.held.push(Held {
        command_id: command.command_id.clone(),
        action: command.action.clone(),
        target: command.target.clone(),
        reason: reason.into(),
        detail,
    });
    decision.held_commands.push(command);
}

fn confirmation(t: &Tracked) -> Option<(String, f64, f64)> {
    let issued = t.issued.as_ref()?;
    let at = t.confirmed_at?;
    let seconds = |from: i64| (at - from) as f64 / 1000.0;
    Some((
        issued.command.target.clone(),
        seconds(issued.occurred_at),
        seconds(issued.received_at),
    ))
}

fn failure(
    t: &Tracked,
    trigger: Trigger,
    outcome: Outcome,
) -> Option<(String, String, &'static str, bool)> {
    let c = &t.issued.as_ref()?.command;
    let escalated = matches!(outcome, Outcome::Escalated | Outcome::Held);
    Some((
        c.target.clone(),
        c.action.clone(),
        trigger.name(),
        escalated,
    ))
}

/// Open paths by (target, age bucket), counted over every store before the gauge is set.
pub(super) type OpenPaths = std::collections::HashMap<(String, usize), i64>;

/// Markers for tracked commands whose clocks ran out, in the store's results partitions, as
/// (topic, partition, record); counts the store's open paths into `open`.
pub(super) fn due(
    processor: &Processor,
    state: &mut StateStore,
    open: &mut OpenPaths,
) -> Vec<(Arc<str>, i32, OutRecord)> {
    let Some(lifecycle) = &processor.lifecycle else {
        return Vec::new();
    };
    let now = crate::trust::now_ms();
    let mut out = Vec::new();
    for (topic, partition, tracker) in state.trackers() {
        for t in tracker.iter().filter(|t| t.open()) {
            let Some(issued) = &t.issued else { continue };
            let age = (now - issued.sent_at) / 1000;
            let bucket = crate::telemetry::lifecycle::AGES
                .iter()
                .position(|(_, max)| age < *max)
                .unwrap_or(0);
            *open
                .entry((issued.command.target.clone(), bucket))
                .or_insert(0) += 1;
        }
        for marker in tracker.due(now, partition, |target| lifecycle.limits(target)) {
            let key = tracker
                .get(marker.command_id())
                .and_then(|t| t.issued.as_ref())
                .map(|i| i.key.clone())
                .unwrap_or_default();
            if let Some(record) = processor.tracking_record(&marker, &key, partition) {
                out.push((Arc::from(topic), partition, record));
            }
        }
    }
    out
}

/// A results-topic record's metrics, and (rate-bounded) why a result was ignored.
pub(super) fn observe(m: &crate::telemetry::lifecycle::LifecycleMetrics, r: &ResultOutcome) {
    if let Some((target, action, status)) = &r.result {
        m.result(target, action, *status);
    }
    if let Some((target, from_occurred, from_received)) = &r.confirmed {
        m.confirmed(target, *from_occurred, *from_received);
    }
    if let Some(target) = &r.resent {
        m.resent(target);
    }
    if let Some((target, action, trigger, escalated)) = &r.failed {
        m.failed(target, action, trigger, *escalated);
        static LOG: crate::telemetry::throttle::Throttle =
            crate::telemetry::throttle::Throttle::new(10);
        if let Some(dropped) = LOG.allow() {
            tracing::warn!(%target, %action, trigger, escalated, unlogged_before = dropped,
                "command failed for good");
        }
    }
    if let Some(why) = &r.ignored {
        m.ignored();
        static LOG: crate::telemetry::throttle::Throttle =
            crate::telemetry::throttle::Throttle::new(10);
        if let Some(dropped) = LOG.allow() {
            tracing::warn!(why = %why, unlogged_before = dropped, "result ignored");
        }
    }
}
