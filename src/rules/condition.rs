//! CEL conditions, compiled once at load. The variables a condition may use are `signal`,
//! `subject` and `now`; anything else is a load error, so a typo never silently evaluates
//! to "no match".

use crate::signal::Signal;
use cel::{Context, Env, Program, Value};
use std::sync::{Arc, OnceLock};

pub const VARIABLES: &[&str] = &["signal", "subject", "now"];

/// A compiled condition with its source text.
pub struct Condition {
    pub source: String,
    program: Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

impl Condition {
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = env().compile(source).map_err(|e| e.to_string())?;
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
        Ok(Self {
            source: source.into(),
            program,
        })
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
        let mut ctx = Context::with_env(env());
        ctx.add_variable_from_value("signal", input.signal.clone());
        ctx.add_variable_from_value("subject", input.subject.clone());
        ctx.add_variable_from_value("now", input.now.clone());
        self.program.execute(&ctx).map_err(|e| e.to_string())
    }
}

/// The CEL view of one signal, built once per signal and shared by every condition.
pub struct ConditionInput {
    signal: Value,
    subject: Value,
    now: Value,
}

impl ConditionInput {
    pub fn new(signal: &Signal, subject_id: &str, now_millis: i64) -> Result<Self, String> {
        let value = cel::to_value(signal).map_err(|e| e.to_string())?;
        let mut subject = serde_json::to_value(&signal.subject).map_err(|e| e.to_string())?;
        if let Some(obj) = subject.as_object_mut() {
            obj.insert("id".into(), subject_id.into());
        }
        let subject = cel::to_value(&subject).map_err(|e| e.to_string())?;
        let now = chrono::DateTime::from_timestamp_millis(now_millis)
            .map(|t| Value::Timestamp(t.fixed_offset()))
            .unwrap_or(Value::Null);
        Ok(Self {
            signal: value,
            subject,
            now,
        })
    }
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
        let input = ConditionInput::new(&signal(), "svc-1", 1_000).unwrap();
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
    fn non_bool_result_is_an_error() {
        let input = ConditionInput::new(&signal(), "svc-1", 0).unwrap();
        let c = Condition::compile("signal.id").unwrap();
        assert!(c.eval(&input).is_err());
    }
}
