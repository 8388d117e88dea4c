//! `api.reachable`: the running MockMate API answers its health route — the
//! question every other check only predicts. Read-only (one `GET`), so it runs
//! in `serve` too.
//!
//! Every phase runs under `--timeout` and a hang names it: DNS, TCP, the TLS
//! handshake (verified as a Node client verifies it: Mozilla's roots and
//! `NODE_EXTRA_CA_CERTS`, by the probe's one verifier), then the answer. The
//! pass reports the API's latency and version header; an HTTPS API's
//! certificate chain is judged for expiry as PostgreSQL's and Redis's are.
//!
//! It owns one cause: the API cannot be reached (DNS, TCP, TLS, no answer in
//! time; `Premise::Reachable(Service::Api)`). A 404 health route, a 401 or a
//! certificate about to expire are its own findings, not that cause: a check
//! that only needs the API to answer (`api.session_create`) still runs.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::shared::api::{CERTIFICATE_WORDS, UNREACHABLE, ms, quote, request_path, roots, target};
use super::shared::certificates::{judge, now};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service, Verdict, params};
use crate::probe::api::{Answer, ApiTarget, Exchange, send};
use crate::redact::Redactor;

pub static KIND: KindDef = KindDef {
    name: "api.reachable",
    title: "The API answers",
    description: "asks the running API (--api-url, API_URL, or PORT on this machine) for its health route (health_path, /health): DNS, TCP, TLS as Node verifies it and HTTP under the deadline, naming the phase that hangs; latency, version header, certificate expiry",
    build: |t| {
        let p: Params = params(t)?;
        let health_path = request_path("health_path", &p.health_path)?;
        let warn_within = super::shared::postgres::duration("warn_within", &p.warn_within)?;
        let version_headers = match p.version_header {
            Some(h) if hyper::header::HeaderName::from_bytes(h.trim().as_bytes()).is_ok() => {
                vec![h.trim().to_ascii_lowercase()]
            }
            Some(h) => return Err(format!("`version_header`: {h:?} is not an HTTP header name").into()),
            None => VERSION_HEADERS.iter().map(|h| h.to_string()).collect(),
        };
        Ok(Box::new(Reachable { health_path, warn_within, version_headers }))
    },
};

/// Where APIs commonly say their version, when the manifest names none.
const VERSION_HEADERS: &[&str] = &["x-api-version", "x-app-version", "api-version", "x-version"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    health_path: String,
    version_header: Option<String>,
    warn_within: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { health_path: "/health".into(), version_header: None, warn_within: "14d".into() }
    }
}

struct Reachable {
    health_path: String,
    warn_within: Duration,
    version_headers: Vec<String>,
}

impl Check for Reachable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let target = match target(ctx) {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            let (roots, ignored) = roots(ctx);
            let exchange = Exchange {
                method: hyper::Method::GET,
                path: target.path(&self.health_path),
                headers: vec![("accept", "application/json".into())],
                body: None,
            };
            let outcome = match send(&target, &roots, &exchange, ctx.timeout).await {
                Ok(answer) => self.judge(&target, &exchange, &answer, &ctx.secrets()),
                // One cause, one finding: the checks that need the API to answer see this one.
                Err(no) if no.unreachable => Outcome::from_failure(no.failure)
                    .reports(Premise::Reachable(Service::Api))
                    .detail(UNREACHABLE, true),
                Err(no) => Outcome::from_failure(no.failure),
            };
            let outcome = outcome.detail("url", target.url(&self.health_path)).detail("source", target.source.label());
            if !target.tls {
                return outcome;
            }
            let outcome = outcome.detail("roots", roots.describe());
            match ignored {
                Some(note) => outcome.detail("note", note),
                None => outcome,
            }
        }
        .boxed()
    }
}

impl Reachable {
    fn judge(&self, target: &ApiTarget, exchange: &Exchange, answer: &Answer, secrets: &Redactor) -> Outcome {
        let status = answer.status;
        let reason = hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let said = format!("{status} {reason}").trim_end().to_string();
        let latency = ms(answer.timings.answer);
        let version = self.version_headers.iter().find_map(|h| answer.header(h).map(|v| (h.clone(), v.to_string())));
        let mut extras = Vec::new();
        if let Some((_, v)) = &version {
            extras.push(format!("version {v}"));
        }
        if let Some(tls) = &answer.tls_version {
            extras.push(tls.clone());
        }
        let extras = if extras.is_empty() { String::new() } else { format!(" ({})", extras.join(", ")) };
        let line = exchange.line();
        let base = &target.base;
        // The health route's body, if it says why it is unhealthy: this request
        // carries no credential, but the API may quote its own configuration.
        let body = || quote(&answer.body, secrets);
        let outcome = match status {
            200..=299 => Outcome::pass(format!("the API at {base} answers {line} with {said} in {latency}ms{extras}")),
            404 => Outcome::warn(format!(
                "the API at {base} answers, but {line} is {said}: it has no health route there{extras}"
            ))
            .hint(
                "give api.reachable the API's health route (health_path, see checks/README.md), or add GET /health \
                 to the API (a route that answers 200 without a token)",
            ),
            401 | 403 => Outcome::warn(format!("the API at {base} answers, but {line} wants a token ({said}){extras}"))
                .hint("point health_path at a route that answers without authentication (a load balancer's health check needs one too)"),
            300..=399 => {
                let to = answer.header("location").unwrap_or("?").to_string();
                Outcome::warn(format!("the API at {base} redirects {line} ({said}) to {to}"))
                    .hint(format!("point {} at the address it redirects to", target.source.label()))
                    .detail("location", to)
            }
            500..=599 => Outcome::problem(format!(
                "the API at {base} is up but answers {line} with {said}: {}",
                body()
            ))
            .hint("the API reports itself unhealthy (a dependency it checks is down, or it failed to start cleanly): check its log"),
            _ => Outcome::warn(format!("the API at {base} answers {line} with {said}: {}", body()))
                .hint("point health_path at the API's health route"),
        };
        let outcome = outcome
            .detail("status", status)
            .detail("latency_ms", latency)
            .detail("dns_ms", ms(answer.timings.resolve))
            .detail("connect_ms", ms(answer.timings.connect))
            .detail("tls_ms", answer.timings.tls.map(ms))
            .detail("total_ms", ms(answer.timings.total))
            .detail("tls", answer.tls_version.clone())
            .detail("version", version.as_ref().map(|(_, v)| v.clone()))
            .detail("version_header", version.map(|(h, _)| h))
            .detail("server", answer.header("x-powered-by").or_else(|| answer.header("server")).map(str::to_string));
        if !target.tls || outcome.verdict != Verdict::Pass {
            return outcome;
        }
        // An HTTPS API that answers: its chain's lifetimes, judged as the other services' are.
        let certs = judge(&answer.certificates, true, now(), self.warn_within, &CERTIFICATE_WORDS);
        let mut merged = match certs.verdict {
            Verdict::Pass => outcome,
            _ => {
                let mut o = Outcome { message: format!("{}; but {}", outcome.message, certs.message), ..outcome };
                o.verdict = certs.verdict;
                o.hint = certs.hint.clone();
                o
            }
        };
        for (k, v) in certs.details {
            merged.details.insert(k, v);
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn nothing_configured_is_a_skip_that_says_how_to_enable_it() {
        let r = run_kind(&super::KIND, "", &[], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Skip, super::super::shared::api::NOT_CONFIGURED));
    }

    #[tokio::test]
    async fn a_malformed_api_url_fails_naming_it() {
        let r = run_kind(&super::KIND, "", &[("API_URL", "backend:3000")], "production").await;
        assert_eq!(r.status, Status::Fail);
        assert!(r.message.starts_with("API_URL is not the API's address"), "{}", r.message);
    }

    #[test]
    fn parameters_are_checked_when_the_manifest_loads() {
        for (params, field) in [
            ("health_path = \"health\"", "health_path"),
            ("warn_within = \"soon\"", "warn_within"),
            ("version_header = \"x version\"", "version_header"),
            ("helth_path = \"/x\"", "helth_path"),
        ] {
            let table: toml::Table = params.parse().expect("TOML");
            let err = (super::KIND.build)(table).err().map(|e| e.0).unwrap_or_default();
            assert!(err.contains(field), "{params}: {err}");
        }
    }
}
