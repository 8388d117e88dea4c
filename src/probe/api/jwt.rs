//! The bearer token for the API's JWT middleware: HS256, signed with the
//! environment's `JWT_SECRET`, short-lived. What `jsonwebtoken.verify(token,
//! process.env.JWT_SECRET)` accepts: a header `{"alg":"HS256","typ":"JWT"}`,
//! base64url without padding, the HMAC-SHA-256 of `header.payload` keyed with
//! the secret's UTF-8 bytes.
//!
//! The token is a credential: it never reaches a message or a detail. Whatever
//! the API answers is quoted only after it has been masked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::{Map, Value};

/// How long a minted token is valid: long enough for one request, short
/// enough to be worthless if it ever leaked.
pub const LIFETIME_SECS: u64 = 60;

/// A signed JWT. Its `Debug` never shows it.
pub struct Token(String);

impl Token {
    /// The `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// The token itself, for the caller's redactor (never for a message).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(****)")
    }
}

/// A token given as is (`MOCKMATE_API_TOKEN`).
pub fn given(token: &str) -> Token {
    Token(token.trim().to_string())
}

/// An HS256 token carrying `claims`, plus `iat` (`now`) and `exp` (`now` + [`LIFETIME_SECS`]).
pub fn sign(secret: &str, claims: &Map<String, Value>, now: u64) -> Token {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut payload = claims.clone();
    payload.insert("iat".into(), now.into());
    payload.insert("exp".into(), (now + LIFETIME_SECS).into());
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string());
    let signing_input = format!("{header}.{payload}");
    // ring, as serve's auth: HMAC takes a key of any length (RFC 2104), as jsonwebtoken does.
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&key, signing_input.as_bytes()));
    Token(format!("{signing_input}.{signature}"))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token of a known input, computed independently (Python's hmac and
    /// base64 modules) and accepted by jsonwebtoken 9's `verify` (tests/node);
    /// the integration tests send minted tokens to a real Express middleware.
    #[test]
    fn signs_as_jsonwebtoken_verifies() {
        let mut claims = Map::new();
        claims.insert("id".into(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into());
        let token = sign("s3cret-for-the-test", &claims, 1_700_000_000);
        assert_eq!(
            token.expose(),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJleHAiOjE3MDAwMDAwNjAsImlhdCI6MTcwMDAwMDAwMCwiaWQiOiIzZjI1MDRlMC00Zjg5LTExZDMtOWEwYy0wMzA1ZTgyYzMzMDEifQ.\
             4yFW74FJ3oJvEiHx7tj3Iu2_AzluvMjvZIbwtn1TQRs"
        );
        let parts: Vec<&str> = token.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url")).expect("JSON");
        assert_eq!(payload["exp"], 1_700_000_060);
        assert_eq!(payload["iat"], 1_700_000_000);
        assert_eq!(payload["id"], "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(format!("{token:?}"), "Token(****)");
    }
}
