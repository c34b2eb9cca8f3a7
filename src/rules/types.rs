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

fn path(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Ident(name) => name.clone(),
        Expr::Select(s) => format!("{}.{}", path(&s.operand), s.field),
        _ => "the field".into(),
    }
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
}
