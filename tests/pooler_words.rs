//! PgBouncer's own answers, kept in its words and explained — "PgBouncer says: … →
//! the database behind it …" — the same on every run, within --timeout: the
//! database stopped behind a working PgBouncer, PgBouncer started while the
//! database is down, a password that went stale in its auth_file, a full pool.
//! Each with a real PgBouncer in front of a cluster of its own (these tests stop
//! it), and node-postgres (the API's driver) hearing the same words.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::node::pg_probe;
use crate::support::pg::{PgServer, SUPERUSER, SUPERUSER_PASSWORD};
use crate::support::pgbouncer::{BouncerOptions, PgBouncer};

/// postgres.connect (or `only`) through `url`: (exit code, report).
fn run(url: &str, only: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("DATABASE_URL", url).args(["--env", "production", "--format", "json", "--timeout", "3s", "--only", only]);
    json_run(&mut cmd)
}

/// PgBouncer's words in a report (`details.pgbouncer_says`).
fn says(report: &Value) -> &str {
    check(report, "postgres.connect")["details"]["pgbouncer_says"].as_str().unwrap_or_default()
}

#[test]
fn the_database_stopped_behind_a_working_pgbouncer_is_named_in_pgbouncers_words_on_every_run() {
    let pg = PgServer::new();
    pg.sql("postgres", crate::support::pg::MOCKMATE_SCHEMA);
    // A query waiting for a server connection gives up after 1s (not 120).
    let bouncer = PgBouncer::start(&pg, BouncerOptions::transaction(1).set("query_wait_timeout", "1"));
    assert_eq!(bouncer.sql("postgres", "SELECT 1"), "1");
    pg.stop();
    let url = bouncer.superuser_url("postgres");
    // The first client after the stop waits for a server connection that never
    // comes (PgBouncer says query_wait_timeout); from then on it fails fast. Every
    // run says it in PgBouncer's words, whether one check runs or all of them.
    let mut heard = Vec::new();
    for only in ["postgres.connect", "postgres.connect,postgres.schema,postgres.locks,postgres.connections", ""] {
        let only = if only.is_empty() {
            "postgres.connect,postgres.tls,postgres.writable,postgres.settings,postgres.schema,postgres.extensions,postgres.active_users,postgres.privileges,postgres.connections,postgres.locks,postgres.migrations,postgres.orphan_sessions,postgres.user"
        } else {
            only
        };
        let (code, report) = run(&url, only);
        assert_eq!(code, 1, "{report:#}");
        assert_status(&report, "postgres.connect", "fail");
        let msg = message(&report, "postgres.connect");
        assert!(msg.starts_with("PgBouncer says: ") && msg.contains(" (08P01) → "), "{msg}");
        assert!(msg.contains("the database behind it") || msg.contains("query_wait_timeout"), "{msg}");
        heard.push(says(&report).to_string());
    }
    let failing = "server login has been failing, try again later (server_login_retry)";
    assert_eq!(heard.last().map(String::as_str), Some(failing), "{heard:?}");
    assert!(heard.iter().all(|h| h == failing || h == "query_wait_timeout"), "{heard:?}");
    let (_, report) = run(&url, "postgres.connect");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!(
            "PgBouncer says: {failing} (08P01) → the database behind it is down or refuses PgBouncer's login: \
             its last login to PostgreSQL failed and no server connection is left"
        )
    );
    let fix = hint(&report, "postgres.connect");
    assert!(fix.starts_with("check that PostgreSQL behind PgBouncer is up"), "{fix}");
    assert!(!fix.contains("****"), "the redactor must find no password in the hint: {fix}");
    // The API's driver hears the same words.
    let node = pg_probe(&[("DATABASE_URL", &url)]);
    assert_eq!((node["code"].as_str(), node["message"].as_str()), (Some("08P01"), Some(failing)), "{node}");

    // Back up: the same run passes.
    pg.start();
    let mut passed = false;
    for _ in 0..30 {
        let (_, report) = run(&url, "postgres.connect");
        if check(&report, "postgres.connect")["status"] == "pass" {
            passed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(passed, "PgBouncer never reconnected:\n{}", bouncer.log());
}

#[test]
fn pgbouncer_started_while_its_database_is_down_is_named_not_a_wrong_port() {
    let pg = PgServer::new();
    // The auth_file is read from the running cluster; then it goes down before
    // PgBouncer ever connects to it (a cold start during an outage).
    let bouncer = PgBouncer::start(&pg, BouncerOptions::transaction(1));
    pg.stop();
    let url = bouncer.superuser_url("postgres");
    for _ in 0..2 {
        let (code, report) = run(&url, "postgres.connect");
        assert_eq!(code, 1, "{report:#}");
        let msg = message(&report, "postgres.connect");
        assert_eq!(
            msg,
            format!(
                "timed out after 3s: 127.0.0.1:{} accepted the login, but the session never became ready (no \
                 ReadyForQuery): a pooler (PgBouncer) there is waiting for the database behind it",
                bouncer.port
            )
        );
        assert!(!msg.contains("wrong port"), "{msg}");
        assert!(hint(&report, "postgres.connect").starts_with("the database behind the pooler is down"));
    }
    // node-postgres cannot connect either (it times out the same way).
    assert_eq!(pg_probe(&[("DATABASE_URL", &url)])["ok"], false);
}

#[test]
fn a_stale_password_in_pgbouncers_auth_file_is_told_from_a_wrong_one() {
    let pg = PgServer::new();
    pg.sql("postgres", crate::support::pg::MOCKMATE_SCHEMA);
    pg.create_user("app", "old-pw");
    let bouncer = PgBouncer::start(&pg, BouncerOptions::transaction(1));
    // The password changes on the server; PgBouncer's auth_file keeps the old one.
    pg.sql("postgres", "ALTER ROLE app PASSWORD 'new-pw'");

    // The new (right) password: PgBouncer itself rejects it, against its auth_file.
    let url = bouncer.url("app", "new-pw", "postgres");
    let (_, report) = run(&url, "postgres.connect");
    assert_eq!(
        message(&report, "postgres.connect"),
        "PgBouncer says: SASL authentication failed (08P01) → PgBouncer itself rejected the password: it checks it \
         against its auth_file or auth_query, not against PostgreSQL"
    );
    assert!(
        hint(&report, "postgres.connect").contains("PgBouncer's auth_file (or what its auth_query returns) is stale")
    );
    assert_eq!(pg_probe(&[("DATABASE_URL", &url)])["message"], "SASL authentication failed");

    // The old password: PgBouncer lets the client in, and PostgreSQL refuses PgBouncer.
    let url = bouncer.url("app", "old-pw", "postgres");
    let (_, report) = run(&url, "postgres.connect");
    let msg = message(&report, "postgres.connect");
    assert_eq!(
        msg,
        "PgBouncer says: password authentication failed for user \"app\" (08P01) → the database behind it refused \
         PgBouncer's login, in PostgreSQL's words"
    );
    let fix = hint(&report, "postgres.connect");
    assert!(fix.contains("refresh PgBouncer's auth_file from the server") && !fix.contains("****"), "{fix}");
    assert_eq!(pg_probe(&[("DATABASE_URL", &url)])["code"], "08P01");
    assert!(!report.to_string().contains("old-pw") && !report.to_string().contains("new-pw"));

    // Refreshed, the right password works through the pooler.
    bouncer.refresh_users(&pg);
    let (_, report) = run(&bouncer.url("app", "new-pw", "postgres"), "postgres.connect");
    assert_status(&report, "postgres.connect", "pass");
}

/// A psql client of PgBouncer holding its connection (and, in a transaction, the
/// pool's server connection) for a minute; killed on drop.
struct Busy(Child);

impl Busy {
    fn start(pg: &PgServer, bouncer: &PgBouncer, db: &str) -> Busy {
        let psql = pg.bindir.join("psql");
        Busy(
            Command::new(if psql.exists() { psql } else { "psql".into() })
                .args(["-X", "-q", "-h", "127.0.0.1", "-p", &bouncer.port.to_string(), "-U", SUPERUSER, "-d", db])
                .args(["-c", "BEGIN; SELECT pg_sleep(60);"])
                .env("PGPASSWORD", SUPERUSER_PASSWORD)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start psql"),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_busy_pool_and_a_full_pgbouncer_are_pgbouncers_limits_in_its_words() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("pooler_full");
    let bouncer = PgBouncer::start(pg, BouncerOptions::transaction(1).set("query_wait_timeout", "1"));
    // One client holds the pool's only server connection in a transaction.
    let busy = Busy::start(pg, &bouncer, &db);
    let mut active = false;
    for _ in 0..100 {
        if bouncer.pool(&db, SUPERUSER).is_some_and(|p| p.iter().any(|(k, v)| k == "sv_active" && v == "1")) {
            active = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(active, "the busy client never got the server connection");
    let url = bouncer.superuser_url(&db);
    let (code, report) = run(&url, "postgres.connect");
    assert_eq!(code, 1);
    assert_eq!(
        message(&report, "postgres.connect"),
        "PgBouncer says: query_wait_timeout (08P01) → no server connection of the pool became free (every one \
         busy, or the database behind it accepts no new one) within query_wait_timeout"
    );
    assert!(hint(&report, "postgres.connect").starts_with("see SHOW POOLS"), "{report:#}");
    drop(busy);

    // Every client connection PgBouncer allows is taken.
    let full = PgBouncer::start(pg, BouncerOptions::transaction(1).set("max_client_conn", "1"));
    let _busy = Busy::start(pg, &full, &db);
    let url = full.superuser_url(&db);
    let mut said = String::new();
    for _ in 0..50 {
        let (_, report) = run(&url, "postgres.connect");
        said = message(&report, "postgres.connect").to_string();
        if said.contains("max_client_conn") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        said,
        "PgBouncer says: no more connections allowed (max_client_conn) (08P01) → PgBouncer's own client connections \
         are all taken (max_client_conn); the database behind it may be fine"
    );
}
