//! Which open containments a restore may lift: those its `lifts` covers, of the same object,
//! caused no later than the restoring event; one restore per (target, principal).

use crate::rules::{Action, RuleSet, TargetRef};
use crate::state::{CommandId, Issued, SubjectState};
use std::collections::BTreeMap;

/// One restore command: a target, the principal there, and the containments it lifts.
pub(super) struct Restore {
    pub target: String,
    pub principal: Option<String>,
    pub actions: Vec<String>,
    pub lifted: Vec<CommandId>,
    /// The ids of the signals that caused what it lifts (each once).
    pub causes: Vec<String>,
}

/// What a restore is lifting on behalf of: its action (targets, `lifts`), the object it
/// concerns, and when its signal says the cause went away.
pub(super) struct Lifting<'a> {
    pub action: &'a Action,
    pub object: Option<&'a str>,
    pub occurred_at: i64,
}

impl Lifting<'_> {
    /// Why an open containment is not this restore's to lift, or `None` when it is.
    fn refuses(&self, i: &Issued) -> Option<String> {
        let cause = i.cause.as_deref();
        let (rule, event_type) = (cause.map(|c| &*c.rule), cause.map(|c| &*c.event_type));
        if !self.action.lifts.covers(&i.action, rule, event_type) {
            return Some("not a cause this restore resolves".into());
        }
        if let (Some(want), got) = (self.object, i.object()) {
            if got != Some(want) {
                return Some(format!(
                    "concerns {}, not {want}",
                    got.unwrap_or("(nothing named)")
                ));
            }
        }
        match cause {
            Some(c) if c.occurred_at > self.occurred_at => {
                Some("the restoring event occurred before the containing one".into())
            }
            _ => None,
        }
    }

    fn wants(&self, target: &str) -> bool {
        self.action.targets.iter().any(|r| match r {
            TargetRef::Contained => true,
            TargetRef::Named(n) => n == target,
            TargetRef::WhereIdentityHasAccess => false,
        })
    }
}

/// Restores for the targets the action names (`contained`: every target with an open
/// containment), lifting the open containments there whose cause this restore resolves
/// (`lifts`, same object, occurred later); one per (target, principal).
pub(super) fn restores(
    rules: &RuleSet,
    by: &Lifting<'_>,
    state: &SubjectState,
    (o, t): (i64, i64),
    notes: &mut Vec<String>,
) -> Vec<Restore> {
    let mut by_dest: BTreeMap<(&str, Option<&str>), Restore> = BTreeMap::new();
    for i in state.open(o, t).filter(|i| by.wants(&i.target)) {
        if let Some(why) = by.refuses(i) {
            notes.push(format!(
                "restore: {} at {} stays ({why})",
                i.action, i.target
            ));
            continue;
        }
        if !rules.accepts(&i.target, "restore") {
            notes.push(format!(
                "restore: target {:?} holds {} but does not accept restore",
                i.target, i.action
            ));
            continue;
        }
        let r = by_dest
            .entry((&i.target, i.principal()))
            .or_insert_with(|| Restore {
                target: i.target.to_string(),
                principal: i.principal().map(str::to_string),
                actions: Vec::new(),
                lifted: Vec::new(),
                causes: Vec::new(),
            });
        if !r.actions.iter().any(|a| **a == *i.action) {
            r.actions.push(i.action.to_string());
        }
        r.lifted.push(i.command_id);
        let cause = i.cause.as_ref().and_then(|c| c.signal.as_ref());
        if let Some(id) = cause.map(|s| &*s.id) {
            if !r.causes.iter().any(|c| c == id) {
                r.causes.push(id.to_string());
            }
        }
    }
    // Named targets without an open containment still get their restore (an explicit order).
    for r in &by.action.targets {
        if let TargetRef::Named(n) = r {
            if !by_dest.keys().any(|(t, _)| t == n) {
                by_dest.insert(
                    (n, None),
                    Restore {
                        target: n.clone(),
                        principal: None,
                        actions: Vec::new(),
                        lifted: Vec::new(),
                        causes: Vec::new(),
                    },
                );
            }
        }
    }
    by_dest.into_values().collect()
}
