//! Checks that look at a compiled rule as a whole: a drastic rule matching every event type
//! (a load problem unless `allow_broad`), and the warnings `check` prints for rules that load
//! but may not do what they say.

use super::load::{line_after, problem};
use super::Rule;
use crate::config::Problem;
use std::path::Path;

/// A rule with a drastic action that matches every event type acts on every signal — a
/// policy change, a session start — of every source allowed to cause it: refused unless the
/// rule says `allow_broad: true`.
pub(super) fn too_broad(
    (rule, event_types): &(Rule, Vec<String>),
    allow_broad: bool,
    path: &Path,
    text: &str,
) -> Option<Problem> {
    if allow_broad || !event_types.iter().any(|t| t == "*") {
        return None;
    }
    let steps = rule.escalate.iter().flat_map(|e| e.steps.iter().flatten());
    let drastic = rule
        .actions
        .iter()
        .chain(steps)
        .find(|a| crate::emit::command::DRASTIC.contains(&a.action.as_str()))?;
    Some(problem(
        path,
        line_after(text, rule.line, "event_types"),
        &format!("rule {}.match.event_types", rule.id),
        format!(
            "matches every event type (\"*\") and takes the drastic action {:?}: name the event types, or set allow_broad: true",
            drastic.action
        ),
    ))
}

/// Problems a rule loads with: values CAEP does not define for the members its condition
/// compares, required parameters a signal may leave empty.
pub(super) fn warnings_of(rule: &Rule, path: &Path, text: &str) -> Vec<Problem> {
    let condition = rule.condition.as_ref().map(|c| c.expression());
    let values = condition.map(super::types::doubtful).unwrap_or_default();
    let at_condition = line_after(text, rule.line, "condition");
    let values = values.into_iter().map(|message| {
        problem(
            path,
            at_condition,
            &format!("rule {}.condition", rule.id),
            message,
        )
    });
    let parameters =
        super::nullable::unmet_requirements(rule)
            .into_iter()
            .map(|(field, action, message)| {
                let line = line_after(text, rule.line, &action);
                problem(path, line, &format!("rule {}.{field}", rule.id), message)
            });
    values.chain(parameters).collect()
}
