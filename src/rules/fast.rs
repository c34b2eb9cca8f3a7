//! A native evaluator for the condition shapes security teams write most: selections of
//! string fields, string and null literals, `==`, `!=`, `in` (a literal list, or a key of
//! `signal.attributes` / `signal.event.claims`), `&&`, `||` and `!`. It walks the AST the `cel`
//! crate parsed (no parser of our own) and reads the signal in place, with CEL's semantics for
//! absent map keys (an error) and for errors under `&&`/`||` (absorbed by a false/true operand).
//! Any other shape compiles to `None` and runs in the `cel` interpreter; a differential test
//! checks both agree.

use super::Facts;
use crate::signal::{EventFields, Signal, SimpleSubject, Subject};
use cel::common::ast::{operators as op, CallExpr, Expr, IdedExpr, LiteralValue};

/// A compiled fast condition.
#[derive(Debug, Clone)]
pub enum Fast {
    Eq(Operand, Operand),
    Ne(Operand, Operand),
    /// `operand in ["a", "b"]`.
    InList(Operand, Vec<String>),
    /// `"key" in signal.attributes` (or `signal.event.claims`).
    HasKey(MapField, String),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Not(Box<Fast>),
    Const(bool),
    /// `identity.known`, `identity.has_owner`.
    Flag(Flag),
}

#[derive(Debug, Clone, Copy)]
pub enum Flag {
    Known,
    HasOwner,
}

#[derive(Debug, Clone)]
pub enum Operand {
    Field(Field),
    Str(String),
    Null,
}

#[derive(Debug, Clone, Copy)]
pub enum MapField {
    Attributes,
    Claims,
}

/// A string-valued (or null) field of the signal.
#[derive(Debug, Clone)]
pub enum Field {
    Id,
    EventType,
    Txn,
    Issuer,
    Transmitter,
    Event(fn(&EventFields) -> Option<&str>),
    Map(MapField, String),
    SubjectFormat,
    SubjectId,
    /// `signal.subject.<member>.format`
    MemberFormat(usize),
    /// `signal.subject.<member>.identifiers.<key>`
    MemberIdentifier(usize, String),
    /// `signal.subject.identifiers.<key>`
    Identifier(String),
    /// `identity.<field>` (`owner.team`, `owner.contact` included).
    Identity(IdentityField),
}

#[derive(Debug, Clone, Copy)]
pub enum IdentityField {
    Id,
    Kind,
    Criticality,
    Environment,
    OwnerTeam,
    OwnerContact,
}

/// A value during evaluation; `Err(())` is a CEL evaluation error (e.g. no such key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V<'a> {
    Str(&'a str),
    Null,
}

const MEMBERS: [&str; 7] = Subject::MEMBER_NAMES;

fn member(signal: &Signal, i: usize) -> Option<&SimpleSubject> {
    signal.subject.member(i)
}

fn event_field(name: &str) -> Option<fn(&EventFields) -> Option<&str>> {
    macro_rules! fields {
        ($($f:ident),*) => {
            match name {
                $(stringify!($f) => Some(|e: &EventFields| e.$f.as_deref()),)*
                _ => None,
            }
        };
    }
    fields!(
        initiating_entity,
        reason_admin,
        reason_user,
        previous_status,
        current_status,
        namespace,
        previous_level,
        current_level,
        change_direction,
        principal,
        risk_reason,
        credential_type,
        change_type,
        friendly_name,
        x509_issuer,
        x509_serial,
        fido2_aaguid,
        reason,
        new_value
    )
}

/// The dotted path of a selection chain rooted at an identifier: `signal.event.x`.
fn path(e: &IdedExpr) -> Option<Vec<&str>> {
    match &e.expr {
        Expr::Ident(name) => Some(vec![name.as_str()]),
        Expr::Select(s) if !s.test => {
            let mut p = path(&s.operand)?;
            p.push(&s.field);
            Some(p)
        }
        _ => None,
    }
}

pub(super) fn field(e: &IdedExpr) -> Option<Field> {
    let p = path(e)?;
    Some(match p.as_slice() {
        ["signal", "id"] => Field::Id,
        ["signal", "event_type"] => Field::EventType,
        ["signal", "txn"] => Field::Txn,
        ["signal", "source", "issuer"] => Field::Issuer,
        ["signal", "source", "transmitter"] => Field::Transmitter,
        ["signal", "event", name] => Field::Event(event_field(name)?),
        ["signal", "event", "claims", key] => Field::Map(MapField::Claims, key.to_string()),
        ["signal", "attributes", key] => Field::Map(MapField::Attributes, key.to_string()),
        ["subject", "id"] => Field::SubjectId,
        ["signal", "subject", rest @ ..] | ["subject", rest @ ..] => subject_field(rest)?,
        ["identity", "id"] => Field::Identity(IdentityField::Id),
        ["identity", "kind"] => Field::Identity(IdentityField::Kind),
        ["identity", "criticality"] => Field::Identity(IdentityField::Criticality),
        ["identity", "environment"] => Field::Identity(IdentityField::Environment),
        ["identity", "owner", "team"] => Field::Identity(IdentityField::OwnerTeam),
        ["identity", "owner", "contact"] => Field::Identity(IdentityField::OwnerContact),
        _ => return None,
    })
}

/// A path under the subject: `format`, `identifiers.<key>`, `<member>.format`,
/// `<member>.identifiers.<key>`.
fn subject_field(rest: &[&str]) -> Option<Field> {
    let member = |m: &str| MEMBERS.iter().position(|x| *x == m);
    Some(match rest {
        ["format"] => Field::SubjectFormat,
        ["identifiers", key] => Field::Identifier(key.to_string()),
        [m, "format"] => Field::MemberFormat(member(m)?),
        [m, "identifiers", key] => Field::MemberIdentifier(member(m)?, key.to_string()),
        _ => return None,
    })
}

fn map_field(e: &IdedExpr) -> Option<MapField> {
    match path(e)?.as_slice() {
        ["signal", "attributes"] => Some(MapField::Attributes),
        ["signal", "event", "claims"] => Some(MapField::Claims),
        _ => None,
    }
}

fn string_literal(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
        _ => None,
    }
}

fn operand(e: &IdedExpr) -> Option<Operand> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(Operand::Str(s.inner().to_string())),
        Expr::Literal(LiteralValue::Null) => Some(Operand::Null),
        _ => field(e).map(Operand::Field),
    }
}

/// A parameter value computed natively: a field or literal, or `cond ? a : b` over them (the
/// shape rule packs use for fallbacks: `"k" in signal.attributes ? signal.attributes.k : "none"`).
#[derive(Debug, Clone)]
pub enum FastValue {
    Operand(Operand),
    Cond(Box<Fast>, Box<FastValue>, Box<FastValue>),
}

/// Compiles a parameter expression; `None` when it has no native form.
pub fn compile_value(e: &IdedExpr) -> Option<FastValue> {
    if let Expr::Call(call) = &e.expr {
        if call.func_name == op::CONDITIONAL && call.target.is_none() && call.args.len() == 3 {
            return Some(FastValue::Cond(
                Box::new(compile(&call.args[0])?),
                Box::new(compile_value(&call.args[1])?),
                Box::new(compile_value(&call.args[2])?),
            ));
        }
    }
    operand(e).map(FastValue::Operand)
}

impl FastValue {
    /// `Ok(None)` for null; `Err(())` where the interpreter would report an error.
    pub fn eval<'a>(&'a self, f: &Facts<'a>) -> Result<Option<&'a str>, ()> {
        match self {
            FastValue::Operand(o) => match o.get(f)? {
                V::Str(s) => Ok(Some(s)),
                V::Null => Ok(None),
            },
            FastValue::Cond(c, a, b) => {
                if c.eval(f)? {
                    a.eval(f)
                } else {
                    b.eval(f)
                }
            }
        }
    }
}

/// Compiles the shapes above; `None` for anything else.
pub fn compile(e: &IdedExpr) -> Option<Fast> {
    match &e.expr {
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Fast::Const(*b.inner())),
        Expr::Call(call) => compile_call(call),
        Expr::Select(_) => match path(e)?.as_slice() {
            ["identity", "known"] => Some(Fast::Flag(Flag::Known)),
            ["identity", "has_owner"] => Some(Fast::Flag(Flag::HasOwner)),
            _ => None,
        },
        _ => None,
    }
}

fn compile_call(call: &CallExpr) -> Option<Fast> {
    if call.target.is_some() {
        return None;
    }
    let args = &call.args;
    let two = || (args.len() == 2).then(|| (&args[0], &args[1]));
    match call.func_name.as_str() {
        op::LOGICAL_AND => {
            let (a, b) = two()?;
            Some(Fast::And(Box::new(compile(a)?), Box::new(compile(b)?)))
        }
        op::LOGICAL_OR => {
            let (a, b) = two()?;
            Some(Fast::Or(Box::new(compile(a)?), Box::new(compile(b)?)))
        }
        op::LOGICAL_NOT if args.len() == 1 => Some(Fast::Not(Box::new(compile(&args[0])?))),
        op::EQUALS => {
            let (a, b) = two()?;
            Some(Fast::Eq(operand(a)?, operand(b)?))
        }
        op::NOT_EQUALS => {
            let (a, b) = two()?;
            Some(Fast::Ne(operand(a)?, operand(b)?))
        }
        op::IN => {
            let (a, b) = two()?;
            if let Some(map) = map_field(b) {
                return Some(Fast::HasKey(map, string_literal(a)?));
            }
            let Expr::List(list) = &b.expr else {
                return None;
            };
            if !list.optional_indices.is_empty() {
                return None;
            }
            let items = list
                .elements
                .iter()
                .map(string_literal)
                .collect::<Option<Vec<_>>>()?;
            Some(Fast::InList(operand(a)?, items))
        }
        _ => None,
    }
}

impl Field {
    fn get<'a>(&'a self, f: &Facts<'a>) -> Result<V<'a>, ()> {
        let (signal, subject_id) = (f.signal, f.subject_id);
        let opt = |o: Option<&'a str>| Ok(o.map_or(V::Null, V::Str));
        match self {
            Field::Id => Ok(V::Str(&signal.id)),
            Field::EventType => Ok(V::Str(&signal.event_type)),
            Field::Txn => opt(signal.txn.as_deref()),
            Field::Issuer => Ok(V::Str(&signal.source.issuer)),
            Field::Transmitter => opt(signal.source.transmitter.as_deref()),
            Field::Event(f) => opt(f(&signal.event)),
            Field::Map(m, key) => map(signal, *m).get(key).map(|v| V::Str(v)).ok_or(()),
            Field::SubjectFormat => Ok(V::Str(&signal.subject.format)),
            Field::SubjectId => Ok(V::Str(subject_id)),
            Field::Identifier(key) => signal
                .subject
                .identifiers
                .get(key)
                .map(|v| V::Str(v))
                .ok_or(()),
            // Selecting on an absent member (null) is an error in CEL.
            Field::MemberFormat(i) => member(signal, *i).map(|m| V::Str(&m.format)).ok_or(()),
            Field::MemberIdentifier(i, key) => member(signal, *i)
                .and_then(|m| m.identifiers.get(key))
                .map(|v| V::Str(v))
                .ok_or(()),
            Field::Identity(field) => {
                let i = f.identity;
                match field {
                    IdentityField::Id => Ok(V::Str(i.id())),
                    IdentityField::Kind if !i.known() => Ok(V::Str("unknown")),
                    IdentityField::Kind => Ok(V::Str(i.kind().name())),
                    IdentityField::Criticality => opt(i.criticality().map(|c| c.name())),
                    IdentityField::Environment => opt(i.environment()),
                    // `identity.owner` is null without an owner: selecting on it is an error.
                    IdentityField::OwnerTeam => i.owner_team().map(V::Str).ok_or(()),
                    IdentityField::OwnerContact if !i.has_owner() => Err(()),
                    IdentityField::OwnerContact => opt(i.owner_contact()),
                }
            }
        }
    }
}

fn map(signal: &Signal, m: MapField) -> &std::collections::BTreeMap<String, String> {
    match m {
        MapField::Attributes => &signal.attributes,
        MapField::Claims => &signal.event.claims,
    }
}

impl Operand {
    fn get<'a>(&'a self, f: &Facts<'a>) -> Result<V<'a>, ()> {
        match self {
            Operand::Field(field) => field.get(f),
            Operand::Str(s) => Ok(V::Str(s)),
            Operand::Null => Ok(V::Null),
        }
    }
}

impl Fast {
    /// `Err(())` where the CEL interpreter would report an evaluation error.
    pub fn eval(&self, f: &Facts<'_>) -> Result<bool, ()> {
        match self {
            Fast::Const(b) => Ok(*b),
            Fast::Flag(Flag::Known) => Ok(f.identity.known()),
            Fast::Flag(Flag::HasOwner) => Ok(f.identity.has_owner()),
            Fast::Eq(a, b) => Ok(a.get(f)? == b.get(f)?),
            Fast::Ne(a, b) => Ok(a.get(f)? != b.get(f)?),
            Fast::InList(a, items) => match a.get(f)? {
                V::Str(s) => Ok(items.iter().any(|i| i == s)),
                V::Null => Ok(false),
            },
            Fast::HasKey(m, key) => Ok(map(f.signal, *m).contains_key(key)),
            Fast::Not(a) => a.eval(f).map(|b| !b),
            // CEL's commutative logic: a false (true) operand absorbs an error on the other side.
            Fast::And(a, b) => match (a.eval(f), b.eval(f)) {
                (Ok(false), _) | (_, Ok(false)) => Ok(false),
                (Ok(true), Ok(true)) => Ok(true),
                _ => Err(()),
            },
            Fast::Or(a, b) => match (a.eval(f), b.eval(f)) {
                (Ok(true), _) | (_, Ok(true)) => Ok(true),
                (Ok(false), Ok(false)) => Ok(false),
                _ => Err(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::{Identity, IdentityKind, IdentityRecord, Owner};
    use crate::rules::{Condition, ConditionInput, Facts};
    use crate::signal::Signal;
    use std::sync::Arc;

    /// An unknown identity, a known one with an owner, and a known one without.
    fn identities() -> Vec<Arc<Identity>> {
        let known = IdentityRecord {
            id: "svc-1".into(),
            aliases: vec![],
            kind: IdentityKind::AiAgent,
            owner: Some(Owner {
                team: "ml".into(),
                contact: None,
            }),
            criticality: Some(crate::inventory::Criticality::High),
            environment: Some("prod".into()),
            access: vec![],
            protected: false,
        };
        let ownerless = IdentityRecord {
            owner: None,
            criticality: None,
            ..known.clone()
        };
        let [known, ownerless] = [known, ownerless].map(|r| Arc::new(Identity::from_record(&r)));
        vec![Identity::unknown(), known, ownerless]
    }

    fn signals() -> Vec<Signal> {
        let base = serde_json::json!({
            "id": "s1", "source": {"issuer": "https://mdm", "transmitter": "https://bus"},
            "event_type": "urn:x:y", "occurred_at": 1, "received_at": 2,
            "subject": {"format": "complex",
                "device": {"format": "opaque", "identifiers": {"id": "dev-1"}},
                "application": {"format": "opaque", "identifiers": {"id": "svc-1"}}},
            "event": {"current_status": "not-compliant", "claims": {"role": "admin"}},
            "attributes": {"risk": "HIGH", "level": "3"}});
        let mut variants = vec![base.clone()];
        let mut v = base.clone();
        v["attributes"] = serde_json::json!({});
        v["event"] = serde_json::json!({"current_status": "compliant"});
        variants.push(v);
        let mut v = base.clone();
        v["subject"] = serde_json::json!({"format": "opaque", "identifiers": {"id": "svc-2"}});
        v["source"] = serde_json::json!({"issuer": "https://idp"});
        variants.push(v);
        variants
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    /// Runs `check` on every signal variant with every identity.
    fn each_case(mut check: impl FnMut(&Facts<'_>, &Signal, &Identity)) {
        for s in signals() {
            for identity in identities() {
                let id = s.subject.id().unwrap();
                check(&Facts::new(&s, &id, &identity, 0), &s, &identity);
            }
        }
    }

    /// Every fast-path shape agrees with the `cel` interpreter on value and on error.
    #[test]
    fn fast_path_agrees_with_the_interpreter() {
        let exprs = [
            r#"signal.event.current_status == "not-compliant""#,
            r#"signal.event.current_status != "not-compliant""#,
            r#"signal.event.previous_status == null"#,
            r#"signal.event.previous_status != null"#,
            r#"signal.attributes.risk == "HIGH""#,
            r#""risk" in signal.attributes && signal.attributes.risk == "HIGH""#,
            r#"signal.attributes.risk == "HIGH" && "risk" in signal.attributes"#,
            r#"signal.attributes.risk == "HIGH" || true"#,
            r#"signal.attributes.risk == "HIGH" || false"#,
            r#"false && signal.attributes.risk == "HIGH""#,
            r#"!(signal.source.issuer == "https://mdm")"#,
            r#"signal.source.transmitter == null"#,
            r#"signal.event.current_status in ["compliant", "not-compliant"]"#,
            r#"signal.event.previous_status in ["compliant"]"#,
            r#"signal.subject.device.identifiers.id == "dev-1""#,
            r#"signal.subject.user.format == "email""#,
            r#"subject.id == "svc-1" && subject.format == "complex""#,
            r#"signal.subject.identifiers.id == "svc-2""#,
            r#""role" in signal.event.claims && signal.event.claims.role == "admin""#,
            r#"signal.event_type == "urn:x:y" && signal.id != "s2""#,
            r#"signal.txn == null || signal.txn == "t""#,
            r#"identity.kind == "ai_agent""#,
            r#"identity.kind == "unknown" || identity.criticality == "high""#,
            r#"identity.criticality == null"#,
            r#"identity.environment in ["prod", "staging"]"#,
            r#"identity.owner.team == "ml""#,
            r#"identity.owner.contact == null"#,
            r#"identity.known && !identity.has_owner"#,
            r#"!identity.known || identity.id == "svc-1""#,
        ];
        for src in exprs {
            let c = Condition::compile(src).unwrap();
            assert!(c.is_fast(), "{src} should have a native form");
            each_case(|facts, s, identity| {
                let fast = c.fast.as_ref().unwrap().eval(facts).ok();
                let interpreted = c.eval(&ConditionInput::new(facts).unwrap()).ok();
                assert_eq!(
                    fast,
                    interpreted,
                    "{src} on {} with {:?}",
                    s.subject.format,
                    identity.id()
                );
            });
        }
    }

    /// Parameter values: where the native form answers, it answers as the interpreter does.
    #[test]
    fn fast_values_agree_with_the_interpreter() {
        let values = [
            "signal.subject.device.identifiers.id",
            "signal.attributes.risk",
            "signal.event.previous_status",
            "signal.event.current_status",
            r#""tag""#,
            r#""risk" in signal.attributes ? signal.attributes.risk : "none""#,
            r#"signal.event.previous_status != null ? signal.event.previous_status : "unspecified""#,
            r#"identity.known ? identity.kind : "unknown-identity""#,
            "identity.owner.team",
        ];
        for src in values {
            let c = Condition::compile(src).unwrap();
            assert!(
                c.fast_value.is_some(),
                "{src} should have a native value form"
            );
            each_case(|facts, _, _| {
                let interpreted = c.eval_string(&ConditionInput::new(facts).unwrap());
                match c.eval_string_fast(facts) {
                    Some(fast) => assert_eq!(fast, interpreted, "{src}"),
                    None => assert!(interpreted.is_err(), "{src}: fast gave up on a value"),
                }
            });
        }
    }

    /// What the native form does not cover is left to the interpreter.
    #[test]
    fn other_shapes_have_no_native_form() {
        for slow in [
            "signal.occurred_at > 0",
            r#"signal.attributes.risk.startsWith("H")"#,
            "size(signal.attributes) > 1",
        ] {
            assert!(!Condition::compile(slow).unwrap().is_fast(), "{slow}");
        }
    }
}
