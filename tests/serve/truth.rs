//! Every answer is true for the request it answers: a scrape never gets a run
//! cut by another client's shorter deadline, never an older run as current
//! (`--cache 0s`), and says "unknown" (`mockmate_up 0`, 503) when no run it
//! may take finishes in time.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{check_status, sample, site_env};
use crate::support::pg::PgServer;
use crate::support::redis::RedisServer;
use crate::support::serve::{Serve, agent, get};

const UP: &str = "mockmate_up{target=\"production\"}";

/// A check of our own that takes 1.2 s and passes: slower than a 1 s scrape
/// can wait for, well within a 10 s one.
const SLOW_CHECK: &str = r#"
[[check]]
id = "custom.slow"
kind = "postgres.query"
needs = ["postgres.connect"]
sql = "SELECT pg_sleep(1.2) IS NOT NULL"
expect = "true"
"#;

#[test]
fn a_scrape_never_gets_a_run_cut_by_another_clients_shorter_deadline() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_truth_joined");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("slow.toml"), SLOW_CHECK).expect("write the manifest");
    let env = site_env(pg.superuser_url(&db), RedisServer::shared().url());
    let serve = Serve::start(dir.path(), &env, &["--checks", "slow.toml", "--cache", "0s"]);

    // The smallest scrape timeout serve takes, in a loop: each starts (or
    // joins) runs that are cut at half a second.
    let stop = AtomicBool::new(false);
    let honest: Vec<String> = std::thread::scope(|scope| {
        let hostile = scope.spawn(|| {
            let agent = agent();
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let reply = get(&agent, &serve.url("/probe"), &[("X-Prometheus-Scrape-Timeout-Seconds", "1")]);
                answers.push(reply.body);
            }
            answers
        });
        // An honest Prometheus with a 10 s timeout, scraping meanwhile.
        let agent = agent();
        let honest = (0..5)
            .map(|_| get(&agent, &serve.url("/probe"), &[("X-Prometheus-Scrape-Timeout-Seconds", "10")]).body)
            .collect();
        stop.store(true, Ordering::SeqCst);
        let hostile = hostile.join().expect("the hostile client");
        // It was there: its own answers are short ones (unknown, or cut).
        assert!(
            hostile.iter().any(|b| sample(b, UP) == Some(0.0) || check_status(b, "custom.slow") == Some(2)),
            "the hostile client was never cut short: {hostile:?}"
        );
        honest
    });
    for body in &honest {
        assert_eq!(sample(body, UP), Some(1.0), "{body}");
        assert_eq!(check_status(body, "custom.slow"), Some(0), "an honest scrape got someone else's cut run:\n{body}");
        assert_eq!(check_status(body, "postgres.connect"), Some(0), "{body}");
    }
}

#[test]
fn with_no_cache_a_frozen_redis_is_never_reported_from_an_older_run() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_truth_frozen");
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = site_env(pg.superuser_url(&db), redis.url());
    let serve = Serve::start(dir.path(), &env, &["--cache", "0s", "--timeout", "2s"]);
    let agent = agent();
    let before = serve.get("/probe");
    assert_eq!(check_status(&before.body, "redis.connect"), Some(0), "{}", before.body);
    assert_eq!(serve.get("/healthz").status, 200);

    let frozen = redis.freeze();
    // Scrapes of every length, at once: none may answer with the run from before the freeze.
    let timeouts = ["1", "1.5", "2", "3", "10", "1", "1.5", "2", "3", "10", "1", "2.5"];
    let replies: Vec<(String, u16, String)> = std::thread::scope(|scope| {
        let scrapes: Vec<_> = timeouts
            .iter()
            .enumerate()
            .map(|(i, timeout)| {
                let agent = agent.clone();
                let serve = &serve;
                scope.spawn(move || {
                    let path = if i % 3 == 2 { "/healthz" } else { "/probe" };
                    let reply = get(&agent, &serve.url(path), &[("X-Prometheus-Scrape-Timeout-Seconds", timeout)]);
                    (path.to_string(), reply.status, reply.body)
                })
            })
            .collect();
        scrapes.into_iter().map(|s| s.join().expect("scrape")).collect()
    });
    for (path, status, body) in &replies {
        if path == "/healthz" {
            // 200 only from a run that saw the frozen Redis (a warning: the API runs without its cache).
            let report: Option<serde_json::Value> = serde_json::from_str(body).ok();
            let redis = report.as_ref().and_then(|r| {
                r["checks"].as_array()?.iter().find(|c| c["id"] == "redis.connect").map(|c| c["status"].clone())
            });
            assert_ne!(
                redis.as_ref().and_then(|s| s.as_str()),
                Some("pass"),
                "an older run presented as current:\n{body}"
            );
            assert!(*status == 503 || redis.as_ref().and_then(|s| s.as_str()) == Some("warn"), "{status}: {body}");
        } else {
            assert_ne!(check_status(body, "redis.connect"), Some(0), "an older run presented as current:\n{body}");
            // Either unknown (no run this scrape could take finished in time) or the frozen Redis, failing.
            assert!(sample(body, UP) == Some(0.0) || check_status(body, "redis.connect") == Some(1), "{body}");
        }
    }
    // Someone got a real answer: redis.connect warns (Redis is optional for the API) on a run of its own.
    assert!(replies.iter().any(|(_, _, b)| check_status(b, "redis.connect") == Some(1)), "{replies:?}");
    drop(frozen);
    let after = get(&agent, &serve.url("/probe"), &[("X-Prometheus-Scrape-Timeout-Seconds", "10")]);
    assert_eq!(check_status(&after.body, "redis.connect"), Some(0), "{}", after.body);
    let metrics = serve.get("/metrics").body;
    assert!(sample(&metrics, "mockmate_late_answers_total{target=\"production\"}").is_some(), "{metrics}");
}

#[test]
fn a_scrape_timeout_under_a_second_is_refused_without_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = site_env(
        format!("postgres://app:pw@127.0.0.1:{}/mockmate", crate::support::free_port()),
        format!("redis://127.0.0.1:{}", crate::support::free_port()),
    );
    let serve = Serve::start(dir.path(), &env, &["--cache", "0s"]);
    let reply = get(&agent(), &serve.url("/probe"), &[("X-Prometheus-Scrape-Timeout-Seconds", "0.05")]);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("minimum of 1s") && !reply.body.contains("0.05"), "{}", reply.body);
    let metrics = serve.get("/metrics").body;
    assert_eq!(sample(&metrics, "mockmate_runs_total{target=\"production\"}"), Some(0.0), "{metrics}");
}
