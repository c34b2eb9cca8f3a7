//! A source's JSON Web Key Set, from a file or an HTTPS URL. Cached; re-read when a SET names a
//! key id it does not hold (key rotation), at most once per `trust.jwks_min_refresh`, so a
//! flood of SETs with made-up `kid`s cannot turn into a flood of fetches.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where a key set comes from.
#[derive(Debug, Clone)]
pub enum KeyOrigin {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// One verification key: its id, the one algorithm it is pinned to (when the JWK says), and
/// the key itself. Symmetric (`oct`) keys are never loaded.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

/// The cached keys of one source.
pub struct KeySet {
    origin: KeyOrigin,
    keys: RwLock<Arc<Vec<Key>>>,
    last_load: Mutex<Option<Instant>>,
    min_refresh: Duration,
    timeout: Duration,
}

impl KeySet {
    pub fn new(origin: KeyOrigin, min_refresh: Duration, timeout: Duration) -> Self {
        Self {
            origin,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_load: Mutex::new(None),
            min_refresh,
            timeout,
        }
    }

    pub fn origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// The keys as last loaded.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads the keys now (startup); returns how many were usable.
    pub fn load(&self) -> Result<usize, String> {
        *self.last_load.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let text = match &self.origin {
            KeyOrigin::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read JWKS file {}: {e}", p.display()))?,
            KeyOrigin::Url(u) => fetch(u, self.timeout)?,
        };
        let keys = parse_jwks(&text).map_err(|e| format!("JWKS from {}: {e}", self.origin))?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// Re-reads the keys unless that happened within the minimum refresh interval; returns
    /// whether it re-read.
    pub fn refresh(&self) -> bool {
        {
            let mut last = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.load() {
            Ok(n) => {
                tracing::info!(origin = %self.origin, keys = n, "JWKS refreshed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys held");
                false
            }
        }
    }
}

/// GETs a JWKS document. Bodies over 1 MiB are refused.
fn fetch(url: &str, timeout: Duration) -> Result<String, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .header("Accept", "application/jwk-set+json, application/json")
        .call()
        .map_err(|e| format!("cannot fetch JWKS from {url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("cannot read JWKS from {url}: {e}"))
}

/// Parses a JWKS document, keeping the keys usable for signatures: asymmetric, not marked
/// `use: enc`. A key that does not parse is skipped; a document with no usable key is an error.
pub fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for value in doc.keys {
        let kty = value
            .get("kty")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let usage = value.get("use").and_then(|k| k.as_str());
        if kty == "oct" || usage == Some("enc") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no usable signature key (asymmetric, not use=enc)".into());
    }
    Ok(keys)
}
