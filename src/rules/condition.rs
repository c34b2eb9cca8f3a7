//! CEL conditions, compiled once at load. The variables a condition may use are `signal`,
//! `subject`, `identity`, `now` and (in rules with a window) `window`; anything else is a load
//! error, so a typo never silently evaluates to "no match".

use super::Facts;
use crate::inventory::{Access, Criticality, Identity, IdentityKind, IdentityRecord, Owner};
use crate::signal::Signal;
use crate::state::WindowView;
use cel::{Context, Env, Program, Value};
use std::sync::{Arc, OnceLock};

pub const VARIABLES: &[&str] = &["signal", "subject", "identity", "now", "window"];

/// A compiled condition with its source text.
pub struct Condition {
    pub source: String,
    program: Program,
    /// The native form, when the expression has one of the common shapes.
    pub(super) fast: Option<super::fast::Fast>,
    /// The native form as a parameter value (a field, a literal, or a conditional over them).
    pub(super) fast_value: Option<super::fast::FastValue>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

pub(super) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

impl Condition {
    pub fn compile(source: &str) -> Result<Self, String> {
        super::budget::check_source(source)?;
        let program = super::budget::parse(source)?;
        super::budget::check(program.expression())?;
        let refs = program.references();
        let unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown variable(s) {unknown:?}; a condition may use {VARIABLES:?}"
            ));
        }
        let mistakes = super::types::mistakes(program.expression());
        if !mistakes.is_empty() {
            return Err(mistakes.join("; "));
        }
        Ok(Self {
            source: source.into(),
            fast: super::fast::compile(program.expression()),
            fast_value: super::fast::compile_value(program.expression()),
            program,
        })
    }

    /// The parsed expression, for load-time analysis.
    pub(super) fn expression(&self) -> &cel::common::ast::IdedExpr {
        self.program.expression()
    }

    /// Whether the expression reads `window` (allowed only in rules that declare one).
    pub fn uses_window(&self) -> bool {
        self.program.references().variables().contains(&"window")
    }

    /// Evaluates natively when the expression allows it: `None` means "use [`Self::eval`]"
    /// (no native form, or an evaluation error whose message the interpreter gives).
    pub fn eval_fast(&self, facts: &Facts<'_>) -> Option<bool> {
        self.fast.as_ref()?.eval(facts).ok()
    }

    /// [`Self::eval_string`] natively when the expression allows it; `None` means "use the
    /// interpreter" (no native form, or an error whose message the interpreter gives).
    pub fn eval_string_fast(&self, facts: &Facts<'_>) -> Option<Result<String, String>> {
        match self.fast_value.as_ref()?.eval(facts) {
            Ok(Some(s)) => Some(Ok(s.to_string())),
            Ok(None) => Some(Err(format!("{:?} is null", self.source))),
            Err(()) => None,
        }
    }

    /// Whether the expression has a native form as a parameter value.
    pub fn has_native_value(&self) -> bool {
        self.fast_value.is_some()
    }

    /// Whether the condition has a native form.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// `Ok(true)` only for a boolean `true`; a non-boolean result is an error.
    pub fn eval(&self, input: &ConditionInput) -> Result<bool, String> {
        match self.execute(input)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("condition returned {other:?}, not a bool")),
        }
    }

    /// Evaluates as a parameter value: strings as they are, numbers and booleans printed;
    /// null (an absent optional field) is an error so a command never carries "null".
    pub fn eval_string(&self, input: &ConditionInput) -> Result<String, String> {
        match self.execute(input)? {
            Value::String(s) => Ok(s.to_string()),
            Value::Int(i) => Ok(i.to_string()),
            Value::UInt(u) => Ok(u.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Err(format!("{:?} is null", self.source)),
            other => Err(format!("{:?} gave {other:?}, not a scalar", self.source)),
        }
    }

    fn execute(&self, input: &ConditionInput) -> Result<Value, String> {
        self.execute_raw(input).map_err(|e| e.to_string())
    }

    fn execute_raw(&self, input: &ConditionInput) -> Result<Value, cel::ExecutionError> {
        self.program.execute(&input.ctx)
    }

    /// The type check CEL-rust lacks, done at load: evaluate once against a probe signal whose
    /// every optional field is set, and reject type errors (comparing a string field with a
    /// number, unknown functions, a condition that is not boolean). Errors that depend on
    /// the data (a missing attribute key, a failed conversion) are left to run time.
    pub fn probe(&self, expect_bool: bool) -> Result<(), String> {
        use cel::ExecutionError as E;
        match self.execute_raw(probe_input()) {
            Ok(Value::Bool(_)) => Ok(()),
            Ok(other) if expect_bool => Err(format!(
                "must be a boolean expression, but gives {}",
                type_name(&other)
            )),
            Ok(_) => Ok(()),
            Err(
                e @ (E::UnsupportedBinaryOperator(..)
                | E::ValuesNotComparable(..)
                | E::NotSupportedAsMethod { .. }
                | E::UndeclaredReference(_)
                | E::InvalidArgumentCount { .. }
                | E::UnexpectedType { .. }
                | E::NoSuchOverload(_)),
            ) => Err(format!("type error: {e}")),
            Err(_) => Ok(()),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => "a number",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Null => "null",
        _ => "a non-boolean value",
    }
}

/// A signal with every optional field and complex member set, for [`Condition::probe`].
fn probe_input() -> &'static ConditionInput {
    static PROBE: OnceLock<ConditionInput> = OnceLock::new();
    PROBE.get_or_init(|| {
        let member = serde_json::json!({"format": "opaque", "identifiers": {"id": "probe"}});
        let mut event = serde_json::Map::new();
        for f in crate::signal::EVENT_TEXT_FIELDS {
            event.insert((*f).into(), "probe".into());
        }
        let signal: Signal = serde_json::from_value(serde_json::json!({
            "id": "probe", "source": {"issuer": "probe", "transmitter": "probe"},
            "event_type": "urn:containd:probe", "occurred_at": 0, "received_at": 0,
            "subject": {"format": "complex", "user": member, "device": member,
                "session": member, "application": member, "tenant": member,
                "org_unit": member, "group": member},
            "event": event, "txn": "probe",
        }))
        .unwrap_or_else(|e| unreachable!("the probe signal is well-formed: {e}"));
        let identity = Identity::from_record(&IdentityRecord {
            id: "probe".into(),
            aliases: vec!["probe".into()],
            kind: IdentityKind::Workload,
            owner: Some(Owner {
                team: "probe".into(),
                contact: Some("probe".into()),
            }),
            criticality: Some(Criticality::High),
            environment: Some("probe".into()),
            access: vec![Access {
                target: "probe".into(),
                principal_id: "probe".into(),
            }],
            protected: true,
        });
        let mut input = ConditionInput::new(&Facts::new(&signal, "probe", &identity, 0))
            .unwrap_or_else(|e| unreachable!("the probe signal converts to CEL: {e}"));
        input.set_window(&WindowView {
            count: 1,
            event_types: ["probe".to_string()].into(),
            first_at: Some(0),
            signal_ids: vec!["probe".into()],
        });
        input
    })
}

/// The CEL view of one signal, built once per signal and shared by every condition.
pub struct ConditionInput {
    ctx: Context<'static, 'static>,
}

impl ConditionInput {
    pub fn new(facts: &Facts<'_>) -> Result<Self, String> {
        let value = cel::to_value(facts.signal).map_err(|e| e.to_string())?;
        let mut subject = serde_json::to_value(&facts.signal.subject).map_err(|e| e.to_string())?;
        if let Some(obj) = subject.as_object_mut() {
            obj.insert("id".into(), facts.subject_id.into());
        }
        let subject = cel::to_value(&subject).map_err(|e| e.to_string())?;
        let identity = cel::to_value(facts.identity.to_json()).map_err(|e| e.to_string())?;
        let mut ctx = Context::with_env(env());
        ctx.add_variable_from_value("signal", value);
        ctx.add_variable_from_value("subject", subject);
        ctx.add_variable_from_value("identity", identity);
        ctx.add_variable_from_value("now", timestamp(facts.now));
        let mut input = Self { ctx };
        input.set_window(&WindowView::default());
        Ok(input)
    }

    /// Binds `window` for the next evaluation (each window rule has its own).
    pub fn set_window(&mut self, view: &WindowView) {
        let window = Value::from(std::collections::HashMap::from([
            ("count".to_string(), Value::Int(view.count as i64)),
            (
                "event_types".to_string(),
                Value::List(Arc::new(
                    view.event_types
                        .iter()
                        .map(|t| Value::String(Arc::new(t.clone())))
                        .collect(),
                )),
            ),
            (
                "first_at".to_string(),
                view.first_at.map_or(Value::Null, timestamp),
            ),
        ]));
        self.ctx.add_variable_from_value("window", window);
    }
}

fn timestamp(millis: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| Value::Timestamp(t.fixed_offset()))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal() -> Signal {
        serde_json::from_str(
            r#"{"id":"s1","source":{"issuer":"https://mdm"},"event_type":"urn:x:y",
            "occurred_at":1,"received_at":2,
            "subject":{"format":"opaque","identifiers":{"id":"svc-1"}},
            "event":{"current_status":"not-compliant"},"attributes":{"risk":"HIGH"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn evaluates_over_signal_subject_and_attributes() {
        let identity = Identity::unknown();
        let signal = signal();
        let input = ConditionInput::new(&Facts::new(&signal, "svc-1", &identity, 1_000)).unwrap();
        let c = Condition::compile(
            r#"signal.event.current_status == "not-compliant" && signal.attributes.risk == "HIGH" && subject.id == "svc-1""#,
        )
        .unwrap();
        assert_eq!(c.eval(&input), Ok(true));
        let c = Condition::compile(r#"signal.event.current_status == "compliant""#).unwrap();
        assert_eq!(c.eval(&input), Ok(false));
    }

    #[test]
    fn rejects_unknown_variables_and_syntax_errors() {
        let e = Condition::compile("sginal.id == 'x'").unwrap_err();
        assert!(e.contains("sginal"), "{e}");
        assert!(Condition::compile("signal.id == ").is_err());
    }

    #[test]
    fn probe_catches_type_errors_but_not_data_dependent_ones() {
        let probe = |src: &str| Condition::compile(src).unwrap().probe(true);
        // A string field against a number is caught at compile time, before the probe.
        assert!(Condition::compile(r#"signal.event.current_level > 2"#)
            .unwrap_err()
            .contains("is a string"));
        assert!(probe(r#"signal.occurred_at > "x""#)
            .unwrap_err()
            .contains("type error"));
        assert!(probe("signal.id").unwrap_err().contains("boolean"));
        assert!(probe("nosuchfn(signal.id)").is_err());
        assert_eq!(
            probe(r#"signal.attributes.risk == "HIGH""#),
            Ok(()),
            "missing key is data"
        );
        assert_eq!(
            probe(r#"signal.subject.device.identifiers.id == "d""#),
            Ok(())
        );
        assert_eq!(probe("int(signal.attributes.score) > 80"), Ok(()));
    }

    #[test]
    fn non_bool_result_is_an_error() {
        let identity = Identity::unknown();
        let signal = signal();
        let input = ConditionInput::new(&Facts::new(&signal, "svc-1", &identity, 0)).unwrap();
        let c = Condition::compile("signal.id").unwrap();
        assert!(c.eval(&input).is_err());
    }
}
