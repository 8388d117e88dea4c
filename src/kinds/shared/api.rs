//! What the `api.*` kinds share: the API's address as this run reads it
//! (`--api-url`, else `API_URL`, else `PORT`), the roots a Node client trusts,
//! request paths checked when the manifest loads, and quoting what the API
//! answered — one line, every secret masked, then truncated.

use super::certificates::Words;
use crate::check::{Ctx, Outcome};
use crate::envctx::Source;
use crate::probe::api::{ApiTarget, NodeRoots};
use crate::probe::tls::{NODE_EXTRA_CA_CERTS, extra_ca_in_file};
use crate::redact::Redactor;

/// The detail of `api.reachable` that says the API did not answer at all (DNS,
/// TCP, TLS or a timeout): what `api.session_create`, which runs after it,
/// reads so that it does not wait out a second deadline against the same silence.
pub const UNREACHABLE: &str = "unreachable";

pub use crate::probe::api::target::NOT_CONFIGURED;

/// The most of an answer's body a message quotes.
const QUOTE_CHARS: usize = 200;

/// What `api.reachable` says around its judgement of the API's certificates.
pub const CERTIFICATE_WORDS: Words = Words {
    unencrypted: "the API is served over plain HTTP: no certificate to check",
    renew: "renew the API's certificate (its load balancer, reverse proxy or hosting platform serves it)",
};

/// The API's address, or the outcome when there is none (`skip`, with how to
/// give one) or it cannot be read (a problem naming the variable).
pub fn target(ctx: &Ctx) -> Result<ApiTarget, Outcome> {
    match ApiTarget::resolve(ctx.api_url.as_deref(), &ctx.lookup()) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => Err(Outcome::skip(NOT_CONFIGURED)),
        Err(f) => Err(Outcome::from_failure(f)),
    }
}

/// The roots an HTTPS request to the API trusts (Node's, `NODE_EXTRA_CA_CERTS`
/// from the process environment), and, when an env file sets
/// `NODE_EXTRA_CA_CERTS`, the words that say it is ignored.
pub fn roots(ctx: &Ctx) -> (NodeRoots, Option<String>) {
    let ignored = match ctx.env.source(NODE_EXTRA_CA_CERTS) {
        Some(Source::File(file)) => Some(extra_ca_in_file(file)),
        _ => None,
    };
    (NodeRoots::from_env(&ctx.lookup()), ignored)
}

/// A request path from a manifest: absolute, and a valid HTTP request target.
pub fn request_path(field: &str, path: &str) -> Result<String, String> {
    let path = path.trim();
    if !path.starts_with('/') || path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
        return Err(format!("`{field}` must be a request path like \"/health\", not {path:?}"));
    }
    Ok(path.to_string())
}

/// What the API's body says, for a message: its JSON `error`, `message` or
/// `details` (as the runbook's routes answer), else its text; one line, with
/// `secrets` masked *before* it is cut to [`QUOTE_CHARS`] characters: a
/// secret cut in two would no longer be recognised by the output stream.
/// `secrets` is the run's whole redactor ([`Ctx::secrets`]) plus the token.
pub fn quote(body: &[u8], secrets: &Redactor) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(|v| v.as_str()).map(str::to_string);
    let text = match (field("error"), field("message"), field("details")) {
        (Some(error), _, Some(details)) if error != details => format!("{error}: {details}"),
        (Some(error), _, _) => error,
        (None, Some(message), _) => message,
        (None, None, Some(details)) => details,
        (None, None, None) => String::from_utf8_lossy(body).into_owned(),
    };
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let masked = secrets.redact(&line).into_owned();
    if masked.is_empty() {
        return "(empty body)".to_string();
    }
    match masked.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}…", &masked[..at]),
        None => masked,
    }
}

/// `12.34`: milliseconds with two decimals.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_apis_words_on_one_line_with_the_token_masked() {
        let mut secrets = Redactor::default();
        secrets.add("eyJhbGciOi.payload.sig");
        let body = br#"{"error":"Failed to create session","details":"token eyJhbGciOi.payload.sig\nrejected"}"#;
        assert_eq!(quote(body, &secrets), "Failed to create session: token **** rejected");
        assert_eq!(quote(b"", &secrets), "(empty body)");
        assert_eq!(quote(b"<html>Bad   Gateway</html>", &secrets), "<html>Bad Gateway</html>");
        let long = "x".repeat(500);
        assert_eq!(quote(long.as_bytes(), &secrets).chars().count(), QUOTE_CHARS + 1);
    }

    /// A secret the cut would halve is masked whole first: nothing of it is left.
    #[test]
    fn a_secret_across_the_cut_is_masked_before_cutting() {
        let secrets = Redactor::from_env([("DB_PASSWORD", "S3ntinelLongPassw0rd")]);
        for before in [QUOTE_CHARS - 19, QUOTE_CHARS - 10, QUOTE_CHARS - 1] {
            let body = format!("{}S3ntinelLongPassw0rd", "x".repeat(before));
            // Masked only afterwards, the cut half would be left: "S3ntinelL…".
            let half = &"S3ntinelLongPassw0rd"[..QUOTE_CHARS - before];
            assert!(quote(body.as_bytes(), &Redactor::default()).contains(half));
            let quoted = quote(body.as_bytes(), &secrets);
            assert!(!quoted.contains('S') && quoted.contains('*'), "{before}: {quoted}");
        }
    }

    #[test]
    fn request_paths_are_checked() {
        assert_eq!(request_path("health_path", " /api/health "), Ok("/api/health".into()));
        for bad in ["health", "/a b", ""] {
            assert!(request_path("health_path", bad).is_err(), "{bad}");
        }
    }
}
