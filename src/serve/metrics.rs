//! `/metrics`: the exporter's own metrics (prometheus-client), so that the cost
//! of watching is watched too: scrapes, runs, cache hits, scrapes that shared a
//! run, requests no run could answer in time, errors, HTTP connections open
//! and closed to make room. Labels come from fixed sets only: target
//! names, endpoint names, error kinds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::report::{COMMIT, VERSION};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScrapeLabels {
    target: String,
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// Which endpoint served a request for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Probe,
    Healthz,
    Report,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Probe => "probe",
            Endpoint::Healthz => "healthz",
            Endpoint::Report => "report",
        }
    }
}

/// What went wrong, by kind (never by message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `?target=` named no target.
    UnknownTarget,
    /// A request `serve` cannot answer (an unknown format, a missing target).
    BadRequest,
    /// A run that did not complete (interrupted by shutdown, or its thread failed).
    RunIncomplete,
    /// A request without the login the web configuration asks for.
    Unauthorized,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownTarget => "unknown_target",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::RunIncomplete => "run_incomplete",
            ErrorKind::Unauthorized => "unauthorized",
        }
    }
}

/// How a request for a target's results was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From the cache: no check ran.
    Cached,
    /// By a run this request started.
    Ran,
    /// By a run another request had started (single flight).
    Joined,
    /// By none: no run it could take finished before its deadline.
    Late,
}

pub struct Metrics {
    registry: Registry,
    scrapes: Family<ScrapeLabels, Counter>,
    runs: Family<TargetLabels, Counter>,
    cache_hits: Family<TargetLabels, Counter>,
    joined: Family<TargetLabels, Counter>,
    late: Family<TargetLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    connections: Gauge,
    shed: Counter,
}

impl Metrics {
    /// The metrics, with a zero for every target so that rates start at the first scrape.
    pub fn new<'a>(targets: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "mockmate_build",
            "The build serving: version and commit (as --version names them)",
            Info::new([("version", VERSION), ("commit", COMMIT)]),
        );
        let (scrapes, runs, cache_hits, joined, late, errors) = Default::default();
        let (connections, shed) = Default::default();
        let metrics = Metrics {
            registry: Registry::default(),
            scrapes,
            runs,
            cache_hits,
            joined,
            late,
            errors,
            connections,
            shed,
        };
        registry.register("mockmate_scrapes", "Requests for a target's results, by endpoint", metrics.scrapes.clone());
        registry.register("mockmate_runs", "Runs of a target's checks", metrics.runs.clone());
        registry.register(
            "mockmate_cache_hits",
            "Requests answered from the cache (within --cache of the last run)",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "mockmate_shared_runs",
            "Requests that waited for a run another request had started (single flight)",
            metrics.joined.clone(),
        );
        registry.register(
            "mockmate_late_answers",
            "Requests answered without results (mockmate_up 0, 503): no run they could take finished before their deadline",
            metrics.late.clone(),
        );
        registry.register("mockmate_errors", "Requests or runs that went wrong, by kind", metrics.errors.clone());
        registry.register(
            "mockmate_http_connections",
            "HTTP connections open now (capped: when full, the one idle longest is closed to make room)",
            metrics.connections.clone(),
        );
        registry.register(
            "mockmate_http_connections_shed",
            "Idle HTTP connections closed to make room for a new one",
            metrics.shed.clone(),
        );
        for target in targets {
            let labels = TargetLabels { target: target.to_string() };
            let _ = metrics.runs.get_or_create(&labels);
            let _ = metrics.cache_hits.get_or_create(&labels);
            let _ = metrics.joined.get_or_create(&labels);
            let _ = metrics.late.get_or_create(&labels);
        }
        for kind in [ErrorKind::UnknownTarget, ErrorKind::BadRequest, ErrorKind::RunIncomplete, ErrorKind::Unauthorized]
        {
            let _ = metrics.errors.get_or_create(&ErrorLabels { kind: kind.as_str() });
        }
        // The families are shared (Arc): the registry encodes what the handlers count.
        Metrics { registry, ..metrics }
    }

    /// A request for `target`'s results on `endpoint`, and how it was served.
    pub fn scraped(&self, target: &str, endpoint: Endpoint, served: Served) {
        let scrape = ScrapeLabels { target: target.to_string(), endpoint: endpoint.as_str() };
        self.scrapes.get_or_create(&scrape).inc();
        let labels = TargetLabels { target: target.to_string() };
        match served {
            Served::Cached => self.cache_hits.get_or_create(&labels).inc(),
            Served::Ran => self.runs.get_or_create(&labels).inc(),
            Served::Joined => self.joined.get_or_create(&labels).inc(),
            Served::Late => self.late.get_or_create(&labels).inc(),
        };
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.as_str() }).inc();
    }

    /// The gauge of open HTTP connections (the listener moves it).
    pub fn connections(&self) -> Gauge {
        self.connections.clone()
    }

    /// The count of idle connections closed to make room (the listener moves it).
    pub fn shed(&self) -> Counter {
        self.shed.clone()
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_and_counters_by_target() {
        let metrics = Metrics::new(["production", "staging"]);
        metrics.scraped("production", Endpoint::Probe, Served::Ran);
        metrics.scraped("production", Endpoint::Probe, Served::Cached);
        metrics.scraped("production", Endpoint::Healthz, Served::Joined);
        metrics.error(ErrorKind::UnknownTarget);
        let text = metrics.encode();
        for line in [
            format!("mockmate_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"),
            "mockmate_scrapes_total{target=\"production\",endpoint=\"probe\"} 2".into(),
            "mockmate_scrapes_total{target=\"production\",endpoint=\"healthz\"} 1".into(),
            "mockmate_runs_total{target=\"production\"} 1".into(),
            "mockmate_runs_total{target=\"staging\"} 0".into(),
            "mockmate_cache_hits_total{target=\"production\"} 1".into(),
            "mockmate_shared_runs_total{target=\"production\"} 1".into(),
            "mockmate_errors_total{kind=\"unknown_target\"} 1".into(),
            "mockmate_errors_total{kind=\"run_incomplete\"} 0".into(),
            "mockmate_late_answers_total{target=\"staging\"} 0".into(),
            "mockmate_errors_total{kind=\"unauthorized\"} 0".into(),
            "mockmate_http_connections 0".into(),
            "mockmate_http_connections_shed_total 0".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
