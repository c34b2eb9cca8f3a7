//! Decide: turn one valid signal into its commands and its decision record. Pure: the same
//! signal, position and rules always give the same commands, which is what makes replays
//! after a crash harmless.

use crate::emit::{
    command_id, DecisionRecord, EnforcementCommand, MatchedRule, Outcome, SourcePosition,
    TargetSubject, Timings, Why,
};
use crate::rules::RuleSet;
use crate::signal::Signal;

/// The outcome of deciding one signal.
#[derive(Debug, Clone)]
pub struct Decision {
    pub record: DecisionRecord,
    /// Commands to emit (empty when dry-run).
    pub commands: Vec<EnforcementCommand>,
    /// Rules whose condition failed to evaluate: rule id and error.
    pub condition_errors: Vec<(String, String)>,
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
}

pub fn decide(rules: &RuleSet, input: DecideInput<'_>) -> Decision {
    let started = std::time::Instant::now();
    let signal = input.signal;
    let mut evaluation = rules.evaluate(signal, input.subject_id, input.decided_at);
    let target_subject = TargetSubject {
        id: input.subject_id.to_string(),
        format: signal.subject.id_format().to_string(),
        identifiers: signal.subject.id_identifiers(),
    };
    let mut commands = Vec::new();
    let mut matched_rules = Vec::with_capacity(evaluation.matched.len());
    let mut any_action = false;
    let mut condition_errors: Vec<(String, String)> = evaluation
        .condition_errors
        .iter()
        .map(|(id, e)| (id.to_string(), e.clone()))
        .collect();
    let matched = std::mem::take(&mut evaluation.matched);
    for rule in matched {
        let dry_run = input.global_dry_run || rule.dry_run;
        let mut ids = Vec::new();
        for action in &rule.actions {
            let (parameters, errors) =
                evaluation.parameters(action, signal, input.subject_id, input.decided_at);
            for (name, e) in errors {
                condition_errors.push((rule.id.clone(), format!("parameter {name}: {e}")));
            }
            for target in &action.targets {
                any_action = true;
                let id = command_id(&signal.id, &rule.id, &action.action, target);
                ids.push(id.clone());
                if dry_run {
                    continue;
                }
                commands.push(EnforcementCommand {
                    command_id: id,
                    action: action.action.clone(),
                    target: target.clone(),
                    subject: target_subject.clone(),
                    parameters: parameters.clone(),
                    issued_at: input.decided_at,
                    expires_at: action
                        .expires_in
                        .map(|d| input.decided_at + d.as_millis() as i64),
                    why: Why {
                        rule_id: rule.id.clone(),
                        ruleset_version: rules.version().to_string(),
                        signal_ids: vec![signal.id.clone()],
                        event_type: signal.event_type.clone(),
                        description: rule.description.clone(),
                    },
                });
            }
        }
        matched_rules.push(MatchedRule {
            rule_id: rule.id.clone(),
            dry_run,
            command_ids: ids,
        });
    }
    let outcome = if !commands.is_empty() {
        Outcome::Acted
    } else if matched_rules.is_empty() {
        Outcome::NoMatch
    } else if any_action {
        Outcome::DryRun
    } else {
        Outcome::MatchedNoAction
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
        decided_at: input.decided_at,
        timings: Timings {
            decode_micros: input.decode_micros,
            evaluate_micros: started.elapsed().as_micros() as i64,
        },
    };
    Decision {
        record,
        commands,
        condition_errors,
    }
}
