//! Type mistakes `check` can see before a signal arrives: every field a rule reads from the
//! signal, subject or identity is a string (or null), so comparing one with a number or a
//! boolean (`signal.event.current_level == 3`) is never true — a rule that silently never
//! fires. Such a comparison is a rules problem, with the field and the literal named.

use super::fast::field;
use cel::common::ast::{operators as op, Expr, IdedExpr, LiteralValue};

const COMPARISONS: &[&str] = &[
    op::EQUALS,
    op::NOT_EQUALS,
    op::LESS,
    op::LESS_EQUALS,
    op::GREATER,
    op::GREATER_EQUALS,
];

/// Every string-field-against-non-string-literal comparison in the expression.
pub fn mistakes(e: &IdedExpr) -> Vec<String> {
    let mut out = Vec::new();
    walk(e, &mut out);
    out
}

fn walk(e: &IdedExpr, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Call(call) => {
            if COMPARISONS.contains(&call.func_name.as_str()) && call.args.len() == 2 {
                let (a, b) = (&call.args[0], &call.args[1]);
                out.extend(mismatch(a, b).or_else(|| mismatch(b, a)));
            }
            call.target.iter().for_each(|t| walk(t, out));
            call.args.iter().for_each(|a| walk(a, out));
        }
        Expr::Select(s) => walk(&s.operand, out),
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// `Some(problem)` when `f` is a string field and `lit` a number or boolean literal.
fn mismatch(f: &IdedExpr, lit: &IdedExpr) -> Option<String> {
    let kind = match &lit.expr {
        Expr::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_)) => "an integer",
        Expr::Literal(LiteralValue::Double(_)) => "a number",
        Expr::Literal(LiteralValue::Boolean(_)) => "a boolean",
        _ => return None,
    };
    field(f)?;
    Some(format!(
        "{} is a string (or null); comparing it with {kind} is never true — quote the value",
        path(f)
    ))
}

/// Event members CAEP defines with a closed set of values, and members whose values are
/// case-sensitive names (a literal differing only in case is a mistake).
const CLOSED: &[(&str, &[&str])] = &[
    ("change_type", &["create", "revoke", "update", "delete"]),
    ("current_status", &["compliant", "not-compliant"]),
    ("previous_status", &["compliant", "not-compliant"]),
    ("change_direction", &["increase", "decrease"]),
    ("initiating_entity", &["admin", "user", "policy", "system"]),
];
const CASED: &[(&str, &[&str])] = &[
    ("current_level", &["LOW", "MEDIUM", "HIGH"]),
    ("previous_level", &["LOW", "MEDIUM", "HIGH"]),
    (
        "principal",
        &["USER", "DEVICE", "SESSION", "TENANT", "ORG_UNIT", "GROUP"],
    ),
];

/// Comparisons of a CAEP event member with a value the specification does not define for it
/// (`signal.event.change_type == "revoked"`): loadable (a transmitter may agree on its own
/// values), but probably a rule that never fires, so `check` warns.
pub fn doubtful(e: &IdedExpr) -> Vec<String> {
    let mut out = Vec::new();
    walk_values(e, &mut out);
    out
}

fn walk_values(e: &IdedExpr, out: &mut Vec<String>) {
    let Expr::Call(call) = &e.expr else {
        if let Expr::Select(s) = &e.expr {
            walk_values(&s.operand, out);
        }
        return;
    };
    if let (true, [a, b]) = (
        [op::EQUALS, op::NOT_EQUALS, op::IN].contains(&call.func_name.as_str()),
        call.args.as_slice(),
    ) {
        let literals: Vec<&str> = match &b.expr {
            Expr::List(l) => l.elements.iter().filter_map(string).collect(),
            _ => string(b).into_iter().collect(),
        };
        out.extend(
            unknown_values(a, &literals)
                .or_else(|| unknown_values(b, &string(a).into_iter().collect::<Vec<_>>())),
        );
    }
    call.target.iter().for_each(|t| walk_values(t, out));
    call.args.iter().for_each(|a| walk_values(a, out));
}

fn string(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s),
        _ => None,
    }
}

/// The literals `f` (an event member with known values) never takes, as a warning.
fn unknown_values(f: &IdedExpr, literals: &[&str]) -> Option<String> {
    let p = path(f);
    let member = p.strip_prefix("signal.event.")?;
    let (closed, known) = CLOSED
        .iter()
        .map(|(m, v)| (true, m, v))
        .chain(CASED.iter().map(|(m, v)| (false, m, v)))
        .find(|(_, m, _)| **m == member)
        .map(|(c, _, v)| (c, *v))?;
    let wrong: Vec<&&str> = literals
        .iter()
        .filter(|l| !known.contains(l))
        .filter(|l| closed || known.iter().any(|k| k.eq_ignore_ascii_case(l)))
        .collect();
    if wrong.is_empty() {
        return None;
    }
    Some(format!(
        "{p} takes the values {known:?} (case-sensitive); {wrong:?} never matches a \
         conforming event"
    ))
}

/// The field a path expression names (`signal.event.change_type`), for messages.
fn path(e: &IdedExpr) -> String {
    super::nullable::path(e).unwrap_or_else(|| "the field".into())
}

#[cfg(test)]
mod tests {
    use crate::rules::Condition;

    #[test]
    fn a_string_field_compared_with_a_number_is_a_problem() {
        let e = Condition::compile("signal.event.current_level == 3").unwrap_err();
        assert!(e.contains("signal.event.current_level is a string"), "{e}");
        let e = Condition::compile(
            r#"signal.event_type != "" && identity.known == true && signal.attributes.risk > 2"#,
        );
        assert!(e.unwrap_err().contains("signal.attributes.risk"));
        assert!(Condition::compile(r#"signal.event.current_level == "3""#).is_ok());
        assert!(
            Condition::compile("identity.known == true").is_ok(),
            "a boolean flag, not a string field"
        );
    }

    fn doubtful(condition: &str) -> Vec<String> {
        let program = cel::Env::stdlib().compile(condition).unwrap();
        super::doubtful(program.expression())
    }

    #[test]
    fn values_caep_does_not_define_are_doubtful() {
        let w = doubtful(r#"signal.event.change_type == "revoked""#);
        assert!(
            w[0].contains(r#"signal.event.change_type takes the values ["create", "revoke""#)
                && w[0].contains(r#"["revoked"]"#),
            "{w:?}"
        );
        let w = doubtful(r#"signal.event.change_type in ["revoke", "deleted"]"#);
        assert!(w.len() == 1 && w[0].contains(r#"["deleted"]"#), "{w:?}");
        assert!(doubtful(r#""not-compliant" == signal.event.current_status"#).is_empty());
        // Levels are case-sensitive names; other values may be another namespace's level.
        assert_eq!(doubtful(r#"signal.event.current_level == "high""#).len(), 1);
        assert!(doubtful(r#"signal.event.current_level == "nist-aal2""#).is_empty());
        assert!(doubtful(
            r#"signal.event.change_type in ["create", "update"] && signal.attributes.x == "y""#
        )
        .is_empty());
    }
}
