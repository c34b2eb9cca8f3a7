//! Decide: turn one trusted signal, the identity it names and its subject's state into
//! commands, a decision record and the state changes. Pure: the same signal, position,
//! identity, state and rules always give the same commands, which is what makes replays after
//! a crash harmless (state is read as of the signal's offset, see `state`).
//!
//! The source's authority bounds what a decision may cause: a command for an action the
//! source may not cause is refused (listed in the record), never emitted, and changes no state.
//! Signals that may not act at all (untrusted, duplicate) get a record from [`refuse`].
//!
//! The steps live in their own files: `targets` (named targets, blast radius, fallback),
//! `restore` (which containments a restore may lift), `held` (commands held instead of sent),
//! `record` (the decision record, and the record of a signal that may not act); `expiry` is
//! the decision on a containment that expired with `on_expiry: restore`.

pub mod expiry;
mod held;
mod record;
mod restore;
mod targets;

pub use record::{refuse, Refusal};

use record::{record, verdict};
use restore::{restores, Lifting};
use targets::{destinations, Dest};

use crate::emit::{
    CommandKey, DecisionRecord, EnforcementCommand, Held, MatchedRule, Outcome, Refused, RuleError,
    SourcePosition, Suppressed, TargetSubject, Verdict, Why, WindowProgress,
};
use crate::inventory::Identity;
use crate::rules::{object_of, Action, Evaluation, Facts, Rule, RuleSet};
use crate::safety::Rails;
use crate::signal::Signal;
use crate::state::{
    Cause, CommandId, NewHit, NewIssue, SignalRef, StateUpdate, SubjectState, Trigger,
};
use crate::trust::Source;
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
    /// The complete commands behind the record's holds that an operator may approve
    /// (published to the approvals topic), with their hold's reason and detail.
    pub held_commands: Vec<EnforcementCommand>,
    /// Circuit breakers this decision opened.
    pub tripped: Vec<String>,
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
    /// The configured source the signal came from: what it may cause.
    pub source: &'a Source,
    /// How long the signal's (issuer, id) is remembered for duplicate detection.
    pub dedup_window: Duration,
    /// The safety rails (which actions are drastic).
    pub rails: &'a Rails,
    /// Why the identity is protected, when it is: its drastic commands are held.
    pub protection: Option<&'a str>,
    /// What each target may receive about the subject.
    pub disclosure: &'a crate::disclosure::Disclosure,
}

/// One action of a matched rule with its parameters and object evaluated for this signal.
struct Planned<'r> {
    rule: &'r Rule,
    action: &'r Action,
    parameters: BTreeMap<String, String>,
    /// What the command concerns (a credential, device, session, incident), if it says.
    object: Option<String>,
    dry_run: bool,
    /// An action of the escalation step the rule reached (its earlier firings are evidence).
    stepped: bool,
}

/// What one decision accumulates while its matched rules act.
struct Acting<'a, 'r> {
    rules: &'r RuleSet,
    input: &'a DecideInput<'a>,
    facts: Facts<'a>,
    state: &'a SubjectState,
    subject: TargetSubject,
    commands: Vec<EnforcementCommand>,
    update: StateUpdate,
    notes: Vec<String>,
    refused: Vec<Refused>,
    held: Vec<Held>,
    held_commands: Vec<EnforcementCommand>,
    /// Window rules that fired and the earlier signals in their windows.
    contributors: Vec<(String, Vec<String>)>,
    /// Rules whose escalation ladder stepped and the signals of their earlier firings.
    escalations: Vec<(String, Vec<String>)>,
    condition_errors: Vec<(String, String)>,
    any_dry_run: bool,
    any_suppressed: bool,
    /// What each command's target was given about the subject (targets with a profile).
    disclosures: Vec<crate::emit::DisclosureRecord>,
}

pub fn decide(rules: &RuleSet, input: DecideInput<'_>) -> Decision {
    let started = std::time::Instant::now();
    let empty = SubjectState::new();
    let facts = Facts {
        signal: input.signal,
        subject_id: input.subject_id,
        identity: input.identity,
        now: input.decided_at,
        state: input.state,
        offset: input.position.offset,
    };
    let mut evaluation = rules.evaluate(&facts);
    let mut acting = Acting {
        rules,
        input: &input,
        facts,
        state: input.state.unwrap_or(&empty),
        subject: TargetSubject {
            id: input.subject_id.to_string(),
            format: input.signal.subject.id_format().to_string(),
            identifiers: input.signal.subject.id_identifiers(),
        },
        commands: Vec::new(),
        update: StateUpdate::default(),
        notes: Vec::new(),
        refused: Vec::new(),
        held: Vec::new(),
        held_commands: Vec::new(),
        contributors: evaluation
            .contributors
            .iter()
            .map(|(rule, ids)| (rule.to_string(), ids.clone()))
            .collect(),
        escalations: Vec::new(),
        condition_errors: evaluation
            .condition_errors
            .iter()
            .map(|(id, e)| (id.to_string(), e.clone()))
            .collect(),
        any_dry_run: false,
        any_suppressed: false,
        disclosures: Vec::new(),
    };
    for rule in &evaluation.hits {
        if let Some(w) = &rule.window {
            acting.update.hits.push(NewHit {
                rule: rule.id.clone(),
                event_type: input.signal.event_type.clone(),
                within: w.within,
                signal_id: input.signal.id.clone(),
            });
        }
    }
    let matched = std::mem::take(&mut evaluation.matched);
    let matched_rules: Vec<MatchedRule> = matched
        .into_iter()
        .map(|rule| acting.rule(rule, &mut evaluation))
        .collect();
    acting.finish(&evaluation, matched_rules, started)
}

impl<'a> Acting<'a, '_> {
    /// Runs one matched rule's actions (and its escalation step's).
    fn rule(&mut self, rule: &'a Rule, evaluation: &mut Evaluation<'_>) -> MatchedRule {
        let (o, t) = (self.input.position.offset, self.input.decided_at);
        let dry_run = self.input.global_dry_run || rule.dry_run;
        let mut step = None;
        let mut ladder: &[Action] = &[];
        if let Some(e) = &rule.escalate {
            let fired: Vec<&Trigger> = self.state.triggers(&rule.id, e.within, o, t).collect();
            let earlier: Vec<String> = fired
                .iter()
                .filter_map(|m| m.signal_id.as_deref().map(str::to_string))
                .collect();
            let (i, actions) = e.step(fired.len());
            step = Some(i as i32);
            ladder = actions;
            self.escalations.push((rule.id.clone(), earlier));
            let signal_id = self.input.signal.id.clone();
            self.update
                .triggers
                .push((rule.id.clone(), e.within, signal_id));
        }
        let mut ids = Vec::new();
        let mut suppressed = Vec::new();
        for (k, action) in rule.actions.iter().chain(ladder).enumerate() {
            let mut planned = self.plan(rule, action, dry_run, evaluation);
            planned.stepped = k >= rule.actions.len();
            if action.action == "restore" {
                self.restore(&planned, &mut ids);
            } else {
                self.contain(&planned, &mut ids, &mut suppressed);
            }
        }
        MatchedRule {
            rule_id: rule.id.clone(),
            dry_run,
            command_ids: ids,
            escalation_step: step,
            suppressed,
        }
    }

    /// The action's parameters and object for this signal; evaluation errors are recorded.
    fn plan<'r>(
        &mut self,
        rule: &'r Rule,
        action: &'r Action,
        dry_run: bool,
        evaluation: &mut Evaluation<'_>,
    ) -> Planned<'r> {
        let (mut parameters, errors) = evaluation.parameters(action, &self.facts);
        for (name, e) in errors {
            self.condition_errors
                .push((rule.id.clone(), format!("parameter {name}: {e}")));
        }
        // An empty value means "the signal did not say": it is not sent as a parameter.
        parameters.retain(|_, v| !v.is_empty());
        let object = match &action.object {
            Some(p) => match evaluation.value(p, &self.facts) {
                Ok(v) => Some(v).filter(|v| !v.is_empty()),
                Err(e) => {
                    self.condition_errors
                        .push((rule.id.clone(), format!("object: {e}")));
                    None
                }
            },
            None => object_of(&parameters),
        };
        Planned {
            rule,
            action,
            parameters,
            object,
            dry_run,
            stepped: false,
        }
    }

    /// Whether the source may cause the action; if not, every destination is refused.
    fn authorised(&mut self, action: &str, targets: &[&str]) -> bool {
        if self.input.source.allows_action(action) {
            return true;
        }
        for target in targets {
            self.refused.push(Refused {
                action: action.to_string(),
                target: target.to_string(),
                reason: format!(
                    "source {:?} may not cause {action}",
                    self.input.source.issuer
                ),
            });
        }
        false
    }

    fn key<'k>(&'k self, rule: &'k Rule, action: &'k str, dest: &Dest<'k>) -> CommandKey<'k> {
        CommandKey {
            issuer: &self.input.signal.source.issuer,
            signal_id: &self.input.signal.id,
            subject_id: self.input.subject_id,
            rule_id: &rule.id,
            action,
            target: dest.target,
            principal: dest.principal,
        }
    }

    /// Restores, one per (target, principal) holding containments this restore may lift.
    fn restore(&mut self, p: &Planned<'_>, ids: &mut Vec<String>) {
        let (o, t) = (self.input.position.offset, self.input.decided_at);
        let by = Lifting {
            action: p.action,
            object: p.object.as_deref(),
            occurred_at: self.input.signal.occurred_at,
        };
        let found = restores(self.rules, &by, self.state, (o, t), &mut self.notes);
        let targets: Vec<&str> = found.iter().map(|r| r.target.as_str()).collect();
        if found.is_empty() || !self.authorised(&p.action.action, &targets) {
            return;
        }
        for r in found {
            let dest = Dest {
                target: &r.target,
                principal: r.principal.as_deref(),
            };
            let id = self.key(p.rule, &p.action.action, &dest).id();
            ids.push(id.clone());
            if p.dry_run {
                self.any_dry_run = true;
                continue;
            }
            self.update.closed.extend(r.lifted.iter().copied());
            let mut parameters = p.parameters.clone();
            parameters.insert("restores".into(), r.actions.join(","));
            let lifted: Vec<String> = r.lifted.iter().map(ToString::to_string).collect();
            parameters.insert("restores_command_ids".into(), lifted.join(","));
            if !r.causes.is_empty() {
                parameters.insert("restores_signal_ids".into(), r.causes.join(","));
            }
            let command = self.command(p, id, &dest, parameters);
            self.commands.push(command);
        }
    }

    fn contain(
        &mut self,
        p: &Planned<'_>,
        ids: &mut Vec<String>,
        suppressed: &mut Vec<Suppressed>,
    ) {
        let (o, t) = (self.input.position.offset, self.input.decided_at);
        let action = p.action;
        let dests = destinations(self.rules, action, self.input.identity, &mut self.notes);
        let targets: Vec<&str> = dests.iter().map(|d| d.target).collect();
        if dests.is_empty() || !self.authorised(&action.action, &targets) {
            return;
        }
        let suppress_for = action.suppress_for.unwrap_or(self.input.suppress_for);
        for dest in dests {
            let raw = self.key(p.rule, &action.action, &dest).bytes();
            let id = crate::codec::hex(raw);
            if ids.contains(&id) {
                continue;
            }
            ids.push(id.clone());
            if !suppress_for.is_zero() {
                let kind = (dest.target, action.action.as_str(), p.object.as_deref());
                let earlier = self.state.recently_issued(kind, suppress_for, o, t);
                // A repeat only while the earlier containment holds as long as this one would.
                if let Some(earlier) = earlier.filter(|e| e.covers(t, action.expires_in)) {
                    self.any_suppressed = true;
                    suppressed.push(Suppressed {
                        command_id: id,
                        earlier_command_id: earlier.command_id.to_string(),
                        action: action.action.clone(),
                        target: dest.target.to_string(),
                    });
                    continue;
                }
            }
            if p.dry_run {
                self.any_dry_run = true;
                continue;
            }
            if self.held_for_parameters(action, &dest, &p.parameters, &id)
                || self.held_for_approval(p, &dest, &id)
            {
                continue;
            }
            self.remember(p, &dest, raw);
            let command = self.command(p, id, &dest, p.parameters.clone());
            self.commands.push(command);
        }
    }

    /// State remembers only what it needs: containments to restore (with their cause), and
    /// commands some rule's suppression (or the global one) must see, for that long.
    fn remember(&mut self, p: &Planned<'_>, dest: &Dest<'_>, raw: [u8; 16]) {
        let t = self.input.decided_at;
        let action = p.action;
        let remember = self
            .rules
            .suppression_of(&action.action)
            .max(self.input.suppress_for);
        if action.holds || !remember.is_zero() {
            let signal = self.input.signal;
            self.update.issued.push(NewIssue {
                target: dest.target.to_string(),
                action: action.action.clone(),
                command_id: CommandId::from(raw),
                holds: action.holds,
                expires_at: action.expires_in.map(|d| t + d.as_millis() as i64),
                remember_for: remember,
                cause: Cause {
                    rule: p.rule.id.as_str().into(),
                    event_type: signal.event_type.as_str().into(),
                    occurred_at: signal.occurred_at,
                    signal: Some(SignalRef {
                        issuer: signal.source.issuer.as_str().into(),
                        id: signal.id.as_str().into(),
                    }),
                    object: p.object.as_deref().map(Box::from),
                    principal: dest.principal.map(Box::from),
                },
                restore_on_expiry: (action.restore_on_expiry && action.expires_in.is_some())
                    .then(|| self.subject.clone()),
            });
        }
    }

    /// Every signal behind a command: a window's earlier hits, an escalation step's earlier
    /// firings, then this signal.
    fn signal_ids(&self, p: &Planned<'_>) -> Vec<String> {
        let escalations = self.escalations.iter().filter(|_| p.stepped);
        let mut ids: Vec<String> = self
            .contributors
            .iter()
            .chain(escalations)
            .filter(|(r, _)| *r == p.rule.id)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        ids.push(self.input.signal.id.clone());
        ids
    }

    /// The command as its target may receive it (its disclosure profile applied, recorded).
    fn command(
        &mut self,
        p: &Planned<'_>,
        command_id: String,
        dest: &Dest<'_>,
        parameters: BTreeMap<String, String>,
    ) -> EnforcementCommand {
        let mut command = self.full_command(p, command_id, dest, parameters);
        if let Some(d) = self.input.disclosure.apply(&mut command) {
            self.disclosures.push(d);
        }
        command
    }

    fn full_command(
        &self,
        p: &Planned<'_>,
        command_id: String,
        dest: &Dest<'_>,
        parameters: BTreeMap<String, String>,
    ) -> EnforcementCommand {
        let t = self.input.decided_at;
        let signal = self.input.signal;
        EnforcementCommand {
            command_id,
            action: p.action.action.clone(),
            target: dest.target.to_string(),
            principal_id: dest.principal.map(str::to_string),
            subject: self.subject.clone(),
            parameters,
            issued_at: t,
            expires_at: p.action.expires_in.map(|d| t + d.as_millis() as i64),
            why: Why {
                rule_id: p.rule.id.clone(),
                ruleset_version: self.rules.version().to_string(),
                signal_ids: self.signal_ids(p),
                event_type: signal.event_type.clone(),
                description: p.rule.description.clone(),
            },
        }
    }

    fn finish(
        mut self,
        evaluation: &Evaluation<'_>,
        matched_rules: Vec<MatchedRule>,
        started: std::time::Instant,
    ) -> Decision {
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
        let outcome = if !self.commands.is_empty() {
            Outcome::Acted
        } else if self.any_dry_run {
            Outcome::DryRun
        } else if self.any_suppressed {
            Outcome::Suppressed
        } else if !self.refused.is_empty() {
            Outcome::Refused
        } else if !self.held.is_empty() {
            Outcome::Held
        } else if !matched_rules.is_empty() {
            Outcome::MatchedNoAction
        } else if !pending.is_empty() {
            Outcome::Pending
        } else {
            Outcome::NoMatch
        };
        let input = self.input;
        if outcome != Outcome::NoMatch {
            // Remembered so a redelivery decides nothing. A signal no rule matched changed
            // nothing, so its redelivery is harmless and costs no state write.
            self.update.seen = Some((
                crate::trust::seen_key(&input.signal.source.issuer, &input.signal.id),
                input.dedup_window,
            ));
        }
        let mut record = record(
            input,
            outcome,
            verdict(input.signal, Verdict::Trusted, None),
        );
        record.matched_rules = matched_rules;
        record.command_ids = self.commands.iter().map(|c| c.command_id.clone()).collect();
        record.ruleset_version = self.rules.version().to_string();
        record.pending = pending;
        record.notes = self.notes;
        record.refused = self.refused;
        record.held = self.held;
        record.errors = self
            .condition_errors
            .iter()
            .map(|(rule_id, error)| RuleError {
                rule_id: rule_id.clone(),
                // Bounded: an expression's message, not a signal's content.
                error: error.chars().take(512).collect(),
            })
            .collect();
        record.disclosures = self.disclosures;
        record.timings.evaluate_micros = started.elapsed().as_micros() as i64;
        Decision {
            record,
            commands: self.commands,
            condition_errors: self.condition_errors,
            update: self.update,
            held_commands: self.held_commands,
            tripped: Vec::new(),
        }
    }
}
