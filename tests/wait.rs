//! `--wait` in a deploy pipeline: the README's CI command against a database
//! that comes up late, and one that never does.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::cmd::{diag, json_run, status};
use crate::support::pg::PgServer;

const STRONG_SECRET: &str = "Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6Ab";

/// The environment a deploy job has: everything set, Redis unreachable (a warning, not a gate).
fn deploy_env(database_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("NODE_ENV", "production".into()),
        ("JWT_SECRET", STRONG_SECRET.into()),
        ("REDIS_URL", format!("redis://127.0.0.1:{}", crate::support::free_port())),
        ("DATABASE_URL", database_url),
    ]
}

#[test]
fn ci_gate_waits_for_a_database_that_starts_late_then_passes_with_one_json_document() {
    let server = PgServer::new();
    let db = server.create_mockmate_db("late");
    let url = server.superuser_url(&db);
    // The harness runs with synchronous_commit=off and stops with -m immediate: flush first.
    server.sql(&db, "CHECKPOINT");
    server.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            server.start();
        });
        // The README's CI command, with JSON on stdout so the single document can be checked.
        let (code, report) = json_run(
            diag(dir.path())
                .envs(deploy_env(url.clone()))
                .args(["--env", "production", "--wait", "60s", "--fail-on", "fail"])
                .args(["--report", "junit=report.xml", "--report", "markdown=report.md", "--format", "json"]),
        );
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(status(&report, "postgres.connect"), "pass");
        assert_eq!(status(&report, "redis.connect"), "warn");
    });
    for artifact in ["report.xml", "report.md"] {
        assert!(dir.path().join(artifact).is_file(), "{artifact} written");
    }
    let xml = fs::read_to_string(dir.path().join("report.xml")).expect("read");
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn ci_gate_gives_up_at_the_deadline_when_the_database_never_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://app:pw@127.0.0.1:{}/mockmate", crate::support::free_port());
    let started = Instant::now();
    let out = diag(dir.path())
        .envs(deploy_env(url))
        .args(["--env", "production", "--wait", "3s", "--fail-on", "fail", "--format", "json", "--timeout", "1s"])
        .output()
        .expect("runs");
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("exactly one JSON document on stdout");
    assert_eq!(status(&report, "postgres.connect"), "fail");
    // Progress went to stderr, naming what is still failing.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("waiting: attempt 1 still failing: postgres.connect"), "{stderr}");
    // It waited (more than one attempt) and stopped at the deadline: --wait bounds the whole run, within 10 %.
    assert!(stderr.lines().count() >= 2, "{stderr}");
    assert!(elapsed >= Duration::from_millis(2700) && elapsed <= Duration::from_millis(3300), "{elapsed:?}");
}

/// The environment is read once per run: a connect that fails because
/// DATABASE_URL is unset cannot pass on a retry, even when `--only` leaves out
/// env.required (which would otherwise own that failure).
#[test]
fn a_failure_that_rests_on_the_configuration_ends_the_wait_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let (code, report) = json_run(diag(dir.path()).env("NODE_ENV", "production").args([
        "--env",
        "production",
        "--only",
        "postgres.connect",
        "--wait",
        "20s",
        "--format",
        "json",
    ]));
    assert_eq!(code, 1);
    assert_eq!(report["attempts"], 1, "{report:#}");
    assert_eq!(status(&report, "postgres.connect"), "fail");
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
}
