//! Which parameter expressions may come out empty. A signal that does not carry an optional
//! field (an attribute, most event members, an identity's owner) gives null, and an empty
//! parameter is not sent; for an action that needs the parameter (see
//! [`crate::emit::command::requirement`]) the command is then held as `missing_parameter`.
//! `check` warns about it before a signal arrives.
//!
//! A field is taken as present where the rule's condition or the expression's own conditional
//! tests it: `"k" in signal.attributes`, `has(signal.attributes.k)`, `x != null`, `x != ""`.

use super::{Action, Param, Rule, TargetRef};
use crate::emit::command::requirement;
use cel::common::ast::{operators as op, Expr, IdedExpr, LiteralValue};
use std::collections::BTreeSet;

/// Actions of the rule (its own and its escalation steps') whose required parameter some
/// signal may leave empty: (field, action name, message) for `check`'s warnings.
pub fn unmet_requirements(rule: &Rule) -> Vec<(String, String, String)> {
    let present = guards(rule.condition.as_ref().map(|c| c.expression()));
    let own = rule
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("actions[{i}]"), a));
    let steps = rule.escalate.iter().flat_map(|e| {
        e.steps.iter().enumerate().flat_map(|(k, step)| {
            step.iter()
                .enumerate()
                .map(move |(i, a)| (format!("escalate.steps[{k}].actions[{i}]"), a))
        })
    });
    own.chain(steps)
        .filter_map(|(field, a)| {
            let message = unmet(a, &present)?;
            Some((format!("{field}.parameters"), a.action.clone(), message))
        })
        .collect()
}

/// Why the action may lack every parameter its requirement accepts, if it may.
fn unmet(a: &Action, present: &BTreeSet<String>) -> Option<String> {
    let need = requirement(&a.action)?;
    // Blast-radius destinations always carry the identity's principal there.
    let principal_always = a.fallback.is_empty()
        && !a.targets.is_empty()
        && a.targets
            .iter()
            .all(|t| *t == TargetRef::WhereIdentityHasAccess);
    if need.or_principal && principal_always {
        return None;
    }
    let mut why = Vec::new();
    for name in need.any_of {
        let value = a.parameters.iter().find(|(n, _)| n == name).map(|(_, p)| p);
        match value {
            None => {}
            Some(Param::Literal(v)) if v.is_empty() => why.push(format!("{name} is \"\"")),
            Some(Param::Literal(_)) => return None,
            Some(Param::Expr(c)) => match may_be_empty(c.expression(), present) {
                None => return None,
                Some(field) if field.starts_with('"') || field == "null" => {
                    why.push(format!("{name} can be {field}"))
                }
                Some(field) => why.push(format!("{name} is empty when {field} is")),
            },
        }
    }
    let needs = need.any_of.join(", ");
    let or_principal = if need.or_principal {
        " or a principal"
    } else {
        ""
    };
    let why = if why.is_empty() {
        "none is set".to_string()
    } else {
        why.join("; ")
    };
    Some(format!(
        "{} needs one of {needs}{or_principal}: {why}; such a signal's command is held \
         (missing_parameter), not sent",
        a.action
    ))
}

/// Fields every signal (or identity stand-in) has.
const ALWAYS: &[&str] = &[
    "signal.id",
    "signal.event_type",
    "signal.source.issuer",
    "signal.subject.format",
    "subject.id",
    "subject.format",
    "identity.kind",
];

/// The fields the condition establishes as present wherever it is true (its `&&` conjuncts).
pub fn guards(condition: Option<&IdedExpr>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(c) = condition {
        collect_guards(c, &mut out);
    }
    out
}

fn collect_guards(e: &IdedExpr, out: &mut BTreeSet<String>) {
    let Expr::Call(call) = &e.expr else {
        if let Expr::Select(s) = &e.expr {
            if s.test {
                out.extend(path(&s.operand).map(|p| format!("{p}.{}", s.field)));
            }
        }
        return;
    };
    match (call.func_name.as_str(), call.args.as_slice()) {
        (op::LOGICAL_AND, [a, b]) => {
            collect_guards(a, out);
            collect_guards(b, out);
        }
        (op::IN, [key, map]) => {
            if let (Some(k), Some(m)) = (string_literal(key), path(map)) {
                out.insert(format!("{m}.{k}"));
            }
        }
        (op::NOT_EQUALS, [a, b]) => {
            let tested = match (is_empty_or_null(a), is_empty_or_null(b)) {
                (false, true) => path(a),
                (true, false) => path(b),
                _ => None,
            };
            out.extend(tested);
        }
        _ => {}
    }
}

/// The field that can leave the expression empty, given the fields known present; `None`
/// when it always has a value.
pub fn may_be_empty(e: &IdedExpr, present: &BTreeSet<String>) -> Option<String> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) if s.is_empty() => Some("\"\"".into()),
        Expr::Literal(LiteralValue::Null) => Some("null".into()),
        Expr::Literal(_) => None,
        Expr::Ident(_) | Expr::Select(_) => {
            let p = path(e)?;
            (!ALWAYS.contains(&p.as_str()) && !present.contains(&p)).then_some(p)
        }
        Expr::Call(call) => match (call.func_name.as_str(), call.args.as_slice()) {
            (op::CONDITIONAL, [c, then, otherwise]) => {
                let mut inner = present.clone();
                collect_guards(c, &mut inner);
                may_be_empty(then, &inner).or_else(|| may_be_empty(otherwise, present))
            }
            (op::INDEX, [_, _]) => {
                let p = path(e)?;
                (!present.contains(&p)).then_some(p)
            }
            // Any other call fails (and leaves the parameter out) when an operand is null.
            _ => call
                .target
                .iter()
                .map(|t| &**t)
                .chain(&call.args)
                .find_map(|a| may_be_empty(a, present)),
        },
        _ => None,
    }
}

fn is_empty_or_null(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Literal(LiteralValue::Null))
        || matches!(&e.expr, Expr::Literal(LiteralValue::String(s)) if s.is_empty())
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s),
        _ => None,
    }
}

/// `a.b.c` for identifiers and selections, `a.b["c"]` written as `a.b.c`.
pub(super) fn path(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => Some(format!("{}.{}", path(&s.operand)?, s.field)),
        Expr::Call(call) if call.func_name == op::INDEX && call.args.len() == 2 => Some(format!(
            "{}.{}",
            path(&call.args[0])?,
            string_literal(&call.args[1])?
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expr: &str, condition: Option<&str>) -> Option<String> {
        let env = cel::Env::stdlib();
        let e = env.compile(expr).unwrap();
        let c = condition.map(|c| env.compile(c).unwrap());
        let present = guards(c.as_ref().map(|c| c.expression()));
        may_be_empty(e.expression(), &present)
    }

    #[test]
    fn optional_fields_may_be_empty_unless_tested() {
        let attr = "signal.attributes.credential_id";
        assert_eq!(check(attr, None).as_deref(), Some(attr));
        assert_eq!(
            check(attr, Some(r#""credential_id" in signal.attributes"#)),
            None
        );
        assert_eq!(
            check(
                attr,
                Some(r#"identity.known && has(signal.attributes.credential_id)"#)
            ),
            None
        );
        // A disjunction establishes nothing.
        assert!(check(
            attr,
            Some(r#"identity.known || "credential_id" in signal.attributes"#)
        )
        .is_some());
        assert_eq!(check("signal.event_type", None), None);
        assert_eq!(check(r#""all""#, None), None);
        assert_eq!(check(r#""""#, None).as_deref(), Some("\"\""));
    }

    #[test]
    fn a_conditional_is_empty_when_a_branch_can_be() {
        let guarded =
            r#""credential_id" in signal.attributes ? signal.attributes.credential_id : "unknown""#;
        assert_eq!(check(guarded, None), None);
        let falls_back_to_empty =
            r#"signal.event.x509_serial != null ? signal.event.x509_serial : """#;
        assert_eq!(check(falls_back_to_empty, None).as_deref(), Some("\"\""));
        let unguarded = r#"identity.known ? signal.attributes.key : "none""#;
        assert_eq!(
            check(unguarded, None).as_deref(),
            Some("signal.attributes.key")
        );
        assert_eq!(
            check(r#""key-" + signal.attributes["id"]"#, None).as_deref(),
            Some("signal.attributes.id")
        );
    }
}
