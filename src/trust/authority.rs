//! Source authority: which issuers may act, on which topics, asserting which event types, and
//! causing which actions. The check runs before any state is read or written.

use crate::config::{Settings, SourceSettings};
use crate::signal::Signal;
use std::collections::HashMap;
use std::time::Duration;

/// Why a decoded signal may not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("issuer {0:?} is not a configured source")]
    UnknownIssuer(String),
    #[error("source {issuer:?} may not publish on topic {topic:?}")]
    TopicNotAllowed { issuer: String, topic: String },
    #[error("source {issuer:?} may not assert event type {event_type:?}")]
    EventTypeNotAllowed { issuer: String, event_type: String },
    #[error(
        "signal is dated {ahead_ms} ms ahead of the daemon's clock (more than the allowed skew)"
    )]
    FutureTimestamp { ahead_ms: i64 },
    #[error("source {0:?} acts only through signed SETs; this signal is not one")]
    Unsigned(String),
}

impl Untrusted {
    /// Bounded reason kind: metric label and decision field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownIssuer(_) => "unknown_issuer",
            Self::TopicNotAllowed { .. } => "topic_not_allowed",
            Self::EventTypeNotAllowed { .. } => "event_type_not_allowed",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::Unsigned(_) => "unsigned",
        }
    }
}

/// One configured source's authority, compiled for lookups per signal.
#[derive(Debug, Clone)]
pub struct Source {
    pub issuer: String,
    topics: Option<Vec<String>>,
    event_types: Vec<Pattern>,
    actions: Vec<Pattern>,
    requires_signed: bool,
}

/// `*` (anything), `prefix*`, or an exact name.
#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn parse(p: &str) -> Self {
        match p.strip_suffix('*') {
            Some("") => Self::Any,
            Some(prefix) => Self::Prefix(prefix.to_string()),
            None => Self::Exact(p.to_string()),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Exact(e) => e == value,
        }
    }
}

/// The authority of a signal that has none (untrusted): it may cause nothing.
pub static NOBODY: Source = Source {
    issuer: String::new(),
    topics: None,
    event_types: Vec::new(),
    actions: Vec::new(),
    requires_signed: false,
};

impl Source {
    fn new(s: &SourceSettings) -> Self {
        Self {
            issuer: s.issuer.clone(),
            topics: s.topics.clone(),
            event_types: s.event_types.iter().map(|p| Pattern::parse(p)).collect(),
            actions: s.actions.iter().map(|p| Pattern::parse(p)).collect(),
            requires_signed: s.requires_signed(),
        }
    }

    /// A source that may assert anything and cause anything (`event_types = ["*"]`,
    /// `actions = ["*"]`): benches and tests of the decision itself.
    pub fn unrestricted(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            topics: None,
            event_types: vec![Pattern::Any],
            actions: vec![Pattern::Any],
            requires_signed: false,
        }
    }

    /// Whether this source's signals may cause `action`.
    pub fn allows_action(&self, action: &str) -> bool {
        self.actions.iter().any(|p| p.matches(action))
    }

    pub fn allows_event_type(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|p| p.matches(event_type))
    }
}

/// Every configured source by issuer, and the clock bound.
#[derive(Debug, Clone, Default)]
pub struct Authority {
    sources: HashMap<String, Source>,
    max_skew_ms: i64,
}

impl Authority {
    pub fn new(settings: &Settings) -> Self {
        Self::from_sources(&settings.sources, settings.trust.max_clock_skew)
    }

    pub fn from_sources(sources: &[SourceSettings], max_skew: Duration) -> Self {
        Self {
            sources: sources
                .iter()
                .map(|s| (s.issuer.clone(), Source::new(s)))
                .collect(),
            max_skew_ms: max_skew.as_millis() as i64,
        }
    }

    pub fn source(&self, issuer: &str) -> Option<&Source> {
        self.sources.get(issuer)
    }

    /// Admits a signal read from `topic` and decided at bus time `at` when the daemon's clock
    /// reads `now` (all ms), or says why not. `signed`: it arrived as a verified SET. A signal
    /// dated ahead of the bus time, or a bus time ahead of the clock, by more than the skew is
    /// refused: such a date would make state (suppression, windows) look into the future.
    pub fn admit(
        &self,
        signal: &Signal,
        topic: &str,
        signed: bool,
        (at, now): (i64, i64),
    ) -> Result<&Source, Untrusted> {
        let issuer = &signal.source.issuer;
        let source = self
            .sources
            .get(issuer)
            .ok_or_else(|| Untrusted::UnknownIssuer(issuer.clone()))?;
        if source.requires_signed && !signed {
            return Err(Untrusted::Unsigned(issuer.clone()));
        }
        if let Some(topics) = &source.topics {
            if !topics.iter().any(|t| t == topic) {
                return Err(Untrusted::TopicNotAllowed {
                    issuer: issuer.clone(),
                    topic: topic.to_string(),
                });
            }
        }
        if !source.allows_event_type(&signal.event_type) {
            return Err(Untrusted::EventTypeNotAllowed {
                issuer: issuer.clone(),
                event_type: signal.event_type.clone(),
            });
        }
        let ahead = (signal.occurred_at - at).max(at - now);
        if ahead > self.max_skew_ms {
            return Err(Untrusted::FutureTimestamp { ahead_ms: ahead });
        }
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(event_types: &[&str], actions: &[&str], topics: Option<&[&str]>) -> SourceSettings {
        SourceSettings {
            issuer: "https://mdm".into(),
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            jwks_file: None,
            jwks_url: None,
            audience: None,
            algorithms: None,
            require_signed: None,
        }
    }

    fn signal(issuer: &str, event_type: &str, occurred_at: i64) -> Signal {
        serde_json::from_value(serde_json::json!({
            "id": "s1", "source": {"issuer": issuer}, "event_type": event_type,
            "occurred_at": occurred_at,
            "subject": {"format": "opaque", "identifiers": {"id": "svc"}}
        }))
        .unwrap()
    }

    const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

    #[test]
    fn patterns_bound_event_types_actions_and_topics() {
        let s = source(
            &["https://schemas.openid.net/secevent/caep/*"],
            &["block_session", "restore"],
            Some(&["t1"]),
        );
        let a = Authority::from_sources(&[s], Duration::from_secs(300));
        let ok = signal("https://mdm", &format!("{CAEP}session-revoked"), 1000);
        let src = a.admit(&ok, "t1", false, (1000, 1000)).unwrap();
        assert!(src.allows_action("restore"));
        assert!(!src.allows_action("disable_account"));
        let e = a.admit(&ok, "t2", false, (1000, 1000)).unwrap_err();
        assert_eq!(e.kind(), "topic_not_allowed");
        let risc = signal(
            "https://mdm",
            "https://schemas.openid.net/secevent/risc/event-type/account-purged",
            1000,
        );
        assert_eq!(
            a.admit(&risc, "t1", false, (1000, 1000))
                .unwrap_err()
                .kind(),
            "event_type_not_allowed"
        );
        let other = signal(
            "https://attacker.example",
            &format!("{CAEP}session-revoked"),
            1000,
        );
        assert_eq!(
            a.admit(&other, "t1", false, (1000, 1000))
                .unwrap_err()
                .kind(),
            "unknown_issuer"
        );
    }

    #[test]
    fn future_dates_are_refused_beyond_the_skew() {
        let s = source(&["*"], &["*"], None);
        let a = Authority::from_sources(&[s], Duration::from_secs(300));
        let now = 1_800_000_000_000;
        let soon = signal("https://mdm", "urn:x:y", now + 299_000);
        assert!(a.admit(&soon, "t", false, (now, now)).is_ok());
        let far = signal("https://mdm", "urn:x:y", 4_070_908_800_000);
        assert_eq!(
            a.admit(&far, "t", false, (now, now)).unwrap_err().kind(),
            "future_timestamp"
        );
        // A record stamped far ahead of the clock is refused too, whatever the signal says.
        let ok = signal("https://mdm", "urn:x:y", now);
        assert_eq!(
            a.admit(&ok, "t", false, (now + 3_600_000, now))
                .unwrap_err()
                .kind(),
            "future_timestamp"
        );
        assert!(a
            .source("https://mdm")
            .unwrap()
            .allows_action("disable_account"));
    }

    #[test]
    fn a_source_with_keys_acts_only_through_signed_sets() {
        let mut s = source(&["*"], &["*"], None);
        s.jwks_file = Some("jwks.json".into());
        let a = Authority::from_sources(&[s], Duration::from_secs(300));
        let claim = signal("https://mdm", "urn:x:y", 1000);
        let e = a.admit(&claim, "t", false, (1000, 1000)).unwrap_err();
        assert_eq!(e.kind(), "unsigned");
        assert!(a.admit(&claim, "t", true, (1000, 1000)).is_ok());
    }
}
