//! One signal record in, its output records out: ingest (decode + validate) → enrich
//! (inventory) → decide (rules + state) → encode (commands, decision, changelog record). No
//! Kafka here, so both delivery modes, `replay`, `rules test` and the tests share it.

use super::fit;
use crate::codec::{AvroCodec, DecodeError, Format, SignalDecoder};
use crate::config::Settings;
use crate::decide::{decide, refuse, DecideInput, Decision, Refusal};
use crate::emit::deadletter::headers;
use crate::emit::{DeadLetter, DeadLetterReason, Outcome, RuleError, SourcePosition};
use crate::inventory::{Identity, Inventory};
use crate::rules::RuleSet;
use crate::safety::Rails;
use crate::signal::{validate, Signal};
use crate::state::store::{Change, Key as StateKey};
use crate::state::{changelog, Mark, StateStore, StateUpdate};
use crate::trust::authority::NOBODY;
use crate::trust::{seen_key, Trust};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// A consumed record, borrowed from the Kafka message.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp (ms), when the broker gave one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Encoding override (`replay` mixes JSON and SET lines); `None`: the topic's format.
    pub format: Option<crate::codec::Format>,
    /// The `containd.seal` header: set on containd's own results-topic records.
    pub seal: Option<&'a [u8]>,
}

/// What an output record is, for metrics and acknowledgement accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutKind {
    Command {
        target: String,
        action: String,
    },
    Decision,
    DeadLetter,
    /// A changelog record of the subject's state.
    State,
    /// A record of the approvals topic (a held command).
    Hold,
    /// containd's own record on the results topic (a command tracked, a clock's marker).
    Tracking,
}

impl OutKind {
    /// Metric label and dead-letter header value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Command { .. } => "command",
            Self::Decision => "decision",
            Self::DeadLetter => "dead_letter",
            Self::State => "state",
            Self::Hold => "hold",
            Self::Tracking => "tracking",
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    /// Set for changelog records (the input partition's number); others go by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub kind: OutKind,
}

/// The fate of one signal record: decided, or dead-lettered with its reason.
#[derive(Debug)]
pub enum Processed {
    Decided(Box<Decision>),
    DeadLettered(DeadLetter),
    /// A record of the approvals topic applied to its partition's holds.
    Approval(ApprovalOutcome),
    /// A record of the results topic applied to its partition's tracked commands.
    Result(super::lifecycle::ResultOutcome),
}

/// What an approvals-topic record did.
#[derive(Debug, Default)]
pub struct ApprovalOutcome {
    /// The release's, cancellation's or refusal's decision; `None` for a new hold or a
    /// record already applied.
    pub decision: Option<Box<Decision>>,
    /// How long the hold waited for its verdict (ms).
    pub latency_ms: Option<i64>,
}

/// A decoded signal and what the decision about it depends on besides state and rules.
struct Judged<'a> {
    signal: &'a Signal,
    subject_id: &'a str,
    /// Whose state the decision reads and changes: see [`state_key`].
    state_key: &'a str,
    identity: &'a Identity,
    decided_at: i64,
    /// The daemon's clock (ms), for future-dated signals.
    now: i64,
    /// It arrived as a SET whose signature verified.
    signed: bool,
    decode_micros: i64,
}

/// The name a subject's state is kept under: the inventory's id when the inventory knows any
/// of the signal's identifiers (so a quarantine issued under an agent's URI is lifted by a
/// closure naming its inventory id), else the canonical subject id.
pub fn state_key<'a>(identity: &'a Identity, subject_id: &'a str) -> &'a str {
    if identity.known() {
        identity.id()
    } else {
        subject_id
    }
}

/// State an identity's other names still hold (kept before the inventory knew them, or by a
/// release that keyed state by raw identifier) moves to its state key; returns the changelog
/// changes that make the move durable.
fn adopt_former_names(
    state: &mut StateStore,
    msg: &Incoming<'_>,
    key: &str,
    identity: &Identity,
    subject_id: &str,
) -> Vec<(String, Change)> {
    if !identity.known() {
        return Vec::new();
    }
    let former = std::iter::once(subject_id).chain(identity.aliases());
    state.adopt(msg.topic, msg.partition, key, former)
}

/// Turns records into outputs with the configured encodings and topics.
pub struct Processor {
    pub(super) settings: Arc<Settings>,
    trust: Arc<Trust>,
    decoder: SignalDecoder,
    pub(super) codec: AvroCodec,
    pub(super) target_topics: HashMap<String, Arc<str>>,
    pub(super) decisions_topic: Arc<str>,
    dead_letter_topic: Arc<str>,
    changelog_topic: Arc<str>,
    pub(super) approvals_topic: Arc<str>,
    /// How approvals-topic records are judged.
    pub(super) approvals: crate::approvals::Policy,
    /// The producer's `message.max.bytes`: no output may be larger.
    pub(super) max_record_bytes: usize,
    pub(super) rails: Rails,
    /// Command tracking (`[lifecycle] enabled`).
    pub(super) lifecycle: Option<crate::lifecycle::Lifecycle>,
    /// What each target may receive about a subject.
    pub(super) disclosure: crate::disclosure::Disclosure,
    /// This run's evidence chains over the decision records it writes.
    pub(super) chains: crate::evidence::Chains,
    /// Restores on expiry sent and not yet marked in state.
    pub(super) expiring: super::expiry::InFlight,
}

impl Processor {
    pub fn new(settings: Arc<Settings>, codec: AvroCodec, trust: Arc<Trust>) -> Self {
        let target_topics = settings
            .targets
            .iter()
            .map(|t| (t.name.clone(), Arc::from(t.topic.as_str())))
            .collect();
        Self {
            decoder: SignalDecoder::new(codec.clone(), settings.input.max_message_bytes)
                .with_sets(trust.sets.clone()),
            trust,
            decisions_topic: Arc::from(settings.output.decisions_topic.as_str()),
            dead_letter_topic: Arc::from(settings.output.dead_letter_topic.as_str()),
            changelog_topic: Arc::from(settings.state.changelog_topic.as_str()),
            approvals_topic: Arc::from(settings.safety.approvals_topic.as_str()),
            approvals: crate::approvals::Policy::of(&settings),
            max_record_bytes: fit::max_record_bytes(&settings),
            rails: Rails::new(&settings.safety, &settings.targets),
            lifecycle: crate::lifecycle::Lifecycle::of(&settings),
            disclosure: crate::disclosure::Disclosure::of(&settings),
            chains: crate::evidence::Chains::new(),
            expiring: super::expiry::InFlight::new(
                settings.delivery.mode == crate::config::DeliveryMode::ExactlyOnce,
            ),
            settings,
            codec,
            target_topics,
        }
    }

    pub(super) fn codec(&self) -> &AvroCodec {
        &self.codec
    }

    /// The lifecycle tracking this processor does, when on.
    pub fn lifecycle(&self) -> Option<&crate::lifecycle::Lifecycle> {
        self.lifecycle.as_ref()
    }

    /// The topic a target's commands go to.
    pub(super) fn target_topic(&self, target: &str) -> Option<&Arc<str>> {
        self.target_topics.get(target)
    }

    /// The record's encoding: the override, else its topic's.
    fn format_of(&self, msg: &Incoming<'_>) -> Format {
        msg.format
            .unwrap_or_else(|| self.settings.input.format_of(msg.topic))
    }

    /// Decodes and validates; on success returns the signal and its canonical subject id.
    pub fn ingest(
        &self,
        msg: &Incoming<'_>,
        now: i64,
    ) -> Result<(Signal, String), DeadLetterReason> {
        let format = self.format_of(msg);
        let mut signal = self.decoder.decode_at(format, msg.payload, now)?;
        validate(&signal)?;
        if signal.received_at == 0 {
            signal.received_at = msg.timestamp.unwrap_or(signal.occurred_at);
        }
        // validate() guarantees an id; a miss here would be a bug, reported as invalid input.
        let subject_id = signal
            .subject
            .id()
            .ok_or(DecodeError::MissingField("subject identifiers".into()))?;
        Ok((signal, subject_id))
    }

    /// Ingests, enriches, decides and encodes one record, and applies the decision to the
    /// subject's state. Never fails: bad input becomes a dead letter.
    pub fn process(
        &self,
        rules: &RuleSet,
        inventory: &Inventory,
        state: &mut StateStore,
        msg: &Incoming<'_>,
    ) -> (Processed, Vec<OutRecord>) {
        if let Some(own) = self.own_record(state, inventory, msg) {
            return own;
        }
        let started = Instant::now();
        let now = crate::trust::now_ms();
        let (signal, subject_id) = match self.ingest(msg, now) {
            Ok(ok) => ok,
            Err(reason) => return self.dead_letter(msg, reason),
        };
        let identity = inventory
            .lookup(&signal.subject, &subject_id)
            .unwrap_or_else(Identity::unknown);
        let decided_at = msg.timestamp.unwrap_or(signal.received_at);
        let key = state_key(&identity, &subject_id);
        let moved = adopt_former_names(state, msg, key, &identity, &subject_id);
        let mut decision = self.judge(
            rules,
            state,
            msg,
            Judged {
                signal: &signal,
                subject_id: &subject_id,
                state_key: key,
                identity: &identity,
                decided_at,
                now,
                signed: self.format_of(msg) == Format::Set,
                decode_micros: started.elapsed().as_micros() as i64,
            },
        );
        let verdicts = self.govern(state, msg, &mut decision);
        match self.encode(&mut decision, &subject_id) {
            Ok(mut out) => {
                let origin = super::lifecycle::Origin::of(&signal, &identity);
                out.extend(self.tracking_records(&decision.commands, &subject_id, origin));
                let update = &decision.update;
                out.extend(self.apply(state, msg, (key, decided_at), update, moved));
                out.extend(verdicts);
                (Processed::Decided(Box::new(decision)), out)
            }
            Err(reason) => {
                let (processed, mut out) = self.undeliverable(msg, decision, &subject_id, reason);
                out.extend(self.apply(
                    state,
                    msg,
                    (key, decided_at),
                    &StateUpdate::default(),
                    moved,
                ));
                (processed, out)
            }
        }
    }

    /// A record of a topic containd keeps itself (approvals, results), applied to its
    /// partition's holds or tracked commands; `None` for a signal.
    fn own_record(
        &self,
        state: &mut StateStore,
        inventory: &Inventory,
        msg: &Incoming<'_>,
    ) -> Option<(Processed, Vec<OutRecord>)> {
        if msg.topic == &*self.approvals_topic {
            return Some(self.approval(state, msg));
        }
        let results = self.lifecycle.as_ref().map(|l| &*l.results_topic);
        (results == Some(msg.topic)).then(|| self.lifecycle_record(state, inventory, msg))
    }

    /// Applies the decision's update to the state under `key` and returns the changelog
    /// records of every name whose state changed (former names adopted, then `key`).
    fn apply(
        &self,
        state: &mut StateStore,
        msg: &Incoming<'_>,
        (key, decided_at): (&str, i64),
        update: &StateUpdate,
        mut moved: Vec<(String, Change)>,
    ) -> Vec<OutRecord> {
        let at = Mark {
            offset: msg.offset,
            at: decided_at,
        };
        let change = state.apply(msg.topic, msg.partition, key, at, update);
        if change != Change::Unchanged {
            moved.retain(|(name, _)| name != key);
        }
        moved.push((key.to_string(), change));
        let seen = update.seen.and_then(|(signal, window)| {
            state.remember(msg.topic, msg.partition, signal, at, window)
        });
        let subjects = moved
            .into_iter()
            .map(|(name, c)| (StateKey::Subject(name), c));
        subjects
            .chain(seen)
            .filter_map(|(k, change)| self.state_record(msg.topic, msg.partition, &k, change))
            .collect()
    }

    /// A decision whose outputs cannot be produced acts on nothing and changes no state: the
    /// signal is dead-lettered with the reason, and the decision record (without its commands,
    /// outcome `undeliverable`) says so when it fits.
    fn undeliverable(
        &self,
        msg: &Incoming<'_>,
        mut decision: Decision,
        subject_id: &str,
        reason: DeadLetterReason,
    ) -> (Processed, Vec<OutRecord>) {
        decision.commands.clear();
        decision.record.outcome = Outcome::Undeliverable;
        decision.record.errors.push(RuleError {
            rule_id: String::new(),
            error: fit::reason(&reason.to_string()),
        });
        let record = self.encode(&mut decision, subject_id).ok();
        let (processed, mut out) = self.dead_letter(msg, reason);
        out.splice(0..0, record.into_iter().flatten());
        (processed, out)
    }

    /// Trust, then duplicates, then the rules: an untrusted or redelivered signal decides
    /// nothing and reads no rule.
    fn judge(
        &self,
        rules: &RuleSet,
        state: &StateStore,
        msg: &Incoming<'_>,
        j: Judged<'_>,
    ) -> Decision {
        let signal = j.signal;
        let subject_state = state.subject(msg.topic, msg.partition, j.state_key);
        let protection = self.rails.protection(j.identity, j.subject_id);
        let admitted =
            self.trust
                .authority
                .admit(signal, msg.topic, j.signed, (j.decided_at, j.now));
        let input = DecideInput {
            signal,
            subject_id: j.subject_id,
            position: SourcePosition {
                topic: msg.topic.to_string(),
                partition: msg.partition,
                offset: msg.offset,
            },
            decided_at: j.decided_at,
            global_dry_run: self.settings.rules.dry_run,
            decode_micros: j.decode_micros,
            identity: j.identity,
            state: subject_state,
            suppress_for: self.settings.state.suppress_for,
            source: admitted.as_ref().map_or(&NOBODY, |s| *s),
            dedup_window: self.trust.dedup_window,
            rails: &self.rails,
            protection: protection.as_deref(),
            disclosure: &self.disclosure,
        };
        let key = seen_key(&signal.source.issuer, &signal.id);
        let first_seen = state.first_seen(msg.topic, msg.partition, &key, msg.offset);
        match (admitted, first_seen) {
            (Err(why), _) => refuse(
                &input,
                Refusal::Untrusted(why.kind(), why.to_string()),
                rules.version(),
            ),
            (Ok(_), Some(offset)) => {
                let first = SourcePosition {
                    offset,
                    ..input.position.clone()
                };
                refuse(&input, Refusal::Duplicate(first), rules.version())
            }
            (Ok(_), None) => decide(rules, input),
        }
    }

    /// The changelog record for a subject whose state changed (a tombstone when it emptied).
    pub fn state_record(
        &self,
        topic: &str,
        partition: i32,
        key: &StateKey,
        change: Change,
    ) -> Option<OutRecord> {
        let payload = match change {
            Change::Unchanged => return None,
            Change::Updated(record) => record,
            Change::Removed => Vec::new(),
        };
        Some(OutRecord {
            topic: self.changelog_topic.clone(),
            partition: Some(partition),
            key: Some(match key {
                StateKey::Subject(subject) => changelog::key(topic, partition, subject),
                StateKey::Seen(seen) => changelog::seen_key(topic, partition, seen),
                StateKey::Breaker(offset) => changelog::breaker_key(topic, partition, *offset),
                StateKey::Hold(id) => changelog::hold_key(topic, partition, id),
                StateKey::Track(id) => changelog::track_key(topic, partition, id),
            }),
            payload,
            headers: Vec::new(),
            kind: OutKind::State,
        })
    }

    /// The dead letter that takes the place of an output the broker refused for good: the
    /// refused record itself (so it can be re-driven once its topic is fixed), its topic and
    /// the refusal in headers, and the signal's position.
    pub fn refused_output(
        &self,
        refused: &OutRecord,
        error: &str,
        (topic, partition, offset): (&str, i32, i64),
    ) -> OutRecord {
        let reason = format!(
            "the broker refused the {} for {}: {error}",
            refused.kind.name(),
            refused.topic
        );
        let mut headers = vec![
            (headers::REASON_KIND, b"output_refused".to_vec()),
            (headers::REASON, fit::reason(&reason).into_bytes()),
            (headers::REFUSED_TOPIC, refused.topic.as_bytes().to_vec()),
            (
                headers::REFUSED_KIND,
                refused.kind.name().as_bytes().to_vec(),
            ),
            (headers::SOURCE_TOPIC, topic.as_bytes().to_vec()),
            (
                headers::SOURCE_PARTITION,
                partition.to_string().into_bytes(),
            ),
            (headers::SOURCE_OFFSET, offset.to_string().into_bytes()),
        ];
        headers.extend(refused.headers.iter().cloned());
        let record = OutRecord {
            topic: self.dead_letter_topic.clone(),
            partition: None,
            key: refused.key.clone(),
            payload: refused.payload.clone(),
            headers,
            kind: OutKind::DeadLetter,
        };
        fit::dead_letter(record, self.max_record_bytes)
    }

    pub(super) fn dead_letter(
        &self,
        msg: &Incoming<'_>,
        reason: DeadLetterReason,
    ) -> (Processed, Vec<OutRecord>) {
        let record = OutRecord {
            topic: self.dead_letter_topic.clone(),
            partition: None,
            key: msg.key.map(<[u8]>::to_vec),
            payload: msg.payload.map(<[u8]>::to_vec).unwrap_or_default(),
            headers: vec![
                (headers::REASON_KIND, reason.kind().as_bytes().to_vec()),
                (
                    headers::REASON,
                    fit::reason(&reason.to_string()).into_bytes(),
                ),
                (headers::SOURCE_TOPIC, msg.topic.as_bytes().to_vec()),
                (
                    headers::SOURCE_PARTITION,
                    msg.partition.to_string().into_bytes(),
                ),
                (headers::SOURCE_OFFSET, msg.offset.to_string().into_bytes()),
            ],
            kind: OutKind::DeadLetter,
        };
        let record = fit::dead_letter(record, self.max_record_bytes);
        let dl = DeadLetter {
            reason,
            topic: msg.topic.to_string(),
            partition: msg.partition,
            offset: msg.offset,
        };
        (Processed::DeadLettered(dl), vec![record])
    }
}
