//! Faults mid-run, the way production has them: PostgreSQL restarted (a failover,
//! a deploy) or killed while a check's statement runs, a required check that runs
//! past `--timeout`, and what an abandoned run leaves on the server: nothing.
//! The real binary against real clusters; a private one only where a test
//! restarts or kills it.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, json_run, message};
use crate::support::pg::{PgServer, SUPERUSER, SUPERUSER_PASSWORD};

/// A statement that outlives every deadline of these runs.
const SLOW: &str = "SELECT true FROM pg_sleep(60)";

/// Writes `checks.toml` in `dir`: `postgres.query` checks (id, severity, sql).
fn manifest(dir: &Path, checks: &[(&str, &str, &str)]) {
    let text: String = checks
        .iter()
        .map(|(id, severity, sql)| {
            format!(
                "[[check]]\nid = \"{id}\"\nkind = \"postgres.query\"\nseverity = \"{severity}\"\n\
                 needs = [\"postgres.connect\"]\nsql = \"{sql}\"\nexpect = \"true\"\n\n"
            )
        })
        .collect();
    fs::write(dir.join("checks.toml"), text).expect("write checks.toml");
}

/// The binary, started in `dir` against `url` with the manifest, JSON on stdout.
fn spawn(dir: &Path, url: &str, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("mockmate-diag"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .current_dir(dir)
        .args(["--env", "production", "--format", "json", "--checks", "checks.toml"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mockmate-diag")
}

/// Waits for the run's end: (exit code, report).
fn finish(child: Child) -> (i32, Value) {
    let out = child.wait_with_output().expect("wait for mockmate-diag");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The pid of our backend running `sql` in `db`, if one is.
fn backend(pg: &PgServer, db: &str, sql: &str) -> Option<String> {
    let pid = pg.sql(
        "postgres",
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'mockmate-diag' \
             AND state = 'active' AND query = '{}' LIMIT 1",
            sql.replace('\'', "''")
        ),
    );
    (!pid.is_empty()).then_some(pid)
}

/// Waits until our backend runs `sql` in `db`; its pid.
fn running(pg: &PgServer, db: &str, sql: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(pid) = backend(pg, db, sql) {
            return pid;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run never started {sql:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `sql` is gone from `db`'s backends within `bound` (the server's own
/// statement_timeout would take the whole `--timeout` of the run).
fn gone_within(pg: &PgServer, db: &str, sql: &str, bound: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < bound {
        if backend(pg, db, sql).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Every other postgres check that says the connection was lost defers to `owner`.
#[track_caller]
fn one_failure_for_the_loss(report: &Value, owner: &str) {
    for c in report["checks"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or_default();
        let said = c["message"].as_str().unwrap_or_default();
        assert!(!said.contains("logged in, but the first query failed"), "{c:#}");
        if id != owner && said.contains("mid-run") {
            assert_eq!((&c["status"], &c["see"]), (&Value::from("skip"), &Value::from(owner)), "{c:#}");
        }
    }
}

#[test]
fn postgres_connect_never_waits_behind_another_checks_slow_query() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("slow_beside_connect");
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", "SELECT true FROM pg_sleep(3)")]);
    let (_, report) = finish(spawn(dir.path(), &pg.superuser_url(&db), &["--timeout", "30s"]));
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "custom.slow", "pass");
    // Its own round trip goes first on the session: it is not charged the 3 s query.
    let took = |id: &str| check(&report, id)["duration_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(took("postgres.connect") * 2 < took("custom.slow"), "{report:#}");
}

#[test]
fn a_restart_mid_run_fails_the_check_it_cut_naming_57p01_and_postgres_connect_passes() {
    let pg = PgServer::new();
    let db = pg.create_mockmate_db("restarted");
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", SLOW)]);
    let child = spawn(dir.path(), &pg.superuser_url(&db), &["--timeout", "60s"]);
    running(&pg, &db, SLOW);
    pg.restart();
    let (code, report) = finish(child);
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "custom.slow", "fail");
    assert_eq!(
        message(&report, "custom.slow"),
        "the query: the server shut down or restarted mid-run: terminating connection due to administrator command \
         (57P01)"
    );
    assert!(check(&report, "custom.slow")["hint"].as_str().unwrap_or_default().contains("run again"), "{report:#}");
    one_failure_for_the_loss(&report, "custom.slow");
}

#[test]
fn a_server_killed_mid_run_is_a_lost_connection_on_the_check_it_cut() {
    let pg = PgServer::new();
    let db = pg.create_mockmate_db("killed");
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", SLOW)]);
    let child = spawn(dir.path(), &pg.superuser_url(&db), &["--timeout", "60s"]);
    running(&pg, &db, SLOW);
    pg.kill_postmaster();
    let (_, report) = finish(child);
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "custom.slow", "fail");
    let said = message(&report, "custom.slow");
    assert!(said.starts_with("the query: the connection was lost mid-run ("), "{said}");
    assert!(
        said.ends_with(
            "the server hung up without a word (killed, crashed, restarted) or the network dropped the connection"
        ),
        "{said}"
    );
    one_failure_for_the_loss(&report, "custom.slow");
}

#[test]
fn a_crash_of_another_server_process_mid_run_names_57p02_on_the_check_it_cut() {
    let pg = PgServer::new();
    let db = pg.create_mockmate_db("crashed");
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", SLOW)]);
    let child = spawn(dir.path(), &pg.superuser_url(&db), &["--timeout", "60s"]);
    running(&pg, &db, SLOW);
    // Any server process dying by a signal makes PostgreSQL end every session
    // (and recover): the one that says why is a WARNING just before it hangs up.
    let checkpointer = pg.sql("postgres", "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
    assert!(Command::new("kill").args(["-KILL", &checkpointer]).status().expect("kill").success());
    let (_, report) = finish(child);
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "custom.slow", "fail");
    assert_eq!(
        message(&report, "custom.slow"),
        "the query: the server crashed mid-run: terminating connection because of crash of another server process \
         (57P02)"
    );
    one_failure_for_the_loss(&report, "custom.slow");
}

#[test]
fn past_timeout_the_servers_statement_timeout_keeps_the_checks_severity() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("statement_timeout_first");
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = "SELECT true FROM pg_sleep(30)";
    manifest(dir.path(), &[("custom.required", "fail", sql), ("custom.optional", "warn", sql)]);
    let url = pg.superuser_url(&db);
    // One each: on the shared session the second would queue behind the first.
    let run = |id: &str| {
        json_run(diag(dir.path()).env("DATABASE_URL", &url).args([
            "--env",
            "production",
            "--format",
            "json",
            "--checks",
            "checks.toml",
            "--timeout",
            "1s",
            "--fail-on",
            "fail",
            "--only",
            id,
        ]))
    };
    let (code, report) = run("custom.required");
    assert_eq!(code, 1, "a required check that ran out fails the gate: {report:#}");
    assert_status(&report, "custom.required", "fail");
    assert_eq!(
        message(&report, "custom.required"),
        "the query timed out after 750ms (the server cancelled it at statement_timeout, just under --timeout 1s)"
    );
    let (code, report) = run("custom.optional");
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "custom.optional", "warn");
    assert!(message(&report, "custom.optional").starts_with("the query timed out after 750ms"), "{report:#}");
}

/// Continues a stopped backend when dropped (the test may panic while it is stopped).
struct Stopped(String);

impl Stopped {
    fn stop(pid: String) -> Stopped {
        assert!(Command::new("kill").args(["-STOP", &pid]).status().expect("kill").success());
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
fn past_timeout_our_own_deadline_keeps_the_checks_severity_when_the_server_hangs() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("hung_backend");
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = "SELECT true FROM pg_sleep(30)";
    manifest(dir.path(), &[("custom.required", "fail", sql), ("custom.optional", "warn", sql)]);
    let child = spawn(
        dir.path(),
        &pg.superuser_url(&db),
        &["--timeout", "3s", "--fail-on", "fail", "--only", "custom.required,custom.optional"],
    );
    // A backend frozen mid-statement (a stalled VM, a stuck disk): its
    // statement_timeout never fires, the engine's deadline does.
    let frozen = Stopped::stop(running(pg, &db, sql));
    let (code, report) = finish(child);
    drop(frozen);
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "custom.required", "fail");
    assert_status(&report, "custom.optional", "warn");
    for id in ["custom.required", "custom.optional"] {
        assert_eq!(message(&report, id), "timed out after 3s", "{report:#}");
    }
}

#[test]
fn an_interrupted_run_leaves_no_query_running_on_the_server() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("interrupted_query");
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", SLOW)]);
    let child = spawn(dir.path(), &pg.superuser_url(&db), &["--timeout", "60s", "--only", "custom.slow"]);
    running(pg, &db, SLOW);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill").success());
    let (code, report) = finish(child);
    assert_eq!(code, 130, "{report:#}");
    assert_eq!(check(&report, "custom.slow")["details"]["interrupted"], true, "{report:#}");
    // Cancelled as the run ended, not left to its statement_timeout (~60 s).
    assert!(gone_within(pg, &db, SLOW, Duration::from_secs(5)), "still running after the run:\n{report:#}");
}

#[test]
fn an_interrupted_run_cancels_over_tls_too() {
    let pg = PgServer::shared_tls();
    let db = pg.create_db("interrupted_tls");
    let root = pg.tls.as_ref().expect("TLS cluster").ca_cert.display().to_string();
    let url = format!(
        "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={root}",
        pg.port
    );
    let dir = tempfile::tempdir().expect("tempdir");
    manifest(dir.path(), &[("custom.slow", "fail", SLOW)]);
    let child = spawn(dir.path(), &url, &["--timeout", "60s", "--only", "custom.slow"]);
    running(pg, &db, SLOW);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill").success());
    let (code, report) = finish(child);
    assert_eq!(code, 130, "{report:#}");
    assert!(gone_within(pg, &db, SLOW, Duration::from_secs(5)), "still running after the run:\n{report:#}");
}

#[test]
fn a_wait_that_runs_out_mid_statement_leaves_no_query_running_on_the_server() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("wait_cut_query");
    let dir = tempfile::tempdir().expect("tempdir");
    // Two slow statements on the one session: the server cancels the first at
    // statement_timeout (just under the attempt's --timeout); the second, queued
    // behind it, is still running when --wait runs out, with seconds to go before
    // its own statement_timeout.
    let (first, second) = ("SELECT true FROM pg_sleep(60)", "SELECT true FROM pg_sleep(61)");
    manifest(dir.path(), &[("custom.first", "fail", first), ("custom.second", "fail", second)]);
    let child = spawn(
        dir.path(),
        &pg.superuser_url(&db),
        &["--timeout", "60s", "--wait", "6s", "--fail-on", "fail", "--only", "custom.first,custom.second"],
    );
    let (code, report) = finish(child);
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "custom.first", "fail");
    assert_status(&report, "custom.second", "fail");
    for sql in [first, second] {
        assert!(gone_within(pg, &db, sql, Duration::from_secs(2)), "{sql} still running after the run:\n{report:#}");
    }
}
