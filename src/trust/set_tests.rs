use super::*;
use crate::trust::signer::SetSigner;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ISS: &str = "https://idp.example";
const AUD: &str = "https://containd.example";
const NOW_S: i64 = 1_800_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    signer: SetSigner,
    verifier: SetVerifier,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let signer = SetSigner::generate("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, signer.jwks()).unwrap();
    let source = SourceSettings {
        issuer: ISS.into(),
        topics: None,
        event_types: vec!["*".into()],
        actions: vec!["*".into()],
        jwks_file: Some(jwks),
        jwks_url: None,
        audience: Some(AUD.into()),
        algorithms: None,
        require_signed: None,
    };
    let trust = TrustSettings {
        jwks_min_refresh: std::time::Duration::ZERO,
        ..TrustSettings::default()
    };
    let verifier =
        SetVerifier::from_sources(&[source], &trust, std::path::Path::new("c.toml")).unwrap();
    Fixture {
        _dir: dir,
        signer,
        verifier,
    }
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISS, "aud": [AUD, "other"], "iat": NOW_S - 5, "jti": "jti-1",
        "sub_id": {"format": "opaque", "id": "svc-1"},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}
    })
}

fn kind(f: &Fixture, token: &str) -> &'static str {
    match f.verifier.signal(token.as_bytes(), NOW_S * 1000) {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}

fn with(mut c: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    c[key] = value;
    c
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn a_valid_set_becomes_the_signal() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    let s = f.verifier.signal(token.as_bytes(), NOW_S * 1000).unwrap();
    assert_eq!((s.id.as_str(), s.source.issuer.as_str()), ("jti-1", ISS));
    assert_eq!(s.subject.id().as_deref(), Some("svc-1"));
}

#[test]
fn each_failure_has_its_own_reason() {
    let f = fixture();
    let good = f.signer.sign(&claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    // Tampered payload: the signature no longer covers it.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(claims(), "jti", "jti-evil".into())),
        parts[2]
    );
    assert_eq!(kind(&f, &tampered), "bad_signature");
    // Another key under the same kid.
    let impostor = SetSigner::generate("k1").unwrap();
    assert_eq!(
        kind(&f, &impostor.sign(&claims()).unwrap()),
        "bad_signature"
    );
    // alg none, unsigned.
    let none = serde_json::json!({"alg": "none", "typ": "secevent+jwt"});
    assert_eq!(
        kind(&f, &format!("{}.{}.", b64(&none), parts[1])),
        "unsupported_alg"
    );
    // HS256 keyed with the public JWKS (the classic key-confusion attack).
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("secevent+jwt".into());
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_secret(f.signer.jwks().as_bytes()).unwrap();
    let hs = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    assert_eq!(kind(&f, &hs), "unsupported_alg");
    let wrong_aud = f
        .signer
        .sign(&with(claims(), "aud", "https://someone.else".into()));
    assert_eq!(kind(&f, &wrong_aud.unwrap()), "wrong_audience");
    let stranger = f
        .signer
        .sign(&with(claims(), "iss", "https://attacker.example".into()));
    assert_eq!(kind(&f, &stranger.unwrap()), "unknown_issuer");
    let future = f.signer.sign(&with(claims(), "iat", (NOW_S + 3600).into()));
    assert_eq!(kind(&f, &future.unwrap()), "issued_in_future");
    let unknown_kid = SetSigner::generate("k2").unwrap().sign(&claims()).unwrap();
    assert_eq!(kind(&f, &unknown_kid), "unknown_key");
    let mut no_jti = claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(kind(&f, &f.signer.sign(&no_jti).unwrap()), "malformed_set");
    let with_exp = f.signer.sign(&with(claims(), "exp", (NOW_S + 60).into()));
    assert_eq!(kind(&f, &with_exp.unwrap()), "malformed_set");
    assert_eq!(kind(&f, "not a jws"), "malformed_set");
    assert_eq!(kind(&f, &good), "ok");
}

#[test]
fn a_rotated_key_is_picked_up_on_an_unknown_kid() {
    let f = fixture();
    let rotated = SetSigner::generate("k2").unwrap();
    let token = rotated.sign(&claims()).unwrap();
    assert_eq!(kind(&f, &token), "unknown_key");
    let path = f._dir.path().join("jwks.json");
    std::fs::write(&path, rotated.jwks()).unwrap();
    assert_eq!(kind(&f, &token), "ok", "refreshed on the unknown kid");
}

#[test]
fn a_wrong_typ_is_refused() {
    let f = fixture();
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.typ = Some("JWT".into());
    header.kid = Some("k1".into());
    let good = f.signer.sign(&claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let h = serde_json::to_value(&header).unwrap();
    let token = format!("{}.{}.{}", b64(&h), parts[1], parts[2]);
    assert_eq!(kind(&f, &token), "malformed_set");
}
