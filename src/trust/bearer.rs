//! Bearer tokens on HTTP endpoints (the SSF push receiver, the breakers' reset): kept and
//! compared as SHA-256 digests, in time independent of where they differ, so timing says
//! nothing about a token's prefix and no token is held in the clear.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// A token as it is kept.
pub type TokenHash = [u8; 32];

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The digest of the `Authorization: Bearer <token>` a request presents.
pub fn presented(headers: &HeaderMap) -> Option<TokenHash> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| hash(token))
}

/// Equal digests, compared without an early exit.
pub fn same(a: &TokenHash, b: &TokenHash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_scheme_with_the_same_token_matches() {
        let mut h = HeaderMap::new();
        assert!(presented(&h).is_none());
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(presented(&h).is_none());
        h.insert(header::AUTHORIZATION, "bearer s3cret ".parse().unwrap());
        let p = presented(&h).unwrap();
        assert!(same(&p, &hash("s3cret")) && !same(&p, &hash("s3cre")));
    }
}
