//! The demo's own inputs beside the seed scenarios: a signed SET and its key, a signal from an
//! unlisted issuer, a break-glass rotation the safety rails hold, and a small flood past a
//! circuit breaker.

use super::*;

/// The issuer whose SETs the demo signs and verifies, and the topic they travel on.
pub(super) const SET_ISSUER: &str = "https://mdm.acme.example";
pub(super) const SET_TOPIC: &str = "identity.signals.set.v1";
pub(super) const SET_AUDIENCE: &str = "https://containd.acme.example";

/// The demo's transmitter: a fresh ES256 key whose JWKS the MDM source is configured with,
/// a SET it signs (device non-compliant), a JSON signal from an unlisted issuer, and a
/// rotation for a break-glass account (protected by the example's `[safety]`: held).
pub(super) struct TrustDemo {
    jwks_file: PathBuf,
    set: String,
    untrusted: Vec<u8>,
    protected: Vec<u8>,
    /// A small flood of rotations, past the demo's circuit breaker.
    flood: Vec<Vec<u8>>,
}

impl TrustDemo {
    pub(super) fn new(settings: &mut Settings) -> Result<Self, DemoError> {
        let signer =
            crate::trust::signer::SetSigner::generate("mdm-demo-1").map_err(DemoError::Set)?;
        let jwks_file =
            std::env::temp_dir().join(format!("containd-demo-jwks-{}.json", std::process::id()));
        std::fs::write(&jwks_file, signer.jwks()).map_err(|e| DemoError::Set(e.to_string()))?;
        if let Some(s) = settings.sources.iter_mut().find(|s| s.issuer == SET_ISSUER) {
            s.jwks_file = Some(jwks_file.clone());
            s.audience = Some(SET_AUDIENCE.into());
            // The demo's MDM feeds the bus both ways: normalized signals (the seed scenarios)
            // and signed SETs. A production source with keys would act through SETs only.
            s.require_signed = Some(false);
        }
        settings.input.topics.push(SET_TOPIC.into());
        settings
            .input
            .formats
            .insert(SET_TOPIC.into(), crate::codec::Format::Set);
        let now = crate::trust::now_ms() / 1000;
        let set = signer
            .sign(&serde_json::json!({
                "iss": SET_ISSUER, "aud": SET_AUDIENCE, "iat": now, "jti": "set-0001",
                "sub_id": {"format": "complex",
                    "device": {"format": "opaque", "id": "dev-laptop-19"},
                    "application": {"format": "opaque", "id": "agent-expense-bot"}},
                "events": {"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change": {
                    "previous_status": "compliant", "current_status": "not-compliant",
                    "event_timestamp": now}}
            }))
            .map_err(DemoError::Set)?;
        let untrusted = serde_json::to_vec(&serde_json::json!({
            "id": "sig-forged-1", "source": {"issuer": "https://attacker.example"},
            "event_type": "https://schemas.openid.net/secevent/risc/event-type/account-purged",
            "occurred_at": now * 1000,
            "subject": {"format": "opaque", "identifiers": {"id": "svc-payments-api"}}
        }))
        .map_err(|error| DemoError::Signals { line: 0, error })?;
        let protected = serde_json::to_vec(&serde_json::json!({
            "id": "sig-breakglass-1", "source": {"issuer": "https://vault.acme.example"},
            "event_type": "urn:containd:event:secrets:credential-rotated",
            "occurred_at": now * 1000,
            "subject": {"format": "opaque", "identifiers": {"id": "breakglass-admin-eu"}},
            "event": {"credential_type": "password"},
            "attributes": {"previous_credential_id": "BG-OLD-1"}
        }))
        .map_err(|error| DemoError::Signals { line: 0, error })?;
        Ok(Self {
            jwks_file,
            set,
            untrusted,
            protected,
            flood: flood(now)?,
        })
    }

    /// The demo's own inputs as signals (for the table), in the order they are sent.
    pub(super) fn signals(&self, settings: &Settings) -> Result<Vec<Signal>, DemoError> {
        let verifier =
            crate::trust::SetVerifier::load(settings, Path::new("examples/containd.toml"))
                .map_err(|p| DemoError::Trust(config::Problems(p)))?;
        let set = verifier
            .signal(self.set.as_bytes(), crate::trust::now_ms())
            .map_err(|e| DemoError::Set(e.to_string()))?;
        let json = |bytes: &[u8]| {
            serde_json::from_slice(bytes).map_err(|error| DemoError::Signals { line: 0, error })
        };
        let mut out = vec![set, json(&self.untrusted)?, json(&self.protected)?];
        for f in &self.flood {
            out.push(json(f)?);
        }
        Ok(out)
    }

    pub(super) async fn send(
        &self,
        producer: &FutureProducer,
        settings: &Settings,
    ) -> Result<(), DemoError> {
        let sends = [
            (SET_TOPIC, "agent-expense-bot", self.set.as_bytes()),
            (
                settings.input.topics[0].as_str(),
                "svc-payments-api",
                self.untrusted.as_slice(),
            ),
            (
                settings.input.topics[0].as_str(),
                "breakglass-admin-eu",
                self.protected.as_slice(),
            ),
        ];
        let input = settings.input.topics[0].as_str();
        let flood = self
            .flood
            .iter()
            .map(|f| (input, "svc-batch", f.as_slice()));
        for (topic, key, payload) in sends.into_iter().chain(flood) {
            producer
                .send(
                    FutureRecord::to(topic).key(key).payload(payload),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

/// Four credential rotations at once from the secret scanner (three commands each): the
/// demo's breaker on that source lets six commands through a minute, so the last two
/// signals' commands are held. One key: one partition, so the order is fixed.
fn flood(now: i64) -> Result<Vec<Vec<u8>>, DemoError> {
    (1..=4)
        .map(|n| {
            serde_json::to_vec(&serde_json::json!({
                "id": format!("sig-flood-{n}"), "source": {"issuer": "https://scanner.acme.example"},
                "event_type": "urn:containd:event:secrets:credential-rotated",
                "occurred_at": now * 1000,
                "subject": {"format": "opaque", "identifiers": {"id": format!("svc-batch-{n}")}},
                "event": {"credential_type": "api-key"},
                "attributes": {"previous_credential_id": format!("AKIAFLOOD{n}")}
            }))
            .map_err(|error| DemoError::Signals { line: 0, error })
        })
        .collect()
}

/// The demo's breaker: six commands a minute from the secret scanner.
pub(super) fn demo_breaker() -> crate::config::BreakerSettings {
    crate::config::BreakerSettings {
        name: "demo-scanner".into(),
        scope: crate::config::BreakerScope::Source,
        only: Some("https://scanner.acme.example".into()),
        max: 6,
        per: Duration::from_secs(60),
        cooldown: Duration::from_secs(600),
    }
}

impl Drop for TrustDemo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.jwks_file);
    }
}
