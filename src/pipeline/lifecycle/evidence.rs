//! The decision records of a command's lifecycle: confirmed, re-issued, escalated, or failed
//! with nothing to escalate to. Each names the command, its rule and signal, the attempts
//! and results so far, and where on the results topic it was decided.

use super::super::process::Incoming;
use crate::config::Trigger;
use crate::decide::Decision;
use crate::emit::{
    DecisionRecord, EnforcementCommand, IdentitySummary, MatchedRule, Outcome, SourcePosition,
    Timings, TrustVerdict, Verdict,
};
use crate::lifecycle::Tracked;

pub(super) fn confirmed(msg: &Incoming<'_>, t: &Tracked) -> Decision {
    let note = format!(
        "{} confirmed by {}{}",
        command_of(t),
        target_of(t),
        since_sent(t, t.confirmed_at)
    );
    decision(record(msg, t, Outcome::Confirmed, Vec::new(), note))
}

pub(super) fn reissued(msg: &Incoming<'_>, t: &Tracked, attempt: u32) -> Decision {
    let after = t
        .sends
        .iter()
        .find(|s| s.attempt == attempt)
        .and_then(|s| s.after);
    let why = match after {
        Some(crate::emit::ResultStatus::Failed) => "the last attempt failed",
        _ => "its target stayed silent past the result timeout",
    };
    let note = format!(
        "{} sent again to {} as attempt {attempt}: {why}",
        command_of(t),
        target_of(t)
    );
    let ids = t
        .issued
        .iter()
        .map(|i| i.command.command_id.clone())
        .collect();
    decision(record(msg, t, Outcome::Reissued, ids, note))
}

pub(super) fn escalated(
    msg: &Incoming<'_>,
    t: &Tracked,
    trigger: Trigger,
    command: &EnforcementCommand,
) -> Decision {
    let note = format!(
        "{} failed for good ({}); escalated: {} at {} ({})",
        command_of(t),
        ended(t, trigger),
        command.action,
        command.target,
        command.command_id
    );
    let ids = vec![command.command_id.clone()];
    decision(record(msg, t, Outcome::Escalated, ids, note))
}

pub(super) fn unconfirmed(
    msg: &Incoming<'_>,
    t: &Tracked,
    trigger: Trigger,
    why_not: Option<String>,
) -> Decision {
    let why_not = why_not.unwrap_or_else(|| "no [[lifecycle.escalate]] covers it".into());
    let note = format!(
        "{} failed for good ({}); not escalated: {why_not}; the access path may still be open",
        command_of(t),
        ended(t, trigger)
    );
    decision(record(msg, t, Outcome::Unconfirmed, Vec::new(), note))
}

fn decision(record: DecisionRecord) -> Decision {
    Decision {
        record,
        commands: Vec::new(),
        condition_errors: Vec::new(),
        update: Default::default(),
        held_commands: Vec::new(),
        tripped: Vec::new(),
    }
}

fn command_of(t: &Tracked) -> String {
    match &t.issued {
        Some(i) => format!("{} {}", i.command.action, i.command.command_id),
        None => "command".into(),
    }
}

fn target_of(t: &Tracked) -> &str {
    t.issued.as_ref().map_or("", |i| i.command.target.as_str())
}

fn since_sent(t: &Tracked, at: Option<i64>) -> String {
    match (t.issued.as_ref(), at) {
        (Some(i), Some(at)) => format!(
            " {} ms after it was sent ({} attempt(s))",
            (at - i.sent_at).max(0),
            t.sends.len()
        ),
        _ => String::new(),
    }
}

fn ended(t: &Tracked, trigger: Trigger) -> String {
    let attempts = t.sends.len();
    match trigger {
        Trigger::Failed => format!("{attempts} attempt(s) failed"),
        Trigger::Rejected => "the adapter rejected it".into(),
        Trigger::Timeout => format!("no result after {attempts} attempt(s)"),
    }
}

/// A lifecycle decision record: the command's rule and signal as evidence, the results-topic
/// position it was decided at.
fn record(
    msg: &Incoming<'_>,
    t: &Tracked,
    outcome: Outcome,
    command_ids: Vec<String>,
    note: String,
) -> DecisionRecord {
    let command = t.issued.as_ref().map(|i| &i.command);
    let why = command.map(|c| &c.why);
    DecisionRecord {
        signal_id: why
            .and_then(|w| w.signal_ids.first().cloned())
            .unwrap_or_default(),
        event_type: why.map(|w| w.event_type.clone()).unwrap_or_default(),
        subject_id: command.map(|c| c.subject.id.clone()).unwrap_or_default(),
        outcome,
        matched_rules: why
            .map(|w| MatchedRule {
                rule_id: w.rule_id.clone(),
                dry_run: false,
                // The rule's own command, the one whose life this record is about.
                command_ids: command.map(|c| c.command_id.clone()).into_iter().collect(),
                escalation_step: None,
                suppressed: Vec::new(),
            })
            .into_iter()
            .collect(),
        command_ids,
        ruleset_version: why.map(|w| w.ruleset_version.clone()).unwrap_or_default(),
        source: SourcePosition {
            topic: msg.topic.to_string(),
            partition: msg.partition,
            offset: msg.offset,
        },
        decided_at: msg.timestamp.unwrap_or_else(crate::trust::now_ms),
        trust: TrustVerdict {
            issuer: String::new(),
            transmitter: None,
            verdict: Verdict::Trusted,
            reason_kind: Some("lifecycle".into()),
            reason: Some(format!("results-topic record for {}", command_of(t))),
        },
        refused: Vec::new(),
        held: Vec::new(),
        errors: Vec::new(),
        duplicate_of: None,
        identity: IdentitySummary {
            id: t.issued.as_ref().and_then(|i| i.identity.clone()),
            ..IdentitySummary::of(&crate::inventory::Identity::unknown())
        },
        pending: Vec::new(),
        notes: vec![note],
        timings: Timings::default(),
        disclosures: Vec::new(),
        chain: None,
    }
}
