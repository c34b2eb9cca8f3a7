//! The decision record: the facts of the signal, and the record of one that may not act.

use super::{DecideInput, Decision};
use crate::emit::{
    DecisionRecord, IdentitySummary, Outcome, SourcePosition, Timings, TrustVerdict, Verdict,
};
use crate::signal::Signal;
use crate::state::StateUpdate;

/// Why a signal may not act at all.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// Not a configured source, or beyond its authority: (reason kind, reason).
    Untrusted(&'static str, String),
    /// Already decided from another position.
    Duplicate(SourcePosition),
}

/// The record of a signal that decides nothing: no rule evaluated, no state read or changed.
pub fn refuse(input: &DecideInput<'_>, refusal: Refusal, ruleset_version: &str) -> Decision {
    let (outcome, trust, duplicate_of) = match refusal {
        Refusal::Untrusted(kind, reason) => (
            Outcome::Untrusted,
            verdict(input.signal, Verdict::Untrusted, Some((kind, reason))),
            None,
        ),
        Refusal::Duplicate(first) => {
            let reason = format!(
                "already decided from {}/{}@{}",
                first.topic, first.partition, first.offset
            );
            (
                Outcome::Duplicate,
                verdict(
                    input.signal,
                    Verdict::Duplicate,
                    Some(("duplicate", reason)),
                ),
                Some(first),
            )
        }
    };
    let mut record = record(input, outcome, trust);
    record.ruleset_version = ruleset_version.to_string();
    record.duplicate_of = duplicate_of;
    Decision {
        record,
        commands: Vec::new(),
        condition_errors: Vec::new(),
        update: StateUpdate::default(),
        held_commands: Vec::new(),
        tripped: Vec::new(),
    }
}

pub(super) fn verdict(
    signal: &Signal,
    verdict: Verdict,
    why: Option<(&str, String)>,
) -> TrustVerdict {
    let (reason_kind, reason) = why.map_or((None, None), |(k, r)| (Some(k.to_string()), Some(r)));
    TrustVerdict {
        issuer: signal.source.issuer.clone(),
        transmitter: signal.source.transmitter.clone(),
        verdict,
        reason_kind,
        reason,
    }
}

/// A record with the signal's facts and nothing decided yet.
pub(super) fn record(
    input: &DecideInput<'_>,
    outcome: Outcome,
    trust: TrustVerdict,
) -> DecisionRecord {
    DecisionRecord {
        signal_id: input.signal.id.clone(),
        event_type: input.signal.event_type.clone(),
        subject_id: input.subject_id.to_string(),
        outcome,
        matched_rules: Vec::new(),
        command_ids: Vec::new(),
        ruleset_version: String::new(),
        source: input.position.clone(),
        decided_at: input.decided_at,
        trust,
        refused: Vec::new(),
        held: Vec::new(),
        errors: Vec::new(),
        duplicate_of: None,
        identity: IdentitySummary::of(input.identity),
        pending: Vec::new(),
        notes: Vec::new(),
        timings: Timings {
            decode_micros: input.decode_micros,
            evaluate_micros: 0,
        },
        disclosures: Vec::new(),
        chain: None,
    }
}
