//! Containment rules: parsed from YAML, checked against the configured targets, compiled,
//! indexed by event type, and evaluated in a defined order (priority, then file order).

mod condition;
mod fast;
mod load;
mod model;
pub mod reload;

pub use condition::{Condition, ConditionInput};
pub use load::{load_dir, load_sources};
pub use model::{ActionSpec, MatchSpec, ParamSpec, RuleFile, RuleSpec};
pub use reload::{current, shared, Reloader, SharedRules};

use crate::signal::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A loaded, validated rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub priority: i32,
    pub dry_run: bool,
    pub stop: bool,
    pub sources: Vec<String>,
    pub subject_formats: Vec<String>,
    pub subject_members: Vec<String>,
    pub condition: Option<Condition>,
    pub actions: Vec<Action>,
    pub file: PathBuf,
    pub line: Option<usize>,
}

/// An action with its targets resolved to configured target names.
#[derive(Debug)]
pub struct Action {
    pub action: String,
    pub targets: Vec<String>,
    pub parameters: Vec<(String, Param)>,
    pub expires_in: Option<Duration>,
}

/// A compiled parameter value.
#[derive(Debug)]
pub enum Param {
    Literal(String),
    Expr(Condition),
}

/// The loaded rules, in evaluation order, with an index by event type.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    exact: HashMap<String, Vec<usize>>,
    prefixes: Vec<(String, usize)>,
    version: String,
}

/// Rules that matched one signal, in evaluation order, and conditions that failed to
/// evaluate (treated as not matching, and reported).
#[derive(Default)]
pub struct Evaluation<'r> {
    pub matched: Vec<&'r Rule>,
    pub condition_errors: Vec<(&'r str, String)>,
    /// The CEL view of the signal, built when a condition needed it.
    input: Option<Result<ConditionInput, String>>,
}

impl Evaluation<'_> {
    /// The action's parameters for this signal. A CEL parameter that fails is left out and
    /// reported as `(parameter, error)`.
    pub fn parameters(
        &mut self,
        action: &Action,
        signal: &Signal,
        subject_id: &str,
        now_millis: i64,
    ) -> (
        std::collections::BTreeMap<String, String>,
        Vec<(String, String)>,
    ) {
        let mut out = std::collections::BTreeMap::new();
        let mut errors = Vec::new();
        for (name, p) in &action.parameters {
            match p {
                Param::Literal(v) => {
                    out.insert(name.clone(), v.clone());
                }
                Param::Expr(expr) => {
                    let input = self
                        .input
                        .get_or_insert_with(|| ConditionInput::new(signal, subject_id, now_millis));
                    match input
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|i| expr.eval_string(i))
                    {
                        Ok(v) => {
                            out.insert(name.clone(), v);
                        }
                        Err(e) => errors.push((name.clone(), e)),
                    }
                }
            }
        }
        (out, errors)
    }
}

impl RuleSet {
    /// `rules` must already be in evaluation order; `event_types` holds each rule's match list.
    pub(crate) fn new(rules: Vec<Rule>, event_types: Vec<Vec<String>>, version: String) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut prefixes = Vec::new();
        for (i, types) in event_types.into_iter().enumerate() {
            for t in types {
                match t.strip_suffix('*') {
                    Some(prefix) => prefixes.push((prefix.to_string(), i)),
                    None => exact.entry(t).or_default().push(i),
                }
            }
        }
        for list in exact.values_mut() {
            list.dedup();
        }
        Self {
            rules,
            exact,
            prefixes,
            version,
        }
    }

    /// Content hash of the rule files: stamped on every decision and command.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules indexed under this event type (before sources, subjects and conditions), in
    /// evaluation order.
    pub fn rules_for_event_type(&self, event_type: &str) -> Vec<&Rule> {
        self.candidates(event_type)
            .iter()
            .map(|i| &self.rules[*i])
            .collect()
    }

    /// Indices of the rules that can match this event type, in evaluation order; borrowed
    /// from the index unless a prefix rule adds to the exact ones.
    fn candidates(&self, event_type: &str) -> std::borrow::Cow<'_, [usize]> {
        let exact: &[usize] = self.exact.get(event_type).map_or(&[], Vec::as_slice);
        let mut prefixed = self
            .prefixes
            .iter()
            .filter(|(p, _)| event_type.starts_with(p.as_str()))
            .map(|(_, i)| *i)
            .peekable();
        if prefixed.peek().is_none() {
            return std::borrow::Cow::Borrowed(exact);
        }
        let mut c: Vec<usize> = exact.iter().copied().chain(prefixed).collect();
        c.sort_unstable();
        c.dedup();
        std::borrow::Cow::Owned(c)
    }

    /// Evaluates the rules for one signal. `now_millis` is the decision time the conditions
    /// see (the signal's bus timestamp, so a replay decides the same).
    pub fn evaluate(&self, signal: &Signal, subject_id: &str, now_millis: i64) -> Evaluation<'_> {
        let mut out = Evaluation::default();
        let mut input: Option<Result<ConditionInput, String>> = None;
        for &i in self.candidates(&signal.event_type).iter() {
            let rule = &self.rules[i];
            if !rule.matches_statically(signal) {
                continue;
            }
            if let Some(cond) = &rule.condition {
                let result = match cond.eval_fast(signal, subject_id) {
                    Some(b) => Ok(b),
                    None => {
                        let input = input.get_or_insert_with(|| {
                            ConditionInput::new(signal, subject_id, now_millis)
                        });
                        match input {
                            Ok(input) => cond.eval(input),
                            Err(e) => Err(e.clone()),
                        }
                    }
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        out.condition_errors.push((&rule.id, e));
                        continue;
                    }
                }
            }
            out.matched.push(rule);
            if rule.stop {
                break;
            }
        }
        out.input = input;
        out
    }
}

impl Rule {
    fn matches_statically(&self, signal: &Signal) -> bool {
        (self.sources.is_empty() || self.sources.contains(&signal.source.issuer))
            && (self.subject_formats.is_empty()
                || self.subject_formats.contains(&signal.subject.format))
            && self
                .subject_members
                .iter()
                .all(|m| signal.subject.has_member(m))
    }
}

#[cfg(test)]
mod tests;
