//! The endpoints: `/probe`, `/healthz`, `/report`, `/metrics`. Reports pass
//! through the redactor (a target's through the process's secrets and its own).
//! The two Prometheus expositions do not: they are written from a fixed
//! vocabulary — metric names, target names, check ids, numbers — and masking a
//! word in them (a password `mockmate` would turn `mockmate_up` into `****_up`)
//! breaks the whole scrape.
//!
//! No response repeats anything of the request: a refusal lists what is valid
//! (target names, formats), never what was asked. Echoed through the redactor,
//! a request would be an oracle: a guess that comes back as `****` is a secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::auth::Auth;
use super::metrics::{Endpoint, ErrorKind, Metrics, Served};
use super::runner::{Done, Late, Runner};
use crate::format;
use crate::output::Body;
use crate::report::Status;

/// Prometheus's header naming how long it waits for a scrape.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";
/// What a run leaves of the scrape's timeout to answer in.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// The shortest scrape timeout served: shorter ones are refused (400) without a
/// run, so a client cannot trigger runs that no honest scrape could use.
pub const MIN_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a request waits for results, and its deadline when it names no
/// scrape timeout (a kubelet, curl): a header is no reason to hold a run open for hours.
pub const MAX_BUDGET: Duration = Duration::from_secs(120);
/// Every request is answered within this, whatever happens to the run it waits for.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(125);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

pub struct App {
    pub runners: BTreeMap<String, Arc<Runner>>,
    pub metrics: Arc<Metrics>,
    /// Where answers that belong to no target leave (the process's secrets).
    pub body: Body,
}

/// The endpoints behind the login (when there is one), each request under
/// [`REQUEST_DEADLINE`], every response with `X-Content-Type-Options: nosniff`
/// and the web configuration's headers.
pub fn router(app: Arc<App>, auth: Option<Arc<Auth>>, headers: &[(HeaderName, HeaderValue)]) -> Router {
    let mut router = Router::new()
        .route("/probe", get(probe))
        .route("/healthz", get(healthz))
        .route("/report", get(report))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app.clone());
    if let Some(auth) = auth {
        router = router.layer(axum::middleware::from_fn_with_state((auth, app.metrics.clone()), super::auth::require));
    }
    router = router.layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_DEADLINE));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::overriding(name.clone(), value.clone()));
    }
    router.layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
}

fn text_response(sink: &Body, status: StatusCode, content_type: &'static str, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], sink.text(body)).into_response()
}

/// A request `serve` cannot answer, in words that repeat nothing of it.
struct Refused {
    status: StatusCode,
    text: String,
}

/// The query's parameters `serve` reads (the first of each; others are ignored).
#[derive(Default)]
struct Params {
    target: Option<String>,
    format: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Params {
        let mut params = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match key.as_ref() {
                "target" => &mut params.target,
                "format" => &mut params.format,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        params
    }
}

/// What a request for a target's results got.
enum Results {
    Run(Arc<Done>),
    Late,
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

    fn known(&self) -> String {
        self.runners.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }

    /// The runner `?target=` names (the only target when there is one and none is named).
    fn runner(&self, target: Option<&str>) -> Result<(&str, &Arc<Runner>), Refused> {
        let found = match target {
            Some(name) => self.runners.get_key_value(name),
            None if self.runners.len() == 1 => self.runners.iter().next(),
            None => None,
        };
        found.map(|(name, runner)| (name.as_str(), runner)).ok_or_else(|| {
            let (kind, status, text) = match target {
                Some(_) => (
                    ErrorKind::UnknownTarget,
                    StatusCode::NOT_FOUND,
                    format!("unknown target; targets: {}\n", self.known()),
                ),
                None => (
                    ErrorKind::BadRequest,
                    StatusCode::BAD_REQUEST,
                    format!("name a target: ?target=NAME, one of {}\n", self.known()),
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
    ) -> Result<(String, Arc<Runner>, Results), Refused> {
        let (name, runner) = self.runner(params.target.as_deref())?;
        let budget = budget(headers).inspect_err(|_| self.metrics.error(ErrorKind::BadRequest))?;
        let runner = runner.clone();
        let results = match runner.results(Instant::now() + budget).await {
            Ok((done, served)) => {
                self.metrics.scraped(name, endpoint, served);
                if served != Served::Cached && !done.completed() {
                    self.metrics.error(ErrorKind::RunIncomplete);
                }
                Results::Run(done)
            }
            Err(Late) => {
                self.metrics.scraped(name, endpoint, Served::Late);
                Results::Late
            }
        };
        Ok((name.to_string(), runner, results))
    }
}

/// How long a request may wait for results: the scrape's timeout less a margin
/// to answer in ([`MAX_BUDGET`] without one); a timeout below
/// [`MIN_SCRAPE_TIMEOUT`] is refused.
fn budget(headers: &HeaderMap) -> Result<Duration, Refused> {
    let Some(value) = headers.get(SCRAPE_TIMEOUT_HEADER) else { return Ok(MAX_BUDGET) };
    let timeout = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| Refused {
            status: StatusCode::BAD_REQUEST,
            text: "X-Prometheus-Scrape-Timeout-Seconds: expected a number of seconds\n".to_string(),
        })?;
    if timeout < MIN_SCRAPE_TIMEOUT {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            text: format!(
                "X-Prometheus-Scrape-Timeout-Seconds: below serve's minimum of {}s (it answers {}ms before the \
                 scrape's timeout): raise scrape_timeout\n",
                MIN_SCRAPE_TIMEOUT.as_secs(),
                ANSWER_MARGIN.as_millis()
            ),
        });
    }
    Ok(timeout.saturating_sub(ANSWER_MARGIN).min(MAX_BUDGET))
}

async fn probe(State(app): State<Arc<App>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let params = Params::parse(query.as_deref());
    let (name, _, results) = match app.results(&params, &headers, Endpoint::Probe).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    let Results::Run(done) = results else { return app.expose(format::prometheus::format(&name, None)) };
    let finished_unix = done.finished.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let run = done
        .report
        .as_ref()
        .filter(|_| done.completed())
        .map(|report| format::prometheus::Run { report, finished_unix });
    app.expose(format::prometheus::format(&name, run))
}

/// The JSON report, or a JSON document saying why there is none.
fn json(results: &Results) -> String {
    match results {
        Results::Run(done) => match &done.report {
            Some(report) => format::json::format(report),
            None => "{\"tool\":\"mockmate-diag\",\"error\":\"the run could not take place\"}\n".to_string(),
        },
        Results::Late => {
            "{\"tool\":\"mockmate-diag\",\"error\":\"no run finished within this request's deadline\"}\n".to_string()
        }
    }
}

async fn healthz(State(app): State<Arc<App>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let params = Params::parse(query.as_deref());
    let (_, runner, results) = match app.results(&params, &headers, Endpoint::Healthz).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    let healthy = matches!(&results, Results::Run(done) if done.completed()
        && done.report.as_ref().is_some_and(|r| r.checks.iter().all(|c| c.status < Status::Fail)));
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    app.respond_for(&runner, status, JSON, &json(&results))
}

async fn report(State(app): State<Arc<App>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let params = Params::parse(query.as_deref());
    let markdown = match params.format.as_deref() {
        None | Some("json") => false,
        Some("markdown") => true,
        Some(_) => {
            app.metrics.error(ErrorKind::BadRequest);
            return app.refuse(Refused {
                status: StatusCode::BAD_REQUEST,
                text: "unknown format; formats: json, markdown\n".to_string(),
            });
        }
    };
    let (_, runner, results) = match app.results(&params, &headers, Endpoint::Report).await {
        Ok(found) => found,
        Err(refused) => return app.refuse(refused),
    };
    match (&results, markdown) {
        (Results::Run(done), true) if done.report.is_some() => {
            let report = done.report.as_ref().map(format::markdown::format).unwrap_or_default();
            app.respond_for(&runner, StatusCode::OK, MARKDOWN, &report)
        }
        (Results::Run(done), _) if done.report.is_some() => {
            app.respond_for(&runner, StatusCode::OK, JSON, &json(&results))
        }
        _ => app.respond_for(&runner, StatusCode::SERVICE_UNAVAILABLE, JSON, &json(&results)),
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

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_budget_is_the_scrape_timeout_less_half_a_second() {
        assert_eq!(budget(&HeaderMap::new()).ok(), Some(MAX_BUDGET));
        assert_eq!(budget(&with("10")).ok(), Some(Duration::from_millis(9500)));
        assert_eq!(budget(&with("1")).ok(), Some(Duration::from_millis(500)));
        assert_eq!(budget(&with("1e19")).ok(), Some(MAX_BUDGET));
    }

    #[test]
    fn a_scrape_timeout_below_the_minimum_or_not_a_number_is_refused_without_repeating_it() {
        for value in ["0.05", "0.999", "soon", "-1", "NaN"] {
            let refused = budget(&with(value)).err().unwrap_or_else(|| panic!("{value} accepted"));
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert!(!refused.text.contains(value), "{}", refused.text);
        }
    }

    #[test]
    fn the_first_of_each_parameter_counts_and_others_are_ignored() {
        let p = Params::parse(Some("format=markdown&target=prod%20uction&target=staging&x=1"));
        assert_eq!((p.target.as_deref(), p.format.as_deref()), (Some("prod uction"), Some("markdown")));
        let p = Params::parse(None);
        assert_eq!((p.target, p.format), (None, None));
    }
}
