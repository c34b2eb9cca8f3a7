//! Containment rules: parsed from YAML, checked against the configured targets, compiled,
//! indexed by event type, and evaluated in a defined order (priority, then file order).

mod budget;
mod condition;
mod fast;
mod lint;
mod load;
mod model;
mod nullable;
pub mod reload;
mod types;

pub use condition::{Condition, ConditionInput};
pub use load::{load_dir, load_sources};
pub use model::{ActionSpec, MatchSpec, ParamSpec, RuleFile, RuleSpec};
pub use reload::{current, shared, Reloader, SharedRules};

use crate::inventory::Identity;
use crate::signal::Signal;
use crate::state::{SubjectState, WindowView};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// What a rule can read about one signal: the signal, its subject's canonical id, the identity
/// the inventory knows it as, the decision time, and the subject's state as of the signal's
/// offset (for windows).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub signal: &'a Signal,
    pub subject_id: &'a str,
    pub identity: &'a Identity,
    /// Decision time (ms): the signal's bus timestamp, so a replay decides the same.
    pub now: i64,
    pub state: Option<&'a SubjectState>,
    /// The signal's offset: state entries at or after it are ignored.
    pub offset: i64,
}

impl<'a> Facts<'a> {
    /// Facts without state (offset 0): for tests and stateless evaluation.
    pub fn new(signal: &'a Signal, subject_id: &'a str, identity: &'a Identity, now: i64) -> Self {
        Self {
            signal,
            subject_id,
            identity,
            now,
            state: None,
            offset: 0,
        }
    }
}

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
    pub window: Option<Window>,
    pub escalate: Option<Escalate>,
    pub file: PathBuf,
    pub line: Option<usize>,
}

/// A rule's window: it fires on the `count`th signal within `within` (and once every listed
/// event type was seen).
#[derive(Debug, Clone)]
pub struct Window {
    pub within: Duration,
    pub count: usize,
    pub event_types: Vec<String>,
}

/// An escalation ladder: on the Nth firing within `within`, step N's actions are added (the
/// last step repeats).
#[derive(Debug)]
pub struct Escalate {
    pub within: Duration,
    pub steps: Vec<Vec<Action>>,
}

impl Escalate {
    pub fn step(&self, earlier_firings: usize) -> (usize, &[Action]) {
        let i = earlier_firings.min(self.steps.len().saturating_sub(1));
        (i, self.steps.get(i).map_or(&[][..], Vec::as_slice))
    }
}

/// Where an action's commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRef {
    /// A configured target (names and `kind:` resolved at load).
    Named(String),
    /// Every configured target the inventory says the identity has access to.
    WhereIdentityHasAccess,
    /// Every target holding an open containment of the subject (for `restore`).
    Contained,
}

/// An action with its targets resolved to configured target names.
#[derive(Debug)]
pub struct Action {
    pub action: String,
    pub targets: Vec<TargetRef>,
    pub parameters: Vec<(String, Param)>,
    pub expires_in: Option<Duration>,
    /// containd issues the restore itself when `expires_in` passes (`on_expiry: restore`).
    pub restore_on_expiry: bool,
    /// Not re-issued for the same subject and target within this period.
    pub suppress_for: Option<Duration>,
    /// Stays in force until restored (an open containment).
    pub holds: bool,
    /// For `restore`: which containments it may lift.
    pub lifts: Lifts,
    /// What the command concerns; `None`: derived from the parameters ([`object_of`]).
    pub object: Option<Param>,
    /// Targets for a blast radius that reaches nothing (see `ActionSpec::fallback_targets`).
    pub fallback: Vec<String>,
    /// Held for an operator's approval (see `ActionSpec::require_approval`).
    pub require_approval: bool,
}

/// The containments a restore may lift: each list empty = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifts {
    pub actions: Vec<String>,
    pub rules: Vec<String>,
    pub event_types: Vec<String>,
}

impl Lifts {
    /// Whether a containment of `action`, issued by `rule` for a signal of `event_type`, is
    /// one this restore may lift.
    pub fn covers(&self, action: &str, rule: Option<&str>, event_type: Option<&str>) -> bool {
        let any_or = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|l| l == v))
        };
        any_or(&self.actions, Some(action))
            && any_or(&self.rules, rule)
            && any_or(&self.event_types, event_type)
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.rules.is_empty() && self.event_types.is_empty()
    }
}

/// Parameters that name what a command concerns, in the order that picks its object.
pub const OBJECT_PARAMETERS: &[&str] = &[
    "credential_id",
    "x509_serial",
    "fido2_aaguid",
    "device_id",
    "session_id",
    "incident_id",
];

/// A command's object from its parameters: the first of [`OBJECT_PARAMETERS`] it has.
pub fn object_of(parameters: &std::collections::BTreeMap<String, String>) -> Option<String> {
    OBJECT_PARAMETERS
        .iter()
        .find_map(|p| parameters.get(*p).filter(|v| !v.is_empty()))
        .map(|v| v.to_string())
}

/// A compiled parameter value.
#[derive(Debug)]
pub enum Param {
    Literal(String),
    Expr(Box<Condition>),
}

/// The loaded rules, in evaluation order, with an index by event type.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    exact: HashMap<String, Vec<usize>>,
    prefixes: Vec<(String, usize)>,
    version: String,
    /// Target name → actions it accepts, for targets chosen at decision time.
    accepts: HashMap<String, Vec<String>>,
    /// Action → the longest suppression any rule gives it: how long an issued command of that
    /// action must be remembered for another rule's suppression to see it.
    suppression: HashMap<String, Duration>,
    /// What `check` warns about: rules that load but may not do what they say.
    warnings: Vec<crate::config::Problem>,
}

/// A window rule that counted this signal but has not fired yet.
#[derive(Debug, Clone)]
pub struct Pending<'r> {
    pub rule: &'r Rule,
    /// Signals in the window, this one included.
    pub count: usize,
    pub needed: usize,
    /// Listed event types not seen yet.
    pub missing: Vec<String>,
}

/// Rules that matched one signal, in evaluation order, and conditions that failed to
/// evaluate (treated as not matching, and reported).
#[derive(Default)]
pub struct Evaluation<'r> {
    /// Rules that fire (window rules only once their window is full).
    pub matched: Vec<&'r Rule>,
    /// Window rules whose match and condition this signal passed (fired or pending).
    pub hits: Vec<&'r Rule>,
    pub pending: Vec<Pending<'r>>,
    pub condition_errors: Vec<(&'r str, String)>,
    /// Window rules that fired: the earlier signals in the window (this one not included).
    pub contributors: Vec<(&'r str, Vec<String>)>,
    /// The CEL view of the signal, built when a condition needed it.
    input: Option<Result<ConditionInput, String>>,
}

impl Evaluation<'_> {
    /// The action's parameters for this signal. A CEL parameter that fails is left out and
    /// reported as `(parameter, error)`.
    pub fn parameters(
        &mut self,
        action: &Action,
        facts: &Facts<'_>,
    ) -> (
        std::collections::BTreeMap<String, String>,
        Vec<(String, String)>,
    ) {
        let mut out = std::collections::BTreeMap::new();
        let mut errors = Vec::new();
        for (name, p) in &action.parameters {
            match self.value(p, facts) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(e) => errors.push((name.clone(), e)),
            }
        }
        (out, errors)
    }

    /// One parameter (or object) value for this signal: natively when it can, else in CEL.
    pub fn value(&mut self, p: &Param, facts: &Facts<'_>) -> Result<String, String> {
        match p {
            Param::Literal(v) => Ok(v.clone()),
            Param::Expr(expr) => {
                if let Some(result) = expr.eval_string_fast(facts) {
                    return result;
                }
                let input = self.input.get_or_insert_with(|| ConditionInput::new(facts));
                input
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|i| expr.eval_string(i))
            }
        }
    }
}

impl RuleSet {
    /// `rules` must already be in evaluation order; `event_types` holds each rule's match list.
    pub(crate) fn new(
        rules: Vec<Rule>,
        event_types: Vec<Vec<String>>,
        version: String,
        accepts: HashMap<String, Vec<String>>,
    ) -> Self {
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
        let mut suppression: HashMap<String, Duration> = HashMap::new();
        for r in &rules {
            let actions = r
                .actions
                .iter()
                .chain(r.escalate.iter().flat_map(|e| e.steps.iter().flatten()));
            for a in actions {
                if let Some(d) = a.suppress_for {
                    let e = suppression.entry(a.action.clone()).or_default();
                    *e = (*e).max(d);
                }
            }
        }
        Self {
            suppression,
            warnings: Vec::new(),
            rules,
            exact,
            prefixes,
            version,
            accepts,
        }
    }

    /// The longest suppression period any rule gives `action` (zero when none does).
    pub fn suppression_of(&self, action: &str) -> Duration {
        self.suppression.get(action).copied().unwrap_or_default()
    }

    /// Whether a configured target accepts the action (false for unknown targets).
    pub fn accepts(&self, target: &str, action: &str) -> bool {
        self.accepts
            .get(target)
            .is_some_and(|a| a.iter().any(|x| x == action))
    }

    /// What `check` warns about (the rules load, but may not do what they say).
    pub fn warnings(&self) -> &[crate::config::Problem] {
        &self.warnings
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

    /// Evaluates the rules for one signal.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Evaluation<'_> {
        let signal = facts.signal;
        let mut out = Evaluation::default();
        let mut input: Option<Result<ConditionInput, String>> = None;
        for &i in self.candidates(&signal.event_type).iter() {
            let rule = &self.rules[i];
            if !rule.matches_statically(signal) {
                continue;
            }
            let window = rule.window.as_ref().map(|w| {
                facts.state.map_or_else(WindowView::default, |s| {
                    s.window(&rule.id, w.within, facts.offset, facts.now)
                })
            });
            if let Some(cond) = &rule.condition {
                let fast = match &window {
                    Some(_) if cond.uses_window() => None,
                    _ => cond.eval_fast(facts),
                };
                let result = match fast {
                    Some(b) => Ok(b),
                    None => {
                        let input = input.get_or_insert_with(|| ConditionInput::new(facts));
                        match input {
                            Ok(input) => {
                                if let Some(view) = &window {
                                    input.set_window(view);
                                }
                                cond.eval(input)
                            }
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
            if let (Some(w), Some(view)) = (&rule.window, &window) {
                out.hits.push(rule);
                let count = view.count + 1;
                let missing: Vec<String> = w
                    .event_types
                    .iter()
                    .filter(|t| **t != signal.event_type && !view.event_types.contains(*t))
                    .cloned()
                    .collect();
                if count < w.count || !missing.is_empty() {
                    out.pending.push(Pending {
                        rule,
                        count,
                        needed: w.count,
                        missing,
                    });
                    continue;
                }
                out.contributors.push((&rule.id, view.signal_ids.clone()));
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
