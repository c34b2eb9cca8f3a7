//! The trust section of the configuration: which sources may act and within what authority,
//! how raw SETs are verified, and the SSF push receiver. Validated with everything else.

use super::Settings;
use crate::emit::command::VOCABULARY;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A system whose signals containd acts on. A signal is trusted only when its issuer (the
/// normalized `source.issuer`, or a SET's `iss`) is one of these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Exact issuer identifier, e.g. `https://mdm.acme.example`.
    pub issuer: String,
    /// The only signal topics its signals may arrive on (binds the issuer claim to the topic
    /// ACLs); unset: any consumed topic.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Event types it may assert: exact URIs, `prefix*`, or `*` for any.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// The most its signals may cause: action names, or `*` for any. `restore` is an action
    /// like any other: only sources allowed it can lift a containment.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Raw SETs: the issuer's JSON Web Key Set, from a file (relative to the config file).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Raw SETs: the issuer's JWKS URL (HTTPS; `http://` only for a loopback host). Cached,
    /// refreshed when a SET names an unknown `kid`, at most once per `trust.jwks_min_refresh`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Raw SETs: the `aud` value that names this receiver; a SET whose `aud` does not contain
    /// it is refused (`wrong_audience`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Raw SETs: signature algorithms accepted from this issuer; default `trust.algorithms`.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Act only on this issuer's verified SETs, never on a normalized (unsigned) signal that
    /// merely claims the issuer. Default: true when the source has keys.
    #[serde(default)]
    pub require_signed: Option<bool>,
}

impl SourceSettings {
    pub fn verifies_sets(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some()
    }

    /// Whether only verified SETs of this issuer may act.
    pub fn requires_signed(&self) -> bool {
        self.require_signed.unwrap_or(self.verifies_sets())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// A signal whose (issuer, id) was already decided within this period, read at another
    /// position, is a duplicate: it decides nothing.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
    /// A signal dated further ahead of the daemon's clock than this is refused
    /// (`future_timestamp`); also the leeway for a SET's `iat`.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// SET signature algorithms accepted unless a source lists its own. Only asymmetric
    /// algorithms: `none` and HMAC are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Least time between two fetches of one source's JWKS (refresh on unknown `kid`).
    #[serde(default = "default_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh: Duration,
    /// Longest a JWKS fetch may take.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub jwks_fetch_timeout: Duration,
}

impl Default for TrustSettings {
    fn default() -> Self {
        Self {
            dedup_window: default_dedup_window(),
            max_clock_skew: default_skew(),
            algorithms: default_algorithms(),
            jwks_min_refresh: default_min_refresh(),
            jwks_fetch_timeout: default_fetch_timeout(),
        }
    }
}

/// The SSF push receiver (RFC 8935): transmitters POST SETs, containd verifies them and
/// produces them to a signal topic, where the pipeline verifies them again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfPushSettings {
    /// Address of `POST /ssf/events` (its own listener, apart from telemetry).
    pub listen: SocketAddr,
    /// Signal topic the verified SETs are produced to (consumed with format `set`).
    pub topic: String,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// PEM certificate chain: serve HTTPS (with `tls_key`); unset: plain HTTP, for TLS
    /// terminated in front (ingress, mesh). Relative to the config file.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`; never logged.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Transmitters allowed to push, each with its bearer token.
    #[serde(default)]
    pub transmitters: Vec<TransmitterSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterSettings {
    /// Name recorded as the signal's transmitter.
    pub name: String,
    /// The bearer token itself (prefer `token_file` or `token_env`: a config file is often
    /// readable by more people than a secret should be). Never logged or printed.
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the bearer token (relative to the config file); never logged.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Issuers whose SETs this transmitter may deliver (`access_denied` otherwise).
    pub issuers: Vec<String>,
}

/// A secret from the config: deserialises from a string, prints as `<redacted>`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The algorithm names containd accepts for SETs at all.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn default_dedup_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "PS256".into(), "ES256".into()]
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_body() -> usize {
    64 * 1024
}

/// Resolves the trust section's relative paths against the config file's directory.
pub(crate) fn normalize(settings: &mut Settings, config_path: &Path) {
    let Some(dir) = config_path.parent() else {
        return;
    };
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    for s in &mut settings.sources {
        if let Some(p) = s.jwks_file.as_mut() {
            resolve(p);
        }
    }
    if let Some(push) = settings.ssf_push.as_mut() {
        for p in [push.tls_cert.as_mut(), push.tls_key.as_mut()]
            .into_iter()
            .flatten()
        {
            resolve(p);
        }
        for t in &mut push.transmitters {
            if let Some(p) = t.token_file.as_mut() {
                resolve(p);
            }
        }
    }
    let safety = &mut settings.safety;
    for p in [
        safety.approvals_key_file.as_mut(),
        safety.admin_token_file.as_mut(),
        settings.lifecycle.key_file.as_mut(),
        settings.disclosure.key_file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        resolve(p);
    }
}

/// Semantic checks of `[[sources]]`, `[trust]` and `[ssf_push]`: (field, message) pairs.
pub(crate) fn validate(settings: &Settings) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| problems.push((field, message));
    if settings.sources.is_empty() {
        problem(
            "sources".into(),
            "no [[sources]]: containd acts only on signals from listed issuers, so with none it \
             would refuse every signal; list each issuer with the event types it may assert and \
             the actions it may cause"
                .into(),
        );
    }
    let actions: HashSet<&str> = VOCABULARY
        .iter()
        .copied()
        .chain(settings.extra_actions.iter().map(String::as_str))
        .collect();
    let mut issuers = HashSet::new();
    for (i, s) in settings.sources.iter().enumerate() {
        if !s.issuer.is_empty() && !issuers.insert(s.issuer.as_str()) {
            problem(
                format!("sources[{i}].issuer"),
                format!("issuer {:?} is listed twice", s.issuer),
            );
        }
        validate_source(i, s, &actions, &mut problem);
    }
    for a in &settings.trust.algorithms {
        check_algorithm("trust.algorithms".into(), a, &mut problem);
    }
    if settings.trust.jwks_fetch_timeout.is_zero() {
        problem(
            "trust.jwks_fetch_timeout".into(),
            "must be longer than 0".into(),
        );
    }
    if let Some(push) = &settings.ssf_push {
        validate_push(settings, push, &mut problem);
    }
    problems
}

/// One source's authority: issuer, event types, actions, topics, and its SET keys.
fn validate_source(
    i: usize,
    s: &SourceSettings,
    actions: &HashSet<&str>,
    problem: &mut dyn FnMut(String, String),
) {
    let at = |f: &str| format!("sources[{i}].{f}");
    if s.issuer.is_empty() {
        problem(at("issuer"), "must not be empty".into());
    }
    if s.event_types.is_empty() {
        problem(
            at("event_types"),
            "list the event types this source may assert (exact, `prefix*`, or `*`)".into(),
        );
    }
    if s.event_types.iter().any(|e| e.is_empty()) {
        problem(at("event_types"), "an event type must not be empty".into());
    }
    if s.actions.is_empty() {
        problem(
            at("actions"),
            "list the actions this source's signals may cause (or `*`)".into(),
        );
    }
    for a in s.actions.iter().filter(|a| *a != "*") {
        if !actions.contains(a.as_str()) {
            problem(at("actions"), format!("unknown action {a:?}"));
        }
    }
    if s.topics.as_ref().is_some_and(Vec::is_empty) {
        problem(
            at("topics"),
            "an empty list admits no topic; omit it for any".into(),
        );
    }
    validate_set_source(s, &at, problem);
}

fn validate_set_source(
    s: &SourceSettings,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) {
    if s.jwks_file.is_some() && s.jwks_url.is_some() {
        problem(at("jwks_url"), "set jwks_file or jwks_url, not both".into());
    }
    if let Some(url) = &s.jwks_url {
        if let Err(e) = check_jwks_url(url) {
            problem(at("jwks_url"), e);
        }
    }
    if s.require_signed == Some(true) && !s.verifies_sets() {
        problem(
            at("require_signed"),
            "a source that must sign needs jwks_file or jwks_url".into(),
        );
    }
    if s.verifies_sets() && s.audience.as_deref().is_none_or(str::is_empty) {
        problem(
            at("audience"),
            "a source that sends SETs needs the audience that names this receiver".into(),
        );
    }
    for a in s.algorithms.iter().flatten() {
        check_algorithm(at("algorithms"), a, problem);
    }
}

fn check_algorithm(field: String, name: &str, problem: &mut dyn FnMut(String, String)) {
    if !ASYMMETRIC_ALGORITHMS.contains(&name) {
        problem(
            field,
            format!(
                "algorithm {name:?} is not accepted for SETs (one of {})",
                ASYMMETRIC_ALGORITHMS.join(", ")
            ),
        );
    }
}

/// A JWKS URL must be HTTPS; plain HTTP is allowed only to a loopback host (tests, sidecars).
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{url:?} is not an https:// URL"));
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if ["127.0.0.1", "localhost", "[::1]"].contains(&host) {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: plain http:// is allowed only to a loopback host; use https://"
        ))
    }
}

fn validate_push(
    settings: &Settings,
    push: &SsfPushSettings,
    problem: &mut dyn FnMut(String, String),
) {
    let consumed = settings.input.topics.contains(&push.topic)
        || settings
            .input
            .topic_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok())
            .is_some_and(|p| p.is_match(&push.topic));
    if !consumed {
        problem(
            "ssf_push.topic".into(),
            format!("{:?} is not among the consumed signal topics", push.topic),
        );
    } else if settings.input.format_of(&push.topic) != crate::codec::Format::Set {
        problem(
            "ssf_push.topic".into(),
            format!(
                "{:?} must be read with format \"set\" (input.formats)",
                push.topic
            ),
        );
    }
    if push.tls_cert.is_some() != push.tls_key.is_some() {
        problem(
            "ssf_push.tls_cert".into(),
            "set both tls_cert and tls_key (or neither, for plain HTTP)".into(),
        );
    }
    if push.transmitters.is_empty() {
        problem(
            "ssf_push.transmitters".into(),
            "list the transmitters allowed to push, each with its bearer token".into(),
        );
    }
    for (i, t) in push.transmitters.iter().enumerate() {
        let at = |f: &str| format!("ssf_push.transmitters[{i}].{f}");
        let given = [
            t.token.is_some(),
            t.token_file.is_some(),
            t.token_env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            problem(
                at("token_file"),
                "set exactly one of token, token_file and token_env".into(),
            );
        }
        for iss in &t.issuers {
            if !settings.sources.iter().any(|s| &s.issuer == iss) {
                problem(
                    at("issuers"),
                    format!("issuer {iss:?} is not a configured source"),
                );
            }
        }
    }
}
