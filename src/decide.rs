//! Decide: turn one valid signal, the identity it names and its subject's state into commands,
//! a decision record and the state changes. Pure: the same signal, position, identity, state
//! and rules always give the same commands, which is what makes replays after a crash
//! harmless (state is read as of the signal's offset, see `state`).

use crate::emit::command::command_id_bytes;
use crate::emit::{
    command_id, DecisionRecord, EnforcementCommand, IdentitySummary, MatchedRule, Outcome,
    SourcePosition, Suppressed, TargetSubject, Timings, Why, WindowProgress,
};
use crate::inventory::Identity;
use crate::rules::{Action, Facts, RuleSet, TargetRef};
use crate::signal::Signal;
use crate::state::{CommandId, NewHit, NewIssue, StateUpdate, SubjectState};
use std::collections::BTreeMap;
use std::time::Duration;

/// The outcome of deciding one signal.
#[derive(Debug, Clone)]
pub struct Decision {
    pub record: DecisionRecord,
    /// Commands to emit (empty when dry-run).
    pub commands: Vec<EnforcementCommand>,
    /// Rules whose condition failed to evaluate: rule id and error.
    pub condition_errors: Vec<(String, String)>,
    /// What the decision changes in the subject's state.
    pub update: StateUpdate,
}

/// Everything about a signal besides its content that the decision depends on.
#[derive(Debug, Clone)]
pub struct DecideInput<'a> {
    pub signal: &'a Signal,
    pub subject_id: &'a str,
    pub position: SourcePosition,
    /// Bus timestamp of the signal record (ms): the decision time, so replays are identical.
    pub decided_at: i64,
    pub global_dry_run: bool,
    pub decode_micros: i64,
    /// The inventory's identity for the subject ([`Identity::unknown`] when it has none).
    pub identity: &'a Identity,
    /// The subject's state; read as of `position.offset`.
    pub state: Option<&'a SubjectState>,
    /// Suppression period for actions that do not set one (`state.suppress_for`).
    pub suppress_for: Duration,
}

/// One command about to be built: where it goes and as whom.
struct Dest<'a> {
    target: &'a str,
    principal: Option<&'a str>,
}

pub fn decide(rules: &RuleSet, input: DecideInput<'_>) -> Decision {
    let started = std::time::Instant::now();
    let signal = input.signal;
    let (o, t) = (input.position.offset, input.decided_at);
    let facts = Facts {
        signal,
        subject_id: input.subject_id,
        identity: input.identity,
        now: t,
        state: input.state,
        offset: o,
    };
    let mut evaluation = rules.evaluate(&facts);
    let target_subject = TargetSubject {
        id: input.subject_id.to_string(),
        format: signal.subject.id_format().to_string(),
        identifiers: signal.subject.id_identifiers(),
    };
    let empty = SubjectState::new();
    let state = input.state.unwrap_or(&empty);
    let mut update = StateUpdate::default();
    let mut commands = Vec::new();
    let mut matched_rules = Vec::with_capacity(evaluation.matched.len());
    let mut notes = Vec::new();
    let mut any_dry_run = false;
    let mut any_suppressed = false;
    let mut condition_errors: Vec<(String, String)> = evaluation
        .condition_errors
        .iter()
        .map(|(id, e)| (id.to_string(), e.clone()))
        .collect();
    for rule in &evaluation.hits {
        if let Some(w) = &rule.window {
            update.hits.push(NewHit {
                rule: rule.id.clone(),
                event_type: signal.event_type.clone(),
                within: w.within,
            });
        }
    }
    let matched = std::mem::take(&mut evaluation.matched);
    for rule in matched {
        let dry_run = input.global_dry_run || rule.dry_run;
        let mut step = None;
        let mut ladder: &[Action] = &[];
        if let Some(e) = &rule.escalate {
            let (i, actions) = e.step(state.triggers(&rule.id, e.within, o, t));
            step = Some(i as i32);
            ladder = actions;
            update.triggers.push((rule.id.clone(), e.within));
        }
        let mut ids = Vec::new();
        let mut suppressed = Vec::new();
        for action in rule.actions.iter().chain(ladder) {
            let (parameters, errors) = evaluation.parameters(action, &facts);
            for (name, e) in errors {
                condition_errors.push((rule.id.clone(), format!("parameter {name}: {e}")));
            }
            if action.action == "restore" {
                for r in restores(rules, action, state, o, t, &mut notes) {
                    let id = command_id(&signal.id, &rule.id, &action.action, &r.target, None);
                    ids.push(id.clone());
                    if dry_run {
                        any_dry_run = true;
                        continue;
                    }
                    for (target, action) in &r.lifted {
                        update.closed.push((target.clone(), action.clone()));
                    }
                    let mut parameters = parameters.clone();
                    parameters.insert("restores".into(), r.actions.join(","));
                    parameters.insert("restores_command_ids".into(), r.command_ids.join(","));
                    commands.push(EnforcementCommand {
                        command_id: id,
                        action: action.action.clone(),
                        target: r.target.clone(),
                        principal_id: None,
                        subject: target_subject.clone(),
                        parameters,
                        issued_at: t,
                        expires_at: action.expires_in.map(|d| t + d.as_millis() as i64),
                        why: why(rules, rule, signal),
                    });
                }
                continue;
            }
            let suppress_for = action.suppress_for.unwrap_or(input.suppress_for);
            for dest in destinations(rules, action, input.identity, &mut notes) {
                let raw = command_id_bytes(
                    &signal.id,
                    &rule.id,
                    &action.action,
                    dest.target,
                    dest.principal,
                );
                let id = hex::encode(raw);
                if ids.contains(&id) {
                    continue;
                }
                ids.push(id.clone());
                if !suppress_for.is_zero() {
                    if let Some(earlier) =
                        state.recently_issued(dest.target, &action.action, suppress_for, o, t)
                    {
                        any_suppressed = true;
                        suppressed.push(Suppressed {
                            command_id: id,
                            earlier_command_id: earlier.command_id.to_string(),
                            action: action.action.clone(),
                            target: dest.target.to_string(),
                        });
                        continue;
                    }
                }
                if dry_run {
                    any_dry_run = true;
                    continue;
                }
                let expires_at = action.expires_in.map(|d| t + d.as_millis() as i64);
                // State remembers only what it needs: containments to restore, and commands
                // some rule's suppression (or the global one) must see, for that long.
                let remember = rules.suppression_of(&action.action).max(input.suppress_for);
                if action.holds || !remember.is_zero() {
                    update.issued.push(NewIssue {
                        target: dest.target.to_string(),
                        action: action.action.clone(),
                        command_id: CommandId::from(raw),
                        holds: action.holds,
                        expires_at,
                        remember_for: remember,
                    });
                }
                commands.push(EnforcementCommand {
                    command_id: id,
                    action: action.action.clone(),
                    target: dest.target.to_string(),
                    principal_id: dest.principal.map(str::to_string),
                    subject: target_subject.clone(),
                    parameters: parameters.clone(),
                    issued_at: t,
                    expires_at,
                    why: why(rules, rule, signal),
                });
            }
        }
        matched_rules.push(MatchedRule {
            rule_id: rule.id.clone(),
            dry_run,
            command_ids: ids,
            escalation_step: step,
            suppressed,
        });
    }
    let pending: Vec<WindowProgress> = evaluation
        .pending
        .iter()
        .map(|p| WindowProgress {
            rule_id: p.rule.id.clone(),
            count: p.count as i32,
            needed: p.needed as i32,
            missing_event_types: p.missing.clone(),
        })
        .collect();
    let outcome = if !commands.is_empty() {
        Outcome::Acted
    } else if any_dry_run {
        Outcome::DryRun
    } else if any_suppressed {
        Outcome::Suppressed
    } else if !matched_rules.is_empty() {
        Outcome::MatchedNoAction
    } else if !pending.is_empty() {
        Outcome::Pending
    } else {
        Outcome::NoMatch
    };
    let record = DecisionRecord {
        signal_id: signal.id.clone(),
        event_type: signal.event_type.clone(),
        subject_id: input.subject_id.to_string(),
        outcome,
        matched_rules,
        command_ids: commands.iter().map(|c| c.command_id.clone()).collect(),
        ruleset_version: rules.version().to_string(),
        source: input.position,
        decided_at: t,
        identity: IdentitySummary::of(input.identity),
        pending,
        notes,
        timings: Timings {
            decode_micros: input.decode_micros,
            evaluate_micros: started.elapsed().as_micros() as i64,
        },
    };
    Decision {
        record,
        commands,
        condition_errors,
        update,
    }
}

fn why(rules: &RuleSet, rule: &crate::rules::Rule, signal: &Signal) -> Why {
    Why {
        rule_id: rule.id.clone(),
        ruleset_version: rules.version().to_string(),
        signal_ids: vec![signal.id.clone()],
        event_type: signal.event_type.clone(),
        description: rule.description.clone(),
    }
}

/// Where an action's commands go: one per (target, principal at that target). A named target
/// without an inventory principal gets one command without a principal; the blast radius is
/// every configured target the identity has access to that accepts the action.
fn destinations<'a>(
    rules: &RuleSet,
    action: &'a Action,
    identity: &'a Identity,
    notes: &mut Vec<String>,
) -> Vec<Dest<'a>> {
    let mut out = Vec::new();
    for target in &action.targets {
        match target {
            TargetRef::Named(name) => {
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
            TargetRef::WhereIdentityHasAccess => {
                if !identity.known {
                    notes.push(format!(
                        "{}: identity unknown to the inventory, no blast radius",
                        action.action
                    ));
                }
                for (target, principal) in identity.access.iter() {
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
            TargetRef::Contained => {}
        }
    }
    out
}

/// One restore command: a target and the containments it lifts there.
struct Restore {
    target: String,
    actions: Vec<String>,
    command_ids: Vec<String>,
    lifted: Vec<(String, String)>,
}

/// Restores for the targets the action names (`contained`: every target with an open
/// containment), lifting the open containments there (only `lifts` actions, when listed).
fn restores(
    rules: &RuleSet,
    action: &Action,
    state: &SubjectState,
    o: i64,
    t: i64,
    notes: &mut Vec<String>,
) -> Vec<Restore> {
    let mut by_target: BTreeMap<&str, Restore> = BTreeMap::new();
    let wanted = |target: &str| {
        action.targets.iter().any(|r| match r {
            TargetRef::Contained => true,
            TargetRef::Named(n) => n == target,
            TargetRef::WhereIdentityHasAccess => false,
        })
    };
    for i in state.open(o, t) {
        let lifted = action.lifts.is_empty() || action.lifts.iter().any(|l| **l == *i.action);
        if !wanted(&i.target) || !lifted {
            continue;
        }
        if !rules.accepts(&i.target, "restore") {
            notes.push(format!(
                "restore: target {:?} holds {} but does not accept restore",
                i.target, i.action
            ));
            continue;
        }
        let r = by_target.entry(&i.target).or_insert_with(|| Restore {
            target: i.target.to_string(),
            actions: Vec::new(),
            command_ids: Vec::new(),
            lifted: Vec::new(),
        });
        if !r.actions.iter().any(|a| **a == *i.action) {
            r.actions.push(i.action.to_string());
            r.lifted.push((i.target.to_string(), i.action.to_string()));
        }
        r.command_ids.push(i.command_id.to_string());
    }
    // Named targets without an open containment still get their restore (an explicit order).
    for r in &action.targets {
        if let TargetRef::Named(n) = r {
            by_target.entry(n).or_insert_with(|| Restore {
                target: n.clone(),
                actions: Vec::new(),
                command_ids: Vec::new(),
                lifted: Vec::new(),
            });
        }
    }
    by_target.into_values().collect()
}
