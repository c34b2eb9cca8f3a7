//! Where an action's commands go: named targets, the blast radius, and the fallback when the
//! blast radius reaches nothing.

use crate::inventory::Identity;
use crate::rules::{Action, RuleSet, TargetRef};

/// One command about to be built: where it goes and as whom.
pub(super) struct Dest<'a> {
    pub target: &'a str,
    pub principal: Option<&'a str>,
}

/// Where an action's commands go: one per (target, principal at that target). A named target
/// without an inventory principal gets one command without a principal; the blast radius is
/// every configured target the identity has access to that accepts the action.
pub(super) fn destinations<'a>(
    rules: &RuleSet,
    action: &'a Action,
    identity: &'a Identity,
    notes: &mut Vec<String>,
) -> Vec<Dest<'a>> {
    let mut out = Vec::new();
    for target in &action.targets {
        match target {
            TargetRef::Named(name) => named(identity, name, &mut out),
            TargetRef::WhereIdentityHasAccess => {
                let before = out.len();
                blast_radius(rules, action, identity, notes, &mut out);
                if out.len() == before && !action.fallback.is_empty() {
                    notes.push(format!(
                        "{}: the blast radius reaches no target; falling back to {}",
                        action.action,
                        action.fallback.join(", ")
                    ));
                    for name in &action.fallback {
                        named(identity, name, &mut out);
                    }
                }
            }
            TargetRef::Contained => {}
        }
    }
    out
}

/// A named target: one command per principal the identity has there, or one without.
fn named<'a>(identity: &'a Identity, name: &'a str, out: &mut Vec<Dest<'a>>) {
    let mut principals = identity.principals_at(name).peekable();
    if principals.peek().is_none() {
        out.push(Dest {
            target: name,
            principal: None,
        });
    }
    out.extend(principals.map(|p| Dest {
        target: name,
        principal: Some(p),
    }));
}

/// Every configured target the inventory says the identity has access to that accepts the
/// action, as the principal it has there.
fn blast_radius<'a>(
    rules: &RuleSet,
    action: &Action,
    identity: &'a Identity,
    notes: &mut Vec<String>,
    out: &mut Vec<Dest<'a>>,
) {
    if !identity.known() {
        notes.push(format!(
            "{}: identity unknown to the inventory, no blast radius",
            action.action
        ));
    }
    for (target, principal) in identity.access() {
        if rules.accepts(target, &action.action) {
            out.push(Dest {
                target,
                principal: Some(principal),
            });
        } else {
            notes.push(format!(
                "{}: inventory target {target:?} is not configured or does not accept it",
                action.action
            ));
        }
    }
}
