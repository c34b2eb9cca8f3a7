//! An ES256 SET signer with a fresh key: what the demo (and tests) use to play a transmitter.
//! The daemon itself never signs; it only verifies.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

/// A P-256 key pair: signs SETs, publishes its public half as a JWKS.
pub struct SetSigner {
    kid: String,
    encoding: EncodingKey,
    x: String,
    y: String,
}

impl SetSigner {
    /// A new key pair with key id `kid`.
    pub fn generate(kid: &str) -> Result<Self, String> {
        let secret = p256::SecretKey::generate();
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
        let point = secret.public_key().to_sec1_bytes();
        if point.len() != 65 {
            return Err("unexpected public key encoding".into());
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Ok(Self {
            kid: kid.to_string(),
            encoding,
            x: b64(&point[1..33]),
            y: b64(&point[33..65]),
        })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": self.x, "y": self.y})
    }

    /// A JWKS document holding the public key.
    pub fn jwks(&self) -> String {
        serde_json::json!({"keys": [self.jwk()]}).to_string()
    }

    /// Signs `claims` as a SET (header `typ: secevent+jwt`, this key's `kid`).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("secevent+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::jwks::parse_jwks;

    #[test]
    fn signed_set_verifies_with_the_published_key() {
        let s = SetSigner::generate("k1").unwrap();
        let keys = parse_jwks(&s.jwks()).unwrap();
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        let token = s
            .sign(&serde_json::json!({"iss": "i", "jti": "j"}))
            .unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &keys[0].key, &v).unwrap();
        let other = SetSigner::generate("k1").unwrap();
        let wrong = parse_jwks(&other.jwks()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &wrong[0].key, &v).is_err());
    }
}
