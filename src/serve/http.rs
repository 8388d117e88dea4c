//! The endpoints: `/probe`, `/healthz`, `/report`, `/metrics`. Reports and
//! refusals pass through the redactor (a target's through the process's secrets
//! and its own). The two Prometheus expositions do not: they are written from a
//! fixed vocabulary — metric names, target names, check ids, numbers — and
//! masking a word in them (a password `mockmate` would turn `mockmate_up` into
//! `****_up`) breaks the whole scrape.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::metrics::{Endpoint, ErrorKind, Metrics, Served};
use super::runner::{Done, Runner};
use crate::format;
use crate::output::Body;
use crate::report::Status;

/// Prometheus's header naming how long it waits for a scrape.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";
/// What a run leaves of the scrape's timeout to answer in.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// The least a run gets, however short the scrape's timeout.
const MIN_BUDGET: Duration = Duration::from_millis(100);
/// The most, however long: a header is no reason to hold a run open for hours.
const MAX_BUDGET: Duration = Duration::from_secs(300);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

pub struct App {
    pub runners: BTreeMap<String, Arc<Runner>>,
    pub metrics: Arc<Metrics>,
    /// Where answers that belong to no target leave (the process's secrets).
    pub body: Body,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/probe", get(probe))
        .route("/healthz", get(healthz))
        .route("/report", get(report))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app)
}

fn text_response(sink: &Body, status: StatusCode, content_type: &'static str, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], sink.text(body)).into_response()
}

/// A request that names no target `serve` has.
struct Refused {
    status: StatusCode,
    text: String,
}

#[derive(Deserialize)]
struct Params {
    target: Option<String>,
    format: Option<String>,
}

impl App {
    /// A body, redacted, with its content type.
    fn respond(&self, status: StatusCode, content_type: &'static str, body: &str) -> Response {
        text_response(&self.body, status, content_type, body)
    }

    /// A body written from names and numbers only (see the module comment).
    fn expose(&self, body: String) -> Response {
        (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(format::prometheus::CONTENT_TYPE))], body)
            .into_response()
    }

    /// A target's report, redacted with its own secrets too.
    fn respond_for(&self, runner: &Runner, status: StatusCode, content_type: &'static str, body: &str) -> Response {
        text_response(runner.body(), status, content_type, body)
    }

    /// A refusal, as plain text.
    fn refuse(&self, refused: Refused) -> Response {
        self.respond(refused.status, TEXT, &refused.text)
    }

    /// The runner `?target=` names (the only target when there is one and none is named).
    fn runner(&self, target: Option<&str>) -> Result<(&str, &Arc<Runner>), Refused> {
        let found = match target {
            Some(name) => self.runners.get_key_value(name),
            None if self.runners.len() == 1 => self.runners.iter().next(),
            None => None,
        };
        found.map(|(name, runner)| (name.as_str(), runner)).ok_or_else(|| {
            let known: Vec<&str> = self.runners.keys().map(String::as_str).collect();
            let (kind, status, text) = match target {
                Some(name) => (
                    ErrorKind::UnknownTarget,
                    StatusCode::NOT_FOUND,
                    format!("unknown target `{name}`; targets: {}\n", known.join(", ")),
                ),
                None => (
                    ErrorKind::BadRequest,
                    StatusCode::BAD_REQUEST,
                    format!("name a target: ?target=NAME, one of {}\n", known.join(", ")),
                ),
            };
            self.metrics.error(kind);
            Refused { status, text }
        })
    }

    /// The target's results, counted.
    async fn results(
        &self,
        params: &Params,
        headers: &HeaderMap,
        endpoint: Endpoint,
    ) -> Result<(String, Arc<Runner>, Arc<Done>), Refused> {
        let (name, runner) = self.runner(params.target.as_deref())?;
        let runner = runner.clone();
        let (done, served) = runner.results(budget(headers)).await;
        self.metrics.scraped(name, endpoint, served);
        if served != Served::Cached && !done.completed() {
            self.metrics.error(ErrorKind::RunIncomplete);
        }
        Ok((name.to_string(), runner, done))
    }
}

/// The run's deadline from Prometheus's scrape timeout, less a margin to answer in.
fn budget(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(SCRAPE_TIMEOUT_HEADER)?.to_str().ok()?.trim().parse().ok()?;
    let timeout = Duration::try_from_secs_f64(seconds).ok()?;
    Some(timeout.saturating_sub(ANSWER_MARGIN).clamp(MIN_BUDGET, MAX_BUDGET))
}

async fn probe(State(app): State<Arc<App>>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let (name, _, done) = match app.results(&params, &headers, Endpoint::Probe).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    let finished_unix = done.finished.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let run = done
        .report
        .as_ref()
        .filter(|_| done.completed())
        .map(|report| format::prometheus::Run { report, finished_unix });
    app.expose(format::prometheus::format(&name, run))
}

/// The JSON report, or a JSON document saying there is none.
fn json(done: &Done) -> String {
    match &done.report {
        Some(report) => format::json::format(report),
        None => "{\"tool\":\"mockmate-diag\",\"error\":\"the run could not take place\"}\n".to_string(),
    }
}

async fn healthz(State(app): State<Arc<App>>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let (_, runner, done) = match app.results(&params, &headers, Endpoint::Healthz).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    let healthy =
        done.completed() && done.report.as_ref().is_some_and(|r| r.checks.iter().all(|c| c.status < Status::Fail));
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    app.respond_for(&runner, status, JSON, &json(&done))
}

async fn report(State(app): State<Arc<App>>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let markdown = match params.format.as_deref() {
        None | Some("json") => false,
        Some("markdown") => true,
        Some(other) => {
            app.metrics.error(ErrorKind::BadRequest);
            let text = format!("unknown format `{other}`; use format=json or format=markdown\n");
            return app.respond(StatusCode::BAD_REQUEST, TEXT, &text);
        }
    };
    let (_, runner, done) = match app.results(&params, &headers, Endpoint::Report).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    match (&done.report, markdown) {
        (Some(report), true) => app.respond_for(&runner, StatusCode::OK, MARKDOWN, &format::markdown::format(report)),
        (_, _) => app.respond_for(
            &runner,
            if done.report.is_some() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
            JSON,
            &json(&done),
        ),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.expose(app.metrics.encode())
}

async fn not_found(State(app): State<Arc<App>>) -> Response {
    app.respond(
        StatusCode::NOT_FOUND,
        TEXT,
        "not found; endpoints: /probe, /healthz, /report, /metrics (each ?target=NAME)\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_scrape_timeout_less_half_a_second() {
        let mut headers = HeaderMap::new();
        assert_eq!(budget(&headers), None);
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("10"));
        assert_eq!(budget(&headers), Some(Duration::from_millis(9500)));
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("0.2"));
        assert_eq!(budget(&headers), Some(MIN_BUDGET));
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("1e19"));
        assert_eq!(budget(&headers), Some(MAX_BUDGET));
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("soon"));
        assert_eq!(budget(&headers), None);
    }
}
