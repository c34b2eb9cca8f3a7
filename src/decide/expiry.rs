//! Restore on expiry: a containment whose action says `on_expiry: restore` is lifted by
//! containd itself when its `expires_in` passes — one restore, cause-tied like any other
//! (`restores`, `restores_command_ids`, `restores_signal_ids`), with an id derived from the
//! expired command's, so a restore issued again after a crash is the same command.
//!
//! Pure: the same expired containment, state and rules give the same decision. It is not
//! issued when another containment of the same kind (target, action, object, principal)
//! still holds — restoring would lift that one too at the target — nor at a target that no
//! longer takes `restore`, nor in dry-run; the decision says why.

use super::Decision;
use crate::emit::{
    DecisionRecord, EnforcementCommand, IdentitySummary, MatchedRule, Outcome, SourcePosition,
    TargetSubject, Timings, TrustVerdict, Verdict, Why,
};
use crate::inventory::Identity;
use crate::rules::RuleSet;
use crate::state::{Issued, SubjectState};
use std::collections::BTreeMap;

/// The expired containment and what its decision depends on.
pub struct Expiring<'a> {
    /// The input partition whose state holds it (its offset is the containing signal's).
    pub topic: &'a str,
    pub partition: i32,
    pub state: &'a SubjectState,
    pub expired: &'a Issued,
    /// The subject the restore names (recorded with the containment).
    pub subject: &'a TargetSubject,
    pub identity: &'a Identity,
    /// `rules.dry_run`: decide, send nothing.
    pub dry_run: bool,
    /// What the restore's target may receive about the subject.
    pub disclosure: &'a crate::disclosure::Disclosure,
    /// When the sweep found it expired (containd's clock); the decision is dated by the
    /// containment's own `expires_at`, so a decision made again is identical.
    pub now: i64,
}

/// The id of the restore on expiry of the command `expired`.
pub fn restore_id(expired: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{expired}|restore_on_expiry").as_bytes());
    crate::codec::hex(&digest[..16])
}

/// The decision on one expired containment: its restore, or why there is none.
pub fn expire(rules: &RuleSet, e: &Expiring<'_>) -> Decision {
    let x = e.expired;
    let what = format!("{} {} at {}", x.action, x.command_id, x.target);
    let refusal = match e.state.still_holding(x, e.now) {
        Some(other) => Some(format!(
            "{what} expired; not restored: {} {} (rule {}) still holds the same there",
            other.action,
            other.command_id,
            other.cause.as_ref().map_or("?", |c| &*c.rule)
        )),
        None if !rules.accepts(&x.target, "restore") => Some(format!(
            "{what} expired; not restored: target {:?} does not accept restore",
            x.target
        )),
        None if e.dry_run => Some(format!("{what} expired; dry-run: restore not sent")),
        None => None,
    };
    let mut disclosures = Vec::new();
    let (commands, note) = match refusal {
        Some(why) => (Vec::new(), why),
        None => {
            let mut command = restore(rules, e);
            disclosures.extend(e.disclosure.apply(&mut command));
            let note = format!("{what} expired: restored by {}", command.command_id);
            (vec![command], note)
        }
    };
    let mut record = record(rules, e, &commands, note);
    record.disclosures = disclosures;
    Decision {
        record,
        commands,
        condition_errors: Vec::new(),
        update: Default::default(),
        held_commands: Vec::new(),
        tripped: Vec::new(),
    }
}

/// The restore: lifts exactly the expired containment at its target, as its principal.
fn restore(rules: &RuleSet, e: &Expiring<'_>) -> EnforcementCommand {
    let x = e.expired;
    let cause = x.cause.as_deref();
    let signal = cause.and_then(|c| c.signal.as_ref());
    let mut parameters = BTreeMap::from([
        ("restores".to_string(), x.action.to_string()),
        ("restores_command_ids".to_string(), x.command_id.to_string()),
        ("restore_reason".to_string(), "expired".to_string()),
    ]);
    if let Some(s) = signal {
        parameters.insert("restores_signal_ids".into(), s.id.to_string());
    }
    if let Some(object) = x.object() {
        parameters.insert("restores_object".into(), object.to_string());
    }
    let expired_at = x.expires_at.unwrap_or(e.now);
    EnforcementCommand {
        command_id: restore_id(&x.command_id.to_string()),
        action: "restore".into(),
        target: x.target.to_string(),
        principal_id: x.principal().map(str::to_string),
        subject: e.subject.clone(),
        parameters,
        issued_at: expired_at,
        expires_at: None,
        why: Why {
            rule_id: cause.map(|c| c.rule.to_string()).unwrap_or_default(),
            ruleset_version: rules.version().to_string(),
            signal_ids: signal.map(|s| s.id.to_string()).into_iter().collect(),
            event_type: cause.map(|c| c.event_type.to_string()).unwrap_or_default(),
            description: Some(format!(
                "restore on expiry: {} {} expired",
                x.action, x.command_id
            )),
        },
    }
}

/// The `expired` decision record: the containing rule and signal as evidence, the input
/// position of the containment, dated by its expiry.
fn record(
    rules: &RuleSet,
    e: &Expiring<'_>,
    commands: &[EnforcementCommand],
    note: String,
) -> DecisionRecord {
    let x = e.expired;
    let cause = x.cause.as_deref();
    let signal = cause.and_then(|c| c.signal.as_ref());
    let ids: Vec<String> = commands.iter().map(|c| c.command_id.clone()).collect();
    DecisionRecord {
        signal_id: signal.map(|s| s.id.to_string()).unwrap_or_default(),
        event_type: cause.map(|c| c.event_type.to_string()).unwrap_or_default(),
        subject_id: e.subject.id.clone(),
        outcome: Outcome::Expired,
        matched_rules: cause
            .map(|c| MatchedRule {
                rule_id: c.rule.to_string(),
                dry_run: e.dry_run,
                command_ids: ids.clone(),
                escalation_step: None,
                suppressed: Vec::new(),
            })
            .into_iter()
            .collect(),
        command_ids: ids,
        ruleset_version: rules.version().to_string(),
        source: SourcePosition {
            topic: e.topic.to_string(),
            partition: e.partition,
            offset: x.offset,
        },
        decided_at: x.expires_at.unwrap_or(e.now),
        trust: TrustVerdict {
            issuer: signal.map(|s| s.issuer.to_string()).unwrap_or_default(),
            transmitter: None,
            verdict: Verdict::Trusted,
            reason_kind: Some("expiry".into()),
            reason: Some(format!("containment {} expired", x.command_id)),
        },
        refused: Vec::new(),
        held: Vec::new(),
        errors: Vec::new(),
        duplicate_of: None,
        identity: IdentitySummary::of(e.identity),
        pending: Vec::new(),
        notes: vec![note],
        timings: Timings::default(),
        disclosures: Vec::new(),
        chain: None,
    }
}

#[cfg(test)]
mod tests;
