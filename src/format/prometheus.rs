//! `serve`'s `/probe`: one target's last run as Prometheus metrics (OpenMetrics
//! text, encoded by prometheus-client), in the report's check order.
//!
//! Labels come only from fixed sets — the target's name (the operator's own
//! configuration) and check ids (the manifests') — never a message, an error or
//! anything else that could hold a secret or grow without bound.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::report::{Report, Status};

/// The content type of [`format`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `mockmate_check_status`: 0 pass, 1 warn, 2 fail, 3 skip (alert on `== 2`: a skip is 3).
pub fn status_value(status: Status) -> i64 {
    match status {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
        Status::Skip => 3,
    }
}

/// A run that completed, as `/probe` shows it.
pub struct Run<'a> {
    pub report: &'a Report,
    /// When the run finished, in seconds since the Unix epoch.
    pub finished_unix: f64,
}

/// The exposition of `target`: `mockmate_up` 1 and the checks of `run`, or
/// `mockmate_up` 0 alone when no run completed (interrupted, or it could not start).
pub fn format(target: &str, run: Option<Run<'_>>) -> String {
    let metrics = ProbeMetrics {
        target: target.to_string(),
        run: run.map(|r| RunMetrics {
            checks: r
                .report
                .checks
                .iter()
                .map(|c| (c.id.clone(), status_value(c.status), c.duration_ms as f64 / 1000.0))
                .collect(),
            seconds: r.report.duration_ms as f64 / 1000.0,
            finished_unix: r.finished_unix,
        }),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

#[derive(Debug)]
struct ProbeMetrics {
    target: String,
    run: Option<RunMetrics>,
}

#[derive(Debug)]
struct RunMetrics {
    /// (check id, status value, seconds), in report order.
    checks: Vec<(String, i64, f64)>,
    seconds: f64,
    finished_unix: f64,
}

/// One gauge family, every sample of it.
fn gauge<S: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (S, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

impl Collector for ProbeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let target = self.target.as_str();
        let up = i64::from(self.run.is_some());
        gauge(
            &mut encoder,
            "mockmate_up",
            "1 when the run completed (even with failing checks).",
            None,
            [([("target", target)], up)],
        )?;
        let Some(run) = &self.run else { return Ok(()) };
        gauge(
            &mut encoder,
            "mockmate_check_status",
            "Each check's status: 0 pass, 1 warn, 2 fail, 3 skip.",
            None,
            run.checks.iter().map(|c| ([("target", target), ("check", c.0.as_str())], c.1)),
        )?;
        gauge(
            &mut encoder,
            "mockmate_check_duration",
            "How long each check took.",
            Some(&Unit::Seconds),
            run.checks.iter().map(|c| ([("target", target), ("check", c.0.as_str())], c.2)),
        )?;
        gauge(
            &mut encoder,
            "mockmate_run_duration",
            "How long the whole run took.",
            Some(&Unit::Seconds),
            [([("target", target)], run.seconds)],
        )?;
        gauge(
            &mut encoder,
            "mockmate_last_run_timestamp",
            "When the run these results come from finished (Unix time).",
            Some(&Unit::Seconds),
            [([("target", target)], run.finished_unix)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot() {
        let report = crate::format::fixture();
        insta::assert_snapshot!(format("production", Some(Run { report: &report, finished_unix: 1_790_000_000.5 })));
    }

    #[test]
    fn no_run_is_up_0_and_nothing_else() {
        let text = format("staging", None);
        assert_eq!(
            text,
            "# HELP mockmate_up 1 when the run completed (even with failing checks).\n# TYPE mockmate_up gauge\n\
             mockmate_up{target=\"staging\"} 0\n# EOF\n"
        );
    }

    #[test]
    fn labels_are_only_targets_and_check_ids() {
        let report = crate::format::fixture();
        let text = format("production", Some(Run { report: &report, finished_unix: 0.0 }));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let labels = line.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(l, _)| l);
            for pair in labels.expect("every sample has labels").split(',') {
                let (key, _) = pair.split_once('=').expect("key=value");
                assert!(["target", "check"].contains(&key), "{line}");
            }
        }
        for c in &report.checks {
            assert!(text.contains(&format!("check=\"{}\"", c.id)), "{}", c.id);
            assert!(!text.contains(&c.message), "a message leaked into the metrics: {}", c.message);
        }
    }
}
