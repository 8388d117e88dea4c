//! `mockmate-diag serve`: the real process on a free port, scraped over HTTP
//! against real PostgreSQL and Redis servers — the endpoints, the cache and
//! single flight, the scrape's deadline, shutdown, and what serve refuses.
//! Prometheus itself scrapes it in `prometheus`; `soak` puts it under load;
//! `hostile` opens hundreds of idle and slow connections and fishes for secrets;
//! `truth` checks that every answer is true for its own request (joined runs,
//! short deadlines, a frozen Redis); `secured` runs it behind TLS, client
//! certificates and basic auth.

mod hostile;
mod prometheus;
mod secured;
mod soak;
mod truth;

use std::time::{Duration, Instant};

use crate::support::cmd::diag;
use crate::support::pg::PgServer;
use crate::support::redis::RedisServer;
use crate::support::serve::{Serve, agent, get};
use crate::support::tarpit::Tarpit;
use predicates::prelude::*;

const JWT: &str = "Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6Ab";

/// The environment of a working MockMate: everything set, the database and Redis given.
pub fn site_env(database_url: String, redis_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("NODE_ENV", "production".into()),
        ("JWT_SECRET", JWT.into()),
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
    ]
}

/// `mockmate_check_status{…,check="ID"}`'s value in a /probe body.
pub fn check_status(body: &str, id: &str) -> Option<u8> {
    let needle = format!("check=\"{id}\"}} ");
    body.lines()
        .filter(|l| l.starts_with("mockmate_check_status{"))
        .find_map(|l| l.split_once(&needle).map(|(_, v)| v.trim()))
        .and_then(|v| v.parse().ok())
}

/// A sample of `name` (whole line up to the value) in an exposition.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn probe_healthz_and_report_follow_the_database_with_no_cache() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_endpoints");
    let dir = tempfile::tempdir().expect("tempdir");
    let serve =
        Serve::start(dir.path(), &site_env(pg.superuser_url(&db), RedisServer::shared().url()), &["--cache", "0s"]);

    let probe = serve.get("/probe?target=production");
    assert_eq!(probe.status, 200, "{probe:?}");
    assert!(probe.content_type.starts_with("application/openmetrics-text"), "{probe:?}");
    assert_eq!(sample(&probe.body, "mockmate_up{target=\"production\"}"), Some(1.0), "{}", probe.body);
    assert_eq!(check_status(&probe.body, "postgres.active_users"), Some(0), "{}", probe.body);
    // A read-only run: the dry run of session creation is skipped, never attempted.
    assert_eq!(check_status(&probe.body, "postgres.session_insert"), Some(3), "{}", probe.body);
    let healthy = serve.get("/healthz");
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    let report: serde_json::Value = serde_json::from_str(&healthy.body).expect("the JSON report");
    assert_eq!(report["summary"]["fail"], 0, "{report:#}");

    // The incident: no users. The next scrape says so (no cache).
    pg.sql(&db, "DELETE FROM users");
    let probe = serve.get("/probe");
    assert_eq!(check_status(&probe.body, "postgres.active_users"), Some(2), "{}", probe.body);
    let unhealthy = serve.get("/healthz?target=production");
    assert_eq!(unhealthy.status, 503);
    let report: serde_json::Value = serde_json::from_str(&unhealthy.body).expect("the JSON report");
    assert_eq!(crate::support::cmd::status(&report, "postgres.active_users"), "fail");

    let markdown = serve.get("/report?target=production&format=markdown");
    assert_eq!((markdown.status, markdown.content_type.as_str()), (200, "text/markdown; charset=utf-8"));
    assert!(markdown.body.starts_with("## mockmate-diag report"), "{}", markdown.body);
    assert!(markdown.body.contains("postgres.active_users"), "{}", markdown.body);
    let json = serve.get("/report?format=json");
    assert!(serde_json::from_str::<serde_json::Value>(&json.body).is_ok(), "{}", json.body);

    assert_eq!(serve.get("/probe?target=staging").status, 404);
    assert_eq!(serve.get("/report?format=yaml").status, 400);
    assert_eq!(serve.get("/nowhere").status, 404);
    let metrics = serve.get("/metrics").body;
    assert_eq!(sample(&metrics, "mockmate_errors_total{kind=\"unknown_target\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "mockmate_cache_hits_total{target=\"production\"}"), Some(0.0), "{metrics}");
    assert!(metrics.contains("mockmate_build_info{version=\"0.1.0\",commit=\""), "{metrics}");
}

#[test]
fn concurrent_scrapes_share_one_run_and_the_cache_answers_the_next() {
    // A database that never answers: each run takes the whole --timeout.
    let tarpit = Tarpit::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://app:pw@127.0.0.1:{}/mockmate", tarpit.port);
    let env = site_env(url, format!("redis://127.0.0.1:{}", crate::support::free_port()));
    let serve = Serve::start(dir.path(), &env, &["--timeout", "1s", "--cache", "30s"]);
    let bodies: Vec<String> = std::thread::scope(|scope| {
        let scrapes: Vec<_> = (0..8).map(|_| scope.spawn(|| serve.get("/probe").body)).collect();
        scrapes.into_iter().map(|s| s.join().expect("scrape")).collect()
    });
    for body in &bodies {
        assert_eq!(check_status(body, "postgres.connect"), Some(2), "{body}");
    }
    let started = Instant::now();
    let cached = serve.get("/probe");
    assert!(started.elapsed() < Duration::from_millis(500), "the cache answered in {:?}", started.elapsed());
    assert_eq!(cached.body, bodies[0]);
    let metrics = serve.get("/metrics").body;
    assert_eq!(sample(&metrics, "mockmate_runs_total{target=\"production\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "mockmate_shared_runs_total{target=\"production\"}"), Some(7.0), "{metrics}");
    assert_eq!(sample(&metrics, "mockmate_cache_hits_total{target=\"production\"}"), Some(1.0), "{metrics}");
}

#[test]
fn a_run_ends_half_a_second_before_prometheus_gives_up_on_the_scrape() {
    let tarpit = Tarpit::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://app:pw@127.0.0.1:{}/mockmate", tarpit.port);
    let env = site_env(url, format!("redis://127.0.0.1:{}", crate::support::free_port()));
    let serve = Serve::start(dir.path(), &env, &["--timeout", "20s", "--cache", "0s"]);
    let started = Instant::now();
    let reply = get(&agent(), &serve.url("/probe"), &[("X-Prometheus-Scrape-Timeout-Seconds", "2")]);
    let took = started.elapsed();
    // Before Prometheus gives up (2 s), not before the run's deadline (1.5 s).
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(2), "answered in {took:?}");
    assert_eq!(sample(&reply.body, "mockmate_up{target=\"production\"}"), Some(1.0), "{}", reply.body);
    assert_eq!(check_status(&reply.body, "postgres.connect"), Some(2), "{}", reply.body);
}

#[test]
fn sigterm_during_a_scrape_answers_it_then_exits_0() {
    let tarpit = Tarpit::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://app:pw@127.0.0.1:{}/mockmate", tarpit.port);
    let env = site_env(url, format!("redis://127.0.0.1:{}", crate::support::free_port()));
    let mut serve = Serve::start(dir.path(), &env, &["--timeout", "2s"]);
    let url = serve.url("/probe");
    let scrape = std::thread::spawn(move || get(&agent(), &url, &[]));
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    serve.terminate();
    let reply = scrape.join().expect("the scrape in flight was answered");
    assert_eq!(reply.status, 200);
    assert_eq!(sample(&reply.body, "mockmate_up{target=\"production\"}"), Some(1.0), "{}", reply.body);
    assert_eq!(check_status(&reply.body, "postgres.connect"), Some(2), "{}", reply.body);
    let status = serve.wait_exit(Duration::from_secs(10)).expect("exited within 10s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(serve.log().contains("stopped"), "{}", serve.log());
}

#[test]
fn serve_never_writes_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [&["serve", "--allow-writes"][..], &["--allow-writes", "serve"]] {
        diag(dir.path())
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("serve never writes to a target: --allow-writes"));
    }
    diag(dir.path())
        .args(["--only", "env.required", "serve"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--only is for runs, not for `serve`"));
}

#[test]
fn a_bad_targets_file_is_one_line_with_its_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |text: &str| std::fs::write(dir.path().join("targets.toml"), text).expect("write");
    let refused = |want: &str| {
        let out = diag(dir.path()).args(["serve", "--targets", "targets.toml"]).output().expect("runs");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(want), "{stderr}");
    };
    write("[targets.production]\nenv_files = [\"prod.env\"]\nallow_writes = true\n");
    refused("mockmate-diag: targets.toml:3:1: unknown field `allow_writes`");
    write("[targets.production]\nenv_files = [\"prod.env\"]\n");
    refused("mockmate-diag: targets.toml:2:14: env file prod.env: not found");
}

#[test]
fn a_secret_that_is_an_ordinary_word_masks_no_metric_name_label_or_check_id() {
    // Weak secrets that are words of the exposition itself: masked as text, they
    // would turn `mockmate_up` into `****_up` (a broken scrape) and
    // `postgres.connect` into `****.connect` (alerts that match nothing).
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_weak_secrets");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = site_env(pg.superuser_url(&db), RedisServer::shared().url());
    env.retain(|(k, _)| *k != "JWT_SECRET");
    env.push(("JWT_SECRET", "mockmate".into()));
    env.push(("SESSION_SECRET", "postgres".into()));
    let serve = Serve::start(dir.path(), &env, &["--cache", "0s"]);

    let probe = serve.get("/probe?target=production");
    assert_eq!(sample(&probe.body, "mockmate_up{target=\"production\"}"), Some(1.0), "{}", probe.body);
    assert_eq!(check_status(&probe.body, "postgres.connect"), Some(0), "{}", probe.body);
    assert!(!probe.body.contains("****"), "{}", probe.body);
    let metrics = serve.get("/metrics");
    assert!(metrics.body.contains("mockmate_build_info{"), "{}", metrics.body);
    assert!(!metrics.body.contains("****"), "{}", metrics.body);
}
