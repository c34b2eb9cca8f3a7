//! Semantic checks on a decoded signal. A signal that fails is dead-lettered with the
//! reason; the checks follow what CAEP 1.0 and RISC 1.0 make required.

use super::event_types::{caep, is_known_caep_or_risc, risc, CAEP_PREFIX, RISC_PREFIX};
use super::{Signal, SubjectFormat};

/// Why a decoded signal is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("field `{0}` is empty")]
    EmptyField(&'static str),
    #[error("event type {0:?} is under the CAEP/RISC namespace but neither profile defines it")]
    UnknownEventType(String),
    #[error("event type {0:?} is not namespaced (expected a URI or URN)")]
    UnnamespacedEventType(String),
    #[error("subject format {0:?} is not a known RFC 9493/SSF format")]
    UnknownSubjectFormat(String),
    #[error("subject: {0}")]
    InvalidSubject(String),
    #[error("{event}: {problem}")]
    InvalidEventFields { event: String, problem: String },
    #[error("field `{field}` is {len} bytes; at most {MAX_NAME_BYTES} are accepted")]
    FieldTooLong { field: String, len: usize },
    #[error("`{field}` has {count} entries; at most {MAX_ENTRIES} are accepted")]
    TooManyEntries { field: &'static str, count: usize },
}

/// Most entries in a signal's maps and lists (attributes, claims, identifiers, aliases). A
/// rule's comprehension runs over them, so their size bounds a rule's work per signal; real
/// signals carry a handful.
pub const MAX_ENTRIES: usize = 256;

/// Longest id, issuer, event type, transaction id or subject identifier accepted. Every one of
/// them is echoed into each command, decision and record key, so one oversized value would
/// make every output of the signal too large to produce; real ones (URIs, emails, ARNs,
/// SPIFFE/WIMSE ids) are far shorter.
pub const MAX_NAME_BYTES: usize = 2048;

impl ValidationError {
    /// Stable reason kind for the dead-letter header and metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyField(_) => "missing_field",
            Self::UnknownEventType(_) | Self::UnnamespacedEventType(_) => "unknown_event_type",
            Self::UnknownSubjectFormat(_) => "unknown_subject_format",
            Self::InvalidSubject(_) => "invalid_subject",
            Self::InvalidEventFields { .. } => "invalid_event_fields",
            Self::FieldTooLong { .. } => "field_too_long",
            Self::TooManyEntries { .. } => "too_many_entries",
        }
    }
}

pub fn validate(signal: &Signal) -> Result<(), ValidationError> {
    check_lengths(signal)?;
    if signal.id.is_empty() {
        return Err(ValidationError::EmptyField("id"));
    }
    if signal.source.issuer.is_empty() {
        return Err(ValidationError::EmptyField("source.issuer"));
    }
    check_event_type(&signal.event_type)?;
    check_subject(signal)?;
    check_event_fields(signal)
}

/// Every name the signal's outputs echo is at most [`MAX_NAME_BYTES`]; every collection
/// rules iterate over has at most [`MAX_ENTRIES`].
fn check_lengths(signal: &Signal) -> Result<(), ValidationError> {
    let counts = [
        ("attributes", signal.attributes.len()),
        ("event.claims", signal.event.claims.len()),
        ("subject.identifiers", signal.subject.identifiers.len()),
        ("subject.aliases", signal.subject.aliases.len()),
    ];
    if let Some((field, count)) = counts.into_iter().find(|(_, n)| *n > MAX_ENTRIES) {
        return Err(ValidationError::TooManyEntries { field, count });
    }
    let s = &signal.subject;
    let simple = std::iter::once(("subject", &s.format, &s.identifiers))
        .chain(
            s.members()
                .into_iter()
                .filter_map(|(name, m)| m.map(|m| (name, &m.format, &m.identifiers))),
        )
        .chain(
            s.aliases
                .iter()
                .map(|a| ("subject.aliases", &a.format, &a.identifiers)),
        );
    let names = [
        ("id", signal.id.as_str()),
        ("source.issuer", &signal.source.issuer),
        ("event_type", &signal.event_type),
        ("txn", signal.txn.as_deref().unwrap_or("")),
    ];
    let identifiers = simple.flat_map(|(at, format, ids)| {
        std::iter::once((at, format.as_str())).chain(
            ids.iter()
                .flat_map(move |(k, v)| [(at, k.as_str()), (at, v.as_str())]),
        )
    });
    match names
        .into_iter()
        .chain(identifiers)
        .find(|(_, v)| v.len() > MAX_NAME_BYTES)
    {
        Some((field, v)) => Err(ValidationError::FieldTooLong {
            field: field.to_string(),
            len: v.len(),
        }),
        None => Ok(()),
    }
}

fn check_event_type(event_type: &str) -> Result<(), ValidationError> {
    match is_known_caep_or_risc(event_type) {
        Some(true) => Ok(()),
        Some(false) => Err(ValidationError::UnknownEventType(event_type.into())),
        None if event_type.contains(':') && !event_type.ends_with(':') => Ok(()),
        None => Err(ValidationError::UnnamespacedEventType(event_type.into())),
    }
}

fn check_subject(signal: &Signal) -> Result<(), ValidationError> {
    let subject = &signal.subject;
    let format = SubjectFormat::parse(&subject.format)
        .ok_or_else(|| ValidationError::UnknownSubjectFormat(subject.format.clone()))?;
    let check_simple = |what: &str, format_name: &str, id: Option<String>| {
        let format = SubjectFormat::parse(format_name)
            .ok_or_else(|| ValidationError::UnknownSubjectFormat(format_name.into()))?;
        if matches!(format, SubjectFormat::Complex | SubjectFormat::Aliases) {
            return Err(ValidationError::InvalidSubject(format!(
                "{what} may not nest a {format_name} subject"
            )));
        }
        id.map(|_| ()).ok_or_else(|| {
            ValidationError::InvalidSubject(format!(
                "{what} ({format_name}) needs members {:?}",
                format.required_members()
            ))
        })
    };
    match format {
        SubjectFormat::Complex => {
            let mut any = false;
            for (name, member) in subject.members() {
                if let Some(m) = member {
                    check_simple(name, &m.format, m.id())?;
                    any = true;
                }
            }
            if !any {
                return Err(ValidationError::InvalidSubject(
                    "complex subject has no members".into(),
                ));
            }
        }
        SubjectFormat::Aliases => {
            if subject.aliases.is_empty() {
                return Err(ValidationError::InvalidSubject(
                    "aliases subject has no identifiers".into(),
                ));
            }
            for m in &subject.aliases {
                check_simple("alias", &m.format, m.id())?;
            }
        }
        simple => check_simple("subject", simple.name(), subject.id())?,
    }
    Ok(())
}

fn check_event_fields(signal: &Signal) -> Result<(), ValidationError> {
    let e = &signal.event;
    let one_of = |value: &Option<String>, allowed: &[&str]| {
        value.as_deref().is_some_and(|v| allowed.contains(&v))
    };
    let present = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let problem = if let Some(name) = signal.event_type.strip_prefix(CAEP_PREFIX) {
        match name {
            caep::DEVICE_COMPLIANCE_CHANGE => {
                (!one_of(&e.current_status, &["compliant", "not-compliant"]))
                    .then_some("current_status must be compliant or not-compliant")
            }
            caep::CREDENTIAL_CHANGE if !present(&e.credential_type) => {
                Some("credential_type is required")
            }
            caep::CREDENTIAL_CHANGE => {
                (!one_of(&e.change_type, &["create", "revoke", "update", "delete"]))
                    .then_some("change_type must be create, revoke, update or delete")
            }
            caep::RISK_LEVEL_CHANGE if !present(&e.principal) => Some("principal is required"),
            caep::RISK_LEVEL_CHANGE => (!one_of(&e.current_level, &["LOW", "MEDIUM", "HIGH"]))
                .then_some("current_level must be LOW, MEDIUM or HIGH"),
            caep::ASSURANCE_LEVEL_CHANGE => (!present(&e.namespace) || !present(&e.current_level))
                .then_some("namespace and current_level are required"),
            caep::TOKEN_CLAIMS_CHANGE => e.claims.is_empty().then_some("claims are required"),
            _ => None,
        }
    } else if let Some(name) = signal.event_type.strip_prefix(RISC_PREFIX) {
        (name == risc::CREDENTIAL_COMPROMISE && !present(&e.credential_type))
            .then_some("credential_type is required")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ValidationError::InvalidEventFields {
            event: signal.event_type.clone(),
            problem: problem.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(event_type: &str, event: serde_json::Value) -> Signal {
        serde_json::from_value(serde_json::json!({
            "id": "s1", "source": {"issuer": "https://idp"}, "event_type": event_type,
            "occurred_at": 1, "subject": {"format": "opaque", "identifiers": {"id": "svc"}},
            "event": event,
        }))
        .unwrap()
    }

    fn caep(name: &str) -> String {
        format!("{CAEP_PREFIX}{name}")
    }

    #[test]
    fn caep_required_fields_are_enforced() {
        let ok = signal(
            &caep("device-compliance-change"),
            serde_json::json!({"current_status": "not-compliant"}),
        );
        assert_eq!(validate(&ok), Ok(()));
        let bad = signal(
            &caep("device-compliance-change"),
            serde_json::json!({"current_status": "meh"}),
        );
        assert_eq!(validate(&bad).unwrap_err().kind(), "invalid_event_fields");
        let bad = signal(
            &caep("credential-change"),
            serde_json::json!({"credential_type": "x509", "change_type": "rotate"}),
        );
        assert_eq!(validate(&bad).unwrap_err().kind(), "invalid_event_fields");
        let bad = signal(
            &caep("risk-level-change"),
            serde_json::json!({"current_level": "HIGH"}),
        );
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("principal"));
    }

    #[test]
    fn event_types_must_be_known_or_namespaced() {
        let unknown = signal(&caep("session-exploded"), serde_json::json!({}));
        assert_eq!(validate(&unknown).unwrap_err().kind(), "unknown_event_type");
        let bare = signal("credential-rotated", serde_json::json!({}));
        assert_eq!(validate(&bare).unwrap_err().kind(), "unknown_event_type");
        let nhi = signal(
            "urn:containd:event:secrets:credential-rotated",
            serde_json::json!({}),
        );
        assert_eq!(validate(&nhi), Ok(()));
    }

    #[test]
    fn subjects_are_checked_member_by_member() {
        let mut s = signal("urn:x:y", serde_json::json!({}));
        s.subject.format = "complex".into();
        assert_eq!(validate(&s).unwrap_err().kind(), "invalid_subject");
        s.subject.device = Some(crate::signal::SimpleSubject {
            format: "email".into(),
            identifiers: Default::default(),
        });
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("device (email) needs members"));
    }

    #[test]
    fn names_and_collections_are_bounded() {
        let mut s = signal("urn:containd:event:policy:changed", serde_json::json!({}));
        assert_eq!(validate(&s), Ok(()));
        s.subject
            .identifiers
            .insert("id".into(), "x".repeat(MAX_NAME_BYTES + 1));
        let e = validate(&s).unwrap_err();
        assert_eq!(e.kind(), "field_too_long");
        assert!(e.to_string().contains("`subject`") && e.to_string().contains("2049 bytes"));
        let mut s = signal("urn:containd:event:policy:changed", serde_json::json!({}));
        s.attributes = (0..=MAX_ENTRIES)
            .map(|i| (i.to_string(), "v".into()))
            .collect();
        let e = validate(&s).unwrap_err();
        assert_eq!(e.kind(), "too_many_entries");
        assert!(
            e.to_string().contains("`attributes` has 257 entries"),
            "{e}"
        );
    }
}
