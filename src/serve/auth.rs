//! Basic auth for every endpoint, with the web configuration's bcrypt users.
//!
//! bcrypt is slow on purpose (~70 ms at cost 10), so a login verified once is
//! remembered — as a keyed hash of user and password (the key is random per
//! process, nothing that could be replayed) — and every later scrape with it
//! is answered without bcrypt. Logins that fail are verified every time, one
//! at a time: a flood of guesses costs one core, and never delays a scrape
//! whose login is remembered. An unknown user costs a bcrypt too (against a
//! configured hash), so timing does not tell which users exist; bcrypt compares
//! in constant time.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ring::hmac;
use tokio::sync::Semaphore;

use super::metrics::{ErrorKind, Metrics};

/// Logins remembered at most (the set is emptied when full: a few users scrape).
const REMEMBERED: usize = 256;

pub struct Auth {
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    /// What an unknown user's password is checked against: a configured hash, same cost.
    decoy: String,
    key: hmac::Key,
    verified: Mutex<HashSet<Vec<u8>>>,
    /// One bcrypt at a time.
    bcrypt: Semaphore,
}

impl Auth {
    /// `None` without users: no login asked.
    pub fn new(users: BTreeMap<String, String>) -> Option<Auth> {
        let decoy = users.values().next()?.clone();
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()?;
        Some(Auth { users, decoy, key, verified: Mutex::default(), bcrypt: Semaphore::new(1) })
    }

    fn tag(&self, user: &str, password: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `headers` carry the login of a configured user.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else { return false };
        let tag = self.tag(&user, &password);
        if self.verified.lock().unwrap_or_else(PoisonError::into_inner).contains(&tag) {
            return true;
        }
        let known = self.users.contains_key(&user);
        let hash = self.users.get(&user).unwrap_or(&self.decoy).clone();
        let Ok(_one) = self.bcrypt.acquire().await else { return false };
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        let allowed = matches && known;
        if allowed {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(tag);
        }
        allowed
    }
}

/// `Authorization: Basic base64(user:password)`.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware: the request goes on with a valid login, else 401.
pub async fn require(
    State((auth, metrics)): State<(Arc<Auth>, Arc<Metrics>)>,
    request: Request,
    next: Next,
) -> Response {
    if auth.allows(request.headers()).await {
        return next.run(request).await;
    }
    metrics.error(ErrorKind::Unauthorized);
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mockmate-diag\", charset=\"UTF-8\"")),
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
        ],
        "unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"));
        headers
    }

    #[tokio::test]
    async fn a_configured_user_with_the_right_password_only() {
        let hash = bcrypt::hash("right", 4).expect("hash");
        let auth = Auth::new(BTreeMap::from([("prometheus".to_string(), hash)])).expect("users");
        assert!(auth.allows(&basic("prometheus", "right")).await);
        // Remembered, and still only for that pair.
        assert!(auth.allows(&basic("prometheus", "right")).await);
        assert!(!auth.allows(&basic("prometheus", "wrong")).await);
        assert!(!auth.allows(&basic("grafana", "right")).await);
        assert!(!auth.allows(&basic("prometheus", "")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(!auth.allows(&bearer).await);
        assert_eq!(auth.verified.lock().expect("lock").len(), 1);
    }

    #[test]
    fn no_users_no_login() {
        assert!(Auth::new(BTreeMap::new()).is_none());
    }
}
