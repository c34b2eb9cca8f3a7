//! The processor's side of restore on expiry: the sweep finds owned containments whose
//! `expires_in` passed with `on_expiry: restore`, sends each one's decision (`decide::expiry`:
//! the restore, through the safety rails, tracked when the lifecycle is on), and marks it
//! issued in the subject's state only once every output was acknowledged (under
//! `exactly_once`, once the transaction carrying them committed). A crash or a failed
//! delivery before that leaves it due: the next sweep — here or at the partition's next
//! owner — sends the same restore (same id, same content) again. Adapters de-duplicate by
//! `command_id` (docs/adapters.md), so the target acts once.

use super::process::{OutRecord, Processor};
use crate::decide::expiry::{expire, Expiring};
use crate::inventory::{Identity, Inventory};
use crate::rules::RuleSet;
use crate::state::store::Key;
use crate::state::{CommandId, StateStore};
use crate::telemetry::lifecycle::LifecycleMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The acknowledgements one expiry's outputs still wait for.
#[derive(Debug, Default)]
pub struct Settle {
    remaining: AtomicUsize,
    failed: AtomicBool,
}

impl Settle {
    fn expecting(n: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(n),
            failed: AtomicBool::new(false),
        })
    }

    /// One output was acknowledged.
    pub fn ack(&self) {
        let _ = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// One output was not: the expiry is sent again.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// `Some(true)`: every output acknowledged; `Some(false)`: one failed; `None`: waiting.
    fn outcome(&self) -> Option<bool> {
        if self.failed.load(Ordering::Acquire) {
            return Some(false);
        }
        (self.remaining.load(Ordering::Acquire) == 0).then_some(true)
    }
}

/// An expired containment's target and action, and what its decision did (`restored`,
/// `held`, `not_restored`): the labels it is counted under once settled.
type Counted = (String, String, &'static str);

/// An expiry sent and not yet marked in state.
#[derive(Debug)]
struct Sent {
    topic: String,
    partition: i32,
    subject: String,
    settle: Arc<Settle>,
    /// `exactly_once`: the transaction that carried it committed.
    committed: bool,
    /// The expired containment's target and action, and what its decision did.
    result: Counted,
    /// Its outputs, produced again as they are when one fails: the decision record keeps
    /// its place in the evidence chain (a decision made again would take a new one).
    records: Vec<OutRecord>,
}

/// Expiries in flight, by the expired command's id: not decided again until settled.
#[derive(Debug)]
pub struct InFlight {
    sent: Mutex<HashMap<CommandId, Sent>>,
    /// Dry-run: expiries recorded once this run, never marked (restored once it is off).
    noted: Mutex<std::collections::HashSet<CommandId>>,
    /// Outputs count only once their transaction commits (`exactly_once`).
    transactional: bool,
}

impl InFlight {
    pub fn new(transactional: bool) -> Self {
        Self {
            sent: Mutex::default(),
            noted: Mutex::default(),
            transactional,
        }
    }

    /// `exactly_once`: the transaction committed; what it carried counts once acknowledged.
    pub fn committed(&self) {
        for s in super::lock(&self.sent).values_mut() {
            s.committed = true;
        }
    }

    /// `exactly_once`: the transaction aborted; what it carried is sent again.
    pub fn aborted(&self) {
        super::lock(&self.sent).retain(|_, s| s.committed);
    }

    fn is_sent(&self, id: &CommandId) -> bool {
        super::lock(&self.sent).contains_key(id)
    }
}

/// One output of an expiry, with what settles when it is acknowledged.
pub(super) struct Outgoing {
    pub topic: Arc<str>,
    pub partition: i32,
    pub out: OutRecord,
    pub settle: Option<Arc<Settle>>,
}

/// The labels an expiry is counted under: its containment's target and action, and what its
/// decision did.
fn counted(expired: &crate::state::Issued, decision: &crate::decide::Decision) -> Counted {
    let result = match (
        decision.commands.is_empty(),
        decision.held_commands.is_empty(),
    ) {
        (false, _) => "restored",
        (true, false) => "held",
        (true, true) => "not_restored",
    };
    (
        expired.target.to_string(),
        expired.action.to_string(),
        result,
    )
}

/// Records for one input partition's topic, each told to `settle` when acknowledged.
fn outgoing(
    topic: &str,
    partition: i32,
    records: impl IntoIterator<Item = OutRecord>,
    settle: Option<Arc<Settle>>,
) -> Vec<Outgoing> {
    let topic: Arc<str> = Arc::from(topic);
    records
        .into_iter()
        .map(|out| Outgoing {
            topic: topic.clone(),
            partition,
            out,
            settle: settle.clone(),
        })
        .collect()
}

impl Processor {
    /// The sweep's expiry work at `now`: the changelog records of expiries now settled, then
    /// the outputs of newly due ones.
    pub(super) fn expiries(
        &self,
        rules: &RuleSet,
        inventory: &Inventory,
        state: &mut StateStore,
        (now, metrics): (i64, &LifecycleMetrics),
    ) -> Vec<Outgoing> {
        let mut out = self.settled(state, metrics);
        let due: Vec<_> = state
            .restores_due(now)
            .filter(|(.., x)| !self.expiring.is_sent(&x.command_id))
            .map(|(t, p, s, x)| (t.to_string(), p, s.to_string(), x.command_id))
            .collect();
        for (topic, partition, subject, id) in due {
            let at = (topic.as_str(), partition, subject.as_str());
            if self.settings.rules.dry_run {
                // Recorded once this run; the state keeps the restore due, so it is sent once
                // dry-run is off.
                if super::lock(&self.expiring.noted).insert(id) {
                    let records = self.expiry(rules, inventory, state, at, id, now);
                    let records = records.map(|(r, _)| r).unwrap_or_default();
                    out.extend(outgoing(&topic, partition, records, None));
                }
                continue;
            }
            let Some((records, result)) = self.expiry(rules, inventory, state, at, id, now) else {
                // Its outputs cannot be produced (logged): marked, not tried every sweep.
                let change = state.restore_issued(&topic, partition, &subject, id);
                let key = Key::Subject(subject.clone());
                let mark = self.state_record(&topic, partition, &key, change);
                out.extend(outgoing(&topic, partition, mark, None));
                continue;
            };
            let settle = Settle::expecting(records.len());
            let sent = Sent {
                topic: topic.clone(),
                partition,
                subject,
                settle: settle.clone(),
                committed: !self.expiring.transactional,
                result,
                records: records.clone(),
            };
            super::lock(&self.expiring.sent).insert(id, sent);
            out.extend(outgoing(&topic, partition, records, Some(settle)));
        }
        out
    }

    /// The outputs of one expired containment: the restore (or the hold for it) and its
    /// tracking record, then the decision, and what it did for the metrics; `None` when they
    /// cannot be encoded (logged).
    fn expiry(
        &self,
        rules: &RuleSet,
        inventory: &Inventory,
        state: &StateStore,
        (topic, partition, subject): (&str, i32, &str),
        id: CommandId,
        now: i64,
    ) -> Option<(Vec<OutRecord>, Counted)> {
        let st = state.subject(topic, partition, subject)?;
        let expired = st.issued.iter().find(|i| i.command_id == id)?;
        let target_subject = expired.restore_on_expiry.as_deref()?;
        let identity = inventory.get(subject).unwrap_or_else(Identity::unknown);
        let e = Expiring {
            topic,
            partition,
            state: st,
            expired,
            subject: target_subject,
            identity: &identity,
            dry_run: self.settings.rules.dry_run,
            disclosure: &self.disclosure,
            now,
        };
        let mut decision = expire(rules, &e);
        self.govern_restore(state, &mut decision, (&identity, &target_subject.id), now);
        let key = target_subject.id.as_str();
        let mut out = match self.encode(&mut decision, key) {
            Ok(out) => out,
            Err(reason) => {
                tracing::error!(%reason, command_id = %id, "restore on expiry cannot be sent");
                return None;
            }
        };
        let origin = super::lifecycle::Origin {
            occurred_at: decision.record.decided_at,
            received_at: decision.record.decided_at,
            identity: identity.known().then_some(identity.id()),
            escalation_of: None,
        };
        out.extend(self.tracking_records(&decision.commands, key, origin));
        Some((out, counted(expired, &decision)))
    }

    /// The rails over the restore (approval policies, a protected identity's drastic
    /// actions), then the circuit breakers — counted now, not at the (possibly long past)
    /// expiry: a mass expiry after an outage trips them like any burst.
    fn govern_restore(
        &self,
        state: &StateStore,
        decision: &mut crate::decide::Decision,
        (identity, subject_id): (&Identity, &str),
        now: i64,
    ) {
        if let Some(command) = decision.commands.pop() {
            match self.rails.held(identity, subject_id, &command) {
                Some((reason, detail)) => super::lifecycle::hold(decision, command, reason, detail),
                None => decision.commands.push(command),
            }
        }
        super::holds::govern_clock(state, decision, now);
    }

    /// Marks in state every expiry whose outputs were all acknowledged (their changelog
    /// records), and produces again, as they are, the outputs of those where one failed.
    fn settled(&self, state: &mut StateStore, metrics: &LifecycleMetrics) -> Vec<Outgoing> {
        let mut done = Vec::new();
        let mut again = Vec::new();
        let mut sent = super::lock(&self.expiring.sent);
        // Only this store's partitions: another store settles its own.
        let mine = sent
            .iter_mut()
            .filter(|(_, s)| state.owns(&s.topic, s.partition));
        for (id, s) in mine {
            match (s.settle.outcome(), s.committed) {
                (Some(true), true) => {
                    let (target, action, result) = &s.result;
                    metrics.expired(target, action, result);
                    done.push((*id, s.topic.clone(), s.partition, s.subject.clone()));
                }
                (Some(false), _) => {
                    s.settle = Settle::expecting(s.records.len());
                    let records = s.records.iter().cloned();
                    let settle = Some(s.settle.clone());
                    again.extend(outgoing(&s.topic, s.partition, records, settle));
                }
                _ => {}
            }
        }
        for (id, ..) in &done {
            sent.remove(id);
        }
        drop(sent);
        let marks = done
            .into_iter()
            .flat_map(|(id, topic, partition, subject)| {
                let change = state.restore_issued(&topic, partition, &subject, id);
                let mark = self.state_record(&topic, partition, &Key::Subject(subject), change);
                outgoing(&topic, partition, mark, None)
            });
        again.into_iter().chain(marks).collect()
    }
}

#[cfg(test)]
mod tests;
