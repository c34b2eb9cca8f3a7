//! Raw Security Event Tokens (RFC 8417) as SSF delivers them: a compact JWS per record.
//! Verification follows what an SSF receiver must check, in an order that reads nothing
//! the signature has not covered before it is verified: shape and header (`alg` on the
//! allow-list, `typ`), issuer (a configured source with keys), key (`kid`, refreshed once when
//! unknown), signature (jsonwebtoken), then the claims (`aud`, `iat`, `jti`, one event, a
//! subject). A verified SET becomes the normalized [`Signal`] (see [`super::set_map`]).

use super::jwks::{Key, KeyOrigin, KeySet};
use crate::config::{Problem, Settings, SourceSettings, TrustSettings};
use crate::signal::Signal;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use std::collections::HashMap;
use std::sync::Arc;

/// Why a SET is not acted on; each kind is its own dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("malformed SET: {0}")]
    Malformed(String),
    #[error("SET algorithm {0:?} is not accepted")]
    UnsupportedAlg(String),
    #[error("SET issuer {0:?} is not a configured source with keys")]
    UnknownIssuer(String),
    #[error("SET key {kid:?} is not in the issuer's key set")]
    UnknownKey { kid: String },
    #[error("SET signature does not verify")]
    BadSignature,
    #[error("SET audience does not name this receiver ({expected:?})")]
    WrongAudience { expected: String },
    #[error("SET issued {ahead_s} s in the future (beyond the allowed clock skew)")]
    IssuedInFuture { ahead_s: i64 },
}

impl SetError {
    /// Stable reason kind for the dead-letter header and metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_set",
            Self::UnsupportedAlg(_) => "unsupported_alg",
            Self::UnknownIssuer(_) => "unknown_issuer",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::IssuedInFuture { .. } => "issued_in_future",
        }
    }

    /// The RFC 8935 error code a push transmitter is answered with.
    pub fn push_code(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::IssuedInFuture { .. } => "invalid_request",
            Self::UnsupportedAlg(_) | Self::UnknownKey { .. } | Self::BadSignature => "invalid_key",
            Self::UnknownIssuer(_) => "invalid_issuer",
            Self::WrongAudience { .. } => "invalid_audience",
        }
    }
}

/// What verifies one issuer's SETs.
struct IssuerKeys {
    keys: Arc<KeySet>,
    audience: String,
    algorithms: Vec<Algorithm>,
}

/// Verifies SETs for every source that has keys.
#[derive(Clone, Default)]
pub struct SetVerifier {
    issuers: Arc<HashMap<String, IssuerKeys>>,
    skew_s: i64,
}

impl std::fmt::Debug for SetVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The verified parts of a SET the mapping needs.
pub struct VerifiedSet {
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl SetVerifier {
    /// Builds the verifier and loads every source's keys. A JWKS file that cannot be read is a
    /// configuration problem; an unreachable JWKS URL is not (it is fetched again on demand),
    /// but is logged.
    pub fn load(settings: &Settings, config_file: &std::path::Path) -> Result<Self, Vec<Problem>> {
        Self::from_sources(&settings.sources, &settings.trust, config_file)
    }

    pub fn from_sources(
        sources: &[SourceSettings],
        t: &TrustSettings,
        config_file: &std::path::Path,
    ) -> Result<Self, Vec<Problem>> {
        let mut issuers = HashMap::new();
        let mut problems = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            let origin = match (&s.jwks_file, &s.jwks_url) {
                (Some(p), _) => KeyOrigin::File(p.clone()),
                (None, Some(u)) => KeyOrigin::Url(u.clone()),
                (None, None) => continue,
            };
            let keys = Arc::new(KeySet::new(
                origin,
                t.jwks_min_refresh,
                t.jwks_fetch_timeout,
            ));
            match (keys.load(), keys.origin()) {
                (Ok(_), _) => {}
                (Err(e), KeyOrigin::File(_)) => problems.push(Problem {
                    file: config_file.into(),
                    line: None,
                    field: format!("sources[{i}].jwks_file"),
                    message: e,
                }),
                (Err(e), KeyOrigin::Url(_)) => {
                    tracing::warn!(issuer = %s.issuer, error = %e, "JWKS not loaded; SETs from this issuer wait for a refresh")
                }
            }
            let names = s.algorithms.as_ref().unwrap_or(&t.algorithms);
            let algorithms = names.iter().filter_map(|a| a.parse().ok()).collect();
            issuers.insert(
                s.issuer.clone(),
                IssuerKeys {
                    keys,
                    audience: s.audience.clone().unwrap_or_default(),
                    algorithms,
                },
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            issuers: Arc::new(issuers),
            skew_s: t.max_clock_skew.as_secs() as i64,
        })
    }

    /// Verifies a compact JWS SET at wall-clock time `now_ms` and returns its claims.
    pub fn verify(&self, bytes: &[u8], now_ms: i64) -> Result<VerifiedSet, SetError> {
        let token = std::str::from_utf8(bytes)
            .map_err(|_| SetError::Malformed("not UTF-8 text".into()))?
            .trim();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts[0].is_empty() || parts[1].is_empty() {
            return Err(SetError::Malformed(
                "not a compact JWS (three base64url parts)".into(),
            ));
        }
        let header = decode_part(parts[0], "header")?;
        let alg_name = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or_else(|| SetError::Malformed("header has no alg".into()))?;
        if let Some(typ) = header.get("typ") {
            let typ = typ.as_str().unwrap_or_default().to_ascii_lowercase();
            if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
                return Err(SetError::Malformed(format!(
                    "typ {typ:?} is not secevent+jwt"
                )));
            }
        }
        if header.contains_key("crit") {
            return Err(SetError::Malformed(
                "critical header parameters are not supported".into(),
            ));
        }
        let unverified = decode_part(parts[1], "payload")?;
        let issuer = unverified
            .get("iss")
            .and_then(|i| i.as_str())
            .ok_or_else(|| SetError::Malformed("no iss claim".into()))?;
        let keys = self
            .issuers
            .get(issuer)
            .ok_or_else(|| SetError::UnknownIssuer(issuer.to_string()))?;
        let alg: Algorithm = alg_name
            .parse()
            .ok()
            .filter(|a| keys.algorithms.contains(a))
            .ok_or_else(|| SetError::UnsupportedAlg(alg_name.to_string()))?;
        let kid = header.get("kid").and_then(|k| k.as_str());
        verify_signature(token, alg, kid, &keys.keys)?;
        // From here on the claims are the signed ones.
        let claims = unverified;
        check_claims(&claims, &keys.audience, now_ms / 1000, self.skew_s)?;
        Ok(VerifiedSet { claims })
    }

    /// Verifies a SET and maps it to the normalized signal.
    pub fn signal(&self, bytes: &[u8], now_ms: i64) -> Result<Signal, SetError> {
        let set = self.verify(bytes, now_ms)?;
        super::set_map::to_signal(set.claims)
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }
}

fn decode_part(
    part: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, SetError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| SetError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| SetError::Malformed(format!("{what} is not a JSON object")))
}

/// Finds the key (by `kid`, refreshing the set once when it is unknown; without a `kid`, every
/// key of the algorithm's family) and verifies the signature with the one algorithm allowed.
fn verify_signature(
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
    set: &KeySet,
) -> Result<(), SetError> {
    let candidates = |keys: &[Key]| -> Vec<Key> {
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.is_none_or(|a| a == alg))
            .filter(|k| k.key.family() == alg.family())
            .cloned()
            .collect()
    };
    let mut found = candidates(&set.keys());
    if found.is_empty() && set.refresh() {
        found = candidates(&set.keys());
    }
    if found.is_empty() {
        return Err(SetError::UnknownKey {
            kid: kid.unwrap_or("(none)").to_string(),
        });
    }
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    for k in &found {
        match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &validation) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidAlgorithm) => {
                return Err(SetError::UnsupportedAlg(format!("{alg:?}")))
            }
            Err(_) => continue,
        }
    }
    Err(SetError::BadSignature)
}

/// The claims a SET must carry (RFC 8417, SSF 1.0) and this receiver checks.
fn check_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    audience: &str,
    now_s: i64,
    skew_s: i64,
) -> Result<(), SetError> {
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(SetError::WrongAudience {
            expected: audience.to_string(),
        });
    }
    let iat = claims
        .get("iat")
        .and_then(|i| i.as_i64())
        .ok_or_else(|| SetError::Malformed("no numeric iat claim".into()))?;
    if iat > now_s + skew_s {
        return Err(SetError::IssuedInFuture {
            ahead_s: iat - now_s,
        });
    }
    match claims.get("jti").and_then(|j| j.as_str()) {
        Some(j) if !j.is_empty() => {}
        _ => return Err(SetError::Malformed("no jti claim".into())),
    }
    for forbidden in ["exp", "sub"] {
        if claims.contains_key(forbidden) {
            return Err(SetError::Malformed(format!(
                "a SET carries no {forbidden} claim (RFC 8417 §2.2; SSF names the subject in sub_id)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
